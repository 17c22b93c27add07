"""Reading versions back (``core/store/bodies.py``): ranges touch only their chunks, damage
is an error and never wrong bytes, pinned files are checked before they are sent."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.store import Store
from kvbox.errors import DataDamaged


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
