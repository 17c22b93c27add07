"""Access bodies: ACLs (AccessControlPolicy; the grants' meaning is ``kvbox.policy.acl``),
OwnershipControls, PolicyStatus and PublicAccessBlockConfiguration.

Layer: s3 protocol (pure; no I/O). The rules are ``kvbox.s3.xml``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# The group URIs and canned ACL names are kvbox.policy.acl's, re-exported for the XML.
from kvbox.policy.acl import ALL_USERS as ALL_USERS
from kvbox.policy.acl import AUTHENTICATED_USERS as AUTHENTICATED_USERS
from kvbox.policy.acl import CannedAcl as CannedAcl
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

PERMISSIONS = frozenset({"FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP"})


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


@dataclass(frozen=True, slots=True)
class OwnershipControls:
    """Put/GetBucketOwnershipControls: exactly one rule with one ObjectOwnership."""

    object_ownership: str

    VALUES: ClassVar[frozenset[str]] = frozenset(
        {"BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"}
    )

    @classmethod
    def from_xml(cls, body: bytes) -> OwnershipControls:
        root = parse_body(body, "OwnershipControls", MAX_CONFIG_BODY)
        rules = children_of(root, ("Rule",))
        if len(rules) != 1:
            raise malformed()
        value = required_text(children_of(rules[0][1], ("ObjectOwnership",)), "ObjectOwnership")
        if value.strip() not in cls.VALUES:
            raise malformed()
        return cls(value.strip())

    def to_xml(self) -> bytes:
        b = document("OwnershipControls")
        b.child("Rule").text("ObjectOwnership", self.object_ownership)
        return serialize(b)


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
