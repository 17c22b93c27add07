"""Chunk lifetime: durable chunk writes, pins, release and collection.

Layer: core. Rules (docs/ARCHITECTURE.md, "Chunk lifetime"):

* A chunk's bytes are durable (``BlobStore`` writes, fsyncs and renames them) before any
  metadata that references them is committed, and the write *pins* each chunk from then
  until its metadata commit returned: a concurrent overwrite that frees the same content
  address cannot have the file collected in between.
* A read that streams a chunked version pins its chunks for as long as it reads
  (``pin_for_read``, ``pin_files``), after checking under the lock that the version still
  references them.
* A chunk is deleted only by ``collect``, under the one lock, after re-checking that no
  committed version references it (``MetaStore.chunk_ref_counts``) and nothing pins it.
  Reference counts themselves live in the metadata, changed in the same transaction as
  the versions (``kvbox.core.meta``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kvbox.core.blob import BlobStore
from kvbox.core.meta import MetaStore
from kvbox.core.model import Bucket, ChunkRef, ObjectVersion
from kvbox.errors import KvboxError, NoSuchKey

log = logging.getLogger("kvbox.store")

#: Chunk ids looked up per lock hold in ``remove_orphans``.
_ORPHAN_BATCH: Final = 256


@dataclass(frozen=True, slots=True)
class FileSegment:
    """``length`` bytes at ``offset`` of a local chunk file (``Chunks.pin_files``): part
    of the chunk ``chunk_id``, which is what a sender checks before sending them."""

    path: Path
    offset: int
    length: int
    chunk_id: str


@dataclass(frozen=True, slots=True)
class PinnedFiles:
    """A chunked version's bytes as local file segments, pinned until ``release()``
    (``Store.pin_files``).

    ``open(segment)`` is blocking (a sender's thread): the descriptor of the segment's
    file, opened and checked against its chunk's address, else ``DataDamaged`` (the file
    is damaged or gone). A sender opens every segment through it, just before sending
    it, and closes the descriptor after.
    """

    segments: list[FileSegment]
    release: Callable[[], None]
    open: Callable[[FileSegment], int]


class Background:
    """Fire-and-forget work of the Store (chunk collection, cache-mode evictions), held
    by strong references until done so that it is neither collected mid-way nor lost at
    shutdown (``drain``)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        """A task's failure is said once, here, instead of asyncio's "Task exception
        was never retrieved" at garbage collection: a collection that met the metadata
        store down (PostgreSQL restarting) only leaves its chunks to the leftover sweep
        (or, on blob nodes, to the garbage collector), which is a warning, not a bug."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, KvboxError):
            log.warning("background chunk work stopped: %s (retried by the leftover sweep)", exc)
        else:
            log.error("background chunk work failed", exc_info=exc)

    async def drain(self) -> None:
        """Until every task, including those spawned meanwhile, has finished."""
        while self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._tasks))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Chunks:
    """Chunk writes, pins and collection over one ``BlobStore`` (module docstring)."""

    def __init__(self, meta: MetaStore, blobs: BlobStore, background: Background) -> None:
        self.meta = meta
        self.blobs = blobs
        self._background = background
        #: Pins per chunk id: writes in flight and reads in progress.
        self.pinned: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    async def put(self, data: bytes, bucket: Bucket | None = None) -> ChunkRef:
        """Write ``data`` as a durable chunk of ``bucket`` (a placement hint for the
        ``BlobStore``), pinned until ``release``."""
        w = self.blobs.writer(bucket)
        try:
            await w.write(data)
        except BaseException:
            await w.abort()
            raise
        async with self._lock:
            ref = await w.commit()
            self.pinned[ref.chunk_id] += 1
        return ref

    def release(self, chunks: list[ChunkRef]) -> None:
        """Unpin a write's (or a read's) chunks; if a write failed they are unreferenced,
        and ``collect`` (which re-checks references) removes them."""
        if not chunks:
            return
        self._unpin(chunks)
        self.collect_later([c.chunk_id for c in chunks])

    def release_when_done(self, job: asyncio.Future[ChunkRef]) -> None:
        """A chunk write that may still finish after its caller gave up: release its
        chunk once it has."""
        if not job.cancelled() and job.exception() is None:
            self.release([job.result()])

    def _unpin(self, chunks: Iterable[ChunkRef]) -> None:
        pinned = self.pinned
        for c in chunks:
            n = pinned[c.chunk_id] - 1
            if n <= 0:
                del pinned[c.chunk_id]
            else:
                pinned[c.chunk_id] = n

    def collect_later(self, chunk_ids: Iterable[str]) -> None:
        """Collect ``chunk_ids`` (freed by a commit, or a failed write's) in the
        background."""
        ids = list(chunk_ids)
        if ids:
            self._background.spawn(self.collect(ids))

    async def collect(self, chunk_ids: list[str]) -> None:
        """Delete freed chunks that nothing references or pins any more."""
        async with self._lock:
            candidates = [c for c in set(chunk_ids) if c not in self.pinned]
            if not candidates:
                return
            refs = await self.meta.chunk_ref_counts(candidates)
            for c in candidates:
                if refs.get(c, 0) == 0 and c not in self.pinned:
                    await self.blobs.delete(c)

    async def remove_orphans(self, chunk_ids: Sequence[str]) -> int:
        """Delete those of ``chunk_ids`` that no version or part references and no write
        or reader pins, as ``collect`` does for freed chunks; how many were deleted.

        The leftover sweep (``kvbox.core.leftovers``) hands in chunk files it found on
        disk. Safe against writes in flight: a write installs each chunk and pins it in
        one step under the lock and unpins it only after its metadata committed, and
        this checks pins and references under the same lock. Batches keep the lock
        short, so writes wait at most one batch's lookup.
        """
        removed = 0
        for i in range(0, len(chunk_ids), _ORPHAN_BATCH):
            batch = chunk_ids[i : i + _ORPHAN_BATCH]
            async with self._lock:
                candidates = [c for c in batch if c not in self.pinned]
                if not candidates:
                    continue
                refs = await self.meta.chunk_ref_counts(candidates)
                for c in candidates:
                    if refs.get(c, 0) == 0 and c not in self.pinned:
                        await self.blobs.delete(c)
                        removed += 1
        return removed

    async def pin_for_read(self, version: ObjectVersion) -> None:
        """Pin a committed version's chunks for a read; ``NoSuchKey`` if the version was
        removed (and its chunks may be collected) before the pin could be taken."""
        ids = [c.chunk_id for c in version.chunks]
        async with self._lock:
            refs = await self.meta.chunk_ref_counts(ids)
            if any(refs.get(c, 0) == 0 and c not in self.pinned for c in ids):
                raise NoSuchKey(f"{version.key}: version {version.version_id} is gone")
            for c in ids:
                self.pinned[c] += 1

    async def pin_files(
        self, version: ObjectVersion, first: int, last: int
    ) -> tuple[list[FileSegment], Callable[[], None]] | None:
        """Bytes ``first..last`` (inclusive) of a chunked version as local file segments,
        for a zero-copy send; None when the version is inline or a chunk has no local file.

        The chunks stay pinned, exactly as during a streamed read, until the returned
        ``release`` is called (on the loop; calling it twice is harmless), so an
        overwrite or delete meanwhile cannot have a file collected under the sender.
        Raises ``NoSuchKey`` if the version is already gone.
        """
        if version.inline is not None or not version.chunks:
            return None
        segments: list[FileSegment] = []
        pos = 0
        for c in version.chunks:
            end = pos + c.size  # this chunk holds bytes pos..end-1
            if end > first and pos <= last:
                path = self.blobs.local_path(c.chunk_id)
                if path is None:
                    return None
                start = max(first, pos)
                segments.append(
                    FileSegment(path, start - pos, min(last + 1, end) - start, c.chunk_id)
                )
            pos = end
        if not segments:
            return None
        await self.pin_for_read(version)
        chunks = list(version.chunks)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.release(chunks)

        return segments, release


def cut_chunk(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf`` as bytes, removed from it, with one copy (a slice
    of a bytearray is a copy of its own, which made a streamed upload peak at four
    chunks' worth instead of three: ``Store.stream_memory``)."""
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data
