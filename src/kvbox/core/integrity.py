"""Every byte verified: how damage found on a read is reported, once per object.

Layer: core (no I/O of its own; safe to call from any thread). Rules:

* One checksum for stored bytes: ``crc32c`` (CRC-32C, in hardware through awscrt, which
  kvbox already uses for S3's checksums): half of zlib's CRC-32 for a 1 KiB value and a
  twentieth at 64 KiB, within 0.7 µs of xxh3, a new dependency (docs/benchmarks.md,
  "The inline value checksum"); and a CRC detects every burst of up to 32 changed bits,
  which a hash does not promise.
* Every value gets it when it enters the Store (``ObjectVersion.inline_crc``), the
  journal record carries it, the metadata row stores it: the checksum checked on a read
  is the one computed from the client's bytes, not one recomputed later from whatever
  the bytes had become.
* Stored bytes are checked where they come back from the disk: a chunk against its
  checksum and content address by the ``BlobStore`` (every read, and before sendfile
  sends it); an inline value against its stored checksum by the ``Store``, for every
  version read from the ``MetaStore`` to be served (listings, deletes and lock changes
  never need the bytes, so damage never stops them). A failed check raises
  ``kvbox.errors.DataDamaged`` and the bytes are never served: a GW-KV client gets
  ``ERR STORAGE damaged ...``, an S3 client a 500 ``InternalError`` (or, once the body
  has started, a cut connection: the status line cannot be taken back, a short body is
  the honest signal).
* The Store names the damaged version (bucket, key, version id) and hands the error to
  ``DamageLog.report``, the one place that counts damaged reads for ``/metrics`` and
  logs the damage: one ERROR line per damaged object, however often clients retry it
  (an S3 SDK retries a 500 several times), so the log says *what* is damaged rather than
  how often it was asked for. ``kvbox fsck --verify`` and the scrubber name every
  damaged object without being asked.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from kvbox.core.model import ObjectVersion
from kvbox.errors import DataDamaged

log = logging.getLogger("kvbox.integrity")

#: ``crc32c(data, previous=0) -> int``: CRC-32C of ``data`` (any buffer), continuing
#: ``previous``; the checksum of every stored value and chunk (module docstring).
crc32c: Final[Callable[..., int]] = _crt.crc32c


def value_sound(v: ObjectVersion) -> bool:
    """Whether a version read back from storage still has the inline bytes its
    checksum was computed from (no inline value, or none recorded: nothing to check)."""
    inline = v.inline
    return inline is None or v.inline_crc is None or crc32c(inline) == v.inline_crc


#: Damaged objects remembered for "logged once": beyond this many distinct ones the
#: oldest is forgotten (and would be logged again), so a disk that rots everywhere
#: cannot grow the server's memory.
REMEMBER: Final = 10_000


class DamageLog:
    """Damaged reads refused, counted, and logged once per object (module docstring)."""

    def __init__(self, remember: int = REMEMBER) -> None:
        self._remember = remember
        self._seen: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        #: Reads refused because their bytes failed a check, since start.
        self.reads = 0
        #: Distinct damaged objects (versions) seen by reads since start.
        self.objects = 0

    def report(self, exc: DataDamaged) -> None:
        """Count a refused read; log it if this object was not logged yet. Any thread
        (the sendfile threads check chunks too)."""
        with self._lock:
            self.reads += 1
            new = self._first(exc)
        if new:
            log.error("%s (kvbox fsck --verify lists all damage)", exc)

    def found(self, exc: DataDamaged) -> None:
        """Damage the scrubber found (no read was refused): logged once per object
        like a damaged read, counted in ``objects`` only."""
        with self._lock:
            new = self._first(exc)
        if new:
            log.error("%s (found by the scrubber; kvbox fsck --verify lists all damage)", exc)

    def _first(self, exc: DataDamaged) -> bool:
        """Whether this object is met for the first time (remembered now). Lock held."""
        what = (exc.bucket, exc.key, exc.version_id, "" if exc.key else exc.chunk_id)
        if what in self._seen:
            self._seen.move_to_end(what)
            return False
        self._seen[what] = None
        self.objects += 1
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return True
