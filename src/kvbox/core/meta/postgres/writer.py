"""The PostgreSQL store's writer: group commit of a gateway's writes, retried on lost races.

Layer: core (storage of ``kvbox.core.meta.postgres``). Rules:

* **One writer task per store** takes every write queued while the previous
  transaction ran (up to ``MAX_BATCH_OPS`` ops) and runs them in ONE transaction on one
  pooled connection: the keys the batch's ops name are locked and loaded with a few
  statements, each job runs the shared rules on the overlay (``PgTxn``, through
  ``txn.run_loading``), the net changes are written with a few more, and one COMMIT
  serves them all, as SQLite's writer shares one fsync.
* **Durability**: a future resolves only after COMMIT returned, i.e. after PostgreSQL
  made the transaction durable (its WAL flushed, or replicated, as the server is set
  up); that is when a write is acknowledged.
* **Races between gateways** are PostgreSQL's to decide: row locks order writers of
  one key; a transaction that lost a race on a row that did not exist yet (a unique
  violation), a deadlock or a serialization failure is run again from the start, as a
  whole, on fresh rows (``kvbox.core.pg.retryable``), at most ``MAX_ATTEMPTS`` times.
* **Failure isolation**: a job that raises a ``KvboxError`` changed nothing (the rules
  check first; the overlay undoes the rest), so its neighbours commit. A failure of the
  database (connection lost, server down) fails the whole batch with ``StorageError``:
  none of it was acknowledged, and whether it committed is for the client's retry to
  find out, exactly as with any database.
* A caller cancelled while waiting does not undo its write: it is applied (or not)
  exactly as if the caller had waited.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import asyncpg

from kvbox.core.meta import rules
from kvbox.core.meta.postgres.rows import Connection
from kvbox.core.meta.postgres.txn import PgTxn
from kvbox.core.meta.txn import MetaTxn, run_loading
from kvbox.core.model import AtomicOp, PutOp, VersionIdGenerator, WriteOp
from kvbox.core.pg import PgUrl, retryable, translate
from kvbox.errors import KvboxError, StorageError

log = logging.getLogger("kvbox.meta")

#: Ops per transaction: enough that one commit serves a burst of small writes, few
#: enough that a batch holds its row locks for milliseconds, not seconds.
MAX_BATCH_OPS: Final = 1024
#: Runs of one batch before a lost race is reported as an error (each run waits a
#: little longer, with jitter, so two gateways stop colliding).
MAX_ATTEMPTS: Final = 12


class _Job:
    __slots__ = ("failed", "fn", "future", "ops", "outcome", "weight")

    def __init__(
        self, fn: Callable[[MetaTxn[Any]], object], ops: Sequence[WriteOp], weight: int
    ) -> None:
        self.fn = fn
        self.ops = ops
        self.weight = weight
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.outcome: object = None
        self.failed = False


class Writer:
    """The writer task and the queue in front of it (module docstring)."""

    def __init__(self, pool: asyncpg.Pool, url: PgUrl, stripe: int, origin: str) -> None:
        self.pool = pool
        self.url = url
        self.stripe = stripe
        self.origin = origin
        self.ids = VersionIdGenerator()
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._open = False
        #: Committed transactions and reruns after a lost race (for tests and metrics).
        self.commits = 0
        self.retries = 0

    def start(self) -> None:
        self._open = True
        self._task = asyncio.create_task(self._main(), name="kvbox-meta-pg-writer")

    async def stop(self) -> None:
        """Commit what was submitted, then end the task."""
        self._open = False
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def run(
        self, fn: Callable[[MetaTxn[Any]], object], weight: int = 1, ops: Sequence[WriteOp] = ()
    ) -> Any:
        """``fn``'s outcome once the transaction that ran it has committed."""
        if not self._open:
            raise StorageError("metadata store is not open")
        job = _Job(fn, ops, weight)
        self._queue.append(job)
        self._wake.set()
        return await job.future

    async def _main(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[_Job] = []
                weight = 0
                while self._queue and weight < MAX_BATCH_OPS:
                    job = self._queue.pop(0)
                    batch.append(job)
                    weight += job.weight
                await self._run_batch(batch)
            if not self._open:
                return

    async def _run_batch(self, jobs: list[_Job]) -> None:
        delay = 0.002
        try:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    async with self.pool.acquire() as conn:
                        await self._transaction(conn, jobs)
                    self.commits += 1
                    break
                except Exception as exc:
                    if retryable(exc) and attempt + 1 < MAX_ATTEMPTS:
                        self.retries += 1
                        await asyncio.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, 0.2)
                        continue
                    raise
        except Exception as exc:  # the database failed: nothing of the batch is acknowledged
            if not isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                log.exception("metadata batch failed")
            err = StorageError(f"metadata commit failed: {translate(exc, self.url)}")
            for job in jobs:
                job.failed = True
                job.outcome = err
        for job in jobs:
            if job.future.done():  # the caller was cancelled; the write still happened
                continue
            if job.failed:
                job.future.set_exception(job.outcome)  # type: ignore[arg-type]
            else:
                job.future.set_result(job.outcome)

    async def _transaction(self, conn: Connection, jobs: list[_Job]) -> None:
        async with conn.transaction():
            txn = PgTxn(conn, self.ids, self.stripe, self.origin)
            await _prefetch(txn, jobs)
            for job in jobs:
                try:
                    job.outcome = await run_loading(txn, job.fn)
                    job.failed = False
                except KvboxError as exc:
                    job.outcome = exc
                    job.failed = True
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    raise  # the transaction is broken: the batch fails or reruns
                except Exception as exc:  # a bug in a rules run: it was undone, alone
                    log.exception("metadata write failed")
                    job.outcome = StorageError(f"metadata write failed: {exc}")
                    job.failed = True
            await txn.flush()


def _put_ids(ops: Sequence[WriteOp]) -> Iterator[tuple[str, str, str]]:
    """(bucket, key, version id) of every version the ops PUT."""
    for op in ops:
        if isinstance(op, PutOp):
            v = op.version
            yield v.bucket, v.key, v.version_id
        elif isinstance(op, AtomicOp):
            yield from _put_ids(op.ops)


async def _prefetch(txn: PgTxn, jobs: list[_Job]) -> None:
    """Lock and load, with a handful of statements, what the batch's ops will read: their
    buckets, their keys, and enough version numbers (taken after the key locks)."""
    pairs = [kk for job in jobs for kk in rules.keys_of(job.ops)]
    if not pairs:
        return
    await txn.load_buckets({b for b, _ in pairs})
    held = []
    for name, key in pairs:
        b = txn.buckets.get(name)
        if b is not None:
            held.append((b, key))
    await txn.load_keys(held, [p for job in jobs for p in _put_ids(job.ops)])
    txn.seq_want = len(pairs)
    await txn.load_seqs()
