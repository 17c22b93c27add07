"""The whole access decision for one request to a bucket: ``decide(AccessQuery)``.

Layer: policy (pure; no I/O, no clock: the time arrives in the context). It folds, in
this order, what AWS's "How Amazon S3 authorizes a request" folds for a bucket owned by
the account the requester belongs to (kvbox has one account: root's):

1. **root** is the account. It may do anything a bucket policy does not explicitly deny
   to it (a Deny naming ``"*"`` or root applies, as on AWS), except that root is never
   denied ``ROOT_ALWAYS`` (Get/Put/DeleteBucketPolicy): AWS keeps the account's root
   user able to repair a policy that locks everyone out, and so does kvbox.
2. **The bucket owner** (a user) is allowed by identity unless a policy statement
   explicitly denies it.
3. **Anyone else** (another user, or anonymous when ``principal`` is None) needs a
   grant: an explicit Deny in the policy ends it; a policy Allow grants it, unless
   ``RestrictPublicBuckets`` is on and the policy is public, which cuts anonymous
   requests off from the policy (every kvbox user is inside the owner's account, the
   one AWS keeps); then the canned ACLs: the bucket's for bucket reads and object
   writes, the object's for object reads, none of them counting when
   ``IgnorePublicAcls`` is on (every grant a canned ACL makes beyond the owner is to
   AllUsers or AuthenticatedUsers, so every one is public). Nothing else: denied.

Canned ACL meaning (AWS's "ACL permission to access policy permission mapping"):
bucket READ is ``BUCKET_READ``, bucket WRITE is ``BUCKET_WRITE`` (kvbox adds
AbortMultipartUpload and ListMultipartUploadParts: whoever may upload parts may list and
abandon them), object READ is ``OBJECT_READ``. ``public-read`` grants READ to everyone,
``public-read-write`` READ and WRITE (on an object, only READ means anything),
``authenticated-read`` READ to any signed request; ``private`` and the bucket-owner-*
ACLs grant nothing beyond the owner (objects belong to the bucket owner in kvbox).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol

from kvbox.policy.conditions import ContextValue, RequestContext
from kvbox.policy.context import RequestFacts, build_context
from kvbox.policy.evaluate import Evaluation, evaluate, is_public, principal_label, trace
from kvbox.policy.language import ROOT, Policy, Statement

#: Actions root is never denied: the way out of a policy that denies everyone.
ROOT_ALWAYS: Final = frozenset(
    {"s3:getbucketpolicy", "s3:putbucketpolicy", "s3:deletebucketpolicy"}
)

BUCKET_READ: Final = frozenset(
    {"s3:listbucket", "s3:listbucketversions", "s3:listbucketmultipartuploads"}
)
BUCKET_WRITE: Final = frozenset(
    {
        "s3:putobject",
        "s3:deleteobject",
        "s3:deleteobjectversion",
        "s3:abortmultipartupload",
        "s3:listmultipartuploadparts",
    }
)
OBJECT_READ: Final = frozenset({"s3:getobject", "s3:getobjectversion"})

#: Canned ACLs that grant something to AllUsers or AuthenticatedUsers (S3 calls both
#: public): BlockPublicAcls refuses them, IgnorePublicAcls ignores them.
PUBLIC_ACLS: Final = frozenset({"public-read", "public-read-write", "authenticated-read"})
PRIVATE: Final = "private"


def would_be_public_acl(canned: str) -> bool:
    """Whether a canned ACL is public (what BlockPublicAcls refuses on a PUT).

    >>> [would_be_public_acl(a) for a in ("private", "public-read", "authenticated-read")]
    [False, True, True]
    """
    return canned.strip().lower() in PUBLIC_ACLS


class PublicAccessSettings(Protocol):
    """The four Block Public Access flags (``kvbox.s3.xml.PublicAccessBlockConfiguration``
    has this shape)."""

    @property
    def block_public_acls(self) -> bool: ...
    @property
    def ignore_public_acls(self) -> bool: ...
    @property
    def block_public_policy(self) -> bool: ...
    @property
    def restrict_public_buckets(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PublicAccessFlags:
    """A plain PublicAccessSettings (none set: what a bucket without the setting has)."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False


NO_BLOCK: Final = PublicAccessFlags()
_EMPTY: RequestContext = MappingProxyType({})


class DecidedBy(enum.StrEnum):
    ROOT = "root"
    OWNER = "owner"
    POLICY_ALLOW = "policy-allow"
    POLICY_DENY = "policy-deny"
    BUCKET_ACL = "bucket-acl"
    OBJECT_ACL = "object-acl"
    PUBLIC_ACCESS_BLOCK = "public-access-block"
    DEFAULT_DENY = "default-deny"


@dataclass(frozen=True, slots=True)
class AccessQuery:
    """Everything one decision reads. ``principal``: "root", a user name, None for
    anonymous. ``object_acl``: the canned ACL of the object version an object read
    would return (None: no such object, or not an object request)."""

    principal: str | None
    action: str
    resource: str
    bucket: str
    bucket_owner: str
    policy: Policy | None = None
    bucket_acl: str = PRIVATE
    object_acl: str | None = None
    public_access_block: PublicAccessSettings = NO_BLOCK
    context: RequestContext = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: allowed or not, what decided it, the deciding policy statement (if a
    statement did), and one line for a human."""

    allowed: bool
    decided_by: DecidedBy
    reason: str
    statement: Statement | None = None

    @property
    def statement_index(self) -> int | None:
        return None if self.statement is None else self.statement.index

    @property
    def sid(self) -> str | None:
        return None if self.statement is None else self.statement.sid

    def to_json(self) -> dict[str, Any]:
        st = self.statement
        return {
            "allowed": self.allowed,
            "decided_by": str(self.decided_by),
            "reason": self.reason,
            "statement": None
            if st is None
            else {
                "index": st.index,
                "sid": st.sid,
                "effect": str(st.effect),
                "json": json.loads(st.source),
            },
        }


def decide(query: AccessQuery) -> Decision:
    """The access decision for one request; see the module docstring for the order."""
    principal = query.principal
    action = query.action.lower()
    policy = query.policy
    if principal == ROOT:
        if action in ROOT_ALWAYS:
            return Decision(
                True,
                DecidedBy.ROOT,
                f"root may always {query.action}, so no bucket policy can lock "
                f"{query.bucket} away for good",
            )
        ev = _evaluate(query)
        if ev is not None and ev.denied:
            return _denied_by_policy(ev)
        return Decision(
            True, DecidedBy.ROOT, "root is the account and no policy statement denies it"
        )
    ev = _evaluate(query)
    if ev is not None and ev.denied:
        return _denied_by_policy(ev)
    if principal is not None and principal == query.bucket_owner:
        return Decision(
            True,
            DecidedBy.OWNER,
            f"{principal} owns bucket {query.bucket} and no policy statement denies it",
        )
    who = principal_label(principal)
    pab = query.public_access_block
    blocked: list[str] = []
    if ev is not None and ev.allowed:
        assert policy is not None and ev.statement is not None
        if principal is None and pab.restrict_public_buckets and is_public(policy):
            blocked.append(
                f"RestrictPublicBuckets is on and the bucket policy is public, so "
                f"{ev.statement.label} (which allows {query.action}) does not apply to "
                "anonymous requests"
            )
        else:
            return Decision(True, DecidedBy.POLICY_ALLOW, ev.reason, ev.statement)
    grant = _acl_grant(query, action)
    if grant is not None:
        by, canned, what = grant
        if pab.ignore_public_acls:
            blocked.append(f"IgnorePublicAcls is on, so the {what} ACL {canned} grants nothing")
        else:
            reason = f"the {what} ACL {canned} grants {query.action} to {_grantee(canned)}"
            return Decision(True, by, "; ".join([reason, *blocked]))
    if blocked:
        return Decision(False, DecidedBy.PUBLIC_ACCESS_BLOCK, "; ".join(blocked))
    return Decision(False, DecidedBy.DEFAULT_DENY, _nothing_grants(query, who, ev))


def _evaluate(query: AccessQuery) -> Evaluation | None:
    if query.policy is None:
        return None
    return evaluate(query.policy, query.principal, query.action, query.resource, query.context)


def _denied_by_policy(ev: Evaluation) -> Decision:
    return Decision(False, DecidedBy.POLICY_DENY, ev.reason, ev.statement)


def _grantee(canned: str) -> str:
    return "any signed request" if canned == "authenticated-read" else "everyone"


def _acl_grant(query: AccessQuery, action: str) -> tuple[DecidedBy, str, str] | None:
    """(who decided, canned ACL, "bucket"/"object") when a canned ACL grants ``action``."""
    anonymous = query.principal is None
    bucket_acl = query.bucket_acl.strip().lower()
    if (action in BUCKET_READ and _reads(bucket_acl, anonymous)) or (
        action in BUCKET_WRITE and bucket_acl == "public-read-write"
    ):
        return DecidedBy.BUCKET_ACL, bucket_acl, "bucket"
    if query.object_acl is not None and action in OBJECT_READ:
        object_acl = query.object_acl.strip().lower()
        if _reads(object_acl, anonymous):
            return DecidedBy.OBJECT_ACL, object_acl, "object"
    return None


def _reads(canned: str, anonymous: bool) -> bool:
    if canned in ("public-read", "public-read-write"):
        return True
    return canned == "authenticated-read" and not anonymous


def _nothing_grants(query: AccessQuery, who: str, ev: Evaluation | None) -> str:
    policy = "there is no bucket policy" if ev is None else "no bucket policy statement applies"
    acls = f"the bucket ACL is {query.bucket_acl}"
    if query.object_acl is not None:
        acls += f" and the object ACL is {query.object_acl}"
    return (
        f"nothing grants {query.action} on {query.resource} to {who}: {policy}, {acls}, "
        f"and {who} does not own bucket {query.bucket}"
    )


# --- request context and explanations ---------------------------------------------------


def request_context(
    principal: str | None,
    *,
    now: datetime | None = None,
    source_ip: str | None = None,
    secure_transport: bool | None = None,
    user_agent: str | None = None,
    referer: str | None = None,
    auth_type: str | None = None,
    signature_version: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: RequestContext | None = None,
) -> dict[str, ContextValue]:
    """``kvbox.policy.context.build_context`` for the facts most callers have; ``extra``
    (keys the caller fills itself: ``s3:prefix``, ``s3:ExistingObjectTag/...``) wins.

    ``auth_type`` is ``REST-HEADER`` or ``REST-QUERY-STRING`` (s3:authType);
    ``signature_version`` ``AWS4-HMAC-SHA256`` or ``AWS``; ``headers``: further request
    headers the keys read (``x-amz-object-lock-*``). Unknown facts stay absent.
    """
    known = {
        name: value
        for name, value in (("user-agent", user_agent), ("referer", referer))
        if value is not None
    }
    if headers:
        known.update(headers)
    return build_context(
        RequestFacts(
            principal,
            now=now,
            source_ip=source_ip,
            secure=secure_transport,
            auth_type=auth_type,
            signature_version=signature_version,
            headers=known,
            extra=dict(extra or {}),
        )
    )


def explain_query(query: AccessQuery) -> dict[str, Any]:
    """The decision and everything that went into it, as JSON-ready data: what
    ``kvbox policy explain`` prints, offline or from a server."""
    decision = decide(query)
    pab = query.public_access_block
    out = decision.to_json()
    out.update(
        {
            "principal": principal_label(query.principal),
            "action": query.action,
            "resource": query.resource,
            "context": {k: v if isinstance(v, str) else list(v) for k, v in query.context.items()},
            "bucket": {
                "name": query.bucket,
                "owner": query.bucket_owner,
                "acl": query.bucket_acl,
                "object_acl": query.object_acl,
                "public_access_block": {
                    "BlockPublicAcls": pab.block_public_acls,
                    "IgnorePublicAcls": pab.ignore_public_acls,
                    "BlockPublicPolicy": pab.block_public_policy,
                    "RestrictPublicBuckets": pab.restrict_public_buckets,
                },
                "policy": query.policy is not None,
                "policy_public": query.policy is not None and is_public(query.policy),
            },
            "trace": []
            if query.policy is None
            else trace(query.policy, query.principal, query.action, query.resource, query.context),
        }
    )
    return out
