"""``kvbox serve --meta postgresql://... --blobs cluster``: a real gateway whose chunks
live on real blob nodes, driven by boto3 and GW-KV, with a blob node killed with -9.

Layer: tests/cluster. Four nodes, R = 3: a node's loss leaves every chunk two readable
copies and a spare node for new writes; every acknowledged object reads back intact,
/metrics and ``kvbox admin cluster status`` say what happened, and the gateway's repair
worker returns every chunk to three copies. The nodes close idle connections after
``NODE_IDLE`` seconds (far below the gateway's keep-alive), so every test also runs
over connections the nodes keep closing under the gateway's pool.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from _cleanup import removed_after
from _ports import free_port
from _postgres import PostgresServer
from e2e._gwkv import wait_until
from e2e._s3 import S3Server
from e2e._server import Wire, run_kvbox

from ._nodes import BlobNodeProcess, blob_nodes, metric_value

#: The nodes' --idle-timeout.
NODE_IDLE = 0.5


@pytest.fixture(scope="module")
def nodes4(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[tuple[str, list[BlobNodeProcess]]]:
    url = postgres.new_database(migrated=True)
    idle = ("--idle-timeout", str(NODE_IDLE))
    with (
        removed_after(tmp_path_factory.mktemp("nodes")) as base,
        blob_nodes(base, url, 4, idle) as nodes,
    ):
        yield url, nodes


@pytest.fixture
def cluster(
    nodes4: tuple[str, list[BlobNodeProcess]],
) -> Iterator[tuple[str, list[BlobNodeProcess]]]:
    """The module's four nodes (one database), all running again after each test."""
    yield nodes4
    for n in nodes4[1]:
        if not n.running:
            n.start()


def gateway(tmp_path: Path, url: str, secret: Path, *args: str) -> S3Server:
    return S3Server(
        tmp_path / "gw", "--meta", url, "--blobs", "cluster", "--cluster-secret-file",
        str(secret), "--repair-interval", "0.5", *args,
    )  # fmt: skip


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_objects_on_blob_nodes_survive_a_node_killed_9(
    tmp_path: Path, cluster: tuple[str, list[BlobNodeProcess]]
) -> None:
    url, nodes = cluster
    gw = gateway(tmp_path, url, nodes[0].secret_file).start()
    try:
        assert "chunks on blob nodes: 3 replicas, write quorum all" in gw.server.log_text()
        s3 = gw.client()
        s3.create_bucket(Bucket="photos")
        objects = {f"small-{i}": os.urandom(70_000 + i) for i in range(8)}
        objects["large"] = os.urandom(9 * 1024 * 1024 + 5)  # two chunks
        for key, data in objects.items():
            s3.put_object(Bucket="photos", Key=key, Body=data)
        files = sum(1 for n in nodes for _ in (n.data / "chunks").rglob("*") if _.is_file())
        assert files >= 3 * len(objects)  # no chunk in the gateway's own directory:
        assert not list((tmp_path / "gw" / "chunks").rglob("??????*"))
        victim = nodes[2]
        victim.kill()
        for key, data in objects.items():  # reads fail over to the other copies
            assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == data
        got = s3.get_object(Bucket="photos", Key="large", Range="bytes=8388600-8388615")
        assert got["Body"].read() == objects["large"][8388600:8388616]
        more = {f"after-{i}": os.urandom(100_000) for i in range(4)}  # the spare node
        for key, data in more.items():
            s3.put_object(Bucket="photos", Key=key, Body=data)
            assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == data
        with Wire.connect("127.0.0.1", gw.server.port) as w:
            assert w.bset("gwkey", b"v" * 100_000).startswith(b"OK ")  # chunked too
            assert w.bget("gwkey") is not None
        metrics = urllib.request.urlopen(f"{gw.endpoint}/metrics", timeout=10).read().decode()
        assert "kvbox_cluster_chunk_writes_total" in metrics
        assert "kvbox_cluster_read_failovers_total" in metrics
        status = run_kvbox("admin", "cluster", "status", "--meta", url)
        assert status.returncode == 0 and victim.node_id.encode() in status.stdout
        # The node is back: the worker makes every chunk whole again (R copies).
        victim.start()

        def whole() -> bool:
            s = run_kvbox("admin", "cluster", "status", "--meta", url)
            return b"backlog: 0 chunks" in s.stdout

        assert wait_until(whole, within=60, step=0.5)
        for key, data in {**objects, **more}.items():
            assert s3.get_object(Bucket="photos", Key=key)["Body"].read() == data
    finally:
        gw.close()


def test_too_few_nodes_is_503_and_nothing_is_acknowledged(
    tmp_path: Path, cluster: tuple[str, list[BlobNodeProcess]]
) -> None:
    url, nodes = cluster
    gw = gateway(tmp_path, url, nodes[0].secret_file, "--replicas", "4").start()
    try:
        s3 = gw.client()
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="before", Body=os.urandom(80_000))
        nodes[3].kill()
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket="bkt", Key="refused", Body=os.urandom(80_000))
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket="bkt", Key="refused")
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    finally:
        gw.close()


def test_nodes_closing_idle_connections_cause_no_failover_nor_503(
    tmp_path: Path, cluster: tuple[str, list[BlobNodeProcess]]
) -> None:
    """W = R = 3: a write needs three nodes, so one request lost to a connection a node
    closed as idle would be a 503, and a read's a failover. The gateway is stopped
    (SIGSTOP) while the nodes close its idle pooled connections, so it wakes up with
    requests waiting and closes it has not yet seen."""
    url, nodes = cluster
    gw = gateway(tmp_path, url, nodes[0].secret_file, "--repair-interval", "3600").start()
    try:
        s3 = gw.client()
        s3.create_bucket(Bucket="idle")
        stored: dict[str, bytes] = {}
        idle_before = sum(
            n.metric("kvbox_timeouts_total", door="blobnode", phase="idle") for n in nodes
        )
        for i in range(3):
            stored[f"k{i}"] = os.urandom(100_000 + i)  # chunked: above INLINE_MAX
            s3.put_object(Bucket="idle", Key=f"k{i}", Body=stored[f"k{i}"])
            os.kill(gw.server.pid, signal.SIGSTOP)
            try:  # until every node closed the gateway's connections (the scrape's is open)
                deadline = time.monotonic() + 20
                while any(n.metric("kvbox_open_connections", door="blobnode") > 1 for n in nodes):
                    assert time.monotonic() < deadline, "nodes kept idle connections open"
                    time.sleep(NODE_IDLE / 5)
            finally:
                os.kill(gw.server.pid, signal.SIGCONT)
            for key, data in stored.items():
                assert s3.get_object(Bucket="idle", Key=key)["Body"].read() == data
        idle_after = sum(
            n.metric("kvbox_timeouts_total", door="blobnode", phase="idle") for n in nodes
        )
        assert idle_after >= idle_before + 3 * 3  # each round: the three replicas' nodes
        text = urllib.request.urlopen(f"{gw.endpoint}/metrics", timeout=10).read().decode()
        assert metric_value(text, "kvbox_cluster_read_failovers_total") == 0
        assert "kvbox_cluster_node_retries_total" in text  # sent again, not failed over
        assert metric_value(text, "kvbox_cluster_chunk_writes_total") >= 3
        assert metric_value(text, "kvbox_cluster_chunk_reads_total") >= 6
    finally:
        gw.close()


def test_bad_cluster_flags(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_database(migrated=True)
    ports = ["--kv-port", str(free_port()), "--http-port", "0", "--console", "off"]
    r = run_kvbox("serve", "--data", str(tmp_path / "d"), *ports, "--blobs", "cluster")
    assert r.returncode == 1 and b"--blobs cluster needs --meta" in r.stderr
    r = run_kvbox(
        "serve", "--data", str(tmp_path / "d"), *ports, "--meta", url,
        "--blobs", "cluster", "--write-quorum", "5",
    )  # fmt: skip
    assert r.returncode != 0 and b"--write-quorum" in r.stderr
