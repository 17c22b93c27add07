"""The background scrubber: ``kvbox fsck --verify``'s checks while the server serves.

Layer: core (one background task over the ``Store``'s MetaStore and BlobStore). Rules:

* **Off by default** (``kvbox serve --scrub-interval SECONDS``; 0: never). A pass starts
  that long after the server starts and after the previous pass ended; passes never
  overlap. A pass checks what ``kvbox fsck --verify`` checks, without changing anything:
  the metadata storage's own check (SQLite's ``integrity_check``), every bucket's
  counters against its rows (one snapshot each), every version's inline value against
  its checksum, and every chunk a version references against its address (each chunk
  once per pass, however many versions share it).
* **Rate-limited**: chunk bytes are read at most ``RATE`` bytes a second, and the walk
  yields to the event loop between pages, so a pass over a large store costs the
  clients a bounded share of the disk and the CPU. Values in the journal's memtable
  (not yet applied) are checked once applied, by a later pass.
* **What it finds is reported, never repaired**: each damaged object version is logged
  once (``DamageLog.found``: the same ERROR line a damaged read writes) and counted in
  ``ScrubStats``; a drifted counter or a complaint of the database's check is logged as
  a WARNING. Repair stays an operator's decision: ``kvbox fsck --repair`` on the stopped
  server, or re-uploading what the log names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Final

from kvbox.core.blob import BlobStore
from kvbox.core.fsck import all_versions
from kvbox.core.integrity import DamageLog, value_sound
from kvbox.core.meta import MetaStore
from kvbox.core.periodic import Periodic
from kvbox.errors import DataDamaged, KvboxError

log = logging.getLogger("kvbox.scrub")

#: Chunk bytes read per second at most.
RATE: Final = 32 * 1024 * 1024
#: Versions checked between two yields to the event loop.
YIELD_EVERY: Final = 200


@dataclass
class ScrubStats:
    """What the scrubber did, for ``/metrics`` (``server/storage.py``)."""

    passes: int = 0
    running: bool = False
    #: The current pass's progress (the last pass's totals once it ended).
    pass_versions: int = 0
    pass_bytes: int = 0
    versions_total: int = 0
    bytes_total: int = 0
    last_pass_end: float = 0.0
    last_pass_seconds: float = 0.0
    #: Damage found, by kind: ``chunk``, ``value``, ``database``, ``counters``.
    damaged: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("chunk", "value", "database", "counters"), 0)
    )
    errors: int = 0


class Scrubber:
    """The background task (module docstring)."""

    def __init__(
        self, meta: MetaStore, blobs: BlobStore, damage: DamageLog, interval: float
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.damage = damage
        self.interval = interval
        self.stats = ScrubStats()
        self._periodic = Periodic("kvbox-scrub", self.scrub, interval, on_error=self._failed)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def _failed(self, exc: Exception) -> None:
        """A pass that failed: counted; the next pass tries again."""
        self.stats.errors += 1
        if isinstance(exc, KvboxError):  # a failure of the store, said in one line
            log.error("scrub pass failed: %s", exc)
        else:
            log.error("scrub pass failed", exc_info=exc)

    async def scrub(self) -> None:
        """One whole pass."""
        st = self.stats
        st.running = True
        st.pass_versions = st.pass_bytes = 0
        t0 = time.monotonic()
        try:
            for complaint in await self.meta.check_storage():
                st.damaged["database"] += 1
                log.error("scrub: the metadata database is damaged: %s", complaint)
            seen: dict[str, bool] = {}
            for b in await self.meta.list_buckets():
                stored, counted = await self.meta.recount(b.name)
                if stored != counted:
                    st.damaged["counters"] += 1
                    log.warning(
                        "scrub: bucket %s counters say %d objects, %d bytes; its rows hold "
                        "%d objects, %d bytes (kvbox fsck --repair corrects them)",
                        b.name,
                        stored.objects,
                        stored.bytes,
                        counted.objects,
                        counted.bytes,
                    )
                await self._walk(b.name, seen)
        finally:
            st.running = False
            st.passes += 1
            st.last_pass_end = time.time()
            st.last_pass_seconds = time.monotonic() - t0

    async def _walk(self, bucket: str, seen: dict[str, bool]) -> None:
        st = self.stats
        n = 0
        async for v in all_versions(self.meta, bucket):
            n += 1
            st.pass_versions += 1
            st.versions_total += 1
            if not value_sound(v):
                st.damaged["value"] += 1
                self.damage.found(
                    DataDamaged(
                        "the inline value does not match its checksum",
                        bucket=v.bucket,
                        key=v.key,
                        version_id=v.version_id,
                    )
                )
            for c in v.chunks:
                sound = seen.get(c.chunk_id)
                if sound is None:  # each chunk read once a pass, however many share it
                    sound = seen[c.chunk_id] = await self.blobs.verify(c.chunk_id)
                    st.pass_bytes += c.size
                    st.bytes_total += c.size
                    await asyncio.sleep(c.size / RATE)
                if not sound:
                    st.damaged["chunk"] += 1
                    self.damage.found(
                        DataDamaged(
                            f"chunk {c.chunk_id} is missing or does not hash to its address",
                            bucket=v.bucket,
                            key=v.key,
                            version_id=v.version_id,
                            chunk_id=c.chunk_id,
                        )
                    )
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
