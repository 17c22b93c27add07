"""The blob cluster's state in PostgreSQL: nodes, their health, and where chunks are.

Layer: cluster. Rules:

* PostgreSQL decides everything shared: which nodes exist and their operator state
  (``active``/``draining``/``removed``), each node's last heartbeat, which chunks exist
  and which nodes hold them (tables of migration ``0002_blob_nodes``). No process keeps
  its own view of membership beyond one query's result: there is no election and no
  gossip.
* Health is the age of a node's last heartbeat measured by the database's clock
  (``now() - heartbeat_at``): ``live`` under ``SUSPECT_AFTER`` seconds, ``suspect``
  under ``DEAD_AFTER``, ``dead`` beyond. Writes go to live nodes only; reads try live
  replicas first and suspect ones after; dead ones never (a read would wait for a
  timeout first).
* Chunk ids are stored as their 32 raw bytes (``bytea``), as the metadata's ``chunks``
  table stores them, so the garbage collector can join the two.
* Every write here is a single statement or one short transaction; a lost race
  (``retryable``) is simply re-run by ``_run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypeVar

import asyncpg

from kvbox.core.pg import PgUrl, connect, migrations, open_pool, retryable, translate

#: Seconds between a blob node's heartbeats.
HEARTBEAT_INTERVAL: Final = 2.0
#: A node whose last heartbeat is older is ``suspect``: missed about three beats.
SUSPECT_AFTER: Final = 3 * HEARTBEAT_INTERVAL
#: A node whose last heartbeat is older is ``dead``: its chunks are re-replicated.
DEAD_AFTER: Final = 30.0

#: Key of the session advisory lock the one repair worker of a cluster holds ("kvbx"
#: "rpar" in ASCII): every gateway runs a worker, and the one that holds it works.
REPAIR_LOCK: Final = 0x6B76_6278_7270_6172

Health = Literal["live", "suspect", "dead"]
State = Literal["active", "draining", "removed"]
STATES: Final = ("active", "draining", "removed")

_T = TypeVar("_T")
if TYPE_CHECKING:  # the stubs' generic; at run time the class is not subscriptable
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    address: str
    state: State
    age: float
    chunks: int
    bytes: int
    free_bytes: int

    @property
    def health(self) -> Health:
        if self.age < SUSPECT_AFTER:
            return "live"
        return "suspect" if self.age < DEAD_AFTER else "dead"

    @property
    def writable(self) -> bool:
        """New replicas may be placed here."""
        return self.state == "active" and self.health == "live"


def raw(chunk_id: str) -> bytes:
    return bytes.fromhex(chunk_id)


_NODES = (
    "SELECT node_id, address, state, extract(epoch FROM now() - heartbeat_at)::float8 AS age,"
    " chunks, bytes, free_bytes FROM blob_nodes ORDER BY node_id"
)


class Catalog:
    """The cluster tables over one connection pool (module docstring)."""

    def __init__(self, pool: asyncpg.Pool, url: PgUrl | None = None) -> None:
        self.pool = pool
        self.url = url

    @classmethod
    async def connect(cls, url: PgUrl, *, application: str, max_size: int = 4) -> Catalog:
        """A catalog on a database whose schema is at ``migrations.LATEST``, else
        ``SchemaMismatch`` naming ``kvbox migrate``."""
        conn = await connect(url, application=application)
        try:
            await migrations.check(conn, url.redacted)
        finally:
            await conn.close()
        return cls(await open_pool(url, max_size=max_size, application=application), url)

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[_T]]) -> _T:
        """``fn`` on a pooled connection; re-run when it lost a race; driver errors
        become ``StorageError`` (``kvbox.core.pg.translate``)."""
        for attempt in range(5):
            try:
                async with self.pool.acquire() as conn:
                    return await fn(conn)
            except Exception as exc:
                if retryable(exc) and attempt < 4:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                raise translate(exc, self.url) from exc
        raise AssertionError("unreachable")

    # --- nodes -----------------------------------------------------------------------

    async def register(self, node_id: str, address: str, chunks: int, size: int, free: int) -> None:
        """A node (re)starting: its address may have changed; its operator state stays."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO blob_nodes (node_id, address, chunks, bytes, free_bytes)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node_id) DO UPDATE SET"
                " address = excluded.address, started_at = now(), heartbeat_at = now(),"
                " chunks = excluded.chunks, bytes = excluded.bytes,"
                " free_bytes = excluded.free_bytes",
                node_id,
                address,
                chunks,
                size,
                free,
            )

        await self._run(run)

    async def heartbeat(self, node_id: str, chunks: int, size: int, free: int) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                "UPDATE blob_nodes SET heartbeat_at = now(), chunks = $2, bytes = $3,"
                " free_bytes = $4 WHERE node_id = $1",
                node_id,
                chunks,
                size,
                free,
            )

        await self._run(run)

    async def nodes(self) -> list[Node]:
        async def run(conn: Conn) -> list[Node]:
            return [_node(r) for r in await conn.fetch(_NODES)]

        return await self._run(run)

    async def set_state(self, node: str, state: State) -> Node | None:
        """Set the operator state of the node whose id or address is ``node``; None if
        there is no such node."""

        async def run(conn: Conn) -> Node | None:
            found = await conn.fetchval(
                "UPDATE blob_nodes SET state = $2 WHERE node_id = $1 OR address = $1"
                " RETURNING node_id",
                node,
                state,
            )
            if found is None:
                return None
            row = await conn.fetchrow(
                _NODES.replace(" ORDER BY node_id", " WHERE node_id = $1"), found
            )
            return None if row is None else _node(row)

        return await self._run(run)

    # --- chunks and replicas ---------------------------------------------------------

    async def intend(self, chunk_id: str, size: int, replicas: int, default: int) -> None:
        """Before a chunk's bytes go to any node: the chunk exists, written now (the
        garbage collector's safety delay counts from here), wanted in at least
        ``replicas`` copies (a row from before per-bucket R counts as ``default``)."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO blob_chunks (chunk_id, size, replicas) VALUES ($1, $2, $3)"
                " ON CONFLICT (chunk_id) DO UPDATE SET written_at = now(), replicas ="
                " GREATEST(coalesce(blob_chunks.replicas, $4), EXCLUDED.replicas)",
                raw(chunk_id),
                size,
                replicas,
                default,
            )

        await self._run(run)

    async def add_replicas(self, chunk_id: str, node_ids: Sequence[str]) -> None:
        """After each of ``node_ids`` fsynced the chunk."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO chunk_replicas (chunk_id, node_id)"
                " SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                raw(chunk_id),
                list(node_ids),
            )

        await self._run(run)

    async def drop_replica(self, chunk_id: str, node_id: str) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM chunk_replicas WHERE chunk_id = $1 AND node_id = $2",
                raw(chunk_id),
                node_id,
            )

        await self._run(run)

    async def replicas(self, chunk_id: str) -> list[str] | None:
        """Node ids holding ``chunk_id``; None if the cluster has no such chunk."""

        async def run(conn: Conn) -> list[str] | None:
            rows = await conn.fetch(
                "SELECT r.node_id FROM blob_chunks c LEFT JOIN chunk_replicas r"
                " ON r.chunk_id = c.chunk_id WHERE c.chunk_id = $1 ORDER BY r.node_id",
                raw(chunk_id),
            )
            if not rows:
                return None
            return [r["node_id"] for r in rows if r["node_id"] is not None]

        return await self._run(run)

    async def exists(self, chunk_id: str) -> bool:
        async def run(conn: Conn) -> bool:
            found = await conn.fetchval(
                "SELECT 1 FROM blob_chunks WHERE chunk_id = $1", raw(chunk_id)
            )
            return found is not None

        return await self._run(run)

    async def chunk_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        """Chunk ids in order, the page after ``after``."""

        async def run(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT chunk_id FROM blob_chunks WHERE chunk_id > $1 ORDER BY chunk_id LIMIT $2",
                raw(after) if after else b"",
                limit,
            )
            return [bytes(r["chunk_id"]).hex() for r in rows]

        return await self._run(run)

    async def placements(self, after: str = "", limit: int = 500) -> list[ChunkPlacement]:
        """Chunks in id order after ``after``, each with its holders (one page)."""

        async def run(conn: Conn) -> list[ChunkPlacement]:
            rows = await conn.fetch(
                "SELECT c.chunk_id, c.size, c.replicas,"
                " array_remove(array_agg(r.node_id), NULL) AS holders"
                " FROM blob_chunks c LEFT JOIN chunk_replicas r ON r.chunk_id = c.chunk_id"
                " WHERE c.chunk_id > $1 GROUP BY c.chunk_id ORDER BY c.chunk_id LIMIT $2",
                raw(after) if after else b"",
                limit,
            )
            return [
                ChunkPlacement(
                    bytes(r["chunk_id"]).hex(),
                    int(r["size"]),
                    tuple(r["holders"]),
                    None if r["replicas"] is None else int(r["replicas"]),
                )
                for r in rows
            ]

        return await self._run(run)

    async def unreferenced(self, min_age: float, limit: int = 500) -> list[str]:
        """Chunks no version or part references (no row in the metadata's ``chunks``
        table) and written more than ``min_age`` seconds ago: the collector's work."""

        async def run(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT b.chunk_id FROM blob_chunks b WHERE b.written_at <"
                " now() - make_interval(secs => $1) AND NOT EXISTS"
                " (SELECT 1 FROM chunks c WHERE c.chunk_id = b.chunk_id AND c.refs > 0)"
                " ORDER BY b.chunk_id LIMIT $2",
                float(min_age),
                limit,
            )
            return [bytes(r["chunk_id"]).hex() for r in rows]

        return await self._run(run)

    async def totals(self, replicas: int) -> Totals:
        """Chunks, bytes, replica rows, and the replication backlog: chunks with fewer
        copies on active nodes that are not dead than they want (``replicas`` for
        chunks from before per-bucket R), among those with a copy at all -- a chunk
        with no replica row is a write in flight or one that failed before any node
        fsync'd it, which nothing acknowledged and repair leaves to the garbage
        collector (as ``Repairer._fix`` does), not a backlog."""

        async def run(conn: Conn) -> Totals:
            row = await conn.fetchrow(
                "SELECT count(*) AS chunks, coalesce(sum(size), 0) AS bytes,"
                " (SELECT count(*) FROM chunk_replicas) AS replicas,"
                " count(*) FILTER (WHERE (SELECT count(*) FROM chunk_replicas r"
                "   JOIN blob_nodes n ON n.node_id = r.node_id WHERE r.chunk_id = c.chunk_id"
                "   AND n.state = 'active'"
                "   AND n.heartbeat_at > now() - make_interval(secs => $2))"
                "   < coalesce(c.replicas, $1)"
                "   AND EXISTS (SELECT 1 FROM chunk_replicas h WHERE h.chunk_id = c.chunk_id))"
                " AS backlog FROM blob_chunks c",
                replicas,
                DEAD_AFTER,
            )
            assert row is not None
            return Totals(
                int(row["chunks"]), int(row["bytes"]), int(row["replicas"]), int(row["backlog"])
            )

        return await self._run(run)

    async def buckets(self, replicas: int) -> list[BucketReplication]:
        """Every bucket's R (None: ``replicas``, the default), the chunks its versions
        and parts reference, and how many of them have fewer countable copies (active,
        not dead nodes) than the bucket's R. Reads every chunk list once: an operator's
        query, not a hot path."""

        async def run(conn: Conn) -> list[BucketReplication]:
            rows = await conn.fetch(
                f"WITH br AS ({_BUCKET_R}), refs AS ({_BUCKET_CHUNKS}),"
                " mine AS (SELECT DISTINCT bucket, chunk_id FROM refs),"
                " copies AS (SELECT m.bucket, m.chunk_id, (SELECT count(*) FROM chunk_replicas r"
                "   JOIN blob_nodes n ON n.node_id = r.node_id WHERE r.chunk_id = m.chunk_id"
                "   AND n.state = 'active'"
                "   AND n.heartbeat_at > now() - make_interval(secs => $2)) AS n FROM mine m)"
                " SELECT br.name, br.r, count(c.chunk_id) AS chunks,"
                " count(*) FILTER (WHERE c.n < coalesce(br.r, $1)) AS under"
                " FROM br LEFT JOIN copies c ON c.bucket = br.id"
                " GROUP BY br.name, br.r ORDER BY br.name",
                replicas,
                DEAD_AFTER,
            )
            return [
                BucketReplication(
                    r["name"],
                    None if r["r"] is None else int(r["r"]),
                    int(r["chunks"]),
                    int(r["under"]),
                )
                for r in rows
            ]

        return await self._run(run)

    async def rewant(self, bucket: str | None, replicas: int, settled: float) -> tuple[int, int]:
        """Recompute the wanted copies of every chunk ``bucket`` (None: any bucket)
        references: the highest R of the buckets whose versions or parts reference it
        (``replicas`` for those without their own). (chunks, chunks whose count changed)

        Only chunks last written more than ``settled`` seconds ago are lowered; younger
        ones are only raised: a write in flight may be storing such a chunk for a bucket
        with a higher R whose version is not committed yet, and lowering its count now
        would let the repair worker drop the copies that version is about to need. The
        same reason as the collector's safety delay, so the same delay."""

        async def run(conn: Conn) -> tuple[int, int]:
            row = await conn.fetchrow(
                f"WITH br AS ({_BUCKET_R}), refs AS ({_BUCKET_CHUNKS}),"
                " mine AS (SELECT DISTINCT r.chunk_id FROM refs r JOIN br ON br.id = r.bucket"
                "   WHERE $1::text IS NULL OR br.name = $1),"
                " want AS (SELECT r.chunk_id, max(coalesce(br.r, $2)) AS r FROM refs r"
                "   JOIN br ON br.id = r.bucket WHERE r.chunk_id IN (SELECT chunk_id FROM mine)"
                "   GROUP BY r.chunk_id),"
                " new AS (SELECT c.chunk_id, CASE WHEN c.written_at >"
                "   now() - make_interval(secs => $3)"
                "   THEN GREATEST(coalesce(c.replicas, $2), w.r) ELSE w.r END AS r"
                "   FROM blob_chunks c JOIN want w ON w.chunk_id = c.chunk_id),"
                " changed AS (UPDATE blob_chunks c SET replicas = new.r FROM new"
                "   WHERE c.chunk_id = new.chunk_id AND c.replicas IS DISTINCT FROM new.r"
                "   RETURNING 1)"
                " SELECT (SELECT count(*) FROM mine) AS chunks,"
                " (SELECT count(*) FROM changed) AS changed",
                bucket,
                replicas,
                float(settled),
            )
            assert row is not None
            return int(row["chunks"]), int(row["changed"])

        return await self._run(run)

    async def sole_copies(self, node_id: str) -> int:
        """Chunks whose only replicas are on ``node_id`` (removing it would lose them)."""

        async def run(conn: Conn) -> int:
            found = await conn.fetchval(
                "SELECT count(*) FROM chunk_replicas r WHERE r.node_id = $1 AND NOT EXISTS"
                " (SELECT 1 FROM chunk_replicas o JOIN blob_nodes n ON n.node_id = o.node_id"
                "  WHERE o.chunk_id = r.chunk_id AND o.node_id <> $1 AND n.state <> 'removed')",
                node_id,
            )
            return int(found or 0)

        return await self._run(run)

    async def drop_node_replicas(self, node_id: str) -> int:
        async def run(conn: Conn) -> int:
            done = await conn.execute("DELETE FROM chunk_replicas WHERE node_id = $1", node_id)
            return int(done.split()[-1])

        return await self._run(run)

    async def record_pass(
        self, worker: str, seconds: float, backlog: int, counts: dict[str, int]
    ) -> None:
        """The repair worker's last pass (``seconds`` long, ending now) and what it did."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO repair_progress (id, worker, started_at, finished_at, backlog,"
                " copied, dropped, collected, orphans, scrubbed, failed) VALUES (1, $1,"
                " now() - make_interval(secs => $2), now(), $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (id) DO UPDATE SET worker = excluded.worker,"
                " started_at = excluded.started_at, finished_at = excluded.finished_at,"
                " backlog = excluded.backlog, copied = excluded.copied,"
                " dropped = excluded.dropped, collected = excluded.collected,"
                " orphans = excluded.orphans, scrubbed = excluded.scrubbed,"
                " failed = excluded.failed",
                worker,
                float(seconds),
                backlog,
                *(counts[k] for k in PASS_COUNTS),
            )

        await self._run(run)

    async def last_pass(self) -> LastPass | None:
        async def run(conn: Conn) -> LastPass | None:
            row = await conn.fetchrow(
                "SELECT worker, extract(epoch FROM now() - finished_at)::float8 AS ago,"
                " extract(epoch FROM finished_at - started_at)::float8 AS took, backlog,"
                " copied, dropped, collected, orphans, scrubbed, failed"
                " FROM repair_progress WHERE id = 1"
            )
            if row is None:
                return None
            return LastPass(
                str(row["worker"]),
                float(row["ago"]),
                float(row["took"]),
                int(row["backlog"]),
                {k: int(row[k]) for k in PASS_COUNTS},
            )

        return await self._run(run)

    async def repair_holder(self) -> str | None:
        """``application_name`` of the session holding the repair lock, if any."""

        async def run(conn: Conn) -> str | None:
            found = await conn.fetchval(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                REPAIR_LOCK,
            )
            return None if found is None else str(found)

        return await self._run(run)

    async def recorded_on(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        """Those of ``chunk_ids`` that have a replica row for ``node_id``."""

        async def run(conn: Conn) -> set[str]:
            rows = await conn.fetch(
                "SELECT chunk_id FROM chunk_replicas WHERE node_id = $1"
                " AND chunk_id = ANY($2::bytea[])",
                node_id,
                [raw(c) for c in chunk_ids],
            )
            return {bytes(r["chunk_id"]).hex() for r in rows}

        return await self._run(run)

    async def forget(
        self, chunk_id: str, delete: Callable[[list[str]], Awaitable[None]], min_age: float
    ) -> bool:
        """Remove ``chunk_id`` from the cluster unless it was written in the last
        ``min_age`` seconds (a write in flight somewhere may be about to reference it).

        The chunk's row stays locked while ``delete(node_ids)`` removes the bytes from
        the nodes, so a concurrent write of the same bytes -- whose ``intend`` waits for
        that lock -- starts its node writes only after these deletes. Returns whether
        the chunk was removed (False: too recent, or already gone).
        """

        async def run(conn: Conn) -> bool:
            async with conn.transaction():
                young = await conn.fetchval(
                    "SELECT written_at > now() - make_interval(secs => $2) FROM blob_chunks"
                    " WHERE chunk_id = $1 FOR UPDATE",
                    raw(chunk_id),
                    float(min_age),
                )
                if young is None or young:
                    return False
                holders = await conn.fetch(
                    "SELECT node_id FROM chunk_replicas WHERE chunk_id = $1", raw(chunk_id)
                )
                await delete([r["node_id"] for r in holders])
                await conn.execute("DELETE FROM chunk_replicas WHERE chunk_id = $1", raw(chunk_id))
                await conn.execute("DELETE FROM blob_chunks WHERE chunk_id = $1", raw(chunk_id))
                return True

        return await self._run(run)


@dataclass(frozen=True, slots=True)
class ChunkPlacement:
    """A chunk and the nodes its catalog rows say hold it (the repair worker's view),
    and the copies it wants (None: the worker's ``--replicas``)."""

    chunk_id: str
    size: int
    holders: tuple[str, ...]
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class BucketReplication:
    """One bucket in ``admin cluster status``: its own R (None: the default), the
    chunks it references, and how many of those have fewer copies than its R."""

    name: str
    replicas: int | None
    chunks: int
    under: int


#: Each bucket's own R from its ``replicas`` attribute (``kvbox.cluster.store.
#: bucket_replicas`` in SQL: NULL unless a number within 1..16). Bucket attributes are
#: the metadata's JSON text (``core.meta.codec.enc_attrs``).
_BUCKET_R: Final = (
    "SELECT id, name, CASE WHEN attrs::jsonb ->> 'replicas' ~ '^[0-9]{1,2}$'"
    " AND (attrs::jsonb ->> 'replicas')::int BETWEEN 1 AND 16"
    " THEN (attrs::jsonb ->> 'replicas')::int END AS r FROM buckets"
)
#: (bucket id, chunk digest) for every chunk reference of every version and upload
#: part: a chunk list is 40 bytes per chunk, the 32-byte digest first
#: (``core.meta.codec.enc_chunks``).
_BUCKET_CHUNKS: Final = (
    "SELECT v.bucket, substring(v.chunks FROM i * 40 + 1 FOR 32) AS chunk_id FROM versions v"
    " CROSS JOIN LATERAL generate_series(0, length(v.chunks) / 40 - 1) AS i"
    " WHERE v.chunks IS NOT NULL"
    " UNION ALL"
    " SELECT u.bucket, substring(p.chunks FROM i * 40 + 1 FOR 32) FROM parts p"
    " JOIN uploads u ON u.upload_id = p.upload_id"
    " CROSS JOIN LATERAL generate_series(0, length(p.chunks) / 40 - 1) AS i"
    " WHERE p.chunks IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class Totals:
    chunks: int
    bytes: int
    replicas: int
    backlog: int


#: What one repair pass counts (``repair_progress`` columns, ``RepairProgress`` fields).
PASS_COUNTS: Final = ("copied", "dropped", "collected", "orphans", "scrubbed", "failed")


@dataclass(frozen=True, slots=True)
class LastPass:
    worker: str
    ago: float
    seconds: float
    backlog: int
    counts: dict[str, int]


def _node(row: asyncpg.Record) -> Node:
    return Node(
        node_id=row["node_id"],
        address=row["address"],
        state=row["state"],
        age=max(0.0, float(row["age"])),
        chunks=int(row["chunks"]),
        bytes=int(row["bytes"]),
        free_bytes=int(row["free_bytes"]),
    )
