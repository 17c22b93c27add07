"""Access control lists and Object Ownership: what a grant means, who owns what.

Layer: policy (pure; no I/O, no XML: the S3 wire forms live in ``kvbox.s3``). Rules,
from AWS's "Access control list (ACL) overview", "Mapping of ACL permissions and access
policy permissions" and "Controlling ownership of objects and disabling ACLs":

* An ACL is an owner and a list of grants; a grant gives one permission (READ, WRITE,
  READ_ACP, WRITE_ACP, FULL_CONTROL) to one grantee: a canonical user (in kvbox the
  principal's name: ``root`` or a user name, which is also the ``ID`` listings show),
  or one of S3's predefined groups. E-mail grantees never reach this module: kvbox
  users have no e-mail address, so ``kvbox.s3`` refuses them as AWS refuses an address
  it cannot resolve.
* A permission means a set of IAM actions, different for a bucket and an object
  (``BUCKET_ACTIONS``, ``OBJECT_ACTIONS``); FULL_CONTROL is all of them. The bucket's
  ACL answers bucket actions and object *writes* (WRITE on a bucket is "create,
  overwrite and delete objects"); an object's ACL answers the reads and ACL operations
  on that object.
* Groups: ``AllUsers`` is everyone, anonymous included; ``AuthenticatedUsers`` is any
  signed request; ``LogDelivery`` is S3's log writer, which kvbox does not run, so a
  grant to it is kept and shown but lets no kvbox principal in. A grant to either of
  the first two is *public* (what BlockPublicAcls refuses and IgnorePublicAcls ignores);
  a grant to a named user is not.
* Canned ACLs are shorthands expanded against the resource's owner (and, for objects,
  the bucket's owner): ``canned``. An ACL equal to a canned one is stored by name
  (``to_text``), which is also how kvbox stored ACLs before grants existed, so old data
  reads the same; any other is stored as compact JSON.
* Object Ownership (``ObjectOwnership``) decides who owns a new object and whether ACLs
  count at all: ``BucketOwnerEnforced`` disables ACLs (every object belongs to the
  bucket owner and no ACL grants anything), ``BucketOwnerPreferred`` gives the bucket
  owner the objects written with ``bucket-owner-full-control``, ``ObjectWriter`` leaves
  every object to its writer. A bucket with no stored setting is ``ObjectWriter``, as
  buckets made on AWS before April 2023 are; kvbox gives every new bucket an explicit
  setting when it is created (``kvbox.s3`` decides the default).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from kvbox.errors import AclError as AclError

ALL_USERS: Final = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS: Final = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY: Final = "http://acs.amazonaws.com/groups/s3/LogDelivery"
#: The predefined groups S3 accepts as grantees.
GROUPS: Final = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
#: Groups whose grants make a resource public.
PUBLIC_GROUPS: Final = frozenset({ALL_USERS, AUTHENTICATED_USERS})
#: S3's limit on grants in one ACL.
MAX_GRANTS: Final = 100


class Permission(enum.StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    READ_ACP = "READ_ACP"
    WRITE_ACP = "WRITE_ACP"
    FULL_CONTROL = "FULL_CONTROL"


class GranteeType(enum.StrEnum):
    """The ``xsi:type`` of an S3 Grantee (kvbox stores the first two)."""

    CANONICAL_USER = "CanonicalUser"
    GROUP = "Group"
    EMAIL = "AmazonCustomerByEmail"


class ObjectOwnership(enum.StrEnum):
    BUCKET_OWNER_ENFORCED = "BucketOwnerEnforced"
    BUCKET_OWNER_PREFERRED = "BucketOwnerPreferred"
    OBJECT_WRITER = "ObjectWriter"


#: What a bucket without a stored setting behaves as (a pre-2023 AWS bucket).
LEGACY_OWNERSHIP: Final = ObjectOwnership.OBJECT_WRITER

_BUCKET_READ: Final = frozenset(
    {"s3:listbucket", "s3:listbucketversions", "s3:listbucketmultipartuploads"}
)
#: WRITE on a bucket: create, overwrite and delete objects. kvbox adds the multipart
#: housekeeping (whoever may upload parts may list and abandon them).
_BUCKET_WRITE: Final = frozenset(
    {
        "s3:putobject",
        "s3:deleteobject",
        "s3:deleteobjectversion",
        "s3:abortmultipartupload",
        "s3:listmultipartuploadparts",
    }
)
BUCKET_ACTIONS: Final[Mapping[Permission, frozenset[str]]] = {
    Permission.READ: _BUCKET_READ,
    Permission.WRITE: _BUCKET_WRITE,
    Permission.READ_ACP: frozenset({"s3:getbucketacl"}),
    Permission.WRITE_ACP: frozenset({"s3:putbucketacl"}),
}
OBJECT_ACTIONS: Final[Mapping[Permission, frozenset[str]]] = {
    Permission.READ: frozenset({"s3:getobject", "s3:getobjectversion"}),
    Permission.READ_ACP: frozenset({"s3:getobjectacl", "s3:getobjectversionacl"}),
    Permission.WRITE_ACP: frozenset({"s3:putobjectacl", "s3:putobjectversionacl"}),
}
#: Actions on an existing object that its owner decides: when the object belongs to
#: someone other than the bucket owner, only the object's owner and its ACL grant them.
OBJECT_SCOPED: Final = frozenset(
    {
        *(a for actions in OBJECT_ACTIONS.values() for a in actions),
        "s3:getobjecttagging",
        "s3:getobjectversiontagging",
        "s3:putobjecttagging",
        "s3:putobjectversiontagging",
        "s3:deleteobjecttagging",
        "s3:deleteobjectversiontagging",
    }
)
#: Every action some bucket grant can allow (the bucket ACL answers these).
BUCKET_ACL_ACTIONS: Final = frozenset(a for s in BUCKET_ACTIONS.values() for a in s)
#: Every action some object grant can allow (the object ACL answers these).
OBJECT_ACL_ACTIONS: Final = frozenset(a for s in OBJECT_ACTIONS.values() for a in s)


@dataclass(frozen=True, slots=True)
class Grantee:
    """A canonical user (``value`` is its id) or a group (``value`` is its URI)."""

    type: GranteeType
    value: str

    @classmethod
    def user(cls, user_id: str) -> Grantee:
        return cls(GranteeType.CANONICAL_USER, user_id)

    @classmethod
    def group(cls, uri: str) -> Grantee:
        return cls(GranteeType.GROUP, uri)

    @property
    def is_public(self) -> bool:
        return self.type is GranteeType.GROUP and self.value in PUBLIC_GROUPS

    def includes(self, principal: str | None) -> bool:
        """Whether a request by ``principal`` (None: anonymous) is this grantee."""
        if self.type is GranteeType.CANONICAL_USER:
            return principal is not None and principal == self.value
        if self.value == ALL_USERS:
            return True
        if self.value == AUTHENTICATED_USERS:
            return principal is not None
        return False  # LogDelivery: no kvbox principal is S3's log writer

    def describe(self) -> str:
        if self.type is GranteeType.CANONICAL_USER:
            return f"user {self.value}"
        return {ALL_USERS: "everyone", AUTHENTICATED_USERS: "any signed request"}.get(
            self.value, f"group {self.value.rsplit('/', 1)[-1]}"
        )


@dataclass(frozen=True, slots=True)
class Grant:
    grantee: Grantee
    permission: Permission

    def actions(self, on_object: bool) -> frozenset[str]:
        table = OBJECT_ACTIONS if on_object else BUCKET_ACTIONS
        if self.permission is Permission.FULL_CONTROL:
            return frozenset(a for s in table.values() for a in s)
        return table.get(self.permission, frozenset())


@dataclass(frozen=True, slots=True)
class Acl:
    """An owner (a principal name) and its grants, in the order they were given."""

    owner: str
    grants: tuple[Grant, ...] = ()

    @property
    def is_public(self) -> bool:
        return any(g.grantee.is_public for g in self.grants)

    def grant_for(
        self, principal: str | None, action: str, *, on_object: bool, public_ok: bool = True
    ) -> Grant | None:
        """The first grant that lets ``principal`` do ``action`` (lower-case), or None.
        ``public_ok`` False skips grants to the public groups (IgnorePublicAcls)."""
        for g in self.grants:
            if not public_ok and g.grantee.is_public:
                continue
            if g.grantee.includes(principal) and action in g.actions(on_object):
                return g
        return None

    def only_full_control_to(self, owner: str) -> bool:
        """Whether every grant is FULL_CONTROL to ``owner`` (what BucketOwnerEnforced
        accepts: "bucket owner full control", however it is spelt)."""
        return all(
            g.permission is Permission.FULL_CONTROL and g.grantee == Grantee.user(owner)
            for g in self.grants
        )

    # --- storage ----------------------------------------------------------------------

    def to_text(self, bucket_owner: str | None = None) -> str:
        """The stored form: a canned ACL's name when it is one, else compact JSON of the
        grants (the owner is not stored: it is the resource's)."""
        name = self.canned_name(bucket_owner)
        if name is not None:
            return name
        return json.dumps(
            [
                [_TYPE_CODES[g.grantee.type], g.grantee.value, g.permission.value]
                for g in self.grants
            ],
            separators=(",", ":"),
        )

    def canned_name(self, bucket_owner: str | None = None) -> str | None:
        for name in _STORED_NAMES:
            if canned(name, self.owner, bucket_owner) == self:
                return name
        return None

    @classmethod
    def from_text(cls, text: str, owner: str, bucket_owner: str | None = None) -> Acl:
        """Read a stored ACL back (``to_text``'s either form)."""
        if not text.startswith("["):
            return canned(text, owner, bucket_owner)
        try:
            rows = json.loads(text)
            grants = tuple(Grant(Grantee(_CODE_TYPES[t], v), Permission(p)) for t, v, p in rows)
        except (ValueError, KeyError, TypeError) as exc:
            raise AclError(f"stored ACL does not parse: {exc}") from None
        return cls(owner, grants)


_TYPE_CODES: Final = {GranteeType.CANONICAL_USER: "u", GranteeType.GROUP: "g"}
_CODE_TYPES: Final = {v: k for k, v in _TYPE_CODES.items()}


class CannedAcl(enum.StrEnum):
    """The ``x-amz-acl`` values kvbox understands."""

    PRIVATE = "private"
    PUBLIC_READ = "public-read"
    PUBLIC_READ_WRITE = "public-read-write"
    AUTHENTICATED_READ = "authenticated-read"
    BUCKET_OWNER_READ = "bucket-owner-read"
    BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"
    LOG_DELIVERY_WRITE = "log-delivery-write"


#: Names tried when storing: the plain ones first, so an ACL that several names expand
#: to (bucket-owner-full-control on the bucket owner's own object is private) is
#: stored by the simplest.
_STORED_NAMES: Final = tuple(CannedAcl)


def canned(name: str, owner: str, bucket_owner: str | None = None) -> Acl:
    """The grants AWS's "Canned ACL" table gives ``name`` for a resource of ``owner``.

    ``bucket_owner`` is the bucket's owner for an object ACL (None for a bucket ACL): the
    bucket-owner-* ACLs grant to it, and mean nothing more on a bucket or when the bucket
    owner owns the object already.

    >>> [g.permission.value for g in canned("public-read", "alice").grants]
    ['FULL_CONTROL', 'READ']
    >>> canned("bucket-owner-full-control", "bob", "alice").grants[1].grantee.value
    'alice'
    """
    try:
        acl = CannedAcl(name.strip().lower())
    except ValueError:
        raise AclError(f"unknown canned ACL {name!r}") from None
    grants = [Grant(Grantee.user(owner), Permission.FULL_CONTROL)]
    if acl in (CannedAcl.PUBLIC_READ, CannedAcl.PUBLIC_READ_WRITE):
        grants.append(Grant(Grantee.group(ALL_USERS), Permission.READ))
    if acl is CannedAcl.PUBLIC_READ_WRITE:
        grants.append(Grant(Grantee.group(ALL_USERS), Permission.WRITE))
    if acl is CannedAcl.AUTHENTICATED_READ:
        grants.append(Grant(Grantee.group(AUTHENTICATED_USERS), Permission.READ))
    if acl is CannedAcl.LOG_DELIVERY_WRITE:
        grants.append(Grant(Grantee.group(LOG_DELIVERY), Permission.WRITE))
        grants.append(Grant(Grantee.group(LOG_DELIVERY), Permission.READ_ACP))
    if bucket_owner is not None and bucket_owner != owner:
        if acl is CannedAcl.BUCKET_OWNER_READ:
            grants.append(Grant(Grantee.user(bucket_owner), Permission.READ))
        elif acl is CannedAcl.BUCKET_OWNER_FULL_CONTROL:
            grants.append(Grant(Grantee.user(bucket_owner), Permission.FULL_CONTROL))
    return Acl(owner, tuple(grants))


def private(owner: str) -> Acl:
    return Acl(owner, (Grant(Grantee.user(owner), Permission.FULL_CONTROL),))


def acl_of(value: Acl | str | None, owner: str, bucket_owner: str | None = None) -> Acl:
    """An ACL given as an ``Acl``, a stored text (canned name or JSON) or None (private)."""
    if value is None:
        return private(owner)
    if isinstance(value, Acl):
        return value
    return Acl.from_text(value, owner, bucket_owner)


def object_owner(
    ownership: ObjectOwnership, writer: str, bucket_owner: str, acl: Acl | None
) -> str:
    """Who owns an object ``writer`` writes now (AWS's Object Ownership settings)."""
    if ownership is ObjectOwnership.BUCKET_OWNER_ENFORCED:
        return bucket_owner
    if ownership is ObjectOwnership.BUCKET_OWNER_PREFERRED and acl is not None:
        full = Grant(Grantee.user(bucket_owner), Permission.FULL_CONTROL)
        if writer == bucket_owner or full in acl.grants:
            return bucket_owner
    return writer


def parse_ownership(value: str) -> ObjectOwnership:
    """An ObjectOwnership value, exactly as AWS spells it."""
    try:
        return ObjectOwnership(value.strip())
    except ValueError:
        raise AclError(f"unknown ObjectOwnership {value!r}") from None


def check_grant_count(grants: Iterable[Grant]) -> None:
    if sum(1 for _ in grants) > MAX_GRANTS:
        raise AclError(f"an ACL can have at most {MAX_GRANTS} grants")
