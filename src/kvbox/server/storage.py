"""The storage core's health as Prometheus metric families, built at scrape time:
damaged reads refused (``kvbox.core.integrity``), free space against the reserve
(``kvbox.core.space``).

Layer: server (reads the core's plain counters when ``/metrics`` is asked, like
``server/lifecycle.py``). docs/operations.md says what each means and which to alert on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kvbox.core.integrity import DamageLog
from kvbox.core.space import Space


class StorageCollector(Collector):
    def __init__(self, damage: DamageLog, space: Space | None = None) -> None:
        self.damage = damage
        self.space = space

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
        space = self.space
        if space is None:
            return
        yield GaugeMetricFamily(
            "kvbox_disk_free_bytes",
            "Free bytes on the data directory's file system (as unprivileged users see it), "
            "measured every second.",
            value=space.free,
        )
        yield GaugeMetricFamily(
            "kvbox_disk_reserve_bytes",
            "The reserve (--min-free) in bytes: below it new writes are refused.",
            value=space.reserve,
        )
        yield GaugeMetricFamily(
            "kvbox_storage_full",
            "1 while free space is under the reserve: new writes refused, /readyz not ready.",
            value=1 if space.full else 0,
        )
        yield CounterMetricFamily(
            "kvbox_storage_full_episodes",
            "Times free space fell under the reserve since start.",
            value=space.episodes,
        )
        yield CounterMetricFamily(
            "kvbox_storage_full_refusals",
            "Writes refused because free space was under the reserve.",
            value=space.refused,
        )
