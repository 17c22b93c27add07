"""The HTTP front door: health, readiness and Prometheus metrics (the S3 API joins here).

Layer: server. Rules: aiohttp is the HTTP server (parsing, keep-alive, limits are its job);
handlers read state, they never block the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kvbox.metrics import ServerCounters

Readiness = Callable[[], bool]


class _KvCollector(Collector):
    """Reads kvbox's own counters at scrape time.

    The GW-KV hot path bumps plain integers; turning them into metric families only when
    Prometheus asks keeps per-request cost at one addition.
    """

    def __init__(self, counters: ServerCounters) -> None:
        self.counters = counters
        #: (objects, bytes), refreshed by the /metrics handler just before a scrape.
        self.stored = (0, 0)

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        door = ["gwkv"]
        req = CounterMetricFamily(
            "kvbox_requests",
            "Requests handled, by front door and operation.",
            labels=["door", "op"],
        )
        for op, n in sorted(c.by_op.items()):
            req.add_metric([*door, op.upper()], n)
        yield req
        errors = CounterMetricFamily(
            "kvbox_request_errors",
            "Requests refused, by front door and error code.",
            labels=["door", "code"],
        )
        for code, n in sorted(c.errors.items()):
            errors.add_metric([*door, code], n)
        yield errors
        hist = HistogramMetricFamily(
            "kvbox_request_duration_seconds",
            "Time from a request's arrival to its reply; requests answered on the spot "
            "(cache hits, PING, refusals) are in the lowest bucket.",
            labels=["door"],
        )
        buckets = [(le, n + c.immediate) for le, n in c.latency.cumulative()]
        hist.add_metric(door, buckets, c.latency.total)
        yield hist
        for name, doc, value in (
            ("kvbox_received_bytes", "Bytes received, by front door.", c.bytes_in),
            ("kvbox_sent_bytes", "Bytes sent, by front door.", c.bytes_out),
            ("kvbox_connections", "Connections accepted, by front door.", c.connections_total),
        ):
            fam = CounterMetricFamily(name, doc, labels=["door"])
            fam.add_metric(door, value)
            yield fam
        conns = GaugeMetricFamily(
            "kvbox_open_connections", "Open connections, by front door.", labels=["door"]
        )
        conns.add_metric(door, c.connections)
        yield conns
        objects, nbytes = self.stored
        yield GaugeMetricFamily("kvbox_stored_objects", "Live objects stored.", value=objects)
        yield GaugeMetricFamily("kvbox_stored_bytes", "Bytes of live objects stored.", value=nbytes)


def build_app(
    counters: ServerCounters,
    stored: Callable[[], Awaitable[tuple[int, int]]],
    ready: Readiness,
) -> web.Application:
    registry = CollectorRegistry()
    collector = _KvCollector(counters)
    registry.register(collector)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics(request: web.Request) -> web.Response:
        collector.stored = await stored()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
