"""What the GW-KV end-to-end tests share: reading replies, waiting, looking at the data dir.

Layer: tests/e2e. Rules: nothing here imports kvbox; every wait is bounded in time.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ._server import KvboxServer, Wire

MiB = 1024 * 1024
ERR_RE = re.compile(rb"ERR ([A-Z]+)( [^\n]*)?\n")


def err_code(reply: bytes) -> str:
    """The code of a reply that must be exactly one ``ERR <CODE> <message>`` line."""
    m = ERR_RE.fullmatch(reply)
    assert m, f"expected one ERR line, got {reply[:300]!r}"
    return m.group(1).decode()


def wait_until(pred: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def chunk_files(data_dir: Path) -> list[Path]:
    """Committed chunk files (``chunks/ab/cd/<sha256>``), not the ``tmp/`` uploads."""
    root = data_dir / "chunks"
    return [f for f in root.rglob("*") if f.is_file() and "tmp" not in f.relative_to(root).parts]


def slow_reader(srv: KvboxServer) -> Wire:
    """A connection with a small receive buffer, so the server must stop mid-reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    return Wire(sock)


def assert_alive(srv: KvboxServer) -> None:
    assert srv.running, f"server died:\n{srv.new_log()}"
    with srv.connect() as w:
        assert w.request(b"PING\n") == b"OK PONG\n"
