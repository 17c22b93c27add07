"""The HTTP front door: the S3 API, plus health, readiness and Prometheus metrics.

Layer: server. Rules: aiohttp is the HTTP server (parsing, keep-alive, limits are its job);
handlers read state, they never block the loop. This module only adapts: an aiohttp
request becomes a ``kvbox.s3door.types.S3Request`` (raw path and query, headers, the
body as an async byte stream) and the ``S3Response`` is written back, streamed when its
body is a stream. Everything S3 means lives in ``kvbox.s3`` (pure) and ``kvbox.s3door``.

Routes: ``/healthz``, ``/readyz`` and ``/metrics`` answer only a GET without a query
string and without credentials (no Authorization header); any other request to those
paths -- a signed GET, a HEAD, a PUT, a query -- is an S3 request for a bucket of that
name, so a bucket called ``metrics`` still works with every S3 client. Every other path
goes to the S3 catch-all.

Bodies: bytes go out as one ``web.Response``; a stream as a ``StreamResponse`` with its
Content-Length; a ``FileBody`` with sendfile (``kvbox.server.sendfile``) when the
connection is plain TCP, else as its stream. Every file body is released exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web
from aiohttp.hdrs import EXPECT
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from kvbox.config import SERVER
from kvbox.console.door import ConsoleDoor
from kvbox.errors import DataDamaged
from kvbox.metrics import ServerCounters
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import render_error
from kvbox.s3door.frontend import S3Frontend, host_id, new_request_id
from kvbox.s3door.types import FileBody, S3Request, S3Response
from kvbox.server.accesslog import AccessLog, address_of
from kvbox.server.budget import READ_SLACK, MemoryBudget, Share
from kvbox.server.doors import DoorsCollector
from kvbox.server.governor import BodyTimeout, Limits
from kvbox.server.httpdoor import Handler, raw_response
from kvbox.server.sendfile import STALL_SECONDS, Sendfile

log = logging.getLogger("kvbox.http")
#: Largest read handed to the S3 layer at once: bounds a piece of a streamed upload.
_READ_SIZE = 1 << 20

#: Why the server should get no traffic now (one line for ``/readyz``), or None: ready.
Readiness = Callable[[], str | None]


def _is_probe(request: web.BaseRequest) -> bool:
    """A plain health/metrics probe, not an S3 request for a bucket of that name."""
    return (
        request.method == "GET"
        and not request.query_string
        and "Authorization" not in request.headers
    )


class _Continue:
    """HTTP/1.1's interim ``100 Continue``, sent at most once, when the body is first read.

    S3 answers ``Expect: 100-continue`` only once the request is authenticated and
    authorised, so that a refused upload never sends its body. The S3 door reads a
    body only after both (``S3Frontend.handle``), so the first read is that moment.
    Any other expectation is ignored, as AWS does (RFC 9110 allows a 417; AWS never
    sends one). HTTP/1.0 clients get no interim response.
    """

    __slots__ = ("pending", "request")

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        expect = request.headers.get(EXPECT)
        self.pending = (
            expect is not None
            and expect.strip().lower() == "100-continue"
            and request.version == HttpVersion11
        )

    async def send(self) -> None:
        if not self.pending:
            return
        self.pending = False
        writer = self.request.writer
        await writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.output_size = 0  # the interim response is not part of the response
        await writer.drain()

    @property
    def body_unread(self) -> bool:
        """The client waits for a 100 that never came, with its body unsent: the final
        answer closes the connection rather than wait for (or read) that body."""
        return self.pending and not self.request.content.is_eof()


async def _body(
    request: web.BaseRequest, cont: _Continue, memory: _Memory | None, share: Share
) -> AsyncIterator[bytes]:
    """The request body as it arrives; a body cut short becomes S3's IncompleteBody, one
    that stopped arriving (``BodyTimeout``, set by the governor) S3's RequestTimeout.

    Before its first byte is read -- and before a 100 Continue invites it -- the body
    takes its share of the memory budget (what it can hold at most), so a handler that
    never reads the body never waits for one.
    """
    if memory is not None:
        length = request.content_length
        cost = memory.stream if length is None else min(length, memory.stream)
        if not await memory.budget.take(share, cost, gone=lambda: _gone(request)):
            raise S3Error("SlowDown", _BUSY_MEMORY)
    await cont.send()
    try:
        while True:
            piece = await request.content.readany()
            if not piece:
                return
            yield piece
    except asyncio.CancelledError:
        raise
    except BodyTimeout as exc:
        raise S3Error("RequestTimeout") from exc
    except Exception as exc:  # aiohttp's payload errors: lost connection, short body
        raise S3Error("IncompleteBody") from exc


def _gone(request: web.BaseRequest) -> bool:
    """Whether the client of ``request`` has gone (its connection is closed or closing)."""
    t = request.transport
    return t is None or t.is_closing()


_BUSY_MEMORY: Final = (
    "Please reduce your request rate: the server's memory for bodies in flight is full."
)


def _memory(budget: MemoryBudget | None, s3: S3Frontend | None) -> _Memory | None:
    if budget is None or s3 is None:
        return None
    store = s3.ctx.store
    return _Memory(budget, store.stream_memory + READ_SLACK, store.chunk_size + READ_SLACK)


class _Memory:
    """The memory budget as the S3 door uses it: the budget, what a streamed upload
    holds at most (``Store.stream_memory`` plus a piece being read), and what a streamed
    download holds at most (the chunk read from disk, plus a slice in the socket's
    buffer: ``_write``)."""

    __slots__ = ("budget", "download", "stream")

    def __init__(self, budget: MemoryBudget, stream: int, download: int) -> None:
        self.budget = budget
        self.stream = stream
        self.download = download


#: The governor's refusals on the S3 port, as AWS words them: 503 SlowDown is what S3
#: answers "reduce your request rate" with, and every SDK retries it with backoff;
#: RequestTimeout (400) is retried by the SDKs as a transient error too.
_ANSWERS: Final[dict[str, tuple[str, str | None]]] = {
    "busy": ("SlowDown", "Please reduce your request rate: too many connections."),
    "address": (
        "SlowDown",
        "Please reduce your request rate: too many connections from your address.",
    ),
    "header_bytes": ("RequestHeaderSectionTooLarge", None),
    "header_fields": (
        "RequestHeaderSectionTooLarge",
        "Your request has more header fields than allowed.",
    ),
    "header_timeout": ("RequestTimeout", None),
}


def _slowdown(request_id: str) -> web.Response:
    """503 SlowDown for a download that found no room in the memory budget."""
    body = render_error(S3Error("SlowDown", _BUSY_MEMORY), request_id=request_id)
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": host_id(), "Server": SERVER}
    return web.Response(status=503, body=body, content_type="application/xml", headers=headers)


#: What a refused request head was, for the log line that says why it never reached S3.
_HEAD_REFUSALS: Final[dict[str, str]] = {
    "header_bytes": "header section over --max-header-bytes ({})",
    "header_fields": "more header fields than --max-headers ({})",
    "header_timeout": "header section not complete within --header-timeout ({} s)",
}


def s3_answer(limits: Limits, access_log: AccessLog | None = None) -> Callable[[str, str], bytes]:
    """The S3 port's form of the governor's answers: S3 XML errors with a request id.

    A refused request head is logged as aiohttp's refusals are (``_S3Protocol``): one
    INFO line and an access line with the request id the client got. A refused
    connection (busy, address) is only counted: under a flood, a line per connection
    would let the flood fill the log."""

    def answer(kind: str, remote: str) -> bytes:
        code, message = _ANSWERS[kind]
        extra = {}
        if kind == "header_bytes":
            extra["MaxSizeAllowed"] = str(limits.max_header_bytes)
        elif kind == "header_fields":
            extra["MaxHeadersAllowed"] = str(limits.max_headers)
        err = S3Error(code, message, extra=extra)
        rid = new_request_id()
        body = render_error(err, request_id=rid)
        headers = {"x-amz-request-id": rid, "x-amz-id-2": host_id(), "Server": SERVER}
        why = _HEAD_REFUSALS.get(kind)
        if why is not None:
            bound = {
                "header_bytes": limits.max_header_bytes,
                "header_fields": limits.max_headers,
                "header_timeout": f"{limits.header_timeout:g}",
            }[kind]
            log.info(
                "HTTP request from %s refused before S3 saw it (request %s): %s",
                remote,
                rid,
                why.format(bound),
            )
            if access_log is not None:
                status = f"{err.status}:{code}"
                access_log.request("s3", remote, None, "-", "-", status, 0, len(body), 0.0, rid)
        return raw_response(err.status, body, "application/xml", headers)

    return answer


def _form_decode(text: str) -> str:
    if "%" not in text and "+" not in text:
        return text
    return unquote(text.replace("+", " "))


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """``parse_qsl(raw_query, keep_blank_values=True)``, at a third of its cost.

    The same pairs (``+`` is a space, ``%XX`` decoded as UTF-8 with replacement, empty
    pieces skipped, a name without ``=`` has an empty value), without urllib's
    per-call overhead on parameters that have nothing to decode -- most of them.
    """
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((_form_decode(name), _form_decode(value)))
    return pairs


def _tls_version(request: web.BaseRequest) -> str | None:
    """``1.3`` for a TLSv1.3 connection: the form of the s3:TlsVersion condition key."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    version = ssl_object.version() if ssl_object is not None else None
    return version.removeprefix("TLSv") if isinstance(version, str) else None


def _s3_request(
    request: web.BaseRequest,
    cont: _Continue,
    memory: _Memory | None = None,
    share: Share | None = None,
) -> S3Request:
    raw_path, _, raw_query = request.raw_path.partition("?")
    return S3Request(
        method=request.method,
        raw_path=raw_path,
        raw_query=raw_query,
        query=parse_query(raw_query),
        headers=request.headers,
        body=_body(request, cont, memory, share or Share()),
        request_id=new_request_id(),
        remote=request.remote or "",
        secure=request.secure,
        tls_version=_tls_version(request) if request.secure else None,
    )


async def _send(
    request: web.BaseRequest,
    resp: S3Response,
    files: Sendfile,
    memory: _Memory | None,
    share: Share,
) -> web.StreamResponse:
    body = resp.body
    if isinstance(body, bytes):
        out = web.Response(status=resp.status, headers=resp.headers, body=body or None)
        if request.method == "HEAD" and resp.content_length is not None:
            out.headers["Content-Length"] = str(resp.content_length)
        return out
    stream = web.StreamResponse(status=resp.status, headers=resp.headers)
    if resp.content_length is not None:
        stream.content_length = resp.content_length
    release: Callable[[], None] | None = None
    if isinstance(body, FileBody):
        sock_fd = files.socket_fd(request)
        if sock_fd is not None:
            return await _send_files(request, stream, body, sock_fd, files)
        # TLS, too many sends at once, ...: the ordinary way. The stream pins the chunks
        # itself once it starts; the file body's pins stay until it is done, so nothing
        # can be collected in between.
        release, body = body.files.release, body.stream
    if memory is not None:
        cost = min(resp.content_length or memory.download, memory.download)
        if not await memory.budget.take(share, cost, gone=lambda: _gone(request)):
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
            if release is not None:
                release()
            return _slowdown(resp.headers.get("x-amz-request-id") or new_request_id())
    try:
        await stream.prepare(request)
        async for piece in body:
            await _write(stream, piece)
        await stream.write_eof()
    except DataDamaged:  # reported and logged by the Store, once per object
        if request.transport is not None:
            request.transport.close()
    except (ConnectionError, OSError) as exc:  # the client went away: its doing, not ours
        log.info("S3 response cut short: %s", exc)
        if request.transport is not None:
            request.transport.close()
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
        if release is not None:
            release()
    return stream


#: A streamed reply is written in slices of this size, each waiting for the socket to
#: drain: a whole 8 MiB chunk handed to the transport at once would sit in its buffer,
#: and the next chunk would be read meanwhile (two chunks in memory per download).
_WRITE_SLICE: Final = 1 << 20


async def _write(stream: web.StreamResponse, piece: bytes) -> None:
    if len(piece) <= _WRITE_SLICE:
        await stream.write(piece)
        return
    with memoryview(piece) as view:
        for off in range(0, len(piece), _WRITE_SLICE):
            await stream.write(view[off : off + _WRITE_SLICE])


async def _send_files(
    request: web.BaseRequest,
    stream: web.StreamResponse,
    body: FileBody,
    sock_fd: int,
    files: Sendfile,
) -> web.StreamResponse:
    """The headers through aiohttp, then the body with sendfile (``kvbox.server.sendfile``).

    ``body.files.release`` runs once the files are no longer read: here if the send
    never started, else when its thread is done (even if this task is cancelled
    meanwhile). A damaged chunk after the first (``DataDamaged``, reported and logged by
    the Store) cuts the connection: the status line is out, and a short body is what
    tells the client, as S3 does.
    """
    handed = False
    try:
        await stream.prepare(request)  # a StreamResponse writes its headers at once
        transport = request.transport
        if transport is None or transport.get_write_buffer_size():
            # The headers are still queued (a client slow to read): the thread must not
            # write past them, so this body streams after them the ordinary way.
            async for piece in body.stream:
                await _write(stream, piece)
        else:
            handed = True
            await files.send(sock_fd, body.files)
        await stream.write_eof()
    except DataDamaged:
        if request.transport is not None:
            request.transport.close()
    except OSError as exc:  # the client went away or stopped reading
        log.info("S3 file response cut short: %s", exc)
        if request.transport is not None:
            request.transport.close()
    except Exception:
        log.exception("S3 file response failed")
        if request.transport is not None:
            request.transport.close()
    finally:
        if not handed:
            body.files.release()
        aclose = getattr(body.stream, "aclose", None)  # never started, or cut short
        if aclose is not None:
            await aclose()
    return stream


def build_app(
    counters: ServerCounters,
    stored: Callable[[], Awaitable[tuple[int, int]]],
    ready: Readiness,
    s3: S3Frontend | None = None,
    collectors: Sequence[Collector] = (),
    *,
    s3_counters: ServerCounters | None = None,
    console: ConsoleDoor | None = None,
    console_here: bool = True,
    access_log: AccessLog | None = None,
    doors: Mapping[str, ServerCounters] | None = None,
    track: Callable[[Handler], Handler] | None = None,
    server_kwargs: Mapping[str, Any] | None = None,
    send_stall: float = STALL_SECONDS,
    budget: MemoryBudget | None = None,
) -> web.Server:
    """The HTTP server; without ``s3`` only the probes answer (every other path is 404).
    With ``console``, its counters are in ``/metrics`` (door ``console``) and, when
    ``console_here`` (it has no port of its own), unsigned requests under ``/console/``
    are the web console's (``ConsoleDoor.claims``).

    ``counters`` are GW-KV's; ``doors`` every door's counters by name for /metrics (its
    "s3" entry counts this server's S3 requests; made here when absent). ``track`` wraps
    the handler (``HttpDoor.track``: the governor's view of each request);
    ``server_kwargs`` go to aiohttp's protocol (``httpdoor.aiohttp_limits``); ``budget``
    bounds the memory request and reply bodies hold (``server/budget.py``).

    A low-level ``web.Server`` with one handler rather than a ``web.Application``: the
    routes are four fixed paths, and the application's per-request machinery (router,
    match info, middleware chain) was 5% of a small S3 request's CPU. What the
    application did that we still need -- answering ``Expect: 100-continue`` -- is
    ``_Continue``, now at S3's moment rather than at once.
    """
    registry = CollectorRegistry()
    all_doors = {"gwkv": counters, **(doors or {})}
    if s3_counters is not None:
        all_doors["s3"] = s3_counters
    s3_counters = all_doors.setdefault("s3", ServerCounters())
    if console is not None:
        all_doors.setdefault("console", console.counters)
    files = Sendfile(stall=send_stall)
    memory = _memory(budget, s3)
    collector = DoorsCollector(all_doors, files, budget, access_log)
    registry.register(collector)
    for extra in collectors:  # figures of other components (the lifecycle worker)
        registry.register(extra)

    async def s3_handler(request: web.BaseRequest) -> web.StreamResponse:
        if s3 is None:
            return web.Response(status=404, text="404: Not Found")
        t0 = time.perf_counter()
        cont = _Continue(request)
        share = Share()
        try:
            req = _s3_request(request, cont, memory, share)
            resp = await s3.handle(req)
        finally:
            if memory is not None:
                memory.budget.release(share)  # the request body is done with
        c = s3_counters
        c.requests += 1
        c.by_op[req.op or "unrouted"] += 1
        if req.error:
            c.errors[req.error] += 1
        c.latency.observe(time.perf_counter() - t0)
        c.bytes_in += request.content_length or 0
        c.bytes_out += resp.content_length or 0
        try:
            return await _finish(request, resp, files, cont, memory, share)
        finally:
            if memory is not None:
                memory.budget.release(share)
            if access_log is not None:
                log_s3_request(access_log, "s3", request, req, resp, t0)

    async def healthz(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(request: web.BaseRequest) -> web.StreamResponse:
        why = ready()
        if why is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {why}\n")

    async def metrics(request: web.BaseRequest) -> web.StreamResponse:
        collector.stored = await stored()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    probes: dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]] = {
        "/healthz": healthz,
        "/readyz": readyz,
        "/metrics": metrics,
    }

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        probe = probes.get(request.raw_path)
        if probe is not None and _is_probe(request):
            t0 = time.perf_counter()
            resp = await probe(request)
            if access_log is not None:
                access_log.request(
                    "http",
                    address_of(request.transport),
                    None,
                    request.raw_path.lstrip("/"),
                    "-",
                    str(resp.status),
                    0,
                    resp.content_length or 0,
                    time.perf_counter() - t0,
                    "-",
                )
            return resp
        if console is not None and console_here:
            path, _, query = request.raw_path.partition("?")
            if console.claims(path, request.headers, query):
                return await console_response(request, console, files, access_log, memory)
        return await s3_handler(request)

    served: Handler = handler if track is None else track(handler)
    return _Server(served, kvbox_access=access_log, kvbox_door="s3", **(server_kwargs or {}))


def log_s3_request(
    access_log: AccessLog,
    door: str,
    request: web.BaseRequest,
    req: S3Request,
    resp: S3Response,
    t0: float,
) -> None:
    """The access line of one request answered through the S3 seam (S3, the console):
    the path without its query (a presigned URL's signature is in the query), the
    principal, never a credential."""
    status = f"{resp.status}:{req.error}" if req.error else str(resp.status)
    access_log.request(
        door,
        address_of(request.transport),
        req.principal,
        req.op,
        req.resource.lstrip("/") or req.raw_path,
        status,
        request.content_length or 0,
        0 if request.method == "HEAD" else resp.content_length or 0,
        time.perf_counter() - t0,
        req.request_id,
    )


async def _finish(
    request: web.BaseRequest,
    resp: S3Response,
    files: Sendfile,
    cont: _Continue,
    memory: _Memory | None = None,
    share: Share | None = None,
) -> web.StreamResponse:
    """Send ``resp``; if the client still waits for a 100 Continue it will not get (the
    request was refused before its body was read), close rather than read that body."""
    out = await _send(request, resp, files, memory, share or Share())
    if cont.body_unread:
        out.force_close()
        if isinstance(request.protocol, _S3Protocol):
            request.protocol.drop_unread_body()
    return out


async def console_response(
    request: web.BaseRequest,
    console: ConsoleDoor,
    files: Sendfile,
    access_log: AccessLog | None = None,
    memory: _Memory | None = None,
) -> web.StreamResponse:
    """One web-console request: the console answers the plain request seam, and its
    response (a page, JSON, or an S3 body relayed) goes out like an S3 one. A body is
    read (and 100 Continue sent) only once the console and the S3 door accepted it;
    bodies take their share of the memory budget like the S3 door's."""
    t0 = time.perf_counter()
    cont = _Continue(request)
    share = Share()
    try:
        req = _s3_request(request, cont, memory, share)
        resp = await console.handle(req)
    finally:
        if memory is not None:
            memory.budget.release(share)
    try:
        return await _finish(request, resp, files, cont, memory, share)
    finally:
        if memory is not None:
            memory.budget.release(share)
        if access_log is not None:
            log_s3_request(access_log, "console", request, req, resp, t0)


def build_console_app(
    console: ConsoleDoor,
    access_log: AccessLog | None = None,
    *,
    track: Callable[[Handler], Handler] | None = None,
    server_kwargs: Mapping[str, Any] | None = None,
    send_stall: float = STALL_SECONDS,
    budget: MemoryBudget | None = None,
    s3: S3Frontend | None = None,
) -> web.Server:
    """The console alone, for ``--console-port``: every path is the console's (``/``
    redirects to ``/console/``), so the HTTP port's ``/console`` path stays S3's.
    ``track``, ``server_kwargs`` and ``budget`` (with the ``s3`` door whose store sizes
    the shares) put it under the governor and the memory budget, as ``build_app``'s do."""
    files = Sendfile(stall=send_stall)
    memory = _memory(budget, s3)

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return await console_response(request, console, files, access_log, memory)

    served: Handler = handler if track is None else track(handler)
    return _Server(served, kvbox_access=access_log, kvbox_door="console", **(server_kwargs or {}))


# --- requests aiohttp refuses itself ------------------------------------------------------


class RefusalLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's logger for an ``Application`` (the website port), which has no
    ``_S3Protocol``: aiohttp's refusals of malformed requests are clients' mistakes, so
    they become one INFO line (and an access line) instead of an ERROR with a traceback;
    anything else aiohttp reports (an exception escaping a handler: a bug) stays an ERROR
    with its traceback. aiohttp reports refusals through ``logger.exception``
    (``logger.debug`` for a first request that is not HTTP at all); the exception it
    passes decides which kind of report it is.
    """

    def __init__(self, access_log: AccessLog | None, door: str) -> None:
        super().__init__(logging.getLogger("kvbox.http"), {})
        self.access_log = access_log
        self.door = door

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        if not self._refusal(logging.INFO, args, exc_info):
            self.logger.error(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: object, *args: object, **kw: Any) -> None:
        if not self._refusal(logging.DEBUG, args, kw.get("exc_info")):
            self.logger.debug(msg, *args, **kw)

    def _refusal(self, level: int, args: tuple[object, ...], exc_info: Any) -> bool:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if not isinstance(exc, HttpProcessingError) or not 400 <= (exc.code or 400) < 500:
            return False
        remote = str(args[0]) if args else "-"
        reason = _one_line(exc, None)
        self.logger.log(level, "refused a malformed HTTP request from %s: %s", remote, reason)
        if self.access_log is not None:
            status = str(exc.code or 400)
            self.access_log.request(self.door, remote, None, "-", "-", status, 0, 0, 0.0, "-")
        return True


class _Server(web.Server):
    """aiohttp's low-level server with ``_S3Protocol`` as its per-connection protocol,
    and the access log (and the door name) its refusals are written to."""

    def __init__(
        self, handler: Any, *, kvbox_access: AccessLog | None, kvbox_door: str, **kw: Any
    ) -> None:
        super().__init__(handler, access_log=None, **kw)
        self.kvbox_access = kvbox_access
        self.kvbox_door = kvbox_door

    def __call__(self) -> RequestHandler:
        # aiohttp keeps the loop and the protocol's arguments in these two attributes;
        # web.Server.__call__ builds a plain RequestHandler from them the same way.
        return _S3Protocol(self, loop=self._loop, **self._kwargs)


class _S3Protocol(RequestHandler):
    """aiohttp's connection protocol, refusing in S3's form what it cannot parse.

    A request aiohttp cannot parse (a bad request line, header or Content-Length, too
    many or too long headers) never reaches a handler: aiohttp answers it from
    ``handle_error`` with plain text and logs the client's mistake as a server error
    with a traceback. Here it gets S3's XML ``<Error>`` with an ``x-amz-request-id``, and
    one log line at INFO; only a real 500 (a bug) is still logged with its traceback.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("a response is already under way")
        err = refusal(exc, message)
        request_id = new_request_id()
        log.info(
            "HTTP request from %s refused before S3 saw it (request %s): %s",
            request.remote,
            request_id,
            _one_line(exc, message),
        )
        body = render_error(err, request_id=request_id)
        resp = web.Response(
            status=err.status,
            body=body,
            headers={
                "Content-Type": "application/xml",
                "x-amz-request-id": request_id,
                "x-amz-id-2": host_id(),
                "Server": SERVER,
            },
        )
        manager = self._manager
        if isinstance(manager, _Server) and manager.kvbox_access is not None:
            manager.kvbox_access.request(
                manager.kvbox_door,
                address_of(request.transport),
                None,
                "-",
                "-",
                f"{err.status}:{err.code}",
                0,
                len(body),
                0.0,
                request_id,
            )
        resp.force_close()  # the parser cannot tell where the next request begins
        return resp

    def drop_unread_body(self) -> None:
        """Close once this response is out, without first reading (for up to aiohttp's
        lingering time) a body the client holds back for a 100 Continue it won't get."""
        # aiohttp reads this attribute after the response is written, to decide whether
        # to drain the unread body; zero makes it close the connection instead.
        self._lingering_time = 0.0


#: aiohttp's "too big" refusals: the request head is over one of its limits.
_TOO_LARGE_MARKERS = ("too many headers", "too long", "too large")


def refusal(exc: BaseException | None, message: str | None) -> S3Error:
    """The S3 error for a request aiohttp's parser refused.

    >>> refusal(LineTooLong("header", "8190"), None).code
    'RequestHeaderSectionTooLarge'
    >>> refusal(BadHttpMethod(b"GARBAGE"), None).code
    'MethodNotAllowed'
    """
    if isinstance(exc, BadHttpMethod):
        return S3Error("MethodNotAllowed")
    text = _one_line(exc, message)
    if isinstance(exc, LineTooLong) or any(m in text.lower() for m in _TOO_LARGE_MARKERS):
        return S3Error("RequestHeaderSectionTooLarge")
    return S3Error("BadRequest", f"An error occurred when parsing the HTTP request: {text}")


def _one_line(exc: BaseException | None, message: str | None) -> str:
    """aiohttp's parser message without its multi-line caret diagram."""
    text = message or (getattr(exc, "message", None) if exc is not None else None) or str(exc)
    first = str(text).strip().splitlines()
    return first[0].rstrip(":").strip() if first else "malformed request"
