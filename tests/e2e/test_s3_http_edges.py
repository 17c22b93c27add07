"""The S3 port at the HTTP level, against a real ``kvbox serve``: ``Expect`` and requests
the HTTP library refuses before any S3 code runs.

Layer: tests/e2e. Rules: curl and raw sockets, as a user's tools would send them; what
the client sent is what curl reports (``%{size_upload}``), not what the server says.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._s3 import S3Server, module_server

BUCKET = "edges"
MiB = 1 << 20


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3edges") as srv:
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


def _curl_put(url: str, path: Path, *headers: str) -> tuple[int, int, float, bytes]:
    """(status, bytes curl uploaded, seconds, body) of ``curl -T path url``."""
    exe = shutil.which("curl")
    assert exe, "curl is needed for these tests (apt-get install curl)"
    args = [exe, "-sS", "--noproxy", "*", "--max-time", "60", "-T", str(path)]
    for h in headers:
        args += ["-H", h]
    # curl would give up waiting for the 100 after 1 s and send anyway: wait long, so a
    # body that went out went out because the server asked for it.
    args += ["--expect100-timeout", "30", "-o", "-", "-w", "\n%{http_code} %{size_upload}", url]
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, timeout=90, check=False)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    body, _, tail = proc.stdout.rpartition(b"\n")
    status, uploaded = tail.split()
    return int(status), int(uploaded), elapsed, body


def test_100_continue_only_after_authentication_and_authorisation(
    s3srv: S3Server, s3: Any, tmp_path: Path
) -> None:
    data = tmp_path / "two-mib"
    data.write_bytes(b"x" * (2 * MiB))
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "allowed"}, ExpiresIn=300
    )
    status, uploaded, elapsed, _ = _curl_put(url, data, "Expect: 100-continue")
    assert (status, uploaded) == (200, 2 * MiB)
    assert elapsed < 20, "the 100 came at once, not after curl's timeout"
    assert s3.head_object(Bucket=BUCKET, Key="allowed")["ContentLength"] == 2 * MiB

    # Anonymous: refused before the body is asked for, so curl never sends it.
    anonymous = f"{s3srv.endpoint}/{BUCKET}/refused"
    status, uploaded, elapsed, body = _curl_put(anonymous, data, "Expect: 100-continue")
    assert (status, uploaded) == (403, 0), body
    assert b"<Code>AccessDenied</Code>" in body
    assert elapsed < 20
    # Signed, but for another key: authenticated and then refused all the same.
    wrong = url.replace("/allowed?", "/other?")
    status, uploaded, _, body = _curl_put(wrong, data, "Expect: 100-continue")
    assert (status, uploaded) == (403, 0) and b"SignatureDoesNotMatch" in body


def test_an_expectation_other_than_100_continue_is_ignored(s3: Any, tmp_path: Path) -> None:
    data = tmp_path / "small"
    data.write_bytes(b"expected nothing")
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": "odd-expect"}, ExpiresIn=300
    )
    status, uploaded, _, body = _curl_put(url, data, "Expect: something-else")
    assert (status, uploaded) == (200, len(b"expected nothing")), body
    got = s3.get_object(Bucket=BUCKET, Key="odd-expect")["Body"].read()
    assert got == b"expected nothing"


def _raw(srv: S3Server, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GARBAGE / HTTP/1.1\r\nHost: h\r\n\r\n", 405, b"MethodNotAllowed"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 400, b"BadRequest"),
        (b"PUT /edges/k HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400, b"BadRequest"),
        (
            b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
            400,
            b"RequestHeaderSectionTooLarge",
        ),
    ],
)
def test_unparsable_requests_get_s3_errors_and_no_traceback(
    s3srv: S3Server, raw: bytes, status: int, code: bytes
) -> None:
    mark = len(s3srv.server.log_text())
    answer = _raw(s3srv, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    # HTTP/1.0 when the request line itself could not be read, as aiohttp answers then.
    assert head.split(b" ", 2)[1] == b"%d" % status, answer[:300]
    assert b"\r\nx-amz-request-id: " in head and b"\r\nContent-Type: application/xml" in head
    assert b"<Code>" + code + b"</Code>" in body and b"<RequestId>" in body
    log = s3srv.server.log_text()[mark:]
    assert "Traceback" not in log and " ERROR " not in log, log
    assert "refused before S3 saw it" in log
