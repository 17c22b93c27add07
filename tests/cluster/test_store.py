"""``ClusterBlobStore`` against real blob-node processes: replication, failover under
kill -9, damaged and missing replicas repaired, quorum, drain, safe deletes.

Layer: tests/cluster. Four nodes per module on one database; a test that kills a node
starts it again (same port, same data) before it ends. Loads are bounded in count.
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
from kvbox.auth.cluster import load_secret
from kvbox.cluster.store import ClusterBlobStore
from kvbox.core.pg import PgUrl
from kvbox.errors import ClusterUnavailable

from ._nodes import BlobNodeProcess, blob_nodes

Cluster = tuple[str, list[BlobNodeProcess]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    url = postgres.new_database(migrated=True)
    with (
        removed_after(tmp_path_factory.mktemp("cluster")) as base,
        blob_nodes(base, url, 4) as nodes,
    ):
        yield url, nodes


@pytest.fixture
def nodes(cluster: Cluster) -> Iterator[list[BlobNodeProcess]]:
    """The module's nodes, every one running again after the test."""
    yield cluster[1]
    for n in cluster[1]:
        if not n.running:
            n.start()


def open_store(cluster: Cluster, **kw: float) -> ClusterBlobStore:
    url, nodes = cluster
    secret = load_secret(nodes[0].secret_file.read_bytes(), "test")
    return ClusterBlobStore(PgUrl.parse(url), secret, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def store(cluster: Cluster, nodes: list[BlobNodeProcess]) -> AsyncIterator[ClusterBlobStore]:
    s = open_store(cluster)
    await s.open()
    yield s
    await s.close()


def holders(nodes: list[BlobNodeProcess], cid: str) -> list[BlobNodeProcess]:
    return [n for n in nodes if n.chunk_file(cid).exists()]


async def replica_rows(url: str, cid: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT node_id FROM kvbox.chunk_replicas WHERE chunk_id = $1", bytes.fromhex(cid)
        )
    finally:
        await conn.close()
    return {r["node_id"] for r in rows}


async def wait_for(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def test_a_chunk_is_on_r_nodes_as_placed_and_recorded(
    cluster: Cluster, store: ClusterBlobStore
) -> None:
    url, nodes = cluster
    data = os.urandom(100_000)
    ref = await store.put(data)
    have = holders(nodes, ref.chunk_id)
    assert len(have) == 3
    assert all(n.chunk_file(ref.chunk_id).read_bytes() == data for n in have)
    assert await replica_rows(url, ref.chunk_id) == {n.node_id for n in have}
    assert await store.read(ref.chunk_id, 7, 3) == data[7:10]


async def test_kill_9_a_node_mid_write_and_mid_read(
    cluster: Cluster,
    nodes: list[BlobNodeProcess],
    store: ClusterBlobStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writes in flight when a node dies fail over to the spare node (the catalog still
    calls the dead node live for seconds), and once one write failed on it the next ones
    go to the spare first instead of each failing on it again; reads fail over to
    another replica; every acknowledged chunk reads back intact, from 3 replicas."""
    datas = [os.urandom(20_000 + i) for i in range(60)]
    acked: dict[str, bytes] = {}

    async def writer() -> None:
        for d in datas:
            ref = await store.put(d)
            acked[ref.chunk_id] = d

    task = asyncio.create_task(writer())
    await wait_for(lambda: _true(len(acked) >= 10), "10 writes")
    victim = nodes[1]
    victim.kill()
    await task
    assert len(acked) == len(datas)
    tried = [r for r in caplog.records if f"not written to {victim.node_id}" in r.getMessage()]
    assert len(tried) <= 1, f"{len(tried)} writes failed on the dead node, one should"
    # Reads try the fastest replica first: make the dead node look fastest.
    store._latency = {n.node_id: 1.0 for n in nodes} | {victim.node_id: 0.0}
    store._failed.clear()
    for cid, d in acked.items():
        assert await store.read(cid) == d
        have = [n for n in holders(nodes, cid) if n is not victim]
        if victim.chunk_file(cid).exists():
            assert len(have) >= 2
        else:
            assert len(have) == 3, cid  # written after the kill: placed on the spare
    assert store.counters.failovers == 1  # the first found it dead; the rest avoid it
    # Mid-read: a node dies while a batch of reads runs; every read still succeeds.
    reads = [store.read(cid) for cid in acked]
    victim2 = nodes[2]
    gathered = asyncio.gather(*reads)
    await asyncio.sleep(0)
    victim2.kill()
    assert list(await gathered) == list(acked.values())


async def _true(value: bool) -> bool:
    return value


async def test_a_damaged_replica_is_detected_served_around_and_repaired(
    cluster: Cluster, nodes: list[BlobNodeProcess], store: ClusterBlobStore
) -> None:
    data = b"precious " * 5000
    ref = await store.put(data)
    cid = ref.chunk_id
    have = holders(nodes, cid)
    # Reads try the fastest replica first: make the two that rot look fastest.
    store._latency.update({have[0].node_id: 0.0, have[1].node_id: 0.001, have[2].node_id: 9.0})
    for n in have[:2]:  # two of three copies rot
        raw = bytearray(n.chunk_file(cid).read_bytes())
        raw[100] ^= 0x40
        n.chunk_file(cid).write_bytes(bytes(raw))
    assert await store.read(cid) == data
    await wait_for(
        lambda: _true(all(n.chunk_file(cid).read_bytes() == data for n in have)),
        "damaged replicas rewritten",
    )
    assert store.counters.damaged_replicas >= 1
    assert store.counters.repaired_replicas >= 1
    # A missing replica is put back by verify (fsck, the scrubber) as well.
    have[2].chunk_file(cid).unlink()
    assert await store.verify(cid)
    assert have[2].chunk_file(cid).read_bytes() == data


async def test_write_quorum(cluster: Cluster, nodes: list[BlobNodeProcess]) -> None:
    """With two of four nodes down, W = R = 3 cannot be met and the write fails with
    ClusterUnavailable (nothing acknowledged); with a majority quorum it succeeds on 2
    and is counted as under-replicated."""
    url, _ = cluster
    strict = open_store(cluster)
    loose = open_store(cluster, write_quorum=2)
    await strict.open()
    await loose.open()
    try:
        nodes[0].kill()
        nodes[3].kill()
        with pytest.raises(ClusterUnavailable, match="needs 3"):
            await strict.put(b"needs three copies")
        ref = await loose.put(b"two copies will do")
        assert len(await replica_rows(url, ref.chunk_id)) == 2
        assert loose.counters.under_replicated_writes == 1
        assert await strict.read(ref.chunk_id) == b"two copies will do"
    finally:
        await strict.close()
        await loose.close()


async def test_a_draining_node_takes_no_new_chunks(
    cluster: Cluster, nodes: list[BlobNodeProcess], store: ClusterBlobStore
) -> None:
    old = await store.put(b"before the drain")
    drained = nodes[0]
    assert (await store.catalog.set_state(drained.address, "draining")) is not None
    await store.nodes(fresh=True)  # a gateway sees it within NODES_TTL; this one now
    try:
        for i in range(20):
            ref = await store.put(f"after the drain {i}".encode())
            assert not drained.chunk_file(ref.chunk_id).exists()
        assert await store.read(old.chunk_id) == b"before the drain"
    finally:
        await store.catalog.set_state(drained.node_id, "active")


async def test_deletes_spare_young_chunks_unless_told_otherwise(
    cluster: Cluster, nodes: list[BlobNodeProcess], store: ClusterBlobStore
) -> None:
    """With a GC delay, a chunk written moments ago (perhaps by a write in flight on
    another gateway) is not deleted; without one it is, from every node."""
    ref = await store.put(b"young chunk")
    await store.delete(ref.chunk_id)
    assert await store.exists(ref.chunk_id) and len(holders(nodes, ref.chunk_id)) == 3
    now = open_store(cluster, gc_delay=0)
    await now.open()
    try:
        await now.delete(ref.chunk_id)
    finally:
        await now.close()
    assert not await store.exists(ref.chunk_id) and holders(nodes, ref.chunk_id) == []
