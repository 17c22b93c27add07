"""Values of any size written from a stream (``core/store/streams.py``): chunks, pins, and
nothing left behind by a body that fails or is cancelled midway."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from kvbox.core.store import Store

from .conftest import pieces


async def test_stream_put_and_overwrite_freespieces(store: Store) -> None:
    data = b"".join(i.to_bytes(4, "big") for i in range(5000))  # 20,000 bytes
    v = await store.put_stream("kv", "s", pieces(data, 777))
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


async def test_failed_stream_leaves_nopieces(store: Store) -> None:
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
