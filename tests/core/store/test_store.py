"""The Store over real stores: versioning, conditions, chunking, GC, cache, LRU mode."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.model import Condition, CondKind, Versioning
from kvbox.core.store import Store
from kvbox.core.store.cache import ENTRY_COST, entry_cost
from kvbox.errors import ConditionFailed, DataDamaged, NoSuchBucket, ValueTooLarge


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = Store(
            SqliteMetaStore(tmp_path / META_FILE),
            LocalDirBlobStore(tmp_path),
            inline_max=1024,
            chunk_size=4096,
        )
    else:
        s = Store(MemoryMetaStore(), MemoryBlobStore(), inline_max=1024, chunk_size=4096)
    await s.open()
    await s.ensure_bucket("kv")
    yield s
    await s.close()


async def _chunks(data: bytes, piece: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


async def test_put_head_read_inline_and_chunked(store: Store) -> None:
    small = await store.put("kv", "a", b"hello")
    assert small.etag == hashlib.md5(b"hello").hexdigest()
    big_data = bytes(range(256)) * 50  # 12,800 bytes: 4 chunks of 4 KiB
    big = await store.put("kv", "b", big_data)
    assert big.inline is None and len(big.chunks) == 4
    head = await store.head("kv", "b")
    assert head is not None
    assert await store.read(head) == big_data
    streamed = b"".join([piece async for piece in store.iter_bytes(head)])
    assert streamed == big_data


async def test_every_write_gets_a_new_version_and_unversioned_keeps_one(store: Store) -> None:
    v1 = await store.put("kv", "k", b"1")
    v2 = await store.put("kv", "k", b"2")
    assert v1.version_id != v2.version_id and v2.seq > v1.seq
    versions = await store.list_versions("kv", "k")
    assert [v.version_id for v in versions] == [v2.version_id]


async def test_versioned_bucket_keeps_history_and_markers(store: Store) -> None:
    await store.ensure_bucket("hist", versioning=Versioning.ENABLED)
    v1 = await store.put("hist", "k", b"1")
    v2 = await store.put("hist", "k", b"2")
    await store.delete("hist", "k")
    head = await store.head("hist", "k")
    assert head is not None and head.is_delete_marker
    versions = await store.list_versions("hist", "k")
    assert [v.version_id for v in versions][1:] == [v2.version_id, v1.version_id]
    old = await store.get_version("hist", "k", v1.version_id)
    assert old is not None and await store.read(old) == b"1"


async def test_conditions(store: Store) -> None:
    v1 = await store.put("kv", "c", b"x", condition=Condition(CondKind.IF_ABSENT))
    with pytest.raises(ConditionFailed) as info:
        await store.put("kv", "c", b"y", condition=Condition(CondKind.IF_ABSENT))
    assert info.value.current == v1.version_id
    v2 = await store.put("kv", "c", b"y", condition=Condition(CondKind.IF_VERSION, v1.version_id))
    with pytest.raises(ConditionFailed):
        await store.put("kv", "c", b"z", condition=Condition(CondKind.IF_VERSION, v1.version_id))
    head = await store.head("kv", "c")
    assert head is not None and head.version_id == v2.version_id and head.inline == b"y"


async def test_put_many_is_atomic_and_batch_is_not(store: Store) -> None:
    written = await store.put_many("kv", [("m1", b"a"), ("m2", b"b")])
    assert [v.key for v in written] == ["m1", "m2"]
    results = await store.put_batch("kv", [("p1", b"a"), ("p2", b"x" * 2000), ("p3", b"c")])
    assert isinstance(results[1], ValueTooLarge)
    assert (await store.head("kv", "p3")) is not None
    assert (await store.stats("kv")).objects == 4


async def test_missing_bucket(store: Store) -> None:
    with pytest.raises(NoSuchBucket):
        await store.put("nope", "k", b"v")


async def test_stream_put_and_overwrite_frees_chunks(store: Store) -> None:
    data = b"".join(i.to_bytes(4, "big") for i in range(5000))  # 20,000 bytes
    v = await store.put_stream("kv", "s", _chunks(data, 777))
    assert v.size == len(data) and v.etag == hashlib.md5(data).hexdigest()
    ids = {c.chunk_id for c in v.chunks}
    assert all([await store.blobs.exists(c) for c in ids])
    await store.put("kv", "s", b"small now")
    await store.sweep_chunk_writers()
    assert not any([await store.blobs.exists(c) for c in ids])


async def test_shared_chunks_survive_while_referenced(store: Store) -> None:
    data = b"q" * 9000
    a = await store.put("kv", "a", data)
    await store.put("kv", "b", data)  # same content: same chunks
    await store.delete("kv", "a")
    await store.sweep_chunk_writers()
    for c in a.chunks:
        assert await store.blobs.exists(c.chunk_id)
    head = await store.head("kv", "b")
    assert head is not None and await store.read(head) == data


async def test_failed_stream_leaves_no_chunks(store: Store) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"z" * 10_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream("kv", "broken", broken())
    await store.sweep_chunk_writers()
    assert [c async for c in store.blobs.list_chunks()] == []
    assert await store.head("kv", "broken") is None


async def test_cancelled_stream_with_a_chunk_in_flight_leaves_nothing(store: Store) -> None:
    """put_stream overlaps a chunk's hashing and write with reading the next one; a
    write cancelled (client gone) with a chunk job in flight must still unpin it, so the
    collector can remove every chunk and nothing stays referenced or pinned."""
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for i in range(5):
            yield bytes([i]) * 4096  # one chunk each (chunk_size is 4 KiB here)
        gate.set()
        await asyncio.sleep(30)  # a silent client
        yield b"never"

    task = asyncio.ensure_future(store.put_stream("kv", "cut", slow()))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The last chunk job finishes in its worker thread, after its fsync: milliseconds on
    # an idle machine, over a second when other work loads the disk (a 1 s wait failed).
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
        await store.sweep_chunk_writers()
        # Both, not the files alone: a job still in flight has written no file yet but
        # holds its pin, so "no files" alone passed before the job had even ended.
        if not [c async for c in store.blobs.list_chunks()] and not any(
            store.chunks.pinned.values()
        ):
            break
    assert [c async for c in store.blobs.list_chunks()] == []
    assert not any(store.chunks.pinned.values())
    assert await store.head("kv", "cut") is None


async def test_cache_never_serves_stale_after_concurrent_writes(store: Store) -> None:
    async def writer(i: int) -> None:
        await store.put("kv", "hot", str(i).encode())

    await asyncio.gather(*(writer(i) for i in range(50)))
    head = await store.head("kv", "hot")
    versions = await store.meta.head("kv", "hot")
    assert head is not None and versions is not None
    assert head.version_id == versions.version_id


#: A 1,000-byte value of a 2-character key, as cache mode counts it.
_COST = entry_cost("k0", 1000)


@pytest.mark.parametrize("cache_bytes", [64 << 20, 1], ids=["cache-hit", "cache-miss"])
async def test_lru_mode_evicts_least_recently_used(cache_bytes: int) -> None:
    """Reads are uses whether the read cache had the key (``peek``) or not (``head``
    asking the memory store: a 1-byte read cache misses every time)."""
    s = Store(
        MemoryMetaStore(),
        MemoryBlobStore(),
        max_memory=5 * _COST + 100,
        inline_max=1024,
        cache_bytes=cache_bytes,
    )
    await s.open()
    await s.ensure_bucket("kv")
    for i in range(5):
        await s.put("kv", f"k{i}", b"v" * 1000)
    await s.head("kv", "k0")  # k0 is now the most recently used
    for i in range(5, 8):
        await s.put("kv", f"k{i}", b"v" * 1000)
    await s.sweep_chunk_writers()
    stats = await s.stats("kv")
    assert stats.objects == 5
    assert await s.head("kv", "k0") is not None
    assert await s.head("kv", "k1") is None
    with pytest.raises(ValueTooLarge):
        await s.put("kv", "huge", b"x" * 20_000)
    await s.close()


async def test_lru_counts_each_keys_real_cost() -> None:
    """Issue 10: 200,000 empty values under --max-memory 10 KiB were all kept (values
    alone were counted). Every key costs its entry: a few keys fit, no more."""
    s = Store(MemoryMetaStore(), MemoryBlobStore(), max_memory=10 * 1024)
    await s.open()
    await s.ensure_bucket("kv")
    for i in range(2000):
        await s.put("kv", f"key{i}", b"")
    await s.sweep_chunk_writers()
    stats = await s.stats("kv")
    assert stats.objects <= 10 * 1024 // ENTRY_COST + 1
    assert await s.head("kv", "key1999") is not None
    await s.close()


async def test_lru_counts_every_version_a_versioned_bucket_keeps() -> None:
    s = Store(MemoryMetaStore(), MemoryBlobStore(), max_memory=4 * _COST + 100)
    await s.open()
    await s.ensure_bucket("vv", versioning=Versioning.ENABLED)
    for _ in range(3):
        await s.put("vv", "k0", b"v" * 1000)  # three versions of one key
    await s.put("vv", "k1", b"v" * 1000)
    await s.put("vv", "k2", b"v" * 1000)  # five versions: k0, the oldest use, goes
    await s.sweep_chunk_writers()
    assert await s.head("vv", "k0") is None
    assert await s.head("vv", "k2") is not None
    await s.close()


async def test_version_at_reads_the_key_as_it_was(store: Store) -> None:
    await store.ensure_bucket("tt", versioning=Versioning.ENABLED)
    v1 = await store.put("tt", "k", b"1")
    await store.put("tt", "k2", b"other key with k as prefix")
    v2 = await store.put("tt", "k", b"2")
    marker = (await store.delete("tt", "k")).written[0]
    assert await store.version_at("tt", "k", v1.mtime_ns - 1) is None
    at1 = await store.version_at("tt", "k", v1.mtime_ns)
    assert at1 is not None and at1.version_id == v1.version_id
    at2 = await store.version_at("tt", "k", v2.mtime_ns)
    assert at2 is not None and await store.read(at2) == b"2"
    gone = await store.version_at("tt", "k", marker.mtime_ns + 10**9)
    assert gone is not None and gone.is_delete_marker
    assert await store.version_at("tt", "missing", marker.mtime_ns) is None


async def test_version_at_pages_through_long_histories(store: Store) -> None:
    await store.ensure_bucket("tt", versioning=Versioning.ENABLED)
    written = [await store.put("tt", "k", str(i).encode()) for i in range(1203)]
    for probe in (written[0], written[5], written[1100]):
        # the newest version (by commit order) not written after the probe's instant
        want = max((w for w in written if w.mtime_ns <= probe.mtime_ns), key=lambda w: w.seq)
        got = await store.version_at("tt", "k", probe.mtime_ns)
        assert got is not None and got.version_id == want.version_id


async def test_set_attrs_keeps_the_version_and_refreshes_the_cache(store: Store) -> None:
    v = await store.put("kv", "k", b"x", attrs={"meta:a": "1"})
    assert await store.head("kv", "k") is not None  # now cached
    new = await store.set_attrs("kv", "k", v.version_id, {"tag:t": "2"})
    assert new is not None and new.version_id == v.version_id and new.mtime_ns == v.mtime_ns
    head = await store.head("kv", "k")
    assert head is not None and dict(head.attrs) == {"tag:t": "2"}
    assert await store.set_attrs("kv", "nope", None, {}) is None


async def test_bucket_attrs_are_served_from_memory_after_a_change(store: Store) -> None:
    await store.set_bucket_attrs("kv", {"policy": "{}"})
    b = await store.get_bucket("kv")
    assert b is not None and dict(b.attrs) == {"policy": "{}"}
    assert dict((await store.meta.get_bucket("kv")).attrs) == {"policy": "{}"}  # type: ignore[union-attr]


async def test_deleting_a_bucket_drops_its_uploads_and_their_chunk_files(store: Store) -> None:
    await store.ensure_bucket("pending")
    up = await store.create_multipart("pending", "k")
    part = await store.upload_part("pending", "k", up.upload_id, 1, _chunks(b"p" * 9000, 1000))
    ids = {c.chunk_id for c in part.chunks}
    assert ids and all([await store.blobs.exists(c) for c in ids])
    assert await store.delete_bucket("pending")
    await store.sweep_chunk_writers()
    assert not any([await store.blobs.exists(c) for c in ids])
    assert await store.get_bucket("pending") is None
    with pytest.raises(NoSuchBucket):
        await store.list_uploads("pending")
    assert not await store.delete_bucket("pending")


async def test_a_deleted_bucket_forgets_keys_cached_as_absent(store: Store) -> None:
    await store.ensure_bucket("gone")
    assert await store.head("gone", "never") is None  # now cached as known absent
    assert store.peek("gone", "never") is None
    assert await store.delete_bucket("gone")
    with pytest.raises(NoSuchBucket):
        await store.head("gone", "never")
    await store.ensure_bucket("gone", owner="alice")  # the name again, someone else's
    assert await store.head("gone", "never") is None


def _damage(store: Store, chunk_id: str) -> None:
    """Change a stored chunk's bytes in place, as a bad disk would."""
    path = store.blobs.local_path(chunk_id)
    if path is None:
        assert isinstance(store.blobs, MemoryBlobStore)
        store.blobs._chunks[chunk_id] = b"X" + store.blobs._chunks[chunk_id][1:]
        return
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_ranged_reads_touch_only_their_chunks_and_never_damage(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(16384)  # 4 chunks of 4 KiB, all different
    v = await store.put("kv", "big", data)
    _damage(store, v.chunks[1].chunk_id)

    async def got(first: int, last: int | None) -> bytes:
        return b"".join([p async for p in store.iter_bytes(v, first, last)])

    # Ranges in sound chunks read exactly, damage elsewhere or not.
    assert await got(0, 4095) == data[:4096]
    assert await got(8192, 16383) == data[8192:]
    assert await got(9000, 9000) == data[9000:9001]
    # A range touching the damaged chunk fails there, after the sound bytes before it.
    pieces: list[bytes] = []
    with pytest.raises(DataDamaged) as caught:
        async for piece in store.iter_bytes(v, 100, 9000):
            pieces.append(piece)
    assert b"".join(pieces) == data[100:4096]
    err = caught.value
    assert (err.bucket, err.key, err.version_id) == ("kv", "big", v.version_id)
    assert err.chunk_id == v.chunks[1].chunk_id
    assert str(err).startswith(f"damaged: kv/big version {v.version_id}: chunk ")
    # open_read raises before any byte when the first chunk it needs is damaged.
    with pytest.raises(DataDamaged):
        await store.open_read(v, 4096, 5000)
    body = await store.open_read(v, 0, 5000)  # sound first chunk: damage comes later
    with pytest.raises(DataDamaged):
        async for _ in body:
            pass
    # Counted every time, logged once for the object.
    assert store.damage.reads == 3 and store.damage.objects == 1
    logged = [r for r in caplog.records if r.name == "kvbox.integrity"]
    assert len(logged) == 1 and v.version_id in logged[0].getMessage()
    # Nothing stays pinned by the failed reads: an overwrite collects the chunks.
    assert not store.chunks.pinned


async def test_a_missing_chunk_is_damage_too(store: Store) -> None:
    data = os.urandom(10_000)
    v = await store.put("kv", "gone", data)
    await store.blobs.delete(v.chunks[2].chunk_id)
    with pytest.raises(DataDamaged, match="is missing"):
        await store.read(v)
    assert store.damage.objects == 1


async def test_pin_files_checks_the_first_chunk_and_hands_out_checked_opens(
    tmp_path: Path,
) -> None:
    s = Store(
        SqliteMetaStore(tmp_path / META_FILE), LocalDirBlobStore(tmp_path), inline_max=1024,
        chunk_size=4096,
    )  # fmt: skip
    await s.open()
    try:
        await s.ensure_bucket("kv")
        data = os.urandom(3 * 4096)
        v = await s.put("kv", "f", data)
        pinned = await s.pin_files(v, 0, len(data) - 1)
        assert pinned is not None
        sent = b""
        for seg in pinned.segments:
            fd = await asyncio.to_thread(pinned.open, seg)
            try:
                sent += os.pread(fd, seg.length, seg.offset)
            finally:
                os.close(fd)
        pinned.release()
        assert sent == data
        _damage(s, v.chunks[2].chunk_id)
        pinned = await s.pin_files(v, 0, len(data) - 1)  # the first chunk is sound
        assert pinned is not None
        with pytest.raises(DataDamaged):
            await asyncio.to_thread(pinned.open, pinned.segments[2])
        pinned.release()
        _damage(s, v.chunks[0].chunk_id)
        with pytest.raises(DataDamaged):
            await s.pin_files(v, 0, len(data) - 1)
        assert not s.chunks.pinned  # released on the way out
    finally:
        await s.close()
