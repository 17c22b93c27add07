"""decide(): root, owner, policy, canned ACLs and Block Public Access folded into one
answer, as a table; plus request_context and the explanation data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kvbox.policy import (
    AccessQuery,
    DecidedBy,
    Policy,
    PublicAccessFlags,
    decide,
    explain_query,
    parse_policy,
    request_context,
    would_be_public_acl,
)
from kvbox.s3.xml import CannedAcl, PublicAccessBlockConfiguration

B = "b"
BUCKET_ARN = "arn:aws:s3:::b"
KEY = "arn:aws:s3:::b/k"
OWNER = "olivia"


def S(
    effect: str = "Allow",
    principal: Any = "*",
    action: Any = "s3:GetObject",
    resource: Any = "arn:aws:s3:::b/*",
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect, "Action": action, "Resource": resource}
    if "not_principal" in extra:
        out["NotPrincipal"] = extra.pop("not_principal")
    else:
        out["Principal"] = principal
    out.update(extra)
    return out


def pol(*statements: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), B)


EVERYTHING = ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
DENY_ALL = S("Deny", action="s3:*", resource=EVERYTHING, Sid="Lockout")
PUBLIC_READ = S(Sid="PublicRead")
VPC_ONLY = S(Sid="Vpc", Condition={"StringEquals": {"aws:SourceVpc": "vpc-1"}})
IGNORE = PublicAccessFlags(ignore_public_acls=True)
RESTRICT = PublicAccessFlags(restrict_public_buckets=True)
BOTH = PublicAccessFlags(ignore_public_acls=True, restrict_public_buckets=True)
BLOCK_PUT = PublicAccessFlags(block_public_acls=True, block_public_policy=True)

A, D = True, False
ROOT, OWN, P_ALLOW, P_DENY = (
    DecidedBy.ROOT,
    DecidedBy.OWNER,
    DecidedBy.POLICY_ALLOW,
    DecidedBy.POLICY_DENY,
)
B_ACL, O_ACL, PAB, NONE = (
    DecidedBy.BUCKET_ACL,
    DecidedBy.OBJECT_ACL,
    DecidedBy.PUBLIC_ACCESS_BLOCK,
    DecidedBy.DEFAULT_DENY,
)

GET, LIST, PUT = "s3:GetObject", "s3:ListBucket", "s3:PutObject"
NO_FLAGS = PublicAccessFlags()


@dataclass(frozen=True)
class Case:
    """One row: the request and bucket settings, and (allowed, decided_by, statement)."""

    name: str
    principal: str | None
    action: str
    expect: tuple[bool, DecidedBy, int | None]
    resource: str = KEY
    policy: tuple[dict[str, Any], ...] | None = None
    bucket_acl: str = "private"
    object_acl: str | None = None
    pab: PublicAccessFlags = NO_FLAGS
    context: tuple[tuple[str, str], ...] = ()


def c(
    name: str,
    principal: str | None,
    action: str,
    expect: tuple[bool, DecidedBy, int | None],
    *policy: dict[str, Any],
    **kw: Any,
) -> Case:
    if "context" in kw:
        kw["context"] = tuple(kw["context"].items())
    return Case(name, principal, action, expect, policy=policy or None, **kw)


HTTP = {"aws:SecureTransport": "false"}
DENY_HTTP = S("Deny", Condition={"Bool": HTTP})
CASES: list[Case] = [
    # root
    c("root, no policy", "root", GET, (A, ROOT, None), object_acl="private"),
    c("root denied by star", "root", GET, (D, P_DENY, 0), DENY_ALL),
    c(
        "root keeps PutBucketPolicy",
        "root",
        "s3:PutBucketPolicy",
        (A, ROOT, None),
        DENY_ALL,
        resource=BUCKET_ARN,
    ),
    c(
        "root keeps GetBucketPolicy",
        "root",
        "s3:GetBucketPolicy",
        (A, ROOT, None),
        DENY_ALL,
        resource=BUCKET_ARN,
    ),
    c(
        "root keeps DeleteBucketPolicy",
        "root",
        "s3:DeleteBucketPolicy",
        (A, ROOT, None),
        DENY_ALL,
        resource=BUCKET_ARN,
    ),
    c("root loses ListBucket", "root", LIST, (D, P_DENY, 0), DENY_ALL, resource=BUCKET_ARN),
    c("root not named", "root", GET, (A, ROOT, None), S("Deny", principal={"AWS": "alice"})),
    c(
        "root by NotPrincipal",
        "root",
        GET,
        (D, P_DENY, 0),
        S("Deny", not_principal={"AWS": "alice"}),
    ),
    c("root by account", "root", GET, (D, P_DENY, 0), S("Deny", principal={"AWS": "111122223333"})),
    c("root ignores PAB", "root", GET, (A, ROOT, None), PUBLIC_READ, pab=BOTH),
    # owner
    c("owner, no policy", OWNER, PUT, (A, OWN, None)),
    c("owner, private object", OWNER, GET, (A, OWN, None), object_acl="private"),
    c("owner denied", OWNER, GET, (D, P_DENY, 0), DENY_ALL),
    c(
        "owner cannot escape a lockout",
        OWNER,
        "s3:PutBucketPolicy",
        (D, P_DENY, 0),
        DENY_ALL,
        resource=BUCKET_ARN,
    ),
    c(
        "owner despite other deny",
        OWNER,
        GET,
        (A, OWN, None),
        S("Deny", principal={"AWS": "alice"}),
    ),
    c("owner despite PAB", OWNER, GET, (A, OWN, None), PUBLIC_READ, pab=BOTH),
    # other users and anonymous: the policy
    c("stranger, nothing", "alice", GET, (D, NONE, None), object_acl="private"),
    c("anonymous, nothing", None, LIST, (D, NONE, None), resource=BUCKET_ARN),
    c("policy allows user", "alice", GET, (A, P_ALLOW, 0), S(principal={"AWS": "alice"})),
    c("policy other user", "bob", GET, (D, NONE, None), S(principal={"AWS": "alice"})),
    c("policy allows anonymous", None, GET, (A, P_ALLOW, 0), PUBLIC_READ),
    c(
        "deny beats allow",
        "alice",
        GET,
        (D, P_DENY, 1),
        PUBLIC_READ,
        S("Deny", principal={"AWS": "alice"}),
    ),
    c(
        "deny beats bucket ACL",
        None,
        LIST,
        (D, P_DENY, 0),
        DENY_ALL,
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    c(
        "deny beats object ACL",
        None,
        GET,
        (D, P_DENY, 0),
        DENY_HTTP,
        object_acl="public-read",
        context=HTTP,
    ),
    c(
        "false deny, ACL grants",
        None,
        GET,
        (A, O_ACL, None),
        DENY_HTTP,
        object_acl="public-read",
        context={"aws:SecureTransport": "true"},
    ),
    c(
        "policy reported before ACL",
        None,
        GET,
        (A, P_ALLOW, 0),
        PUBLIC_READ,
        object_acl="public-read",
    ),
    # bucket ACLs
    c(
        "public-read lists",
        None,
        LIST,
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    c(
        "public-read lists versions",
        None,
        "s3:ListBucketVersions",
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    c(
        "public-read lists uploads",
        None,
        "s3:ListBucketMultipartUploads",
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    c("public-read does not write", None, PUT, (D, NONE, None), bucket_acl="public-read"),
    c(
        "bucket ACL reads no object",
        None,
        GET,
        (D, NONE, None),
        bucket_acl="public-read-write",
        object_acl="private",
    ),
    c(
        "public-read no GetBucketAcl",
        None,
        "s3:GetBucketAcl",
        (D, NONE, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    c(
        "public-read no location",
        "alice",
        "s3:GetBucketLocation",
        (D, NONE, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    c("public-read-write puts", None, PUT, (A, B_ACL, None), bucket_acl="public-read-write"),
    c(
        "public-read-write deletes",
        "alice",
        "s3:DeleteObject",
        (A, B_ACL, None),
        bucket_acl="public-read-write",
    ),
    c(
        "public-read-write deletes versions",
        None,
        "s3:DeleteObjectVersion",
        (A, B_ACL, None),
        bucket_acl="public-read-write",
    ),
    c(
        "public-read-write aborts",
        None,
        "s3:AbortMultipartUpload",
        (A, B_ACL, None),
        bucket_acl="public-read-write",
    ),
    c(
        "public-read-write lists parts",
        None,
        "s3:ListMultipartUploadParts",
        (A, B_ACL, None),
        bucket_acl="public-read-write",
    ),
    c(
        "public-read-write lists",
        None,
        LIST,
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read-write",
    ),
    c(
        "public-read-write no tagging",
        None,
        "s3:PutObjectTagging",
        (D, NONE, None),
        bucket_acl="public-read-write",
    ),
    c(
        "authenticated-read user",
        "alice",
        LIST,
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="authenticated-read",
    ),
    c(
        "authenticated-read anonymous",
        None,
        LIST,
        (D, NONE, None),
        resource=BUCKET_ARN,
        bucket_acl="authenticated-read",
    ),
    c(
        "bucket-owner-read grants nothing",
        "alice",
        LIST,
        (D, NONE, None),
        resource=BUCKET_ARN,
        bucket_acl="bucket-owner-read",
    ),
    c(
        "action case",
        None,
        "S3:LISTBUCKET",
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
    ),
    # object ACLs
    c("object public-read", None, GET, (A, O_ACL, None), object_acl="public-read"),
    c(
        "object public-read version",
        None,
        "s3:GetObjectVersion",
        (A, O_ACL, None),
        object_acl="public-read",
    ),
    c(
        "object public-read-write reads",
        None,
        GET,
        (A, O_ACL, None),
        object_acl="public-read-write",
    ),
    c("object public-read no write", None, PUT, (D, NONE, None), object_acl="public-read"),
    c(
        "object public-read no acl read",
        None,
        "s3:GetObjectAcl",
        (D, NONE, None),
        object_acl="public-read",
    ),
    c(
        "object public-read no tags",
        None,
        "s3:GetObjectTagging",
        (D, NONE, None),
        object_acl="public-read",
    ),
    c(
        "object authenticated-read user",
        "alice",
        GET,
        (A, O_ACL, None),
        object_acl="authenticated-read",
    ),
    c(
        "object authenticated-read anonymous",
        None,
        GET,
        (D, NONE, None),
        object_acl="authenticated-read",
    ),
    c(
        "object bucket-owner-full-control",
        "alice",
        GET,
        (D, NONE, None),
        object_acl="bucket-owner-full-control",
    ),
    c("no object, no object ACL", None, GET, (D, NONE, None), bucket_acl="public-read"),
    # Block Public Access
    c(
        "IgnorePublicAcls bucket",
        None,
        LIST,
        (D, PAB, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
        pab=IGNORE,
    ),
    c("IgnorePublicAcls object", None, GET, (D, PAB, None), object_acl="public-read", pab=IGNORE),
    c(
        "IgnorePublicAcls authenticated",
        "alice",
        GET,
        (D, PAB, None),
        object_acl="authenticated-read",
        pab=IGNORE,
    ),
    c(
        "IgnorePublicAcls keeps policy",
        None,
        GET,
        (A, P_ALLOW, 0),
        PUBLIC_READ,
        object_acl="public-read",
        pab=IGNORE,
    ),
    c(
        "IgnorePublicAcls, nothing to ignore",
        None,
        GET,
        (D, NONE, None),
        object_acl="private",
        pab=IGNORE,
    ),
    c("Restrict anonymous", None, GET, (D, PAB, None), PUBLIC_READ, pab=RESTRICT),
    c("Restrict keeps users", "alice", GET, (A, P_ALLOW, 0), PUBLIC_READ, pab=RESTRICT),
    c(
        "Restrict leaves ACLs",
        None,
        GET,
        (A, O_ACL, None),
        PUBLIC_READ,
        object_acl="public-read",
        pab=RESTRICT,
    ),
    c(
        "Restrict, non-public policy",
        None,
        GET,
        (A, P_ALLOW, 0),
        VPC_ONLY,
        pab=RESTRICT,
        context={"aws:SourceVpc": "vpc-1"},
    ),
    c(
        "Restrict, public elsewhere",
        None,
        GET,
        (D, PAB, None),
        VPC_ONLY,
        S(action=PUT),
        pab=RESTRICT,
        context={"aws:SourceVpc": "vpc-1"},
    ),
    c(
        "Restrict and Ignore",
        None,
        GET,
        (D, PAB, None),
        PUBLIC_READ,
        object_acl="public-read",
        pab=BOTH,
    ),
    c("Restrict does not undo deny", None, GET, (D, P_DENY, 0), DENY_ALL, pab=RESTRICT),
    c(
        "Block flags only guard PUTs",
        None,
        GET,
        (A, P_ALLOW, 0),
        PUBLIC_READ,
        object_acl="public-read",
        pab=BLOCK_PUT,
    ),
    c(
        "Block flags and ACLs",
        None,
        LIST,
        (A, B_ACL, None),
        resource=BUCKET_ARN,
        bucket_acl="public-read",
        pab=BLOCK_PUT,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decide(case: Case) -> None:
    query = AccessQuery(
        principal=case.principal,
        action=case.action,
        resource=case.resource,
        bucket=B,
        bucket_owner=OWNER,
        policy=None if case.policy is None else pol(*case.policy),
        bucket_acl=case.bucket_acl,
        object_acl=case.object_acl,
        public_access_block=case.pab,
        context=dict(case.context),
    )
    d = decide(query)
    assert (d.allowed, d.decided_by, d.statement_index) == case.expect
    assert d.reason


def _q(**kw: Any) -> AccessQuery:
    base: dict[str, Any] = {
        "principal": None,
        "action": "s3:GetObject",
        "resource": KEY,
        "bucket": B,
        "bucket_owner": OWNER,
    }
    base.update(kw)
    return AccessQuery(**base)


def test_reasons_are_specific() -> None:
    assert (
        decide(_q(principal="root")).reason
        == "root is the account and no policy statement denies it"
    )
    assert decide(
        _q(principal="root", action="s3:PutBucketPolicy", policy=pol(DENY_ALL))
    ).reason == ("root may always s3:PutBucketPolicy, so no bucket policy can lock b away for good")
    assert (
        decide(_q(principal=OWNER)).reason
        == "olivia owns bucket b and no policy statement denies it"
    )
    assert decide(_q(principal="alice", object_acl="private")).reason == (
        "nothing grants s3:GetObject on arn:aws:s3:::b/k to alice: there is no bucket policy, "
        "the bucket ACL is private and the object ACL is private, and alice does not own bucket b"
    )
    assert decide(_q(object_acl="authenticated-read", principal="bob")).reason == (
        "the object ACL authenticated-read grants s3:GetObject to any signed request"
    )
    d = decide(_q(policy=pol(PUBLIC_READ), public_access_block=BOTH, object_acl="public-read"))
    assert d.reason == (
        "RestrictPublicBuckets is on and the bucket policy is public, so "
        'statement #0 (Sid "PublicRead") (which allows s3:GetObject) '
        "does not apply to anonymous requests; "
        "IgnorePublicAcls is on, so the object ACL public-read grants nothing"
    )
    d = decide(_q(policy=pol(PUBLIC_READ), public_access_block=RESTRICT, object_acl="public-read"))
    assert d.allowed and d.reason.startswith(
        "the object ACL public-read grants s3:GetObject to everyone; "
    )
    assert "RestrictPublicBuckets is on" in d.reason
    denied = decide(_q(policy=pol(DENY_ALL)))
    assert (denied.sid, denied.reason) == (
        "Lockout",
        'statement #0 (Sid "Lockout") denies s3:GetObject on arn:aws:s3:::b/k by anonymous',
    )


def test_s3_layer_types_fit() -> None:
    """The s3 layer's CannedAcl and PublicAccessBlockConfiguration plug straight in."""
    pab = PublicAccessBlockConfiguration(ignore_public_acls=True)
    d = decide(
        _q(bucket_acl=CannedAcl.PUBLIC_READ, action="s3:ListBucket", public_access_block=pab)
    )
    assert d.decided_by is DecidedBy.PUBLIC_ACCESS_BLOCK
    d = decide(_q(object_acl=CannedAcl.PUBLIC_READ))
    assert d.decided_by is DecidedBy.OBJECT_ACL


@pytest.mark.parametrize(
    ("canned", "public"),
    [
        ("private", False),
        ("public-read", True),
        ("public-read-write", True),
        ("authenticated-read", True),
        ("bucket-owner-read", False),
        ("bucket-owner-full-control", False),
        (" Public-Read ", True),
        (CannedAcl.PUBLIC_READ_WRITE, True),
    ],
)
def test_would_be_public_acl(canned: str, public: bool) -> None:
    assert would_be_public_acl(canned) is public


def test_decision_json() -> None:
    d = decide(_q(policy=pol(DENY_ALL)))
    assert d.to_json() == {
        "allowed": False,
        "decided_by": "policy-deny",
        "reason": d.reason,
        "statement": {"index": 0, "sid": "Lockout", "effect": "Deny", "json": DENY_ALL},
    }
    assert decide(_q()).to_json()["statement"] is None


# --- request context ------------------------------------------------------------------------


def test_request_context_for_a_user() -> None:
    now = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    ctx = request_context(
        "alice",
        now=now,
        source_ip="203.0.113.7",
        secure_transport=True,
        user_agent="curl/8",
        referer="https://example.com/",
        auth_type="REST-HEADER",
        signature_version="AWS4-HMAC-SHA256",
        extra={"s3:prefix": "home/", "AWS:SourceIp": "198.51.100.1"},
    )
    assert ctx == {
        "aws:CurrentTime": "2024-05-01T12:00:00Z",
        "aws:EpochTime": "1714564800",
        "aws:PrincipalType": "User",
        "aws:username": "alice",
        "aws:userid": "alice",
        "aws:PrincipalIsAWSService": "false",
        "aws:ViaAWSService": "false",
        "aws:UserAgent": "curl/8",
        "aws:Referer": "https://example.com/",
        "s3:authType": "REST-HEADER",
        "s3:signatureversion": "AWS4-HMAC-SHA256",
        "aws:SecureTransport": "true",
        "s3:prefix": "home/",
        "AWS:SourceIp": "198.51.100.1",
    }


def test_request_context_root_and_anonymous() -> None:
    never_a_service = {"aws:PrincipalIsAWSService": "false", "aws:ViaAWSService": "false"}
    assert request_context("root") == {"aws:PrincipalType": "Account", **never_a_service}
    assert request_context(None, secure_transport=False) == {
        "aws:PrincipalType": "Anonymous",
        "aws:SecureTransport": "false",
        **never_a_service,
    }


def test_request_context_drives_time_conditions() -> None:
    p = pol(S(Condition={"DateLessThan": {"aws:CurrentTime": "2024-06-01T00:00:00Z"}}))
    before = request_context(None, now=datetime(2024, 5, 31, tzinfo=UTC))
    after = request_context(None, now=datetime(2024, 6, 2, tzinfo=UTC))
    assert decide(_q(policy=p, context=before)).allowed
    assert not decide(_q(policy=p, context=after)).allowed


def test_explain_query_carries_everything() -> None:
    q = _q(
        policy=pol(PUBLIC_READ),
        bucket_acl="public-read",
        object_acl="private",
        public_access_block=RESTRICT,
        context={"aws:SourceIp": "192.0.2.1", "s3:RequestObjectTagKeys": ("a", "b")},
    )
    out = explain_query(q)
    assert out["allowed"] is False and out["decided_by"] == "public-access-block"
    assert out["principal"] == "anonymous"
    assert out["context"] == {"aws:SourceIp": "192.0.2.1", "s3:RequestObjectTagKeys": ["a", "b"]}
    assert out["bucket"] == {
        "name": "b",
        "owner": OWNER,
        "acl": "public-read",
        "object_acl": "private",
        "public_access_block": {
            "BlockPublicAcls": False,
            "IgnorePublicAcls": False,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
        "policy": True,
        "policy_public": True,
        "object_ownership": "ObjectWriter",
        "object_owner": OWNER,
    }
    assert out["trace"] == ['statement #0 (Sid "PublicRead") Allow: applies']
    json.dumps(out)  # JSON-ready
