"""Small writes through the journal: submission, the memtable, the applier, the barrier.

Layer: core. This is the one home of the journal's promises inside a running server
(``log.Journal`` keeps the files, ``codec`` the bytes, ``replay`` the recovery):

* **Acknowledged = durable.** ``submit`` encodes one record per write (``codec``) and
  hands them to the log; their future resolves once the frame holding them was
  fsync'd, and at that moment (the log's hook, in LSN order) they enter the memtable.
* **Readable at once.** Single-key reads ask ``Memtable.get`` first.
* **Applied in the background.** The applier commits the memtable to the MetaStore,
  every ``APPLY_INTERVAL`` or sooner when it grows (``memtable``'s bounds), one PutOp per
  key in ONE ``MetaStore.commit`` that also stores the journal LSN it covers; then the
  segments it covered are deleted.
* **The barrier.** A write that does not go through the journal (``Store`` decides
  which do) runs between ``direct_begin`` and ``direct_end``: while any does, no new
  journaled write is accepted (``ready``), and it first waits for journaled writes in
  flight and has the memtable applied (``drain``). A read the memtable cannot answer
  alone calls ``settle``. So the MetaStore sees every write in acknowledgement order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from kvbox.core.integrity import crc32c
from kvbox.core.journal.codec import record_pieces
from kvbox.core.journal.log import Journal
from kvbox.core.journal.memtable import Key, Memtable, Pending
from kvbox.core.journal.replay import open_journal
from kvbox.core.meta import MetaStore
from kvbox.core.model import Bucket, PutOp, WriteOp, WriteResult
from kvbox.errors import InvalidArgument, KvboxError, NotFound, StorageError, ValueTooLarge

log = logging.getLogger(__name__)

#: The applier commits the memtable at least this often (seconds), and sooner when the
#: memtable says so. Longer means fewer commits of hot keys (each key once per interval:
#: at 100,000 SETs/s over 10,000 keys, the SQLite writer's share of the GIL halves from
#: 1 s to 2 s) and more journal to read after a crash (bounded by ``JOURNAL_SOFT``).
APPLY_INTERVAL: Final = 2.0
#: Memtable entries turned into ops between two yields to the event loop.
APPLY_SLICE: Final = 1000

#: What ``submit`` gives back: each item's version id (or its error) at once, and a
#: future that resolves (or fails) when they are durable.
Submitted = tuple[list[str | KvboxError], "asyncio.Future[int]"]


def _done_future(value: int) -> asyncio.Future[int]:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _consume_result(task: asyncio.Future[None]) -> None:
    """Mark a task's outcome as seen: its awaiter may be gone (cancelled)."""
    if not task.cancelled():
        task.exception()


class JournalWrites:
    """The journal of one Store (module docstring). ``on_applied`` gets the results of
    every apply, empty if it failed (the Store refreshes its cache, collects freed
    chunks, and counts a write either way); ``on_dropped`` the keys of an apply that
    lost some ops (their cache entries go)."""

    def __init__(
        self,
        meta: MetaStore,
        path: Path,
        *,
        on_applied: Callable[[list[WriteResult]], None],
        on_dropped: Callable[[Sequence[Key]], None],
    ) -> None:
        self.meta = meta
        self.path = path
        self.memtable = Memtable()
        self._on_applied = on_applied
        self._on_dropped = on_dropped
        self._log: Journal | None = None
        #: Writes that must not be overtaken by journaled ones are running.
        self._direct = 0
        self._apply_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._applier: asyncio.Task[None] | None = None
        self._closing = False
        #: An apply was cancelled while its commit ran (only the loop's teardown can do
        #: that, see ``apply``), so whether it happened is unknown: no later write or
        #: apply may go on in this process; the next start replays the journal.
        self.lost = False

    @property
    def log(self) -> Journal | None:
        """The journal's files (None until open, and after close)."""
        return self._log

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Replay what a crash left (``replay.open_journal``), then start the applier."""
        self._log = await open_journal(self.meta, self.path)
        self._applier = asyncio.create_task(self._apply_loop(), name="kvbox-journal-apply")

    async def close(self) -> None:
        """Stop the applier and apply what is left: a clean stop leaves nothing to
        replay."""
        if self._applier is not None:
            self._closing = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._applier  # it finishes the apply it is in, then stops
            self._applier = None
        if self._log is not None:
            await self._log.wait_idle()
            try:
                await self.apply()
            except Exception:
                log.exception("journal: the last apply failed; the next start replays it")
            finally:
                await self._log.close()
                self._log = None

    # --- accepting writes -------------------------------------------------------------

    def ready(self) -> bool:
        """Whether a journaled write may be submitted now: the journal works and no
        direct write is in progress. (Whether a write *should* be journaled is the
        Store's decision; this is whether it *can*.)"""
        j = self._log
        return j is not None and self._direct == 0 and j.broken is None and not self.lost

    def submit(
        self, bucket: Bucket, items: Sequence[tuple[str, bytes]], ids: list[str], limit: int
    ) -> Submitted:
        """Journal ``items`` (key, value) as new null versions of ``bucket``'s keys, with
        ``ids`` as their version ids; a value over ``limit`` bytes gets ``ValueTooLarge``
        instead (and wastes its id). Only when ``ready()``."""
        journal = self._log
        assert journal is not None
        bucket_name = bucket.name
        bb = bucket_name.encode()
        now = time.time_ns()
        out: list[str | KvboxError] = []
        pieces: list[bytes] = []
        entries: list[tuple[Key, Pending]] = []
        ids_iter = iter(ids)
        # ``submit`` below, with nothing in between that could let another batch in,
        # gives these records the LSNs from ``next_lsn`` on.
        lsn = journal.next_lsn
        total = 0
        for key, data in items:
            n = len(data)
            if n > limit:
                out.append(ValueTooLarge("value too large for a batched write"))
                continue
            vid = next(ids_iter)
            total += n
            crc = crc32c(data)  # the value's checksum, from here to its metadata row
            pieces += record_pieces(bb, key.encode(), vid.encode(), now, data, crc)
            entries.append(((bucket_name, key), (lsn, vid, now, data, crc)))
            lsn += 1
            out.append(vid)
        if entries:
            return out, journal.submit(pieces, len(entries), self._on_durable(entries, total))
        return out, _done_future(lsn)

    def _on_durable(self, entries: list[tuple[Key, Pending]], nbytes: int) -> Callable[[int], None]:
        def hook(first: int) -> None:
            if self.memtable.add(entries, nbytes):
                self._wake.set()

        return hook

    # --- the barrier ------------------------------------------------------------------

    def direct_begin(self) -> None:
        """A direct write starts: no journaled write is accepted until ``direct_end``."""
        if self.lost:
            raise StorageError("an interrupted journal apply needs a restart of kvbox")
        self._direct += 1

    def direct_end(self) -> None:
        self._direct -= 1

    @property
    def pending(self) -> bool:
        """Journaled writes are in flight or not yet applied."""
        j = self._log
        return self.memtable.pending or (j is not None and j.busy)

    async def drain(self) -> None:
        """Inside ``direct_begin``/``direct_end``: wait for journaled writes in flight and
        apply everything acknowledged, so a direct write lands after all of them."""
        if self._log is not None:
            await self._log.wait_idle()
            await self.settle()

    async def settle(self) -> None:
        """Before a read the memtable can't answer: apply every acknowledged write."""
        if self.memtable.pending or self.lost:
            await self.apply()

    # --- the applier ------------------------------------------------------------------

    async def _apply_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), APPLY_INTERVAL)
            self._wake.clear()
            if not self.memtable.live or self._closing:
                continue
            try:
                await self.apply()
            except Exception:
                log.exception("journal: applying the memtable failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def apply(self) -> None:
        """Commit the memtable to the MetaStore, with the journal LSN it covers.

        The work runs in a task of its own, so a caller cancelled while waiting (a
        client gone, a timeout) never leaves it half done: an apply whose commit may or
        may not have happened would make every later step guesswork.
        """
        if self.lost:
            raise StorageError("an interrupted journal apply needs a restart of kvbox")
        task = asyncio.ensure_future(self._apply_locked())
        task.add_done_callback(_consume_result)
        await asyncio.shield(task)

    async def _apply_locked(self) -> None:
        async with self._apply_lock:
            table = self.memtable
            journal = self._log
            if not table.live or journal is None or self.lost:
                return
            # On durability, records enter the memtable at once and in LSN order, so it
            # now holds (the newest of) every record up to ``durable_lsn``.
            lsn = journal.durable_lsn
            frozen = table.freeze()
            results: list[WriteResult] = []
            try:
                ops = await self._ops(frozen)
                results = await self.meta.commit(ops, journal_lsn=lsn)
            except (NotFound, InvalidArgument) as exc:  # one op failed, the rest is in
                log.error("journal: applying the memtable: %s", exc)
                self._on_dropped(list(frozen))
            except asyncio.CancelledError:
                # The commit may still happen (MetaStore.commit isn't undone by a
                # cancel); only a replay from the journal at the next start can tell.
                self.lost = True
                raise
            except BaseException:
                # Nothing was applied (the commit failed as a whole: StorageError):
                # back into the memtable, under newer entries, for the next try.
                table.thaw(frozen)
                raise
            finally:
                table.applied()
                # Also after a failure: the MetaStore may have changed (a cancelled
                # commit), so reads that started before must not fill the cache.
                self._on_applied(results)
        await journal.release(lsn)

    async def _ops(self, frozen: dict[Key, Pending]) -> list[WriteOp]:
        """The memtable as PutOps. Built a slice at a time, letting the loop serve
        requests in between: each op costs an MD5 of its value. Their order doesn't
        matter: one commit, one op per key."""
        items = list(frozen.items())
        version = self.memtable.version
        ops: list[WriteOp] = []
        for i in range(0, len(items), APPLY_SLICE):
            if i:
                await asyncio.sleep(0)
            ops.extend(PutOp(version(k, e)) for k, e in items[i : i + APPLY_SLICE])
        return ops
