"""The PostgreSQL store's writer: group commit of a gateway's writes, several batches in
flight, each retried whole on a lost race.

Layer: core (storage of ``kvbox.core.meta.postgres``). Rules:

* **Batches.** Every write queued while no batch slot was free (up to ``MAX_BATCH_OPS``
  ops) runs in ONE transaction on one pooled connection: the keys the batch's ops name are
  locked and loaded with a few statements, each job runs the shared rules on the overlay
  (``PgTxn``, through ``txn.run_loading``), the net changes are written with a few more,
  and one COMMIT serves them all, as SQLite's writer shares one fsync.
* **Several in flight.** Up to ``MAX_INFLIGHT`` batches run at once. A batch spends
  nearly all its time waiting on round trips, so one at a time left the database and the
  gateway idle while 50 clients queued behind it; with a few, their round trips overlap.
  A job whose keys a batch in flight writes waits for it (``Writer._take``): so jobs on
  one key commit in the order they were submitted, as with one batch at a time, and a
  gateway's batches do not queue on each other's key locks. A multipart upload's own
  changes are keyed by the upload (``upload_scope``); a job of unknown keys (a bucket
  or user change) runs with no other batch in flight. Against other
  gateways the batches are plain transactions: PostgreSQL's row lock on a key's
  ``heads`` row (or a unique index, for a key's first version) orders them. Row locks
  are taken in one order (bucket, key; chunk id) within each statement, the chunks a
  batch's PUTs reference with those of the versions it loads, and each batch has its
  own counter stripe (``PgTxn.stripe``), so deadlocks are rare (two batches sharing
  chunks they reach in different statements); PostgreSQL breaks one after its
  ``deadlock_timeout`` and the loser reruns.
* **Order.** Requests on one GW-KV connection (or one S3 request's writes) take effect in
  order because the front door submits a write only once the earlier ones it must follow
  have committed (``Store.submit_batch``'s ``previous``/``after``); two writes in flight
  at once are concurrent requests, ordered by PostgreSQL. Version numbers are taken after
  the key locks (``PgTxn.next_seq``), so a key's versions are numbered in commit order
  whichever batch or gateway wrote them.
* **Durability**: a future resolves only after COMMIT returned, i.e. after PostgreSQL
  made the transaction durable (its WAL flushed, or replicated, as the server is set
  up); that is when a write is acknowledged.
* **Races between gateways** (or batches) are PostgreSQL's to decide: row locks order
  writers of one key; a transaction that lost a race on a row that did not exist yet (a
  unique violation), a deadlock or a serialization failure is run again from the start,
  as a whole, on fresh rows (``kvbox.core.pg.retryable``), at most ``MAX_ATTEMPTS`` times.
* **Failure isolation**: a job that raises a ``KvboxError`` changed nothing (the rules
  check first; the overlay undoes the rest), so its neighbours commit. A database that
  cannot be reached (refused, lost, shutting down) fails the whole batch with
  ``MetaUnavailable`` (a 503 clients retry: nothing was applied), any other database
  failure with ``StorageError``: none of it was acknowledged. If the connection died
  during the COMMIT, whether it committed is unknown, so that is a ``StorageError`` (a
  500, promising nothing) even when the database then proves unreachable, and the
  client's retry finds out, exactly as with any database. A pooled connection found
  dead before the COMMIT (the server restarted since it was opened) costs one rerun on
  a fresh connection, not a failed write.
* A caller cancelled while waiting does not undo its write: it is applied (or not)
  exactly as if the caller had waited.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, Final

import asyncpg

from kvbox.core.meta import rules
from kvbox.core.meta.postgres.rows import Connection
from kvbox.core.meta.postgres.txn import STRIPES, PgTxn
from kvbox.core.meta.txn import MetaTxn, run_loading
from kvbox.core.model import AtomicOp, ObjectVersion, PutOp, VersionIdGenerator, WriteOp
from kvbox.core.pg import DRIVER_ERRORS, PgUrl, retryable, translate, unreachable
from kvbox.errors import KvboxError, MetaUnavailable, StorageError

log = logging.getLogger("kvbox.meta")

#: Ops per transaction: enough that one commit serves a burst of small writes, few
#: enough that a batch holds its row locks for milliseconds, not seconds.
MAX_BATCH_OPS: Final = 1024
#: Batches in flight at once per gateway: enough that the round trips of a few overlap
#: (a batch is a handful of them plus a COMMIT, each mostly waiting), few enough that
#: they hold at most this many of the pool's connections (``DEFAULT_POOL``: the rest
#: serve reads) and that batches of one gateway seldom queue on each other's row locks.
#: Measured in docs/benchmarks.md ("Metadata in PostgreSQL").
MAX_INFLIGHT: Final = 4
#: Runs of one batch before a lost race is reported as an error (each run waits a
#: little longer, with jitter, so two gateways stop colliding).
MAX_ATTEMPTS: Final = 12


#: A key a job writes: (bucket, key).
_Key = tuple[str, str]


def upload_scope(upload_id: str) -> frozenset[_Key]:
    """What a change of one multipart upload alone (create, a part, abort) writes, for
    ``Writer.run``: no object key, so it runs beside other batches, in order with the
    upload's other changes (no bucket is named "", so this is no object key)."""
    return frozenset({("", upload_id)})


class _Job:
    __slots__ = ("failed", "fn", "future", "keys", "ops", "outcome", "weight")

    def __init__(
        self,
        fn: Callable[[MetaTxn[Any]], object],
        ops: Sequence[WriteOp],
        weight: int,
        keys: frozenset[_Key] | None,
    ) -> None:
        self.fn = fn
        self.ops = ops
        self.weight = weight
        #: The keys the job writes, or None: unknown (a bucket or user change), so it
        #: runs with no other batch in flight.
        self.keys = keys if keys is not None or not ops else frozenset(rules.keys_of(ops))
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.outcome: object = None
        self.failed = False


class Writer:
    """The batch slots and the queue in front of them (module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        url: PgUrl,
        stripe: int,
        origin: str,
        inflight: int = MAX_INFLIGHT,
    ) -> None:
        self.pool = pool
        self.url = url
        self.origin = origin
        self.ids = VersionIdGenerator()
        self._queue: deque[_Job] = deque()
        #: Free batch slots, each with its own stripe of the bucket counters, so that
        #: two batches in flight never wait on one ``bucket_counts`` row.
        self._slots = [(stripe + i) % STRIPES for i in range(max(1, inflight))]
        self._running: set[asyncio.Task[None]] = set()
        #: Keys written by batches in flight (how many of them write each).
        self._busy: Counter[_Key] = Counter()
        #: A batch with a job of unknown keys is in flight: it runs alone.
        self._exclusive = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = False
        #: Committed transactions and reruns after a lost race (for tests and metrics).
        self.commits = 0
        self.retries = 0
        #: The most batches that were ever in flight at once (for tests).
        self.peak_inflight = 0

    def start(self) -> None:
        self._open = True

    async def stop(self) -> None:
        """Commit what was submitted, then return."""
        self._open = False
        await self._idle.wait()

    async def run(
        self,
        fn: Callable[[MetaTxn[Any]], object],
        weight: int = 1,
        ops: Sequence[WriteOp] = (),
        keys: frozenset[_Key] | None = None,
    ) -> Any:
        """``fn``'s outcome once the transaction that ran it has committed. ``keys``:
        what it writes when ``ops`` cannot say (``upload_scope``); by default the keys
        of ``ops``, and none known without them."""
        if not self._open:
            raise StorageError("metadata store is not open")
        job = _Job(fn, ops, weight, keys)
        self._queue.append(job)
        self._dispatch()
        return await job.future

    def _dispatch(self) -> None:
        """Start a batch in every free slot while queued jobs may run (``_take``)."""
        while self._queue and self._slots and not self._exclusive:
            batch, keys, exclusive = self._take()
            if not batch:
                return
            stripe = self._slots.pop()
            for k in keys:
                self._busy[k] += 1
            self._exclusive = exclusive
            task = asyncio.create_task(self._run_batch(batch, stripe), name="kvbox-meta-pg-batch")
            self._running.add(task)
            self._idle.clear()
            self.peak_inflight = max(self.peak_inflight, len(self._running))
            task.add_done_callback(partial(self._batch_done, stripe, keys))

    def _take(self) -> tuple[list[_Job], set[_Key], bool]:
        """The next batch: queued jobs, in order, up to ``MAX_BATCH_OPS``, that do not
        write a key a batch in flight writes, nor one a job left queued before them does
        (so jobs on one key commit in the order they were submitted, and batches of one
        gateway do not queue on each other's key locks; chunk rows they share still
        order them, in PostgreSQL). A job of unknown keys goes only
        with nothing in flight and nothing left before it, and then its batch runs alone
        (``exclusive``); nothing after it is taken while it waits. Jobs left stay queued
        in their order."""
        taken: list[_Job] = []
        keys: set[_Key] = set()
        exclusive = False
        left: deque[_Job] = deque()
        skipped: set[_Key] = set()
        busy = self._busy
        weight = 0
        stop = False
        for job in self._queue:
            if stop or weight >= MAX_BATCH_OPS:
                left.append(job)
                continue
            jk = job.keys
            if jk is None:
                if self._running or left:
                    left.append(job)
                    stop = True
                    continue
                exclusive = True
            elif any(k in busy or k in skipped for k in jk):
                left.append(job)
                skipped.update(jk)
                continue
            else:
                keys.update(jk)
            taken.append(job)
            weight += job.weight
        self._queue = left
        return taken, keys, exclusive

    def _batch_done(self, stripe: int, keys: set[_Key], task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.append(stripe)
        busy = self._busy
        for k in keys:
            n = busy[k] - 1
            if n:
                busy[k] = n
            else:
                del busy[k]
        if self._exclusive and not self._running:
            self._exclusive = False
        self._dispatch()
        if not self._running:
            self._idle.set()

    async def _run_batch(self, jobs: list[_Job], stripe: int) -> None:
        delay = 0.002
        fresh_rerun = True
        run = _Attempt()
        try:
            for attempt in range(MAX_ATTEMPTS):
                run = _Attempt()
                try:
                    async with self.pool.acquire() as conn:
                        run.connected = True
                        await self._transaction(conn, jobs, stripe, run)
                    self.commits += 1
                    break
                except Exception as exc:
                    if attempt + 1 == MAX_ATTEMPTS:
                        raise
                    if retryable(exc):
                        self.retries += 1
                        await asyncio.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, 0.2)
                        continue
                    if fresh_rerun and run.connected and not run.committing and unreachable(exc):
                        # A pooled connection that died with the server (a restart, a
                        # failover) fails at its first statement, before any COMMIT:
                        # nothing was applied, so the batch runs once more on a fresh
                        # connection rather than failing writes a live server can take.
                        fresh_rerun = False
                        self.retries += 1
                        continue
                    raise
        except Exception as exc:  # the database failed: nothing of the batch is acknowledged
            if not isinstance(exc, DRIVER_ERRORS):
                log.exception("metadata batch failed")
            cause = translate(exc, self.url)
            err: KvboxError
            if isinstance(cause, MetaUnavailable) and not run.committing:
                err = cause  # refused before any COMMIT: nothing was applied (a 503)
            elif run.committing:  # an answer that promises nothing either way (a 500)
                err = StorageError(
                    f"metadata commit failed during COMMIT, so the write may or may not"
                    f" have been applied: {cause}"
                )
            else:
                err = StorageError(f"metadata commit failed: {cause}")
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

    async def _transaction(
        self, conn: Connection, jobs: list[_Job], stripe: int, run: _Attempt
    ) -> None:
        async with conn.transaction():
            txn = PgTxn(conn, self.ids, stripe, self.origin)
            await _prefetch(txn, jobs)
            for job in jobs:
                try:
                    job.outcome = await run_loading(txn, job.fn)
                    job.failed = False
                except KvboxError as exc:
                    job.outcome = exc
                    job.failed = True
                except DRIVER_ERRORS:
                    raise  # the transaction is broken: the batch fails or reruns
                except Exception as exc:  # a bug in a rules run: it was undone, alone
                    log.exception("metadata write failed")
                    job.outcome = StorageError(f"metadata write failed: {exc}")
                    job.failed = True
            await txn.flush()
            run.committing = True  # what fails from here on is the COMMIT: outcome unknown


class _Attempt:
    """How far one run of a batch got: a failure before ``committing`` changed nothing."""

    __slots__ = ("committing", "connected")

    def __init__(self) -> None:
        self.connected = False
        self.committing = False


def _puts(ops: Sequence[WriteOp]) -> Iterator[ObjectVersion]:
    """Every version the ops PUT."""
    for op in ops:
        if isinstance(op, PutOp):
            yield op.version
        elif isinstance(op, AtomicOp):
            yield from _puts(op.ops)


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
    puts = [v for job in jobs for v in _puts(job.ops)]
    await txn.load_keys(
        held,
        [(v.bucket, v.key, v.version_id) for v in puts],
        # (a malformed id is the rules' to refuse, as InvalidArgument, not ours to load)
        [c.chunk_id for v in puts for c in v.chunks if rules.CHUNK_ID.fullmatch(c.chunk_id)],
    )
    txn.seq_want = len(pairs)
    await txn.load_seqs()
