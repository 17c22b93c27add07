"""The lifecycle worker's figures as Prometheus metric families, built at scrape time.

Layer: server (the worker itself is ``kvbox.core.lifecycle.worker``; this only reads its
plain counters when ``/metrics`` is asked, like ``server/http.py``'s own collector).
docs/operations.md says what each means and which to alert on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kvbox.core.lifecycle.worker import LifecycleStats


class LifecycleCollector(Collector):
    def __init__(self, stats: LifecycleStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        st = self.stats
        yield CounterMetricFamily(
            "kvbox_lifecycle_passes", "Lifecycle passes finished.", value=st.passes
        )
        yield CounterMetricFamily(
            "kvbox_lifecycle_versions_scanned",
            "Object versions and delete markers lifecycle passes have looked at.",
            value=st.versions_scanned,
        )
        actions = CounterMetricFamily(
            "kvbox_lifecycle_actions",
            "What lifecycle rules did: expire_current (a delete marker added, or an "
            "unversioned object removed), expire_noncurrent, remove_delete_marker, "
            "abort_upload.",
            labels=["action"],
        )
        actions.add_metric(["expire_current"], st.expired_current)
        actions.add_metric(["expire_noncurrent"], st.expired_noncurrent)
        actions.add_metric(["remove_delete_marker"], st.delete_markers_removed)
        actions.add_metric(["abort_upload"], st.uploads_aborted)
        yield actions
        yield CounterMetricFamily(
            "kvbox_lifecycle_skipped_locked",
            "Removals a lifecycle rule wanted that object lock refused (retried next pass).",
            value=st.skipped_locked,
        )
        yield CounterMetricFamily(
            "kvbox_lifecycle_errors",
            "Buckets whose lifecycle pass failed (logged with the reason).",
            value=st.errors,
        )
        yield GaugeMetricFamily(
            "kvbox_lifecycle_last_pass_seconds",
            "How long the last lifecycle pass took.",
            value=st.last_pass_seconds,
        )
        yield GaugeMetricFamily(
            "kvbox_lifecycle_last_pass_end_timestamp_seconds",
            "When the last lifecycle pass ended (Unix time; 0 before the first).",
            value=st.last_pass_end,
        )
        yield GaugeMetricFamily(
            "kvbox_lifecycle_running", "1 while a lifecycle pass runs.", value=int(st.running)
        )
