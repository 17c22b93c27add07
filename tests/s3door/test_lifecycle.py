"""Lifecycle XML (``kvbox.s3door.lifecycle``, pure): AWS's checks, botocore as the oracle.

The oracle is tests/s3/_oracle.py (importable as ``s3._oracle``: pytest and mypy put
tests/ on the path), shared with the pure S3 tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kvbox.core.lifecycle.rules import FilterForm, LifecycleConfig, Rule
from kvbox.s3.errors import S3Error
from kvbox.s3door.lifecycle import expiration_header, parse_lifecycle, render_lifecycle
from s3._oracle import boto_body, boto_parse


def body(*rules: dict[str, Any]) -> bytes:
    return boto_body(
        "PutBucketLifecycleConfiguration",
        {"Bucket": "b", "LifecycleConfiguration": {"Rules": list(rules)}},
    )


def round_trip(*rules: dict[str, Any]) -> list[dict[str, Any]]:
    config = parse_lifecycle(body(*rules))
    got: list[dict[str, Any]] = boto_parse(
        "GetBucketLifecycleConfiguration", render_lifecycle(config)
    )["Rules"]
    return got


MIDNIGHT = datetime(2030, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "rule",
    [
        {"ID": "a", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}},
        {"ID": "b", "Filter": {}, "Status": "Disabled", "Expiration": {"Date": MIDNIGHT}},
        {
            "ID": "c",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
        {
            "ID": "d",
            "Filter": {"Tag": {"Key": "env", "Value": "dev"}},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
        },
        {
            "ID": "e",
            "Filter": {"ObjectSizeGreaterThan": 100},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
        },
        {
            "ID": "f",
            "Filter": {"ObjectSizeLessThan": 100},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
        },
        {
            "ID": "g",
            "Filter": {
                "And": {
                    "Prefix": "x/",
                    "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}],
                    "ObjectSizeGreaterThan": 1,
                    "ObjectSizeLessThan": 1000,
                }
            },
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 5, "NewerNoncurrentVersions": 3},
        },
        {
            "ID": "h",
            "Prefix": "old-style/",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
    ],
)
def test_every_rule_shape_round_trips_with_botocore(rule: dict[str, Any]) -> None:
    (got,) = round_trip(rule)
    assert got == rule


def test_rules_without_an_id_get_one() -> None:
    got = round_trip(
        {"Filter": {"Prefix": "a/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"Filter": {"Prefix": "b/"}, "Status": "Enabled", "Expiration": {"Days": 2}},
    )
    ids = [r["ID"] for r in got]
    assert all(ids) and len(set(ids)) == 2


def test_the_model_is_what_the_worker_reads() -> None:
    config = parse_lifecycle(
        body(
            {
                "ID": "x",
                "Filter": {"Prefix": "p/"},
                "Status": "Enabled",
                "Expiration": {"Date": MIDNIGHT},
            }
        )
    )
    (rule,) = config.rules
    assert isinstance(config, LifecycleConfig) and isinstance(rule, Rule)
    assert rule.filter.form is FilterForm.PREFIX and rule.filter.prefix == "p/"
    assert rule.expiration_date_ns == int(MIDNIGHT.timestamp()) * 10**9


EXP = {"Days": 1}


@pytest.mark.parametrize(
    ("rules", "code", "message"),
    [
        (
            [{"ID": "a" * 256, "Filter": {}, "Status": "Enabled", "Expiration": EXP}],
            "InvalidArgument",
            "255",
        ),
        (
            [
                {"ID": "same", "Filter": {"Prefix": "a"}, "Status": "Enabled", "Expiration": EXP},
                {"ID": "same", "Filter": {"Prefix": "b"}, "Status": "Enabled", "Expiration": EXP},
            ],
            "InvalidArgument",
            "unique",
        ),
        ([{"ID": "a", "Filter": {}, "Status": "invalid", "Expiration": EXP}], "MalformedXML", None),
        (
            [{"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}}],
            "InvalidArgument",
            "positive",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "Expiration": {"Date": datetime(2030, 1, 1, 12, tzinfo=UTC)},
                }
            ],
            "InvalidArgument",
            "midnight",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True},
                }
            ],
            "InvalidArgument",
            "ExpiredObjectDeleteMarker",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 0},
                }
            ],
            "InvalidArgument",
            "NoncurrentDays",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "NoncurrentVersionExpiration": {
                        "NoncurrentDays": 1,
                        "NewerNoncurrentVersions": 101,
                    },
                }
            ],
            "InvalidArgument",
            "NewerNoncurrentVersions",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 0},
                }
            ],
            "InvalidArgument",
            "DaysAfterInitiation",
        ),
        ([{"ID": "a", "Filter": {}, "Status": "Enabled"}], "InvalidRequest", "At least one action"),
        (
            [
                {
                    "ID": "a",
                    "Filter": {"Tag": {"Key": "k", "Value": "v"}},
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ],
            "InvalidRequest",
            "Tags",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {"And": {"ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 5}},
                    "Status": "Enabled",
                    "Expiration": EXP,
                }
            ],
            "InvalidArgument",
            "less than",
        ),
        ([{"ID": "a", "Status": "Enabled", "Expiration": EXP}], "MalformedXML", None),  # no filter
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
                }
            ],
            "NotImplemented",
            "Transition",
        ),
        (
            [
                {
                    "ID": "a",
                    "Filter": {},
                    "Status": "Enabled",
                    "NoncurrentVersionTransitions": [
                        {"NoncurrentDays": 30, "StorageClass": "GLACIER"}
                    ],
                }
            ],
            "NotImplemented",
            "Transition",
        ),
    ],
)
def test_validation_answers_aws_errors(
    rules: list[dict[str, Any]], code: str, message: str | None
) -> None:
    with pytest.raises(S3Error) as info:
        parse_lifecycle(body(*rules))
    assert info.value.code == code
    if message is not None:
        assert message in info.value.message


@pytest.mark.parametrize(
    "xml",
    [
        b"<LifecycleConfiguration/>",
        b"<LifecycleConfiguration><Rule><ID>a</ID><Filter><Prefix>a</Prefix><Tag><Key>k</Key>"
        b"<Value>v</Value></Tag></Filter><Status>Enabled</Status><Expiration><Days>1</Days>"
        b"</Expiration></Rule></LifecycleConfiguration>",  # two conditions outside <And>
        b"<LifecycleConfiguration><Rule><ID>a</ID><Prefix>a</Prefix><Filter/>"
        b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
        b"</LifecycleConfiguration>",  # rule-level Prefix and a Filter
        b"<LifecycleConfiguration><Rule><ID>a</ID><Filter/><Status>Enabled</Status>"
        b"<Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date></Expiration></Rule>"
        b"</LifecycleConfiguration>",
        b"<LifecycleConfiguration><Rule><ID>a</ID><Filter/><Status>Enabled</Status>"
        b"<Expiration><Days>x</Days></Expiration></Rule></LifecycleConfiguration>",
    ],
)
def test_malformed_shapes(xml: bytes) -> None:
    with pytest.raises(S3Error) as info:
        parse_lifecycle(xml)
    assert info.value.code == "MalformedXML"


def test_x_amz_expiration_header_reads_in_botocore() -> None:
    value = expiration_header(int(MIDNIGHT.timestamp()) * 10**9, 'rule "one"')
    assert value == 'expiry-date="Sat, 01 Jun 2030 00:00:00 GMT", rule-id="rule \\"one\\""'
    head = boto_parse("HeadObject", b"", {"x-amz-expiration": value})
    assert head["Expiration"] == value
