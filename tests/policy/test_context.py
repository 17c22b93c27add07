"""Every condition key a policy may name has a value source, or is refused by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kvbox.errors import PolicyError
from kvbox.policy import parse_policy
from kvbox.policy.conditions import KNOWN_KEYS, TAG_KEY_PREFIXES
from kvbox.policy.context import (
    KEY_SOURCES,
    RequestFacts,
    Unsupported,
    build_context,
    check_supported,
    unsupported_keys,
)
from kvbox.policy.evaluate import Outcome, evaluate

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

#: A request that carries every fact a front door can know.
EVERYTHING = RequestFacts(
    "alice",
    "CopyObject",
    now=NOW,
    region="us-east-1",
    source_ip="203.0.113.7",
    secure=True,
    tls_version="1.3",
    auth_type="REST-HEADER",
    signature_version="AWS4-HMAC-SHA256",
    signed_at=NOW - timedelta(seconds=3),
    headers={
        "User-Agent": "boto3",
        "Referer": "https://example.com/",
        "If-Match": '"abc"',
        "If-None-Match": "*",
        "x-amz-acl": "private",
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "x-amz-copy-source": "/src/key",
        "x-amz-grant-full-control": 'id="alice"',
        "x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"',
        "x-amz-grant-read-acp": 'id="bob"',
        "x-amz-grant-write": 'id="carol"',
        "x-amz-grant-write-acp": 'id="dave"',
        "x-amz-metadata-directive": "REPLACE",
        "x-amz-server-side-encryption": "AES256",
        "x-amz-server-side-encryption-aws-kms-key-id": "key",
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-storage-class": "STANDARD",
        "x-amz-website-redirect-location": "/other",
        "x-amz-object-lock-legal-hold": "ON",
        "x-amz-object-lock-mode": "GOVERNANCE",
        "x-amz-object-lock-retain-until-date": "2024-05-11T12:00:00Z",
    },
    version_id="v1",
    request_tags=(("project", "blue"),),
    bucket_tags={"team": "storage"},
    extra={"s3:ExistingObjectTag/stage": "prod"},
)
#: The list parameters only count for a listing.
LISTING = RequestFacts(
    "alice", "ListObjectsV2", params={"prefix": "a/", "delimiter": "/", "max-keys": "5"}
)


def _filled() -> dict[str, object]:
    ctx = {**build_context(EVERYTHING), **build_context(LISTING)}
    return {k.lower(): v for k, v in ctx.items()}


def test_every_known_key_has_a_source() -> None:
    """The issue's walk: a key kvbox accepts must be filled by some request, or refused."""
    filled = _filled()
    for key in sorted(KNOWN_KEYS):
        source = KEY_SOURCES.get(key)
        assert source is not None, f"{key} has no row in KEY_SOURCES"
        if isinstance(source, Unsupported):
            assert source.reason, key
            continue
        assert key in filled, f"{key} is accepted but no request ever fills it"


@pytest.mark.parametrize("prefix", TAG_KEY_PREFIXES)
def test_every_tag_key_prefix_has_a_source(prefix: str) -> None:
    source = KEY_SOURCES.get(prefix)
    assert source is not None
    if not isinstance(source, Unsupported):
        assert any(k.startswith(prefix) for k in _filled()), prefix


def test_values_come_from_the_request() -> None:
    ctx = _filled()
    assert ctx["s3:x-amz-copy-source"] == "/src/key"
    assert ctx["s3:x-amz-metadata-directive"] == "REPLACE"
    assert str(ctx["s3:x-amz-grant-read"]).startswith("uri=")
    assert ctx["s3:objectcreationoperation"] == "CopyObject"
    assert ctx["s3:signatureage"] == "3000"
    assert ctx["s3:object-lock-remaining-retention-days"] == "10"
    assert ctx["s3:requestobjecttagkeys"] == ["project"]
    assert ctx["s3:requestobjecttag/project"] == "blue"
    assert ctx["aws:resourcetag/team"] == "storage"
    assert ctx["s3:existingobjecttag/stage"] == "prod"
    assert ctx["aws:requestedregion"] == "us-east-1"
    assert ctx["s3:tlsversion"] == "1.3"
    # Absent facts are absent keys, as on AWS.
    bare = build_context(RequestFacts(None, "GetObject"))
    assert bare == {
        "aws:PrincipalType": "Anonymous",
        "aws:PrincipalIsAWSService": "false",
        "aws:ViaAWSService": "false",
    }
    assert "s3:prefix" not in build_context(
        RequestFacts("alice", "GetObject", params={"prefix": "a"})
    )


def _policy(condition: dict[str, object], version: str = "2012-10-17") -> str:
    return json.dumps(
        {
            "Version": version,
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": "arn:aws:s3:::b/*",
                    "Condition": condition,
                }
            ],
        }
    )


@pytest.mark.parametrize(
    "key", sorted(k for k, s in KEY_SOURCES.items() if isinstance(s, Unsupported))
)
def test_unsupported_keys_are_refused_by_name(key: str) -> None:
    name = key + "x" if key.endswith("/") else key
    policy = parse_policy(_policy({"StringEquals": {name: "v"}}), "b")
    with pytest.raises(PolicyError) as info:
        check_supported(policy)
    assert repr(name.lower()) in str(info.value) and "kvbox does not support" in str(info.value)


def test_unsupported_keys_as_policy_variables_are_refused_too() -> None:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/${aws:PrincipalAccount}/*",
            },
        }
    )
    assert unsupported_keys(parse_policy(text, "b")) == [
        ("aws:principalaccount", "kvbox is a single account without an AWS account id")
    ]
    # In a 2008-10-17 policy ${...} is literal text, not a variable.
    check_supported(parse_policy(text.replace("2012-10-17", "2008-10-17"), "b"))


def test_supported_keys_pass_and_decide() -> None:
    """A Deny on s3:x-amz-copy-source (a key kvbox used to accept and never fill) bites."""
    text = _policy({"StringLike": {"s3:x-amz-copy-source": "/secret/*"}})
    policy = parse_policy(text, "b")
    check_supported(policy)

    def outcome(source: str) -> Outcome:
        facts = RequestFacts("alice", "CopyObject", headers={"x-amz-copy-source": source})
        ctx = build_context(facts)
        return evaluate(policy, "alice", "s3:PutObject", "arn:aws:s3:::b/k", ctx).outcome

    assert outcome("/secret/k") is Outcome.DENY
    assert outcome("/public/k") is not Outcome.DENY
