"""SQLite and PostgreSQL against the in-memory store on the same random write streams.

Layer: tests/core/meta. Rules: the conformance suite pins each rule with a hand-written
case; this test feeds both stores long seeded streams of mixed ops (conditions, atomic
groups, deletes by id, purges, duplicate ids, missing buckets, shared chunks, a
versioning change midway) and requires identical results and identical state after
every round. SQLite gets each round as concurrent commits, so its group commit, the
batch prefetch, its cache of hot keys (also shrunk to a few keys, so that it ages out
all the time) and the savepoint replay after a failed op are all exercised;
the memory store applies the same calls one by one in the same order. PostgreSQL gets
the same concurrent rounds, so its batch prefetch, the reruns of a rules function
after a load (``NeedRows``) and the overlay's undo log are exercised the same way, and
so are its several batches in flight: calls on one key keep their order, but calls on
different keys may commit in either order, so when they share a chunk, which of them
reports it freed may differ from the memory store's. There each call's result is
compared without its freed chunks, and the round's reports must name every chunk that
lost its last reference (what the Store needs to collect it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from pathlib import Path

import pytest

from kvbox.core.meta import MetaStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.meta.postgres import PostgresMetaStore
from kvbox.core.meta.sqlite import SqliteMetaStore
from kvbox.core.meta.sqlite import txn as sqlite_txn
from kvbox.core.model import (
    AtomicOp,
    Bucket,
    ChunkRef,
    Condition,
    CondKind,
    DeleteOp,
    ObjectVersion,
    PurgeOp,
    PutOp,
    VersionIdGenerator,
    Versioning,
    WriteOp,
    WriteResult,
)

KEYS = ["a", "b", "a/b", "é", "z\U0001f600"]
BUCKETS = {"off": Versioning.OFF, "ver": Versioning.ENABLED, "sus": Versioning.ENABLED}
CHUNKS = [ChunkRef(hashlib.sha256(bytes([i])).hexdigest(), 10 + i) for i in range(6)]
ROUNDS = 40


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.ids = VersionIdGenerator()
        self.known: list[tuple[str, str, str, str]] = []  # bucket, key, version_id, etag

    def bucket(self) -> str:
        return "missing" if self.rnd.random() < 0.02 else self.rnd.choice(list(BUCKETS))

    def condition(self) -> Condition | None:
        r = self.rnd.random()
        if r < 0.6 or not self.known:
            return None
        if r < 0.75:
            return Condition(CondKind.IF_ABSENT)
        _, _, vid, etag = self.rnd.choice(self.known)
        if r < 0.9:
            return Condition(CondKind.IF_VERSION, vid)
        return Condition(CondKind.IF_ETAG, etag)

    def version(self, bucket: str, key: str) -> ObjectVersion:
        vid = self.ids.new()
        same_key = [k[2] for k in self.known if k[0] == bucket and k[1] == key]
        if same_key and self.rnd.random() < 0.05:  # a duplicate id: InvalidArgument
            vid = self.rnd.choice(same_key)
        data = self.rnd.randbytes(self.rnd.randrange(0, 8))
        chunks = tuple(self.rnd.choice(CHUNKS) for _ in range(self.rnd.choice([0, 0, 1, 2, 3])))
        return ObjectVersion(
            bucket=bucket,
            key=key,
            version_id=vid,
            size=sum(c.size for c in chunks) if chunks else len(data),
            etag=hashlib.md5(data).hexdigest()[: self.rnd.choice([1, 32])],
            mtime_ns=self.rnd.randrange(1 << 60),
            inline=None if chunks else data,
            chunks=chunks,
            attrs={"n": str(self.rnd.randrange(3))} if self.rnd.random() < 0.3 else {},
        )

    def simple(self) -> PutOp | DeleteOp:
        bucket, key = self.bucket(), self.rnd.choice(KEYS)
        if self.rnd.random() < 0.6:
            return PutOp(self.version(bucket, key), self.condition())
        vid: str | None = None
        r = self.rnd.random()
        if r < 0.3 and self.known:
            b, k, vid, _ = self.rnd.choice(self.known)
            if self.rnd.random() < 0.8:
                bucket, key = b, k
        elif r < 0.4:
            vid = "null"
        marker = ObjectVersion(bucket, key, self.ids.new(), mtime_ns=self.rnd.randrange(1 << 60))
        return DeleteOp(bucket, key, vid, marker, self.condition())

    def op(self) -> WriteOp:
        r = self.rnd.random()
        if r < 0.12:
            return AtomicOp(tuple(self.simple() for _ in range(self.rnd.randrange(1, 4))))
        if r < 0.17:
            return PurgeOp(self.bucket(), self.rnd.choice(KEYS))
        return self.simple()

    def call(self) -> list[WriteOp]:
        return [self.op() for _ in range(self.rnd.choice([1, 1, 1, 2, 3]))]

    def learn(self, results: list[WriteResult]) -> None:
        for r in results:
            for v in r.written:
                self.known.append((v.bucket, v.key, v.version_id, v.etag))


def _plain(v: ObjectVersion | None) -> object:
    """A version without its seq (stores may leave different gaps) and with attrs as a
    plain dict, so two stores' answers compare field by field."""
    if v is None:
        return None
    return dataclasses.replace(v, seq=0, attrs=dict(v.attrs))


def _plain_result(r: object, freed: bool = True) -> object:
    if not isinstance(r, WriteResult):
        return type(r).__name__
    return (
        r.ok,
        [_plain(v) for v in r.written],
        [_plain(v) for v in r.removed],
        _plain(r.current),
        r.freed_chunks if freed else (),
        r.not_found,
    )


async def _state(store: MetaStore) -> object:
    out: dict[str, object] = {"refs": await store.chunk_refs()}
    for b in BUCKETS:
        versions = {k: await store.list_versions(b, k) for k in KEYS}
        for vs in versions.values():
            assert [v.seq for v in vs] == sorted((v.seq for v in vs), reverse=True)
        out[b] = (
            [_plain(v) for v in await store.list_objects(b)],
            {k: [_plain(v) for v in vs] for k, vs in versions.items()},
            await store.stats(b),
            [_plain(v) for v in await store.head_many(b, KEYS)],
        )
    return out


@pytest.mark.parametrize("seed", range(4))
async def test_sqlite_matches_memory(seed: int, tmp_path: Path) -> None:
    await _compare(seed, SqliteMetaStore(tmp_path / "meta.sqlite3"))


@pytest.mark.parametrize("seed", range(2))
async def test_postgres_matches_memory(seed: int, pg_meta_url: str) -> None:
    await _compare(seed, PostgresMetaStore(pg_meta_url), in_order=False)


@pytest.mark.parametrize("seed", range(4, 8))
async def test_sqlite_matches_memory_with_a_tiny_row_cache(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's cache of hot keys ages out every few keys: rows must come back
    from the old generation or the database exactly as they were."""
    monkeypatch.setattr(sqlite_txn, "ROW_CACHE_KEYS", 4)
    monkeypatch.setattr(sqlite_txn, "ROW_CACHE_BYTES", 64)
    await _compare(seed, SqliteMetaStore(tmp_path / "meta.sqlite3"))


async def _compare(seed: int, tested: MetaStore, in_order: bool = True) -> None:
    """``tested`` (SQLite or PostgreSQL) against memory; ``in_order``: ``tested`` commits
    a round's calls in the order they were made (else only those on one key, and freed
    chunks are checked per round: module docstring)."""
    memory = MemoryMetaStore()
    gen = _Gen(seed)
    await tested.open()
    try:
        for store in (tested, memory):
            for name, state in BUCKETS.items():
                await store.create_bucket(Bucket(name))
                await store.set_versioning(name, state)
        for round_no in range(ROUNDS):
            if round_no == ROUNDS // 2:
                for store in (tested, memory):
                    await store.set_versioning("sus", Versioning.SUSPENDED)
            calls = [gen.call() for _ in range(gen.rnd.randrange(1, 25))]
            refs_before = await tested.chunk_refs()
            got = await asyncio.gather(*(tested.commit(c) for c in calls), return_exceptions=True)
            want: list[object] = []
            for c in calls:
                try:
                    want.append(await memory.commit(c))
                except Exception as exc:
                    want.append(exc)
            for g, w, c in zip(got, want, calls, strict=True):
                if isinstance(w, list):
                    assert isinstance(g, list), (c, g)
                    assert [_plain_result(r, in_order) for r in g] == [
                        _plain_result(r, in_order) for r in w
                    ], c
                    gen.learn(w)
                else:
                    assert type(g) is type(w), (c, g, w)
            if not in_order:
                results = [r for g in got if isinstance(g, list) for r in g]
                reported = {c for r in results for c in r.freed_chunks}
                unreferenced = set(refs_before) - set(await tested.chunk_refs())
                assert unreferenced <= reported, f"round {round_no}: never reported freed"
            assert await _state(tested) == await _state(memory), f"round {round_no}"
    finally:
        await tested.close()
