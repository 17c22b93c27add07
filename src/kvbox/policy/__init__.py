"""Bucket policies and the access decision: pure code, no I/O.

Layer: policy (below s3, above nothing but ``kvbox.errors``). Modules:

* ``language``: ``parse_policy(text, bucket) -> Policy`` (validate and compile);
* ``conditions``: values, wildcards, policy variables, condition operators;
* ``evaluate``: ``evaluate(policy, principal, action, resource, context)``, ``is_public``,
  ``may_allow``;
* ``acl``: ACL grants, what each permission allows, canned ACLs, Object Ownership;
* ``access``: ``decide(AccessQuery) -> Decision`` folding root, owners, policy, ACLs,
  Object Ownership and Block Public Access.

Principals are "root", a kvbox user name, or None for an anonymous request.
"""

from kvbox.policy.access import (
    NO_BLOCK,
    AccessQuery,
    DecidedBy,
    Decision,
    PublicAccessFlags,
    PublicAccessSettings,
    decide,
    explain_query,
    request_context,
    would_be_public_acl,
)
from kvbox.policy.conditions import ContextValue, PolicyError, RequestContext
from kvbox.policy.evaluate import Evaluation, Outcome, evaluate, is_public, may_allow, trace
from kvbox.policy.language import MAX_POLICY_BYTES, Effect, Policy, Statement, parse_policy

__all__ = [
    "MAX_POLICY_BYTES",
    "NO_BLOCK",
    "AccessQuery",
    "ContextValue",
    "DecidedBy",
    "Decision",
    "Effect",
    "Evaluation",
    "Outcome",
    "Policy",
    "PolicyError",
    "PublicAccessFlags",
    "PublicAccessSettings",
    "RequestContext",
    "Statement",
    "decide",
    "evaluate",
    "explain_query",
    "is_public",
    "may_allow",
    "parse_policy",
    "request_context",
    "trace",
    "would_be_public_acl",
]
