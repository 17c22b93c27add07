"""The repair worker and ``kvbox admin cluster`` against real blob-node processes: a
node killed with -9 and declared dead, a node back, a node added, a node drained and
removed, garbage collected, one worker at a time.

Layer: tests/cluster. One scenario on its own nodes and database, R = 2 over three
nodes then four (lean: each node is a process); each step ends with every chunk read
back intact and at exactly its placement.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from _cleanup import removed_after
from _postgres import PostgresServer
from e2e._server import run_kvbox
from kvbox.auth.cluster import load_secret
from kvbox.cluster.catalog import REPAIR_LOCK
from kvbox.cluster.placement import place
from kvbox.cluster.repair import Repairer
from kvbox.cluster.store import ClusterBlobStore
from kvbox.core.pg import PgUrl

from ._nodes import BlobNodeProcess, blob_nodes

R = 2


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[BlobNodeProcess]]]:
    url = postgres.new_database(migrated=True)
    with (
        removed_after(tmp_path_factory.mktemp("repair")) as base,
        blob_nodes(base, url, 3) as nodes,
    ):
        yield url, nodes


@pytest.fixture
async def store(cluster: tuple[str, list[BlobNodeProcess]]) -> AsyncIterator[ClusterBlobStore]:
    url, nodes = cluster
    s = ClusterBlobStore(
        PgUrl.parse(url), load_secret(nodes[0].secret_file.read_bytes(), "t"), replicas=R
    )
    await s.open()
    yield s
    await s.close()


async def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def rows(url: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in await sql(url, "SELECT chunk_id, node_id FROM kvbox.chunk_replicas"):
        found.setdefault(bytes(r["chunk_id"]).hex(), set()).add(r["node_id"])
    return found


async def at_placement(
    store: ClusterBlobStore, url: str, nodes: list[BlobNodeProcess], chunks: dict[str, bytes]
) -> None:
    """Every chunk: exactly R copies, on its placement over the writable nodes, each
    file intact; and it reads back."""
    writable = [n.node_id for n in await store.nodes(fresh=True) if n.writable]
    where = await rows(url)
    by_id = {n.node_id: n for n in nodes}
    for cid, data in chunks.items():
        assert where.get(cid) == set(place(cid, writable, R)), cid
        for nid in where[cid]:
            assert by_id[nid].chunk_file(cid).read_bytes() == data
        for n in nodes:
            if n.node_id not in where[cid] and n.running:
                assert not n.chunk_file(cid).exists(), (cid, n.node_id)
        assert await store.read(cid) == data


async def test_lost_back_added_drained_removed_collected(
    cluster: tuple[str, list[BlobNodeProcess]], store: ClusterBlobStore
) -> None:
    url, nodes = cluster
    repair = Repairer(store, collect=False)
    chunks: dict[str, bytes] = {}
    for i in range(24):
        data = os.urandom(1000 + i)
        chunks[(await store.put(data)).chunk_id] = data
    assert await repair.run_once()
    await at_placement(store, url, nodes, chunks)

    # kill -9 a node; it is dead once its heartbeat is older than DEAD_AFTER (made so
    # here rather than waited for): its chunks are copied back to R elsewhere.
    lost = nodes[0]
    lost.kill()
    await sql(
        url,
        "UPDATE kvbox.blob_nodes SET heartbeat_at = now() - interval '1 hour' WHERE node_id = $1",
        lost.node_id,
    )
    status = run_kvbox("admin", "cluster", "status", "--meta", url, "--replicas", str(R))
    assert status.returncode == 0, status.stderr
    assert b"1 dead" in status.stdout and b"backlog: 0 " not in status.stdout
    assert b"last repair pass: " in status.stdout and b" s ago by " in status.stdout
    assert await repair.run_once()
    assert repair.progress.copied > 0 and repair.progress.backlog > 0
    status = run_kvbox("admin", "cluster", "status", "--meta", url, "--replicas", str(R))
    line = next(x for x in status.stdout.decode().splitlines() if x.startswith("last repair"))
    assert f"backlog {repair.progress.backlog}; copied " in line, line
    assert "copied 0," not in line, line  # this pass's own copies
    survivors = [n for n in nodes if n is not lost]
    for cid, data in chunks.items():
        holders = [n for n in survivors if n.chunk_file(cid).exists()]
        assert len(holders) == R and all(h.chunk_file(cid).read_bytes() == data for h in holders)
        assert await store.read(cid) == data

    # It comes back (same data, live again): the surplus copies go, placement holds.
    lost.start()
    assert await repair.run_once()
    assert repair.progress.dropped > 0
    await at_placement(store, url, nodes, chunks)

    # A fourth node joins: it takes its share, nothing else moves beyond that.
    extra = BlobNodeProcess(nodes[0].data.parent / "node3", url, nodes[0].secret_file)
    try:
        extra.start()
        nodes.append(extra)
        copied = repair.progress.copied
        assert await repair.run_once()
        moved = repair.progress.copied - copied
        assert 0 < moved < len(chunks)
        await at_placement(store, url, nodes, chunks)
        assert any(extra.chunk_file(c).exists() for c in chunks)

        # Drain one (by address, through the CLI), repair, then remove it.
        drained = nodes[1]
        r = run_kvbox("admin", "cluster", "drain", drained.address, "--meta", url)
        assert r.returncode == 0 and b"draining" in r.stdout, r.stderr
        assert await repair.run_once()
        await at_placement(store, url, nodes, chunks)
        assert not any(drained.chunk_file(c).exists() for c in chunks)
        r = run_kvbox("admin", "cluster", "remove", drained.node_id, "--meta", url)
        assert r.returncode == 0 and b"removed" in r.stdout, r.stderr
        status = run_kvbox("admin", "cluster", "status", "--meta", url, "--replicas", str(R))
        assert b"backlog: 0 " in status.stdout and b"removed" in status.stdout

        # A chunk with a single copy: removing its node is refused.
        single = ClusterBlobStore(
            store.url, load_secret(nodes[0].secret_file.read_bytes(), "t"), replicas=1
        )
        await single.open()
        try:
            ref = await single.put(b"only one copy")
        finally:
            await single.close()
        (holder,) = (await rows(url))[ref.chunk_id]
        r = run_kvbox("admin", "cluster", "remove", holder, "--meta", url)
        assert r.returncode == 1 and b"only copy of 1 chunks" in r.stderr
        chunks[ref.chunk_id] = b"only one copy"
        assert await repair.run_once()  # written with R = 1, it wants 1: left alone
        assert len((await rows(url))[ref.chunk_id]) == 1
        # Wanted twice now (as `kvbox admin bucket replicas` records it): a second copy.
        await sql(
            url,
            "UPDATE kvbox.blob_chunks SET replicas = 2 WHERE chunk_id = $1",
            bytes.fromhex(ref.chunk_id),
        )
        assert await repair.run_once()
        await at_placement(store, url, nodes, chunks)
    finally:
        extra.close()


async def test_one_worker_at_a_time_and_garbage(
    cluster: tuple[str, list[BlobNodeProcess]], store: ClusterBlobStore
) -> None:
    url, nodes = cluster
    kept = await store.put(b"referenced by a version")
    doomed = await store.put(b"referenced by nothing")
    await sql(
        url,
        "INSERT INTO kvbox.chunks (chunk_id, size, refs) VALUES ($1, 23, 1)",
        bytes.fromhex(kept.chunk_id),
    )
    holder = await asyncpg.connect(url, server_settings={"application_name": "other-gateway"})
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", REPAIR_LOCK)
        assert not await Repairer(store).run_once()  # another gateway's worker has it
        status = run_kvbox("admin", "cluster", "status", "--meta", url)
        assert b"repair: running in other-gateway" in status.stdout
    finally:
        await holder.close()
    # An orphan: a copy on a node that no row names (a write that died mid-way).
    orphan = b"written to a node, never recorded"
    live = [n for n in nodes if n.running]
    await store.client.put(live[0].address, sha(orphan), orphan)
    worker = Repairer(store)
    assert await worker.run_once()
    assert worker.progress.collected == 0  # young: written under an hour ago
    assert worker.progress.orphans == 0 and live[0].chunk_file(sha(orphan)).exists()
    store.gc_delay = 0.2
    await asyncio.sleep(0.3)  # the safety delay itself must pass
    assert await worker.run_once()
    assert worker.progress.collected >= 1 and worker.progress.orphans >= 1
    assert not await store.exists(doomed.chunk_id)
    assert not any(n.chunk_file(doomed.chunk_id).exists() for n in live)
    assert not live[0].chunk_file(sha(orphan)).exists()
    # Damage at rest that nothing reads: the scrubber finds and repairs it.
    kept_on = (await rows(url))[kept.chunk_id]
    rotten = next(n for n in live if n.node_id in kept_on).chunk_file(kept.chunk_id)
    rotten.write_bytes(b"R" + rotten.read_bytes()[1:])
    repaired = store.counters.repaired_replicas
    assert await worker.run_once()
    assert worker.progress.scrubbed >= 1
    assert store.counters.repaired_replicas == repaired + 1
    assert rotten.read_bytes() == b"referenced by a version"
    assert kept_on and all(
        n.chunk_file(kept.chunk_id).exists() for n in live if n.node_id in kept_on
    )
    assert await store.read(kept.chunk_id) == b"referenced by a version"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_chunk_being_written_is_no_loss_to_the_scrubber(
    cluster: tuple[str, list[BlobNodeProcess]],
    store: ClusterBlobStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write makes its chunk's row before the first node PUT and its replica rows after
    the nodes fsynced: a scrub pass that meets it in between (found under load by
    tests/faults) must not report it as a chunk with no sound copy left."""
    in_flight = sha(b"being written by another gateway right now")
    await store.catalog.intend(in_flight, 42, R, R)
    worker = Repairer(store)
    assert await worker.run_once()
    assert worker.progress.failed == 0
    assert "no sound copy" not in caplog.text
