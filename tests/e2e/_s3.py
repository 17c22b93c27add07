"""Helpers for the S3 end-to-end tests: a ``kvbox serve`` with S3 on, boto3 clients for it.

Layer: tests/e2e. Rules: the server is a real child process (``KvboxServer``) on a
fresh data directory, with the root credentials given through the environment; clients
are plain boto3 with retries off, so every error a test sees is the server's first
answer. Nothing here imports kvbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from ._server import KvboxServer, free_port

ACCESS_KEY = "KVTESTACCESSKEY00001"
SECRET_KEY = "kvbox-test-secret-key/not+a+real+one"
REGION = "us-east-1"
#: Bigger than any object the tests upload through s3transfer: multipart upload is not
#: in this slice, so uploads must stay single PutObjects.
NO_MULTIPART = TransferConfig(multipart_threshold=1 << 30, multipart_chunksize=1 << 30)


class S3Server:
    """A running kvbox with its S3 endpoint."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.http_port = free_port()
        self.server = KvboxServer(
            data_dir,
            args=["--http-port", str(self.http_port), "--sync", "normal", *args],
            env={"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY},
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
        cfg = Config(
            signature_version="s3v4",
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=30,
            **config,
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=REGION,
            config=cfg,
        )


@contextmanager
def module_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, *args: str
) -> Iterator[S3Server]:
    """A started ``S3Server`` on a fresh data directory for a module's tests; its log is
    printed at the end (pytest shows it when something failed) and it is killed by PID."""
    s = S3Server(tmp_path_factory.mktemp(name) / "data", *args).start()
    try:
        yield s
    finally:
        print(f"--- server log\n{s.server.log_text()[-20000:]}")
        s.close()
