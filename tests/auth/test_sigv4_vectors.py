"""SigV4 against AWS's published S3 examples, stage by stage (tests/vectors/README.md)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kvbox.auth import sigv4
from kvbox.errors import wire

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "sigv4_s3_examples.json").read_text()
)
CREDS = VECTORS["credentials"]
NOW = datetime(2013, 5, 24, tzinfo=UTC)
SCOPE = sigv4.CredentialScope("20130524", "us-east-1", "s3")
HEADER_EXAMPLES = VECTORS["header_examples"]
PRESIGNED = VECTORS["presigned_example"]


def lookup(access_key: str) -> str | None:
    return CREDS["secret_key"] if access_key == CREDS["access_key"] else None


def pairs(raw: list[list[str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in raw]


def authorization(example: dict[str, Any]) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={CREDS['access_key']}/{SCOPE}, "
        f"SignedHeaders={example['signed_headers']}, Signature={example['signature']}"
    )


def test_credentials_match_the_documented_scope() -> None:
    assert sigv4.format_amz_date(NOW) == CREDS["now"]
    assert str(SCOPE) == "20130524/us-east-1/s3/aws4_request"


@pytest.mark.parametrize("example", HEADER_EXAMPLES, ids=lambda e: e["name"])
def test_header_examples_stage_by_stage(example: dict[str, Any]) -> None:
    headers = pairs(example["headers"])
    canonical = sigv4.canonical_request(
        example["method"],
        example["path"],
        pairs(example["query"]),
        headers,
        example["signed_headers"].split(";"),
        example["payload_hash"],
    )
    if "canonical_request" in example:
        assert canonical == "\n".join(example["canonical_request"])
    sts = sigv4.string_to_sign(CREDS["now"], SCOPE, canonical)
    if "string_to_sign" in example:
        assert sts == "\n".join(example["string_to_sign"])
    key = sigv4.signing_key(CREDS["secret_key"], "20130524", "us-east-1", "s3")
    assert sigv4.signature(key, sts) == example["signature"]
    if "body" in example:
        assert hashlib.sha256(example["body"].encode()).hexdigest() == example["payload_hash"]


@pytest.mark.parametrize("example", HEADER_EXAMPLES, ids=lambda e: e["name"])
def test_header_examples_verify(example: dict[str, Any]) -> None:
    headers = [*pairs(example["headers"]), ("Authorization", authorization(example))]
    result = sigv4.verify_request(
        example["method"],
        example["path"],
        pairs(example["query"]),
        headers,
        None,
        lookup,
        NOW + timedelta(minutes=5),
        region="us-east-1",
    )
    assert result.access_key == CREDS["access_key"]
    assert result.scope == SCOPE
    assert result.signature == example["signature"]
    assert result.payload_hash == example["payload_hash"]
    assert result.presigned is False
    assert ";".join(result.signed_headers) == example["signed_headers"]
    assert result.payload_mode is sigv4.payload_mode(example["payload_hash"])
    assert result.signing_key == sigv4.signing_key(
        CREDS["secret_key"], "20130524", "us-east-1", "s3"
    )
    # authenticate() picks the header mechanism for the same request.
    again = sigv4.authenticate(
        example["method"], example["path"], pairs(example["query"]), headers, lookup, NOW
    )
    assert again == result


@pytest.mark.parametrize("example", HEADER_EXAMPLES, ids=lambda e: e["name"])
def test_sign_request_reproduces_the_examples(example: dict[str, Any]) -> None:
    # Every example signs exactly the headers it sends, as sign_request does.
    added = sigv4.sign_request(
        example["method"],
        example["path"],
        pairs(example["query"]),
        pairs(example["headers"]),
        example["payload_hash"],
        access_key=CREDS["access_key"],
        secret_key=CREDS["secret_key"],
        now=NOW,
        region="us-east-1",
    )
    assert dict(added)["Authorization"] == authorization(example)


def test_example_payload_modes() -> None:
    modes = {e["name"]: sigv4.payload_mode(e["payload_hash"]) for e in HEADER_EXAMPLES}
    assert modes["get-object-range"] is sigv4.PayloadMode.SHA256
    assert modes["streaming-seed"] is sigv4.PayloadMode.STREAMING_SIGNED
    assert modes["streaming-trailer-seed"] is sigv4.PayloadMode.STREAMING_SIGNED_TRAILER


def _presigned_request() -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    url = urlsplit(PRESIGNED["url"])
    return url.path, sigv4.parse_query_string(url.query), [("Host", PRESIGNED["host"])]


def test_presigned_example_stage_by_stage() -> None:
    path, query, headers = _presigned_request()
    unsigned_query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    canonical = sigv4.canonical_request(
        "GET", path, unsigned_query, headers, ["host"], sigv4.UNSIGNED_PAYLOAD
    )
    assert canonical == "\n".join(PRESIGNED["canonical_request"])
    sts = sigv4.string_to_sign(CREDS["now"], SCOPE, canonical)
    assert sts == "\n".join(PRESIGNED["string_to_sign"])
    key = sigv4.signing_key(CREDS["secret_key"], "20130524", "us-east-1", "s3")
    assert sigv4.signature(key, sts) == PRESIGNED["signature"]


def test_presigned_example_verifies_until_it_expires() -> None:
    path, query, headers = _presigned_request()
    for now in (NOW, NOW + timedelta(seconds=PRESIGNED["expires"])):
        result = sigv4.verify_presigned("GET", path, query, headers, lookup, now)
        assert result.presigned is True
        assert result.payload_hash == sigv4.UNSIGNED_PAYLOAD
        assert result.expires_at == NOW + timedelta(seconds=PRESIGNED["expires"])
        assert sigv4.authenticate("GET", path, query, headers, lookup, now) == result
    with pytest.raises(sigv4.RequestExpired) as info:
        sigv4.verify_presigned("GET", path, query, headers, lookup, NOW + timedelta(seconds=86_401))
    assert wire(info.value).s3 == "AccessDenied"
    assert str(info.value) == "Request has expired"


def test_presign_url_reproduces_the_example() -> None:
    url = sigv4.presign_url(
        "GET",
        "https",
        PRESIGNED["host"],
        "/test.txt",
        access_key=CREDS["access_key"],
        secret_key=CREDS["secret_key"],
        now=NOW,
        expires=PRESIGNED["expires"],
        region="us-east-1",
    )
    assert url == PRESIGNED["url"]


@pytest.mark.parametrize("example", VECTORS["streaming_examples"], ids=lambda e: e["name"])
def test_chunk_signatures_chain_from_the_seed(example: dict[str, Any]) -> None:
    key = sigv4.signing_key(CREDS["secret_key"], "20130524", "us-east-1", "s3")
    signer = sigv4.ChunkSigner(key, CREDS["now"], str(SCOPE))
    previous = example["seed_signature"]
    for size, expected in zip(example["chunk_sizes"], example["chunk_signatures"], strict=True):
        data = example["chunk_byte"].encode() * size
        previous = signer.chunk_signature(previous, hashlib.sha256(data).hexdigest())
        assert previous == expected
    if example["trailer_signature"] is not None:
        trailers = pairs(example["trailers"])
        assert signer.trailer_signature(previous, trailers) == example["trailer_signature"]


def test_first_chunk_string_to_sign_is_the_documented_one() -> None:
    example = VECTORS["streaming_examples"][0]
    lines = example["chunk_string_to_sign_1"]
    assert lines[5] == hashlib.sha256(b"a" * 65536).hexdigest()
    assert lines[4] == sigv4.EMPTY_SHA256
    key = sigv4.signing_key(CREDS["secret_key"], "20130524", "us-east-1", "s3")
    assert sigv4.signature(key, "\n".join(lines)) == example["chunk_signatures"][0]


def test_chunk_signer_repr_hides_the_key() -> None:
    key = sigv4.signing_key(CREDS["secret_key"], "20130524", "us-east-1", "s3")
    signer = sigv4.ChunkSigner(key, CREDS["now"], str(SCOPE))
    assert key.hex() not in repr(signer) and repr(key) not in repr(signer)
