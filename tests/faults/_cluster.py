"""A whole kvbox cluster for the fault tests: PostgreSQL, blob nodes, two gateways.

Layer: tests/faults. Rules:

* **Each process on its own host** of a ``_netns.Topology``: the blob nodes and the
  gateways each in a namespace of their own, advertised by their namespace address;
  PostgreSQL (a server of this cluster only, since the gateway/PostgreSQL scenarios
  restart it) in the root namespace on the bridge address, which every namespace
  reaches. The test process itself (the load generator, the read-back checks) talks
  to the gateways from the root namespace, as clients on the network would.
* **Settings that let scenarios finish in seconds, and why they are legitimate:**
  ``--write-quorum majority`` (the issue allows "a majority with repair allowed by
  flag"): with R = 3 and one node out, writes still succeed on two copies and the
  repair worker brings them to three; with W = R every write during an outage would
  fail cleanly, proving less. ``--repair-interval 1`` so a pass follows a fault
  within a second instead of 30.
* **Versioning on** for the S3 bucket and the GW-KV keys (``--kv-versioning true``):
  every acknowledged write keeps its own version id, so after a fault each one can be
  read back by version and compared byte for byte, not only the last write of a key.
* **What "every chunk at R" means** is asked of PostgreSQL's catalog *and* of the
  nodes' disks (``replication()``): a replica row whose file is missing on its node
  would be a catalog that lies.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from _cleanup import removed_after
from _postgres import PostgresServer, run_sync
from e2e._gwkv import wait_until
from e2e._s3 import ACCESS_KEY, REGION, SECRET_KEY
from e2e._server import kvbox_argv, run_kvbox
from kvbox.cluster.placement import place

from ._netns import Host, Proc, Topology, topology

REPLICAS = 3
#: Ports inside a namespace of our own (on loopback a free port is drawn instead).
NODE_PORT, KV_PORT, HTTP_PORT = 19100, 17070, 19000
ROOT_ENV = {"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY}
S3_BUCKET = "load"


@dataclass
class BlobNode:
    host: Host
    proc: Proc
    port: int
    data: Path
    node_id: str = ""

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{self.port}"

    def start(self) -> None:
        """Start (or restart, same address and data) and wait for its ready line."""
        self.proc.spawn()
        self.start_wait()

    def start_wait(self) -> None:
        text = self.proc.wait_ready()
        for line in text.splitlines():
            if line.startswith("kvbox: blobnode ") and " serving " in line:
                self.node_id = line.split()[2]

    def chunk_file(self, chunk_id: str) -> Path:
        return self.data / "chunks" / chunk_id[:2] / chunk_id[2:4] / chunk_id


@dataclass
class Gateway:
    name: str
    host: Host
    proc: Proc
    kv_port: int
    http_port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host.ip}:{self.http_port}"

    def s3(self, **config: Any) -> Any:
        """boto3 as a user makes it (its default retries and timeouts), path-style;
        ``config`` overrides botocore ``Config`` options (e.g. ``retries``)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, **config),
        )


class Cluster:
    """PostgreSQL + blob nodes + two gateways on a topology (module docstring)."""

    def __init__(self, topo: Topology, base: Path) -> None:
        self.topo = topo
        self.base = base
        self.secret_file = base / "secret"
        self.secret_file.write_text(hashlib.sha256(base.name.encode()).hexdigest() + "\n")
        self.secret_file.chmod(0o600)
        extra = (topo.gateway_ip,) if topo.mode == "netns" else ()
        # Its own temporary directory: PostgreSQL runs as nobody when we are root, and
        # nobody may not enter pytest's base directory.
        self.pg = PostgresServer(also_listen=extra)
        self.nodes: list[BlobNode] = []
        self.gateways: list[Gateway] = []
        self.local_url = ""  # the database as the test process reaches it
        self.url = ""  # ... and as the hosts reach it

    def start(self, nodes: int = 3, gateways: int = 2) -> Cluster:
        self.pg.start()
        self.local_url = self.pg.new_database(migrated=True)
        db = self.local_url.rsplit("/", 1)[1]
        self.url = self.pg.url(db, host=self.topo.gateway_ip)
        made = [self._node() for _ in range(nodes)]
        for n in made:  # spawn all, then wait: their start-ups overlap
            n.proc.spawn()
        for n in made:
            n.start_wait()
        gws = [self._gateway(f"gw{i}") for i in range(gateways)]
        for g in gws:
            g.proc.spawn()
        for g in gws:
            g.proc.wait_ready()
        return self

    def _node(self) -> BlobNode:
        i = len(self.nodes)
        host = self.topo.add_host(f"n{i}")
        port = host.port(NODE_PORT)
        data = self.base / f"node{i}"
        argv = kvbox_argv(
            "blobnode", "--data", str(data), "--listen", f"{host.ip}:{port}",
            "--meta", self.url, "--cluster-secret-file", str(self.secret_file),
        )  # fmt: skip
        proc = host.proc(f"node{i}", argv, self.base / f"node{i}.log", " serving ")
        node = BlobNode(host, proc, port, data)
        self.nodes.append(node)
        return node

    def _gateway(self, name: str) -> Gateway:
        host = self.topo.add_host(name)
        kv, http = host.port(KV_PORT), host.port(HTTP_PORT)
        argv = kvbox_argv(
            "serve", "--data", str(self.base / name), "--host", host.ip,
            "--kv-port", str(kv), "--http-port", str(http), "--console", "off",
            "--kv-auth", "off", "--kv-versioning", "true", "--sync", "normal",
            "--meta", self.url, "--blobs", "cluster",
            "--cluster-secret-file", str(self.secret_file),
            "--replicas", str(REPLICAS), "--write-quorum", "majority",
            "--repair-interval", "1",
        )  # fmt: skip
        proc = host.proc(name, argv, self.base / f"{name}.log", "kvbox: ready", ROOT_ENV)
        gw = Gateway(name, host, proc, kv, http)
        self.gateways.append(gw)
        return gw

    def add_node(self) -> BlobNode:
        node = self._node()
        node.proc.spawn()
        node.start_wait()
        return node

    # --- the operator's commands and the catalog -------------------------------------

    def admin(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """``kvbox admin cluster ARGS --meta URL`` from the test's machine."""
        return run_kvbox("admin", "cluster", *args, "--meta", self.local_url)

    def sql(self, query: str, *args: Any) -> list[Any]:
        async def run() -> list[Any]:
            import asyncpg

            conn = await asyncpg.connect(self.local_url, timeout=10)
            try:
                await conn.execute("SET search_path = kvbox")
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        result: list[Any] = run_sync(run())
        return result

    def replication(self) -> Replication:
        """Every chunk's copies on active nodes by the catalog, checked against the
        disks.

        A chunk row with no replica and no reference is left out (as the repair worker
        leaves it): a write killed after ``Catalog.intend`` and before any node PUT
        finished, or one refused before any node fsync'd it, leaves one; it holds no
        byte anyone can read, and the collector removes it after the GC delay. A
        REFERENCED chunk with no copy is counted (data lost)."""
        rows = self.sql(
            "SELECT c.chunk_id, coalesce(array_agg(r.node_id)"
            " FILTER (WHERE n.state = 'active'), '{}') AS holders"
            " FROM blob_chunks c LEFT JOIN chunk_replicas r ON r.chunk_id = c.chunk_id"
            " LEFT JOIN blob_nodes n ON n.node_id = r.node_id"
            " WHERE EXISTS (SELECT 1 FROM chunk_replicas x WHERE x.chunk_id = c.chunk_id)"
            "  OR EXISTS (SELECT 1 FROM chunks m WHERE m.chunk_id = c.chunk_id AND m.refs > 0)"
            " GROUP BY c.chunk_id"
        )
        by_id = {n.node_id: n for n in self.nodes}
        under: list[str] = []
        missing: list[tuple[str, str]] = []
        for row in rows:
            cid = bytes(row["chunk_id"]).hex()
            holders = list(row["holders"])
            if len(holders) < REPLICAS:
                under.append(cid)
            for nid in holders:
                node = by_id.get(nid)
                if node is not None and not node.chunk_file(cid).exists():
                    missing.append((cid, nid))
        return Replication(len(rows), under, missing)

    def copies_on(self, node: BlobNode) -> int:
        """Replica rows naming ``node`` (a drained node's count falls to 0)."""
        rows = self.sql("SELECT count(*) AS n FROM chunk_replicas WHERE node_id = $1", node.node_id)
        return int(rows[0]["n"])

    def misplaced(self) -> list[str]:
        """Chunks whose copies are not exactly their rendezvous placement over the active
        nodes (after a node joined or left, repair moves them there: a rebalance)."""
        active = [
            r["node_id"] for r in self.sql("SELECT node_id FROM blob_nodes WHERE state = 'active'")
        ]
        rows = self.sql(
            "SELECT c.chunk_id, array_remove(array_agg(r.node_id), NULL) AS holders"
            " FROM blob_chunks c LEFT JOIN chunk_replicas r ON r.chunk_id = c.chunk_id"
            " GROUP BY c.chunk_id"
        )
        wrong = []
        for row in rows:
            cid = bytes(row["chunk_id"]).hex()
            if not row["holders"]:
                continue  # a write in flight, or a failed one: the collector's business
            if set(row["holders"]) != set(place(cid, active, REPLICAS)):
                wrong.append(cid)
        return wrong

    def wait_replicated(self, within: float = 60.0) -> Replication:
        """Poll until every chunk has R copies on active nodes, each file on its disk."""
        last: list[Replication] = []

        def whole() -> bool:
            last[:] = [self.replication()]
            return last[0].whole

        if not wait_until(whole, within, 0.5):
            raise AssertionError(f"repair did not return every chunk to R: {last[0]}")
        return last[0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pg.close()


@dataclass(frozen=True)
class Replication:
    chunks: int
    under: list[str]
    missing: list[tuple[str, str]]

    @property
    def whole(self) -> bool:
        return not self.under and not self.missing


@contextlib.contextmanager
def cluster(base: Path, nodes: int = 3, gateways: int = 2) -> Iterator[Cluster]:
    """A started cluster on a fresh topology; everything killed and deleted on exit
    (``base`` too, unless a test failed: its logs and histories are kept then)."""
    with removed_after(base), topology() as topo:
        c = Cluster(topo, base)
        try:
            c.start(nodes, gateways)
            yield c
        finally:
            topo.close()  # the processes first (by PID), then PostgreSQL
            c.close()
