"""The Store over real stores (``core/store/facade.py``): versioning, conditions, chunking,
GC, cache, LRU mode. The ``store`` fixture is in conftest.py."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.model import Condition, CondKind, Versioning
from kvbox.core.store import Store
from kvbox.core.store.cache import ENTRY_COST, entry_cost
from kvbox.errors import ConditionFailed, NoSuchBucket, ValueTooLarge


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
