"""POST policy documents and the form rules (``kvbox.s3.postpolicy``)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kvbox.s3.errors import S3Error
from kvbox.s3.postpolicy import (
    check_form,
    check_size,
    expand_key,
    parse_post_policy,
    success_status,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def b64(doc: Any) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def policy(*conditions: Any, expiration: str = "2026-03-01T13:00:00.000Z") -> str:
    return b64({"expiration": expiration, "conditions": list(conditions)})


def code_of(call: Any) -> str:
    with pytest.raises(S3Error) as info:
        call()
    return info.value.code


# --- the document ----------------------------------------------------------------------


def test_parse_conditions() -> None:
    p = parse_post_policy(
        policy(
            {"bucket": "b"},
            ["StArTs-WiTh", "$KeY", "user/"],
            ["eq", "$x-amz-meta-n", 5],
            ["content-length-range", "10", 20],
        )
    )
    assert p.expiration == datetime(2026, 3, 1, 13, tzinfo=UTC)
    assert [(c.op, c.field, c.value) for c in p.conditions] == [
        ("eq", "bucket", "b"),
        ("starts-with", "key", "user/"),
        ("eq", "x-amz-meta-n", "5"),
    ]
    assert p.length_range == (10, 20)
    assert parse_post_policy(policy(expiration="2026-03-01T13:00:00Z")).conditions == ()


@pytest.mark.parametrize(
    "doc",
    [
        "not base64!",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b"\xff\xfe").decode(),
        b64({"conditions": []}),
        b64({"expiration": "2026-03-01T13:00:00Z"}),
        b64({"EXPIRATION": "2026-03-01T13:00:00Z", "conditions": []}),
        b64({"expiration": "2026-03-01T13:00:00Z", "CONDITIONS": []}),
        b64({"expiration": "Sun, 01 Mar 2026 13:00:00 GMT", "conditions": []}),
        b64({"expiration": "2026-03-01T13:00:00+01:00", "conditions": []}),
        b64({"expiration": "2026-03-01T13:00:00Z", "conditions": {}}),
        policy({}),
        policy({"a": "1", "b": "2"}),
        policy(["eq", "key", "x"]),
        policy(["ends-with", "$key", "x"]),
        policy(["eq", "$key"]),
        policy(["content-length-range", 0]),
        policy(["content-length-range", -1, 0]),
        policy(["content-length-range", 9, 1]),
        policy(["eq", "$key", ["x"]]),
        policy([]),
    ],
)
def test_documents_aws_refuses(doc: str) -> None:
    assert code_of(lambda: parse_post_policy(doc)) == "InvalidPolicyDocument"


# --- the form ---------------------------------------------------------------------------


FIELDS = {"key": "user/a.txt", "x-amz-meta-n": "5", "policy": "p", "x-amz-signature": "s"}


def test_a_form_that_meets_its_policy() -> None:
    p = parse_post_policy(
        policy({"bucket": "b"}, ["starts-with", "$key", "user/"], {"x-amz-meta-n": "5"})
    )
    check_form(p, FIELDS, "b", NOW)
    check_form(p, {**FIELDS, "x-ignore-submit": "Go", "file": "f"}, "b", NOW)


@pytest.mark.parametrize(
    ("conditions", "fields", "bucket", "now", "message"),
    [
        ((), {"key": "k"}, "b", NOW + timedelta(hours=1), "Policy expired."),
        (({"bucket": "b"}, ["eq", "$key", "other"]), {"key": "k"}, "b", NOW, "Condition failed"),
        (
            ({"bucket": "b"}, ["starts-with", "$key", "u/"]),
            {"key": "k"},
            "b",
            NOW,
            "Condition failed",
        ),
        (({"bucket": "b"}, {"key": "k"}), {"key": "k"}, "other", NOW, "Condition failed"),
        (({"bucket": "b"}, {"acl": "private"}), {"key": "k"}, "b", NOW, "Condition failed"),
        (({"bucket": "b"},), {"key": "k"}, "b", NOW, "Extra input fields: key"),
        (({"key": "k"},), {"key": "k"}, "b", NOW, "Extra input fields: bucket"),
    ],
)
def test_every_condition_and_every_field_counts(
    conditions: tuple[Any, ...],
    fields: dict[str, str],
    bucket: str,
    now: datetime,
    message: str,
) -> None:
    p = parse_post_policy(policy(*conditions))
    with pytest.raises(S3Error) as info:
        check_form(p, fields, bucket, now)
    assert info.value.code == "AccessDenied"
    assert message in info.value.message


def test_sizes_keys_and_statuses() -> None:
    p = parse_post_policy(policy(["content-length-range", 2, 4]))
    check_size(p, 4, final=True)
    assert code_of(lambda: check_size(p, 5, final=False)) == "EntityTooLarge"
    assert code_of(lambda: check_size(p, 1, final=True)) == "EntityTooSmall"
    check_size(p, 1, final=False)  # still coming
    check_size(None, 0, final=True)
    assert code_of(lambda: check_size(None, 5 * 1024**3 + 1, final=False)) == "EntityTooLarge"
    assert expand_key("u/${filename}", "/home/me/x.png") == "u/x.png"
    assert expand_key("fixed", "x.png") == "fixed"
    assert expand_key("u/${filename}", None) == "u/"
    assert [success_status(v) for v in ("200", "201", "204", "404", None, " 201 ")] == [
        200,
        201,
        204,
        204,
        204,
        201,
    ]
