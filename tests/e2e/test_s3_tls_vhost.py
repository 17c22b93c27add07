"""S3 over TLS (``--tls-cert``/``--tls-key``) and virtual-host addressing (``--domain``)."""

from __future__ import annotations

import hashlib
import http.client
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]

from kvbox.auth import sign_request

from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from ._tls import make_cert


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path)


@pytest.fixture
def tls_server(tmp_path: Path, cert: tuple[Path, Path]) -> Iterator[S3Server]:
    crt, key = cert
    srv = S3Server(tmp_path / "data", "--tls-cert", str(crt), "--tls-key", str(key))
    srv.server.start()
    yield srv
    srv.close()


def test_s3_over_tls(tls_server: S3Server, cert: tuple[Path, Path]) -> None:
    assert "kvbox: https 127.0.0.1:" in tls_server.server.log_text()
    s3 = boto3.client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{tls_server.http_port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        verify=str(cert[0]),
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    s3.create_bucket(Bucket="secure")
    s3.put_object(Bucket="secure", Key="a.txt", Body=b"over tls")
    assert s3.get_object(Bucket="secure", Key="a.txt")["Body"].read() == b"over tls"
    # plain HTTP to the TLS port gets no S3 answer
    conn = http.client.HTTPConnection("127.0.0.1", tls_server.http_port, timeout=5)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            assert resp.status != 200
            raise ConnectionError("no TLS, no service")
    finally:
        conn.close()


def test_tls_flags_must_come_together(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    srv = S3Server(tmp_path / "data", "--tls-cert", str(cert[0]))
    with pytest.raises(AssertionError, match="tls-key"):
        srv.server.start()
    srv.close()


def _signed(port: int, host: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    digest = hashlib.sha256(body).hexdigest()
    headers = [("host", host)]
    headers += sign_request(
        method, path, [], headers, digest, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        now=datetime.now(UTC), region=REGION,
    )  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_virtual_host_addressing(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data", "--domain", "s3.kvbox.test").start()
    try:
        port = srv.http_port
        vhost = f"photos.s3.kvbox.test:{port}"
        assert _signed(port, f"s3.kvbox.test:{port}", "PUT", "/photos")[0] == 200
        assert _signed(port, vhost, "PUT", "/cats/tom.txt", b"meow")[0] == 200
        assert _signed(port, vhost, "GET", "/cats/tom.txt") == (200, b"meow")
        # the same object, path style, on the same port
        assert _signed(port, f"127.0.0.1:{port}", "GET", "/photos/cats/tom.txt") == (200, b"meow")
        status, body = _signed(port, vhost, "GET", "/")
        assert status == 200 and b"<Key>cats/tom.txt</Key>" in body
    finally:
        srv.close()


def test_probes_answer_over_tls(tls_server: S3Server) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", tls_server.http_port, timeout=5, context=ctx)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok\n")
    finally:
        conn.close()
