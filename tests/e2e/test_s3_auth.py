"""S3 front door: the HTTP port (probes, raw requests) and SigV4 (headers and presigned URLs).

Every test talks to a real ``kvbox serve`` over HTTP with boto3, plain urllib or curl.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.utils  # type: ignore[import-untyped]
import pytest
from botocore.auth import (  # type: ignore[import-untyped]  # imports botocore.crt.auth too
    S3SigV4Auth,
    S3SigV4QueryAuth,
)
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3auth") as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def _raw(srv: S3Server, request: bytes) -> bytes:
    """Send raw HTTP bytes, read until the server closes (Connection: close)."""
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# --- the HTTP port ---------------------------------------------------------------------


def test_probes_still_answer_plain_gets(s3srv: S3Server) -> None:
    with urllib.request.urlopen(s3srv.endpoint + "/healthz", timeout=5) as r:
        assert r.read() == b"ok\n"
    with urllib.request.urlopen(s3srv.endpoint + "/readyz", timeout=5) as r:
        assert r.read() == b"ready\n"
    with urllib.request.urlopen(s3srv.endpoint + "/metrics", timeout=5) as r:
        assert b"kvbox_stored_objects" in r.read()


def test_probe_paths_with_a_query_or_other_method_are_s3(s3srv: S3Server) -> None:
    """Only a bare unauthenticated GET is a probe; anything else is S3 (here: anonymous)."""
    for method, path in (("GET", "/healthz?list-type=2"), ("PUT", "/readyz"), ("HEAD", "/metrics")):
        req = urllib.request.Request(s3srv.endpoint + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        info.value.close()
        assert info.value.code == 403, (method, path)
        assert info.value.headers["x-amz-request-id"]


def test_anonymous_request_is_access_denied_xml_with_request_id(s3srv: S3Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(s3srv.endpoint + "/", timeout=5)
    err = info.value
    assert err.code == 403
    with err:
        body = err.read().decode()
    assert "<Code>AccessDenied</Code>" in body
    rid = err.headers["x-amz-request-id"]
    assert rid and f"<RequestId>{rid}</RequestId>" in body
    assert err.headers["x-amz-id-2"]
    assert "Traceback" not in body


def test_probe_paths_are_buckets_for_signed_requests(s3: Any) -> None:
    s3.create_bucket(Bucket="metrics")
    s3.put_object(Bucket="metrics", Key="healthz", Body=b"not a probe")
    assert s3.get_object(Bucket="metrics", Key="healthz")["Body"].read() == b"not a probe"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="metrics")["Contents"]]
    assert keys == ["healthz"]
    s3.head_bucket(Bucket="metrics")
    s3.delete_object(Bucket="metrics", Key="healthz")
    s3.delete_bucket(Bucket="metrics")


def test_unknown_method_is_an_s3_error(s3srv: S3Server) -> None:
    out = _raw(s3srv, b"PATCH /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405")
    assert b"<Code>MethodNotAllowed</Code>" in body
    assert b"x-amz-request-id" in head.lower()


# --- authentication: SigV4 headers and presigned URLs ------------------------------------


def test_wrong_secret_is_signature_does_not_match(s3srv: S3Server) -> None:
    bad = s3srv.client(secret_key="wrong-secret")
    with pytest.raises(ClientError) as info:
        bad.list_buckets()
    assert _code(info.value) == "SignatureDoesNotMatch"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_access_key_is_invalid_access_key_id(s3srv: S3Server) -> None:
    bad = s3srv.client(access_key="AKIDONTKNOWYOU000000")
    with pytest.raises(ClientError) as info:
        bad.list_buckets()
    assert _code(info.value) == "InvalidAccessKeyId"


@contextlib.contextmanager
def _signing_clock(offset: dt.timedelta) -> Iterator[None]:
    """Make botocore sign as if its clock were ``offset`` away from now.

    botocore signs with the CRT signer when awscrt is installed (it is: kvbox needs it)
    and with its pure-Python one otherwise; both read ``get_current_datetime``.
    """
    real = botocore.utils.get_current_datetime

    def shifted(remove_tzinfo: bool = True) -> dt.datetime:
        now: dt.datetime = real(remove_tzinfo)
        return now + offset

    with (
        mock.patch("botocore.auth.get_current_datetime", shifted),
        mock.patch("botocore.crt.auth.get_current_datetime", shifted),
    ):
        yield


def _sign(
    srv: S3Server, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """Headers of a SigV4 request signed by botocore's pure-Python signer for ``body``."""
    req = AWSRequest(method=method, url=srv.endpoint + path, data=body, headers=headers or {})
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def test_skewed_clock_is_request_time_too_skewed(s3: Any) -> None:
    with _signing_clock(-dt.timedelta(minutes=20)), pytest.raises(ClientError) as info:
        s3.list_buckets()
    assert _code(info.value) == "RequestTimeTooSkewed"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with _signing_clock(dt.timedelta(minutes=20)), pytest.raises(ClientError) as info:
        s3.list_buckets()
    assert _code(info.value) == "RequestTimeTooSkewed"
    # 14 minutes off either way is inside the 15-minute window.
    with _signing_clock(-dt.timedelta(minutes=14)):
        s3.list_buckets()
    with _signing_clock(dt.timedelta(minutes=14)):
        s3.list_buckets()


def test_presigned_get_with_urllib(s3: Any) -> None:
    s3.create_bucket(Bucket="presigned")
    s3.put_object(Bucket="presigned", Key="a b/ü+1.txt", Body=b"shared")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "presigned", "Key": "a b/ü+1.txt"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.read() == b"shared"
        assert r.headers["ETag"]


def test_presigned_put_with_urllib(s3: Any) -> None:
    s3.create_bucket(Bucket="presigned-put")
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "presigned-put", "Key": "up"}, ExpiresIn=60
    )
    req = urllib.request.Request(url, data=b"uploaded", method="PUT")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    assert s3.get_object(Bucket="presigned-put", Key="up")["Body"].read() == b"uploaded"


def test_expired_presigned_url_is_access_denied(s3srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="expired")
    s3.put_object(Bucket="expired", Key="k", Body=b"x")
    with _signing_clock(-dt.timedelta(hours=1)):
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "expired", "Key": "k"}, ExpiresIn=60
        )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == 403
    with info.value:
        body = info.value.read().decode()
    assert "<Code>AccessDenied</Code>" in body
    assert "expired" in body.lower()


@pytest.mark.parametrize(
    ("expires", "status", "code", "message"),
    [
        (0, 403, "AccessDenied", "Request has expired"),
        (-7, 400, "AuthorizationQueryParametersError", "X-Amz-Expires must be non-negative"),
        (604801, 400, "AuthorizationQueryParametersError", "must be less than a week"),
    ],
)
def test_presigned_lifetime_out_of_range(
    s3: Any, expires: int, status: int, code: str, message: str
) -> None:
    """botocore's pure-Python presigner signs whatever lifetime it is given (its CRT
    signer refuses zero and less); the server answers as AWS does."""
    bucket = f"lifetime-{abs(expires)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    req = AWSRequest(method="GET", url=f"{s3.meta.endpoint_url}/{bucket}/k")
    creds = Credentials(ACCESS_KEY, SECRET_KEY)
    S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=expires).add_auth(req)
    url = req.url
    assert f"X-Amz-Expires={expires}&" in url
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == status
    with info.value:
        body = info.value.read().decode()
    assert f"<Code>{code}</Code>" in body and message in body


def test_tampered_presigned_url_is_refused(s3: Any) -> None:
    s3.create_bucket(Bucket="tamper")
    s3.put_object(Bucket="tamper", Key="k1", Body=b"one")
    s3.put_object(Bucket="tamper", Key="k2", Body=b"two")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "tamper", "Key": "k1"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url.replace("/k1?", "/k2?"), timeout=5)
    assert info.value.code == 403
    with info.value:
        assert b"SignatureDoesNotMatch" in info.value.read()


def test_signed_sha256_mismatch_stores_nothing(s3srv: S3Server, s3: Any) -> None:
    """A body that is not the one signed: 400 XAmzContentSHA256Mismatch, nothing stored."""
    s3.create_bucket(Bucket="sha")
    headers = _sign(s3srv, "PUT", "/sha/k", b"original!")
    req = urllib.request.Request(
        s3srv.endpoint + "/sha/k", data=b"tampered!", method="PUT", headers=headers
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400
    with info.value:
        assert b"<Code>XAmzContentSHA256Mismatch</Code>" in info.value.read()
    with pytest.raises(ClientError) as cerr:
        s3.head_object(Bucket="sha", Key="k")
    assert cerr.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # The same signature with the signed body works: the check is the body, not the rest.
    req = urllib.request.Request(
        s3srv.endpoint + "/sha/k", data=b"original!", method="PUT", headers=headers
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    assert s3.get_object(Bucket="sha", Key="k")["Body"].read() == b"original!"


def test_lying_content_length_stores_nothing(s3srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="short")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "short", "Key": "cut"})
    path = url.split(str(s3srv.http_port), 1)[1]
    with socket.create_connection(("127.0.0.1", s3srv.http_port), timeout=10) as s:
        s.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{s3srv.http_port}\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
            + b"x" * 5000
        )
        s.shutdown(socket.SHUT_WR)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    assert not reply.startswith(b"HTTP/1.1 200")
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket="short", Key="cut")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_presigned_urls_with_curl(s3: Any, tmp_path: Path) -> None:
    """curl, as a user would: upload and fetch through presigned URLs, no SDK involved."""
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test (apt-get install curl)"
    s3.create_bucket(Bucket="curled")
    src = tmp_path / "photo.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "curled", "Key": "photo.png"}, ExpiresIn=60
    )
    up = subprocess.run(
        [curl, "-sS", "-f", "-X", "PUT", "--upload-file", str(src), put_url],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "curled", "Key": "photo.png"}, ExpiresIn=60
    )
    down = subprocess.run([curl, "-sS", "-f", get_url], capture_output=True, timeout=30)
    assert down.returncode == 0 and down.stdout == src.read_bytes()
    ranged = subprocess.run(
        [curl, "-sS", "-f", "-r", "0-7", get_url], capture_output=True, timeout=30
    )
    assert ranged.stdout == b"\x89PNG\r\n\x1a\n"
    with _signing_clock(-dt.timedelta(hours=1)):  # signed an hour ago: expired, no sleep
        expired = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "curled", "Key": "photo.png"}, ExpiresIn=60
        )
    denied = subprocess.run(
        [curl, "-sS", "-w", "%{http_code}", expired], capture_output=True, timeout=30
    )
    assert denied.stdout.endswith(b"403") and b"<Code>AccessDenied</Code>" in denied.stdout
