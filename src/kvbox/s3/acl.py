"""S3's wire forms of ACLs and Object Ownership, to and from ``kvbox.policy.acl`` values.

Layer: s3 protocol (pure; no I/O). Rules, from the S3 API reference (PutBucketAcl,
PutObjectAcl, CreateBucket, PutBucketOwnershipControls) and the user guide's "Access
control list (ACL) overview":

* A request names an ACL in one of three ways: ``x-amz-acl`` (a canned ACL), the
  ``x-amz-grant-*`` headers (``id="..."``, ``uri="..."``, ``emailAddress="..."``,
  comma-separated), or, on Put*Acl, an ``AccessControlPolicy`` body. Both a canned ACL
  and grant headers is InvalidRequest; an ACL header with a body is UnexpectedContent.
* Grantees: a canonical user id (kvbox's ids are principal names; the handler checks
  that the user exists), one of S3's three group URIs, or an e-mail address. kvbox
  users have no e-mail address, so in the regions where AWS accepts e-mail grantees
  (``EMAIL_GRANTEE_REGIONS``) the answer is AWS's for an address that matches no
  account, UnresolvableGrantByEmailAddress; elsewhere it is InvalidArgument, as AWS
  answers outside those regions.
* Object Ownership ``BucketOwnerEnforced`` accepts only ACLs that give the bucket owner
  full control and nothing else (``bucket-owner-full-control``, ``private`` on the
  bucket owner's own resource, or the same grants in XML); anything else is
  AccessControlListNotSupported. Reading an ACL then shows the bucket owner's full
  control, whatever was stored before ACLs were disabled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from kvbox.policy.acl import (
    GROUPS,
    MAX_GRANTS,
    Acl,
    AclError,
    CannedAcl,
    Grant,
    Grantee,
    GranteeType,
    ObjectOwnership,
    Permission,
    canned,
)
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import AccessControlPolicy, Owner
from kvbox.s3.xml import Grant as WireGrant

#: ``x-amz-grant-*`` header -> the permission it grants.
GRANT_HEADERS: Final[Mapping[str, Permission]] = MappingProxyType(
    {
        "x-amz-grant-read": Permission.READ,
        "x-amz-grant-write": Permission.WRITE,
        "x-amz-grant-read-acp": Permission.READ_ACP,
        "x-amz-grant-write-acp": Permission.WRITE_ACP,
        "x-amz-grant-full-control": Permission.FULL_CONTROL,
    }
)
#: Every header that sets an ACL.
ACL_HEADERS: Final = ("x-amz-acl", *GRANT_HEADERS)
#: Where AWS accepts e-mail grantees (the API reference's Grantee page).
EMAIL_GRANTEE_REGIONS: Final = frozenset(
    {
        "us-east-1",
        "us-west-1",
        "us-west-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "eu-west-1",
        "sa-east-1",
    }
)

_GRANTEE_ITEM: Final = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,\s"]*))\s*(?:,|$)')


def parse_canned(value: str) -> CannedAcl:
    """``x-amz-acl``; an unknown value is InvalidArgument, as AWS answers.

    >>> parse_canned("public-read")
    <CannedAcl.PUBLIC_READ: 'public-read'>
    """
    try:
        return CannedAcl(value.strip())
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            extra={"ArgumentName": "x-amz-acl", "ArgumentValue": value},
        ) from None


def _bad_grant(header: str, value: str, why: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        why,
        extra={"ArgumentName": header, "ArgumentValue": value},
    )


def _email(address: str, region: str) -> S3Error:
    if region in EMAIL_GRANTEE_REGIONS:
        return S3Error(
            "UnresolvableGrantByEmailAddress",
            extra={"EmailAddress": address},
        )
    return S3Error(
        "InvalidArgument",
        f"E-mail grantees are not supported in the region {region}",
        extra={"ArgumentName": "emailAddress", "ArgumentValue": address},
    )


def _group(uri: str, argument: str) -> Grantee:
    if uri not in GROUPS:
        raise S3Error(
            "InvalidArgument",
            "Invalid group uri",
            extra={"ArgumentName": argument, "ArgumentValue": uri},
        )
    return Grantee.group(uri)


def parse_grant_header(header: str, value: str, region: str) -> list[Grant]:
    """One ``x-amz-grant-*`` header: ``id="a", uri="http://...", emailAddress="x@y"``.

    >>> [g.grantee.value for g in parse_grant_header("x-amz-grant-read", 'id="alice"', "")]
    ['alice']
    """
    permission = GRANT_HEADERS[header]
    out: list[Grant] = []
    pos = 0
    text = value.strip()
    if not text:
        raise _bad_grant(header, value, "A grant header must name at least one grantee")
    while pos < len(text):
        m = _GRANTEE_ITEM.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad_grant(header, value, "Grantee must be id=, uri= or emailAddress=")
        kind, quoted, bare = m.group(1).lower(), m.group(2), m.group(3)
        item = quoted if quoted is not None else bare
        if not item:
            raise _bad_grant(header, value, "A grantee needs a value")
        if kind == "id":
            out.append(Grant(Grantee.user(item), permission))
        elif kind == "uri":
            out.append(Grant(_group(item, header), permission))
        elif kind == "emailaddress":
            raise _email(item, region)
        else:
            raise _bad_grant(header, value, f"Unknown grantee type {m.group(1)}")
        pos = m.end()
    return out


def requested_acl(
    headers: Mapping[str, str], owner: str, bucket_owner: str | None, region: str
) -> Acl | None:
    """The ACL a write's headers ask for (None when they name none).

    ``owner`` owns the resource the ACL goes on; ``bucket_owner`` is the bucket's owner
    when that resource is an object (None for a bucket)."""
    canned_value = headers.get("x-amz-acl")
    grant_values = [(h, headers.get(h)) for h in GRANT_HEADERS]
    given = [(h, v) for h, v in grant_values if v is not None]
    if canned_value is not None and given:
        raise S3Error(
            "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
        )
    if canned_value is not None:
        return canned(parse_canned(canned_value), owner, bucket_owner)
    if not given:
        return None
    grants: list[Grant] = []
    for header, value in given:
        assert value is not None
        grants += parse_grant_header(header, value, region)
    return _checked(Acl(owner, tuple(grants)))


def _checked(acl: Acl) -> Acl:
    if len(acl.grants) > MAX_GRANTS:
        raise S3Error("MalformedACLError", f"An ACL can have at most {MAX_GRANTS} grants")
    return acl


def acl_from_document(doc: AccessControlPolicy, owner: str, region: str) -> Acl:
    """An ``AccessControlPolicy`` body as the ACL it sets on a resource of ``owner``.

    The body's Owner cannot change who owns the resource (that is not what an ACL
    does), so it must name the current owner, or AccessDenied, as on AWS."""
    if doc.owner.id != owner:
        raise S3Error("AccessDenied", "The Owner in the ACL is not the resource's owner")
    grants: list[Grant] = []
    for g in doc.grants:
        permission = Permission(g.permission)
        if g.grantee_type == GranteeType.CANONICAL_USER:
            if not g.id:
                raise S3Error("MalformedACLError", "A CanonicalUser grantee needs an ID")
            grants.append(Grant(Grantee.user(g.id), permission))
        elif g.grantee_type == GranteeType.GROUP:
            if not g.uri:
                raise S3Error("MalformedACLError", "A Group grantee needs a URI")
            grants.append(Grant(_group(g.uri, "Grantee/URI"), permission))
        else:
            raise _email(g.email or "", region)
    return _checked(Acl(owner, tuple(grants)))


def document_of(acl: Acl) -> AccessControlPolicy:
    """The ``AccessControlPolicy`` GetBucketAcl/GetObjectAcl answer for ``acl``."""
    wire: list[WireGrant] = []
    for g in acl.grants:
        if g.grantee.type is GranteeType.CANONICAL_USER:
            wire.append(
                WireGrant(
                    GranteeType.CANONICAL_USER.value,
                    g.permission.value,
                    id=g.grantee.value,
                    display_name=g.grantee.value,
                )
            )
        else:
            wire.append(WireGrant(GranteeType.GROUP.value, g.permission.value, uri=g.grantee.value))
    return AccessControlPolicy(Owner(acl.owner, acl.owner), tuple(wire))


def users_named(acl: Acl) -> set[str]:
    """The canonical user ids an ACL grants to (the handler checks each exists)."""
    return {g.grantee.value for g in acl.grants if g.grantee.type is GranteeType.CANONICAL_USER}


def check_enforced(acl: Acl, ownership: ObjectOwnership, bucket_owner: str) -> None:
    """With ACLs disabled, only "bucket owner full control" may be set."""
    if ownership is ObjectOwnership.BUCKET_OWNER_ENFORCED and not acl.only_full_control_to(
        bucket_owner
    ):
        raise S3Error("AccessControlListNotSupported")


def parse_ownership(value: str, argument: str = "x-amz-object-ownership") -> ObjectOwnership:
    """``x-amz-object-ownership`` on CreateBucket: InvalidArgument unless a known value."""
    try:
        return ObjectOwnership(value.strip())
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            "Invalid x-amz-object-ownership header",
            extra={"ArgumentName": argument, "ArgumentValue": value},
        ) from None


def stored_acl(text: str | None, owner: str, bucket_owner: str | None = None) -> Acl:
    """A stored ACL attr (None: private) as an ``Acl``; damage is an InternalError."""
    try:
        return (
            canned(CannedAcl.PRIVATE, owner)
            if text is None
            else Acl.from_text(text, owner, bucket_owner)
        )
    except AclError:
        raise S3Error("InternalError", "A stored ACL does not parse") from None


def public_grants(grants: Iterable[Grant]) -> bool:
    return any(g.grantee.is_public for g in grants)
