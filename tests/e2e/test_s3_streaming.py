"""aws-chunked uploads (the STREAMING-* payload forms) against a real server.

botocore only sends aws-chunked bodies over HTTPS, so these requests are built with
kvbox's own signer (``kvbox.auth.sigv4``, itself checked against botocore in
tests/auth) and encoder, and sent with http.client.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import subprocess
import urllib.request
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from kvbox.auth.sigv4 import ChunkSigner, CredentialScope, sign_request, signing_key
from kvbox.proto.awschunked import encode_aws_chunked

from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server

BUCKET = "streaming"


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3stream") as srv:
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _put_chunked(
    srv: S3Server,
    key: str,
    chunks: list[bytes],
    mode: str,
    *,
    trailers: list[tuple[str, str]] | None = None,
    decoded_length: int | None = None,
    tamper: bool = False,
) -> tuple[int, bytes]:
    """PUT ``chunks`` as one aws-chunked body in payload form ``mode``."""
    host = f"127.0.0.1:{srv.http_port}"
    path = f"/{BUCKET}/{key}"
    total = sum(len(c) for c in chunks)
    headers = [
        ("host", host),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(total if decoded_length is None else decoded_length)),
    ]
    if trailers:
        headers.append(("x-amz-trailer", ",".join(n for n, _ in trailers)))
    now = datetime.now(UTC)
    signed = sign_request(
        "PUT", path, [], headers, mode,
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, now=now, region=REGION,
    )  # fmt: skip
    all_headers = dict(headers + signed)
    signer = None
    seed = None
    if mode.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
        amz_date = all_headers["x-amz-date"]
        scope = CredentialScope(amz_date[:8], REGION, "s3")
        signer = ChunkSigner(
            signing_key(SECRET_KEY, scope.date, REGION, "s3"), amz_date, str(scope)
        )
        seed = all_headers["Authorization"].rsplit("Signature=", 1)[1]
    body = b"".join(
        encode_aws_chunked(
            chunks,
            signer=signer,
            seed_signature=seed,
            trailers=trailers or (),
            sign_trailers=True if mode.endswith("-TRAILER") and signer else None,
        )
    )
    if tamper:
        i = body.index(chunks[0][:16]) + 5
        body = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
    all_headers["Content-Length"] = str(len(body))
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=all_headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _absent(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"]) == 404
    return False


CHUNKS = [b"a" * 65536, bytes(range(256)) * 256, b"tail"]
DATA = b"".join(CHUNKS)


def test_signed_chunks(s3srv: S3Server, s3: Any) -> None:
    status, body = _put_chunked(s3srv, "signed", CHUNKS, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    assert status == 200, body
    got = s3.get_object(Bucket=BUCKET, Key="signed")
    assert got["Body"].read() == DATA
    assert got["ETag"] == f'"{hashlib.md5(DATA).hexdigest()}"'


def test_tampered_chunk_is_refused_and_not_stored(s3srv: S3Server, s3: Any) -> None:
    status, body = _put_chunked(
        s3srv, "tampered", CHUNKS, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", tamper=True
    )
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body
    assert _absent(s3, "tampered")


def test_unsigned_trailer_checksum(s3srv: S3Server, s3: Any) -> None:
    trailers = [("x-amz-checksum-crc32", _crc32(DATA))]
    status, body = _put_chunked(
        s3srv, "trailer", CHUNKS, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", trailers=trailers
    )
    assert status == 200, body
    head = s3.head_object(Bucket=BUCKET, Key="trailer", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == _crc32(DATA)
    assert s3.get_object(Bucket=BUCKET, Key="trailer")["Body"].read() == DATA


def test_wrong_trailer_checksum_is_bad_digest(s3srv: S3Server, s3: Any) -> None:
    trailers = [("x-amz-checksum-crc32", _crc32(b"something else"))]
    status, body = _put_chunked(
        s3srv, "bad-trailer", CHUNKS, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", trailers=trailers
    )
    assert status == 400
    assert b"<Code>BadDigest</Code>" in body
    assert _absent(s3, "bad-trailer")


@pytest.mark.parametrize("value", ["not base64!", "AAAAAAAA", ""])
def test_malformed_trailer_checksum_is_invalid_request(
    s3srv: S3Server, s3: Any, value: str
) -> None:
    """A trailer value that is no CRC32 at all is AWS's InvalidRequest ("trailing header
    is invalid"), not BadDigest (which says a well-formed value did not match)."""
    status, body = _put_chunked(
        s3srv,
        "malformed-trailer",
        CHUNKS,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        trailers=[("x-amz-checksum-crc32", value)],
    )
    assert status == 400, body
    assert b"<Code>InvalidRequest</Code>" in body
    assert b"Value for x-amz-checksum-crc32 trailing header is invalid." in body
    assert _absent(s3, "malformed-trailer")


def test_signed_trailer(s3srv: S3Server, s3: Any) -> None:
    trailers = [("x-amz-checksum-crc32", _crc32(DATA))]
    status, body = _put_chunked(
        s3srv, "signed-trailer", CHUNKS, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        trailers=trailers,
    )  # fmt: skip
    assert status == 200, body
    assert s3.get_object(Bucket=BUCKET, Key="signed-trailer")["Body"].read() == DATA


def test_decoded_length_mismatch_is_incomplete_body(s3srv: S3Server, s3: Any) -> None:
    status, body = _put_chunked(
        s3srv, "short", CHUNKS, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", decoded_length=len(DATA) + 1
    )
    assert status == 400
    assert b"<Code>IncompleteBody</Code>" in body
    assert _absent(s3, "short")


def _sendfile_counts(srv: S3Server) -> tuple[float, float]:
    with urllib.request.urlopen(f"{srv.endpoint}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = {}
    for name in ("kvbox_sendfile_responses_total", "kvbox_sendfile_bytes_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        assert m, f"{name} not in /metrics"
        found[name] = float(m.group(1))
    return found["kvbox_sendfile_responses_total"], found["kvbox_sendfile_bytes_total"]


def test_large_gets_go_out_with_sendfile(s3srv: S3Server, s3: Any) -> None:
    """A real ``kvbox serve`` answers GETs of 1 MiB and more from the chunk files with
    sendfile: whole objects and ranges arrive byte-exact (boto3 and curl), and /metrics
    counts the responses and bytes that took that path; small objects do not."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    s3.put_object(Bucket=BUCKET, Key="big-sendfile", Body=data)
    s3.put_object(Bucket=BUCKET, Key="small-sendfile", Body=b"tiny")
    before = _sendfile_counts(s3srv)
    assert s3.get_object(Bucket=BUCKET, Key="big-sendfile")["Body"].read() == data
    first, last = 1_000_000, 2_600_000
    ranged = s3.get_object(Bucket=BUCKET, Key="big-sendfile", Range=f"bytes={first}-{last}")
    assert ranged["Body"].read() == data[first : last + 1]
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "big-sendfile"}, ExpiresIn=600
    )
    got = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "60", url],
        capture_output=True,
        timeout=90,
        check=True,
    ).stdout
    assert got == data
    assert s3.get_object(Bucket=BUCKET, Key="small-sendfile")["Body"].read() == b"tiny"
    after = _sendfile_counts(s3srv)
    assert after[0] - before[0] == 3
    assert after[1] - before[1] == 2 * len(data) + (last - first + 1)
