"""``ClusterBlobStore``: the BlobStore of a gateway whose chunks live on blob nodes.

Layer: cluster. It passes the same conformance suite as the local stores
(``tests/core/blob/test_conformance.py``, against real ``kvbox blobnode`` processes).
Rules:

* **Placement.** A chunk goes to the R writable nodes (active and live) that rank
  highest for it by rendezvous hashing (``placement``); a node that fails the write is
  replaced by the next in the chunk's order, and a node that failed a request in the
  last ``PENALTY`` seconds is tried after the others. The write is acknowledged once W
  nodes have fsync'd it (``write_quorum``, default W = R): with W < R (``--write-quorum
  majority``) an acknowledged chunk may have fewer than R replicas for a while, and
  the repair worker brings it back to R. Such a write does not wait for a node that
  went silent (a partition answers nothing until the client's read timeout): once W
  copies are fsync'd the others get ``STRAGGLER_GRACE``, then finish in the
  background and record themselves when they land.
* **Per-bucket R.** A bucket's ``replicas`` attribute (``REPLICAS_ATTR``, set by
  ``kvbox admin bucket replicas BUCKET N``) overrides the gateway's ``--replicas`` for
  the chunks its versions and parts write (``writer(bucket)``, the BlobStore seam's
  placement hint). Chunks are content-addressed and shared: a chunk's wanted copies
  (``blob_chunks.replicas``) are the highest R of the writes that stored it, raised
  (never lowered) on each write, and recomputed exactly -- the highest R of the buckets
  whose versions or parts reference it -- when a bucket's R changes
  (``kvbox.cluster.admin.set_bucket_replicas``); the repair worker brings each chunk to
  its own count. The write quorum follows: ``all`` means the bucket's R; a number or
  majority is the gateway's W, at most the bucket's R.
* **Where chunks are** is recorded in PostgreSQL rather than recomputed from the node
  set: ``Catalog.intend`` before any node write (the garbage collector's clock),
  ``Catalog.add_replicas`` after the nodes fsync'd, both before ``put`` returns and so
  before any metadata commit can reference the chunk. Reads then go straight to nodes
  that hold the chunk, whatever joined or left since, and repair and GC find under-
  replicated and unreferenced chunks with a query instead of probing every node.
* **Reads** go to the replica holders, live ones first, fastest first (a moving
  average of each node's answer time in this process), and fail over to the next on
  any failure, or ask the next one too (a hedged read) when the first has not
  answered within its hedge delay: a silent node costs a read about ``HEDGE_AFTER``,
  not the client's read timeout. A replica that is damaged or missing is reported
  (log, counters) and repaired in the background from the copy that was read:
  PUTting sound bytes onto a node replaces a damaged file there
  (``LocalDirBlobStore.install``).
* **Deletes** are safe across gateways: ``Catalog.forget`` removes a chunk only if it
  was not written in the last ``gc_delay`` seconds, under its row lock, so another
  gateway's write of the same bytes (whose ``intend`` takes that lock first) is never
  deleted under it. A chunk kept that way is removed later by the garbage collector,
  once no version references it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kvbox.cluster.catalog import Catalog, Node
from kvbox.cluster.client import NodeClient
from kvbox.cluster.placement import ranked
from kvbox.core.model import Bucket, ChunkRef
from kvbox.core.pg import PgUrl
from kvbox.errors import (
    ChunkMissing,
    ClusterUnavailable,
    DataDamaged,
    InvalidArgument,
    StorageError,
)

log = logging.getLogger("kvbox.cluster")

#: Replicas per chunk unless told otherwise.
DEFAULT_REPLICAS: Final = 3
#: The bucket attribute holding the bucket's own R (a decimal number, 1..MAX_REPLICAS).
REPLICAS_ATTR: Final = "replicas"
#: Highest R a bucket may ask for (``blob_chunks.replicas`` is a smallint; more copies
#: than this protect against nothing a cluster of this design survives).
MAX_REPLICAS: Final = 16
#: Seconds a chunk written by anyone is kept even when unreferenced: longer than any
#: write takes from its first node PUT to its metadata commit (requests time out within
#: minutes), so a write in flight on another gateway is never collected under it.
GC_DELAY: Final = 3600.0
#: Seconds a gateway reuses its view of the node set (one query per second at most on
#: the write path; a node's loss is noticed by the failed request before that anyway).
NODES_TTL: Final = 1.0
#: Seconds a node that just failed a request goes to the end of every read's order
#: (by then the catalog calls a dead node suspect, and a live one has had time to recover).
PENALTY: Final = 6.0
#: Seconds a write that has its W copies still waits for the others (at least; longer
#: if reaching W took longer): on a healthy cluster the last copy lands within it and
#: the chunk is whole at once, while a node that went silent (a partition: no answer
#: until ``client.READ_TIMEOUT``) costs the client this instead of that timeout. A copy
#: still in flight then finishes in the background and is recorded when it lands; if it
#: never does, the repair worker makes it.
STRAGGLER_GRACE: Final = 0.25
#: Seconds a read waits for a replica before it asks the next one too, at least; or
#: ``HEDGE_FACTOR`` times that node's usual answer time if longer. A silent node then
#: delays a read by about this, not by the client's read timeout, and the duplicate
#: request costs a second copy only on reads already slower than usual.
HEDGE_AFTER: Final = 0.5
HEDGE_FACTOR: Final = 4.0
#: Chunks larger than this are hashed in a worker thread (the loop must not stall).
_HASH_IN_THREAD: Final = 64 * 1024

_CHUNK_ID = re.compile(r"[0-9a-f]{64}")
_R_TEXT = re.compile(r"[0-9]{1,2}")


def majority(replicas: int) -> int:
    return replicas // 2 + 1


@dataclass(slots=True)
class ClusterCounters:
    """What /metrics and ``admin cluster status`` show about this gateway's chunk I/O."""

    writes: int = 0
    reads: int = 0
    failovers: int = 0
    damaged_replicas: int = 0
    missing_replicas: int = 0
    repaired_replicas: int = 0
    under_replicated_writes: int = 0
    hedged_reads: int = 0
    late_replicas: int = 0


def bucket_replicas(bucket: Bucket | None) -> int | None:
    """A bucket's own R (``REPLICAS_ATTR``), None when it has none (or an unreadable
    one: the gateway's default applies, never fewer copies than a typo would give)."""
    if bucket is None:
        return None
    text = bucket.attrs.get(REPLICAS_ATTR)
    if text is None or _R_TEXT.fullmatch(text) is None or not 1 <= int(text) <= MAX_REPLICAS:
        return None
    return int(text)


class ClusterChunkWriter:
    """Collects one chunk (at most ``CHUNK_SIZE``), then ``put``s it at ``commit``: a
    node receives a chunk whole and signed with its id, which is known only at the end."""

    def __init__(self, store: ClusterBlobStore, replicas: int | None = None) -> None:
        self._store = store
        self._replicas = replicas
        self._parts: list[bytes] = []
        self._done = False

    async def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError("chunk writer already committed or aborted")
        if data:
            self._parts.append(bytes(data))

    async def commit(self) -> ChunkRef:
        if self._done:
            raise StorageError("chunk writer already committed or aborted")
        self._done = True
        data = b"".join(self._parts)
        self._parts = []
        return await self._store.put(data, self._replicas)

    async def abort(self) -> None:
        self._done = True
        self._parts = []


class ClusterBlobStore:
    """``BlobStore`` over blob nodes (module docstring)."""

    def __init__(
        self,
        url: PgUrl,
        secret: bytes,
        *,
        replicas: int = DEFAULT_REPLICAS,
        write_quorum: int | None = None,
        gc_delay: float = GC_DELAY,
    ) -> None:
        if replicas < 1:
            raise InvalidArgument(f"replicas must be at least 1, not {replicas}")
        quorum = replicas if write_quorum is None else write_quorum
        if not 1 <= quorum <= replicas:
            raise InvalidArgument(f"write quorum {quorum} must be within 1..{replicas}")
        self.url = url
        self.replicas = replicas
        self.write_quorum = quorum
        self.gc_delay = gc_delay
        self.counters = ClusterCounters()
        self.client = NodeClient(secret)
        self._catalog: Catalog | None = None
        self._nodes: list[Node] = []
        self._nodes_at = -NODES_TTL
        #: Moving average of each node's answer time (seconds), for "fastest first".
        self._latency: dict[str, float] = {}
        #: Nodes that failed a request: monotonic time until which reads try them last.
        self._failed: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise StorageError("the cluster blob store is not open")
        return self._catalog

    async def open(self) -> None:
        self._catalog = await Catalog.connect(self.url, application="kvbox-gateway")

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        if self._catalog is not None:
            await self._catalog.close()
            self._catalog = None

    async def nodes(self, fresh: bool = False) -> list[Node]:
        now = time.monotonic()
        if fresh or now - self._nodes_at >= NODES_TTL:
            self._nodes = await self.catalog.nodes()
            self._nodes_at = now
        return self._nodes

    def _timed(self, node: Node, started: float) -> None:
        took = time.monotonic() - started
        old = self._latency.get(node.node_id)
        self._latency[node.node_id] = took if old is None else 0.8 * old + 0.2 * took

    # --- writes ----------------------------------------------------------------------

    def writer(self, bucket: Bucket | None = None) -> ClusterChunkWriter:
        return ClusterChunkWriter(self, bucket_replicas(bucket))

    def quorum(self, replicas: int) -> int:
        """W for a write of ``replicas`` copies (module docstring, "Per-bucket R")."""
        if self.write_quorum == self.replicas:
            return replicas
        return min(self.write_quorum, replicas)

    async def put(self, data: bytes, replicas: int | None = None) -> ChunkRef:
        """Store ``data`` on ``replicas`` nodes (default: the gateway's R)."""
        data = bytes(data)
        want = self.replicas if replicas is None else replicas
        quorum = self.quorum(want)
        if len(data) > _HASH_IN_THREAD:
            cid = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:
            cid = hashlib.sha256(data).hexdigest()
        writable = [n for n in await self.nodes() if n.writable]
        if len(writable) < quorum:
            writable = [n for n in await self.nodes(fresh=True) if n.writable]
        if len(writable) < quorum:
            raise ClusterUnavailable(
                f"{len(writable)} writable blob nodes; a write needs {quorum} (replicas {want})"
            )
        await self.catalog.intend(cid, len(data), want, self.replicas)
        stored = await self.store_on(cid, data, writable, want, quorum)
        if stored:
            await self.catalog.add_replicas(cid, stored)
        self.counters.writes += 1
        if len(stored) < quorum:
            raise ClusterUnavailable(
                f"chunk {cid} reached {len(stored)} blob nodes; a write needs "
                f"{quorum} (replicas {want})"
            )
        if len(stored) < want:
            self.counters.under_replicated_writes += 1
        return ChunkRef(cid, len(data))

    async def store_on(
        self,
        cid: str,
        data: bytes,
        candidates: Sequence[Node],
        want: int,
        quorum: int | None = None,
    ) -> list[str]:
        """PUT the chunk on the ``want`` best-ranked of ``candidates``, replacing each
        node that fails by the next in the chunk's order; the ids that fsync'd it.

        With a ``quorum`` below ``want`` (a write with W < R), this returns once
        ``quorum`` nodes fsync'd it and the others had ``STRAGGLER_GRACE`` more to
        answer; a PUT still running then goes on in the background and records its
        replica row itself when it lands (``_late``)."""
        by_id = {n.node_id: n for n in candidates}
        order = [by_id[i] for i in ranked(cid, by_id)]
        # A node that failed a request in the last PENALTY seconds goes after the others
        # (still in the chunk's order): while the catalog still calls a dead or silent
        # node live, the next writes go to a spare instead of each failing on it first
        # (or, silent, waiting for its timeout). It is still tried if it is needed.
        now = time.monotonic()
        order.sort(key=lambda n: self._failed.get(n.node_id, 0.0) > now)
        first, spare = order[:want], order[want:]
        need = want if quorum is None else min(quorum, want)

        async def one(node: Node) -> bool:
            started = time.monotonic()
            try:
                await self.client.put(node.address, cid, data)
            except StorageError as exc:
                self._failed[node.node_id] = time.monotonic() + PENALTY
                log.warning("chunk %s not written to %s: %s", cid, node.node_id, exc)
                return False
            self._timed(node, started)
            return True

        running: dict[asyncio.Future[bool], Node] = {
            asyncio.ensure_future(one(n)): n for n in first
        }
        try:
            stored = await self._await_copies(running, spare, one, want, need)
        finally:
            # Acknowledged, or our caller gave up (cancelled): either way what is
            # still running lands or fails on its own and is recorded if it lands.
            for task, node in running.items():
                self._spawn(self._late(cid, task, node))
        return stored

    async def _await_copies(
        self,
        running: dict[asyncio.Future[bool], Node],
        spare: list[Node],
        one: Callable[[Node], Awaitable[bool]],
        want: int,
        need: int,
    ) -> list[str]:
        """``store_on``'s wait: until ``want`` copies, or ``need`` copies and the
        grace; a failed node is replaced by the next ``spare`` at once."""
        started = time.monotonic()
        stored: list[str] = []
        reached: float | None = None  # when ``need`` copies were fsync'd
        while running and len(stored) < want:
            wait = None
            if reached is not None:
                wait = max(
                    0.0, reached + max(STRAGGLER_GRACE, reached - started) - time.monotonic()
                )
            done, _ = await asyncio.wait(running, timeout=wait, return_when=FIRST_COMPLETED)
            if not done:
                break  # the grace is over: the rest finish in the background
            for task in done:
                node = running.pop(task)
                if task.result():
                    stored.append(node.node_id)
                elif spare:
                    nxt = spare.pop(0)
                    running[asyncio.ensure_future(one(nxt))] = nxt
            if reached is None and len(stored) >= need:
                reached = time.monotonic()
        return stored

    async def _late(self, cid: str, task: asyncio.Future[bool], node: Node) -> None:
        """A copy that landed after its write was acknowledged: record it (if that
        fails, the copy is an orphan to the catalog: the repair worker makes another and
        the node's sweep removes this one after the GC delay)."""
        if not await task:
            return
        try:
            await self.catalog.add_replicas(cid, [node.node_id])
        except StorageError as exc:
            log.warning("chunk %s landed late on %s, not recorded: %s", cid, node.node_id, exc)
            return
        self.counters.late_replicas += 1

    # --- reads -----------------------------------------------------------------------

    async def _holders(self, cid: str) -> list[Node]:
        """Nodes holding ``cid``, best first: live before suspect before dead, then by
        answer time; ``ChunkMissing`` if the cluster has no replica of it."""
        if _CHUNK_ID.fullmatch(cid) is None:
            raise ChunkMissing(cid)
        ids = await self.catalog.replicas(cid)
        if not ids:
            raise ChunkMissing(cid)
        nodes = {n.node_id: n for n in await self.nodes()}
        if any(i not in nodes for i in ids):
            nodes = {n.node_id: n for n in await self.nodes(fresh=True)}
        rank = {"live": 0, "suspect": 1, "dead": 2}
        found = [nodes[i] for i in ids if i in nodes and nodes[i].state != "removed"]
        now = time.monotonic()
        found.sort(
            key=lambda n: (
                rank[n.health],
                self._failed.get(n.node_id, 0.0) > now,
                self._latency.get(n.node_id, 0.0),
            )
        )
        if not found:
            raise ClusterUnavailable(f"chunk {cid}: every node holding it was removed")
        return found

    async def read(self, chunk_id: str, offset: int = 0, length: int = -1) -> bytes:
        """The bytes from the best holder; a holder that fails passes the read to the
        next at once, and one that has not answered within its hedge delay
        (``_hedge_after``) gets the next asked too: the first sound answer wins and
        the requests still running are cancelled."""
        if offset < 0 or length < -1:
            raise InvalidArgument(f"bad range: offset {offset}, length {length}")
        holders = await self._holders(chunk_id)
        bad: list[Node] = []
        damaged = missing = unreachable = 0
        self.counters.reads += 1
        waiting = list(holders)
        running: dict[asyncio.Future[bytes], tuple[Node, float]] = {}

        def ask_next() -> None:
            node = waiting.pop(0)
            task = asyncio.ensure_future(self.client.get(node.address, chunk_id, offset, length))
            running[task] = (node, time.monotonic())

        ask_next()
        try:
            while running:
                wait = None
                if waiting:
                    last, asked = list(running.values())[-1]
                    wait = max(0.0, asked + self._hedge_after(last) - time.monotonic())
                done, _ = await asyncio.wait(running, timeout=wait, return_when=FIRST_COMPLETED)
                if not done:
                    self.counters.hedged_reads += 1
                    ask_next()
                    continue
                for task in done:
                    node, asked = running.pop(task)
                    try:
                        data = task.result()
                    except DataDamaged:
                        damaged += 1
                        self.counters.damaged_replicas += 1
                        log.error("chunk %s is damaged on blob node %s", chunk_id, node.node_id)
                        bad.append(node)
                    except ChunkMissing:
                        missing += 1
                        self.counters.missing_replicas += 1
                        log.error("chunk %s is missing on blob node %s", chunk_id, node.node_id)
                        bad.append(node)
                    except ClusterUnavailable as exc:
                        unreachable += 1
                        self._failed[node.node_id] = time.monotonic() + PENALTY
                        log.warning("chunk %s: %s; trying another replica", chunk_id, exc)
                    else:
                        self._timed(node, asked)
                        if node is not holders[0]:
                            self.counters.failovers += 1
                        if bad:
                            whole = data if offset == 0 and length < 0 else None
                            self._spawn(self.heal(chunk_id, bad, whole))
                        return data
                    if waiting:  # a failure passes the read on at once
                        ask_next()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if damaged and not unreachable:
            raise DataDamaged(
                f"chunk {chunk_id} is damaged on every blob node holding it ({damaged})",
                chunk_id=chunk_id,
            )
        if missing and not damaged and not unreachable:
            raise ChunkMissing(chunk_id)
        raise ClusterUnavailable(
            f"no replica of chunk {chunk_id} could be read ({len(holders)} nodes hold it: "
            f"{unreachable} unreachable, {damaged} damaged, {missing} missing)"
        )

    def _hedge_after(self, node: Node) -> float:
        """Seconds to wait for ``node`` before asking the next holder too."""
        return max(HEDGE_AFTER, HEDGE_FACTOR * self._latency.get(node.node_id, 0.0))

    def _spawn(self, coro: Awaitable[object]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def heal(self, cid: str, bad: Sequence[Node], data: bytes | None = None) -> int:
        """Write sound bytes of ``cid`` over its damaged or missing copies on ``bad``
        (read from another holder unless ``data`` is given); how many were repaired."""
        try:
            if data is None:
                data = await self.read_whole(cid, skip={n.node_id for n in bad})
            healed = 0
            for node in bad:
                try:
                    await self.client.put(node.address, cid, data)
                except StorageError as exc:
                    log.warning("chunk %s not repaired on %s: %s", cid, node.node_id, exc)
                    continue
                await self.catalog.add_replicas(cid, [node.node_id])
                healed += 1
                self.counters.repaired_replicas += 1
                log.warning("chunk %s repaired on blob node %s", cid, node.node_id)
            return healed
        except StorageError as exc:
            log.warning("chunk %s not repaired: %s", cid, exc)
            return 0

    async def read_whole(self, cid: str, skip: Collection[str] = ()) -> bytes:
        """The whole chunk from any holder not in ``skip`` (checked against its id)."""
        for node in await self._holders(cid):
            if node.node_id in skip:
                continue
            try:
                return await self.client.get(node.address, cid)
            except StorageError:
                continue
        raise ClusterUnavailable(f"no sound replica of chunk {cid} could be read")

    # --- the rest of the BlobStore ---------------------------------------------------

    async def exists(self, chunk_id: str) -> bool:
        if _CHUNK_ID.fullmatch(chunk_id) is None:
            return False
        return await self.catalog.exists(chunk_id)

    async def delete(self, chunk_id: str) -> None:
        """Remove the chunk from every node and the catalog, unless it is younger than
        ``gc_delay`` (module docstring: the garbage collector takes it then). A node
        that cannot be reached keeps an orphan file, which the collector's sweep of
        each node's listing removes later."""
        if _CHUNK_ID.fullmatch(chunk_id) is None:
            return
        await self.catalog.forget(chunk_id, self._delete_on(chunk_id), self.gc_delay)

    def _delete_on(self, cid: str) -> Callable[[list[str]], Awaitable[None]]:
        async def delete(node_ids: list[str]) -> None:
            nodes = {n.node_id: n for n in await self.nodes()}

            async def one(nid: str) -> None:
                node = nodes.get(nid)
                if node is None:
                    return
                try:
                    await self.client.delete(node.address, cid)
                except StorageError as exc:
                    log.warning("chunk %s left on %s: %s", cid, nid, exc)

            await asyncio.gather(*(one(i) for i in node_ids))

        return delete

    async def list_chunks(self) -> AsyncIterator[str]:
        after = ""
        while page := await self.catalog.chunk_ids(after):
            for cid in page:
                yield cid
            after = page[-1]

    async def verify(self, chunk_id: str) -> bool:
        """Whether a sound copy exists; damaged or missing copies are repaired from it."""
        try:
            holders = await self._holders(chunk_id)
        except ChunkMissing:
            return False
        sound: list[Node] = []
        bad: list[Node] = []
        for node in holders:
            try:
                verdict = await self.client.verify(node.address, chunk_id)
            except ClusterUnavailable:
                continue
            (sound if verdict.present and verdict.sound else bad).append(node)
        if sound and bad:
            await self.heal(chunk_id, bad)
        if not sound and not bad:
            raise ClusterUnavailable(f"no blob node holding chunk {chunk_id} answered")
        return bool(sound)

    def local_path(self, chunk_id: str) -> Path | None:
        return None

    def check_file(self, fd: int, chunk_id: str) -> None:
        raise StorageError("a cluster blob store has no local files to check")
