"""The HTTP front door: health, readiness and Prometheus metrics (the S3 API joins here).

Layer: server. Rules: aiohttp is the HTTP server (parsing, keep-alive, limits are its job);
handlers read state, they never block the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kvbox.kv.commands import ServerCounters

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

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self.counters
        req = CounterMetricFamily(
            "kvbox_requests", "Requests handled, by front door.", labels=["door"]
        )
        req.add_metric(["gwkv"], c.requests)
        yield req
        conns = GaugeMetricFamily(
            "kvbox_open_connections", "Open connections, by front door.", labels=["door"]
        )
        conns.add_metric(["gwkv"], c.connections)
        yield conns
        total = CounterMetricFamily(
            "kvbox_connections", "Connections accepted, by front door.", labels=["door"]
        )
        total.add_metric(["gwkv"], c.connections_total)
        yield total
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
