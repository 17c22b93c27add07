"""Every byte verified: how damage found on a read is reported, once per object.

Layer: core (no I/O of its own; safe to call from any thread). Rules:

* Stored bytes are checked where they come back from the disk, by their owner: a chunk
  against its content address by the ``BlobStore`` (every read, and before sendfile
  sends it), an inline value against the checksum stored beside it by the
  ``MetaStore``. A failed check raises ``kvbox.errors.DataDamaged`` and the bytes are
  never served: a GW-KV client gets ``ERR STORAGE damaged ...``, an S3 client a 500
  ``InternalError`` (or, once the body has started, a cut connection: the status line
  cannot be taken back, a short body is the honest signal).
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
from typing import Final

from kvbox.errors import DataDamaged

log = logging.getLogger("kvbox.integrity")

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
        what = (exc.bucket, exc.key, exc.version_id, "" if exc.key else exc.chunk_id)
        with self._lock:
            self.reads += 1
            if what in self._seen:
                self._seen.move_to_end(what)
                return
            self._seen[what] = None
            self.objects += 1
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        log.error("%s (kvbox fsck --verify lists all damage)", exc)
