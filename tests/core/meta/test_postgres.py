"""What only the PostgreSQL store must show: gateways racing on one database get the
outcome one gateway would, listings stay index range scans, and the schema is checked.

Layer: tests/core/meta. Rules: two ``PostgresMetaStore`` instances on one database are
two gateways (each its own pool, writer and group commit); every race is run with the
two writing at once, many times, and the outcome must be one a single store could
give. The conformance suites (``test_conformance*.py``) already run on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.postgres import PostgresMetaStore
from kvbox.core.model import (
    Bucket,
    ChunkRef,
    Condition,
    CondKind,
    MultipartUpload,
    ObjectVersion,
    Part,
    PutOp,
    VersionIdGenerator,
    Versioning,
)
from kvbox.core.pg import PgUrl
from kvbox.core.store import Store
from kvbox.errors import NoSuchBucket, NoSuchUpload, SchemaMismatch, StorageError

IDS = VersionIdGenerator()
ROUNDS = 20


def ver(bucket: str, key: str, data: bytes, chunks: tuple[ChunkRef, ...] = ()) -> ObjectVersion:
    return ObjectVersion(
        bucket,
        key,
        IDS.new(),
        sum(c.size for c in chunks) if chunks else len(data),
        hashlib.md5(data).hexdigest(),
        1,
        inline=None if chunks else data,
        chunks=chunks,
    )


@pytest.fixture
async def gateways(pg_meta_url: str) -> AsyncIterator[tuple[PostgresMetaStore, PostgresMetaStore]]:
    a, b = PostgresMetaStore(pg_meta_url), PostgresMetaStore(pg_meta_url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_if_absent_puts_racing_from_two_gateways_have_one_winner(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore],
) -> None:
    a, b = gateways
    await a.create_bucket(Bucket("bk"))
    absent = Condition(CondKind.IF_ABSENT)
    for i in range(ROUNDS):
        key = f"k{i}"
        ra, rb = await asyncio.gather(
            a.commit([PutOp(ver("bk", key, b"from-a"), absent)]),
            b.commit([PutOp(ver("bk", key, b"from-b"), absent)]),
        )
        oks = [r[0].ok for r in (ra, rb)]
        assert sorted(oks) == [False, True], (key, oks)
        winner = (ra if ra[0].ok else rb)[0].written[0]
        loser = (rb if ra[0].ok else ra)[0]
        assert loser.current is not None and loser.current.version_id == winner.version_id
        head = await b.head("bk", key)
        assert head is not None and head.version_id == winner.version_id


async def test_if_version_updates_racing_lose_no_update(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore],
) -> None:
    """A read-modify-write counter through If-Match on the version: every successful
    update saw the one before it, so the count is exact (no lost update)."""
    a, b = gateways
    await a.create_bucket(Bucket("ctr"))
    await a.set_versioning("ctr", Versioning.ENABLED)
    await a.commit([PutOp(ver("ctr", "n", b"0"))])

    async def bump(store: PostgresMetaStore, times: int) -> int:
        done = 0
        while done < times:
            cur = await store.head("ctr", "n")
            assert cur is not None and cur.inline is not None
            nxt = str(int(cur.inline) + 1).encode()
            cond = Condition(CondKind.IF_VERSION, cur.version_id)
            [r] = await store.commit([PutOp(ver("ctr", "n", nxt), cond)])
            done += r.ok
        return done

    await asyncio.gather(bump(a, ROUNDS), bump(b, ROUNDS))
    head = await a.head("ctr", "n")
    assert head is not None and head.inline == str(2 * ROUNDS).encode()
    history = await b.list_versions("ctr", "n", limit=1000)
    assert [int(v.inline or b"") for v in history] == list(range(2 * ROUNDS, -1, -1))
    seqs = [v.seq for v in history]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)


async def test_cas_racing_in_batches_in_flight_on_two_gateways_has_one_winner(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore],
) -> None:
    """Each gateway runs several batches at once (filled here by writes to other
    keys); compare-and-set jobs on one key, submitted at once on both gateways from the
    same version, have exactly one winner, the losers see it as current, and the key's
    versions stay numbered in commit order."""
    a, b = gateways
    await a.create_bucket(Bucket("cas"))
    await a.set_versioning("cas", Versioning.ENABLED)
    [first] = await a.commit([PutOp(ver("cas", "hot", b"start"))])
    current = first.written[0]
    for i in range(ROUNDS):
        cond = Condition(CondKind.IF_VERSION, current.version_id)
        calls = []
        for n in range(12):
            store = a if n % 2 else b
            calls.append(store.commit([PutOp(ver("cas", f"noise-{i}-{n}", b"x"))]))
            if n % 3 == 0:
                calls.append(store.commit([PutOp(ver("cas", "hot", f"{i}-{n}".encode()), cond)]))
        results = await asyncio.gather(*calls)
        cas = [r for [r] in results if (r.written and r.written[0].key == "hot") or not r.ok]
        winners = [r.written[0] for r in cas if r.ok]
        assert len(cas) == 4 and len(winners) == 1, (i, cas)
        for r in cas:
            if not r.ok:
                assert r.current is not None and r.current.version_id == winners[0].version_id
        current = winners[0]
    assert a.writer is not None and b.writer is not None
    assert a.writer.peak_inflight > 1 and b.writer.peak_inflight > 1
    history = await b.list_versions("cas", "hot", limit=1000)
    assert len(history) == ROUNDS + 1 and history[0].version_id == current.version_id
    assert [v.seq for v in history] == sorted((v.seq for v in history), reverse=True)


async def test_writes_on_one_key_commit_in_the_order_they_were_submitted(
    pg_meta_url: str,
) -> None:
    """With batches in flight at once, jobs on one key still commit in the order they
    were submitted (the writer holds a job back while a batch in flight writes its key),
    whatever else runs beside them; a bucket change waits for every batch before it."""
    store = PostgresMetaStore(pg_meta_url)
    await store.open()
    other = await asyncpg.connect(pg_meta_url, server_settings={"search_path": "kvbox"})
    try:
        await store.create_bucket(Bucket("fifo"))
        await store.set_versioning("fifo", Versioning.ENABLED)
        await store.commit([PutOp(ver("fifo", "a-held", b"0")), PutOp(ver("fifo", "k", b"0"))])
        # Another transaction holds "a-held": the first job (which locks it before "k")
        # waits there; the second job, on "k" alone, must wait for it, not overtake it.
        async with other.transaction():
            await other.execute("SELECT 1 FROM heads WHERE key = 'a-held' FOR UPDATE")
            first = asyncio.ensure_future(
                store.commit([PutOp(ver("fifo", "a-held", b"1")), PutOp(ver("fifo", "k", b"1"))])
            )
            second = asyncio.ensure_future(store.commit([PutOp(ver("fifo", "k", b"2"))]))
            third = asyncio.ensure_future(store.commit([PutOp(ver("fifo", "free", b"3"))]))
            await third  # other keys are not held back meanwhile
            assert not first.done() and not second.done()
        await asyncio.gather(first, second)
        history = await store.list_versions("fifo", "k")
        assert [v.inline for v in history] == [b"2", b"1", b"0"]
        calls: list[Coroutine[Any, Any, object]] = []
        for n in range(60):
            calls.append(store.commit([PutOp(ver("fifo", f"k{n % 3}", str(n).encode()))]))
            calls.append(store.commit([PutOp(ver("fifo", f"other-{n}", b"x"))]))
            if n == 30:
                calls.append(store.set_versioning("fifo", Versioning.SUSPENDED))
        await asyncio.gather(*calls)
        assert store.writer is not None and store.writer.peak_inflight > 1
        for k in range(3):
            history = await store.list_versions("fifo", f"k{k}", limit=1000)
            values = [int(v.inline or b"") for v in reversed(history)]
            # Suspended from n = 30 on: each later write replaces the one null version.
            assert values == [n for n in range(60) if n % 3 == k and n <= 30] + [
                max(n for n in range(60) if n % 3 == k)
            ], (k, values)
    finally:
        await other.close()
        await store.close()


async def test_a_connection_lost_during_commit_is_no_503(pg_meta_url: str) -> None:
    """A 503 (MetaUnavailable) promises nothing was applied, so a connection lost during
    the COMMIT (which may have committed) is a StorageError instead (a 500); one lost
    before it is a 503 once no fresh connection can be had either."""
    from kvbox.errors import MetaUnavailable

    store = PostgresMetaStore(pg_meta_url)
    await store.open()
    admin = await asyncpg.connect(pg_meta_url, server_settings={"search_path": "kvbox"})
    try:
        await store.create_bucket(Bucket("lost"))
        # A deferred constraint trigger runs at COMMIT: it holds the COMMIT long enough
        # for the test to end that backend while it commits.
        await admin.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;"
            " CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON heads"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
        write = asyncio.ensure_future(store.commit([PutOp(ver("lost", "k", b"v"))]))
        for _ in range(200):
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COMMIT%' AND state = 'active'"
            )
            if pid is not None:
                break
            await asyncio.sleep(0.02)
        assert pid is not None, "the COMMIT never showed"
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(StorageError) as err:
            await write
        assert not isinstance(err.value, MetaUnavailable), err.value
        assert "may or may not have been applied" in str(err.value)
    finally:
        await admin.close()
        await store.close()


async def test_versions_written_from_two_gateways_are_ordered_by_commit(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore],
) -> None:
    a, b = gateways
    await a.create_bucket(Bucket("ord"))
    await a.set_versioning("ord", Versioning.ENABLED)
    written: list[ObjectVersion] = []

    async def writer(store: PostgresMetaStore, tag: bytes) -> None:
        for i in range(ROUNDS):
            [r] = await store.commit([PutOp(ver("ord", "k", tag + str(i).encode()))])
            written.append(r.written[0])

    await asyncio.gather(writer(a, b"a"), writer(b, b"b"))
    history = await a.list_versions("ord", "k", limit=1000)
    assert len(history) == 2 * ROUNDS
    # newest first by seq, and each gateway's own writes in the order it made them
    assert [v.seq for v in history] == sorted((v.seq for v in history), reverse=True)
    for tag in (b"a", b"b"):
        mine = [v.inline for v in reversed(history) if (v.inline or b"").startswith(tag)]
        assert mine == [tag + str(i).encode() for i in range(ROUNDS)]
    head = await b.head("ord", "k")
    assert head is not None and head.seq == max(v.seq for v in written)


async def test_complete_upload_twice_from_two_gateways_completes_once(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore],
) -> None:
    a, b = gateways
    await a.create_bucket(Bucket("mp"))
    chunk = ChunkRef(hashlib.sha256(b"part").hexdigest(), 4)
    for i in range(ROUNDS // 2):
        uid = f"up{i}"
        await a.create_upload(MultipartUpload("mp", "obj", uid, 1))
        await b.put_part(uid, Part(1, "etag1", 4, (chunk,), 1))
        version = ver("mp", "obj", b"", (chunk,))
        outcomes = await asyncio.gather(
            a.complete_upload(uid, version, [(1, "etag1")]),
            b.complete_upload(uid, version, [(1, "etag1")]),
            return_exceptions=True,
        )
        kinds = sorted(type(o).__name__ for o in outcomes)
        assert kinds == ["NoSuchUpload", "WriteResult"], outcomes
        with pytest.raises(NoSuchUpload):
            await a.list_parts(uid)
    # the chunk is held once per completed object version (null version replaced)
    assert await b.chunk_ref_counts([chunk.chunk_id]) == {chunk.chunk_id: 1}


async def test_parts_uploaded_in_parallel_run_beside_other_writes(pg_meta_url: str) -> None:
    """A multipart upload's own changes are scoped to the upload, not bucket-wide: parts
    sent at once (as S3 clients do) commit in batches beside other writes, every part
    is kept, and the completion sees them all."""
    store = PostgresMetaStore(pg_meta_url)
    await store.open()
    try:
        await store.create_bucket(Bucket("par"))
        await store.create_upload(MultipartUpload("par", "big", "u1", 1))
        chunks = [ChunkRef(hashlib.sha256(bytes([n])).hexdigest(), 5) for n in range(16)]
        calls: list[Coroutine[Any, Any, object]] = []
        for n, c in enumerate(chunks, 1):
            calls.append(store.put_part("u1", Part(n, f"e{n}", 5, (c,), 1)))
            calls.append(store.commit([PutOp(ver("par", f"small-{n}", b"x"))]))
        await asyncio.gather(*calls)
        assert store.writer is not None and store.writer.peak_inflight > 1
        assert [p.part_number for p in await store.list_parts("u1")] == list(range(1, 17))
        version = ver("par", "big", b"", tuple(chunks))
        r = await store.complete_upload("u1", version, [(n, f"e{n}") for n in range(1, 17)])
        assert r.ok and r.written[0].chunks == tuple(chunks)
    finally:
        await store.close()


async def test_bucket_create_and_delete_races(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore],
) -> None:
    a, b = gateways
    for i in range(ROUNDS):
        name = f"race{i}"
        made = await asyncio.gather(
            a.create_bucket(Bucket(name, owner="a")), b.create_bucket(Bucket(name, owner="b"))
        )
        assert sorted(made) == [False, True]
        # a write racing the bucket's deletion: either the write lands first (and the
        # delete is refused) or the delete does (and the write finds no bucket)
        put, gone = await asyncio.gather(
            a.commit([PutOp(ver(name, "k", b"x"))]), b.delete_bucket(name), return_exceptions=True
        )
        if isinstance(gone, BaseException):
            assert type(gone).__name__ == "BucketNotEmpty" and isinstance(put, list)
            assert await b.head(name, "k") is not None
        else:
            assert gone == () and isinstance(put, NoSuchBucket), put
            assert await a.get_bucket(name) is None


async def test_listing_is_an_index_range_scan(pg_meta_url: str) -> None:
    """The plan of a listing page on a bucket with many keys: the head rows' index
    from the start key, each version by primary key, never a scan of the table."""
    store = PostgresMetaStore(pg_meta_url)
    await store.open()
    try:
        await store.create_bucket(Bucket("big"))
        for start in range(0, 4000, 1000):
            await store.commit(
                [PutOp(ver("big", f"key/{i:06d}", b"v")) for i in range(start, start + 1000)]
            )
        page = await store.list_objects("big", prefix="key/", start_after="key/001000", limit=3)
        assert [v.key for v in page] == ["key/001001", "key/001002", "key/001003"]
    finally:
        await store.close()
    from kvbox.core.meta.postgres.reads import list_sql

    conn = await asyncpg.connect(pg_meta_url, server_settings={"search_path": "kvbox"})
    try:
        await conn.execute("ANALYZE")
        sql = "EXPLAIN " + list_sql(" AND key > $2 AND key < $3").replace("$LIMIT", "$4")
        plan = "\n".join(r[0] for r in await conn.fetch(sql, "big", "key/001000", "key0", 1000))
    finally:
        await conn.close()
    assert "Seq Scan on heads" not in plan and "Seq Scan on versions" not in plan, plan
    assert "Sort" not in plan and "Hash" not in plan, plan
    assert "Index Scan using versions_pkey on versions" in plan, plan
    assert "Index Cond: ((bucket = (InitPlan 1).col1) AND (key > 'key/001000'" in plan, plan


async def test_a_database_without_the_schema_is_refused_naming_the_command(pg_url: str) -> None:
    store = PostgresMetaStore(pg_url)
    with pytest.raises(SchemaMismatch) as err:
        await store.open()
    text = str(err.value)
    assert "kvbox migrate --meta postgresql://kvbox:***@" in text
    password = PgUrl.parse(pg_url).password
    assert password and password not in text
    migrating = PostgresMetaStore(pg_url, migrate=True)
    await migrating.open()
    try:
        assert await migrating.create_bucket(Bucket("now"))
    finally:
        await migrating.close()


async def test_no_journal_lsn_is_kept_for_all_gateways(
    gateways: tuple[PostgresMetaStore, PostgresMetaStore], tmp_path: Path
) -> None:
    """A GW-KV journal is one gateway's file: one shared LSN row would let a gateway
    skip replaying its own records below another's (migration 0005 drops it). A journal
    over PostgreSQL metadata is refused when it opens, before it could acknowledge a
    write, and a commit carrying an LSN is refused whole."""
    a, b = gateways
    conn = await asyncpg.connect(a.url.dsn, server_settings={"search_path": "kvbox"})
    try:
        assert await conn.fetchval("SELECT to_regclass('kvbox.journal')") is None
    finally:
        await conn.close()
    await a.create_bucket(Bucket("j"))
    with pytest.raises(StorageError, match="journal cannot run over PostgreSQL"):
        await a.commit([PutOp(ver("j", "k", b"v"))], journal_lsn=7)
    assert await b.head("j", "k") is None
    with pytest.raises(StorageError, match="journal cannot run over PostgreSQL"):
        await b.journal_lsn()
    store = Store(a, MemoryBlobStore(), journal_dir=tmp_path / "journal")
    with pytest.raises(StorageError, match="journal cannot run over PostgreSQL"):
        await store.open()


def test_a_rerun_takes_the_same_sequence_numbers_again() -> None:
    """run_loading undoes a run that needed rows; the numbers it took go back too, so a
    batch whose reruns are many does not drain (and double) the fetched block each time."""
    from kvbox.core.meta.postgres.txn import PgTxn
    from kvbox.core.model import VersionIdGenerator

    txn = PgTxn(None, VersionIdGenerator(), 0, "test")  # type: ignore[arg-type]
    txn.seqs = [30, 20, 10]
    token = txn.savepoint()
    assert [txn.next_seq(), txn.next_seq()] == [10, 20]
    txn.rollback_to(token)
    assert txn.seqs == [30, 20, 10]
    token = txn.savepoint()
    assert [txn.next_seq(), txn.next_seq(), txn.next_seq()] == [10, 20, 30]
    txn.release(token)
    assert txn.seqs == []


def test_a_block_dropped_by_a_key_load_is_fetched_again_at_its_size() -> None:
    """Numbers are dropped when more keys are locked (they may be too small); that is
    not a sign the block was too small, so the next fetch does not double it."""
    from kvbox.core.meta.postgres.txn import SEQ_BLOCK, PgTxn
    from kvbox.core.meta.txn import NeedRows
    from kvbox.core.model import VersionIdGenerator

    txn = PgTxn(None, VersionIdGenerator(), 0, "test")  # type: ignore[arg-type]
    for _ in range(30):  # thirty key loads, each dropping the block
        txn.seqs.clear()
        txn.seqs_dropped = True
        with pytest.raises(NeedRows):
            txn.next_seq()
    assert txn.seq_want == SEQ_BLOCK
    with pytest.raises(NeedRows):  # a block used up does double
        txn.next_seq()
    assert txn.seq_want == 2 * SEQ_BLOCK
