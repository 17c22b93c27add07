"""The leftover sweep: a running server removes the orphan chunks a crash left behind.

Layer: core (one background task over ``Store`` and a ``LocalDirBlobStore``). Rules:

* **What is a leftover.** A chunk is written, fsync'd and renamed onto its content
  address *before* the metadata that references it commits (docs/ARCHITECTURE.md,
  "Durability contract"). A ``kill -9`` between the two -- in a PUT, a part of a
  multipart upload, a streamed BSET -- leaves a chunk file no version or part references:
  an orphan. It is harmless (``kvbox fsck`` reports it as a note) but holds disk space.
  Temporary files of interrupted chunk writes are removed at start-up by the blob store.
* **When.** The first sweep runs ``delay`` seconds after start-up and then every
  ``delay`` seconds (``kvbox serve --leftover-delay``, default ``DEFAULT_DELAY``); it only
  considers chunk files last written more than ``delay`` seconds ago.
* **Why that is safe against writes in flight.** Deletion goes through
  ``Store.remove_orphans``, which re-checks under the Store's chunk lock that nothing
  references *or pins* each chunk; a write pins every chunk in the same locked step
  that installs it and keeps it pinned until its metadata commit returned (after which
  the chunk is referenced). The age condition is a second, independent guard: a chunk
  still being written is younger than the delay, whatever the code path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.periodic import Periodic
from kvbox.core.store import Store

log = logging.getLogger("kvbox.leftovers")

#: Seconds after start-up before the first sweep, between sweeps, and the least age of a
#: chunk file a sweep may remove: an hour, far beyond any write's time between writing a
#: chunk and committing it, and a start-up that is not slowed by a scan of every chunk.
DEFAULT_DELAY: Final = 3600.0


class LeftoverSweeper:
    """Runs ``sweep`` every ``delay`` seconds until ``stop``."""

    def __init__(self, store: Store, blobs: LocalDirBlobStore, delay: float) -> None:
        self.store = store
        self.blobs = blobs
        self.delay = delay
        self.removed = 0
        self._periodic = Periodic("kvbox-leftover-sweep", self.sweep, delay, on_error=self._failed)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def sweep(self) -> int:
        """One pass: orphan chunk files older than the delay are removed; how many."""
        old = await asyncio.to_thread(self.blobs.chunks_older_than, self.delay)
        removed = await self.store.remove_orphans(old) if old else 0
        if removed:
            self.removed += removed
            log.info("removed %d orphan chunks left by an interrupted write", removed)
        return removed

    @staticmethod
    def _failed(exc: Exception) -> None:
        # A bad sweep must not end the server; the next one retries.
        log.error("leftover sweep failed", exc_info=exc)
