"""A value of any size from an async source into durable, pinned chunks.

Layer: core. Rules: at most three chunks in memory (the one being hashed and written,
the next one filling, the copy handed to the writer: ``Store.stream_memory``); every
chunk written is pinned (``Chunks.put``) and handed to the caller, who releases them
once the metadata that references them is committed, or at once when this raises
(then they are released here). Shared by ``Store.put_stream`` and
``Multipart.upload_part``: one pipeline for both.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kvbox.core.model import Bucket, ChunkRef
from kvbox.core.store.chunks import Chunks, cut_chunk
from kvbox.core.store.hashing import md5_update


@dataclass(frozen=True, slots=True)
class Streamed:
    """What ``write_stream`` read: its size and MD5, and either the pinned chunks that
    hold it or, when it stayed small enough, the value itself."""

    size: int
    etag: str
    chunks: tuple[ChunkRef, ...]
    inline: bytes | None


async def write_stream(
    chunks: Chunks,
    source: AsyncIterator[bytes],
    chunk_size: int,
    *,
    inline_max: int = -1,
    check_size: Callable[[int], None] | None = None,
    bucket: Bucket | None = None,
) -> Streamed:
    """Read ``source`` to its end into chunks of ``chunk_size``; a value of at most
    ``inline_max`` bytes is returned inline instead. ``check_size(bytes so far)`` may
    raise to stop a value that grows too large. ``bucket`` is the chunks' placement hint
    (``BlobStore.writer``).

    Pipelined: while chunk N is hashed (MD5 for the ETag, SHA-256 for its address, in
    two worker threads at once) and written and fsync'd, the loop already reads chunk
    N+1 from ``source``. One chunk job at a time keeps the MD5 in order and memory
    bounded; measured on a 1 GiB upload, overlapping the two roughly doubles what one
    serial chunk at a time reached.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    written: list[ChunkRef] = []
    size = 0
    buf = bytearray()
    inflight: asyncio.Future[ChunkRef] | None = None
    try:
        async for piece in source:
            size += len(piece)
            if check_size is not None:
                check_size(size)
            buf += piece
            if len(buf) >= chunk_size:
                data = cut_chunk(buf, chunk_size)
                if inflight is not None:
                    written.append(await inflight)
                    inflight = None
                inflight = asyncio.ensure_future(_md5_and_put(chunks, md5, data, bucket))
        if inflight is not None:
            written.append(await inflight)
            inflight = None
        tail = bytes(buf)
        await md5_update(md5, tail)
        if not written and size <= inline_max:
            return Streamed(size, md5.hexdigest(), (), tail)
        if tail:
            written.append(await chunks.put(tail, bucket))
        return Streamed(size, md5.hexdigest(), tuple(written), None)
    except BaseException:
        if inflight is not None:
            # Failed or cancelled mid-body (a client that vanished): the last chunk job
            # is waited for, so that nothing of the upload -- its 8 MiB of data above
            # all -- outlives the request and the memory budget it held
            # (server/budget.py); its chunk is then unpinned like the others.
            try:
                written.append(await asyncio.shield(inflight))
            except BaseException:
                inflight.add_done_callback(chunks.release_when_done)
        chunks.release(written)
        raise


async def _md5_and_put(chunks: Chunks, md5: Any, data: bytes, bucket: Bucket | None) -> ChunkRef:
    """Chunk ``data``'s MD5 update (for the object's ETag) and its durable write, in
    parallel worker threads (hashlib releases the GIL on large buffers)."""
    _, ref = await asyncio.gather(asyncio.to_thread(md5.update, data), chunks.put(data, bucket))
    return ref
