"""SigV2 against AWS's published examples (tests/vectors/README.md), and its refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from kvbox.auth import sigv2, sigv4

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "sigv2_s3_examples.json").read_text()
)
CREDS = VECTORS["credentials"]
AK, SECRET = CREDS["access_key"], CREDS["secret_key"]
PRESIGNED = VECTORS["presigned_example"]


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


def request_of(example: dict[str, Any]) -> tuple[list[tuple[str, str]], datetime]:
    headers = [(n, v) for n, v in example["headers"]]
    headers.append(("Host", example["host"]))
    headers.append(("Authorization", sigv2.authorization_header(AK, example["signature"])))
    values = {n.lower(): v for n, v in headers}
    return headers, parsedate_to_datetime(values.get("x-amz-date", values["date"]))


@pytest.mark.parametrize("example", VECTORS["header_examples"], ids=lambda e: e["name"])
def test_aws_header_examples(example: dict[str, Any]) -> None:
    headers, now = request_of(example)
    values = {n.lower(): v for n, v in example["headers"]}
    sts = sigv2.string_to_sign(
        example["method"],
        example["path"],
        example["query"],
        example["headers"],
        date="" if "x-amz-date" in values else values["date"],
        bucket=example["bucket"],
    )
    assert sts == "\n".join(example["string_to_sign"])
    assert sigv2.signature(SECRET, sts) == example["signature"]
    result = sigv2.verify_request(
        example["method"],
        example["path"],
        example["query"],
        headers,
        lookup,
        now,
        bucket=example["bucket"],
    )
    assert (result.access_key, result.request_time) == (AK, now)


def test_aws_presigned_example() -> None:
    ex = PRESIGNED
    expires_at = datetime.fromtimestamp(ex["expires"], UTC)
    sts = sigv2.string_to_sign(
        ex["method"], ex["path"], ex["query"], [], date=str(ex["expires"]), bucket=ex["bucket"]
    )
    assert sts == "\n".join(ex["string_to_sign"])
    assert sigv2.signature(SECRET, sts) == ex["signature"]
    headers = [("Host", ex["host"])]
    for at in (expires_at - timedelta(days=3650), expires_at):
        result = sigv2.verify_presigned(
            ex["method"], ex["path"], ex["query"], headers, lookup, at, bucket=ex["bucket"]
        )
        assert result.presigned and result.expires_at == expires_at
    late = expires_at + timedelta(seconds=1)
    with pytest.raises(sigv4.RequestExpired) as info:
        sigv2.verify_presigned(
            ex["method"], ex["path"], ex["query"], headers, lookup, late, bucket=ex["bucket"]
        )
    assert (str(info.value), info.value.expires_at, info.value.server_time) == (
        "Request has expired",
        expires_at,
        late,
    )


def test_sub_resources_signed_and_sorted_others_ignored() -> None:
    assert (
        sigv2.canonical_resource("/b/k", "uploadId=u%2B1&partNumber=2&x-id=PutObject")
        == "/b/k?partNumber=2&uploadId=u+1"
    )
    assert sigv2.canonical_resource("/b/", "tagging=&versions") == "/b/?tagging=&versions"
    assert sigv2.canonical_resource("/b/k", "prefix=a&max-keys=3") == "/b/k"


def test_a_bucket_is_slash_terminated_in_either_addressing() -> None:
    """botocore signs a path-style ``GET /b`` as ``/b/``, as a virtual-hosted ``GET /``
    on ``b``; a client that signs ``/b`` as sent is accepted too."""
    assert sigv2.canonical_resource("/b") == sigv2.canonical_resource("/", bucket="b") == "/b/"
    assert sigv2.canonical_resource("/b", bucket_slash=False) == "/b"
    for form in ("/b/", "/b"):
        sts = f"GET\n\n\n{DATE}\n{form}?acl"
        h = [("Date", DATE), ("Authorization", f"AWS {AK}:{sigv2.signature(SECRET, sts)}")]
        assert sigv2.verify_request("GET", "/b", "acl", h, lookup, NOW).access_key == AK
    with pytest.raises(sigv2.SigV2DoesNotMatch) as info:
        h = [("Date", DATE), ("Authorization", f"AWS {AK}:AAAA")]
        sigv2.verify_request("GET", "/b", "acl", h, lookup, NOW)
    assert info.value.string_to_sign.endswith("\n/b/?acl")  # AWS's form is reported


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DATE = "Wed, 01 May 2024 12:00:00 GMT"


def signed(
    headers: list[tuple[str, str]], method: str = "GET", path: str = "/b/k"
) -> list[tuple[str, str]]:
    values = {n.lower() for n, _ in headers}
    date = "" if "x-amz-date" in values else dict((n.lower(), v) for n, v in headers)["date"]
    sig = sigv2.signature(SECRET, sigv2.string_to_sign(method, path, "", headers, date=date))
    return [*headers, ("Authorization", f"AWS {AK}:{sig}")]


def test_x_amz_date_wins_over_date_and_iso_form_accepted() -> None:
    # s3cmd's form: x-amz-date and no Date at all; the Date line is empty.
    for stamp in (DATE, "20240501T120000Z"):
        h = signed([("x-amz-date", stamp)])
        assert sigv2.verify_request("GET", "/b/k", "", h, lookup, NOW).request_time == NOW
    # A stale Date does not matter when x-amz-date is there...
    h = signed([("Date", "Mon, 01 Jan 2001 00:00:00 GMT"), ("x-amz-date", DATE)])
    sigv2.verify_request("GET", "/b/k", "", h, lookup, NOW)
    # ...and a stale x-amz-date is skew even beside a fresh Date.
    h = signed([("Date", DATE), ("x-amz-date", "Mon, 01 Jan 2001 00:00:00 GMT")])
    with pytest.raises(sigv4.RequestTimeTooSkewed):
        sigv2.verify_request("GET", "/b/k", "", h, lookup, NOW)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([], "AWS authentication requires a valid Date or x-amz-date header"),
        ([("Date", "yesterday")], "AWS authentication requires a valid Date or x-amz-date"),
        ([("x-amz-date", "2024-05-01")], "AWS authentication requires a valid Date"),
    ],
)
def test_missing_or_bad_date_is_access_denied(headers: list[tuple[str, str]], message: str) -> None:
    h = [*headers, ("Authorization", f"AWS {AK}:c2lnbmF0dXJl")]
    with pytest.raises(sigv4.AccessDenied) as info:
        sigv2.verify_request("GET", "/b/k", "", h, lookup, NOW)
    assert message in str(info.value)
    assert type(info.value) is sigv4.AccessDenied


@pytest.mark.parametrize(
    "value", ["AWS", "AWS AKONLY", "AWS :sig", "AWS AK:", "AWS  AK sig", "AWS" + " a:b" * 9000]
)
def test_malformed_header_is_invalid_argument(value: str) -> None:
    with pytest.raises(sigv4.InvalidAuthArgument) as info:
        h = [("Date", DATE), ("Authorization", value)]
        sigv2.verify_request("GET", "/", "", h, lookup, NOW)
    assert "Expected AwsAccessKeyId:signature" in str(info.value)
    assert info.value.argument_name == "Authorization"


def test_signature_mismatch_carries_string_to_sign_bytes() -> None:
    h = [("Date", DATE), ("Authorization", f"AWS {AK}:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")]
    with pytest.raises(sigv2.SigV2DoesNotMatch) as info:
        sigv2.verify_request("GET", "/b/k", "", h, lookup, NOW)
    assert info.value.string_to_sign == f"GET\n\n\n{DATE}\n/b/k"
    assert info.value.string_to_sign_bytes.startswith("47 45 54 0a")


@pytest.mark.parametrize(
    ("query", "error", "message"),
    [
        ("AWSAccessKeyId=a&Signature=s", sigv4.AccessDenied, "requires the Signature, Expires"),
        ("Signature=s&Expires=1", sigv4.AccessDenied, "requires the Signature, Expires"),
        (
            "AWSAccessKeyId=a&Signature=s&Expires=soon",
            sigv4.AccessDenied,
            "Invalid date (should be seconds since epoch): soon",
        ),
        ("AWSAccessKeyId=a&Signature=s&Expires=-5", sigv4.AccessDenied, "Invalid date"),
        (
            "AWSAccessKeyId=a&Signature=s&Expires=1&Expires=2",
            sigv4.InvalidAuthArgument,
            "Expires must appear only once",
        ),
    ],
)
def test_presigned_parameter_errors(query: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        sigv2.verify_presigned("GET", "/b/k", query, [], lookup, NOW)
    assert message in str(info.value)


def test_presigned_detection() -> None:
    assert sigv2.is_presigned("AWSAccessKeyId=a&Signature=s&Expires=1")
    assert sigv2.is_presigned("Signature=s")
    assert not sigv2.is_presigned("prefix=Signature&max-keys=2")
    assert not sigv2.is_presigned("X-Amz-Signature=abc")
    assert sigv2.is_sigv2_header("AWS AK:sig")
    assert not sigv2.is_sigv2_header("AWS4-HMAC-SHA256 Credential=...")
