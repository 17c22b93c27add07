"""Access bodies: ACLs (AccessControlPolicy, canned ACLs), PolicyStatus and
PublicAccessBlockConfiguration.

Layer: s3 protocol (pure; no I/O). The rules are ``kvbox.s3.xml``'s docstring.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from kvbox.s3.errors import S3Error
from kvbox.s3.xml.base import (
    MAX_CONFIG_BODY,
    XSI_NS,
    Owner,
    children_of,
    document,
    malformed,
    parse_body,
    parse_bool,
    required_text,
    serialize,
    single,
    single_text,
)

# --- ACLs ----------------------------------------------------------------------------

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
PERMISSIONS = frozenset({"FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP"})


class CannedAcl(enum.StrEnum):
    """The canned ACLs kvbox folds into its access decision (``x-amz-acl`` values)."""

    PRIVATE = "private"
    PUBLIC_READ = "public-read"
    PUBLIC_READ_WRITE = "public-read-write"
    AUTHENTICATED_READ = "authenticated-read"
    BUCKET_OWNER_READ = "bucket-owner-read"
    BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"

    @classmethod
    def from_header(cls, value: str) -> CannedAcl:
        """``x-amz-acl``; an unknown value is InvalidArgument, as AWS answers."""
        try:
            return cls(value.strip())
        except ValueError:
            raise S3Error(
                "InvalidArgument",
                extra={"ArgumentName": "x-amz-acl", "ArgumentValue": value},
            ) from None


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant. ``grantee_type`` is ``CanonicalUser`` (``id``), ``Group`` (``uri``) or
    ``AmazonCustomerByEmail`` (``email``), the ``xsi:type`` of the Grantee."""

    grantee_type: str
    permission: str
    id: str | None = None
    display_name: str | None = None
    uri: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class AccessControlPolicy:
    """Get/Put Bucket/Object ACL bodies."""

    owner: Owner
    grants: tuple[Grant, ...] = ()

    @classmethod
    def canned(
        cls, acl: CannedAcl, owner: Owner, bucket_owner: Owner | None = None
    ) -> AccessControlPolicy:
        """The grants AWS lists for a canned ACL (``bucket_owner`` for the bucket-owner-*
        ACLs on an object owned by someone else)."""
        grants = [_user_grant(owner, "FULL_CONTROL")]
        if acl in (CannedAcl.PUBLIC_READ, CannedAcl.PUBLIC_READ_WRITE):
            grants.append(Grant("Group", "READ", uri=ALL_USERS))
        if acl is CannedAcl.PUBLIC_READ_WRITE:
            grants.append(Grant("Group", "WRITE", uri=ALL_USERS))
        if acl is CannedAcl.AUTHENTICATED_READ:
            grants.append(Grant("Group", "READ", uri=AUTHENTICATED_USERS))
        if bucket_owner is not None and bucket_owner.id != owner.id:
            if acl is CannedAcl.BUCKET_OWNER_READ:
                grants.append(_user_grant(bucket_owner, "READ"))
            if acl is CannedAcl.BUCKET_OWNER_FULL_CONTROL:
                grants.append(_user_grant(bucket_owner, "FULL_CONTROL"))
        return cls(owner, tuple(grants))

    def as_canned(self) -> CannedAcl | None:
        """The canned ACL these grants amount to (for a PutAcl with a body), else None.

        Only the owner-relative canned forms are recognised (grants compared by grantee
        id or group URI, display names ignored); any other grant (another user,
        WRITE_ACP...) gives None, and the handler answers NotImplemented.
        """
        owner_full = ("CanonicalUser", "FULL_CONTROL", self.owner.id)
        grants = {
            (g.grantee_type, g.permission, g.id if g.grantee_type == "CanonicalUser" else g.uri)
            for g in self.grants
        }
        if owner_full not in grants:
            return None
        return _CANNED_BY_GRANTS.get(frozenset(grants - {owner_full}))

    @classmethod
    def from_xml(cls, body: bytes) -> AccessControlPolicy:
        try:
            root = parse_body(body, "AccessControlPolicy", MAX_CONFIG_BODY)
            pairs = children_of(root, ("Owner", "AccessControlList"))
            owner_el = single(pairs, "Owner")
            if owner_el is None:
                raise malformed()
            o = children_of(owner_el, ("ID", "DisplayName"))
            owner = Owner(required_text(o, "ID"), single_text(o, "DisplayName"))
            grants: list[Grant] = []
            acl = single(pairs, "AccessControlList")
            for _, grant_el in [] if acl is None else children_of(acl, ("Grant",)):
                g = children_of(grant_el, ("Grantee", "Permission"))
                grantee = single(g, "Grantee")
                if grantee is None:
                    raise malformed()
                kind = grantee.get(f"{{{XSI_NS}}}type")
                e = children_of(grantee, ("ID", "DisplayName", "URI", "EmailAddress"))
                permission = required_text(g, "Permission").strip()
                if kind not in ("CanonicalUser", "Group", "AmazonCustomerByEmail") or (
                    permission not in PERMISSIONS
                ):
                    raise malformed()
                grants.append(
                    Grant(
                        kind,
                        permission,
                        single_text(e, "ID"),
                        single_text(e, "DisplayName"),
                        single_text(e, "URI"),
                        single_text(e, "EmailAddress"),
                    )
                )
        except S3Error as exc:
            if exc.code == "MalformedXML":
                raise S3Error("MalformedACLError") from None
            raise
        return cls(owner, tuple(grants))

    def to_xml(self) -> bytes:
        b = document("AccessControlPolicy")
        b.owner("Owner", self.owner)
        acl = b.child("AccessControlList")
        for grant in self.grants:
            g = acl.child("Grant")
            grantee = g.child("Grantee", {"xmlns:xsi": XSI_NS, "xsi:type": grant.grantee_type})
            grantee.text("ID", grant.id)
            grantee.text("DisplayName", grant.display_name)
            grantee.text("URI", grant.uri)
            grantee.text("EmailAddress", grant.email)
            g.text("Permission", grant.permission)
        return serialize(b)


def _user_grant(owner: Owner, permission: str) -> Grant:
    return Grant("CanonicalUser", permission, owner.id, owner.display_name)


#: Grants beyond the owner's FULL_CONTROL -> the canned ACL they make.
_CANNED_BY_GRANTS: Mapping[frozenset[tuple[str, str, str | None]], CannedAcl] = {
    frozenset(): CannedAcl.PRIVATE,
    frozenset({("Group", "READ", ALL_USERS)}): CannedAcl.PUBLIC_READ,
    frozenset(
        {("Group", "READ", ALL_USERS), ("Group", "WRITE", ALL_USERS)}
    ): CannedAcl.PUBLIC_READ_WRITE,
    frozenset({("Group", "READ", AUTHENTICATED_USERS)}): CannedAcl.AUTHENTICATED_READ,
}


# --- policy status, public access block ----------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    is_public: bool

    def to_xml(self) -> bytes:
        b = document("PolicyStatus")
        b.text("IsPublic", self.is_public)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class PublicAccessBlockConfiguration:
    """Put/GetPublicAccessBlock; an element left out of a Put body means false."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    _NAMES: ClassVar[tuple[str, ...]] = (
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    )

    @classmethod
    def from_xml(cls, body: bytes) -> PublicAccessBlockConfiguration:
        root = parse_body(body, "PublicAccessBlockConfiguration", MAX_CONFIG_BODY)
        pairs = children_of(root, cls._NAMES)
        values = [single_text(pairs, n) for n in cls._NAMES]
        a, b, c, d = (False if v is None else parse_bool(v) for v in values)
        return cls(a, b, c, d)

    def to_xml(self) -> bytes:
        b = document("PublicAccessBlockConfiguration")
        b.text("BlockPublicAcls", self.block_public_acls)
        b.text("IgnorePublicAcls", self.ignore_public_acls)
        b.text("BlockPublicPolicy", self.block_public_policy)
        b.text("RestrictPublicBuckets", self.restrict_public_buckets)
        return serialize(b)
