"""Issue 15's blob-node faults, on one real cluster under load through both gateways.

Layer: tests/faults. One cluster for the module (``_cluster``: PostgreSQL, three blob
nodes, two gateways, each process in its own network namespace where the machine
allows it), R = 3 and ``--write-quorum majority``: the issue's "a majority with repair
allowed by flag". With W = R every write during a node's outage would fail cleanly
(503 / ``ERR STORAGE``) and the scenarios would prove only that reads survive; with
W = 2 they also prove that writes go on, acknowledged on two copies, and that the
repair worker brings each such chunk back to three.

Each scenario runs a bounded load (``_load.Load``: boto3 S3 and GW-KV BSET/GETV and
pipelined SETs, alternating between the gateways, every operation recorded in a
``history.History``), does its fault in the middle, and then asserts the same four
things (``_judge``):

1. reads were served throughout: every read in the history succeeded and returned the
   bytes its version was written with (R = 3 and at most one node out: every chunk
   always had a reachable copy, so none may fail);
2. the history checker finds no anomaly against the final state read back through S3;
3. every acknowledged write reads back intact by its version from either gateway, over
   S3 and over GW-KV (``_final.read_back``);
4. repair returns every chunk to R copies on active nodes, by PostgreSQL's catalog and
   by the files on the nodes' disks (``Cluster.wait_replicated``).

Scenarios run in file order on the same cluster (each leaves it whole: every node
running and every chunk at R), so a later scenario also proves the earlier ones left
nothing broken behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _postgres import PostgresUnavailable, find_binaries
from e2e._gwkv import wait_until
from kvbox.cluster.client import READ_TIMEOUT

from ._cluster import S3_BUCKET, Cluster, cluster
from ._final import final_state, read_back
from ._load import KV_BUCKET, Load
from ._netns import describe, unreachable
from .history import History, check, report


@pytest.fixture(scope="module")
def kvcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        find_binaries()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with cluster(tmp_path_factory.mktemp("faults")) as c:
        s3 = c.gateways[0].s3()
        s3.create_bucket(Bucket=S3_BUCKET)
        s3.put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield c


@pytest.fixture
def where(kvcluster: Cluster, request: pytest.FixtureRequest) -> Cluster:
    """The cluster, with where it runs said in the test's report (a section of its
    own, shown by ``-rA`` and on failure, and a property in JUnit XML)."""
    line = describe(kvcluster.topo.mode, kvcluster.topo.why)
    request.node.add_report_section("setup", "faults", line)
    request.node.user_properties.append(("faults", line))
    return kvcluster


def _judge(c: Cluster, history: History, name: str) -> None:
    """The four assertions every scenario ends with (module docstring). The history is
    kept beside the processes' logs (``history-NAME.txt``) for whoever reads a failure."""
    (c.base / f"history-{name}.txt").write_text("\n".join(map(str, history)) + "\n")
    reads = [op for op in history if op.kind == "get"]
    bad_reads = [op for op in reads if not op.acked]
    assert not bad_reads, "reads failed while a copy of every chunk was reachable:\n" + "\n".join(
        map(str, bad_reads[:10])
    )
    writes = history.acked_writes()
    assert writes and reads, f"the load did too little: {len(writes)} writes, {len(reads)} reads"
    final = final_state(c, history)
    anomalies = check(history, final, versioned={S3_BUCKET, KV_BUCKET})
    assert not anomalies, report(anomalies)
    problems = read_back(c, history)
    assert not problems, "\n".join(problems[:10])
    state = c.wait_replicated()
    assert state.chunks > 0


def _during(history: History, t0: float, t1: float) -> list[str]:
    """Outcomes of the writes that started inside [t0, t1]."""
    return [op.outcome for op in history if op.is_write and t0 <= op.start <= t1]


def test_kill_9_a_blob_node_and_restart_it(where: Cluster) -> None:
    """kill -9 one of the three blob nodes under load, then start it again.

    What must happen: reads fail over to the two other copies of every chunk (a refused
    connection is noticed at once); writes go on with two copies (W = 2, the node is
    skipped as soon as a write to it fails, and as not live once its heartbeat is 6 s
    old); when the node is back the repair worker copies every chunk written meanwhile
    onto it. Why it can: chunks are immutable and content-addressed, so a copy made
    later is the same copy, and PostgreSQL's replica table says which chunks lack one.
    """
    c = where
    history = History()
    victim = c.nodes[1]
    with Load(c, seed=1, history=history, ops=80, seconds=90) as load:
        load.wait(6)
        victim.proc.kill9()
        down = time.monotonic()
        load.wait(10)
        up = time.monotonic()
        victim.start()
        load.wait(5)
    outage = _during(history, down, up)
    assert "ok" in outage, "no write acknowledged during the outage:\n" + "\n".join(
        str(op) for op in history if op.is_write and down <= op.start <= up
    )
    _judge(c, history, "kill9")
    status = c.admin("status")
    assert status.returncode == 0, status.stderr
    assert b"replication backlog: 0 chunks" in status.stdout, status.stdout.decode()


def test_partition_a_blob_node_and_heal_it(where: Cluster, tmp_path: Path) -> None:
    """Cut one blob node off the network (silently: peers see timeouts, not a refusal)
    while writes go on, then heal it.

    What must happen: the node cannot be reached by anyone (asserted), yet it keeps
    running with its chunks; reads wait at most a timeout on it before failing over and
    then avoid it; writes meet their quorum on the two others; after the heal, its
    heartbeat resumes, and repair copies onto it what it missed. Why it can: a
    partitioned node is indistinguishable from a slow one, so every request to a node
    has a deadline, and membership is PostgreSQL's heartbeat table, not a node's view.
    """
    c = where
    history = History()
    victim = c.nodes[2]
    with Load(c, seed=2, history=history, ops=80, seconds=120) as load:
        load.wait(6)
        c.topo.partition(victim.host)
        cut = time.monotonic()
        assert unreachable(victim.host.ip, victim.port) in ("timeout", "no route", "no answer")
        load.wait(10)
        healed = time.monotonic()
        c.topo.heal(victim.host, victim.port)
        load.wait(5)
    during = _during(history, cut, healed)
    assert "ok" in during, f"no write was acknowledged during the partition: {during}"
    assert victim.proc.running
    # Nothing waited for the silent node's timeout: reads were hedged to another copy,
    # writes were acknowledged on two copies without waiting for the third.
    waited = [op for op in history if op.end - op.start >= READ_TIMEOUT]
    assert not waited, "operations waited for the silent node:\n" + "\n".join(map(str, waited[:10]))
    _judge(c, history, "partition")


def test_add_a_fourth_node_under_load(where: Cluster) -> None:
    """A fourth blob node joins while the load runs.

    What must happen: the node registers in PostgreSQL and new writes start placing
    chunks on it at once; the repair worker rebalances, moving to it exactly the chunks
    for which it now ranks among a chunk's top R (rendezvous hashing: about R/n of them)
    and deleting the surplus copy elsewhere only once the new one is written, so no
    chunk ever has fewer than R copies; reads are served throughout. Why it can: a
    chunk's holders are rows in the catalog, so readers find a chunk wherever it is
    while it moves, and placement is a pure function of the node set every gateway
    reads from the same table.
    """
    c = where
    history = History()
    with Load(c, seed=3, history=history, ops=60, seconds=120) as load:
        load.wait(6)
        joined = c.add_node()
        load.wait(10)
    _judge(c, history, "add")
    assert wait_until(lambda: not c.misplaced(), 60, 0.5), "no rebalance to the new node"
    assert c.copies_on(joined) > 0
    status = c.admin("status")
    assert status.returncode == 0 and joined.node_id.encode() in status.stdout


def test_drain_a_node_and_remove_it_under_load(where: Cluster) -> None:
    """An operator drains one blob node (``kvbox admin cluster drain``) while the load
    runs, waits until it holds nothing, removes it (``remove``) and stops it.

    What must happen: once draining, the node takes no new chunk; the repair worker
    copies each of its chunks to the node now placed for it and only then forgets the
    drained copy; ``remove`` succeeds once no chunk depends on it, and the cluster goes
    on with the others; reads are served throughout, writes never wait for it. Why it
    can: a drained copy is deleted only while R others are countable, so nothing is
    ever below R, and ``remove`` refuses while the node holds a chunk's only copy.
    """
    c = where
    active = [n for n in c.nodes if n.proc.running]
    if len(active) < 4:  # run alone: the scenario needs a node to spare
        active.append(c.add_node())
    victim = active[0]
    history = History()
    with Load(c, seed=4, history=history, ops=60, seconds=120) as load:
        load.wait(6)
        drained = c.admin("drain", victim.node_id)
        assert drained.returncode == 0, drained.stderr
        assert b"draining" in c.admin("status").stdout
        assert wait_until(lambda: c.copies_on(victim) == 0, 60, 0.5), "drain did not end"
        removed = c.admin("remove", victim.node_id)
        assert removed.returncode == 0, removed.stderr
        victim.proc.kill9()  # what an operator does next: stop the process
        load.wait(6)
    _judge(c, history, "drain")
    assert c.copies_on(victim) == 0
    assert wait_until(lambda: not c.misplaced(), 60, 0.5)
    status = c.admin("status").stdout.decode()
    assert f"{victim.node_id}" in status and "removed" in status, status
