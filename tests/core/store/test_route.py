"""Journal or direct (``core/store/route.py``): the Store with its write-ahead journal on,
over real SQLite, real chunk files, real segments.

Layer: tests of core. Rules: no mocks. The background applier is slowed down
(``APPLY_INTERVAL``) in most tests so that "before the applier ran" is a fact, not a
race; what has reached SQLite is read from ``store.meta`` directly. A crash is a real
child process that ends with ``os._exit`` after its writes were acknowledged.

What is checked: journaled writes are readable at once (memtable), every read the
memtable can't answer and every other write applies them first, so the MetaStore sees
writes in acknowledgement order; a clean close leaves nothing to replay, a crash loses
nothing acknowledged; a schema-4 database is migrated; chunks a journaled write frees
are collected once it is applied.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.integrity import crc32c
from kvbox.core.journal import JOURNAL_DIR, Journal, writes
from kvbox.core.journal import codec as journal_codec
from kvbox.core.journal.log import SEGMENT_SUFFIX
from kvbox.core.meta.sqlite import META_FILE, SCHEMA_VERSION, SqliteMetaStore
from kvbox.core.model import Condition, CondKind, Versioning
from kvbox.core.store import MISS, Store
from kvbox.errors import ConditionFailed, DataDamaged, StorageError, ValueTooLarge

INLINE_MAX = 1024
CHUNK = 4096


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _new_store(data: Path) -> Store:
    return Store(
        SqliteMetaStore(data / META_FILE),
        LocalDirBlobStore(data),
        journal_dir=data / JOURNAL_DIR,
        inline_max=INLINE_MAX,
        chunk_size=CHUNK,
    )


class Rig:
    """A store on ``data`` that a test can close and reopen like a restart."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.store = _new_store(data)
        self.open = False

    async def start(self) -> Store:
        await self.store.open()
        self.open = True
        await self.store.ensure_bucket("kv")
        return self.store

    async def stop(self) -> None:
        if self.open:
            self.open = False
            await self.store.close()

    async def restart(self) -> Store:
        await self.stop()
        self.store = _new_store(self.data)
        return await self.start()


@pytest.fixture
def slow_applier(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background applier wakes only when the memtable is full (never, here)."""
    monkeypatch.setattr(writes, "APPLY_INTERVAL", 3600.0)


@pytest.fixture
async def rig(tmp_path: Path, slow_applier: None) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "data")
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def store(rig: Rig) -> Store:
    return rig.store


async def _applied(store: Store, key: str, bucket: str = "kv") -> str | None:
    """The version id SQLite holds for ``key`` (None: none), bypassing the memtable."""
    v = await store.meta.head(bucket, key)
    return None if v is None else v.version_id


async def _put1(store: Store, key: str, value: bytes, bucket: str = "kv") -> str:
    (vid,) = await store.put_batch(bucket, [(key, value)])
    assert isinstance(vid, str)
    return vid


# --- reading what is only in the journal ---------------------------------------------------


async def test_single_key_reads_see_journaled_writes_before_they_are_applied(
    store: Store,
) -> None:
    items = [
        ("a", b"1"),
        ("empty", b""),
        ("ü/€ key", b"x" * INLINE_MAX),
        ("too-big", b"y" * (INLINE_MAX + 1)),
        ("a", b"2"),
    ]
    results = await store.put_batch("kv", items)
    assert isinstance(results[3], ValueTooLarge)
    vids = [r for r in results if isinstance(r, str)]
    assert len(vids) == 4 and len(set(vids)) == 4
    assert await _applied(store, "a") is None  # only in the journal and the memtable
    assert await store.meta.journal_lsn() == 0

    want = {
        "a": (results[4], b"2"),
        "empty": (results[1], b""),
        "ü/€ key": (results[2], items[2][1]),
    }
    for key, (vid, value) in want.items():
        for v in (await store.head("kv", key), store.peek("kv", key)):
            assert v is not None and v is not MISS
            assert (v.bucket, v.key, v.version_id) == ("kv", key, vid)
            assert (v.size, v.etag, v.inline) == (len(value), _md5(value), value)
            assert v.is_null and not v.is_delete_marker
            assert await store.read(v) == value
    assert await store.head("kv", "too-big") is None
    many = await store.head_many("kv", ["a", "nope", "empty", "too-big", "ü/€ key"])
    assert [None if v is None else v.version_id for v in many] == [
        results[4],
        None,
        results[1],
        None,
        results[2],
    ]
    assert await _applied(store, "a") is None  # none of that applied anything

    await store.stats("kv")  # a read that settles
    for key, (vid, _) in want.items():
        assert await _applied(store, key) == vid
    assert await store.meta.journal_lsn() == 4  # a, empty, ü/€ key, a


def _sees(got: set[str], key: str) -> None:
    assert key in got, (key, got)


#: Reads that the memtable can't answer: each must apply pending writes first.
READERS: dict[str, Callable[[Store, str, str], Awaitable[None]]] = {}


def _reader(
    fn: Callable[[Store, str, str], Awaitable[None]],
) -> Callable[[Store, str, str], Awaitable[None]]:
    READERS[fn.__name__.removeprefix("_read_")] = fn
    return fn


@_reader
async def _read_stats(store: Store, key: str, vid: str) -> None:
    before = await store.meta.stats("kv")
    assert (await store.stats("kv")).objects == before.objects + 1


@_reader
async def _read_list_objects(store: Store, key: str, vid: str) -> None:
    _sees({v.key for v in await store.list_objects("kv")}, key)


@_reader
async def _read_list_objects_prefix(store: Store, key: str, vid: str) -> None:
    (v,) = await store.list_objects("kv", prefix=key)
    assert v.version_id == vid


@_reader
async def _read_list_versions(store: Store, key: str, vid: str) -> None:
    assert [v.version_id for v in await store.list_versions("kv", key)] == [vid]


@_reader
async def _read_list_bucket_versions(store: Store, key: str, vid: str) -> None:
    _sees({v.version_id for v in await store.list_bucket_versions("kv")}, vid)


@_reader
async def _read_get_version(store: Store, key: str, vid: str) -> None:
    v = await store.get_version("kv", key, vid)
    assert v is not None and v.inline == b"value of " + key.encode()


@_reader
async def _read_version_at(store: Store, key: str, vid: str) -> None:
    v = await store.version_at("kv", key, time.time_ns())
    assert v is not None and v.version_id == vid


@pytest.mark.parametrize("reader", list(READERS))
async def test_reads_that_need_the_metastore_apply_pending_writes_first(
    store: Store, reader: str
) -> None:
    await _put1(store, "older", b"x")
    await store.stats("kv")  # applied: only the fresh key below is pending
    key = f"fresh-{reader}"
    vid = await _put1(store, key, b"value of " + key.encode())
    assert await _applied(store, key) is None
    await READERS[reader](store, key, vid)
    assert await _applied(store, key) == vid


# --- ordering against writes that bypass the journal --------------------------------------


async def test_a_conditional_put_after_put_batch_sees_it_and_wins(rig: Rig) -> None:
    store = rig.store
    vid = await _put1(store, "k", b"journaled")
    with pytest.raises(ConditionFailed) as info:
        await store.put("kv", "k", b"direct", condition=Condition(CondKind.IF_ABSENT))
    assert info.value.current == vid
    v = await store.put("kv", "k", b"direct", condition=Condition(CondKind.IF_VERSION, vid))
    assert (await store.read(v)) == b"direct"
    head = await store.head("kv", "k")
    assert head is not None and head.version_id == v.version_id
    store = await rig.restart()
    head = await store.head("kv", "k")
    assert head is not None and head.version_id == v.version_id
    assert await store.read(head) == b"direct"


async def test_a_large_put_after_put_batch_wins(rig: Rig) -> None:
    store = rig.store
    await _put1(store, "k", b"small")
    big = bytes(range(256)) * 50  # 12,800 bytes: chunked, so never through the journal
    v = await store.put("kv", "k", big)
    assert v.inline is None and len(v.chunks) == 4
    for restart in (False, True):
        s = await rig.restart() if restart else store
        head = await s.head("kv", "k")
        assert head is not None and head.version_id == v.version_id
        assert await s.read(head) == big


async def test_concurrent_put_batch_then_put_the_later_one_wins(rig: Rig) -> None:
    store = rig.store
    batch = asyncio.ensure_future(store.put_batch("kv", [("k", b"batched"), ("other", b"o")]))
    await asyncio.sleep(0)  # the batch is submitted to the journal, its fsync in flight
    direct = asyncio.ensure_future(store.put("kv", "k", b"direct"))
    (vid, _), v = await asyncio.gather(batch, direct)
    assert isinstance(vid, str) and vid != v.version_id
    for restart in (False, True):
        s = await rig.restart() if restart else store
        head = await s.head("kv", "k")
        assert head is not None and head.version_id == v.version_id
        assert await s.read(head) == b"direct"
        other = await s.head("kv", "other")
        assert other is not None and other.inline == b"o"


async def test_put_then_put_batch_the_journaled_one_wins(rig: Rig) -> None:
    store = rig.store
    await store.put("kv", "k", b"direct")
    started = asyncio.ensure_future(store.put("kv", "j", b"direct"))
    await asyncio.sleep(0)  # a direct write is running: batches wait their turn behind it
    (vid_j,) = await store.put_batch("kv", [("j", b"batched")])
    await started
    vid = await _put1(store, "k", b"batched")
    for restart in (False, True):
        s = await rig.restart() if restart else store
        for key, want in (("k", vid), ("j", vid_j)):
            head = await s.head("kv", key)
            assert head is not None and head.version_id == want
            assert await s.read(head) == b"batched"


async def test_many_batches_of_a_hot_key_end_with_the_last(rig: Rig) -> None:
    store = rig.store
    vids = await asyncio.gather(*(store.put_batch("kv", [("hot", b"%d" % n)]) for n in range(50)))
    last = vids[-1][0]
    head = await store.head("kv", "hot")
    assert head is not None and (head.version_id, head.inline) == (last, b"49")
    store = await rig.restart()
    head = await store.head("kv", "hot")
    assert head is not None and (head.version_id, head.inline) == (last, b"49")
    assert [v.version_id for v in await store.list_versions("kv", "hot")] == [last]


async def test_delete_after_put_batch(rig: Rig) -> None:
    store = rig.store
    await _put1(store, "gone", b"1")
    await _put1(store, "kept", b"2")
    result = await store.delete("kv", "gone")
    assert not result.not_found
    assert await store.head("kv", "gone") is None
    assert store.peek("kv", "gone") in (None, MISS)
    assert (await store.stats("kv")).objects == 1
    store = await rig.restart()  # the journal must not bring it back
    assert await store.head("kv", "gone") is None
    assert [v.key for v in await store.list_objects("kv")] == ["kept"]
    vid = await _put1(store, "gone", b"3")  # and it can be written again
    head = await store.head("kv", "gone")
    assert head is not None and head.version_id == vid


async def test_put_batch_into_a_versioned_bucket_bypasses_the_journal(store: Store) -> None:
    await store.ensure_bucket("hist", versioning=Versioning.ENABLED)
    first = await _put1(store, "k", b"1", bucket="hist")
    assert await _applied(store, "k", bucket="hist") == first  # committed at once
    second = await _put1(store, "k", b"2", bucket="hist")
    versions = await store.list_versions("hist", "k")
    assert [v.version_id for v in versions] == [second, first]
    assert not any(v.is_null for v in versions)
    assert await store.meta.journal_lsn() == 0
    assert _journal_records(store.journal_dir) == []


@pytest.mark.parametrize("bucket", ["kv", "hist"])
async def test_submitted_batches_take_effect_after_what_they_follow(
    store: Store, bucket: str
) -> None:
    """``submit_batch`` is all a front door says: this batch follows ``after`` (an
    earlier request still running) and ``previous`` (its last batch). Through the journal
    ("kv") or straight to SQLite ("hist", versioned), the last batch handed over wins,
    whatever order the Store finds time to run them in."""
    await store.ensure_bucket("hist", versioning=Versioning.ENABLED)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    first = store.submit_batch(bucket, [("k", b"first")], after=gate)
    assert not first.in_journal, "it waits for the earlier request, so it cannot go at once"
    second = store.submit_batch(bucket, [("k", b"second"), ("o", b"o")], previous=first)
    assert not second.in_journal, "it must not overtake the batch still waiting"
    await asyncio.sleep(0)
    assert not first.done.done() and not second.done.done()
    gate.set_result(None)
    (vid1,), (vid2, _) = await asyncio.gather(first.done, second.done)
    assert isinstance(vid1, str) and isinstance(vid2, str)
    third = store.submit_batch(bucket, [("k", b"third")], previous=second)
    assert third.in_journal == (bucket == "kv"), "only the plain bucket journals"
    (vid3,) = await third.done
    head = await store.head(bucket, "k")
    assert head is not None and (head.version_id, head.inline) == (vid3, b"third")
    if bucket == "hist":
        versions = await store.list_versions(bucket, "k")
        assert [v.version_id for v in versions] == [vid3, vid2, vid1]


async def test_a_journaled_batch_need_not_wait_for_the_previous_one(store: Store) -> None:
    first = store.submit_batch("kv", [("k", b"1")])
    second = store.submit_batch("kv", [("k", b"2")], previous=first)
    assert first.in_journal and second.in_journal
    assert not first.done.done(), "both were handed over before the first fsync ended"
    (vid1,), (vid2,) = await asyncio.gather(first.done, second.done)
    head = await store.head("kv", "k")
    assert head is not None and (head.version_id, head.inline) == (vid2, b"2")
    assert vid1 != vid2


async def test_enabling_versioning_applies_pending_writes_as_null_versions(store: Store) -> None:
    null = await _put1(store, "k", b"before")
    await store.set_versioning("kv", Versioning.ENABLED)
    after = await _put1(store, "k", b"after")
    versions = await store.list_versions("kv", "k")
    assert [(v.version_id, v.is_null) for v in versions] == [(after, False), (null, True)]


async def test_ensure_bucket_enabling_versioning_applies_pending_writes_first(
    store: Store,
) -> None:
    """``ensure_bucket`` changes versioning like ``set_versioning`` does, so a write
    acknowledged before it must stay the null version it was written as."""
    null = await _put1(store, "k", b"before")
    await store.ensure_bucket("kv", versioning=Versioning.ENABLED)
    after = await _put1(store, "k", b"after")
    versions = await store.list_versions("kv", "k")
    assert [(v.version_id, v.is_null) for v in versions] == [(after, False), (null, True)]


# --- shutdown and crashes -----------------------------------------------------------------


def _journal_records(path: Path | None) -> list[journal_codec.Record]:
    assert path is not None
    out: list[journal_codec.Record] = []
    for seg in sorted(path.glob(f"*{SEGMENT_SUFFIX}")):
        data = seg.read_bytes()
        found = journal_codec.scan(data)
        # After the frames, only a preallocated segment's zeros.
        assert not any(data[found.end :]), (seg, found.problem, found.end)
        out.extend(found.records)
    return out


async def test_close_leaves_nothing_to_replay(rig: Rig) -> None:
    store = rig.store
    sizes = [3, 1, 5]
    for n, size in enumerate(sizes):
        await store.put_batch("kv", [(f"b{n}k{i}", b"v") for i in range(size)])
    await rig.stop()
    meta = SqliteMetaStore(rig.data / META_FILE)
    await meta.open()
    try:
        assert await meta.journal_lsn() == sum(sizes)
        on_disk = _journal_records(rig.data / JOURNAL_DIR)
        assert on_disk and max(r.lsn for r in on_disk) == sum(sizes)
        j = Journal(rig.data / JOURNAL_DIR)
        assert j.open(await meta.journal_lsn()) == []
        assert j.durable_lsn == sum(sizes)
        await j.close()
        assert len(await meta.list_objects("kv")) == sum(sizes)
    finally:
        await meta.close()


#: What both child processes start with: a Store with the journal on, over argv[1].
_CHILD_PRELUDE = r"""
import asyncio, json, os, sys
from pathlib import Path

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.integrity import crc32c
from kvbox.core.journal import JOURNAL_DIR, memtable, writes
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.store import Store


async def open_store() -> Store:
    data = Path(sys.argv[1])
    store = Store(
        SqliteMetaStore(data / META_FILE), LocalDirBlobStore(data),
        journal_dir=data / JOURNAL_DIR,
    )
    await store.open()
    await store.ensure_bucket("kv")
    return store
"""

_CHILD = (
    _CHILD_PRELUDE
    + r"""
writes.APPLY_INTERVAL = 3600.0  # nothing reaches SQLite before the crash


async def main() -> None:
    store = await open_store()
    acked = {}

    async def batch(n):
        items = [(f"k{n}-{i}-ü", b"%d:%d|" % (n, i) * i) for i in range(8)]
        vids = await store.put_batch("kv", items)
        for (key, value), vid in zip(items, vids):
            acked[key] = [vid, value.hex()]

    await asyncio.gather(*(batch(n) for n in range(20)))  # group commits
    for n in range(5):  # one key overwritten: the last acknowledged write must win
        (vid,) = await store.put_batch("kv", [("hot", b"hot %d" % n)])
        acked["hot"] = [vid, (b"hot %d" % n).hex()]
    report = {
        "acked": acked,
        "applied_lsn": await store.meta.journal_lsn(),
        "in_sqlite": await store.meta.head("kv", "hot") is not None,
    }
    print(json.dumps(report), flush=True)
    os._exit(0)  # no close: the memtable dies with the process


asyncio.run(main())
"""
)


def _crash_child(data: Path) -> dict[str, tuple[str, bytes]]:
    """Run the child writer on ``data``; the writes it was told are durable."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert report["applied_lsn"] == 0 and not report["in_sqlite"], report
    return {k: (vid, bytes.fromhex(value)) for k, (vid, value) in report["acked"].items()}


@pytest.mark.parametrize("torn_tail", [False, True])
async def test_a_crash_loses_no_acknowledged_journaled_write(
    tmp_path: Path, slow_applier: None, torn_tail: bool
) -> None:
    data = tmp_path / "data"
    acked = _crash_child(data)
    assert len(acked) == 20 * 8 + 1
    records = _journal_records(data / JOURNAL_DIR)
    assert len(records) == 20 * 8 + 5
    if torn_tail:  # as if a later frame had been cut short by the crash
        last = sorted((data / JOURNAL_DIR).glob(f"*{SEGMENT_SUFFIX}"))[-1]
        end = journal_codec.scan(last.read_bytes()).end
        with open(last, "r+b") as f:
            f.seek(end)
            f.write(journal_codec.encode_frame(len(records) + 1, [records[0]])[:-3])

    rig = Rig(data)
    store = await rig.start()
    try:
        assert await store.meta.journal_lsn() == len(records)  # replayed at open
        for key, (vid, value) in acked.items():
            head = await store.head("kv", key)
            assert head is not None, key
            assert head.version_id == vid, key
            assert await store.read(head) == value, key
            assert await _applied(store, key) == vid  # in SQLite, not just the memtable
        assert (await store.stats("kv")).objects == len(acked)
        new = await _put1(store, "after", b"restart")
        store = await rig.restart()
        head = await store.head("kv", "after")
        assert head is not None and head.version_id == new
        hot = await store.head("kv", "hot")
        assert hot is not None and hot.version_id == acked["hot"][0]
    finally:
        await rig.stop()


# --- the schema ---------------------------------------------------------------------------


def _downgrade_to_schema_5(db: Path) -> None:
    """Turn a schema-6 database into what kvbox wrote at schema 5: ``versions`` without
    its ``crc`` column (inline values had no checksum)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("ALTER TABLE versions DROP COLUMN crc")
        conn.execute("PRAGMA user_version = 5")
        assert "crc" not in [r[1] for r in conn.execute("PRAGMA table_info(versions)")]
    finally:
        conn.close()


def _downgrade_to_schema_4(db: Path) -> int:
    """Turn a schema-6 database into what kvbox wrote at schema 4: no value checksums,
    ``state`` without its ``journal`` column. Returns the ``seq`` kept."""
    _downgrade_to_schema_5(db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        (seq,) = conn.execute("SELECT seq FROM state").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TABLE state")
        conn.execute(
            "CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO state (id, seq) VALUES (0, ?)", (seq,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA user_version = 4")
        assert [r[1] for r in conn.execute("PRAGMA table_info(state)")] == ["id", "seq"]
    finally:
        conn.close()
    return int(seq)


async def test_a_schema_4_database_is_migrated_on_open(tmp_path: Path, slow_applier: None) -> None:
    data = tmp_path / "data"
    rig = Rig(data)
    store = await rig.start()
    old = await store.put("kv", "old", b"from schema 4")
    big = await store.put("kv", "big", b"z" * (3 * CHUNK))
    await rig.stop()
    seq = _downgrade_to_schema_4(data / META_FILE)
    assert seq >= big.seq
    shutil.rmtree(data / JOURNAL_DIR)  # schema 4 had no journal

    try:
        store = await rig.start()
        conn = sqlite3.connect(data / META_FILE)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
            assert conn.execute("SELECT seq, journal FROM state").fetchone() == (seq, 0)
        finally:
            conn.close()
        for v, value in ((old, b"from schema 4"), (big, b"z" * (3 * CHUNK))):
            head = await store.head("kv", v.key)
            assert head is not None and head.version_id == v.version_id
            assert await store.read(head) == value
        newer = await store.put("kv", "direct", b"d")
        assert newer.seq > seq  # the sequence goes on from the migrated state
        vid = await _put1(store, "journaled", b"j")
        store = await rig.restart()
        assert await store.meta.journal_lsn() == 1
        head = await store.head("kv", "journaled")
        assert head is not None and head.version_id == vid
    finally:
        await rig.stop()


def _flip_in_file(path: Path, needle: bytes) -> None:
    """Change the first byte of ``needle``, which must occur once in ``path``, in place
    (a stopped server's database file, as a bad disk would)."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0, f"{needle!r} not once in {path}"
    data[at] ^= 0x20
    path.write_bytes(bytes(data))


async def test_a_schema_5_database_gets_value_checksums(tmp_path: Path, slow_applier: None) -> None:
    """Migrated from schema 5, every inline value (journaled or written directly, in a
    bucket with or without versioning) gets its checksum from its bytes as they are;
    from then on a changed byte is found on read, and a rewrite heals the key."""
    data = tmp_path / "data"
    rig = Rig(data)
    store = await rig.start()
    await store.ensure_bucket("hist", versioning=Versioning.ENABLED)
    await _put1(store, "journaled", b"hello from the journal")
    await store.put("kv", "direct", b"hello written directly")
    old = await store.put("hist", "k", b"first of two versions")
    await store.put("hist", "k", b"second of two versions")
    big = await store.put("kv", "big", os.urandom(3 * CHUNK))
    await rig.stop()
    _downgrade_to_schema_5(data / META_FILE)

    try:
        store = await rig.restart()
        conn = sqlite3.connect(data / META_FILE)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
            rows = conn.execute("SELECT inline, crc FROM versions").fetchall()
        finally:
            conn.close()
        assert len(rows) == 5
        for inline, crc in rows:
            assert crc == (None if inline is None else crc32c(inline))
        for bucket, key, want in (
            ("kv", "journaled", b"hello from the journal"),
            ("kv", "direct", b"hello written directly"),
            ("hist", "k", b"second of two versions"),
        ):
            v = await store.head(bucket, key)
            assert v is not None and v.inline == want and v.inline_crc == crc32c(want)
        got = await store.get_version("hist", "k", old.version_id)
        assert got is not None and got.inline == b"first of two versions"
        assert await store.read(big) == await store.read(big)  # chunks are not touched

        await rig.stop()
        _flip_in_file(data / META_FILE, b"first of two versions")
        _flip_in_file(data / META_FILE, b"hello written directly")
        store = await rig.restart()  # a new Store: nothing cached from before
        with pytest.raises(DataDamaged, match="inline value does not match its checksum"):
            await store.head("kv", "direct")
        with pytest.raises(DataDamaged):
            await store.get_version("hist", "k", old.version_id)
        assert (await store.head("hist", "k")) is not None  # the sound newest still reads
        # Metadata-only callers are not stopped by the damage, and the bytes never
        # reach the cache (a later read still refuses them).
        meta_only = await store.head("kv", "direct", verify=False)
        assert meta_only is not None and meta_only.inline != b"hello written directly"
        with pytest.raises(DataDamaged):
            await store.head("kv", "direct")
        assert store.damage.objects == 2
        # Deletes work, and a rewrite heals the key.
        await store.delete("hist", "k", old.version_id)
        await store.put("kv", "direct", b"hello written again")
        v = await store.head("kv", "direct")
        assert v is not None and v.inline == b"hello written again"
    finally:
        await rig.stop()


async def test_a_journal_from_before_value_checksums_replays(tmp_path: Path) -> None:
    """Records in "KVJ1" frames (no checksum) left by an unclean stop of an older kvbox
    are applied at the next start, and their values get their checksum then."""
    data = tmp_path / "data"
    rig = Rig(data)
    await rig.start()
    await rig.stop()
    (data / JOURNAL_DIR).mkdir(exist_ok=True)
    segment = data / JOURNAL_DIR / f"{1:020d}{SEGMENT_SUFFIX}"
    recs = [
        journal_codec.Record(1, "kv", "a", "01M94X0000000000000000000A", 5, b"old a"),
        journal_codec.Record(2, "kv", "b", "01M94X0000000000000000000B", 5, b"old b"),
    ]
    segment.write_bytes(journal_codec.encode_frame_v1(1, recs))
    try:
        store = await rig.start()
        for key in ("a", "b"):
            v = await store.head("kv", key)
            assert v is not None and v.inline == b"old " + key.encode()
            assert v.inline_crc == crc32c(v.inline)
    finally:
        await rig.stop()


# --- chunks freed by journaled writes -------------------------------------------------------


async def _chunked(store: Store, key: str) -> list[str]:
    v = await store.put("kv", key, os.urandom(3 * CHUNK + 5))
    assert v.inline is None and len(v.chunks) == 4
    return [c.chunk_id for c in v.chunks]


async def test_overwriting_a_chunked_value_through_the_journal_frees_its_chunks(
    store: Store,
) -> None:
    chunks = await _chunked(store, "k")
    vid = await _put1(store, "k", b"small now")
    await store.sweep_chunk_writers()
    # Not applied yet: SQLite still references the chunks, so they must stay.
    assert all([await store.blobs.exists(c) for c in chunks])
    assert (await store.stats("kv")).objects == 1  # settles
    await store.sweep_chunk_writers()
    assert not any([await store.blobs.exists(c) for c in chunks])
    head = await store.head("kv", "k")
    assert head is not None and head.version_id == vid and head.inline == b"small now"


async def test_the_background_applier_applies_and_frees_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "APPLY_INTERVAL", 0.05)
    rig = Rig(tmp_path / "data")
    store = await rig.start()
    try:
        chunks = await _chunked(store, "k")
        vid = await _put1(store, "k", b"small")
        deadline = time.monotonic() + 10
        while await _applied(store, "k") != vid:
            assert time.monotonic() < deadline, "the applier never applied the write"
            await asyncio.sleep(0.02)
        assert await store.meta.journal_lsn() == 1
        await store.sweep_chunk_writers()
        while any([await store.blobs.exists(c) for c in chunks]):
            assert time.monotonic() < deadline, "the freed chunks were never collected"
            await asyncio.sleep(0.02)
            await store.sweep_chunk_writers()
    finally:
        await rig.stop()


# --- an apply that fails or is cancelled ------------------------------------------------------


@pytest.mark.slow
async def test_an_apply_that_fails_as_a_whole_keeps_the_writes(rig: Rig) -> None:
    """SQLite refuses the applier's transaction (another process holds the write lock,
    as a ``sqlite3`` shell would): the acknowledged writes stay readable, are applied
    once the lock is gone, and a later apply does not skip them. Takes the writer's
    10 s busy timeout."""
    store = rig.store
    vid = await _put1(store, "k", b"acknowledged")
    other = sqlite3.connect(rig.data / META_FILE, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError):
            await store.stats("kv")  # must apply first, and can't
        head = await store.head("kv", "k")
        assert head is not None and head.version_id == vid
    finally:
        other.execute("ROLLBACK")
        other.close()
    later = await _put1(store, "later", b"2")
    assert (await store.stats("kv")).objects == 2
    assert await _applied(store, "k") == vid
    store = await rig.restart()
    for key, want in (("k", vid), ("later", later)):
        head = await store.head("kv", key)
        assert head is not None and head.version_id == want


async def _cancel_a_settle(store: Store) -> None:
    """Cancel a read while it applies the memtable, its commit in flight."""
    await _put1(store, "first", b"1")
    reader = asyncio.ensure_future(store.stats("kv"))
    await asyncio.sleep(0)  # the read is now waiting for the applier's commit
    assert not reader.done()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_direct_write_after_a_cancelled_apply_still_wins(rig: Rig) -> None:
    """A journaled write, then a direct one of the same key: the direct one is the
    newer, before and after a restart, even after some read was cancelled mid-apply."""
    store = rig.store
    await _cancel_a_settle(store)
    await _put1(store, "k", b"journaled")
    direct = await store.put("kv", "k", b"direct")
    head = await store.head("kv", "k")
    assert head is not None and head.inline == b"direct", "a direct write read back stale"
    store = await rig.restart()
    head = await store.head("kv", "k")
    assert head is not None and head.version_id == direct.version_id, "lost after restart"


async def test_reads_after_a_cancelled_apply_still_see_journaled_writes(rig: Rig) -> None:
    store = rig.store
    await _cancel_a_settle(store)
    vid = await _put1(store, "fresh", b"x")
    assert vid in {v.version_id for v in await store.list_objects("kv")}
    assert (await store.stats("kv")).objects == 2


_SPIN_CHILD = (
    _CHILD_PRELUDE
    + r"""
writes.APPLY_INTERVAL = 3600.0
memtable.MEM_HARD = 4096  # backpressure after a few KiB instead of 128 MiB


async def main() -> None:
    store = await open_store()
    await store.put_batch("kv", [("first", b"1")])
    reader = asyncio.ensure_future(store.stats("kv"))
    await asyncio.sleep(0)
    reader.cancel()
    try:
        await reader
    except asyncio.CancelledError:
        pass
    for n in range(20):  # past MEM_HARD: put_batch must wait for an apply, then go on
        await store.put_batch("kv", [(f"k{n}", b"v" * 1000)])
    await store.close()
    print("done", flush=True)


asyncio.run(main())
"""
)


def test_backpressure_after_a_cancelled_apply_does_not_hang(tmp_path: Path) -> None:
    """Run in a child process: the failure mode is a loop that never yields."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SPIN_CHILD, str(tmp_path / "data")],
            capture_output=True,
            timeout=10,  # it takes about a second
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("put_batch spun forever once the memtable was past MEM_HARD")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == b"done\n"


# --- a broken journal -----------------------------------------------------------------------


async def test_after_a_journal_write_fails_batches_bypass_it(rig: Rig) -> None:
    store = rig.store
    kept = await _put1(store, "kept", b"1")
    assert store.journal is not None
    journal = store.journal.log
    assert journal is not None
    (seg,) = journal.segment_files()
    ro = os.open(seg, os.O_RDONLY)  # the descriptor now refuses writes: a real EBADF
    try:
        os.dup2(ro, journal._fd)
    finally:
        os.close(ro)
    with pytest.raises(StorageError):
        await store.put_batch("kv", [("lost", b"2")])
    assert isinstance(journal.broken, OSError) and journal.broken.errno == errno.EBADF
    assert await store.head("kv", "lost") is None
    direct = await _put1(store, "after", b"3")  # committed to SQLite directly
    assert await _applied(store, "after") == direct
    assert await _applied(store, "kept") == kept  # applied before the direct commit
    store = await rig.restart()
    for key, vid in (("kept", kept), ("after", direct)):
        head = await store.head("kv", key)
        assert head is not None and head.version_id == vid
    assert await store.head("kv", "lost") is None
    assert await _put1(store, "journal-again", b"4")
    assert await _applied(store, "journal-again") is None  # journaled again
