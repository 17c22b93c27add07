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
from kvbox.core.scrub import ScrubStats
from kvbox.core.space import Space


class StorageCollector(Collector):
    def __init__(
        self, damage: DamageLog, space: Space | None = None, scrub: ScrubStats | None = None
    ) -> None:
        self.damage = damage
        self.space = space
        self.scrub = scrub

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
        if self.scrub is not None:
            yield from _scrub_metrics(self.scrub)
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


def _scrub_metrics(st: ScrubStats) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "kvbox_scrub_passes",
        "Background scrub passes finished (--scrub-interval).",
        value=st.passes,
    )
    yield GaugeMetricFamily("kvbox_scrub_running", "1 while a scrub pass runs.", value=st.running)
    yield GaugeMetricFamily(
        "kvbox_scrub_pass_versions",
        "Versions the current scrub pass has checked so far (the last pass's total between "
        "passes): its progress.",
        value=st.pass_versions,
    )
    yield GaugeMetricFamily(
        "kvbox_scrub_pass_bytes",
        "Chunk bytes the current scrub pass has read so far (the last pass's total between "
        "passes).",
        value=st.pass_bytes,
    )
    yield CounterMetricFamily(
        "kvbox_scrub_versions", "Versions checked by the scrubber since start.", st.versions_total
    )
    yield CounterMetricFamily(
        "kvbox_scrub_bytes", "Chunk bytes read by the scrubber since start.", value=st.bytes_total
    )
    yield GaugeMetricFamily(
        "kvbox_scrub_last_pass_end_timestamp_seconds",
        "When the last scrub pass ended (Unix time; 0: none yet).",
        value=st.last_pass_end,
    )
    yield GaugeMetricFamily(
        "kvbox_scrub_last_pass_seconds", "How long the last scrub pass took.", st.last_pass_seconds
    )
    damaged = CounterMetricFamily(
        "kvbox_scrub_damaged",
        "Damage the scrubber found, by kind: chunk (missing or not hashing to its address), "
        "value (an inline value failing its checksum), database (SQLite integrity_check), "
        "counters (a bucket's counters against its rows). Any increase: alert.",
        labels=["kind"],
    )
    for kind, n in st.damaged.items():
        damaged.add_metric([kind], n)
    yield damaged
