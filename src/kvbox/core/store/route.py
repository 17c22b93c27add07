"""Journal or direct: the one decision about where a write goes, and the order of both.

Layer: core. Rules (docs/ARCHITECTURE.md, "Durability"):

* ``journaled`` alone says whether plain small writes into a bucket go through the
  write-ahead journal (``kvbox.core.journal``: acknowledged after one fsync'd append)
  or straight to ``MetaStore.commit``. No front door asks; they hand writes to the
  ``Store``, which asks here.
* Every write that does not go through the journal (``commit``, ``exclusive``) first
  lets every acknowledged journal write be applied, and no new one starts until it is
  committed: the MetaStore sees writes in acknowledgement order, whichever way each went.
* Every read the memtable cannot answer (listings, versions, stats) ``settle``s first,
  for the same reason.
* What an applied batch changes is pushed into the read cache, and the chunks it freed
  are collected, exactly as for a direct commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from kvbox.core.journal import JournalWrites
from kvbox.core.journal.memtable import Memtable
from kvbox.core.meta import MetaStore
from kvbox.core.model import Bucket, Versioning, WriteOp, WriteResult
from kvbox.core.store.cache import Key, ReadCache
from kvbox.core.store.chunks import Chunks


class Route:
    """Where writes go, and the barrier between the journal and direct writes."""

    def __init__(
        self, meta: MetaStore, cache: ReadCache, chunks: Chunks, journal_dir: Path | None
    ) -> None:
        self.meta = meta
        self._cache = cache
        self._chunks = chunks
        #: Where the journal lives; None: every write commits to the MetaStore directly.
        self.journal_dir = journal_dir
        #: The journal once open (None without one).
        self.journal: JournalWrites | None = None

    @property
    def memtable(self) -> Memtable | None:
        return None if self.journal is None else self.journal.memtable

    async def open(self) -> None:
        """Open the journal, replaying what it holds into the MetaStore (opened first)."""
        if self.journal_dir is None:
            return
        journal = JournalWrites(
            self.meta, self.journal_dir, on_applied=self._applied, on_dropped=self._dropped
        )
        await journal.open()
        self.journal = journal

    async def close(self) -> None:
        if self.journal is not None:
            await self.journal.close()
            self.journal = None

    def journaled(self, b: Bucket) -> bool:
        """Whether plain small writes into ``b`` go through the journal right now.

        Only into a bucket that never had versioning: a journal record stands for a new
        null version replacing the key's previous one, which is what every write there
        is (a SUSPENDED bucket keeps older non-null versions the record knows nothing
        of). And only while the journal can take them (``JournalWrites.ready``: it works,
        and no direct write is waiting for it to drain).
        """
        j = self.journal
        return j is not None and b.versioning is Versioning.OFF and j.ready()

    def _applied(self, results: list[WriteResult]) -> None:
        self._cache.generation += 1
        put_newer = self._cache.put_newer
        freed: list[str] = []
        for r in results:
            (v,) = r.written
            put_newer((v.bucket, v.key), v)
            freed.extend(r.freed_chunks)
        self._chunks.collect_later(freed)

    def _dropped(self, keys: Sequence[Key]) -> None:
        for k in keys:
            self._cache.pop(k)

    async def settle(self) -> None:
        """Before a read the memtable can't answer: apply every acknowledged write."""
        if self.journal is not None:
            await self.journal.settle()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Around a write that doesn't go through the journal: journal writes in flight
        are applied first, and no new one starts until this write is committed."""
        j = self.journal
        if j is None:
            yield
            return
        j.direct_begin()
        try:
            await j.drain()
            yield
        finally:
            j.direct_end()

    async def commit(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Direct writes committed to the MetaStore, in order after the journal's; the
        chunks they free are collected."""
        # ``exclusive`` spelled out: this is every direct write's path (S3 PUTs among
        # them), and an async context manager costs a generator per call.
        j = self.journal
        if j is not None:
            j.direct_begin()
        try:
            if j is not None and j.pending:
                await j.drain()
            results = await self.meta.commit(ops)
        finally:
            if j is not None:
                j.direct_end()
            self._cache.generation += 1
        freed = [c for r in results for c in r.freed_chunks]
        if freed:
            self._chunks.collect_later(freed)
        return results
