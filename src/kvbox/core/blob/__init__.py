"""Object bytes behind one narrow, async interface: content-addressed chunks.

Layer: core. Implementations: ``localdir.LocalDirBlobStore`` (files under the data
directory, fsync'd), ``memory.MemoryBlobStore``, and ``kvbox.cluster.store.ClusterBlobStore``
(replicated over blob nodes; outside core/ because it speaks HTTP to them). All pass
``tests/core/blob/test_conformance.py``.

A chunk's id is the lowercase hex SHA-256 of its bytes, so a key is never used as a path
and the same bytes are stored once. Reference counting lives in the MetaStore; the blob
store only stores, reads and deletes what it is told.

Every read checks the bytes against the id before returning any of them (a range too:
the whole chunk is hashed, the range returned), and raises ``DataDamaged`` when they no
longer match: a damaged chunk is an error, never wrong data (``kvbox.core.integrity``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from kvbox.core.model import Bucket, ChunkRef


class ChunkWriter(Protocol):
    """Streams one chunk in; nothing is visible under the chunk's id until ``commit``."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> ChunkRef:
        """Make the chunk durable under its content address and return it."""
        ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def writer(self, bucket: Bucket | None = None) -> ChunkWriter:
        """A writer for one chunk of a version or part of ``bucket`` (None: no bucket,
        a tool's write). The bucket is a placement hint only: a store that spreads
        chunks over machines may keep more or fewer copies for some buckets
        (``kvbox.cluster.store``: its ``replicas`` attribute); the chunk's content and
        address never depend on it, and a local store ignores it."""
        ...

    async def put(self, data: bytes) -> ChunkRef:
        """Store ``data`` as one chunk, durably (convenience over ``writer``)."""
        ...

    async def read(self, chunk_id: str, offset: int = 0, length: int = -1) -> bytes:
        """Bytes of a chunk, checked against its id; raises ``kvbox.errors.ChunkMissing``
        if absent, ``kvbox.errors.DataDamaged`` if they no longer hash to it."""
        ...

    async def exists(self, chunk_id: str) -> bool: ...

    async def delete(self, chunk_id: str) -> None:
        """Remove a chunk; no error if it is already gone."""
        ...

    def list_chunks(self) -> AsyncIterator[str]:
        """Every chunk id present (fsck)."""
        ...

    async def verify(self, chunk_id: str) -> bool:
        """True if the chunk's bytes still hash to its id."""
        ...

    def local_path(self, chunk_id: str) -> Path | None:
        """A file holding exactly the chunk's bytes, for sendfile; None if not local."""
        ...

    def check_file(self, fd: int, chunk_id: str) -> None:
        """Blocking (a worker thread): raise ``DataDamaged`` unless the open file ``fd``
        -- ``local_path(chunk_id)``, about to be sent with sendfile -- hashes to
        ``chunk_id``. Only asked of stores whose ``local_path`` gave a file."""
        ...
