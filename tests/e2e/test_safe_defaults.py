"""Safe defaults of ``kvbox serve``: secrets stay out of logs, GW-KV can stay on loopback.

Layer: tests/e2e. The deployment files (tests/deploy) set these; here the server itself
is started with them and looked at from outside.
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from _ports import free_port

from ._server import KvboxServer


def test_a_generated_secret_is_not_printed_with_show_root_secret_off(tmp_path: Path) -> None:
    srv = KvboxServer(tmp_path / "data", args=["--show-root-secret", "off"])
    try:
        srv.start()
        access, secret = (tmp_path / "data" / "root-credentials").read_text().splitlines()[:2]
        log = srv.log_text()
        assert f"root access key {access}" in log
        assert "root secret key not shown (--show-root-secret off)" in log
        assert secret not in log
    finally:
        srv.close()


def test_kv_host_keeps_gwkv_apart_from_the_http_port(tmp_path: Path) -> None:
    """``--host 127.0.0.1 --kv-host 127.0.0.2``: HTTP (S3) on one address, GW-KV on the
    other only (as the systemd unit puts S3 on the network and GW-KV on loopback)."""
    http_port = free_port()
    # KvboxServer passes --host 127.0.0.2 first; the later --host wins for HTTP.
    srv = KvboxServer(
        tmp_path / "data",
        host="127.0.0.2",
        http_port=None,
        args=["--http-port", str(http_port), "--host", "127.0.0.1", "--kv-host", "127.0.0.2"],
    )
    try:
        srv.start()  # checks GW-KV answers PING on 127.0.0.2
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5) as r:
            assert r.read() == b"ok\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", http_port), timeout=5).close()
    finally:
        srv.close()
