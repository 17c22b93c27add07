"""``kvbox bench --mode conn`` connects each client from its own 127.x address (so that
client-side TIME_WAIT sockets don't make ``connect()`` the bottleneck), and from one
address with ``--one-source``: checked against a real socket server that records who
connected."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from kvbox.bench import runner
from kvbox.bench.worker import source_address
from kvbox.bench.workload import Workload


def test_source_addresses_are_distinct_loopback_and_not_the_server() -> None:
    seen = {source_address(w, c) for w in range(4) for c in range(1000)}
    assert len(seen) == 4000
    for a in seen:
        ip = ipaddress.ip_address(a)
        assert ip.is_loopback and a != "127.0.0.1"


class _Recorder:
    """A GW-KV-shaped server for SETs only: one reply line per request line."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn, peer[0]), daemon=True).start()

    def _answer(self, conn: socket.socket, peer: str) -> None:
        conn.settimeout(10)
        buf = b""
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    while b"\n" in buf:
                        line, _, buf = buf.partition(b"\n")
                        if line.startswith(b"INFO"):  # the runner's, not a client's
                            conn.sendall(b"OK 0\n")
                        else:
                            if line.startswith(b"SET "):
                                self.peers.append(peer)
                            conn.sendall(b"OK 01BENCHRECORDER000000000\n")
            except OSError:
                return


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    r = _Recorder()
    try:
        yield r
    finally:
        r.stop.set()
        r.thread.join(timeout=5)
        r.sock.close()


def _run(port: int, spread: bool) -> runner.BenchReport:
    config = runner.BenchConfig(
        host="127.0.0.1",
        port=port,
        clients=6,
        ops=120,
        mode="conn",
        procs=1,
        workload=Workload(op="set", value_size=16, keys=50),
        timeout_s=60,
        spread_sources=spread,
    )
    return runner.run(config, progress=None)


def test_conn_mode_spreads_clients_over_loopback_sources(recorder: _Recorder) -> None:
    report = _run(recorder.port, spread=True)
    assert report.errors == 0 and report.ok >= 120
    sources = set(recorder.peers)
    assert len(sources) == 6  # one per client, each reused for all its connections
    assert "127.0.0.1" not in sources
    assert all(ipaddress.ip_address(s).is_loopback for s in sources)


def test_one_source_when_asked(recorder: _Recorder) -> None:
    report = _run(recorder.port, spread=False)
    assert report.errors == 0 and report.ok >= 120
    assert set(recorder.peers) == {"127.0.0.1"}
