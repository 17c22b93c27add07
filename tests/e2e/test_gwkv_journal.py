"""Pipelined GW-KV SETs through the write-ahead journal, against a real ``kvbox serve``.

Layer: tests/e2e. Rules: a real server process per test (``S3Server``: GW-KV and S3 on one
data directory), raw sockets for GW-KV and boto3 for S3. Pipelined plain SETs into the kv
bucket are acknowledged once their journal frame is fsync'd and applied to SQLite later;
these tests check what a user sees of that:

* the writes are visible at once to GET, STATS and S3 (listing and GetObject);
* a SIGTERM applies everything, so the journal holds nothing to replay and fsck is clean;
* a SIGKILL among pipelined SETs loses no acknowledged write (test_gwkv_crash.py repeats this
  twenty times with a mixed load; one run here keeps the journal's own path in view).

The journal and metadata files are read only while the server is stopped, with the
journal's own frame reader (``kvbox.core.journal.codec``) and plain ``sqlite3``.
"""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvbox.core.journal import JOURNAL_DIR
from kvbox.core.journal import codec as journal_codec
from kvbox.core.journal.log import SEGMENT_SUFFIX
from kvbox.core.meta.sqlite import META_FILE

from ._s3 import S3Server
from ._server import Wire, fsck, parse_ok_version

#: SETs sent in one ``sendall`` before any reply is read.
DEPTH = 64


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[S3Server]:
    s = S3Server(tmp_path / "data").start()
    try:
        yield s
    finally:
        print(f"--- server log\n{s.server.log_text()[-20000:]}")
        s.close()


def _values(prefix: str, n: int = DEPTH) -> dict[str, bytes]:
    """``n`` fresh keys (GW-KV keys are letters and digits) with printable values of
    assorted sizes, and one more with the empty value."""
    rng = random.Random(prefix)
    out = {
        f"{prefix}{i:03d}": bytes(rng.randint(0x20, 0x7E) for _ in range(rng.randint(1, 700)))
        for i in range(n)
    }
    out[f"{prefix}empty"] = b""
    return out


def _pipeline_sets(w: Wire, values: dict[str, bytes]) -> dict[str, str]:
    """SET every key in one send, then read the replies: key -> acknowledged version."""
    w.send(b"".join(b"SET %s %s\n" % (k.encode(), v) for k, v in values.items()))
    return {k: parse_ok_version(w.readline()) for k in values}


def _get(w: Wire, key: str) -> bytes | None:
    reply = w.request(b"GET %s\n" % key.encode())
    if reply == b"NOTFOUND\n":
        return None
    assert reply.startswith(b"VALUE "), reply
    return reply[len(b"VALUE ") : -1]


def _stats(w: Wire) -> int:
    reply = w.request(b"STATS\n")
    assert reply.startswith(b"OK "), reply
    return int(reply[3:])


def _bget_all(w: Wire, keys: list[str]) -> dict[str, tuple[bytes, str] | None]:
    """BGET ``keys`` pipelined 100 at a time."""
    out: dict[str, tuple[bytes, str] | None] = {}
    for i in range(0, len(keys), 100):
        batch = keys[i : i + 100]
        w.send(b"".join(b"BGET %s\n" % k.encode() for k in batch))
        for k in batch:
            out[k] = w.read_bget_reply()
    return out


# --- visibility -----------------------------------------------------------------------------


def test_pipelined_sets_are_visible_at_once_to_get_and_stats(srv: S3Server) -> None:
    values = _values("get")
    with srv.server.connect() as w:
        acked = _pipeline_sets(w, values)
        assert len(set(acked.values())) == len(values)
        for key, value in values.items():  # on the same connection
            assert _get(w, key) == value
        assert _stats(w) == len(values)
    with srv.server.connect() as w:  # and on another one
        got = _bget_all(w, list(values))
        assert got == {k: (values[k], acked[k]) for k in values}
        more = _values("stats", 10)
        _pipeline_sets(w, more)
        assert _stats(w) == len(values) + len(more)


def test_reads_pipelined_between_sets_see_each_set(srv: S3Server) -> None:
    with srv.server.connect() as w:
        w.send(b"SET k one\nGET k\nSET k two\nGET k\nVERSION k\nSET k \nGET k\nSTATS\n")
        v1 = parse_ok_version(w.readline())
        assert w.readline() == b"VALUE one\n"
        v2 = parse_ok_version(w.readline())
        assert w.readline() == b"VALUE two\n"
        assert w.readline() == b"OK %s\n" % v2.encode()
        v3 = parse_ok_version(w.readline())
        assert w.readline() == b"VALUE \n"
        assert w.readline() == b"OK 1\n"
        assert len({v1, v2, v3}) == 3


def test_pipelined_sets_are_visible_at_once_to_s3(srv: S3Server) -> None:
    s3: Any = srv.client()
    values = _values("sthree")
    with srv.server.connect() as w:
        acked = _pipeline_sets(w, values)
    listed = s3.list_objects_v2(Bucket="kv", Prefix="sthree")
    assert [o["Key"] for o in listed["Contents"]] == sorted(values)
    sizes = {o["Key"]: o["Size"] for o in listed["Contents"]}
    assert sizes == {k: len(v) for k, v in values.items()}
    etags = {o["Key"]: o["ETag"].strip('"') for o in listed["Contents"]}
    assert etags == {
        k: hashlib.md5(v, usedforsecurity=False).hexdigest() for k, v in values.items()
    }
    # GetObject of writes that only the journal and the memtable hold yet.
    fresh = _values("fresh", 8)
    with srv.server.connect() as w:
        _pipeline_sets(w, fresh)
    for key, value in fresh.items():
        got = s3.get_object(Bucket="kv", Key=key)
        assert got["Body"].read() == value
        assert got["ETag"].strip('"') == hashlib.md5(value, usedforsecurity=False).hexdigest()
    # And S3 writes after them win, as they came later.
    key = next(iter(values))
    s3.put_object(Bucket="kv", Key=key, Body=b"from s3")
    with srv.server.connect() as w:
        assert _get(w, key) == b"from s3"
        assert acked[key] != w.request(b"VERSION %s\n" % key.encode())[3:-1].decode()


# --- stopping -------------------------------------------------------------------------------


def _journal_state(data: Path) -> tuple[int, int]:
    """(LSN applied to SQLite, journal records after it) of a stopped server's data."""
    conn = sqlite3.connect(f"file:{data / META_FILE}?mode=ro", uri=True)
    try:
        (applied,) = conn.execute("SELECT journal FROM state").fetchone()
    finally:
        conn.close()
    pending = 0
    segs = sorted((data / JOURNAL_DIR).glob(f"*{SEGMENT_SUFFIX}"))
    for seg in segs:
        raw = seg.read_bytes()
        found = journal_codec.scan(raw)
        # After the frames, only a preallocated segment's zeros; but a SIGKILL in the
        # middle of a write may leave a torn (never acknowledged) frame at the very end.
        if seg != segs[-1]:
            assert not any(raw[found.end :]), (seg, found.problem, found.end)
        pending += sum(r.lsn > applied for r in found.records)
    return int(applied), pending


def test_sigterm_applies_the_journal_and_fsck_is_clean(srv: S3Server) -> None:
    rounds = [_values(f"term{n}") for n in range(5)]
    acked: dict[str, str] = {}
    with srv.server.connect() as w:
        for values in rounds:
            acked.update(_pipeline_sets(w, values))
    assert srv.server.terminate() == 0
    data = srv.server.data_dir
    applied, pending = _journal_state(data)
    assert applied >= len(acked), "the SETs did not go through the journal"
    assert pending == 0, f"{pending} journal records left unapplied by a clean stop"
    done = fsck(data)
    assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")
    assert _journal_state(data) == (applied, 0)

    srv.start()
    with srv.server.connect() as w:
        got = _bget_all(w, list(acked))
        want = {k: v for values in rounds for k, v in values.items()}
        assert got == {k: (want[k], acked[k]) for k in acked}
        assert _stats(w) == len(acked)


def test_sigkill_among_pipelined_sets_loses_no_acknowledged_write(srv: S3Server) -> None:
    sent: dict[str, bytes] = {}  # every key sent (once), acknowledged or not
    acked: dict[str, str] = {}
    stop = time.monotonic() + 10.0  # the kill comes long before

    def writer() -> None:
        try:
            with srv.server.connect() as w:
                for n in range(10_000):
                    if time.monotonic() > stop:
                        return
                    values = _values(f"kill{n}", 16)
                    sent.update(values)
                    w.send(b"".join(b"SET %s %s\n" % (k.encode(), v) for k, v in values.items()))
                    for key in values:  # each acknowledgement counts as soon as it is read
                        acked[key] = parse_ok_version(w.readline())
        except (OSError, EOFError):
            pass  # the server was killed: that is the point

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(random.uniform(0.4, 0.9))
    srv.server.kill(signal.SIGKILL)
    thread.join(15)
    assert not thread.is_alive()
    assert acked, "nothing was acknowledged before the kill: the test proves nothing"
    _, pending = _journal_state(srv.server.data_dir)
    assert pending > 0, "every write was applied before the kill: no replay to test"

    srv.start()
    with srv.server.connect(timeout=60) as w:
        got = _bget_all(w, list(sent))
    for key, value in sent.items():
        if key in acked:
            assert got[key] == (value, acked[key]), f"acknowledged {key} lost or changed"
        else:  # in flight at the kill: absent, or whole
            assert got[key] is None or got[key] == (value, got[key][1]), key  # type: ignore[index]
    assert srv.server.terminate() == 0
    applied, pending = _journal_state(srv.server.data_dir)
    assert applied >= len(acked) and pending == 0
