"""What only the SQLite store promises: on-disk durability, its schema version, WAL, and
a clean lifecycle. Everything semantic is in test_conformance.py.

Layer: tests/core/meta.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from kvbox.core.meta.sqlite import META_FILE, SCHEMA_VERSION, SqliteMetaStore
from kvbox.core.model import (
    Bucket,
    BucketStats,
    DeleteOp,
    ObjectVersion,
    PutOp,
    VersionIdGenerator,
)
from kvbox.errors import InvalidArgument, StorageError

IDS = VersionIdGenerator()

_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from kvbox.core.meta.sqlite import SqliteMetaStore
    from kvbox.core.model import Bucket, ObjectVersion, PutOp

    async def main() -> None:
        store = SqliteMetaStore(Path(sys.argv[1]))
        await store.open()
        await store.create_bucket(Bucket("b"))
        for i in range(20):
            ops = [PutOp(ObjectVersion("b", f"k{i}-{j}", f"V{i}-{j}", size=1, inline=b"x"))
                   for j in range(50)]
            await store.commit(ops)
        print("committed", flush=True)
        os._exit(0)  # no close(), no checkpoint: as if the process died here

    asyncio.run(main())
    """
)


def test_acknowledged_commits_survive_a_process_exit_without_close(tmp_path: Path) -> None:
    db = tmp_path / META_FILE
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db)], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip() == b"committed"

    async def check() -> None:
        store = SqliteMetaStore(db)
        await store.open()
        try:
            assert await store.stats("b") == BucketStats(1000, 1000)
            got = await store.head("b", "k19-49")
            assert got is not None and got.version_id == "V19-49"
        finally:
            await store.close()

    asyncio.run(check())


async def test_database_is_wal_with_schema_version(tmp_path: Path) -> None:
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / META_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / META_FILE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteMetaStore(tmp_path / META_FILE)
    with pytest.raises(StorageError, match="schema version"):
        await store.open()


async def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        await SqliteMetaStore(tmp_path / "no" / "such" / "dir" / META_FILE).open()


def test_synchronous_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        SqliteMetaStore(tmp_path / META_FILE, synchronous="SOMETIMES")


async def test_lifecycle(tmp_path: Path) -> None:
    store = SqliteMetaStore(tmp_path / META_FILE, synchronous="normal")
    with pytest.raises(StorageError):
        await store.commit([PutOp(ObjectVersion("b", "k", IDS.new()))])
    with pytest.raises(StorageError):
        await store.head("b", "k")
    await store.open()
    await store.open()  # idempotent
    assert await store.create_bucket(Bucket("b"))
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError):
        await store.list_buckets()
    await store.open()  # and it can be opened again
    assert [b.name for b in await store.list_buckets()] == ["b"]
    await store.close()


async def test_close_waits_for_queued_commits(tmp_path: Path) -> None:
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    await store.create_bucket(Bucket("b"))
    pending = [
        asyncio.ensure_future(store.commit([PutOp(ObjectVersion("b", f"k{i}", IDS.new()))]))
        for i in range(200)
    ]
    await asyncio.sleep(0)  # let every commit enqueue
    await store.close()
    results = await asyncio.gather(*pending)
    assert all(r[0].ok for r in results)
    await store.open()
    assert (await store.stats("b")).objects == 200
    await store.close()


async def test_cancelled_caller_does_not_undo_its_commit(tmp_path: Path) -> None:
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    try:
        await store.create_bucket(Bucket("b"))
        task = asyncio.ensure_future(store.commit([PutOp(ObjectVersion("b", "k", "V1"))]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the writer applies it regardless
            if await store.head("b", "k") is not None:
                break
            await asyncio.sleep(0.01)
        got = await store.head("b", "k")
        assert got is not None and got.version_id == "V1"
    finally:
        await store.close()


def _plan(path: Path, sql: str, args: Sequence[object]) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
    finally:
        conn.close()
    return " | ".join(str(row[-1]) for row in rows)


async def test_list_objects_uses_the_live_index(tmp_path: Path) -> None:
    """The listing must be a range scan of the live table's key, each row then found by
    its row id: no table scan, no sort."""
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    await store.close()
    from kvbox.core.meta.sqlite.reads import SQL_LIST

    plan = _plan(
        tmp_path / META_FILE,
        SQL_LIST + " AND h.key >= ? AND h.key < ? ORDER BY h.key LIMIT ?",
        ("b", "a", "b", 10),
    )
    assert "SEARCH h USING PRIMARY KEY (bucket=? AND key>? AND key<?)" in plan
    assert "SEARCH v USING INTEGER PRIMARY KEY (rowid=?)" in plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


async def test_object_reads_are_index_lookups(tmp_path: Path) -> None:
    """head, head_many, get_version and list_versions never scan a table or sort."""
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    await store.close()
    from kvbox.core.meta.sqlite import reads as s

    reads: list[tuple[str, Sequence[object]]] = [
        (s.SQL_HEAD, ("b", "k")),
        (s.SQL_HEAD_MANY, ("b", '["k", "j"]')),
        (s.SQL_BY_ID, ("b", "k", "V1")),
        (s.SQL_NULL, ("b", "k")),
        (s.SQL_HISTORY, ("b", "k", 10)),
    ]
    for sql, args in reads:
        plan = _plan(tmp_path / META_FILE, sql, args)
        assert "SEARCH" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        for table in ("versions", "live", "markers", " v ", " h "):
            assert f"SCAN {table.strip()} " not in plan + " ", plan
    head = _plan(tmp_path / META_FILE, s.SQL_HEAD, ("b", "k"))
    assert head.startswith("COMPOUND QUERY | LEFT-MOST SUBQUERY | SEARCH h USING PRIMARY KEY")


async def test_unversioned_overwrites_rewrite_one_row_in_place(tmp_path: Path) -> None:
    """Replacing a null version rewrites its row under the same id: the table does not
    grow and the key's head entry never moves."""
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    try:
        await store.create_bucket(Bucket("b"))
        for i in range(5):
            await store.commit(
                [
                    PutOp(ObjectVersion("b", "k", IDS.new(), size=i, inline=b"x" * i)),
                    PutOp(ObjectVersion("b", "k", IDS.new(), size=i, inline=b"y" * i)),
                ]
            )
            ids = await asyncio.to_thread(_rows, tmp_path / META_FILE)
            assert len(ids) == 1
            if i == 0:
                first = ids
            assert ids == first
        got = await store.head("b", "k")
        assert got is not None and got.inline == b"yyyy"
        assert await store.stats("b") == BucketStats(1, 4)
    finally:
        await store.close()


def _rows(path: Path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT v.id, h.id FROM versions AS v JOIN live AS h ON h.id = v.id"
        ).fetchall()
    finally:
        conn.close()


async def test_one_commit_larger_than_any_statement_chunk(tmp_path: Path) -> None:
    """Thousands of ops in one call go out in several multi-row statements of
    different sizes; every op must land exactly once."""
    store = SqliteMetaStore(tmp_path / META_FILE)
    await store.open()
    try:
        await store.create_bucket(Bucket("b"))
        n = 2500
        for round_no in range(2):  # new keys, then every key overwritten
            ops = [
                PutOp(ObjectVersion("b", f"k{i:05d}", IDS.new(), size=round_no + 1, inline=b"v"))
                for i in range(n)
            ]
            results = await store.commit(ops)
            assert [len(r.removed) for r in results] == [round_no] * n
        assert await store.stats("b") == BucketStats(n, 2 * n)
        listed = await store.list_objects("b", limit=n + 1)
        assert [v.key for v in listed] == [f"k{i:05d}" for i in range(n)]
        assert {v.size for v in listed} == {2}
    finally:
        await store.close()


def _rows_and_counters(db: Path, bucket: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(live objects, their bytes) counted from the rows, and as the bucket's counters
    say, read by a connection of its own."""
    conn = sqlite3.connect(db)
    try:
        (bid,) = conn.execute("SELECT id FROM buckets WHERE name = ?", (bucket,)).fetchone()
        rows = conn.execute(
            "SELECT count(*), coalesce(sum(v.size), 0) FROM live l JOIN versions v"
            " ON v.id = l.id WHERE l.bucket = ?",
            (bid,),
        ).fetchone()
        counters = conn.execute("SELECT objects, bytes FROM buckets WHERE id = ?", (bid,))
        return (rows[0], rows[1]), counters.fetchone()
    finally:
        conn.close()


async def test_a_full_disk_mid_batch_fails_the_batch_whole(tmp_path: Path) -> None:
    """SQLITE_FULL rolls the whole transaction back by itself. The writer used to carry
    on in safe mode: the next job's SAVEPOINT began a transaction of its own that
    committed, and the counter deltas of the jobs rolled back were added anyway, so a
    bucket's counters drifted from its rows after a disk-full episode (issue #10: STATS
    62,914 objects against 63,017 live rows) and a write reported as failed was in.
    Now the batch fails whole, counters and rows agree, and writes work again once the
    space is back. The full disk is SQLite's own (``max_page_count`` on the writer's
    connection: the same SQLITE_FULL, at a page count the test chooses)."""
    db = tmp_path / META_FILE
    store = SqliteMetaStore(db)
    await store.open()
    try:
        await store.create_bucket(Bucket("b"))
        await store.commit(
            [
                PutOp(ObjectVersion("b", f"k{i}", IDS.new(), 10, inline=b"0123456789"))
                for i in range(300)
            ]
        )

        def set_max_pages(extra: int) -> Callable[[Any], object]:
            def job(txn: Any) -> object:
                conn: sqlite3.Connection = txn.conn
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                return conn.execute(f"PRAGMA max_page_count = {pages + extra}").fetchone()

            return job

        assert store._writer is not None
        await store._writer.run(set_max_pages(0))  # the "disk" is full from now on
        big = b"x" * 60_000  # needs new overflow pages: fails; the deletes would fit
        outcomes = await asyncio.gather(
            store.commit([DeleteOp("b", "k1")]),
            store.commit([PutOp(ObjectVersion("b", "big", IDS.new(), len(big), inline=big))]),
            store.commit([DeleteOp("b", "k2")]),
            return_exceptions=True,
        )
        assert _rows_and_counters(db, "b") == ((300, 3000), (300, 3000))
        for outcome in outcomes:
            assert isinstance(outcome, StorageError), outcome
            assert "full" in str(outcome)
        assert await store.stats("b") == BucketStats(300, 3000)
        assert await store.head("b", "k2") is not None  # a "failed" delete is not in

        await store._writer.run(set_max_pages(1_000_000))  # space is back
        await store.commit([DeleteOp("b", "k1")])
        await store.commit([PutOp(ObjectVersion("b", "big", IDS.new(), len(big), inline=big))])
        assert _rows_and_counters(db, "b") == ((300, 62_990), (300, 62_990))
        assert await store.stats("b") == BucketStats(300, 62_990)
    finally:
        await store.close()
