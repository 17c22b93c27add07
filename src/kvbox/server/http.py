"""The HTTP front door: the S3 API, plus health, readiness and Prometheus metrics.

Layer: server. Rules: aiohttp is the HTTP server (parsing, keep-alive, limits are its job);
handlers read state, they never block the loop. This module only adapts: an aiohttp
request becomes a ``kvbox.s3.handlers.common.S3Request`` (raw path and query, headers,
the body as an async byte stream) and the ``S3Response`` is written back, streamed when
its body is a stream. Everything S3 means lives in ``kvbox.s3``.

Routes: ``/healthz``, ``/readyz`` and ``/metrics`` answer only a GET without a query
string and without credentials (no Authorization header); any other request to those
paths -- a signed GET, a HEAD, a PUT, a query -- is an S3 request for a bucket of that
name, so a bucket called ``metrics`` still works with every S3 client. Every other path
goes to the S3 catch-all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import parse_qsl

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
from kvbox.s3.errors import S3Error
from kvbox.s3.handlers.common import S3Request, S3Response
from kvbox.s3.server import S3Frontend, new_request_id

log = logging.getLogger("kvbox.http")
#: Largest read handed to the S3 layer at once: bounds a piece of a streamed upload.
_READ_SIZE = 1 << 20

Readiness = Callable[[], bool]


class _KvCollector(Collector):
    """Reads kvbox's own counters at scrape time, one ``ServerCounters`` per front door.

    The hot paths bump plain integers; turning them into metric families only when
    Prometheus asks keeps per-request cost at a few additions.
    """

    def __init__(self, doors: dict[str, ServerCounters]) -> None:
        self.doors = doors
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
        totals = {
            name: CounterMetricFamily(name, doc, labels=["door"])
            for name, doc in (
                ("kvbox_received_bytes", "Bytes received, by front door."),
                ("kvbox_sent_bytes", "Bytes sent, by front door."),
                ("kvbox_connections", "Connections accepted, by front door."),
            )
        }
        conns = GaugeMetricFamily(
            "kvbox_open_connections", "Open connections, by front door.", labels=["door"]
        )
        for name, c in self.doors.items():
            door = [name]
            for op, n in sorted(c.by_op.items()):
                req.add_metric([name, op.upper() if name == "gwkv" else op], n)
            for code, n in sorted(c.errors.items()):
                errors.add_metric([name, code], n)
            buckets = [(le, n + c.immediate) for le, n in c.latency.cumulative()]
            hist.add_metric(door, buckets, c.latency.total)
            totals["kvbox_received_bytes"].add_metric(door, c.bytes_in)
            totals["kvbox_sent_bytes"].add_metric(door, c.bytes_out)
            if name == "gwkv":  # aiohttp keeps HTTP connections to itself
                totals["kvbox_connections"].add_metric(door, c.connections_total)
                conns.add_metric(door, c.connections)
        yield req
        yield errors
        yield hist
        yield from totals.values()
        yield conns
        objects, nbytes = self.stored
        yield GaugeMetricFamily("kvbox_stored_objects", "Live objects stored.", value=objects)
        yield GaugeMetricFamily("kvbox_stored_bytes", "Bytes of live objects stored.", value=nbytes)


def _is_probe(request: web.Request) -> bool:
    """A plain health/metrics probe, not an S3 request for a bucket of that name."""
    return (
        request.method == "GET"
        and not request.query_string
        and "Authorization" not in request.headers
    )


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a body cut short becomes S3's IncompleteBody."""
    try:
        while True:
            piece = await request.content.readany()
            if not piece:
                return
            yield piece
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # aiohttp's payload errors: lost connection, short body
        raise S3Error("IncompleteBody") from exc


def _s3_request(request: web.Request) -> S3Request:
    raw_path, _, raw_query = request.raw_path.partition("?")
    return S3Request(
        method=request.method,
        raw_path=raw_path,
        raw_query=raw_query,
        query=parse_qsl(raw_query, keep_blank_values=True),
        headers=request.headers,
        body=_body(request),
        request_id=new_request_id(),
        remote=request.remote or "",
        secure=request.secure,
    )


async def _send(request: web.Request, resp: S3Response) -> web.StreamResponse:
    if isinstance(resp.body, bytes):
        out = web.Response(status=resp.status, headers=resp.headers, body=resp.body or None)
        if request.method == "HEAD" and resp.content_length is not None:
            out.headers["Content-Length"] = str(resp.content_length)
        return out
    stream = web.StreamResponse(status=resp.status, headers=resp.headers)
    if resp.content_length is not None:
        stream.content_length = resp.content_length
    body = resp.body
    try:
        await stream.prepare(request)
        async for piece in body:
            await stream.write(piece)
        await stream.write_eof()
    except Exception:
        # The status line is gone already: all that is left is to cut the connection
        # so the client sees a short body instead of a wrong one.
        log.exception("S3 response stream failed")
        if request.transport is not None:
            request.transport.close()
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    return stream


def build_app(
    counters: ServerCounters,
    stored: Callable[[], Awaitable[tuple[int, int]]],
    ready: Readiness,
    s3: S3Frontend | None = None,
) -> web.Application:
    """The HTTP app; without ``s3`` only the probes answer (every other path is 404)."""
    registry = CollectorRegistry()
    s3_counters = ServerCounters()
    collector = _KvCollector({"gwkv": counters, "s3": s3_counters})
    registry.register(collector)

    async def s3_handler(request: web.Request) -> web.StreamResponse:
        if s3 is None:
            raise web.HTTPNotFound()
        t0 = time.perf_counter()
        req = _s3_request(request)
        resp = await s3.handle(req)
        c = s3_counters
        c.requests += 1
        c.by_op[req.op or "unrouted"] += 1
        if req.error:
            c.errors[req.error] += 1
        c.latency.observe(time.perf_counter() - t0)
        c.bytes_in += request.content_length or 0
        c.bytes_out += resp.content_length or 0
        return await _send(request, resp)

    async def healthz(request: web.Request) -> web.StreamResponse:
        if not _is_probe(request):
            return await s3_handler(request)
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.StreamResponse:
        if not _is_probe(request):
            return await s3_handler(request)
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics(request: web.Request) -> web.StreamResponse:
        if not _is_probe(request):
            return await s3_handler(request)
        collector.stored = await stored()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    for path, probe in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        app.router.add_route("*", path, probe)
    app.router.add_route("*", "/{tail:.*}", s3_handler)
    return app
