"""A version's bytes, read back: whole, as a stream of any range, or as pinned files.

Layer: core. Rules (docs/ARCHITECTURE.md, "Durability"):

* Only the chunks a range touches are read, and each is checked whole against its
  content address before any of its bytes leaves (``BlobStore.read``): a damaged chunk is
  an error, or a cut connection once bytes went out, never wrong bytes.
* The chunks are pinned for the whole read (``Chunks.pin_for_read``/``pin_files``), so an
  overwrite or delete that frees them meanwhile cannot have them collected underneath.
* Damage found is reported once per object (``integrity.DamageLog``) and answered as
  ``DataDamaged`` naming the version, whoever found it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator

from kvbox.core.blob import BlobStore
from kvbox.core.integrity import DamageLog
from kvbox.core.model import ObjectVersion
from kvbox.core.store.chunks import Chunks, FileSegment, PinnedFiles
from kvbox.errors import ChunkMissing, DataDamaged


class Bodies:
    """Reads of versions' bytes over the chunk store (module docstring)."""

    def __init__(self, blobs: BlobStore, chunks: Chunks) -> None:
        self.blobs = blobs
        self.chunks = chunks
        #: Damaged reads refused: counted for /metrics, logged once per object.
        self.damage = DamageLog()

    async def read(self, version: ObjectVersion) -> bytes:
        """All bytes of a version. For values that may be large, use ``iter_bytes``."""
        if version.inline is not None:
            return version.inline
        return b"".join([piece async for piece in self.iter_bytes(version)])

    async def iter_bytes(
        self, version: ObjectVersion, first: int = 0, last: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Bytes ``first..last`` (inclusive; default: all) of the version, in order, one
        chunk in memory at a time. Raises ``NoSuchKey`` if the version was removed before
        the read could pin it (call ``head`` again), ``DataDamaged`` at a chunk that is
        damaged or missing."""
        end = version.size - 1 if last is None else last
        if version.inline is not None:
            whole = first == 0 and end >= version.size - 1
            yield version.inline if whole else version.inline[first : end + 1]
            return
        await self.chunks.pin_for_read(version)
        try:
            pos = 0
            for c in version.chunks:
                stop = pos + c.size  # this chunk holds bytes pos..stop-1
                if stop > first:
                    try:
                        data = await self.blobs.read(c.chunk_id)
                    except (DataDamaged, ChunkMissing) as exc:
                        raise self.damaged(version, exc) from None
                    if first <= pos and end >= stop - 1:
                        yield data
                    else:
                        yield data[max(0, first - pos) : end + 1 - pos]
                pos = stop
                if pos > end:
                    break
        finally:
            self.chunks.release(list(version.chunks))

    async def open_read(
        self, version: ObjectVersion, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        """``iter_bytes`` with its first piece already read: whatever stops the read
        before its first byte (``NoSuchKey``, a damaged first chunk) is raised here,
        while a front door can still answer it with an error instead of a cut body."""
        body = self.iter_bytes(version, first, last)
        try:
            head = await anext(body, None)
        except BaseException:
            await body.aclose()
            raise
        return _chain(head, body)

    def damaged(self, version: ObjectVersion, exc: DataDamaged | ChunkMissing) -> DataDamaged:
        """The error a read of ``version`` answers for damage ``exc`` found beneath it,
        naming the version, reported once (``DamageLog``). Any thread."""
        if isinstance(exc, DataDamaged):
            detail, chunk_id = exc.detail, exc.chunk_id
        else:
            chunk_id = str(exc)
            detail = f"chunk {chunk_id} is missing"
        err = DataDamaged(
            detail,
            bucket=version.bucket,
            key=version.key,
            version_id=version.version_id,
            chunk_id=chunk_id,
        )
        self.damage.report(err)
        return err

    async def pin_files(self, version: ObjectVersion, first: int, last: int) -> PinnedFiles | None:
        """Bytes ``first..last`` of a chunked version as pinned local files, for a
        zero-copy send (``Chunks.pin_files``); None when they are not all local files.

        The first segment's chunk is checked here, before any byte can leave, the others
        by the sender through ``PinnedFiles.open`` just before it sends each: a damaged
        chunk is then an error reply if it comes first, a cut connection if not, and
        never wrong bytes.
        """
        pinned = await self.chunks.pin_files(version, first, last)
        if pinned is None:
            return None
        segments, release = pinned
        blobs = self.blobs
        checked: set[str] = set()  # chunks checked by the call below already

        def open_checked(segment: FileSegment) -> int:
            try:
                fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise self.damaged(version, ChunkMissing(segment.chunk_id)) from None
            try:
                if segment.chunk_id in checked:
                    checked.discard(segment.chunk_id)
                else:
                    blobs.check_file(fd, segment.chunk_id)
            except DataDamaged as exc:
                os.close(fd)
                raise self.damaged(version, exc) from None
            except BaseException:
                os.close(fd)
                raise
            return fd

        try:
            os.close(await asyncio.to_thread(open_checked, segments[0]))
        except BaseException:
            release()
            raise
        checked.add(segments[0].chunk_id)
        return PinnedFiles(segments, release, open_checked)


async def _chain(head: bytes | None, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """``head`` (if any) then the rest of ``rest``; closing this closes ``rest``."""
    try:
        if head is not None:
            yield head
        async for piece in rest:
            yield piece
    finally:
        await rest.aclose()
