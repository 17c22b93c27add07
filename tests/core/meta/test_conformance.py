"""One conformance suite for every MetaStore implementation.

Layer: tests/core/meta. Rules: each test runs against every store through the ``store``
fixture; the semantics asserted here are the contract written in
``kvbox.core.meta.MetaStore`` and ``kvbox.core.model``, never a quirk of one store.
Store-specific tests (durability across reopen) skip on stores that do not have the
property, with the reason in the skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from kvbox.core.meta import MetaStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.meta.postgres import PostgresMetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.meta.users import (
    NoSuchAccessKey,
    NoSuchUser,
    User,
    UserExists,
    UserOwnsBuckets,
)
from kvbox.core.model import (
    AtomicOp,
    Bucket,
    BucketStats,
    ChunkRef,
    Condition,
    CondKind,
    DeleteOp,
    MultipartUpload,
    ObjectVersion,
    Part,
    PurgeOp,
    PutOp,
    VersionIdGenerator,
    Versioning,
    WriteOp,
    WriteResult,
)
from kvbox.errors import (
    BucketNotEmpty,
    InvalidArgument,
    InvalidPart,
    NoSuchBucket,
    NoSuchUpload,
)

IDS = VersionIdGenerator()
KINDS = ["sqlite", "memory", "postgres"]


class Factory:
    """Opens stores of one kind; ``reopen`` gives a fresh instance over the same data."""

    def __init__(self, kind: str, tmp_path: Path, pg_url: str = "") -> None:
        self.kind = kind
        self.path = tmp_path / META_FILE
        self.pg_url = pg_url
        self.opened: list[MetaStore] = []

    async def open(self) -> MetaStore:
        store: MetaStore
        if self.kind == "sqlite":
            store = SqliteMetaStore(self.path)
        elif self.kind == "postgres":
            store = PostgresMetaStore(self.pg_url)
        else:
            store = MemoryMetaStore()
        await store.open()
        self.opened.append(store)
        return store

    async def reopen(self, store: MetaStore) -> MetaStore:
        if self.kind == "memory":
            pytest.skip("the memory store is not durable by design")
        await store.close()
        return await self.open()

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=KINDS)
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    # PostgreSQL: a fresh database of the session's server, already at the schema.
    pg_url = request.getfixturevalue("pg_meta_url") if request.param == "postgres" else ""
    f = Factory(request.param, tmp_path, pg_url)
    yield f
    await f.close_all()


@pytest.fixture
async def store(factory: Factory) -> MetaStore:
    return await factory.open()


# --- helpers ------------------------------------------------------------------------------


def ver(
    bucket: str,
    key: str,
    data: bytes = b"value",
    *,
    chunks: Sequence[ChunkRef] = (),
    vid: str | None = None,
) -> ObjectVersion:
    size = sum(c.size for c in chunks) if chunks else len(data)
    return ObjectVersion(
        bucket=bucket,
        key=key,
        version_id=vid or IDS.new(),
        size=size,
        etag=hashlib.md5(data).hexdigest(),
        mtime_ns=1_700_000_000_000_000_000,
        inline=None if chunks else data,
        chunks=tuple(chunks),
        attrs={"x-amz-meta-color": "blue"},
    )


def chunk(tag: str, size: int = 10) -> ChunkRef:
    return ChunkRef(hashlib.sha256(tag.encode()).hexdigest(), size)


async def put(
    store: MetaStore,
    bucket: str,
    key: str,
    data: bytes = b"value",
    *,
    cond: Condition | None = None,
    chunks: Sequence[ChunkRef] = (),
) -> WriteResult:
    [r] = await store.commit([PutOp(ver(bucket, key, data, chunks=chunks), cond)])
    return r


async def delete(
    store: MetaStore, bucket: str, key: str, version_id: str | None = None, **kw: object
) -> WriteResult:
    [r] = await store.commit([DeleteOp(bucket, key, version_id, **kw)])  # type: ignore[arg-type]
    return r


async def bucket(store: MetaStore, name: str = "b", state: Versioning = Versioning.OFF) -> str:
    assert await store.create_bucket(Bucket(name, created_ns=123))
    if state is not Versioning.OFF:
        await store.set_versioning(name, state)
    return name


async def keys_of(store: MetaStore, b: str, **kw: object) -> list[str]:
    return [v.key for v in await store.list_objects(b, **kw)]  # type: ignore[arg-type]


# --- buckets ------------------------------------------------------------------------------


async def test_bucket_crud(store: MetaStore) -> None:
    assert await store.create_bucket(Bucket("zeta", owner="alice", attrs={"policy": "{}"}))
    assert await store.create_bucket(Bucket("alpha", created_ns=42))
    assert not await store.create_bucket(Bucket("alpha", owner="mallory"))
    got = await store.get_bucket("zeta")
    assert got is not None
    assert (got.owner, got.versioning, dict(got.attrs)) == (
        "alice",
        Versioning.OFF,
        {"policy": "{}"},
    )
    alpha = await store.get_bucket("alpha")
    assert alpha is not None and alpha.owner == "root" and alpha.created_ns == 42
    assert [b.name for b in await store.list_buckets()] == ["alpha", "zeta"]
    assert await store.get_bucket("nope") is None
    assert await store.delete_bucket("alpha") == ()
    assert await store.delete_bucket("alpha") is None
    assert [b.name for b in await store.list_buckets()] == ["zeta"]


async def test_versioning_transitions(store: MetaStore) -> None:
    b = await bucket(store)
    await store.set_versioning(b, Versioning.OFF)  # OFF -> OFF is a no-op
    await store.set_versioning(b, Versioning.ENABLED)
    await store.set_versioning(b, Versioning.SUSPENDED)
    got = await store.get_bucket(b)
    assert got is not None and got.versioning is Versioning.SUSPENDED
    with pytest.raises(InvalidArgument):
        await store.set_versioning(b, Versioning.OFF)
    with pytest.raises(NoSuchBucket):
        await store.set_versioning("missing", Versioning.ENABLED)


async def test_delete_bucket_refuses_while_any_version_exists(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    await put(store, b, "k")
    await delete(store, b, "k")  # only a marker is newest now
    with pytest.raises(BucketNotEmpty):
        await store.delete_bucket(b)
    await store.commit([PurgeOp(b, "k")])
    assert await store.delete_bucket(b) == ()
    assert await store.get_bucket(b) is None


async def test_recreated_bucket_starts_with_zero_counters(store: MetaStore) -> None:
    b = await bucket(store)
    await put(store, b, "k", b"12345")
    await store.commit([PurgeOp(b, "k")])
    assert await store.delete_bucket(b) == ()
    await bucket(store)
    assert await store.stats(b) == BucketStats(0, 0)
    assert await store.head(b, "k") is None


async def test_commit_on_missing_bucket_raises_but_applies_the_rest(store: MetaStore) -> None:
    b = await bucket(store)
    ok = ver(b, "k")
    with pytest.raises(NoSuchBucket):
        await store.commit([PutOp(ver("missing", "k")), PutOp(ok)])
    head = await store.head(b, "k")
    assert head is not None and head.version_id == ok.version_id
    with pytest.raises(NoSuchBucket):
        await store.commit([DeleteOp("missing", "k")])
    with pytest.raises(NoSuchBucket):
        await store.commit([PurgeOp("missing", "k")])
    with pytest.raises(NoSuchBucket):
        await store.stats("missing")


async def test_reads_of_a_missing_bucket_are_empty(store: MetaStore) -> None:
    assert await store.head("missing", "k") is None
    assert await store.head_many("missing", ["a", "b"]) == [None, None]
    assert await store.get_version("missing", "k", "null") is None
    assert await store.list_versions("missing", "k") == []
    assert await store.list_objects("missing") == []


# --- versioning states --------------------------------------------------------------------


async def test_unversioned_put_replaces_the_null_version(store: MetaStore) -> None:
    b = await bucket(store)
    first = await put(store, b, "k", b"one")
    assert first.ok and first.removed == ()
    [v1] = first.written
    assert v1.is_null and v1.s3_version_id == "null" and v1.seq > 0
    second = await put(store, b, "k", b"two")
    [v2] = second.written
    assert second.removed == (v1,)
    assert v2.seq > v1.seq and v2.version_id != v1.version_id
    assert await store.list_versions(b, "k") == [v2]
    assert await store.head(b, "k") == v2
    assert await store.get_version(b, "k", "null") == v2
    assert await store.get_version(b, "k", v2.version_id) == v2
    assert await store.get_version(b, "k", v1.version_id) is None


async def test_store_decides_is_null_from_the_bucket_state(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    wrong = ObjectVersion(b, "k", IDS.new(), is_null=True, inline=b"x", size=1)
    [r] = await store.commit([PutOp(wrong)])
    assert not r.written[0].is_null
    await store.set_versioning(b, Versioning.SUSPENDED)
    [r] = await store.commit([PutOp(ver(b, "k"))])  # caller left is_null false
    assert r.written[0].is_null


async def test_enabled_put_appends_versions_newest_first(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    written = [(await put(store, b, "k", bytes([i]))).written[0] for i in range(5)]
    assert all(not v.is_null for v in written)
    assert [v.seq for v in written] == sorted(v.seq for v in written)
    listed = await store.list_versions(b, "k")
    assert listed == list(reversed(written))
    assert await store.list_versions(b, "k", limit=2) == listed[:2]
    assert await store.list_versions(b, "k", limit=0) == []
    assert await store.head(b, "k") == written[-1]
    for v in written:
        assert await store.get_version(b, "k", v.version_id) == v
    assert await store.get_version(b, "k", "null") is None
    assert await store.get_version(b, "other", written[0].version_id) is None


async def test_versions_keep_every_field(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    v = ObjectVersion(
        bucket=b,
        key="dir/file.txt",
        version_id=IDS.new(),
        size=30,
        etag="abc-2",
        mtime_ns=1_234_567_890_123_456_789,
        chunks=(chunk("a", 10), chunk("b", 20)),
        content_type="text/plain",
        attrs={"x-amz-meta-a": "1", "cache-control": "no-cache"},
    )
    [r] = await store.commit([PutOp(v)])
    stored = r.written[0]
    assert stored.seq > 0
    for got in (await store.head(b, v.key), await store.get_version(b, v.key, v.version_id)):
        assert got == stored
        assert got is not None and dict(got.attrs) == dict(v.attrs)
        assert got.chunks == v.chunks and got.inline is None
    empty = ObjectVersion(
        b, "empty", IDS.new(), inline=b"", etag="d41d8cd98f00b204e9800998ecf8427e"
    )
    [r] = await store.commit([PutOp(empty)])
    got = await store.head(b, "empty")
    assert got is not None and got.inline == b"" and got.size == 0 and got.attrs == {}


async def test_suspended_put_replaces_only_the_null_version(store: MetaStore) -> None:
    b = await bucket(store)
    [null_v] = (await put(store, b, "k", b"from-off")).written
    await store.set_versioning(b, Versioning.ENABLED)
    [e1] = (await put(store, b, "k", b"e1")).written
    [e2] = (await put(store, b, "k", b"e2")).written
    await store.set_versioning(b, Versioning.SUSPENDED)
    r = await put(store, b, "k", b"s1")
    [s1] = r.written
    assert s1.is_null and r.removed == (null_v,)
    r = await put(store, b, "k", b"s2")
    [s2] = r.written
    assert r.removed == (s1,)
    assert await store.list_versions(b, "k") == [s2, e2, e1]
    assert await store.get_version(b, "k", "null") == s2


async def test_suspended_put_when_null_is_not_newest(store: MetaStore) -> None:
    b = await bucket(store)
    [null_v] = (await put(store, b, "k", b"n")).written
    await store.set_versioning(b, Versioning.ENABLED)
    [e1] = (await put(store, b, "k", b"e1")).written
    await store.set_versioning(b, Versioning.SUSPENDED)
    r = await put(store, b, "k", b"s")
    assert r.removed == (null_v,)
    assert await store.list_versions(b, "k") == [r.written[0], e1]
    assert await store.stats(b) == BucketStats(1, 1)


# --- deletes ------------------------------------------------------------------------------


async def test_unversioned_delete_removes_the_key(store: MetaStore) -> None:
    b = await bucket(store)
    [v] = (await put(store, b, "k", b"abc")).written
    r = await delete(store, b, "k")
    assert r.ok and r.removed == (v,) and r.written == () and not r.not_found
    assert await store.head(b, "k") is None
    assert await store.list_versions(b, "k") == []
    again = await delete(store, b, "k")
    assert again.ok and again.not_found and again.removed == ()
    assert await store.stats(b) == BucketStats(0, 0)


async def test_enabled_delete_writes_a_marker(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [v] = (await put(store, b, "k", b"abc")).written
    marker_in = ObjectVersion(b, "k", IDS.new(), mtime_ns=99, inline=b"ignored", size=7)
    r = await delete(store, b, "k", marker=marker_in)
    [m] = r.written
    assert r.removed == ()
    assert m.is_delete_marker and not m.is_null and m.seq > v.seq
    assert (m.version_id, m.mtime_ns, m.size, m.inline) == (marker_in.version_id, 99, 0, None)
    assert await store.head(b, "k") == m
    assert await store.list_objects(b) == []
    assert await store.get_version(b, "k", v.version_id) == v
    # A second delete stacks another marker, as S3 does.
    [m2] = (await delete(store, b, "k")).written
    assert m2.is_delete_marker and m2.version_id != m.version_id
    assert await store.list_versions(b, "k") == [m2, m, v]


async def test_suspended_delete_writes_a_null_marker(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [e1] = (await put(store, b, "k", b"e1")).written
    await store.set_versioning(b, Versioning.SUSPENDED)
    [s] = (await put(store, b, "k", b"s")).written
    r = await delete(store, b, "k")
    [m] = r.written
    assert m.is_delete_marker and m.is_null and r.removed == (s,)
    assert await store.list_versions(b, "k") == [m, e1]
    assert await store.get_version(b, "k", "null") == m
    assert await store.stats(b) == BucketStats(0, 0)


async def test_a_null_marker_over_a_null_newest_leaves_the_listing(store: MetaStore) -> None:
    """The null version is the newest and a delete replaces it in place by a null marker:
    the key's one row turns from live into a marker, so listings drop it; a later put
    brings it back (the differential test found a store that kept listing it)."""
    b = await bucket(store, state=Versioning.ENABLED)
    await store.set_versioning(b, Versioning.SUSPENDED)
    [s] = (await put(store, b, "k", b"s")).written
    assert await store.list_objects(b) == [s]
    [m] = (await delete(store, b, "k")).written
    assert m.is_null and await store.head(b, "k") == m
    assert await store.list_objects(b) == []
    assert await store.list_bucket_versions(b) == [m]
    [again] = (await put(store, b, "k", b"again")).written
    assert await store.list_objects(b) == [again]
    assert await store.stats(b) == BucketStats(1, 5)


async def test_delete_by_version_id(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [v1] = (await put(store, b, "k", b"1")).written
    [v2] = (await put(store, b, "k", b"22")).written
    [v3] = (await put(store, b, "k", b"333")).written
    r = await delete(store, b, "k", v2.version_id)
    assert r.ok and r.removed == (v2,) and r.written == ()
    assert await store.list_versions(b, "k") == [v3, v1]
    r = await delete(store, b, "k", v3.version_id)  # the newest: v1 becomes current again
    assert await store.head(b, "k") == v1
    assert await store.list_objects(b) == [v1]
    assert await store.stats(b) == BucketStats(1, 1)
    missing = await delete(store, b, "k", v3.version_id)
    assert missing.ok and missing.not_found
    assert (await delete(store, b, "nokey", "whatever")).not_found


async def test_removing_a_delete_marker_restores_the_object(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [v] = (await put(store, b, "k", b"data")).written
    [m] = (await delete(store, b, "k")).written
    assert await store.stats(b) == BucketStats(0, 0)
    await delete(store, b, "k", m.version_id)
    assert await store.head(b, "k") == v
    assert await store.list_objects(b) == [v]
    assert await store.stats(b) == BucketStats(1, 4)


async def test_delete_null_version_by_literal_null(store: MetaStore) -> None:
    b = await bucket(store)
    [n] = (await put(store, b, "k", b"n")).written
    await store.set_versioning(b, Versioning.ENABLED)
    [e] = (await put(store, b, "k", b"e")).written
    r = await delete(store, b, "k", "null")
    assert r.removed == (n,)
    assert await store.list_versions(b, "k") == [e]
    assert (await delete(store, b, "k", "null")).not_found


async def test_purge_removes_every_version(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    a, c = chunk("a"), chunk("c")
    [v1] = (await put(store, b, "k", chunks=[a])).written
    [v2] = (await put(store, b, "k", chunks=[a, c])).written
    [m] = (await delete(store, b, "k")).written
    await put(store, b, "other", b"x")
    [r] = await store.commit([PurgeOp(b, "k")])
    assert r.ok and sorted(r.removed, key=lambda v: v.seq) == [v1, v2, m]
    assert sorted(r.freed_chunks) == sorted([a.chunk_id, c.chunk_id])
    assert await store.list_versions(b, "k") == []
    assert await store.stats(b) == BucketStats(1, 1)
    assert await store.chunk_refs() == {}
    [again] = await store.commit([PurgeOp(b, "k")])
    assert again.ok and again.not_found


# --- conditions ---------------------------------------------------------------------------


async def test_if_absent(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    absent = Condition(CondKind.IF_ABSENT)
    first = await put(store, b, "k", b"1", cond=absent)
    assert first.ok
    lost = await put(store, b, "k", b"2", cond=absent)
    assert not lost.ok and lost.written == () and lost.current == first.written[0]
    [m] = (await delete(store, b, "k")).written
    # A delete marker counts as absent.
    again = await put(store, b, "k", b"3", cond=absent)
    assert again.ok
    assert await store.list_versions(b, "k") == [again.written[0], m, first.written[0]]


async def test_if_version(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [v1] = (await put(store, b, "k", b"1")).written
    ok = await put(store, b, "k", b"2", cond=Condition(CondKind.IF_VERSION, v1.version_id))
    assert ok.ok
    stale = await put(store, b, "k", b"3", cond=Condition(CondKind.IF_VERSION, v1.version_id))
    assert not stale.ok and stale.current == ok.written[0]
    [m] = (await delete(store, b, "k")).written
    # A marker is not a live version: neither its id nor the hidden version's id match.
    for vid in (m.version_id, ok.written[0].version_id):
        lost = await put(store, b, "k", b"4", cond=Condition(CondKind.IF_VERSION, vid))
        assert not lost.ok and lost.current == m
    none = await put(store, b, "nokey", b"x", cond=Condition(CondKind.IF_VERSION, v1.version_id))
    assert not none.ok and none.current is None


async def test_if_etag(store: MetaStore) -> None:
    b = await bucket(store)
    [v] = (await put(store, b, "k", b"hello")).written
    good = await put(store, b, "k", b"world", cond=Condition(CondKind.IF_ETAG, v.etag))
    assert good.ok
    bad = await put(store, b, "k", b"again", cond=Condition(CondKind.IF_ETAG, v.etag))
    assert not bad.ok and bad.current == good.written[0]
    assert (await store.head(b, "k")) == good.written[0]


async def test_conditional_delete(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [v1] = (await put(store, b, "k", b"1")).written
    [v2] = (await put(store, b, "k", b"2")).written
    lost = await delete(store, b, "k", condition=Condition(CondKind.IF_VERSION, v1.version_id))
    assert not lost.ok and lost.current == v2
    assert await store.head(b, "k") == v2
    won = await delete(store, b, "k", condition=Condition(CondKind.IF_VERSION, v2.version_id))
    assert won.ok and won.written[0].is_delete_marker


async def test_a_noncurrent_version_is_removed_only_while_noncurrent(store: MetaStore) -> None:
    """Lifecycle's noncurrent expiry: if the newer versions went away since its listing,
    the version is current again and must stay."""
    b = await bucket(store, state=Versioning.ENABLED)
    [v1] = (await put(store, b, "k", b"1")).written
    [v2] = (await put(store, b, "k", b"2")).written
    [v3] = (await put(store, b, "k", b"3")).written
    not_newest = Condition(CondKind.IF_NOT_NEWEST, v2.version_id)
    gone = await delete(store, b, "k", v2.version_id, condition=not_newest)
    assert gone.ok and gone.removed == (v2,)
    assert (await delete(store, b, "k", v3.version_id)).ok  # v1 is current again
    kept = await delete(
        store, b, "k", v1.version_id, condition=Condition(CondKind.IF_NOT_NEWEST, v1.version_id)
    )
    assert not kept.ok and kept.current == v1
    assert await store.head(b, "k") == v1


# --- atomic ops ---------------------------------------------------------------------------


async def test_atomic_applies_all(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [old] = (await put(store, b, "c", b"old")).written
    a1, a2 = ver(b, "a", b"1"), ver(b, "b", b"2")
    # The second put's condition depends on the first put of the same op.
    a3 = ver(b, "a", b"3")
    [r] = await store.commit(
        [
            AtomicOp(
                (
                    PutOp(a1, Condition(CondKind.IF_ABSENT)),
                    PutOp(a2),
                    PutOp(a3, Condition(CondKind.IF_VERSION, a1.version_id)),
                    DeleteOp(b, "c", old.version_id),
                )
            )
        ]
    )
    assert r.ok
    assert [v.version_id for v in r.written] == [a1.version_id, a2.version_id, a3.version_id]
    assert [v.seq for v in r.written] == sorted(v.seq for v in r.written)
    assert r.removed == (old,)
    assert await keys_of(store, b) == ["a", "b"]
    assert await store.stats(b) == BucketStats(2, 2)


async def test_atomic_is_all_or_nothing(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    shared = chunk("shared")
    [keep] = (await put(store, b, "keep", b"k", chunks=[shared])).written
    [x] = (await put(store, b, "x", b"x")).written
    before = (await store.stats(b), await store.chunk_refs(), await store.list_versions(b, "x"))
    [r] = await store.commit(
        [
            AtomicOp(
                (
                    PutOp(ver(b, "new", chunks=[chunk("n"), shared])),
                    DeleteOp(b, "keep", keep.version_id),
                    DeleteOp(b, "x"),
                    # Fails: the marker written just before hides x.
                    PutOp(ver(b, "x", b"y"), Condition(CondKind.IF_VERSION, x.version_id)),
                )
            )
        ]
    )
    assert not r.ok and r.written == () and r.freed_chunks == ()
    assert r.current is not None and r.current.is_delete_marker  # seen inside the op
    assert await store.head(b, "new") is None
    assert await store.head(b, "keep") == keep
    assert await store.list_versions(b, "x") == [x]
    after = (await store.stats(b), await store.chunk_refs(), await store.list_versions(b, "x"))
    assert after == before


async def test_atomic_with_missing_bucket_applies_nothing(store: MetaStore) -> None:
    b = await bucket(store)
    with pytest.raises(NoSuchBucket):
        await store.commit([AtomicOp((PutOp(ver(b, "k")), PutOp(ver("missing", "k"))))])
    assert await store.head(b, "k") is None
    assert await store.stats(b) == BucketStats(0, 0)


async def test_duplicate_version_id_is_refused(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    v = ver(b, "k")
    await store.commit([PutOp(v)])
    other = ver(b, "other")
    with pytest.raises(InvalidArgument):
        await store.commit([PutOp(v), PutOp(other)])
    assert await store.list_versions(b, "k") == [await store.head(b, "k")]
    assert await store.head(b, "other") is not None  # the rest of the call was applied
    with pytest.raises(InvalidArgument):
        await store.commit([AtomicOp((PutOp(ver(b, "z")), PutOp(v)))])
    assert await store.head(b, "z") is None


async def test_bad_chunk_id_is_refused(store: MetaStore) -> None:
    b = await bucket(store)
    bad = ver(b, "k", chunks=[ChunkRef("XYZ", 1)])
    with pytest.raises(InvalidArgument):
        await store.commit([PutOp(bad)])
    assert await store.head(b, "k") is None


# --- listing ------------------------------------------------------------------------------


async def test_list_objects_byte_order_prefix_start_after_limit(store: MetaStore) -> None:
    b = await bucket(store)
    keys = [
        "a",
        "ab",
        "a/b",
        "b",
        "z",
        "\x7f",
        "é",
        "ê",
        "中",
        "中文",
        "😀",
        "Z",
        "a\u00ff",
        "ab\U0010ffff",
    ]
    for k in keys:
        await put(store, b, k, k.encode())
    by_bytes = sorted(keys, key=lambda k: k.encode())
    assert await keys_of(store, b) == by_bytes
    assert await keys_of(store, b, limit=3) == by_bytes[:3]
    assert await keys_of(store, b, limit=0) == []
    assert await keys_of(store, b, start_after="b") == [k for k in by_bytes if k.encode() > b"b"]
    assert await keys_of(store, b, prefix="a") == ["a", "a/b", "ab", "ab\U0010ffff", "a\u00ff"]
    assert await keys_of(store, b, prefix="ab") == ["ab", "ab\U0010ffff"]
    assert await keys_of(store, b, prefix="ab\U0010ffff") == ["ab\U0010ffff"]
    assert await keys_of(store, b, prefix="中") == ["中", "中文"]
    assert await keys_of(store, b, prefix="a", start_after="a/b") == [
        "ab",
        "ab\U0010ffff",
        "a\u00ff",
    ]
    assert await keys_of(store, b, prefix="a", start_after="0") == await keys_of(
        store, b, prefix="a"
    )
    assert await keys_of(store, b, prefix="a", start_after="b") == []
    assert await keys_of(store, b, prefix="nothing") == []
    listed = await store.list_objects(b, prefix="é")
    assert [v.inline for v in listed] == ["é".encode()]


async def test_list_objects_pages_through_everything(store: MetaStore) -> None:
    b = await bucket(store)
    keys = sorted(f"k{i:04d}" for i in range(250))
    await store.commit([PutOp(ver(b, k)) for k in keys])
    seen: list[str] = []
    after = ""
    while True:
        page = await keys_of(store, b, start_after=after, limit=40)
        if not page:
            break
        seen.extend(page)
        after = page[-1]
    assert seen == keys


async def test_list_objects_hides_markers_and_shows_newest(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    await put(store, b, "a", b"1")
    [a2] = (await put(store, b, "a", b"2")).written
    await put(store, b, "b", b"1")
    await delete(store, b, "b")
    [c] = (await put(store, b, "c", b"c")).written
    assert await store.list_objects(b) == [a2, c]


async def test_head_many(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [x] = (await put(store, b, "x")).written
    [y_old] = (await put(store, b, "y", b"old")).written
    [y] = (await put(store, b, "y", b"new")).written
    [m] = (await delete(store, b, "z")).written
    got = await store.head_many(b, ["x", "nope", "y", "z", "x", "é"])
    assert got == [x, None, y, m, x, None]
    assert y_old not in got
    assert await store.head_many(b, []) == []
    many = [f"m{i}" for i in range(1200)]
    await store.commit([PutOp(ver(b, k)) for k in many[::2]])
    got = await store.head_many(b, many)
    assert [v is not None for v in got] == [i % 2 == 0 for i in range(1200)]
    assert all(v.key == k for v, k in zip(got, many, strict=True) if v is not None)


# --- counters and chunk references ---------------------------------------------------------


async def test_stats_follow_every_kind_of_write(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    assert await store.stats(b) == BucketStats(0, 0)
    await put(store, b, "a", b"12345")
    await put(store, b, "b", b"123")
    assert await store.stats(b) == BucketStats(2, 8)
    await put(store, b, "a", b"1")  # overwrite: newest counts
    assert await store.stats(b) == BucketStats(2, 4)
    [m] = (await delete(store, b, "b")).written
    assert await store.stats(b) == BucketStats(1, 1)
    await delete(store, b, "b")  # marker on marker changes nothing
    assert await store.stats(b) == BucketStats(1, 1)
    await put(store, b, "b", b"xy")
    assert await store.stats(b) == BucketStats(2, 3)
    await store.set_versioning(b, Versioning.SUSPENDED)
    await put(store, b, "c", b"abcd")
    await put(store, b, "c", b"ab")
    assert await store.stats(b) == BucketStats(3, 5)
    await store.commit([PurgeOp(b, "a")])
    assert await store.stats(b) == BucketStats(2, 4)
    await delete(store, b, "c")
    assert await store.stats(b) == BucketStats(1, 2)
    other = await bucket(store, "other")
    await put(store, other, "k", b"123456789")
    assert await store.stats(b) == BucketStats(1, 2)
    assert await store.stats(other) == BucketStats(1, 9)
    assert m.is_delete_marker
    # What fsck and the scrubber compare: the counters against the rows counted.
    assert await store.recount(b) == (BucketStats(1, 2), BucketStats(1, 2))
    await store.correct_counts(b, 2, -1)
    assert await store.recount(b) == (BucketStats(3, 1), BucketStats(1, 2))
    await store.correct_counts(b, -2, 1)
    assert await store.stats(b) == BucketStats(1, 2)
    with pytest.raises(NoSuchBucket):
        await store.recount("nope")
    assert await store.check_storage() == []


async def test_chunk_refcounts_and_freed_chunks(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    a, s, c = chunk("a"), chunk("shared"), chunk("c")
    [v1] = (await put(store, b, "k", chunks=[a, s])).written
    [v2] = (await put(store, b, "k", chunks=[s, c, c])).written  # c twice: two references
    other = await bucket(store, "other")
    [v3] = (await put(store, other, "k2", chunks=[s])).written
    assert await store.chunk_refs() == {a.chunk_id: 1, s.chunk_id: 3, c.chunk_id: 2}
    assert await store.chunk_ref_counts([a.chunk_id, chunk("zz").chunk_id]) == {a.chunk_id: 1}
    r = await delete(store, b, "k", v1.version_id)
    assert r.freed_chunks == (a.chunk_id,)
    r = await delete(store, b, "k")  # a marker frees nothing
    assert r.freed_chunks == ()
    r = await delete(store, b, "k", v2.version_id)
    assert r.freed_chunks == (c.chunk_id,)  # s is still used by v3
    assert await store.chunk_refs() == {s.chunk_id: 1}
    r = await delete(store, other, "k2", v3.version_id)
    assert r.freed_chunks == (s.chunk_id,)
    assert await store.chunk_refs() == {}


async def test_null_replacement_frees_the_old_chunks(store: MetaStore) -> None:
    b = await bucket(store)
    a, s = chunk("a"), chunk("s")
    await put(store, b, "k", chunks=[a, s])
    r = await put(store, b, "k", chunks=[s])
    assert r.freed_chunks == (a.chunk_id,)
    r = await delete(store, b, "k")
    assert r.freed_chunks == (s.chunk_id,)


async def test_freed_chunk_referenced_again_in_the_same_call_is_not_freed(
    store: MetaStore,
) -> None:
    b = await bucket(store)
    a = chunk("a")
    await put(store, b, "k", chunks=[a])
    results = await store.commit([DeleteOp(b, "k"), PutOp(ver(b, "k2", chunks=[a]))])
    assert [r.freed_chunks for r in results] == [(), ()]
    assert await store.chunk_refs() == {a.chunk_id: 1}


async def test_drop_versions_with_chunks(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    bad, good = chunk("bad"), chunk("good")
    [v1] = (await put(store, b, "k", chunks=[good])).written
    [v2] = (await put(store, b, "k", chunks=[bad, good])).written
    [w] = (await put(store, b, "w", chunks=[bad])).written
    [z] = (await put(store, b, "z", b"inline")).written
    removed = await store.drop_versions_with_chunks([bad.chunk_id])
    assert sorted(v.version_id for v in removed) == sorted([v2.version_id, w.version_id])
    assert await store.head(b, "k") == v1
    assert await store.head(b, "w") is None
    assert await store.list_objects(b) == [v1, z]
    assert await store.stats(b) == BucketStats(2, v1.size + z.size)
    assert await store.chunk_refs() == {good.chunk_id: 1}
    assert await store.drop_versions_with_chunks([bad.chunk_id]) == []


# --- ordering, concurrency, durability -------------------------------------------------------


async def test_seq_increases_in_commit_order(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    results = await store.commit([PutOp(ver(b, f"k{i % 3}")) for i in range(10)])
    seqs = [r.written[0].seq for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    later = await put(store, b, "k0")
    assert later.written[0].seq > seqs[-1]


async def test_concurrent_commits_are_all_applied(store: MetaStore) -> None:
    b = await bucket(store)
    hot = await bucket(store, "hot", Versioning.ENABLED)
    n = 2000

    async def one(i: int) -> tuple[WriteResult, WriteResult]:
        [r1] = await store.commit([PutOp(ver(b, f"key-{i:05d}", str(i).encode()))])
        [r2] = await store.commit([PutOp(ver(hot, "same", str(i).encode()))])
        return r1, r2

    pairs = await asyncio.gather(*(one(i) for i in range(n)))
    seqs = [r.written[0].seq for pair in pairs for r in pair]
    assert len(set(seqs)) == 2 * n
    # Within one task, the second commit started after the first returned.
    assert all(r1.written[0].seq < r2.written[0].seq for r1, r2 in pairs)
    assert await store.stats(b) == BucketStats(n, sum(len(str(i)) for i in range(n)))
    listed = await store.list_objects(b, limit=n + 1)
    assert [v.key for v in listed] == [f"key-{i:05d}" for i in range(n)]
    assert {v.seq for v in listed} == {r1.written[0].seq for r1, _ in pairs}
    versions = await store.list_versions(hot, "same", limit=n + 1)
    assert len(versions) == n
    assert [v.seq for v in versions] == sorted((r2.written[0].seq for _, r2 in pairs), reverse=True)
    assert await store.head(hot, "same") == versions[0]


async def test_concurrent_overwrites_of_one_null_version(store: MetaStore) -> None:
    b = await bucket(store)
    results = await asyncio.gather(*(put(store, b, "k", str(i).encode()) for i in range(500)))
    newest = max((r.written[0] for r in results), key=lambda v: v.seq)
    assert await store.list_versions(b, "k") == [newest]
    assert await store.stats(b) == BucketStats(1, newest.size)
    removed = [v.version_id for r in results for v in r.removed]
    assert len(removed) == 499 and len(set(removed)) == 499


async def test_one_bad_commit_does_not_fail_its_neighbours(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    dup = ver(b, "dup")
    await store.commit([PutOp(dup)])

    async def good(i: int) -> WriteResult:
        return await put(store, b, f"g{i}")

    async def bad() -> None:
        await store.commit([PutOp(dup)])

    async def missing() -> None:
        await store.commit([PutOp(ver("missing", "k"))])

    tasks = [good(i) for i in range(50)] + [bad(), missing()] + [good(i) for i in range(50, 100)]
    out = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(out[50], InvalidArgument)
    assert isinstance(out[51], NoSuchBucket)
    oks = [r for r in out if isinstance(r, WriteResult)]
    assert len(oks) == 100 and all(r.ok for r in oks)
    assert (await store.stats(b)).objects == 101
    assert await store.list_versions(b, "dup") == [await store.head(b, "dup")]


async def test_durable_across_reopen(factory: Factory) -> None:
    store = await factory.open()
    b = await bucket(store, state=Versioning.ENABLED)
    s = chunk("s")
    [v1] = (await put(store, b, "k", b"one", chunks=[s])).written
    [m] = (await delete(store, b, "k")).written
    [v2] = (await put(store, b, "j", b"two")).written
    store = await factory.reopen(store)
    assert await store.list_versions(b, "k") == [m, v1]
    assert await store.head(b, "j") == v2
    assert await store.stats(b) == BucketStats(1, v2.size)
    assert await store.chunk_refs() == {s.chunk_id: 1}
    bk = await store.get_bucket(b)
    assert bk is not None and bk.versioning is Versioning.ENABLED
    [v3] = (await put(store, b, "k")).written
    assert v3.seq > m.seq  # seq never goes back, even after a restart


async def test_seq_is_never_reused_after_the_newest_is_removed(factory: Factory) -> None:
    store = await factory.open()
    b = await bucket(store, state=Versioning.ENABLED)
    [v] = (await put(store, b, "k")).written
    await delete(store, b, "k", v.version_id)
    store = await factory.reopen(store)
    [w] = (await put(store, b, "k")).written
    assert w.seq > v.seq


async def test_ops_in_one_call_apply_in_order(store: MetaStore) -> None:
    b = await bucket(store)
    ops: list[WriteOp] = [
        PutOp(ver(b, "k", b"1")),
        DeleteOp(b, "k"),
        PutOp(ver(b, "k", b"22")),
        PutOp(ver(b, "k", b"333"), Condition(CondKind.IF_ABSENT)),
    ]
    results = await store.commit(ops)
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[1].removed == results[0].written
    assert results[3].current == results[2].written[0]
    assert await store.stats(b) == BucketStats(1, 2)


# --- multipart uploads --------------------------------------------------------------------


def part(n: int, *tags: str) -> Part:
    chunks = tuple(chunk(t) for t in tags)
    return Part(n, f"etag{n}", sum(c.size for c in chunks), chunks, 5, {"crc": str(n)})


async def test_upload_lifecycle_moves_part_references_to_the_object(store: MetaStore) -> None:
    b = await bucket(store)
    up = MultipartUpload(b, "k", "u1", 42, "text/plain", {"x-amz-meta-a": "1"})
    await store.create_upload(up)
    assert await store.get_upload("u1") == up
    assert await store.put_part("u1", part(1, "a")) == ()
    assert await store.put_part("u1", part(2, "b")) == ()
    assert await store.put_part("u1", part(3, "c")) == ()
    assert [p.part_number for p in await store.list_parts("u1")] == [1, 2, 3]
    assert await store.list_parts("u1", marker=1, limit=1) == [part(2, "b")]
    v = ver(b, "k", chunks=[chunk("a"), chunk("b")])
    r = await store.complete_upload("u1", v, [(1, "etag1"), (2, "etag2")])
    assert r.ok and r.written[0].chunks == v.chunks
    # part 3 was left out: its chunk is freed; a and b moved without doubling
    assert r.freed_chunks == (chunk("c").chunk_id,)
    assert await store.chunk_refs() == {chunk("a").chunk_id: 1, chunk("b").chunk_id: 1}
    head = await store.head(b, "k")
    assert head is not None and head.version_id == v.version_id
    assert await store.get_upload("u1") is None
    with pytest.raises(NoSuchUpload):
        await store.list_parts("u1")


async def test_reuploaded_part_frees_the_replaced_chunks(store: MetaStore) -> None:
    b = await bucket(store)
    await store.create_upload(MultipartUpload(b, "k", "u1"))
    await store.put_part("u1", part(1, "a"))
    assert await store.put_part("u1", part(1, "a")) == ()  # same bytes stay referenced
    assert await store.put_part("u1", part(1, "z")) == (chunk("a").chunk_id,)
    assert await store.chunk_refs() == {chunk("z").chunk_id: 1}


async def test_complete_checks_parts_and_changes_nothing_on_failure(store: MetaStore) -> None:
    b = await bucket(store)
    await store.create_upload(MultipartUpload(b, "k", "u1"))
    await store.put_part("u1", part(1, "a"))
    v = ver(b, "k", chunks=[chunk("a")])
    with pytest.raises(InvalidPart):
        await store.complete_upload("u1", v, [(1, "wrong")])
    with pytest.raises(InvalidPart):
        await store.complete_upload("u1", v, [(2, "etag2")])
    assert await store.head(b, "k") is None
    assert len(await store.list_parts("u1")) == 1
    with pytest.raises(NoSuchUpload):
        await store.complete_upload("nope", v, [(1, "etag1")])


async def test_abort_frees_parts(store: MetaStore) -> None:
    b = await bucket(store)
    await store.create_upload(MultipartUpload(b, "k", "u1"))
    await store.put_part("u1", part(1, "a", "b"))
    await put(store, b, "other", chunks=[chunk("b")])
    assert await store.abort_upload("u1") == (chunk("a").chunk_id,)
    assert await store.chunk_refs() == {chunk("b").chunk_id: 1}
    with pytest.raises(NoSuchUpload):
        await store.abort_upload("u1")
    with pytest.raises(NoSuchUpload):
        await store.put_part("u1", part(1, "a"))


async def test_list_uploads_orders_and_pages(store: MetaStore) -> None:
    b = await bucket(store)
    with pytest.raises(NoSuchBucket):
        await store.create_upload(MultipartUpload("missing", "k", "u0"))
    for key, uid in [("b", "u2"), ("a", "u3"), ("a", "u1"), ("c/x", "u4")]:
        await store.create_upload(MultipartUpload(b, key, uid))

    async def ids(**kw: object) -> list[str]:
        return [u.upload_id for u in await store.list_uploads(b, **kw)]  # type: ignore[arg-type]

    assert await ids() == ["u1", "u3", "u2", "u4"]
    assert await ids(prefix="c/") == ["u4"]
    assert await ids(key_marker="a") == ["u2", "u4"]
    assert await ids(key_marker="a", upload_id_marker="u1") == ["u3", "u2", "u4"]
    assert await ids(limit=2) == ["u1", "u3"]
    assert await store.list_uploads("other") == []


async def test_uploads_survive_reopen(factory: Factory) -> None:
    store = await factory.open()
    b = await bucket(store)
    await store.create_upload(MultipartUpload(b, "k", "u1", 7, "text/plain"))
    await store.put_part("u1", part(1, "a"))
    store = await factory.reopen(store)
    assert await store.get_upload("u1") == MultipartUpload(b, "k", "u1", 7, "text/plain")
    assert await store.list_parts("u1") == [part(1, "a")]


async def test_deleting_a_bucket_drops_its_uploads_and_frees_their_parts(
    store: MetaStore,
) -> None:
    b = await bucket(store)
    other = await bucket(store, "other")
    await store.create_upload(MultipartUpload(b, "k", "u1"))
    await store.create_upload(MultipartUpload(b, "k", "u2"))
    await store.create_upload(MultipartUpload(other, "k", "u3"))
    await store.put_part("u1", part(1, "a", "shared"))
    await store.put_part("u2", part(1, "b"))
    await store.put_part("u3", part(1, "shared"))
    assert await store.delete_bucket(b) == tuple(sorted((chunk("a").chunk_id, chunk("b").chunk_id)))
    assert await store.get_bucket(b) is None
    for upload_id in ("u1", "u2"):
        assert await store.get_upload(upload_id) is None
        with pytest.raises(NoSuchUpload):
            await store.put_part(upload_id, part(2, "c"))
    # The other bucket's upload keeps its part, and the chunk both referenced.
    assert [u.upload_id for u in await store.list_uploads(other)] == ["u3"]
    assert await store.chunk_refs() == {chunk("shared").chunk_id: 1}


async def test_a_bucket_with_versions_keeps_its_uploads(store: MetaStore) -> None:
    b = await bucket(store)
    await put(store, b, "k")
    await store.create_upload(MultipartUpload(b, "k", "u1"))
    await store.put_part("u1", part(1, "a"))
    with pytest.raises(BucketNotEmpty):
        await store.delete_bucket(b)
    assert [p.part_number for p in await store.list_parts("u1")] == [1]
    assert chunk("a").chunk_id in await store.chunk_refs()


# --- users and access keys ----------------------------------------------------------------


async def test_users_create_list_get_disable(store: MetaStore) -> None:
    alice = await store.create_user("alice", 5)
    assert alice == User("alice", 5, False)
    await store.create_user("bob", 6)
    with pytest.raises(UserExists):
        await store.create_user("alice", 7)
    for bad in ("root", "ROOT", "", "a/b", "x" * 65):
        with pytest.raises(InvalidArgument):
            await store.create_user(bad, 1)
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]
    await store.set_user_disabled("alice", True)
    assert await store.get_user("alice") == User("alice", 5, True)
    assert await store.get_user("nobody") is None
    with pytest.raises(NoSuchUser):
        await store.set_user_disabled("nobody", True)


async def test_keys_lookup_only_when_key_and_user_enabled(store: MetaStore) -> None:
    await store.create_user("alice", 1)
    key = await store.add_key("alice", 2)
    assert re.fullmatch(r"KV[A-Z0-9]{18}", key.access_key)
    assert len(key.secret_key) == 40 and key.secret_key not in repr(key)
    assert await store.lookup_key(key.access_key) == ("alice", key.secret_key)
    assert await store.get_key(key.access_key) == key
    await store.set_key_disabled(key.access_key, True)
    assert await store.lookup_key(key.access_key) is None
    await store.set_key_disabled(key.access_key, False)
    await store.set_user_disabled("alice", True)
    assert await store.lookup_key(key.access_key) is None
    await store.set_user_disabled("alice", False)
    assert await store.lookup_key(key.access_key) == ("alice", key.secret_key)
    assert await store.lookup_key("KVNOSUCHKEY") is None
    with pytest.raises(NoSuchUser):
        await store.add_key("nobody", 1)
    with pytest.raises(NoSuchAccessKey):
        await store.set_key_disabled("KVNOSUCHKEY", True)


async def test_rotate_and_delete_keys(store: MetaStore) -> None:
    await store.create_user("alice", 1)
    old = await store.add_key("alice", 2)
    new = await store.rotate_key(old.access_key, 3)
    assert new.user == "alice" and new.access_key != old.access_key
    assert await store.lookup_key(old.access_key) is None
    assert await store.lookup_key(new.access_key) == ("alice", new.secret_key)
    keys = await store.list_keys("alice")
    assert [(k.access_key, k.disabled) for k in keys] == [
        (old.access_key, True),
        (new.access_key, False),
    ]
    await store.delete_key(old.access_key)
    assert [k.access_key for k in await store.list_keys("alice")] == [new.access_key]
    with pytest.raises(NoSuchAccessKey):
        await store.delete_key(old.access_key)
    with pytest.raises(NoSuchAccessKey):
        await store.rotate_key(old.access_key, 4)


async def test_delete_user_refused_while_it_owns_buckets(store: MetaStore) -> None:
    await store.create_user("alice", 1)
    key = await store.add_key("alice", 2)
    await store.create_bucket(Bucket("mine", "alice", 1))
    with pytest.raises(UserOwnsBuckets):
        await store.delete_user("alice")
    assert await store.get_user("alice") is not None
    await store.delete_bucket("mine")
    await store.delete_user("alice")
    assert await store.get_user("alice") is None
    assert await store.get_key(key.access_key) is None
    assert await store.list_keys("alice") == []
    with pytest.raises(NoSuchUser):
        await store.delete_user("alice")


async def test_users_survive_reopen(factory: Factory) -> None:
    s = await factory.open()
    await s.create_user("alice", 1)
    key = await s.add_key("alice", 2)
    s2 = await factory.reopen(s)
    assert await s2.lookup_key(key.access_key) == ("alice", key.secret_key)


async def test_complete_under_a_condition_that_fails_changes_nothing(store: MetaStore) -> None:
    """If-None-Match / If-Match on CompleteMultipartUpload: decided with the write, and
    a failed condition leaves the object, the upload and every reference as they were."""
    b = await bucket(store)
    (old,) = (await put(store, b, "k", chunks=[chunk("old")])).written
    await store.create_upload(MultipartUpload(b, "k", "u1"))
    await store.put_part("u1", part(1, "a"))
    v = ver(b, "k", chunks=[chunk("a")])
    refused = await store.complete_upload("u1", v, [(1, "etag1")], Condition(CondKind.IF_ABSENT))
    assert not refused.ok and refused.current is not None
    assert refused.current.version_id == old.version_id
    head = await store.head(b, "k")
    assert head is not None and head.version_id == old.version_id
    assert [p.part_number for p in await store.list_parts("u1")] == [1]
    assert await store.chunk_refs() == {chunk("old").chunk_id: 1, chunk("a").chunk_id: 1}
    wrong = await store.complete_upload("u1", v, [(1, "etag1")], Condition(CondKind.IF_ETAG, "no"))
    assert not wrong.ok
    done = await store.complete_upload(
        "u1", v, [(1, "etag1")], Condition(CondKind.IF_ETAG, old.etag)
    )
    assert done.ok and done.written[0].version_id == v.version_id
    assert await store.get_upload("u1") is None
