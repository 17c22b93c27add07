"""Object lock's S3 forms (``kvbox.s3door.objectlock``, pure), with botocore as the oracle.

The oracle is tests/s3/_oracle.py (importable as ``s3._oracle``: pytest and mypy put
tests/ on the path), shared with the pure S3 tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kvbox.core.lock import DefaultRetention, Mode, Retention, VersionLock
from kvbox.s3.errors import S3Error
from kvbox.s3door.objectlock import (
    LegalHoldBody,
    ObjectLockConfiguration,
    RetentionBody,
    lock_from_headers,
    lock_headers,
    ns_of,
    render_date,
    wants_bypass,
)
from s3._oracle import boto_body, boto_parse

NOW = ns_of(datetime(2026, 1, 1, tzinfo=UTC))
LATER = datetime(2030, 1, 1, 12, 30, 5, 123000, tzinfo=UTC)


def _conf(rule: dict[str, object] | None) -> bytes:
    conf: dict[str, object] = {"ObjectLockEnabled": "Enabled"}
    if rule is not None:
        conf["Rule"] = {"DefaultRetention": rule}
    return boto_body("PutObjectLockConfiguration", {"Bucket": "b", "ObjectLockConfiguration": conf})


@pytest.mark.parametrize(
    ("rule", "default"),
    [
        (None, None),
        ({"Mode": "GOVERNANCE", "Days": 1}, DefaultRetention(Mode.GOVERNANCE, days=1)),
        ({"Mode": "COMPLIANCE", "Years": 3}, DefaultRetention(Mode.COMPLIANCE, years=3)),
    ],
)
def test_configuration_round_trips_with_botocore(
    rule: dict[str, object] | None, default: DefaultRetention | None
) -> None:
    parsed = ObjectLockConfiguration.from_xml(_conf(rule))
    assert parsed.default == default
    back = boto_parse("GetObjectLockConfiguration", parsed.to_xml())["ObjectLockConfiguration"]
    assert back == {
        "ObjectLockEnabled": "Enabled",
        **({"Rule": {"DefaultRetention": rule}} if rule else {}),
    }


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_conf({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}), "MalformedXML"),
        (_conf({"Mode": "GOVERNANCE"}), "MalformedXML"),
        (_conf({"Mode": "abc", "Days": 1}), "MalformedXML"),
        (_conf({"Mode": "governance", "Days": 1}), "MalformedXML"),
        (_conf({"Mode": "GOVERNANCE", "Days": 0}), "InvalidArgument"),
        (_conf({"Mode": "GOVERNANCE", "Years": -1}), "InvalidArgument"),
        (_conf({"Mode": "GOVERNANCE", "Years": 101}), "InvalidArgument"),
        (_conf({"Days": 1}), "MalformedXML"),
        (
            b"<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled>"
            b"</ObjectLockConfiguration>",
            "MalformedXML",
        ),
        (b"<ObjectLockConfiguration/>", "MalformedXML"),
        (
            b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
            b"<Rule/></ObjectLockConfiguration>",
            "MalformedXML",
        ),
    ],
)
def test_configuration_errors_are_aws_s(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as info:
        ObjectLockConfiguration.from_xml(body)
    assert info.value.code == code


def test_retention_round_trips_with_botocore() -> None:
    body = boto_body(
        "PutObjectRetention",
        {"Bucket": "b", "Key": "k", "Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": LATER}},
    )
    parsed = RetentionBody.from_xml(body)
    assert parsed.retention == Retention(Mode.COMPLIANCE, ns_of(LATER))
    back = boto_parse("GetObjectRetention", parsed.to_xml())["Retention"]
    assert back == {"Mode": "COMPLIANCE", "RetainUntilDate": LATER}
    assert RetentionBody.from_xml(b"<Retention/>").retention is None
    for bad in (
        b"<Retention><Mode>governance</Mode><RetainUntilDate>2030-01-01T00:00:00Z"
        b"</RetainUntilDate></Retention>",
        b"<Retention><Mode>GOVERNANCE</Mode></Retention>",
        b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>tomorrow</RetainUntilDate>"
        b"</Retention>",
    ):
        with pytest.raises(S3Error, match="MalformedXML"):
            RetentionBody.from_xml(bad)


def test_legal_hold_round_trips_with_botocore() -> None:
    for status in ("ON", "OFF"):
        body = boto_body(
            "PutObjectLegalHold", {"Bucket": "b", "Key": "k", "LegalHold": {"Status": status}}
        )
        parsed = LegalHoldBody.from_xml(body)
        assert parsed.on is (status == "ON")
        assert boto_parse("GetObjectLegalHold", parsed.to_xml())["LegalHold"] == {"Status": status}
    with pytest.raises(S3Error, match="MalformedXML"):
        LegalHoldBody.from_xml(b"<LegalHold><Status>abc</Status></LegalHold>")


def test_headers_in_and_out() -> None:
    until = "2030-01-01T12:30:05.123Z"
    lk = lock_from_headers(
        {
            "x-amz-object-lock-mode": "GOVERNANCE",
            "x-amz-object-lock-retain-until-date": until,
            "x-amz-object-lock-legal-hold": "ON",
        },
        NOW,
    )
    assert lk == VersionLock(Retention(Mode.GOVERNANCE, ns_of(LATER)), True)
    out = lock_headers(lk)
    assert out == {
        "x-amz-object-lock-mode": "GOVERNANCE",
        "x-amz-object-lock-retain-until-date": until,
        "x-amz-object-lock-legal-hold": "ON",
    }
    # botocore reads the headers into the same values a HeadObject returns.
    head = boto_parse("HeadObject", b"", out)
    assert head["ObjectLockRetainUntilDate"] == LATER and head["ObjectLockMode"] == "GOVERNANCE"
    assert lock_from_headers({}, NOW) is None
    assert lock_from_headers({"x-amz-object-lock-legal-hold": "OFF"}, NOW) == VersionLock(
        None, False
    )
    assert lock_headers(VersionLock()) == {}
    assert render_date(ns_of(datetime(2030, 1, 1, tzinfo=UTC))) == "2030-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-amz-object-lock-mode": "GOVERNANCE"}, "must both be supplied"),
        ({"x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z"}, "must both"),
        (
            {
                "x-amz-object-lock-mode": "SOMETIMES",
                "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z",
            },
            "Unknown wormMode",
        ),
        (
            {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "soon"},
            "ISO 8601",
        ),
        (
            {
                "x-amz-object-lock-mode": "GOVERNANCE",
                "x-amz-object-lock-retain-until-date": "2020-01-01T00:00:00Z",
            },
            "in the future",
        ),
        ({"x-amz-object-lock-legal-hold": "on-ish"}, "'ON' or 'OFF'"),
    ],
)
def test_bad_headers_are_invalid_argument(headers: dict[str, str], message: str) -> None:
    with pytest.raises(S3Error, match=message) as info:
        lock_from_headers(headers, NOW)
    assert info.value.code == "InvalidArgument"


def test_bypass_header() -> None:
    assert wants_bypass({"x-amz-bypass-governance-retention": "True"})
    assert not wants_bypass({"x-amz-bypass-governance-retention": "false"})
    assert not wants_bypass({})
