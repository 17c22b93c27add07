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
   one AWS keeps); then the ACLs (``kvbox.policy.acl``): the bucket's for bucket
   actions and object writes, the object's for reads and ACL operations on it. With
   ``IgnorePublicAcls`` on, grants to AllUsers and AuthenticatedUsers count for
   nothing (a grant to a named user still does). Nothing else: denied.

Object Ownership (``AccessQuery.ownership``): with ``BucketOwnerEnforced`` ACLs are
disabled and grant nothing, and every object belongs to the bucket owner. Otherwise an
object may belong to its writer (``object_owner``); for the actions that object's owner
decides (``acl.OBJECT_SCOPED``: reading it, its ACL, its tags) the object's owner is
allowed by identity and anyone else, the bucket owner included, needs a grant in the
object's ACL: the bucket's policy cannot give away an object the bucket owner does not
own, as on AWS. An explicit Deny in the bucket policy still applies to everyone.

ACLs arrive as ``Acl`` values or in their stored text form (a canned ACL's name, as
kvbox kept ACLs before grants, or the grants' JSON; see ``acl.Acl.to_text``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol

from kvbox.policy.acl import (
    LEGACY_OWNERSHIP,
    OBJECT_ACL_ACTIONS,
    OBJECT_SCOPED,
    Acl,
    AclError,
    Grant,
    ObjectOwnership,
    acl_of,
    canned,
)
from kvbox.policy.conditions import ContextValue, RequestContext
from kvbox.policy.context import RequestFacts, build_context
from kvbox.policy.evaluate import Evaluation, evaluate, is_public, principal_label, trace
from kvbox.policy.language import ROOT, Policy, Statement

#: Actions root is never denied: the way out of a policy that denies everyone.
ROOT_ALWAYS: Final = frozenset(
    {"s3:getbucketpolicy", "s3:putbucketpolicy", "s3:deletebucketpolicy"}
)

PRIVATE: Final = "private"


def would_be_public_acl(canned_acl: str) -> bool:
    """Whether a canned ACL is public (what BlockPublicAcls refuses on a PUT).

    >>> [would_be_public_acl(a) for a in ("private", "public-read", "authenticated-read")]
    [False, True, True]
    """
    try:
        return canned(canned_acl, "owner").is_public
    except AclError:
        return False


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
    OBJECT_OWNER = "object-owner"
    BUCKET_ACL = "bucket-acl"
    OBJECT_ACL = "object-acl"
    PUBLIC_ACCESS_BLOCK = "public-access-block"
    DEFAULT_DENY = "default-deny"


@dataclass(frozen=True, slots=True)
class AccessQuery:
    """Everything one decision reads. ``principal``: "root", a user name, None for
    anonymous. ``bucket_acl``: the bucket's ACL. ``object_acl``: the ACL of the object
    version an object request names (None: no such object, or not looked up);
    ``object_owner``: that version's owner (None: the bucket owner). ACLs may be given
    as ``Acl`` values or in their stored text form (a canned name, or JSON)."""

    principal: str | None
    action: str
    resource: str
    bucket: str
    bucket_owner: str
    policy: Policy | None = None
    bucket_acl: Acl | str = PRIVATE
    object_acl: Acl | str | None = None
    public_access_block: PublicAccessSettings = NO_BLOCK
    context: RequestContext = field(default_factory=lambda: _EMPTY)
    ownership: ObjectOwnership = LEGACY_OWNERSHIP
    object_owner: str | None = None

    @property
    def acls_enabled(self) -> bool:
        return self.ownership is not ObjectOwnership.BUCKET_OWNER_ENFORCED

    @property
    def owner_of_object(self) -> str:
        """Who owns the object the query names (the bucket owner when ACLs are off)."""
        if self.object_owner is None or not self.acls_enabled:
            return self.bucket_owner
        return self.object_owner

    def bucket_acl_value(self) -> Acl:
        return acl_of(self.bucket_acl, self.bucket_owner)

    def object_acl_value(self) -> Acl | None:
        if self.object_acl is None:
            return None
        return acl_of(self.object_acl, self.owner_of_object, self.bucket_owner)


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
    owner = query.owner_of_object
    if action in OBJECT_SCOPED and owner != query.bucket_owner:
        return _foreign_object(query, principal, action, owner)
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
    granted = _acl_grant(query, principal, action, blocked)
    if granted is not None:
        return granted
    if blocked:
        return Decision(False, DecidedBy.PUBLIC_ACCESS_BLOCK, "; ".join(blocked))
    return Decision(False, DecidedBy.DEFAULT_DENY, _nothing_grants(query, who, ev))


def _foreign_object(query: AccessQuery, principal: str | None, action: str, owner: str) -> Decision:
    """An action the object's owner decides, on an object the bucket owner does not own."""
    if principal is not None and principal == owner:
        return Decision(
            True,
            DecidedBy.OBJECT_OWNER,
            f"{principal} owns the object {query.resource} and no policy statement denies it",
        )
    blocked: list[str] = []
    if action in OBJECT_ACL_ACTIONS:
        acl = query.object_acl_value()
        if acl is not None:
            grant = _grant(acl, principal, action, True, query, blocked)
            if grant is not None:
                return Decision(True, DecidedBy.OBJECT_ACL, _granted("object", acl, grant, query))
    if blocked:
        return Decision(False, DecidedBy.PUBLIC_ACCESS_BLOCK, "; ".join(blocked))
    return Decision(
        False,
        DecidedBy.DEFAULT_DENY,
        f"the object {query.resource} belongs to {owner}, not to the bucket owner "
        f"{query.bucket_owner}, so only its owner and its ACL can grant {query.action}, "
        f"and its ACL grants nothing to {principal_label(principal)}",
    )


def _grant(
    acl: Acl,
    principal: str | None,
    action: str,
    on_object: bool,
    query: AccessQuery,
    blocked: list[str],
) -> Grant | None:
    """The grant of ``acl`` that allows ``action``, honouring IgnorePublicAcls (a public
    grant it sets aside is noted in ``blocked``)."""
    ignore = query.public_access_block.ignore_public_acls
    grant = acl.grant_for(principal, action, on_object=on_object, public_ok=not ignore)
    if grant is None and ignore:
        public = acl.grant_for(principal, action, on_object=on_object)
        if public is not None:
            what = "object" if on_object else "bucket"
            name = acl.canned_name(query.bucket_owner if on_object else None)
            if name is not None:
                blocked.append(f"IgnorePublicAcls is on, so the {what} ACL {name} grants nothing")
            else:
                blocked.append(
                    f"IgnorePublicAcls is on, so the {what} ACL's grant of "
                    f"{public.permission.value} to {public.grantee.describe()} grants nothing"
                )
    return grant


def _granted(what: str, acl: Acl, grant: Grant, query: AccessQuery) -> str:
    name = acl.canned_name(query.bucket_owner if what == "object" else None)
    if name is not None:
        return f"the {what} ACL {name} grants {query.action} to {grant.grantee.describe()}"
    return (
        f"the {what} ACL grants {grant.permission.value} to {grant.grantee.describe()}, "
        f"which allows {query.action}"
    )


def _acl_grant(
    query: AccessQuery, principal: str | None, action: str, blocked: list[str]
) -> Decision | None:
    """An allow from the bucket's or the object's ACL, else None."""
    if not query.acls_enabled:
        return None
    bucket_acl = query.bucket_acl_value()
    grant = _grant(bucket_acl, principal, action, False, query, blocked)
    if grant is not None:
        return Decision(
            True,
            DecidedBy.BUCKET_ACL,
            "; ".join([_granted("bucket", bucket_acl, grant, query), *blocked]),
        )
    if action in OBJECT_ACL_ACTIONS:
        acl = query.object_acl_value()
        if acl is not None:
            grant = _grant(acl, principal, action, True, query, blocked)
            if grant is not None:
                return Decision(
                    True,
                    DecidedBy.OBJECT_ACL,
                    "; ".join([_granted("object", acl, grant, query), *blocked]),
                )
    return None


def _evaluate(query: AccessQuery) -> Evaluation | None:
    if query.policy is None:
        return None
    return evaluate(query.policy, query.principal, query.action, query.resource, query.context)


def _denied_by_policy(ev: Evaluation) -> Decision:
    return Decision(False, DecidedBy.POLICY_DENY, ev.reason, ev.statement)


def _acl_label(value: Acl | str) -> str:
    if isinstance(value, str):
        return value if not value.startswith("[") else "a list of grants"
    return value.canned_name() or "a list of grants"


def _nothing_grants(query: AccessQuery, who: str, ev: Evaluation | None) -> str:
    policy = "there is no bucket policy" if ev is None else "no bucket policy statement applies"
    if not query.acls_enabled:
        acls = "ACLs are disabled (BucketOwnerEnforced)"
    else:
        acls = f"the bucket ACL is {_acl_label(query.bucket_acl)}"
        if query.object_acl is not None:
            acls += f" and the object ACL is {_acl_label(query.object_acl)}"
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
                "acl": _acl_label(query.bucket_acl),
                "object_acl": None if query.object_acl is None else _acl_label(query.object_acl),
                "object_ownership": str(query.ownership),
                "object_owner": query.owner_of_object if query.object_acl is not None else None,
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
