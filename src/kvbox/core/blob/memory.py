"""BlobStore in a dict: tests, and the ``--max-memory`` cache mode.

Layer: core. Rules: no I/O and no awaits inside an operation, so every call completes
within the calling coroutine; the content addressing, dedup and error behaviour are the
same as ``localdir``'s (``tests/core/blob/test_conformance.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from kvbox.core.model import Bucket, ChunkRef
from kvbox.errors import ChunkMissing, DataDamaged, InvalidArgument, StorageError

_CHUNK_ID = re.compile(r"[0-9a-f]{64}")


class MemoryChunkWriter:
    """Collects one chunk's pieces; see ``ChunkWriter``."""

    def __init__(self, store: MemoryBlobStore) -> None:
        self._store = store
        self._parts: list[bytes] = []
        self._hash = hashlib.sha256()
        self._done = False

    async def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError("chunk writer already committed or aborted")
        if data:
            self._parts.append(bytes(data))
            self._hash.update(data)

    async def commit(self) -> ChunkRef:
        if self._done:
            raise StorageError("chunk writer already committed or aborted")
        self._done = True
        data = b"".join(self._parts)
        self._parts = []
        return self._store.install(self._hash.hexdigest(), data)

    async def abort(self) -> None:
        self._done = True
        self._parts = []


class MemoryBlobStore:
    """``BlobStore`` in memory; see the module docstring."""

    def __init__(self) -> None:
        self._chunks: dict[str, bytes] = {}
        #: Each chunk's CRC32C at install: what reads check, as localdir's do.
        self._crcs: dict[str, int] = {}
        self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held (the cache mode's memory accounting)."""
        return self._nbytes

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def install(self, chunk_id: str, data: bytes) -> ChunkRef:
        if chunk_id not in self._chunks:
            self._chunks[chunk_id] = data
            self._crcs[chunk_id] = _crt.crc32c(data)
            self._nbytes += len(data)
        return ChunkRef(chunk_id, len(data))

    def writer(self, bucket: Bucket | None = None) -> MemoryChunkWriter:
        return MemoryChunkWriter(self)  # one copy, whatever the bucket

    async def put(self, data: bytes) -> ChunkRef:
        data = bytes(data)
        return self.install(hashlib.sha256(data).hexdigest(), data)

    async def read(self, chunk_id: str, offset: int = 0, length: int = -1) -> bytes:
        if offset < 0 or length < -1:
            raise InvalidArgument(f"bad range: offset {offset}, length {length}")
        data = self._chunks.get(chunk_id)
        if data is None:
            raise ChunkMissing(chunk_id)
        if _crt.crc32c(data) != self._crcs.get(chunk_id):  # as localdir's reads check
            raise DataDamaged(f"chunk {chunk_id} does not hash to its address", chunk_id=chunk_id)
        if length < 0:
            return data[offset:] if offset else data
        return data[offset : offset + length]

    async def exists(self, chunk_id: str) -> bool:
        return chunk_id in self._chunks

    async def delete(self, chunk_id: str) -> None:
        data = self._chunks.pop(chunk_id, None)
        self._crcs.pop(chunk_id, None)
        if data is not None:
            self._nbytes -= len(data)

    async def list_chunks(self) -> AsyncIterator[str]:
        for chunk_id in sorted(self._chunks):
            yield chunk_id

    async def verify(self, chunk_id: str) -> bool:
        data = self._chunks.get(chunk_id)
        if data is None or _CHUNK_ID.fullmatch(chunk_id) is None:
            return False
        return hashlib.sha256(data).hexdigest() == chunk_id

    def local_path(self, chunk_id: str) -> Path | None:
        return None

    def check_file(self, fd: int, chunk_id: str) -> None:
        raise StorageError("the memory store has no files to check")
