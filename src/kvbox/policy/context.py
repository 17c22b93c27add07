"""Condition keys: where the value of every key a policy may test comes from.

Layer: policy (pure; no I/O, no clock of its own). Rules:

* ``KEY_SOURCES`` has one row for every key of ``conditions.KNOWN_KEYS`` and every
  tag-key prefix (``conditions.TAG_KEY_PREFIXES``): either a filler that reads the value
  from the ``RequestFacts`` a front door gathered, or ``Unsupported`` with the reason
  kvbox can never know it. ``tests/policy/test_context.py`` walks ``KNOWN_KEYS`` and
  fails on a key without a row, so a key cannot be accepted and then silently never
  filled.
* A new bucket policy that tests an unsupported key (in a condition, or as a policy
  variable) is refused, naming the key (``check_supported``): on AWS such a condition
  means something; here it could only ever see the key as absent, which turns a Deny
  into a no-op. Policies stored before this rule keep evaluating such keys as absent.
* A filler returns None when the request does not carry the fact: the key is then
  absent, exactly as on AWS for a request without that header or parameter.
* Keys a handler learns only later (``s3:ExistingObjectTag/*``: the stored version's
  tags, read only when a policy names them) come in ``RequestFacts.extra``.

Sources: AWS's "AWS global condition context keys" and the Service Authorization
Reference's "Condition keys for Amazon S3".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from kvbox.errors import PolicyError
from kvbox.policy.conditions import (
    KNOWN_KEYS,
    TAG_KEY_PREFIXES,
    VERSION_2012,
    ContextValue,
)
from kvbox.policy.language import Policy

__all__ = [
    "KEY_SOURCES",
    "LIST_OPERATIONS",
    "OBJECT_CREATION_OPERATIONS",
    "RequestFacts",
    "Unsupported",
    "build_context",
    "check_supported",
    "unsupported_keys",
]

ROOT: Final = "root"

#: Operations whose query parameters are the s3:prefix / delimiter / max-keys keys.
LIST_OPERATIONS: Final = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions"})
#: s3:ObjectCreationOperation's values: the operations that create an object or a part
#: of one (AWS's conditional-write policies exempt the multipart steps through it).
OBJECT_CREATION_OPERATIONS: Final = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    }
)
_DAY_SECONDS: Final = 86_400


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a front door knows about one request, as plain values.

    ``headers`` may be any mapping; ``header`` looks names up case-insensitively.
    ``operation`` is AWS's operation name (``PutObject``).
    """

    principal: str | None
    operation: str = ""
    now: datetime | None = None
    region: str | None = None
    source_ip: str | None = None
    secure: bool | None = None
    #: ``1.2`` / ``1.3`` for a TLS connection (s3:TlsVersion), else None.
    tls_version: str | None = None
    #: ``REST-HEADER``, ``REST-QUERY-STRING`` or ``POST``; None for anonymous requests.
    auth_type: str | None = None
    #: ``AWS4-HMAC-SHA256`` or ``AWS`` (SigV2); None for anonymous requests.
    signature_version: str | None = None
    #: When the request was signed (s3:signatureAge), when the signature says.
    signed_at: datetime | None = None
    headers: Mapping[str, str] = field(default_factory=_empty)
    params: Mapping[str, str] = field(default_factory=_empty)
    version_id: str | None = None
    #: The tags the request sets (``x-amz-tagging``), parsed by the caller.
    request_tags: tuple[tuple[str, str], ...] = ()
    #: The bucket's tags (aws:ResourceTag/*).
    bucket_tags: Mapping[str, str] = field(default_factory=_empty)
    #: Keys the caller fills itself, which win (``s3:ExistingObjectTag/*``...).
    extra: Mapping[str, ContextValue] = field(default_factory=_empty)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is not None:
            return value
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A key kvbox accepts in no new policy, and why it can never hold a value here."""

    reason: str


Filler = Callable[[RequestFacts], ContextValue | None]


def _header(name: str) -> Filler:
    return lambda f: f.header(name)


def _list_param(name: str) -> Filler:
    return lambda f: f.params.get(name) if f.operation in LIST_OPERATIONS else None


def _always(value: str) -> Filler:
    return lambda _: value


def _principal_type(f: RequestFacts) -> str:
    if f.principal is None:
        return "Anonymous"
    return "Account" if f.principal == ROOT else "User"


def _user(f: RequestFacts) -> str | None:
    return f.principal if f.principal not in (None, ROOT) else None


def _current_time(f: RequestFacts) -> str | None:
    return f.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if f.now else None


def _epoch_time(f: RequestFacts) -> str | None:
    return str(int(f.now.timestamp())) if f.now else None


def _secure(f: RequestFacts) -> str | None:
    return None if f.secure is None else ("true" if f.secure else "false")


def _signature_age(f: RequestFacts) -> str | None:
    if f.now is None or f.signed_at is None:
        return None
    return str(max(0, int((f.now - f.signed_at).total_seconds() * 1000)))


def _creation(f: RequestFacts) -> str | None:
    return f.operation if f.operation in OBJECT_CREATION_OPERATIONS else None


def _tag_keys(f: RequestFacts) -> ContextValue | None:
    return [k for k, _ in f.request_tags] if f.request_tags else None


def _remaining_retention_days(f: RequestFacts) -> str | None:
    """Whole days from now to ``x-amz-object-lock-retain-until-date`` (AWS rounds down)."""
    raw = f.header("x-amz-object-lock-retain-until-date")
    if raw is None or f.now is None:
        return None
    try:
        until = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None  # the handler refuses the malformed date
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    return str(max(0, int((until - f.now).total_seconds() // _DAY_SECONDS)))


_SERVICES = Unsupported("no AWS service calls kvbox on anyone's behalf")
_SESSIONS = Unsupported(
    "kvbox has long-term access keys only: no federation, session tokens or MFA"
)
_ACCOUNT = Unsupported("kvbox is a single account without an AWS account id")
_ORGS = Unsupported("kvbox has no AWS Organizations")
_VPC = Unsupported("kvbox has no VPC endpoints")
_ACCESS_POINTS = Unsupported("kvbox has no access points or S3 Access Grants")
_REQUEST_TAGS = Unsupported(
    "kvbox's tagging requests carry their tags in the body, which the access decision "
    "does not read (use s3:RequestObjectTag for x-amz-tagging)"
)

#: Every key a policy may name, as AWS spells it -> where its value comes from (tag-key
#: prefixes end with ``/``).
_ROWS: Final[Mapping[str, Filler | Unsupported]] = MappingProxyType(
    {
        # --- who and when
        "aws:CurrentTime": _current_time,
        "aws:EpochTime": _epoch_time,
        "aws:PrincipalType": _principal_type,
        "aws:username": _user,
        "aws:userid": _user,
        "aws:PrincipalIsAWSService": _always("false"),
        "aws:ViaAWSService": _always("false"),
        "aws:RequestedRegion": lambda f: f.region,
        # --- the connection
        "aws:SourceIp": lambda f: f.source_ip,
        "aws:SecureTransport": _secure,
        "aws:UserAgent": _header("user-agent"),
        "aws:Referer": _header("referer"),
        "s3:TlsVersion": lambda f: f.tls_version,
        # --- the signature
        "s3:authType": lambda f: f.auth_type,
        "s3:signatureversion": lambda f: f.signature_version,
        "s3:signatureAge": _signature_age,
        # --- the operation and its parameters
        "s3:prefix": _list_param("prefix"),
        "s3:delimiter": _list_param("delimiter"),
        "s3:max-keys": _list_param("max-keys"),
        "s3:VersionId": lambda f: f.version_id,
        "s3:ObjectCreationOperation": _creation,
        "s3:if-match": _header("if-match"),
        "s3:if-none-match": _header("if-none-match"),
        "s3:x-amz-acl": _header("x-amz-acl"),
        "s3:x-amz-content-sha256": _header("x-amz-content-sha256"),
        "s3:x-amz-copy-source": _header("x-amz-copy-source"),
        "s3:x-amz-grant-full-control": _header("x-amz-grant-full-control"),
        "s3:x-amz-grant-read": _header("x-amz-grant-read"),
        "s3:x-amz-grant-read-acp": _header("x-amz-grant-read-acp"),
        "s3:x-amz-grant-write": _header("x-amz-grant-write"),
        "s3:x-amz-grant-write-acp": _header("x-amz-grant-write-acp"),
        "s3:x-amz-metadata-directive": _header("x-amz-metadata-directive"),
        "s3:x-amz-server-side-encryption": _header("x-amz-server-side-encryption"),
        "s3:x-amz-server-side-encryption-aws-kms-key-id": _header(
            "x-amz-server-side-encryption-aws-kms-key-id"
        ),
        "s3:x-amz-server-side-encryption-customer-algorithm": _header(
            "x-amz-server-side-encryption-customer-algorithm"
        ),
        "s3:x-amz-storage-class": _header("x-amz-storage-class"),
        "s3:x-amz-website-redirect-location": _header("x-amz-website-redirect-location"),
        "s3:object-lock-legal-hold": _header("x-amz-object-lock-legal-hold"),
        "s3:object-lock-mode": _header("x-amz-object-lock-mode"),
        "s3:object-lock-retain-until-date": _header("x-amz-object-lock-retain-until-date"),
        "s3:object-lock-remaining-retention-days": _remaining_retention_days,
        "s3:RequestObjectTagKeys": _tag_keys,
        # --- tag keys (the suffix after the slash is the tag's key)
        "s3:RequestObjectTag/": lambda f: None,  # expanded in build_context
        "s3:ExistingObjectTag/": lambda f: None,  # the caller's ``extra``
        "aws:ResourceTag/": lambda f: None,  # expanded in build_context
        "aws:RequestTag/": _REQUEST_TAGS,
        "aws:TagKeys": _REQUEST_TAGS,
        "aws:PrincipalTag/": Unsupported("kvbox users have no tags"),
        # --- what kvbox has none of
        "aws:CalledVia": _SERVICES,
        "aws:CalledViaFirst": _SERVICES,
        "aws:CalledViaLast": _SERVICES,
        "aws:PrincipalServiceName": _SERVICES,
        "aws:PrincipalServiceNamesList": _SERVICES,
        "aws:SourceAccount": _SERVICES,
        "aws:SourceArn": _SERVICES,
        "aws:SourceOwner": _SERVICES,
        "aws:FederatedProvider": _SESSIONS,
        "aws:TokenIssueTime": _SESSIONS,
        "aws:SourceIdentity": _SESSIONS,
        "aws:MultiFactorAuthAge": _SESSIONS,
        "aws:MultiFactorAuthPresent": _SESSIONS,
        "aws:PrincipalAccount": _ACCOUNT,
        "aws:PrincipalArn": _ACCOUNT,
        "aws:ResourceAccount": _ACCOUNT,
        "s3:ResourceAccount": _ACCOUNT,
        "aws:PrincipalOrgID": _ORGS,
        "aws:PrincipalOrgPaths": _ORGS,
        "aws:ResourceOrgID": _ORGS,
        "aws:ResourceOrgPaths": _ORGS,
        "aws:SourceOrgID": _ORGS,
        "aws:SourceOrgPaths": _ORGS,
        "aws:SourceVpc": _VPC,
        "aws:SourceVpce": _VPC,
        "aws:SourceVpcArn": _VPC,
        "aws:VpcSourceIp": _VPC,
        "s3:AccessGrantsInstanceArn": _ACCESS_POINTS,
        "s3:AccessPointNetworkOrigin": _ACCESS_POINTS,
        "s3:DataAccessPointAccount": _ACCESS_POINTS,
        "s3:DataAccessPointArn": _ACCESS_POINTS,
        "s3:LocationConstraint": Unsupported(
            "only CreateBucket carries it, and no bucket policy governs CreateBucket"
        ),
    }
)
#: The same rows by lower-cased key (condition keys are case-insensitive).
KEY_SOURCES: Final[Mapping[str, Filler | Unsupported]] = MappingProxyType(
    {k.lower(): v for k, v in _ROWS.items()}
)


def _source(key_lower: str) -> Filler | Unsupported | None:
    found = KEY_SOURCES.get(key_lower)
    if found is not None:
        return found
    for prefix in TAG_KEY_PREFIXES:
        if key_lower.startswith(prefix):
            return KEY_SOURCES.get(prefix)
    return None


def build_context(facts: RequestFacts) -> dict[str, ContextValue]:
    """Every condition key the request has a value for, spelled as AWS spells it.

    >>> ctx = build_context(RequestFacts("alice", "ListObjectsV2", params={"prefix": "a/"}))
    >>> ctx["aws:username"], ctx["s3:prefix"], "s3:delimiter" in ctx
    ('alice', 'a/', False)
    """
    ctx: dict[str, ContextValue] = {}
    for key, source in _ROWS.items():
        if isinstance(source, Unsupported) or key.endswith("/"):
            continue
        value = source(facts)
        if value is not None:
            ctx[key] = value
    for tag, text in facts.request_tags:
        ctx["s3:RequestObjectTag/" + tag] = text
    for tag, text in facts.bucket_tags.items():
        ctx["aws:ResourceTag/" + tag] = text
    if facts.extra:
        spelled = {k.lower(): k for k in ctx}
        for k, v in facts.extra.items():
            ctx.pop(spelled.get(k.lower(), k), None)
            ctx[k] = v
    return ctx


_VARIABLE = re.compile(r"\$\{\s*([A-Za-z0-9:/_.\-]+)\s*(?:,[^}]*)?\}")


def _named_keys(policy: Policy) -> Iterator[str]:
    for statement in policy.statements:
        for condition in statement.conditions:
            yield condition.key_lower
    if policy.version == VERSION_2012:
        for m in _VARIABLE.finditer(policy.text):
            yield m.group(1).lower()


def unsupported_keys(policy: Policy) -> list[tuple[str, str]]:
    """``(key, reason)`` for each key the policy names that kvbox can never fill."""
    out: dict[str, str] = {}
    for key in _named_keys(policy):
        source = _source(key)
        if isinstance(source, Unsupported):
            out.setdefault(key, source.reason)
    return sorted(out.items())


def check_supported(policy: Policy) -> None:
    """Refuse a new policy that tests a key kvbox can never fill (module docstring)."""
    found = unsupported_keys(policy)
    if found:
        key, reason = found[0]
        raise PolicyError(f"Policy has a condition key kvbox does not support: {key!r} ({reason})")


def _check_table() -> None:
    """Every accepted key has a row (run at import: a gap is a programming error)."""
    rows = set(KEY_SOURCES)
    missing = sorted((KNOWN_KEYS | set(TAG_KEY_PREFIXES)) - rows)
    extra = sorted(rows - KNOWN_KEYS - set(TAG_KEY_PREFIXES))
    if missing or extra:  # pragma: no cover - guards the literal above
        raise RuntimeError(f"KEY_SOURCES out of step: missing {missing}, unknown {extra}")


_check_table()
