"""Evaluating a bucket policy for one request, and deciding whether a policy is public.

Layer: policy (pure; no I/O, no clock: the time is a context value). Rules, from AWS's
"Policy evaluation logic":

* A statement applies when its principal, action, resource and every condition match
  (``Not...`` elements invert their own test). Statement order never matters: an
  applicable Deny wins over any Allow; else an applicable Allow allows; else nothing
  matched (an implicit deny, which the caller folds with ACLs and ownership).
* ``evaluate`` is on the request path: it stops at the first applicable Deny, tests the
  cheap elements first (principal, action, resource) and reads conditions last; the
  human reason is built only when asked for (``Evaluation.reason``).
* ``trace`` says, per statement, why it did or did not apply; it is for explanations
  (``kvbox policy explain``), never for the request path.

``is_public`` follows "Blocking public access: the meaning of public" in the S3 User
Guide: a policy is public if some Allow statement grants to everyone (``"*"``, or a
``NotPrincipal``) without a condition that pins one of ``NON_PUBLIC_KEYS`` to fixed
values (no wildcard, no policy variable). Simplifications, all on the safe side (more
policies are called public, never fewer):

* only positive, unqualified or ``ForAnyValue:`` conditions without ``IfExists``
  restrict (a negated operator or ``IfExists`` lets requests without the key through);
* ``aws:SourceIp`` restricts through ``IpAddress`` when no CIDR is broader than /8
  (IPv4) or /32 (IPv6), AWS's threshold; the RFC 1918 exception is not modelled;
* ``s3:DataAccessPointArn`` must be fixed too (AWS allows a wildcard access point name
  when the account is fixed; kvbox has no access points);
* ``aws:userid`` values ending in ``:*`` (AWS's "AROLEID:*") are wildcards anyway.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from kvbox.policy.conditions import (
    Condition,
    NormalContext,
    RequestContext,
    has_wildcard,
    parse_network,
)
from kvbox.policy.language import Effect, Policy, Statement

#: Condition keys that, pinned to fixed values, make an Allow to everyone non-public.
#: The User Guide's list plus the principal-identifying keys it groups under "an AWS
#: principal" (aws:PrincipalArn, aws:PrincipalAccount, aws:PrincipalOrgID) and the KMS
#: key id the S3 API reference's PublicAccessBlockConfiguration page names.
NON_PUBLIC_KEYS = frozenset(
    k.lower()
    for k in (
        "aws:SourceIp",
        "aws:SourceArn",
        "aws:SourceVpc",
        "aws:SourceVpce",
        "aws:SourceOwner",
        "aws:SourceAccount",
        "aws:userid",
        "aws:PrincipalArn",
        "aws:PrincipalAccount",
        "aws:PrincipalOrgID",
        "s3:DataAccessPointArn",
        "s3:DataAccessPointAccount",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    )
)
#: AWS: a SourceIp range broader than these prefix lengths leaves a policy public.
MIN_PREFIX = {4: 8, 6: 32}

_FIXED_OPERATORS = frozenset(
    {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"}
)


class Outcome(enum.StrEnum):
    """What a policy says about one request."""

    DENY = "deny"
    ALLOW = "allow"
    NO_MATCH = "no-match"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The policy's answer: ``outcome`` and the statement that decided it (None when no
    statement applied). ``principal``/``action``/``resource`` are kept for ``reason``."""

    outcome: Outcome
    statement: Statement | None
    principal: str | None
    action: str
    resource: str

    @property
    def denied(self) -> bool:
        return self.outcome == Outcome.DENY

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.ALLOW

    @property
    def index(self) -> int | None:
        return None if self.statement is None else self.statement.index

    @property
    def sid(self) -> str | None:
        return None if self.statement is None else self.statement.sid

    @property
    def reason(self) -> str:
        who = principal_label(self.principal)
        what = f"{self.action} on {self.resource} by {who}"
        if self.statement is None:
            return f"no statement of the bucket policy applies to {what}"
        verb = "denies" if self.outcome == Outcome.DENY else "allows"
        return f"{self.statement.label} {verb} {what}"


def principal_label(principal: str | None) -> str:
    return "anonymous" if principal is None else principal


def _applies(
    st: Statement, principal: str | None, action: str, resource: str, ctx: NormalContext
) -> bool:
    # cheapest first; each element XORs with its Not- form
    if st.principals.matches(principal) is st.not_principal:
        return False
    if st.actions.matches(action, ctx) is st.not_action:
        return False
    if st.resources.matches(resource, ctx) is st.not_resource:
        return False
    return all(c.holds(ctx) for c in st.conditions)


def evaluate(
    policy: Policy,
    principal: str | None,
    action: str,
    resource: str,
    context: RequestContext,
) -> Evaluation:
    """What ``policy`` says about ``principal`` doing ``action`` on ``resource``.

    ``principal``: "root", a user name, or None (anonymous). ``context``: the request's
    condition keys (any case), e.g. from ``kvbox.policy.access.request_context``.
    """
    ctx = NormalContext(context)
    allow: Statement | None = None
    for st in policy.statements:
        if st.effect is Effect.ALLOW and allow is not None:
            continue  # one Allow is enough; only a Deny can still change the answer
        if _applies(st, principal, action, resource, ctx):
            if st.effect is Effect.DENY:
                return Evaluation(Outcome.DENY, st, principal, action, resource)
            allow = st
    outcome = Outcome.NO_MATCH if allow is None else Outcome.ALLOW
    return Evaluation(outcome, allow, principal, action, resource)


def trace(
    policy: Policy,
    principal: str | None,
    action: str,
    resource: str,
    context: RequestContext,
) -> list[str]:
    """One line per statement: whether it applies and, if not, the first reason why."""
    ctx = NormalContext(context)
    return [
        f"{st.label} {st.effect}: {_why(st, principal, action, resource, ctx)}"
        for st in policy.statements
    ]


def _why(
    st: Statement, principal: str | None, action: str, resource: str, ctx: NormalContext
) -> str:
    if not st.principal_applies(principal):
        who, named = principal_label(principal), st.principals.describe()
        if st.not_principal:
            return f"does not apply: {who} is excluded by NotPrincipal {named}"
        return f"does not apply: {who} is not in Principal {named}"
    if not st.action_applies(action):
        listed = ", ".join(st.actions.texts)
        if st.not_action:
            return f"does not apply: {action} is excluded by NotAction {listed}"
        return f"does not apply: {action} is not in Action {listed}"
    if not st.resource_applies(resource, ctx):
        listed = ", ".join(st.resources.texts)
        if st.not_resource:
            return f"does not apply: {resource} is excluded by NotResource {listed}"
        return f"does not apply: {resource} is not in Resource {listed}"
    for c in st.conditions:
        if not c.holds(ctx):
            return f"does not apply: condition {c.describe()} is false ({c.actual(ctx)})"
    if st.conditions:
        shown = "; ".join(f"{c.describe()} ({c.actual(ctx)})" for c in st.conditions)
        return f"applies (conditions hold: {shown})"
    return "applies"


# --- public or not ----------------------------------------------------------------------


def is_public(policy: Policy) -> bool:
    """Whether S3 would call this policy public (GetBucketPolicyStatus, BlockPublicPolicy,
    RestrictPublicBuckets); see the module docstring for the rules."""
    return any(statement_is_public(st) for st in policy.statements)


def may_allow(policy: Policy, principal: str | None, actions: Iterable[str]) -> bool:
    """Whether some Allow statement could let ``principal`` do one of ``actions`` on some
    resource, whatever its conditions and resources say.

    An anonymous request that nothing could allow is refused whole, before its body is
    read, so that it is answered exactly as a request to a bucket that does not exist
    (DeleteObjects, decided key by key, used to answer 200 for an existing bucket).
    """
    wanted = tuple(actions)
    return any(
        st.effect is Effect.ALLOW
        and st.principal_applies(principal)
        and any(st.action_applies(a) for a in wanted)
        for st in policy.statements
    )


def statement_is_public(st: Statement) -> bool:
    if st.effect is not Effect.ALLOW:
        return False
    if not st.not_principal and not st.principals.everyone:
        return False  # fixed principals: never public
    return not any(restricts(c) for c in st.conditions)


def restricts(c: Condition) -> bool:
    """Whether one condition pins a non-public key to fixed values."""
    if c.key_lower not in NON_PUBLIC_KEYS or c.negated or c.if_exists:
        return False
    if c.qualifier == "ForAllValues":
        return False  # true when the key is absent
    if c.key_lower == "aws:sourceip":
        return c.base == "IpAddress" and all(_narrow(v) for v in c.values)
    if c.base not in _FIXED_OPERATORS:
        return False
    return all(not has_wildcard(v) and "${" not in v for v in c.values)


def _narrow(value: str) -> bool:
    net = parse_network(value)
    if net is None:  # pragma: no cover - validated at parse time
        return False
    return net.prefixlen >= MIN_PREFIX[net.version]
