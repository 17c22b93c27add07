"""The storage core's one service: versioned objects and buckets, as front doors see them.

Layer: core. ``Store`` (``facade``) is what GW-KV, S3 and the website endpoint call; its
parts each keep one promise: ``chunks`` (chunk lifetime), ``cache`` (the read cache and
cache-mode eviction), ``multipart`` (S3 multipart uploads), ``hashing`` (MD5 on the loop
without losing the GIL); the journal of small writes is ``kvbox.core.journal``.
"""

from __future__ import annotations

from kvbox.core.store.cache import MISS, Miss, Peeked
from kvbox.core.store.chunks import FileSegment, PinnedFiles
from kvbox.core.store.facade import CHUNK_SIZE, INLINE_MAX, Batch, Store
from kvbox.core.store.hashing import Updatable, update_holding_gil
from kvbox.core.store.multipart import MIN_PART_SIZE

__all__ = [
    "CHUNK_SIZE",
    "INLINE_MAX",
    "MIN_PART_SIZE",
    "MISS",
    "Batch",
    "FileSegment",
    "Miss",
    "Peeked",
    "PinnedFiles",
    "Store",
    "Updatable",
    "update_holding_gil",
]
