"""The storage core's health as Prometheus metric families, built at scrape time:
damaged reads refused (``kvbox.core.integrity``).

Layer: server (reads the core's plain counters when ``/metrics`` is asked, like
``server/lifecycle.py``). docs/operations.md says what each means and which to alert on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kvbox.core.integrity import DamageLog


class StorageCollector(Collector):
    def __init__(self, damage: DamageLog) -> None:
        self.damage = damage

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "kvbox_damaged_reads",
            "Reads refused because the stored bytes failed their check (a chunk that no "
            "longer hashes to its address or is missing, an inline value that no longer "
            "matches its checksum). Any increase means damage on disk: alert.",
            value=self.damage.reads,
        )
        yield GaugeMetricFamily(
            "kvbox_damaged_objects",
            "Distinct damaged object versions reads have met since start (each logged once).",
            value=self.damage.objects,
        )
