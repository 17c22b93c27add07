"""Large values end to end: 1 GiB through BSET/BGET, 20 MiB through the CLI.

Layer: tests/e2e. Rules: neither the test nor the server may hold a large value whole in
memory. The test generates bytes chunk by chunk while hashing and compares SHA-256; a
sampler thread reads the server's VmRSS throughout and the peak must stay bounded.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ._gwkv import MiB, assert_alive, chunk_files, slow_reader, wait_until
from ._server import KvboxServer, parse_ok_version, pseudo_random_chunks, rss_kib

GIB = 1 << 30
MIB = 1 << 20
#: Peak server RSS allowed while a 1 GiB value streams through it.
RSS_LIMIT_KIB = 300 * 1024


class RssSampler:
    """Samples a PID's VmRSS every few milliseconds in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = rss_kib(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
                self.samples += 1
            except (OSError, RuntimeError):
                return

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


@pytest.mark.slow
def test_one_gib_value_streams_both_ways(server: KvboxServer) -> None:
    size = GIB
    sent_hash = hashlib.sha256()
    got_hash = hashlib.sha256()
    try:
        with RssSampler(server.pid).running() as rss:
            with server.connect(timeout=120) as w:
                w.send(b"BSET huge %d\n" % size)
                for chunk in pseudo_random_chunks(7, size):
                    sent_hash.update(chunk)
                    w.send(chunk)
                w.send(b"\n")
                version = parse_ok_version(w.readline())
            upload_peak = rss.peak_kib

            with server.connect(timeout=120) as w:
                w.send(b"BGET huge\n")
                head = w.readline()
                assert head == f"VALUE {size} {version}\n".encode(), head
                left = size
                if w.buf:  # bytes that arrived with the header line
                    first = bytes(w.buf[:left])
                    del w.buf[: len(first)]
                    got_hash.update(first)
                    left -= len(first)
                buf = bytearray(4 * MIB)
                view = memoryview(buf)
                while left > 0:
                    n = w.sock.recv_into(view, min(len(buf), left))
                    assert n > 0, f"connection closed with {left} bytes to go"
                    got_hash.update(view[:n])
                    left -= n
                assert w.readexact(1) == b"\n"
                assert w.request(b"PING\n") == b"OK PONG\n"
        assert got_hash.hexdigest() == sent_hash.hexdigest()
        assert rss.samples > 10
        assert upload_peak < RSS_LIMIT_KIB, f"RSS peaked at {upload_peak} KiB during BSET"
        assert rss.peak_kib < RSS_LIMIT_KIB, f"RSS peaked at {rss.peak_kib} KiB during BGET"
        info = server.info()
        assert info["objects"] == "1"
        assert int(info["bytes"]) == size
    finally:
        # Do not leave a GiB behind in pytest's retained tmp directories.
        server.close()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def _write_file(path: Path, seed: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as fh:
        for chunk in pseudo_random_chunks(seed, size):
            h.update(chunk)
            fh.write(chunk)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def test_twenty_mib_value_through_cli(server: KvboxServer, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    out = tmp_path / "out.bin"
    digest = _write_file(src, 20, 20 * MIB)
    done = server.cli("bset", "blob", opts=["--file", str(src)])
    assert done.returncode == 0, done.stderr
    version = done.stdout.decode().strip()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", version), done.stdout
    done = server.cli("bget", "blob", opts=["--output", str(out)])
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size == 20 * MIB
    assert _file_sha256(out) == digest
    with server.connect(timeout=60) as w:
        got = w.bget("blob")
    assert got is not None
    assert got[1] == version
    assert hashlib.sha256(got[0]).hexdigest() == digest


# --- R4: readers pin the chunks of the value they stream -----------------------------------


def test_bget_stream_survives_overwrite_and_delete(server: KvboxServer) -> None:
    """Two 24 MiB values (3 chunks each) are streamed to readers that stall right after
    the header; meanwhile the key is overwritten, then deleted, which frees both values'
    chunks. Each reader must still get its whole value byte for byte, and once both are
    done the freed chunks must be collected (pins are released, not leaked)."""
    size = 24 * MiB
    old = random.Random(4).randbytes(size)
    new = random.Random(5).randbytes(size)
    with server.connect(timeout=60) as w:
        v_old = parse_ok_version(w.bset("big", old))
    with slow_reader(server) as r_old, slow_reader(server) as r_new:
        r_old.send(b"BGET big\n")
        assert r_old.readline() == b"VALUE %d %s\n" % (size, v_old.encode())
        with server.connect(timeout=60) as w:
            v_new = parse_ok_version(w.bset("big", new))
            r_new.send(b"BGET big\n")
            assert r_new.readline() == b"VALUE %d %s\n" % (size, v_new.encode())
            assert w.request(b"DELETE big\n") == b"OK\n"
            assert w.request(b"BGET big\n") == b"NOTFOUND\n"
        # Let the collector run while both readers are stalled mid-value.
        time.sleep(0.5)
        got_old = r_old.readexact(size + 1)
        got_new = r_new.readexact(size + 1)
    assert got_old[-1:] == b"\n" and got_old[:-1] == old, "reader of the overwritten value"
    assert got_new[-1:] == b"\n" and got_new[:-1] == new, "reader of the deleted value"
    assert wait_until(lambda: not chunk_files(server.data_dir), within=5), (
        f"chunks not collected after the readers finished: {chunk_files(server.data_dir)}"
    )
    assert_alive(server)
