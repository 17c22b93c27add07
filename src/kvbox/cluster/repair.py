"""The cluster's one background worker: repair, drain, rebalance and garbage collection.

Layer: cluster. Rules:

* **One at a time, decided by PostgreSQL.** Every gateway runs a ``Repairer``; a pass
  starts only in the process that holds the session advisory lock ``REPAIR_LOCK``
  (``pg_try_advisory_lock`` on a connection of its own). If that process dies, its
  session ends, the lock is released, and the next gateway's pass takes it. There is
  no election of our own.
* **One walk does it all.** A pass reads the replica table in chunk-id order, one page
  at a time, and for each chunk compares where it is with where rendezvous placement
  over the writable nodes (active and live) wants it:

  - fewer than R *countable* copies (on active nodes that are not dead) -> copy the
    chunk, read from any holder and checked against its id, onto the best-placed
    writable nodes that lack it (a lost node, a new node, a write that met only its
    quorum);
  - R or more countable copies -> copies on draining or removed nodes, and copies on
    active nodes beyond the R best-placed ones, are deleted (a drain, a rebalance
    after a node joined). A copy is only ever deleted while R others are countable,
    so a pass never lowers a chunk below R.

* **Garbage.** A chunk that no version or part references (no ``chunks`` row in the
  metadata) and that nobody has written for ``gc_delay`` seconds is deleted from every
  node, by ``Catalog.forget`` under the chunk's row lock. The delay (an hour by
  default) is what makes this safe against writes in flight on any gateway: a write
  refreshes the chunk's ``written_at`` (``intend``) before its first node PUT and
  commits its metadata within its request's lifetime, minutes at most. This needs the
  metadata in the same PostgreSQL database (``--meta postgresql://``), which is what
  ``--blobs cluster`` requires.
* **Orphans.** A file on a node without a replica row (a write that died between its
  node PUTs and its catalog row, a delete a node missed while it was down) is deleted
  by the node itself only if the file is older than ``gc_delay``
  (``NodeClient.delete_if_older``), under the node's per-chunk lock: a write of the
  same bytes in flight renews the file, so it is never taken for an orphan.
* **Scrubbing.** Each pass also asks the holders of the next ``scrub_per_pass`` chunks
  (a cursor over the chunk ids, wrapping around) to check their copy's SHA-256
  (``ClusterBlobStore.verify``), and rewrites a damaged or missing copy from a sound
  one: damage at rest is found and repaired even where nothing reads it. The default
  (100 chunks per 30 s pass) keeps the hashing to a few chunks a second.
* **Bounded.** Each pass handles at most ``max_copies`` copies (the rest is the next
  pass's backlog), so a node's loss never turns into an unbounded burst of traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Final

from kvbox.cluster.catalog import PASS_COUNTS, REPAIR_LOCK, ChunkPlacement, Node
from kvbox.cluster.placement import ranked
from kvbox.cluster.store import ClusterBlobStore
from kvbox.core.periodic import Periodic
from kvbox.core.pg import connect, unreachable
from kvbox.errors import KvboxError, StorageError

log = logging.getLogger("kvbox.cluster.repair")

#: Seconds between passes.
REPAIR_INTERVAL: Final = 30.0
#: Chunk copies one pass makes at most.
MAX_COPIES: Final = 10_000
#: Chunks whose copies one pass verifies (the scrubber).
SCRUB_PER_PASS: Final = 100
#: Chunks read from the catalog per query.
PAGE: Final = 500
#: Seconds between recounts of every chunk's wanted copies (``Catalog.rewant`` over all
#: buckets: a chunk a higher-R bucket no longer references, a lowered R whose young
#: chunks were only raised, a count made with another --replicas). It reads every chunk
#: list in the database, so not every pass.
RECOUNT_INTERVAL: Final = 600.0


@dataclass(slots=True)
class RepairProgress:
    """What the worker did (for /metrics and ``admin cluster status``)."""

    passes: int = 0
    copied: int = 0
    dropped: int = 0
    collected: int = 0
    orphans: int = 0
    scrubbed: int = 0
    failed: int = 0
    #: Chunks under R found by the last pass (its backlog when it started).
    backlog: int = 0
    running: bool = False
    last_pass_at: float = 0.0
    last_pass_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Repairer:
    """The background worker (module docstring)."""

    def __init__(
        self,
        store: ClusterBlobStore,
        *,
        interval: float = REPAIR_INTERVAL,
        max_copies: int = MAX_COPIES,
        collect: bool = True,
        scrub_per_pass: int = SCRUB_PER_PASS,
        recount_interval: float = RECOUNT_INTERVAL,
    ) -> None:
        self.store = store
        self.interval = interval
        self.recount_interval = recount_interval
        #: Monotonic time of the next recount (the first pass does one).
        self._recount_at = 0.0
        self.max_copies = max_copies
        self.collect = collect
        self.scrub_per_pass = scrub_per_pass
        self._scrub_after = ""
        self.progress = RepairProgress()
        # The schedule: the first pass at once (a gateway that starts after a node was
        # lost repairs without waiting an interval), one pass at a time.
        self._schedule = Periodic(
            "kvbox-repair", self.run_once, interval, delay=0, on_error=self._failed
        )

    def start(self) -> None:
        self._schedule.start()

    async def stop(self) -> None:
        await self._schedule.stop()

    def _failed(self, exc: Exception) -> None:
        """A storage error or PostgreSQL gone mid-pass (a node away, a database restart)
        is expected in a cluster and the next pass retries it: one warning line. Anything
        else is a bug: its traceback (it used to end the worker without a word)."""
        if isinstance(exc, KvboxError) or unreachable(exc):
            log.warning("repair pass failed: %s", exc)
        else:
            log.error("repair pass failed; it runs again in %g s", self.interval, exc_info=exc)

    async def run_once(self) -> bool:
        """One pass if this process gets the lock; whether it did."""
        conn = await connect(self.store.url, application="kvbox-repair")
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", REPAIR_LOCK)
            if not got:
                return False
            try:
                await self._pass()
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", REPAIR_LOCK)
            return True
        finally:
            await conn.close()

    async def _pass(self) -> None:
        p = self.progress
        p.running = True
        started = time.monotonic()
        before = {k: getattr(p, k) for k in PASS_COUNTS}
        try:
            await self._recount()
            nodes = {n.node_id: n for n in await self.store.nodes(fresh=True)}
            writable = [n for n in nodes.values() if n.writable]
            copies = 0
            backlog = 0
            after = ""
            while page := await self.store.catalog.placements(after, PAGE):
                after = page[-1].chunk_id
                for chunk in page:
                    if copies >= self.max_copies:
                        break
                    made, under = await self._fix(chunk, nodes, writable)
                    copies += made
                    backlog += under
            p.backlog = backlog
            await self._scrub()
            if self.collect:
                await self._collect()
                for node in nodes.values():
                    if node.state != "removed" and node.health == "live":
                        await self._sweep(node)
            await self.store.catalog.record_pass(
                f"{socket.gethostname()} pid {os.getpid()}",
                time.monotonic() - started,
                backlog,
                {k: getattr(p, k) - before[k] for k in PASS_COUNTS},
            )
        finally:
            p.running = False
            p.passes += 1
            p.last_pass_at = time.time()
            p.last_pass_seconds = time.monotonic() - started

    async def _fix(
        self, chunk: ChunkPlacement, nodes: dict[str, Node], writable: list[Node]
    ) -> tuple[int, int]:
        """Bring one chunk to its placement; (copies made, 1 if it was under R)."""
        store = self.store
        want = store.replicas if chunk.replicas is None else chunk.replicas
        cid = chunk.chunk_id
        if not chunk.holders:
            return 0, 0  # being written right now, or a failed write: GC's business
        countable = [h for h in chunk.holders if h in nodes and _countable(nodes[h])]
        under = int(len(countable) < want)
        desired = ranked(cid, (n.node_id for n in writable))[:want]
        k = sum(1 for d in desired if d not in chunk.holders)  # new homes (rebalance)
        k = max(k, want - len(countable))  # lost copies (repair)
        lacking = [n for n in writable if n.node_id not in chunk.holders]
        made = 0
        if k > 0 and lacking:
            try:
                data = await store.read_whole(cid)
            except StorageError as exc:
                self.progress.failed += 1
                log.warning("chunk %s: no copy to repair from: %s", cid, exc)
                return 0, under
            stored = await store.store_on(cid, data, lacking, k)
            if stored:
                await store.catalog.add_replicas(cid, stored)
            made = len(stored)
            self.progress.copied += made
            countable += stored
        if len(countable) >= want:
            first = set(desired)
            order = {h: i for i, h in enumerate(ranked(cid, countable))}
            keep = set(sorted(countable, key=lambda h: (h not in first, order[h]))[:want])
            for nid in [h for h in chunk.holders if h not in keep]:
                await self._drop(cid, nid, nodes.get(nid))
        return made, under

    async def _recount(self) -> None:
        """Every chunk's wanted copies, recomputed now and then (``RECOUNT_INTERVAL``)."""
        now = time.monotonic()
        if now < self._recount_at:
            return
        self._recount_at = now + self.recount_interval
        store = self.store
        try:
            chunks, changed = await store.catalog.rewant(None, store.replicas, store.gc_delay)
        except KvboxError as exc:  # the pass's repairs matter more: they go on
            log.warning("recount of wanted copies failed: %s", exc)
            return
        if changed:
            log.info("recount: %d of %d chunks want another number of copies", changed, chunks)

    async def _drop(self, cid: str, nid: str, node: Node | None) -> None:
        """Delete one surplus copy: the row first (readers stop choosing it), then the
        file (a node that cannot be reached keeps an orphan, harmless)."""
        await self.store.catalog.drop_replica(cid, nid)
        self.progress.dropped += 1
        if node is not None and node.health != "dead" and node.state != "removed":
            try:
                await self.store.client.delete(node.address, cid)
            except StorageError as exc:
                log.warning("chunk %s left on %s: %s", cid, nid, exc)

    async def _collect(self) -> None:
        gc = self.store.gc_delay
        while ids := await self.store.catalog.unreferenced(gc, PAGE):
            removed = 0
            for cid in ids:
                if await self.store.catalog.forget(cid, self.store._delete_on(cid), gc):
                    removed += 1
            self.progress.collected += removed
            if removed < len(ids):
                return  # the rest became young or referenced meanwhile: next pass

    async def _scrub(self) -> None:
        """Verify (and repair) the copies of the next chunks (module docstring)."""
        if self.scrub_per_pass <= 0:
            return
        page = await self.store.catalog.placements(self._scrub_after, self.scrub_per_pass)
        self._scrub_after = page[-1].chunk_id if len(page) == self.scrub_per_pass else ""
        for chunk in page:
            cid = chunk.chunk_id
            if not chunk.holders:
                # Being written right now (its row is made before any node PUT and its
                # replicas after they fsynced), or a failed write: not a lost chunk,
                # the garbage collector's business (as in ``_fix``).
                continue
            try:
                sound = await self.store.verify(cid)
            except StorageError as exc:
                log.warning("chunk %s not scrubbed: %s", cid, exc)
                continue
            self.progress.scrubbed += 1
            if not sound:
                self.progress.failed += 1
                log.error("chunk %s has no sound copy left on any blob node", cid)

    async def _sweep(self, node: Node) -> None:
        """Delete the node's files that no replica row names (module docstring)."""
        client = self.store.client
        after = ""
        try:
            while page := await client.list(node.address, after, PAGE):
                after = page[-1]
                recorded = await self.store.catalog.recorded_on(node.node_id, page)
                for cid in page:
                    if cid not in recorded and await client.delete_if_older(
                        node.address, cid, self.store.gc_delay
                    ):
                        self.progress.orphans += 1
        except StorageError as exc:
            log.warning("orphan sweep of %s stopped: %s", node.node_id, exc)


def _countable(node: Node) -> bool:
    """A copy that counts towards R: on an active node that is not dead."""
    return node.state == "active" and node.health != "dead"
