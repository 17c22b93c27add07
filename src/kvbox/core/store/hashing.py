"""Hashing a write's bytes on the event loop without giving the GIL away.

Layer: core (no I/O). Why a module of its own: every write hashes its bytes (MD5 for the
ETag; S3 checksums too, in the door), and how that is done decides whether a small PUT
waits behind the metadata writer thread for the GIL. The rules below were measured on
the 2-core machine the benchmarks run on (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Final, Protocol

#: Pieces up to this size are hashed on the event loop: MD5 of 256 KiB takes about half
#: a millisecond, less than a worker-thread round trip costs a small PUT in CPU and
#: GIL hand-offs (a 4 KiB body hashes in microseconds).
HASH_INLINE_MAX: Final = 256 * 1024

#: hashlib releases the GIL while it hashes 2048 bytes or more (CPython's
#: HASHLIB_GIL_MINSIZE). Getting it back means waiting for whichever thread took it
#: meanwhile -- under load, the metadata writer -- which cost a 4 KiB PUT ~50 µs on the
#: loop's thread. Small data is cheaper hashed in pieces that keep the GIL.
_GIL_MINSIZE: Final = 2048
_KEEP_GIL_MAX: Final = 64 * 1024


class Updatable(Protocol):
    """A hash or checksum fed incrementally (hashlib objects, ``s3.checksums``)."""

    def update(self, data: bytes | memoryview, /) -> None: ...


def update_holding_gil(h: Updatable, data: bytes) -> None:
    """``h.update(data)``; for data up to 64 KiB, without letting go of the GIL."""
    n = len(data)
    if n < _GIL_MINSIZE or n > _KEEP_GIL_MAX:
        h.update(data)
        return
    view = memoryview(data)
    step = _GIL_MINSIZE - 1
    for off in range(0, n, step):
        h.update(view[off : off + step])


async def md5_update(md5: hashlib._Hash, data: bytes) -> None:
    """Hash ``data``, in a worker thread only when it is big enough to hold the loop."""
    if len(data) > HASH_INLINE_MAX:
        await asyncio.to_thread(md5.update, data)
    else:
        update_holding_gil(md5, data)
