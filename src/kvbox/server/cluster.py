"""A gateway's blob-cluster figures as Prometheus metric families, built at scrape time.

Layer: server (reads ``ClusterBlobStore.counters`` and ``Repairer.progress``, plain
counters kept by ``kvbox.cluster``, when ``/metrics`` is asked, like
``server/storage.py``). The backlog is the last repair pass's; the cluster-wide view
(every node, live query) is ``kvbox admin cluster status``. docs/operations.md says
what each means and which to alert on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kvbox.cluster.repair import Repairer
from kvbox.cluster.store import ClusterBlobStore


class ClusterCollector(Collector):
    def __init__(self, store: ClusterBlobStore, repairer: Repairer | None) -> None:
        self.store = store
        self.repairer = repairer

    def collect(self) -> Iterator[Metric]:
        c = self.store.counters
        yield CounterMetricFamily(
            "kvbox_cluster_chunk_writes", "Chunks this gateway wrote to blob nodes.", value=c.writes
        )
        yield CounterMetricFamily(
            "kvbox_cluster_chunk_reads",
            "Chunk reads this gateway sent to blob nodes.",
            value=c.reads,
        )
        yield CounterMetricFamily(
            "kvbox_cluster_read_failovers",
            "Chunk reads served by another replica after the first one failed.",
            value=c.failovers,
        )
        bad = CounterMetricFamily(
            "kvbox_cluster_bad_replicas",
            "Replicas reads found damaged (bytes that no longer hash to the chunk id) or "
            "missing; each is repaired from a sound copy. Any increase of damaged: alert.",
            labels=["kind"],
        )
        bad.add_metric(["damaged"], c.damaged_replicas)
        bad.add_metric(["missing"], c.missing_replicas)
        yield bad
        yield CounterMetricFamily(
            "kvbox_cluster_replicas_repaired_on_read",
            "Damaged or missing replicas this gateway rewrote after a read or a verify.",
            value=c.repaired_replicas,
        )
        yield CounterMetricFamily(
            "kvbox_cluster_node_retries",
            "Requests to blob nodes sent again on a fresh connection because the pooled one "
            "had just been closed by the node (its idle timeout, a restart); not failures.",
            value=self.store.client.retries,
        )
        yield CounterMetricFamily(
            "kvbox_cluster_hedged_reads",
            "Chunk reads that asked a second replica because the first had not answered "
            "within its hedge delay (a silent or slow blob node).",
            value=c.hedged_reads,
        )
        yield CounterMetricFamily(
            "kvbox_cluster_late_replicas",
            "Copies that landed after their write was acknowledged with W of R copies, and "
            "were recorded then.",
            value=c.late_replicas,
        )
        yield CounterMetricFamily(
            "kvbox_cluster_under_replicated_writes",
            "Writes acknowledged with fewer than R replicas (write quorum below R); the "
            "repair worker completes them.",
            value=c.under_replicated_writes,
        )
        if self.repairer is None:
            return
        p = self.repairer.progress
        yield GaugeMetricFamily(
            "kvbox_cluster_replication_backlog",
            "Chunks under R countable copies found by this gateway's last repair pass "
            "(0 on gateways whose worker does not hold the repair lock).",
            value=p.backlog,
        )
        work = CounterMetricFamily(
            "kvbox_cluster_repair",
            "What this gateway's repair worker did: copied (replicas made: repair, "
            "rebalance, drain), dropped (surplus replicas deleted), collected "
            "(unreferenced chunks deleted), orphans (unrecorded files deleted), scrubbed "
            "(chunks whose copies were verified), failed (chunks with no readable or "
            "sound copy: alert).",
            labels=["action"],
        )
        for action in ("copied", "dropped", "collected", "orphans", "scrubbed", "failed"):
            work.add_metric([action], getattr(p, action))
        yield work
        yield CounterMetricFamily(
            "kvbox_cluster_repair_passes", "Repair passes this gateway ran.", value=p.passes
        )
        yield GaugeMetricFamily(
            "kvbox_cluster_repair_last_pass_seconds",
            "How long this gateway's last repair pass took.",
            value=p.last_pass_seconds,
        )
