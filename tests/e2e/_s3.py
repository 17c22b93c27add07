"""Helpers for the S3 end-to-end tests: a ``kvbox serve`` with S3 on, boto3 clients for it.

Layer: tests/e2e. Rules: the server is a real child process (``KvboxServer``) on a
fresh data directory, with the root credentials given through the environment; clients
are plain boto3 with retries off (``total_max_attempts`` 1: botocore's ``max_attempts`` counts
retries, not attempts), so every error a test sees is the server's first
answer. Nothing here imports kvbox.
"""

from __future__ import annotations

import http.client
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from _cleanup import removed_after
from _ports import free_port

from ._server import KvboxServer, run_kvbox

ACCESS_KEY = "KVTESTACCESSKEY00001"
SECRET_KEY = "kvbox-test-secret-key/not+a+real+one"
REGION = "us-east-1"
#: The environment a ``kvbox admin --server`` child needs to act as root.
ROOT_ENV = {"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY}
#: Bigger than any object the tests upload through s3transfer: multipart upload is not
#: in this slice, so uploads must stay single PutObjects.
NO_MULTIPART = TransferConfig(multipart_threshold=1 << 30, multipart_chunksize=1 << 30)


class S3Server:
    """A running kvbox with its S3 endpoint."""

    def __init__(self, data_dir: Path, *args: str, prefix: Sequence[str] = ()) -> None:
        self.http_port = free_port()
        self.server = KvboxServer(
            data_dir,
            args=["--http-port", str(self.http_port), "--sync", "normal", *args],
            env={"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY},
            prefix=prefix,
        )

    def start(self) -> S3Server:
        self.server.start()
        return self

    def close(self) -> None:
        self.server.close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(
        self,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        **config: Any,
    ) -> Any:
        """boto3 with retries off unless ``config`` says otherwise (``retries=...``)."""
        options: dict[str, Any] = {
            "signature_version": "s3v4",
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "s3": {"addressing_style": "path"},
            "connect_timeout": 5,
            "read_timeout": 30,
        }
        cfg = Config(**{**options, **config})
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=REGION,
            config=cfg,
        )

    def default_client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Any:
        """boto3 exactly as a user makes it: no Config at all (its default signing,
        addressing, checksums and retries), only the endpoint and the keys (root's
        unless others are given)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=REGION,
        )

    def new_user(self, name: str) -> tuple[str, str]:
        """A kvbox user with one key, made the way an operator would (``kvbox admin
        --server``); returns its (access key, secret key)."""
        made = run_kvbox("admin", "--server", self.endpoint, "user", "add", name, env=ROOT_ENV)
        assert made.returncode == 0, made.stderr
        key = run_kvbox("admin", "--server", self.endpoint, "key", "add", name, env=ROOT_ENV)
        assert key.returncode == 0, key.stderr
        out = key.stdout.decode()
        access = re.search(r"access key: (\S+)", out)
        secret = re.search(r"secret key: (\S+)", out)
        assert access and secret, out
        return access.group(1), secret.group(1)


@dataclass(frozen=True, slots=True)
class Reply:
    """One raw HTTP answer; header names lower-cased."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The ``<Code>`` of an S3 error body, if there is one."""
        if not self.body.startswith(b"<"):
            return None
        found = ET.fromstring(self.body).find("Code")
        return None if found is None else found.text


def signed(
    srv: S3Server,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    """A request signed by root with botocore's SigV4 signer, sent as written: for what
    boto3 will not send (a missing checksum, a garbage body, kvbox's own extensions).

    ``query`` must already be percent-encoded: botocore canonicalises what it parses out
    of the URL, and the server what it receives, so both see the same string.
    """
    target = path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=srv.endpoint + target, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@contextmanager
def module_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, *args: str
) -> Iterator[S3Server]:
    """A started ``S3Server`` on a fresh data directory for a module's tests; its log is
    printed at the end (pytest shows it when something failed), it is killed by PID, and
    its directory is removed unless a test failed (``_cleanup.removed_after``)."""
    with removed_after(tmp_path_factory.mktemp(name)) as base:
        s = S3Server(base / "data", *args).start()
        try:
            yield s
        finally:
            print(f"--- server log\n{s.server.log_text()[-20000:]}")
            s.close()


def signed_head(port: int, method: str, path: str, length: int, host: str = "127.0.0.1") -> bytes:
    """A SigV4-signed request head (botocore's signer, UNSIGNED-PAYLOAD, the root keys)
    for a raw socket: the tests that play a client which stalls or vanishes mid-body."""
    req = AWSRequest(
        method=method,
        url=f"http://{host}:{port}{path}",
        headers={"Content-Length": str(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
    )
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
