"""evaluate(), the condition operators and is_public(), as tables; hypothesis checks the
wildcard matcher against an oracle and the combining rule against permutations."""

from __future__ import annotations

import ipaddress
import itertools
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.policy import Outcome, Policy, evaluate, is_public, may_allow, parse_policy, trace
from kvbox.policy.conditions import NormalContext, compile_pattern

B = "b"
BUCKET_ARN = "arn:aws:s3:::b"
OBJ = "arn:aws:s3:::b/*"
ALLOW, DENY, NONE = Outcome.ALLOW, Outcome.DENY, Outcome.NO_MATCH
HTTP = {"aws:SecureTransport": "false"}


def S(
    effect: str = "Allow",
    principal: Any = "*",
    action: Any = "s3:GetObject",
    resource: Any = OBJ,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect, "Action": action, "Resource": resource}
    if "not_principal" in extra:
        out["NotPrincipal"] = extra.pop("not_principal")
    else:
        out["Principal"] = principal
    for name in ("NotAction", "NotResource"):
        if name in extra:
            out.pop(name.removeprefix("Not"))
            out[name] = extra.pop(name)
    out.update(extra)
    return out


def pol(*statements: dict[str, Any], version: str = "2012-10-17") -> Policy:
    return parse_policy(json.dumps({"Version": version, "Statement": list(statements)}), B)


# --- statement matching -------------------------------------------------------------------

ALICE = {"AWS": "alice"}
GET, PUT, K = "s3:GetObject", "s3:PutObject", "arn:aws:s3:::b/k"
U = "aws:username"


@dataclass(frozen=True)
class Case:
    """One request against a policy, and the (outcome, deciding statement) expected."""

    name: str
    statements: tuple[dict[str, Any], ...]
    principal: str | None
    expect: tuple[Outcome, int | None]
    action: str = GET
    resource: str = K
    context: tuple[tuple[str, Any], ...] = ()


def e(
    name: str,
    statements: list[dict[str, Any]],
    principal: str | None,
    expect: tuple[Outcome, int | None],
    action: str = GET,
    resource: str = K,
    **context: Any,
) -> Case:
    """``context`` keys use ``__`` for ``:`` (``aws__username="alice"``)."""
    ctx = tuple((k.replace("__", ":"), v) for k, v in context.items())
    return Case(name, tuple(statements), principal, expect, action, resource, ctx)


HOME = "arn:aws:s3:::b/home/${aws:username}/*"
NOT_PUBLIC = "arn:aws:s3:::b/public/*"
EVAL_CASES: list[Case] = [
    e("star allows user", [S()], "alice", (ALLOW, 0)),
    e("star allows anonymous", [S()], None, (ALLOW, 0)),
    e("star allows root", [S()], "root", (ALLOW, 0)),
    e("AWS star allows anonymous", [S(principal={"AWS": "*"})], None, (ALLOW, 0)),
    e("named user", [S(principal=ALICE)], "alice", (ALLOW, 0)),
    e("other user", [S(principal=ALICE)], "bob", (NONE, None)),
    e("user is not anonymous", [S(principal=ALICE)], None, (NONE, None)),
    e("user is not root", [S(principal=ALICE)], "root", (NONE, None)),
    e(
        "user arn",
        [S(principal={"AWS": "arn:aws:iam::111122223333:user/alice"})],
        "alice",
        (ALLOW, 0),
    ),
    e("root arn", [S(principal={"AWS": "arn:aws:iam::111122223333:root"})], "root", (ALLOW, 0)),
    e("account id", [S(principal={"AWS": "111122223333"})], "root", (ALLOW, 0)),
    e("account id is not a user", [S(principal={"AWS": "111122223333"})], "alice", (NONE, None)),
    e("user names are case-sensitive", [S(principal=ALICE)], "Alice", (NONE, None)),
    e("deny beats allow (deny last)", [S(), S("Deny")], "alice", (DENY, 1)),
    e("deny beats allow (deny first)", [S("Deny"), S()], "alice", (DENY, 0)),
    e("deny of someone else", [S(), S("Deny", principal={"AWS": "bob"})], "alice", (ALLOW, 0)),
    e("first allow reported", [S(Sid="A"), S(Sid="B")], "alice", (ALLOW, 0)),
    e("first deny reported", [S("Deny", Sid="A"), S("Deny", Sid="B")], "alice", (DENY, 0)),
    e("NotPrincipal denies others", [S("Deny", not_principal=ALICE)], "bob", (DENY, 0)),
    e("NotPrincipal spares the named", [S("Deny", not_principal=ALICE)], "alice", (NONE, None)),
    e("NotPrincipal denies anonymous", [S("Deny", not_principal=ALICE)], None, (DENY, 0)),
    e("NotPrincipal denies root", [S("Deny", not_principal=ALICE)], "root", (DENY, 0)),
    e(
        "NotPrincipal root",
        [S("Deny", not_principal={"AWS": "111122223333"})],
        "root",
        (NONE, None),
    ),
    e("other action", [S()], "alice", (NONE, None), PUT),
    e("action case-insensitive", [S(action="S3:GETOBJECT")], "alice", (ALLOW, 0)),
    e("request action case", [S()], "alice", (ALLOW, 0), "S3:getobject"),
    e("action prefix wildcard", [S(action="s3:Get*")], "alice", (ALLOW, 0), "s3:GetObjectAcl"),
    e("action infix wildcard", [S(action="s3:*Object")], "alice", (ALLOW, 0), "s3:DeleteObject"),
    e("action infix miss", [S(action="s3:*Object")], "a", (NONE, None), "s3:DeleteObjectVersion"),
    e("action question mark", [S(action="s3:GetObjec?")], "alice", (ALLOW, 0)),
    e("action star", [S(action="*")], "alice", (ALLOW, 0), PUT),
    e("action list", [S(action=[PUT, GET])], "alice", (ALLOW, 0)),
    e("NotAction matches others", [S(action=None, NotAction="s3:DeleteObject")], "a", (ALLOW, 0)),
    e("NotAction excludes", [S(NotAction="s3:DeleteObject")], "a", (NONE, None), "s3:DeleteObject"),
    e("NotAction wildcard", [S("Deny", NotAction="s3:Get*")], "alice", (DENY, 0), PUT),
    e(
        "NotAction wildcard spares",
        [S("Deny", NotAction="s3:Get*")],
        "a",
        (NONE, None),
        "s3:GetObjectTagging",
    ),
    e(
        "bucket is not an object",
        [S(action="s3:ListBucket", resource=BUCKET_ARN)],
        "a",
        (NONE, None),
        "s3:ListBucket",
    ),
    e(
        "bucket arn",
        [S(action="s3:ListBucket", resource=BUCKET_ARN)],
        "a",
        (ALLOW, 0),
        "s3:ListBucket",
        BUCKET_ARN,
    ),
    e(
        "objects are not the bucket",
        [S(action="s3:*")],
        "a",
        (NONE, None),
        "s3:ListBucket",
        BUCKET_ARN,
    ),
    e(
        "star crosses slashes",
        [S(resource="arn:aws:s3:::b/h/*/n")],
        "a",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/h/x/y/n",
    ),
    e(
        "question is one char",
        [S(resource="arn:aws:s3:::b/a?c")],
        "a",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/abc",
    ),
    e(
        "question is not zero chars",
        [S(resource="arn:aws:s3:::b/a?c")],
        "a",
        (NONE, None),
        GET,
        "arn:aws:s3:::b/ac",
    ),
    e("resources are case-sensitive", [S(resource="arn:aws:s3:::b/K")], "a", (NONE, None)),
    e(
        "dots are literal",
        [S(resource="arn:aws:s3:::b/a.c")],
        "a",
        (NONE, None),
        GET,
        "arn:aws:s3:::b/abc",
    ),
    e("resource star", [S(resource="*")], "alice", (ALLOW, 0)),
    e("key with a newline", [S()], "alice", (ALLOW, 0), GET, "arn:aws:s3:::b/a\nb"),
    e("NotResource denies others", [S("Deny", NotResource=NOT_PUBLIC)], None, (DENY, 0)),
    e(
        "NotResource spares",
        [S("Deny", NotResource=NOT_PUBLIC)],
        None,
        (NONE, None),
        GET,
        "arn:aws:s3:::b/public/x",
    ),
    e(
        "variable",
        [S(resource=HOME)],
        "al",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/home/al/x",
        aws__username="al",
    ),
    e(
        "variable, other user",
        [S(resource=HOME)],
        "bo",
        (NONE, None),
        GET,
        "arn:aws:s3:::b/home/al/x",
        aws__username="bo",
    ),
    e("variable absent", [S(resource=HOME)], None, (NONE, None), GET, "arn:aws:s3:::b/home/al/x"),
    e(
        "variable key any case",
        [S(resource="arn:aws:s3:::b/${AWS:UserName}")],
        "al",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/al",
        aws__username="al",
    ),
    e(
        "variable default",
        [S(resource="arn:aws:s3:::b/${aws:username, 'guest'}")],
        None,
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/guest",
    ),
    e(
        "variable value is literal",
        [S(resource="arn:aws:s3:::b/${aws:username}")],
        "a*",
        (NONE, None),
        GET,
        "arn:aws:s3:::b/abc",
        aws__username="a*",
    ),
    e(
        "variable literal match",
        [S(resource="arn:aws:s3:::b/${aws:username}")],
        "a*",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/a*",
        aws__username="a*",
    ),
    e(
        "multi-valued variable",
        [S(resource="arn:aws:s3:::b/${aws:username}")],
        "a",
        (NONE, None),
        GET,
        "arn:aws:s3:::b/a",
        aws__username=["a", "b"],
    ),
    e(
        "escaped star",
        [S(resource="arn:aws:s3:::b/s${*}")],
        "a",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/s*",
    ),
    e(
        "escaped star is literal",
        [S(resource="arn:aws:s3:::b/s${*}")],
        "a",
        (NONE, None),
        GET,
        "arn:aws:s3:::b/sX",
    ),
    e(
        "escaped dollar and question",
        [S(resource="arn:aws:s3:::b/${$}${?}")],
        "a",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/$?",
    ),
    e(
        "static and variable",
        [S(resource=[NOT_PUBLIC, HOME])],
        "a",
        (ALLOW, 0),
        GET,
        "arn:aws:s3:::b/public/x",
    ),
    e(
        "conditions gate the deny",
        [S("Deny", Condition={"Bool": HTTP}), S()],
        None,
        (ALLOW, 1),
        aws__SecureTransport="true",
    ),
    e(
        "conditions gate the deny, hit",
        [S("Deny", Condition={"Bool": HTTP}), S()],
        None,
        (DENY, 0),
        aws__SecureTransport="false",
    ),
]


@pytest.mark.parametrize("case", EVAL_CASES, ids=[case.name for case in EVAL_CASES])
def test_evaluate(case: Case) -> None:
    ev = evaluate(
        pol(*case.statements), case.principal, case.action, case.resource, dict(case.context)
    )
    assert (ev.outcome, ev.index) == case.expect
    assert ev.allowed == (case.expect[0] is ALLOW) and ev.denied == (case.expect[0] is DENY)


def test_version_2008_reads_variables_as_text() -> None:
    p = pol(S(resource="arn:aws:s3:::b/${aws:username}/x"), version="2008-10-17")
    literal = "arn:aws:s3:::b/${aws:username}/x"
    assert evaluate(p, "alice", "s3:GetObject", literal, {"aws:username": "alice"}).allowed
    assert not evaluate(
        p, "alice", "s3:GetObject", "arn:aws:s3:::b/alice/x", {"aws:username": "alice"}
    ).allowed


def test_reason_names_statement_and_request() -> None:
    p = pol(S(Sid="Pub"), S("Deny", Sid="NoPut", action="s3:PutObject"))
    assert evaluate(p, None, "s3:GetObject", "arn:aws:s3:::b/k", {}).reason == (
        'statement #0 (Sid "Pub") allows s3:GetObject on arn:aws:s3:::b/k by anonymous'
    )
    ev = evaluate(p, "alice", "s3:PutObject", "arn:aws:s3:::b/k", {})
    assert (ev.sid, ev.reason) == (
        "NoPut",
        'statement #1 (Sid "NoPut") denies s3:PutObject on arn:aws:s3:::b/k by alice',
    )
    miss = evaluate(pol(S(principal=ALICE)), "bob", "s3:GetObject", "arn:aws:s3:::b/k", {})
    assert miss.sid is None and miss.reason.startswith("no statement of the bucket policy applies")


def test_trace_says_why_each_statement_did_not_apply() -> None:
    p = pol(
        S(principal=ALICE, Sid="P"),
        S(action="s3:PutObject"),
        S(resource="arn:aws:s3:::b/pub/*"),
        S(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        S(NotAction="s3:GetObject"),
        S(),
    )
    lines = trace(p, None, "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SourceIp": "192.0.2.1"})
    assert lines == [
        'statement #0 (Sid "P") Allow: does not apply: anonymous is not in Principal alice',
        "statement #1 Allow: does not apply: s3:GetObject is not in Action s3:PutObject",
        "statement #2 Allow: does not apply: arn:aws:s3:::b/k is not in Resource "
        "arn:aws:s3:::b/pub/*",
        "statement #3 Allow: does not apply: condition IpAddress aws:SourceIp '10.0.0.0/8' "
        "is false (aws:SourceIp='192.0.2.1')",
        "statement #4 Allow: does not apply: s3:GetObject is excluded by NotAction s3:GetObject",
        "statement #5 Allow: applies",
    ]


# --- conditions -------------------------------------------------------------------------------

T, F = True, False
TAGS, PFX, DELIM, MAX = "s3:RequestObjectTagKeys", "s3:prefix", "s3:delimiter", "s3:max-keys"
IP, TLS, NOW, EPOCH = "aws:SourceIp", "aws:SecureTransport", "aws:CurrentTime", "aws:EpochTime"
SRC, VPC = "aws:SourceArn", "aws:SourceVpc"
SNS = "arn:aws:sns:us-east-1:123456789012"


def cond(op: str, key: str, value: Any) -> dict[str, Any]:
    return {op: {key: value}}


COND_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # strings
    ("StringEquals hit", cond("StringEquals", PFX, "home/"), {PFX: "home/"}, T),
    ("StringEquals case", cond("StringEquals", PFX, "home/"), {PFX: "Home/"}, F),
    ("StringEquals missing", cond("StringEquals", PFX, "home/"), {}, F),
    ("StringEquals no wildcard", cond("StringEquals", PFX, "h*"), {PFX: "home"}, F),
    ("values are ORed", cond("StringEquals", PFX, ["a", "b"]), {PFX: "b"}, T),
    ("keys are ANDed", {"StringEquals": {PFX: "a", DELIM: "/"}}, {PFX: "a", DELIM: "/"}, T),
    ("keys are ANDed, miss", {"StringEquals": {PFX: "a", DELIM: "/"}}, {PFX: "a"}, F),
    (
        "operators are ANDed",
        {**cond("StringEquals", PFX, "a"), **cond("Bool", TLS, "true")},
        {PFX: "a", TLS: "false"},
        F,
    ),
    ("StringNotEquals hit", cond("StringNotEquals", PFX, "a"), {PFX: "b"}, T),
    ("StringNotEquals miss", cond("StringNotEquals", PFX, ["a", "b"]), {PFX: "b"}, F),
    ("StringNotEquals missing key", cond("StringNotEquals", PFX, "a"), {}, T),
    ("StringEqualsIgnoreCase", cond("StringEqualsIgnoreCase", PFX, "HOME/"), {PFX: "home/"}, T),
    (
        "StringNotEqualsIgnoreCase",
        cond("StringNotEqualsIgnoreCase", PFX, "HOME/"),
        {PFX: "home/"},
        F,
    ),
    ("StringLike star", cond("StringLike", PFX, "home/*"), {PFX: "home/a/b"}, T),
    ("StringLike empty star", cond("StringLike", PFX, "home/*"), {PFX: "home/"}, T),
    ("StringLike question", cond("StringLike", PFX, "home/?"), {PFX: "home/ab"}, F),
    ("StringLike question hit", cond("StringLike", PFX, "home/?"), {PFX: "home/a"}, T),
    (
        "StringLike case",
        cond("StringLike", "aws:UserAgent", "curl/*"),
        {"aws:UserAgent": "Curl/8"},
        F,
    ),
    ("StringNotLike hit", cond("StringNotLike", PFX, "*.exe"), {PFX: "x.exe"}, F),
    ("StringNotLike miss", cond("StringNotLike", PFX, "*.exe"), {PFX: "x.txt"}, T),
    ("StringNotLike missing key", cond("StringNotLike", PFX, "*.exe"), {}, T),
    ("empty string value", cond("StringEquals", PFX, ""), {PFX: ""}, T),
    # numbers
    ("NumericLessThanEquals edge", cond("NumericLessThanEquals", MAX, "10"), {MAX: "10"}, T),
    ("NumericLessThanEquals over", cond("NumericLessThanEquals", MAX, 10), {MAX: "11"}, F),
    ("NumericLessThan edge", cond("NumericLessThan", MAX, 10), {MAX: "10"}, F),
    ("NumericGreaterThan float", cond("NumericGreaterThan", MAX, 10), {MAX: "10.5"}, T),
    ("NumericGreaterThanEquals", cond("NumericGreaterThanEquals", MAX, 10), {MAX: "9"}, F),
    ("NumericEquals float", cond("NumericEquals", MAX, "10"), {MAX: "10.0"}, T),
    ("NumericEquals unreadable", cond("NumericEquals", MAX, "10"), {MAX: "ten"}, F),
    ("NumericNotEquals hit", cond("NumericNotEquals", MAX, "10"), {MAX: "5"}, T),
    ("NumericNotEquals unreadable", cond("NumericNotEquals", MAX, "10"), {MAX: "ten"}, F),
    ("NumericNotEquals missing key", cond("NumericNotEquals", MAX, "10"), {}, T),
    ("Numeric missing key", cond("NumericLessThan", MAX, "10"), {}, F),
    # dates
    (
        "DateLessThan",
        cond("DateLessThan", NOW, "2030-01-01T00:00:00Z"),
        {NOW: "2024-05-01T12:00:00Z"},
        T,
    ),
    (
        "DateLessThan after",
        cond("DateLessThan", NOW, "2030-01-01T00:00:00Z"),
        {NOW: "2031-01-01T00:00:00Z"},
        F,
    ),
    (
        "DateLessThanEquals edge",
        cond("DateLessThanEquals", NOW, "2030-01-01T00:00:00Z"),
        {NOW: "2030-01-01T00:00:00Z"},
        T,
    ),
    (
        "DateGreaterThan, epoch policy",
        cond("DateGreaterThan", NOW, "1700000000"),
        {NOW: "2024-05-01T12:00:00Z"},
        T,
    ),
    (
        "DateGreaterThanEquals, epoch request",
        cond("DateGreaterThanEquals", EPOCH, "2024-01-01T00:00:00Z"),
        {EPOCH: "1704067200"},
        T,
    ),
    (
        "DateGreaterThan, epoch request",
        cond("DateGreaterThan", EPOCH, "2024-01-01T00:00:00Z"),
        {EPOCH: "1704067200"},
        F,
    ),
    (
        "DateEquals offsets",
        cond("DateEquals", NOW, "2024-01-01T02:00:00+02:00"),
        {NOW: "2024-01-01T00:00:00Z"},
        T,
    ),
    (
        "DateEquals no zone is UTC",
        cond("DateEquals", NOW, "2024-01-01T00:00:00"),
        {NOW: "2024-01-01T00:00:00Z"},
        T,
    ),
    (
        "DateEquals date only",
        cond("DateEquals", NOW, "2024-01-01"),
        {NOW: "2024-01-01T00:00:00Z"},
        T,
    ),
    ("DateNotEquals missing key", cond("DateNotEquals", NOW, "2024-01-01"), {}, T),
    ("Date unreadable", cond("DateLessThan", NOW, "2030-01-01"), {NOW: "soon"}, F),
    # bool, binary
    ("Bool false", cond("Bool", TLS, "false"), {TLS: "false"}, T),
    ("Bool JSON false", cond("Bool", TLS, False), {TLS: "false"}, T),
    ("Bool value case", cond("Bool", TLS, "False"), {TLS: "FALSE"}, T),
    ("Bool mismatch", cond("Bool", TLS, "false"), {TLS: "true"}, F),
    ("Bool missing", cond("Bool", TLS, "false"), {}, F),
    (
        "BinaryEquals",
        cond("BinaryEquals", "s3:x-amz-content-sha256", "QUJD"),
        {"s3:x-amz-content-sha256": "QUJD"},
        T,
    ),
    # IP
    ("IpAddress v4", cond("IpAddress", IP, "203.0.113.0/24"), {IP: "203.0.113.7"}, T),
    ("IpAddress v4 outside", cond("IpAddress", IP, "203.0.113.0/24"), {IP: "203.0.114.1"}, F),
    ("IpAddress host bits set", cond("IpAddress", IP, "203.0.113.5/24"), {IP: "203.0.113.200"}, T),
    ("IpAddress bare address", cond("IpAddress", IP, "203.0.113.7"), {IP: "203.0.113.7"}, T),
    ("IpAddress bare, other", cond("IpAddress", IP, "203.0.113.7"), {IP: "203.0.113.8"}, F),
    (
        "IpAddress list",
        cond("IpAddress", IP, ["10.0.0.0/8", "2001:db8::/32"]),
        {IP: "2001:db8::1"},
        T,
    ),
    ("IpAddress v6", cond("IpAddress", IP, "2001:db8::/32"), {IP: "2001:db8:ffff::1"}, T),
    ("IpAddress v6 outside", cond("IpAddress", IP, "2001:db8::/32"), {IP: "2001:db9::1"}, F),
    ("IpAddress v4 net, v6 addr", cond("IpAddress", IP, "0.0.0.0/0"), {IP: "2001:db8::1"}, F),
    ("IpAddress v4-mapped", cond("IpAddress", IP, "203.0.113.0/24"), {IP: "::ffff:203.0.113.7"}, T),
    ("IpAddress unreadable", cond("IpAddress", IP, "0.0.0.0/0"), {IP: "nope"}, F),
    ("IpAddress missing", cond("IpAddress", IP, "0.0.0.0/0"), {}, F),
    ("NotIpAddress inside", cond("NotIpAddress", IP, "10.0.0.0/8"), {IP: "10.1.2.3"}, F),
    ("NotIpAddress outside", cond("NotIpAddress", IP, "10.0.0.0/8"), {IP: "192.0.2.1"}, T),
    (
        "NotIpAddress v6 net, v4 addr",
        cond("NotIpAddress", IP, "2001:db8::/32"),
        {IP: "192.0.2.1"},
        T,
    ),
    ("NotIpAddress missing", cond("NotIpAddress", IP, "10.0.0.0/8"), {}, T),
    ("NotIpAddress unreadable", cond("NotIpAddress", IP, "10.0.0.0/8"), {IP: "nope"}, F),
    # ARNs
    ("ArnLike", cond("ArnLike", SRC, f"{SNS}:topic-*"), {SRC: f"{SNS}:topic-a"}, T),
    (
        "ArnEquals takes wildcards",
        cond("ArnEquals", SRC, "arn:aws:sns:*:123456789012:t"),
        {SRC: f"{SNS}:t"},
        T,
    ),
    (
        "Arn star stays in its part",
        cond("ArnLike", SRC, "arn:aws:s*:us-east-1:1:t"),
        {SRC: "arn:aws:sns:x:us-east-1:1:t"},
        F,
    ),
    (
        "Arn resource part has colons",
        cond("ArnLike", SRC, "arn:aws:sns:r:1:a:b*"),
        {SRC: "arn:aws:sns:r:1:a:bc"},
        T,
    ),
    ("Arn wrong shape", cond("ArnLike", SRC, "arn:aws:sns:r:1:t"), {SRC: "not-an-arn"}, F),
    ("ArnNotLike missing key", cond("ArnNotLike", SRC, "arn:aws:sns:*:*:*"), {}, T),
    (
        "ArnNotEquals match",
        cond("ArnNotEquals", SRC, "arn:aws:sns:*:*:*"),
        {SRC: "arn:aws:sns:r:1:t"},
        F,
    ),
    # Null
    ("Null true, absent", cond("Null", PFX, "true"), {}, T),
    ("Null true, present", cond("Null", PFX, "true"), {PFX: "a"}, F),
    ("Null false, present", cond("Null", PFX, "false"), {PFX: ""}, T),
    ("Null false, absent", cond("Null", PFX, False), {}, F),
    ("Null, empty list is absent", cond("Null", TAGS, "true"), {TAGS: []}, T),
    # IfExists
    ("IfExists missing", cond("StringEqualsIfExists", PFX, "a"), {}, T),
    ("IfExists present, miss", cond("StringEqualsIfExists", PFX, "a"), {PFX: "b"}, F),
    ("IfExists present, hit", cond("StringEqualsIfExists", PFX, "a"), {PFX: "a"}, T),
    ("NumericIfExists missing", cond("NumericLessThanIfExists", MAX, "10"), {}, T),
    ("IpAddressIfExists missing", cond("IpAddressIfExists", IP, "10.0.0.0/8"), {}, T),
    ("BoolIfExists present", cond("BoolIfExists", TLS, "true"), {TLS: "false"}, F),
    # set qualifiers and multi-valued keys
    ("ForAnyValue hit", cond("ForAnyValue:StringEquals", TAGS, ["a", "b"]), {TAGS: ["x", "a"]}, T),
    ("ForAnyValue miss", cond("ForAnyValue:StringEquals", TAGS, ["a", "b"]), {TAGS: ["x"]}, F),
    ("ForAnyValue missing", cond("ForAnyValue:StringEquals", TAGS, ["a"]), {}, F),
    ("ForAnyValue empty", cond("ForAnyValue:StringEquals", TAGS, ["a"]), {TAGS: []}, F),
    ("ForAnyValue single string", cond("ForAnyValue:StringEquals", TAGS, ["a"]), {TAGS: "a"}, T),
    ("ForAllValues subset", cond("ForAllValues:StringEquals", TAGS, ["a", "b"]), {TAGS: ["a"]}, T),
    (
        "ForAllValues not subset",
        cond("ForAllValues:StringEquals", TAGS, ["a", "b"]),
        {TAGS: ["a", "x"]},
        F,
    ),
    ("ForAllValues missing", cond("ForAllValues:StringEquals", TAGS, ["a"]), {}, T),
    (
        "ForAnyValue negated hit",
        cond("ForAnyValue:StringNotEquals", TAGS, "a"),
        {TAGS: ["a", "b"]},
        T,
    ),
    ("ForAnyValue negated miss", cond("ForAnyValue:StringNotEquals", TAGS, "a"), {TAGS: ["a"]}, F),
    (
        "ForAllValues negated hit",
        cond("ForAllValues:StringNotEquals", TAGS, "a"),
        {TAGS: ["b", "c"]},
        T,
    ),
    (
        "ForAllValues negated miss",
        cond("ForAllValues:StringNotEquals", TAGS, "a"),
        {TAGS: ["b", "a"]},
        F,
    ),
    ("ForAllValues negated missing", cond("ForAllValues:StringNotEquals", TAGS, "a"), {}, T),
    (
        "ForAllValues like",
        cond("ForAllValues:StringLike", TAGS, "proj-*"),
        {TAGS: ["proj-a", "proj-b"]},
        T,
    ),
    ("ForAnyValue IfExists missing", cond("ForAnyValue:StringEqualsIfExists", TAGS, "a"), {}, T),
    ("unqualified multi-valued", cond("StringEquals", TAGS, "a"), {TAGS: ["x", "a"]}, T),
    ("unqualified negated, one matches", cond("StringNotEquals", TAGS, "a"), {TAGS: ["x", "a"]}, F),
    ("unqualified negated, none", cond("StringNotEquals", TAGS, "a"), {TAGS: ["x", "y"]}, T),
    # key names are case-insensitive; tag keys too (a kvbox simplification)
    ("policy key case", cond("IpAddress", "AWS:SOURCEIP", "10.0.0.0/8"), {IP: "10.0.0.1"}, T),
    ("request key case", cond("IpAddress", IP, "10.0.0.0/8"), {"AWS:sourceip": "10.0.0.1"}, T),
    (
        "tag key",
        cond("StringEquals", "s3:ExistingObjectTag/Class", "x"),
        {"s3:existingobjecttag/class": "x"},
        T,
    ),
    # policy variables in values
    ("variable", cond("StringEquals", PFX, "h/${aws:username}/"), {PFX: "h/al/", U: "al"}, T),
    (
        "variable, other user",
        cond("StringEquals", PFX, "h/${aws:username}/"),
        {PFX: "h/al/", U: "bo"},
        F,
    ),
    ("variable absent", cond("StringEquals", PFX, "h/${aws:username}/"), {PFX: "h//"}, F),
    (
        "variable in StringLike",
        cond("StringLike", PFX, "h/${aws:username}/*"),
        {PFX: "h/al/x/y", U: "al"},
        T,
    ),
    (
        "variable value is literal",
        cond("StringLike", PFX, "h/${aws:username}"),
        {PFX: "h/abc", U: "a*"},
        F,
    ),
    (
        "variable default",
        cond("StringEquals", PFX, "h/${aws:username, 'guest'}/"),
        {PFX: "h/guest/"},
        T,
    ),
    (
        "variable, ignore case",
        cond("StringEqualsIgnoreCase", PFX, "${aws:username}"),
        {PFX: "AL", U: "al"},
        T,
    ),
    (
        "variable in ArnLike",
        cond("ArnLike", SRC, "arn:aws:sns:*:*:${aws:username}"),
        {SRC: "arn:aws:sns:r:1:al", U: "al"},
        T,
    ),
]


@pytest.mark.parametrize(
    ("name", "condition", "context", "holds"), COND_CASES, ids=[c[0] for c in COND_CASES]
)
def test_condition(
    name: str, condition: dict[str, Any], context: dict[str, Any], holds: bool
) -> None:
    p = pol(S(Condition=condition))
    ev = evaluate(p, "alice", GET, K, context)
    assert ev.allowed is holds


# --- is_public ---------------------------------------------------------------------------------


def when(condition: dict[str, Any]) -> list[dict[str, Any]]:
    return [S(Condition=condition)]


PUBLIC_CASES: list[tuple[str, list[dict[str, Any]], bool]] = [
    ("star", [S()], T),
    ("AWS star", [S(principal={"AWS": "*"})], T),
    ("AWS star among users", [S(principal={"AWS": ["alice", "*"]})], T),
    ("fixed user", [S(principal=ALICE)], F),
    ("root", [S(principal={"AWS": "arn:aws:iam::111122223333:root"})], F),
    ("deny star", [S("Deny")], F),
    ("NotPrincipal allow", [S(not_principal=ALICE)], T),
    ("fixed vpc", when(cond("StringEquals", VPC, "vpc-91237329")), F),
    ("wildcard vpc (AWS's example)", when(cond("StringLike", VPC, "vpc-*")), T),
    ("StringLike without wildcard", when(cond("StringLike", VPC, "vpc-91237329")), F),
    ("negated vpc", when(cond("StringNotEquals", VPC, "vpc-1")), T),
    ("IfExists vpc", when(cond("StringEqualsIfExists", VPC, "vpc-1")), T),
    ("ForAllValues vpc", when(cond("ForAllValues:StringEquals", VPC, "vpc-1")), T),
    ("ForAnyValue vpc", when(cond("ForAnyValue:StringEquals", VPC, "vpc-1")), F),
    ("variable vpc", when(cond("StringEquals", VPC, "${aws:username}")), T),
    ("source ip /24", when(cond("IpAddress", IP, "203.0.113.0/24")), F),
    ("source ip /8", when(cond("IpAddress", IP, "10.0.0.0/8")), F),
    ("source ip /7", when(cond("IpAddress", IP, "10.0.0.0/7")), T),
    ("source ip /1", when(cond("IpAddress", IP, "0.0.0.0/1")), T),
    ("source ip /0", when(cond("IpAddress", IP, "0.0.0.0/0")), T),
    ("one broad range", when(cond("IpAddress", IP, ["203.0.113.0/24", "0.0.0.0/1"])), T),
    ("source ip v6 /32", when(cond("IpAddress", IP, "2001:db8::/32")), F),
    ("source ip v6 /31", when(cond("IpAddress", IP, "2001:db8::/31")), T),
    ("NotIpAddress", when(cond("NotIpAddress", IP, "10.0.0.0/8")), T),
    ("IpAddressIfExists", when(cond("IpAddressIfExists", IP, "10.0.0.0/8")), T),
    ("source ip as a string", when(cond("StringEquals", IP, "10.0.0.1")), T),
    ("userid fixed", when(cond("StringEquals", "aws:userid", "AIDAEXAMPLE")), F),
    ("userid role pattern", when(cond("StringLike", "aws:userid", "AROLEID:*")), T),
    ("org id", when(cond("StringEquals", "aws:PrincipalOrgID", "o-123")), F),
    ("source account", when(cond("StringEquals", "aws:SourceAccount", "111122223333")), F),
    ("source owner", when(cond("StringEquals", "aws:SourceOwner", "111122223333")), F),
    ("source vpce", when(cond("StringEquals", "aws:SourceVpce", "vpce-1")), F),
    ("source arn exact", when(cond("ArnEquals", SRC, "arn:aws:sns:r:1:t")), F),
    ("source arn wildcard", when(cond("ArnLike", SRC, "arn:aws:sns:*:1:t")), T),
    ("access point account", when(cond("StringEquals", "s3:DataAccessPointAccount", "1")), F),
    (
        "kms key",
        when(cond("StringEquals", "s3:x-amz-server-side-encryption-aws-kms-key-id", "k")),
        F,
    ),
    ("unrelated fixed key", when(cond("StringEquals", PFX, "home/")), T),
    ("secure transport only", when(cond("Bool", TLS, "true")), T),
    (
        "restricting and other",
        when({**cond("Bool", TLS, "true"), **cond("StringEquals", VPC, "v")}),
        F,
    ),
    ("one public statement", [S(principal=ALICE), S(action=PUT)], T),
    ("all fixed", [S(principal=ALICE), S("Deny")], F),
]


@pytest.mark.parametrize(
    ("name", "statements", "public"), PUBLIC_CASES, ids=[c[0] for c in PUBLIC_CASES]
)
def test_is_public(name: str, statements: list[dict[str, Any]], public: bool) -> None:
    assert is_public(pol(*statements)) is public


DELETES = ("s3:DeleteObject", "s3:DeleteObjectVersion")
IP_ONLY: dict[str, Any] = {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}


@pytest.mark.parametrize(
    ("statements", "anyone_may_delete"),
    [
        ([S(action="s3:DeleteObject")], True),
        ([S(action="s3:Delete*", Condition=IP_ONLY)], True),  # conditions aside: it could
        ([S(action="s3:*")], True),
        ([S(action="s3:GetObject")], False),
        ([S(principal=ALICE, action="s3:DeleteObject")], False),
        ([S("Deny", action="s3:DeleteObject")], False),
        ([S(action="s3:PutObject")], False),
    ],
)
def test_may_allow(statements: list[dict[str, Any]], anyone_may_delete: bool) -> None:
    assert may_allow(pol(*statements), None, DELETES) is anyone_may_delete


# --- properties -------------------------------------------------------------------------------


def _oracle(pattern: str, value: str) -> bool:
    """Wildcard matching written independently: recursion over (pattern, value) suffixes."""

    @cache
    def m(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(value)
        c = pattern[i]
        if c == "*":
            return m(i + 1, j) or (j < len(value) and m(i, j + 1))
        if j == len(value):
            return False
        return (c == "?" or c == value[j]) and m(i + 1, j + 1)

    return m(0, 0)


_EMPTY_CTX = NormalContext({})


@settings(max_examples=400, deadline=None)
@given(st.text("ab/*?.\n", max_size=8), st.text("ab/*?.\n", max_size=10))
def test_wildcard_matches_oracle(pattern: str, value: str) -> None:
    compiled = compile_pattern(pattern, wildcard=True)
    assert compiled.matches(value, _EMPTY_CTX) is _oracle(pattern, value)


@settings(max_examples=200, deadline=None)
@given(st.text("aB/.", max_size=6), st.text("aAbB/.", max_size=6))
def test_exact_and_ignore_case(pattern: str, value: str) -> None:
    assert compile_pattern(pattern, wildcard=False).matches(value, _EMPTY_CTX) is (pattern == value)
    folded = compile_pattern(pattern, wildcard=False, ignore_case=True)
    assert folded.matches(value, _EMPTY_CTX) is (pattern.lower() == value.lower())


_ip4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


@settings(max_examples=200, deadline=None)
@given(_ip4, st.integers(0, 32), _ip4)
def test_ip_address_matches_ipaddress(net_addr: str, prefix: int, addr: str) -> None:
    net = ipaddress.ip_network(f"{net_addr}/{prefix}", strict=False)
    p = pol(S(Condition={"IpAddress": {"aws:SourceIp": f"{net_addr}/{prefix}"}}))
    expected = ipaddress.ip_address(addr) in net
    for shown in (addr, f"::ffff:{addr}"):
        got = evaluate(p, "alice", "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SourceIp": shown})
        assert got.allowed is expected


@settings(max_examples=200, deadline=None)
@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_numeric_operators(policy_value: int, request_value: int) -> None:
    expectations = {
        "NumericEquals": request_value == policy_value,
        "NumericNotEquals": request_value != policy_value,
        "NumericLessThan": request_value < policy_value,
        "NumericLessThanEquals": request_value <= policy_value,
        "NumericGreaterThan": request_value > policy_value,
        "NumericGreaterThanEquals": request_value >= policy_value,
    }
    for op, expected in expectations.items():
        p = pol(S(Condition={op: {"s3:max-keys": policy_value}}))
        ctx = {"s3:max-keys": str(request_value)}
        assert evaluate(p, "alice", "s3:GetObject", "arn:aws:s3:::b/k", ctx).allowed is expected, op


_PRINCIPALS = ["*", {"AWS": "alice"}, {"AWS": "bob"}]
_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:*", "s3:Get*"]
_RESOURCES = [OBJ, "arn:aws:s3:::b/pub/*", "arn:aws:s3:::b/pub/k"]
_statement = st.builds(
    lambda effect, p, a, r: S(effect, principal=p, action=a, resource=r),
    st.sampled_from(["Allow", "Deny"]),
    st.sampled_from(_PRINCIPALS),
    st.sampled_from(_ACTIONS),
    st.sampled_from(_RESOURCES),
)


def _applies_oracle(s: dict[str, Any], principal: str | None, action: str, resource: str) -> bool:
    p = s["Principal"]
    who = p == "*" or (principal is not None and p["AWS"] == principal)
    what = _oracle(s["Action"].lower(), action.lower())
    where = _oracle(s["Resource"], resource)
    return who and what and where


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_statement, min_size=1, max_size=4),
    st.sampled_from([None, "alice", "bob"]),
    st.sampled_from(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
    st.sampled_from(["arn:aws:s3:::b/pub/k", "arn:aws:s3:::b/k"]),
)
def test_deny_wins_and_order_does_not_matter(
    statements: list[dict[str, Any]], principal: str | None, action: str, resource: str
) -> None:
    applying = [s["Effect"] for s in statements if _applies_oracle(s, principal, action, resource)]
    expected = DENY if "Deny" in applying else ALLOW if applying else NONE
    for order in itertools.islice(itertools.permutations(statements), 6):
        ev = evaluate(pol(*order), principal, action, resource, {})
        assert ev.outcome is expected
        if ev.statement is not None:
            assert order[ev.statement.index]["Effect"] == ("Deny" if expected is DENY else "Allow")
