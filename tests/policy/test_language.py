"""parse_policy: what it accepts, how it compiles principals, and what it refuses (with
the message a client sees in MalformedPolicy)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvbox.errors import wire
from kvbox.policy import MAX_POLICY_BYTES, Effect, PolicyError, parse_policy
from kvbox.policy.language import S3_ACTIONS

BUCKET = "photos"
OBJECTS = "arn:aws:s3:::photos/*"


def stmt(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": OBJECTS,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def doc(*statements: dict[str, Any], **top: Any) -> str:
    body: dict[str, Any] = {"Version": "2012-10-17", "Statement": list(statements)}
    body.update(top)
    return json.dumps({k: v for k, v in body.items() if v is not None})


# --- accepted -------------------------------------------------------------------------------


def test_minimal_policy_keeps_text_and_compiles() -> None:
    text = doc(stmt(Sid="Read"))
    p = parse_policy(text, BUCKET)
    assert p.text == text
    assert p.bucket == BUCKET and p.version == "2012-10-17" and p.id is None
    (s,) = p.statements
    assert (s.index, s.sid, s.effect) == (0, "Read", Effect.ALLOW)
    assert json.loads(s.source) == stmt(Sid="Read")
    assert s.label == 'statement #0 (Sid "Read")'


def test_statement_may_be_a_single_object_and_version_may_be_missing() -> None:
    p = parse_policy(json.dumps({"Statement": stmt()}), BUCKET)
    assert p.version == "2008-10-17" and len(p.statements) == 1


def test_bytes_and_leading_whitespace_are_accepted() -> None:
    p = parse_policy(b"  \n" + doc(stmt(), Id="x").encode(), BUCKET)
    assert p.id == "x"


def test_2008_version_treats_variables_as_text() -> None:
    p = parse_policy(
        doc(stmt(Resource="arn:aws:s3:::photos/${aws:username}/*"), Version="2008-10-17"), BUCKET
    )
    (s,) = p.statements
    assert not s.resources.patterns[0].has_variables


def test_2012_version_compiles_variables() -> None:
    p = parse_policy(doc(stmt(Resource="arn:aws:s3:::photos/${aws:username}/*")), BUCKET)
    assert p.statements[0].resources.patterns[0].has_variables


def test_size_limit_is_20_kib() -> None:
    base = doc(stmt(Sid=""))
    padded = base.replace('"Sid": ""', '"Sid": "' + "x" * (MAX_POLICY_BYTES - len(base)) + '"')
    assert len(padded.encode()) == MAX_POLICY_BYTES
    parse_policy(padded, BUCKET)
    with pytest.raises(PolicyError, match="maximum allowed document size: 20481 bytes"):
        parse_policy(padded.replace('"x', '"xx'), BUCKET)


@pytest.mark.parametrize(
    ("principal", "everyone", "root", "users"),
    [
        ("*", True, False, set()),
        ({"AWS": "*"}, True, False, set()),
        ({"AWS": ["alice", "*"]}, True, False, {"alice"}),
        ({"AWS": "alice"}, False, False, {"alice"}),
        ({"AWS": ["alice", "bob"]}, False, False, {"alice", "bob"}),
        ({"AWS": "arn:aws:iam::123456789012:user/alice"}, False, False, {"alice"}),
        ({"AWS": "arn:aws:iam::123456789012:user/team/alice"}, False, False, {"alice"}),
        ({"AWS": "arn:aws:iam::123456789012:root"}, False, True, set()),
        ({"AWS": "123456789012"}, False, True, set()),
        ({"AWS": "root"}, False, True, set()),
        ({"CanonicalUser": "alice"}, False, False, {"alice"}),
        ({"AWS": "alice", "CanonicalUser": "root"}, False, True, {"alice"}),
    ],
)
def test_principal_forms(principal: Any, everyone: bool, root: bool, users: set[str]) -> None:
    p = parse_policy(doc(stmt(Principal=principal)), BUCKET)
    who = p.statements[0].principals
    assert (who.everyone, who.root, set(who.users)) == (everyone, root, users)


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("*", OBJECTS),
        ("s3:*", "arn:aws:s3:::photos"),
        ("S3:getobject", OBJECTS),
        ("s3:Get*", OBJECTS),
        ("s3:Get*", "arn:aws:s3:::photos"),  # GetBucketAcl and friends
        ("s3:ListBucket", "arn:aws:s3:::photos"),
        ("s3:ListBucket", "arn:aws:s3:::photos*"),  # may be the bucket
        ("s3:PutObject", "arn:aws:s3:::photos*"),  # may be objects
        ("s3:GetObject", "*"),
        ("s3:ListBucket", "*"),
        ("s3:GetObjectVersio?", OBJECTS),
        (["s3:ListBucket", "s3:GetObject"], [OBJECTS, "arn:aws:s3:::photos"]),
        ("s3:GetObject", "arn:aws:s3:::ph?tos/a/*"),
    ],
)
def test_actions_and_resources_accepted(action: Any, resource: Any) -> None:
    parse_policy(doc(stmt(Action=action, Resource=resource)), BUCKET)


def test_not_elements_skip_the_applies_check() -> None:
    p = parse_policy(
        doc(stmt(Action=None, NotAction="s3:ListBucket", Resource=None, NotResource=OBJECTS)),
        BUCKET,
    )
    s = p.statements[0]
    assert s.not_action and s.not_resource and not s.not_principal


def test_every_router_action_is_known() -> None:
    from kvbox.s3.router import ACTIONS

    for plain, versioned in ACTIONS.values():
        for action in (plain, versioned):
            if action is not None:
                assert action.lower() in S3_ACTIONS, action


def test_condition_values_accept_numbers_and_booleans() -> None:
    p = parse_policy(
        doc(
            stmt(
                Condition={
                    "NumericLessThanEquals": {"s3:max-keys": 10},
                    "Bool": {"aws:SecureTransport": True},
                    "StringEquals": {"s3:prefix": ["", "home/"]},
                }
            )
        ),
        BUCKET,
    )
    values = {c.base: c.values for c in p.statements[0].conditions}
    assert values == {
        "NumericLessThanEquals": ("10",),
        "Bool": ("true",),
        "StringEquals": ("", "home/"),
    }


# --- refused ------------------------------------------------------------------------------


def _bad(**fields: Any) -> str:
    return doc(stmt(**fields))


ERRORS: list[tuple[str, str | bytes, str]] = [
    ("not json", "{nope", "Policies must be valid JSON: Expecting property name"),
    ("first byte", "[1]", "first byte must be '{'"),
    ("empty", "", "first byte must be '{'"),
    ("utf-8", b'{"Statement": "\xff"}', "Policies must be UTF-8: invalid byte at offset 15"),
    ("duplicate key", '{"Statement": [], "Statement": []}', "the key 'Statement' appears twice"),
    ("nan", '{"Statement": NaN}', "NaN is not a JSON value"),
    (
        "unknown top",
        doc(stmt(), Statment=[]),
        "policy: unknown field 'Statment' (did you mean Statement?)",
    ),
    ("top case", '{"statement": []}', "unknown field 'statement' (did you mean Statement?)"),
    ("version", doc(stmt(), Version="2020-01-01"), "Policy has invalid Version '2020-01-01'"),
    ("id type", doc(stmt(), Id=5), "Id must be a string"),
    ("no statement", '{"Version": "2012-10-17"}', "Missing required field Statement"),
    ("empty statements", doc(), "Statement must be an object or a non-empty list"),
    ("statement type", '{"Statement": ["x"]}', "statement #0: a statement must be a JSON object"),
    ("sid type", _bad(Sid=3), "statement #0: Sid must be a string"),
    (
        "unknown field",
        _bad(Sid="S", Efect="Allow"),
        "statement #0 (Sid \"S\"): unknown field 'Efect' (did you mean Effect?)",
    ),
    ("no effect", _bad(Effect=None), "statement #0: Missing required field Effect"),
    ("effect case", _bad(Effect="allow"), 'Effect must be "Allow" or "Deny", not \'allow\''),
    ("no principal", _bad(Principal=None), "Missing required field Principal"),
    ("both principals", _bad(NotPrincipal={"AWS": "bob"}), "use either Principal or NotPrincipal"),
    ("principal string", _bad(Principal="alice"), "Invalid principal in policy: 'alice'"),
    ("principal empty", _bad(Principal={}), 'Principal must be "*" or an object'),
    (
        "service",
        _bad(Principal={"Service": "cloudtrail.amazonaws.com"}),
        "kvbox has no Service principals",
    ),
    ("federated", _bad(Principal={"Federated": "x"}), "kvbox has no Federated principals"),
    ("principal type", _bad(Principal={"Users": "x"}), "unknown principal type 'Users'"),
    (
        "role",
        _bad(Principal={"AWS": "arn:aws:iam::123456789012:role/r"}),
        "kvbox has users and root only",
    ),
    ("wildcard user", _bad(Principal={"AWS": "al*"}), "'al*' is not a user name"),
    ("bad user", _bad(Principal={"AWS": "a b"}), "'a b' is not a user name"),
    ("empty principal list", _bad(Principal={"AWS": []}), "Principal AWS is an empty list"),
    (
        "not principal star",
        _bad(Principal=None, NotPrincipal="*"),
        'NotPrincipal "*" excludes everyone',
    ),
    ("no action", _bad(Action=None), "Missing required field Action"),
    ("action type", _bad(Action=5), "Action must be a string or a list of strings"),
    ("empty action", _bad(Action=""), "Action contains an empty string"),
    ("empty actions", _bad(Action=[]), "Action is an empty list"),
    ("other service", _bad(Action="iam:PassRole"), "Policy has invalid action: 'iam:PassRole'"),
    ("no service", _bad(Action="GetObject"), "Policy has invalid action: 'GetObject'"),
    ("typo", _bad(Action="s3:GetObjects"), "'s3:GetObjects' (did you mean s3:GetObject?)"),
    ("wildcard none", _bad(Action="s3:Frob*"), "'s3:Frob*' matches no S3 action"),
    ("no resource", _bad(Resource=None), "Missing required field Resource"),
    ("both resources", _bad(NotResource=OBJECTS), "use either Resource or NotResource"),
    ("resource not arn", _bad(Resource="photos/*"), "Policy has invalid resource: 'photos/*'"),
    (
        "other bucket",
        _bad(Resource="arn:aws:s3:::other/*"),
        "'arn:aws:s3:::other/*' is not in bucket 'photos'",
    ),
    ("prefix bucket", _bad(Resource="arn:aws:s3:::photos2/*"), "is not in bucket 'photos'"),
    (
        "variable bucket",
        _bad(Resource="arn:aws:s3:::${aws:username}/*"),
        "a policy variable cannot stand in the bucket name",
    ),
    (
        "bucket action on objects",
        _bad(Action="s3:ListBucket"),
        "Action does not apply to any resource(s) in statement: "
        "s3:ListBucket applies to the bucket ('arn:aws:s3:::photos')",
    ),
    (
        "object action on bucket",
        _bad(Resource="arn:aws:s3:::photos"),
        "s3:GetObject applies to objects ('arn:aws:s3:::photos/*'), "
        "but the statement names only the bucket",
    ),
    (
        "account action",
        _bad(Action="s3:ListAllMyBuckets"),
        "s3:ListAllMyBuckets applies to no bucket or object",
    ),
    ("condition type", _bad(Condition=[]), "Condition must be an object"),
    (
        "condition block",
        _bad(Condition={"StringEquals": "x"}),
        "Condition 'StringEquals' must be a non-empty object",
    ),
    (
        "operator",
        _bad(Condition={"StringEqual": {"s3:prefix": "a"}}),
        "Invalid Condition type: 'StringEqual' (did you mean StringEquals?)",
    ),
    (
        "operator case",
        _bad(Condition={"stringequals": {"s3:prefix": "a"}}),
        "(did you mean StringEquals?)",
    ),
    (
        "qualifier",
        _bad(Condition={"ForSomeValues:StringEquals": {"s3:prefix": "a"}}),
        "the set qualifier must be ForAnyValue or ForAllValues",
    ),
    (
        "null qualifier",
        _bad(Condition={"ForAnyValue:Null": {"s3:prefix": "true"}}),
        "Null takes no qualifier",
    ),
    (
        "null ifexists",
        _bad(Condition={"NullIfExists": {"s3:prefix": "true"}}),
        "Null takes no qualifier",
    ),
    (
        "null value",
        _bad(Condition={"Null": {"s3:prefix": "yes"}}),
        "Null takes exactly one value, true or false",
    ),
    (
        "key",
        _bad(Condition={"Bool": {"aws:SecureTranport": "false"}}),
        "invalid condition key: 'aws:SecureTranport' (did you mean aws:SecureTransport?)",
    ),
    (
        "tag key",
        _bad(Condition={"StringEquals": {"s3:ExistingObjectTag/": "x"}}),
        "needs a tag key after the '/'",
    ),
    (
        "value type",
        _bad(Condition={"StringEquals": {"s3:prefix": {"a": 1}}}),
        "a condition value must be a string, number or boolean",
    ),
    (
        "null json",
        _bad(Condition={"StringEquals": {"s3:prefix": None}}),
        "a condition value must be a string, number or boolean",
    ),
    (
        "no values",
        _bad(Condition={"StringEquals": {"s3:prefix": []}}),
        "the list of values is empty",
    ),
    (
        "number",
        _bad(Condition={"NumericLessThan": {"s3:max-keys": "ten"}}),
        "'ten' is not a number",
    ),
    (
        "date",
        _bad(Condition={"DateLessThan": {"aws:CurrentTime": "tomorrow"}}),
        "'tomorrow' is not an ISO 8601 date",
    ),
    (
        "bool",
        _bad(Condition={"Bool": {"aws:SecureTransport": "yes"}}),
        "Bool takes true or false, not 'yes'",
    ),
    (
        "ip",
        _bad(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}),
        "'10.0.0.0/33' is not an IP address or CIDR block",
    ),
    (
        "variable",
        _bad(Condition={"StringLike": {"s3:prefix": "${aws:username"}}),
        "unterminated policy variable",
    ),
    (
        "variable body",
        _bad(Condition={"StringLike": {"s3:prefix": "${a b}"}}),
        "invalid policy variable ${a b}",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_refused_with_message(name: str, text: str | bytes, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, BUCKET)
    assert message in str(info.value)


def test_error_names_the_statement_by_index_and_sid() -> None:
    text = doc(stmt(Sid="Fine"), stmt(Sid="Broken", Action="s3:Nope"))
    with pytest.raises(
        PolicyError, match=r'^statement #1 \(Sid "Broken"\): Policy has invalid action'
    ):
        parse_policy(text, BUCKET)


def test_policy_error_maps_to_malformed_policy() -> None:
    assert (wire(PolicyError).s3, wire(PolicyError).status) == ("MalformedPolicy", 400)


def test_deeply_nested_json_is_a_policy_error() -> None:
    text = '{"Statement": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(PolicyError):
        parse_policy(text[:MAX_POLICY_BYTES], BUCKET)
