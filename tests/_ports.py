"""``free_port``: the one way a test picks a port number for a server it starts later.

Layer: tests (every folder's helpers use it: ``e2e/_server.py``, ``_postgres.py``,
``cluster/_nodes.py``). Why a helper at all: a server that must be told its port (GW-KV
binds TCP and UDP on one number; ``--http-port 0`` means "off"; PostgreSQL takes ``-p``)
gets a number that was free when the test looked, and is bound by the server's process a
moment -- or, across a restart, many seconds -- later. Two ways to lose it meanwhile:

* **The kernel's ephemeral range.** A port from ``bind(0)`` comes from that range
  (``/proc/sys/net/ipv4/ip_local_port_range``, Linux's default 32768-60999), where every outgoing
  connection and every ``bind(0)`` of any process on the machine draws its number too.
  So numbers are drawn in ``LOW``-``HIGH``, below it, where nothing is handed out
  unasked.
* **Another test process drawing the same number**: the other xdist worker, or another
  engineer's run on the same machine. Every number handed out is recorded in
  ``RESERVATIONS`` (a file per port, under one ``flock``) and not handed out again for
  ``HOLD_SECONDS``, longer than any test keeps a port between its server's restarts.

A socket that is bound and kept open by the test itself (a listener that never answers,
a proxy) does not need this: ``bind(0)`` and keeping the socket is race-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

#: Ports are drawn in [LOW, HIGH): below Linux's default ephemeral range (32768-60999).
LOW: Final = 20000
HIGH: Final = 32000
#: Seconds a number handed out stays reserved for the process that got it.
HOLD_SECONDS: Final = 900.0
#: Shared by every test process on the machine (all users: mode 1777 like /tmp).
RESERVATIONS: Final = Path(tempfile.gettempdir()) / "kvbox-test-ports"


def _bindable(host: str, port: int) -> bool:
    """Whether both TCP and UDP can bind ``port`` on ``host`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    RESERVATIONS.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        RESERVATIONS.chmod(0o1777)
    fd = os.open(RESERVATIONS / ".lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def free_port(host: str = "127.0.0.1") -> int:
    """A port number free for both TCP and UDP on ``host``, below the ephemeral range and
    not handed out to any test process in the last ``HOLD_SECONDS`` (module docstring)."""
    with _locked():
        now = time.time()
        for _ in range(500):
            port = random.randrange(LOW, HIGH)
            mark = RESERVATIONS / str(port)
            try:
                if now - mark.stat().st_mtime < HOLD_SECONDS:
                    continue  # another test process (or this one) may be about to bind it
            except FileNotFoundError:
                pass
            if not _bindable(host, port):
                continue
            try:
                mark.touch()  # reserved from now
            except OSError:  # another user's mark (a file we may not write): skip it
                continue
            return port
    raise RuntimeError(f"no port free for both TCP and UDP in {LOW}-{HIGH} on {host}")
