"""HTTP listeners under the governor: every aiohttp connection admitted, timed and bounded.

Layer: server (asyncio, aiohttp). Rules: aiohttp parses HTTP; this module stands between
the socket and aiohttp's ``RequestHandler`` (a wrapping ``asyncio.Protocol``), so that

* a connection is admitted by ``Governor.admit`` *before* aiohttp allocates anything for
  it, and a refused one costs a few hundred bytes and half a second of lingering;
* on a TLS port the door accepts connections itself (``loop.sock_accept``) and admits
  each by its address before handing it to the loop's TLS (``connect_accepted_socket``),
  so a connection in its handshake counts against the limits, and the handshake is
  bounded by ``header_timeout`` like any other request head. (``loop.start_tls`` after
  a plain accept would be simpler, but uvloop's loses the ClientHello now and then:
  about one handshake in five in a loop of curl requests here.)
* each request head is measured (``proto.httphead.HeadMeter``) before aiohttp buffers it,
  and refused past ``max_header_bytes`` or ``max_headers`` in the door's own form;
* the sweeper knows each connection's phase: IDLE (no request, nothing owed), HEAD (bytes
  of a request arrived, no handler yet), BUSY (a handler runs). The phase comes from the
  handler itself: the door's handler is wrapped by ``HttpDoor.track`` (low-level
  ``web.Server``) or ``HttpDoor.middleware`` (``web.Application``). After a handler that
  left its body unread the connection DRAINs (aiohttp reads and drops the rest, then
  closes): those bytes are not measured as a head.

Timeouts (``Limits``): IDLE past ``idle_timeout`` is closed quietly; HEAD past
``header_timeout`` gets the door's "header_timeout" answer and a close; in BUSY, a request
body that stops arriving for ``body_timeout`` -- while the socket is being read, so
backpressure from the server never counts against the client -- gets ``BodyTimeout`` set
on its stream; a response the client stops reading (the socket's buffer stays full) is cut
after ``body_timeout``.

For another door (the console's ``--console-port``): build the aiohttp server or runner,
then ``HttpDoor(governor, Door(name, counters, answer), server_factory, tls=ctx)``, wrap
its handler with ``track`` or add ``middleware``, and ``await door.listen(host, port)``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from aiohttp import web

from kvbox.proto.httphead import HeadMeter
from kvbox.server.accesslog import address_of
from kvbox.server.governor import BodyTimeout, Door, Governor, Limits

log = logging.getLogger("kvbox.limits")

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Listener(Protocol):
    """What ``HttpDoor.listen`` returns: an ``asyncio.Server`` or a TLS accept loop."""

    @property
    def sockets(self) -> tuple[socket.socket, ...]: ...

    def close(self) -> None: ...


class _TlsListener:
    """A TLS door's listening socket and its accept loop."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.task: asyncio.Task[None] | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self._sock.close()


_IDLE: Final = 0
_HEAD: Final = 1
_BUSY: Final = 2
_DRAIN: Final = 3
_CLOSED: Final = 4

_REASONS: Final = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def raw_response(
    status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, for answers written
    before (or instead of) aiohttp: refusals and timeouts."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def plain_answer(kind: str, remote: str) -> bytes:
    """A door's answers as plain text (a door with no protocol-specific form)."""
    status, text = {
        "busy": (503, "Too many connections; try again shortly."),
        "address": (503, "Too many connections from your address; try again shortly."),
        "header_bytes": (431, "The request's header section is too large."),
        "header_fields": (431, "The request has too many header fields."),
        "header_timeout": (408, "The request's header section did not arrive in time."),
    }[kind]
    return raw_response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


class HttpDoor:
    """One HTTP listener's connections: the protocol factory, the handler hooks, listen."""

    def __init__(
        self,
        governor: Governor,
        door: Door,
        server: Callable[[], asyncio.Protocol] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.governor = governor
        self.door = door
        #: Makes aiohttp's protocol for a connection (a ``web.Server``, or an app
        #: runner's ``server``); may be set after construction, before ``listen``.
        self.server = server
        self.tls = tls
        #: aiohttp's protocol of each connection -> its governed wrapper (the handler
        #: hooks find their connection through ``request.protocol``).
        self.by_protocol: dict[object, HttpConn] = {}
        self._handshakes: set[asyncio.Task[None]] = set()

    def protocol_factory(self) -> HttpConn:
        return HttpConn(self)

    async def listen(self, host: str, port: int, *, backlog: int = 1024) -> Listener:
        """Bind ``host:port`` (0: any free port) and serve it (a console port, tests)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=backlog)
        sock.setblocking(False)
        return (await self.serve([sock], backlog=backlog))[0]

    async def serve(self, socks: list[socket.socket], *, backlog: int = 1024) -> list[Listener]:
        """Serve already bound sockets (``kvbox.server.listeners.bind_all``'s)."""
        loop = asyncio.get_running_loop()
        out: list[Listener] = []
        for sock in socks:
            if self.tls is None:
                out.append(
                    await loop.create_server(self.protocol_factory, sock=sock, backlog=backlog)
                )
                continue
            sock.listen(backlog)
            listener = _TlsListener(sock)
            listener.task = loop.create_task(self._accept(sock, self.tls))
            out.append(listener)
        return out

    async def _accept(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        gov = self.governor
        while True:
            try:
                client, peer = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: wait, do not spin
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn = HttpConn(self)
            if gov.admit(conn, self.door, peer) is not None:
                client.close()  # nothing can be said before a handshake we won't spend on it
                continue
            conn.admitted = True
            task = loop.create_task(self._handshake(conn, client, ctx))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: HttpConn, client: socket.socket, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        limit = self.governor.limits.header_timeout
        t0 = loop.time()
        try:
            await loop.connect_accepted_socket(
                lambda: conn, client, ssl=ctx, ssl_handshake_timeout=limit
            )
        except OSError as exc:  # ssl.SSLError, the handshake timeout, a lost connection
            log.debug("TLS handshake failed: %r", exc)
            if loop.time() - t0 >= limit:  # the loops word their timeouts differently
                self.door.counters.timeouts["header"] += 1
            conn.connection_lost(None)
            client.close()

    async def _governed(self, request: web.BaseRequest, handler: Handler) -> web.StreamResponse:
        """Run ``handler`` with the request's connection marked BUSY meanwhile."""
        conn = self.by_protocol.get(request.protocol)
        if conn is None:
            return await handler(request)
        conn.request_started(request)
        try:
            return await handler(request)
        finally:
            conn.request_done()

    def track(self, handler: Handler) -> Handler:
        """``handler`` with its connection marked BUSY while it runs (low-level server)."""

        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            return await self._governed(request, handler)

        return tracked

    @property
    def middleware(self) -> Any:
        """The same, as an aiohttp middleware for a ``web.Application``."""

        @web.middleware
        async def governed(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._governed(request, handler)

        return governed


class HttpConn(asyncio.Protocol):
    """One governed HTTP connection, wrapping aiohttp's protocol for it."""

    __slots__ = (
        "_progress",
        "_write_paused_at",
        "admitted",
        "door",
        "inner",
        "last_rx",
        "loop",
        "meter",
        "phase",
        "request",
        "since",
        "transport",
    )

    def __init__(self, door: HttpDoor) -> None:
        self.door = door
        self.loop = door.governor.loop
        self.transport: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None
        self.phase = _HEAD
        self.since = self.last_rx = self._progress = self.loop.time()
        self.meter: HeadMeter | None = None
        self.request: web.BaseRequest | None = None
        self._write_paused_at = 0.0
        #: Admitted already (by a TLS door's accept loop, before the handshake).
        self.admitted = False

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t: Any = transport
        self.transport = t
        door = self.door
        if not self.admitted:  # a TLS door admitted it before its handshake
            refused = door.governor.admit(self, door.door, t.get_extra_info("peername"))
            if refused is not None:
                self.phase = _CLOSED
                door.governor.refuse(t, door.door.answer(refused, address_of(t)))
                return
        self._open(t)

    def _open(self, transport: asyncio.Transport) -> None:
        lim = self.door.governor.limits
        make = self.door.server
        assert make is not None, "HttpDoor.server must be set before listen()"
        inner = make()
        self.inner = inner
        self.door.by_protocol[inner] = self
        self.meter = HeadMeter(max_bytes=lim.max_header_bytes, max_fields=lim.max_headers)
        self.phase = _IDLE
        self.since = self.loop.time()
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if self.phase == _CLOSED:
            return  # refused and lingering: whatever arrives is discarded
        if inner is None:
            return
        now = self.last_rx = self.loop.time()
        meter = self.meter
        assert meter is not None
        if self.phase == _IDLE:
            self.phase = _HEAD
            self.since = now
            meter.reset()
        if self.phase == _HEAD and not meter.done:
            verdict = meter.feed(data)
            if verdict is not None:
                self._give_up("header_" + verdict)
                return
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is None:
            return None
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        inner, self.inner = self.inner, None
        self.request = None
        if inner is not None:
            self.door.by_protocol.pop(inner, None)
            inner.connection_lost(exc)

    def _lost(self) -> None:
        self.phase = _CLOSED
        self.door.governor.release(self)

    def pause_writing(self) -> None:
        self._write_paused_at = self.loop.time()
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused_at = 0.0
        if self.inner is not None:
            self.inner.resume_writing()

    # --- the handler's hooks ----------------------------------------------------------

    def request_started(self, request: web.BaseRequest) -> None:
        self.phase = _BUSY
        self.since = self._progress = self.loop.time()
        self.request = request

    def request_done(self) -> None:
        request, self.request = self.request, None
        if self.phase != _BUSY:
            return
        self.since = self.loop.time()
        # A body the handler left unread is drained by aiohttp, which then closes the
        # connection: what still arrives is that body, not a request head to measure.
        eof = request is None or request.content.is_eof()
        self.phase = _IDLE if eof else _DRAIN

    # --- Governed ---------------------------------------------------------------------

    def idle_since(self) -> float | None:
        if self.phase != _IDLE or self._write_paused_at:
            return None
        return self.since

    def evict(self) -> None:
        self.phase = _CLOSED
        if self.transport is not None:
            self.transport.close()

    def check_timeouts(self, now: float) -> None:
        t = self.transport
        if t is None or self.phase == _CLOSED or t.is_closing():
            return
        lim = self.door.governor.limits
        counters = self.door.door.counters
        if self._write_paused_at and now - self._write_paused_at > lim.body_timeout:
            # The client stopped reading its response: nothing will drain the buffer,
            # so a close that waits for it would wait forever.
            counters.timeouts["send"] += 1
            self.phase = _CLOSED
            t.abort()
            return
        phase = self.phase
        if phase == _IDLE:
            if now - self.since > lim.idle_timeout:
                counters.timeouts["idle"] += 1
                self.evict()
        elif phase == _HEAD:
            if now - self.since > lim.header_timeout:
                counters.timeouts["header"] += 1
                self._give_up("header_timeout", count=False)
        elif phase == _DRAIN:
            if now - max(self.last_rx, self.since) > lim.body_timeout:
                counters.timeouts["body"] += 1
                self.evict()
        elif phase == _BUSY:
            request = self.request
            if request is None or request.content.is_eof():
                return
            if not t.is_reading():
                # We hold the client back (the handler is not reading): its clock stops.
                self._progress = now
                return
            if now - max(self.last_rx, self._progress) > lim.body_timeout:
                counters.timeouts["body"] += 1
                self._progress = now
                request.content.set_exception(
                    BodyTimeout(f"request body made no progress for {lim.body_timeout:g} s")
                )

    def _give_up(self, kind: str, *, count: bool = True) -> None:
        """Answer the request head ourselves (aiohttp never sees it) and close."""
        if count:
            self.door.door.counters.refused[kind] += 1
        self.phase = _CLOSED  # from now on nothing reaches aiohttp; it hears of the close
        t = self.transport  # from connection_lost, after the linger
        assert t is not None
        self.door.governor.refuse(t, self.door.door.answer(kind, address_of(t)))


def aiohttp_limits(limits: Limits) -> dict[str, Any]:
    """aiohttp's own per-line limits, set so that the head meter decides first (and in
    the door's form), and its keep-alive timer as a backstop to the governor's.

    The backstop is idle + header timeout: aiohttp's timer runs from the end of the last
    response (or the connection's start) and also closes a connection whose next head
    is still arriving, silently; the governor allows such a head ``header_timeout`` from
    its first byte, which may come up to ``idle_timeout`` after. With the idle timeout
    alone, a connection with ``--idle-timeout`` below ``--header-timeout`` lost its slow
    heads without the 408 and its count."""
    line = max(8190, limits.max_header_bytes)
    return {
        "max_line_size": line,
        "max_field_size": line,
        "max_headers": limits.max_headers + 1,
        "keepalive_timeout": limits.idle_timeout + limits.header_timeout,
    }
