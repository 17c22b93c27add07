"""The front doors' figures as Prometheus metric families, built at scrape time:
requests, errors, latency and bytes by door and operation, connections and their
refusals and timeouts (``kvbox.metrics.ServerCounters``, one per door), sendfile, the
memory budget for bodies in flight, and what is stored.

Layer: server (reads plain counters when ``/metrics`` is asked, like ``server/storage.py``
and ``server/lifecycle.py``). docs/operations.md says what each means and which to alert
on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kvbox.metrics import ServerCounters
from kvbox.server.accesslog import AccessLog
from kvbox.server.budget import MemoryBudget
from kvbox.server.sendfile import Sendfile


class DoorsCollector(Collector):
    """Reads kvbox's own counters at scrape time, one ``ServerCounters`` per front door.

    The hot paths bump plain integers; turning them into metric families only when
    Prometheus asks keeps per-request cost at a few additions.
    """

    def __init__(
        self,
        doors: dict[str, ServerCounters],
        files: Sendfile | None = None,
        budget: MemoryBudget | None = None,
        access: AccessLog | None = None,
    ) -> None:
        self.doors = doors
        self.files = files
        self.budget = budget
        self.access = access
        #: (objects, bytes), refreshed by the /metrics handler just before a scrape.
        self.stored = (0, 0)

    def collect(self) -> Iterator[Metric]:
        req = CounterMetricFamily(
            "kvbox_requests",
            "Requests handled, by front door and operation.",
            labels=["door", "op"],
        )
        errors = CounterMetricFamily(
            "kvbox_request_errors",
            "Requests refused, by front door and error code.",
            labels=["door", "code"],
        )
        hist = HistogramMetricFamily(
            "kvbox_request_duration_seconds",
            "Time from a request's arrival to its reply (for S3, to the response headers); "
            "GW-KV requests answered on the spot (cache hits, PING, refusals) are in the "
            "lowest bucket.",
            labels=["door"],
        )
        for name, c in self.doors.items():
            for op, n in sorted(c.by_op.items()):
                req.add_metric([name, op.upper() if name == "gwkv" else op], n)
            for code, n in sorted(c.errors.items()):
                errors.add_metric([name, code], n)
            buckets = [(le, n + c.immediate) for le, n in c.latency.cumulative()]
            hist.add_metric([name], buckets, c.latency.total)
        yield req
        yield errors
        yield hist
        received = CounterMetricFamily(
            "kvbox_received_bytes", "Bytes received, by front door.", labels=["door"]
        )
        sent = CounterMetricFamily(
            "kvbox_sent_bytes", "Bytes sent, by front door.", labels=["door"]
        )
        for name, c in self.doors.items():
            received.add_metric([name], c.bytes_in)
            sent.add_metric([name], c.bytes_out)
        yield received
        yield sent
        yield from connection_families(self.doors)
        if self.files is not None:
            yield CounterMetricFamily(
                "kvbox_sendfile_responses",
                "S3 responses whose body went out with sendfile.",
                value=self.files.responses,
            )
            yield CounterMetricFamily(
                "kvbox_sendfile_bytes", "Bytes sent with sendfile.", value=self.files.bytes
            )
        if self.budget is not None:
            yield from _budget_families(self.budget)
        if self.access is not None:
            yield CounterMetricFamily(
                "kvbox_access_log_dropped_lines",
                "Access-log lines dropped because the log output did not keep up.",
                value=self.access.dropped,
            )
        objects, nbytes = self.stored
        yield GaugeMetricFamily("kvbox_stored_objects", "Live objects stored.", value=objects)
        yield GaugeMetricFamily("kvbox_stored_bytes", "Bytes of live objects stored.", value=nbytes)


class ConnectionsCollector(Collector):
    """Only the connection families of some doors: a listener of another program under
    the governor (``kvbox blobnode``'s port), which has no requests of this kind."""

    def __init__(self, doors: dict[str, ServerCounters]) -> None:
        self.doors = doors

    def collect(self) -> Iterator[Metric]:
        yield from connection_families(self.doors)


def connection_families(doors: dict[str, ServerCounters]) -> Iterator[Metric]:
    """What the governor counts per door: connections, refusals, timeouts, evictions."""
    total = CounterMetricFamily(
        "kvbox_connections", "Connections accepted, by front door.", labels=["door"]
    )
    conns = GaugeMetricFamily(
        "kvbox_open_connections", "Open connections, by front door.", labels=["door"]
    )
    refused = CounterMetricFamily(
        "kvbox_refused_connections",
        "Connections or request heads refused before a handler ran, by front door and "
        "reason: busy (--max-connections, nothing idle to close), address "
        "(--max-connections-per-ip), header_bytes (--max-header-bytes), header_fields "
        "(--max-headers).",
        labels=["door", "reason"],
    )
    timeouts = CounterMetricFamily(
        "kvbox_timeouts",
        "Connections timed out, by front door and phase: header (--header-timeout), "
        "body (a request body stalled, --body-timeout), send (a client stopped reading "
        "its reply, --body-timeout), idle (--idle-timeout).",
        labels=["door", "phase"],
    )
    evicted = CounterMetricFamily(
        "kvbox_evicted_connections",
        "Idle connections closed to make room for a new one at --max-connections.",
        labels=["door"],
    )
    for name, c in doors.items():
        door = [name]
        total.add_metric(door, c.connections_total)
        conns.add_metric(door, c.connections)
        for reason, n in sorted(c.refused.items()):
            refused.add_metric([name, reason], n)
        for phase, n in sorted(c.timeouts.items()):
            timeouts.add_metric([name, phase], n)
        evicted.add_metric(door, c.evicted)
    yield total
    yield conns
    yield refused
    yield timeouts
    yield evicted


def _budget_families(b: MemoryBudget) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "kvbox_inflight_bytes",
        "Memory held by request and reply bodies in flight, as granted by the budget.",
        value=b.used,
    )
    yield GaugeMetricFamily(
        "kvbox_inflight_limit_bytes", "The budget (--max-inflight-bytes).", value=b.limit
    )
    yield GaugeMetricFamily(
        "kvbox_inflight_peak_bytes", "The most the budget has granted at once.", value=b.peak
    )
    yield CounterMetricFamily(
        "kvbox_inflight_waits",
        "Bodies that had to wait for their share of the budget.",
        value=b.waited,
    )
    yield CounterMetricFamily(
        "kvbox_inflight_refused",
        "Bodies refused after waiting (S3 503 SlowDown, GW-KV ERR BUSY): alert on a rate.",
        value=b.refused,
    )
