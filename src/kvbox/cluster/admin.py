"""``kvbox admin cluster status|drain|remove`` and ``kvbox admin bucket replicas``: the
operator's view of the blob cluster.

Layer: cluster. Rules: everything is read from and written to PostgreSQL (the cluster's
only shared state), so the commands work from any machine that reaches the database,
whether or not a gateway runs. ``drain`` only marks the node: the repair worker moves
its chunks away and ``status`` shows its count fall to 0. ``remove`` refuses while a
chunk has no copy on any other node (drain first), so no command loses a chunk.
``bucket replicas`` sets a bucket's own R through the MetaStore (so every gateway hears
of it within ``changes.BOUND_SECONDS``), waits that long, then recomputes the wanted
copies of the bucket's chunks (``Catalog.rewant``): no write that started after the
wait uses the old R, and the repair worker does the copying or dropping.
"""

from __future__ import annotations

import asyncio

from kvbox.cluster.catalog import DEAD_AFTER, SUSPECT_AFTER, Catalog, Node
from kvbox.cluster.store import (
    DEFAULT_REPLICAS,
    GC_DELAY,
    MAX_REPLICAS,
    REPLICAS_ATTR,
    bucket_replicas,
)
from kvbox.core.meta.postgres import PostgresMetaStore
from kvbox.core.meta.postgres.changes import BOUND_SECONDS
from kvbox.core.pg import PgUrl
from kvbox.errors import InvalidArgument, NoSuchBucket, NotFound


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def status_lines(catalog: Catalog, replicas: int = DEFAULT_REPLICAS) -> list[str]:
    nodes = await catalog.nodes()
    totals = await catalog.totals(replicas)
    holder = await catalog.repair_holder()
    last = await catalog.last_pass()
    counts = {h: sum(1 for n in nodes if n.health == h) for h in ("live", "suspect", "dead")}
    lines = [
        f"nodes: {len(nodes)} ({counts['live']} live, {counts['suspect']} suspect, "
        f"{counts['dead']} dead; suspect after {SUSPECT_AFTER:g} s without a heartbeat, "
        f"dead after {DEAD_AFTER:g} s)",
        f"chunks: {totals.chunks} ({_size(totals.bytes)}), replicas: {totals.replicas}, "
        f"replication backlog: {totals.backlog} chunks under their R (default {replicas})",
        f"repair: {'running in ' + holder if holder else 'idle (no worker holds the lock)'}",
        (
            f"last repair pass: {last.ago:.1f} s ago by {last.worker}, {last.seconds:.1f} s "
            f"long, backlog {last.backlog}; "
            + ", ".join(f"{k} {v}" for k, v in last.counts.items())
            if last is not None
            else "last repair pass: none yet"
        ),
        "",
        f"{'NODE':<16} {'ADDRESS':<22} {'STATE':<9} {'HEALTH':<8} {'BEAT':>7} "
        f"{'CHUNKS':>8} {'BYTES':>10} {'FREE':>10}",
    ]
    for n in nodes:
        lines.append(
            f"{n.node_id:<16} {n.address:<22} {n.state:<9} {n.health:<8} {n.age:>6.1f}s "
            f"{n.chunks:>8} {_size(n.bytes):>10} {_size(n.free_bytes):>10}"
        )
    lines += ["", f"{'BUCKET':<32} {'R':>11} {'CHUNKS':>8} {'UNDER R':>8}"]
    for b in await catalog.buckets(replicas):
        r = f"{replicas} default" if b.replicas is None else str(b.replicas)
        lines.append(f"{b.name:<32} {r:>11} {b.chunks:>8} {b.under:>8}")
    return lines


async def set_bucket_replicas(
    url: PgUrl,
    catalog: Catalog,
    bucket: str,
    replicas: int | None,
    default: int = DEFAULT_REPLICAS,
    *,
    settle: float = 2 * BOUND_SECONDS,
) -> list[str]:
    """Give ``bucket`` its own R (None: back to the gateways' ``default``) and recompute
    its chunks' wanted copies after ``settle`` seconds (module docstring)."""
    if replicas is not None and not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidArgument(f"replicas must be within 1..{MAX_REPLICAS}, not {replicas}")
    meta = PostgresMetaStore(url, pool_size=2)
    await meta.open()
    try:
        found = await meta.get_bucket(bucket)
        if found is None:
            raise NoSuchBucket(bucket)
        old = bucket_replicas(found)
        await meta.set_bucket_attrs(
            bucket, {REPLICAS_ATTR: None if replicas is None else str(replicas)}
        )
    finally:
        await meta.close()
    await asyncio.sleep(settle)  # every gateway's bucket cache has the new R by now
    chunks, changed = await catalog.rewant(bucket, default, GC_DELAY)

    def shown(r: int | None) -> str:
        return f"{default} (the default)" if r is None else str(r)

    lines = [
        f"bucket {bucket}: replicas {shown(replicas)}, was {shown(old)}; {chunks} chunks, "
        f"{changed} of them now want a different number of copies (the highest R of the "
        "buckets that reference each; chunks written in the last hour are only raised now, "
        "lowered by the repair worker's next recount): the repair worker makes or drops "
        "the copies (watch kvbox admin cluster status)"
    ]
    writable = sum(1 for n in await catalog.nodes() if n.writable)
    if replicas is not None and replicas > writable:
        lines.append(
            f"warning: {writable} writable blob nodes, fewer than {replicas}: a write to "
            f"{bucket} with --write-quorum all fails (S3 503) and its chunks stay under R "
            "until more nodes join"
        )
    return lines


async def drain(catalog: Catalog, node: str) -> Node:
    found = await catalog.set_state(node, "draining")
    if found is None:
        raise NotFound(f"no blob node {node!r} (give its id or address)")
    return found


async def remove(catalog: Catalog, node: str) -> tuple[Node, int]:
    """Mark the node removed and forget its copies (the repair worker re-replicates
    them elsewhere); refused while it holds the only copy of a chunk."""
    found = next((n for n in await catalog.nodes() if node in (n.node_id, n.address)), None)
    if found is None:
        raise NotFound(f"no blob node {node!r} (give its id or address)")
    sole = await catalog.sole_copies(found.node_id)
    if sole:
        raise InvalidArgument(
            f"blob node {found.node_id} holds the only copy of {sole} chunks: drain it "
            f"first (kvbox admin cluster drain {found.node_id}) and wait until status "
            "shows it holds 0 chunks"
        )
    updated = await catalog.set_state(found.node_id, "removed")
    assert updated is not None
    return updated, await catalog.drop_node_replicas(found.node_id)
