"""GW-KV over TCP: the connection loop between a socket and ``KvCommands``.

Layer: server (asyncio). Rules: parsing is ``proto.gwkv``'s, meaning is ``kv.commands``';
this module only moves bytes, keeps replies in request order, applies backpressure and
enforces the connection limits of docs/protocol.md §2.

It is an ``asyncio.Protocol`` rather than a stream-and-task loop because the course's
one-request-per-connection mode makes connection setup the hot path: a cached GET is
parsed, answered and written inside one ``data_received`` call with no task at all.

Reply ordering: every request gets a *slot* in ``_slots``, either its reply bytes or a
future that will hold them. ``_flush`` writes the ready prefix of the slots. A reply can
also be a header plus an async body (large BGET), which is streamed with flow control
before any later slot is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from typing import Any, Final, TypeVar, cast

from kvbox.errors import DataDamaged, ProtocolError
from kvbox.kv.commands import BY_EVENT, Batch, Command, Kind, KvCommands, Reply
from kvbox.proto import gwkv as p
from kvbox.server.accesslog import AccessLog, Peer, address_of
from kvbox.server.budget import MemoryBudget, Share
from kvbox.server.governor import Door, Governor, Limits
from kvbox.server.kvauth import DENIED, MAX_FAILURES, KvAuth, Session

log = logging.getLogger("kvbox.gwkv")

#: Stop taking requests from a client whose outstanding replies cost this much (it
#: pipelines without reading); resume below the low mark. Each request costs what its row
#: of ``kvbox.kv.commands.COMMANDS`` says (a GET 1, a MULTIGET one per key, a BGET 16: its
#: value may be 64 KiB inline), so a connection's queued replies stay within a few MiB
#: whatever it sends. Benchmarks pipeline 16 deep.
MAX_COST: Final = 1024
RESUME_COST: Final = 256
#: Bytes of a streamed BSET body buffered before reading pauses (a few chunks' worth).
BODY_BUFFER: Final = 16 * 1024 * 1024
#: A streamed reply goes to the transport in slices of this size (see ``_stream``).
WRITE_SLICE: Final = 1 << 20
#: The most one body event can add past ``BODY_BUFFER`` before the pause takes effect.
MAX_CHUNK_EVENT: Final = p.MAX_CHUNK

#: Seconds a connection lingers after a fatal error (see ``_flush``).
LINGER: Final = 0.5

_BUSY: Final = p.err("BUSY", "too many connections")
_BUSY_ADDRESS: Final = p.err("BUSY", "too many connections from your address")
_NO_AUTH: Final = p.err("DENIED", "this server has no GW-KV authentication")
_TIMEOUT: Final = p.err("TIMEOUT", "request made no progress in time")
_INTERNAL: Final = p.err("INTERNAL", "request failed; see server log")
#: What the access log shows for refusals that are no request of the client's.
_BUSY_EVENT: Final = p.BadRequest("BUSY", "too many connections")
_TIMEOUT_EVENT: Final = p.BadRequest("TIMEOUT", "request made no progress in time")


class _Body:
    """The payload of one streamed BSET, handed from ``data_received`` to the store."""

    def __init__(self, conn: GwkvConnection) -> None:
        self._conn = conn
        self._q: deque[bytes | BaseException | None] = deque()
        self._ready = asyncio.Event()
        self.buffered = 0
        self.discarding = False
        #: This value's part of the memory budget, and the wait for it if it had to.
        self.share = Share()
        self.waiting: asyncio.Task[bool] | None = None

    def push(self, data: bytes | None) -> None:
        if self.discarding:
            return
        self._q.append(data)
        if data is not None:
            self.buffered += len(data)
        self._ready.set()

    def abort(self, reason: str, code: str = "BADLENGTH") -> None:
        """End the body with an error, so the store discards it instead of committing
        a truncated value; the BSET's reply becomes ``ERR <code> <reason>``. Whatever was
        buffered is dropped, and so is anything pushed later."""
        self.discard()
        self._q.append(ProtocolError(reason, code))
        self._ready.set()

    def discard(self) -> None:
        """Nobody reads this body any more (the write already failed): drop the rest."""
        self.discarding = True
        self._q.clear()
        self.buffered = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            while not self._q:
                self._ready.clear()
                await self._ready.wait()
            data = self._q.popleft()
            if data is None:
                return
            if isinstance(data, BaseException):
                try:
                    raise data
                finally:
                    # The raised error's traceback holds this frame; dropping our
                    # reference breaks the cycle that would keep the caller's buffer
                    # alive until a (rare, tuned-down) cyclic collection.
                    del data
            self.buffered -= len(data)
            if self.buffered < BODY_BUFFER // 2:
                self._conn.body_drained()
            yield data


class GwkvServer:
    """Shared state of all GW-KV TCP connections: limits, counters, the connection set.

    Admission and the timeout sweep are the governor's (``kvbox.server.governor``), shared
    with every other door; this class only knows GW-KV's connections (INFO, shutdown).
    """

    def __init__(
        self,
        commands: KvCommands,
        *,
        max_value: int = p.DEFAULT_MAX_VALUE,
        access: AccessLog | None = None,
        governor: Governor | None = None,
        budget: MemoryBudget | None = None,
        kvauth: KvAuth | None = None,
    ) -> None:
        self.commands = commands
        #: Every request's line goes here (``kvbox.server.accesslog``); None: no log.
        self.access = access
        self.max_value = max_value
        #: The memory budget streamed values take their share of (``server/budget.py``):
        #: an upload holds its queued payload and the store's buffers, a download a chunk.
        self.budget = budget
        #: AUTH and the access decision (``--kv-auth``); None: neither (tests).
        self.kvauth = kvauth
        #: The same when requests are decided at all (not ``off``): looked at per request.
        self.checks = kvauth if kvauth is not None and kvauth.mode != "off" else None
        store = commands.store
        self.stream_memory = BODY_BUFFER + store.stream_memory + MAX_CHUNK_EVENT
        self.read_memory = store.chunk_size + WRITE_SLICE
        self.governor = governor if governor is not None else Governor(Limits())
        self.limits = self.governor.limits
        self.door = Door("gwkv", commands.counters, _answer)
        self.connections: set[GwkvConnection] = set()
        # Looked up once: in CPython 3.11 every get_running_loop() costs a getpid().
        self.loop = asyncio.get_running_loop()

    def protocol_factory(self) -> GwkvConnection:
        return GwkvConnection(self)

    async def drain(self, grace: float) -> None:
        """Stop reading new requests everywhere; wait up to ``grace`` s for replies."""
        for conn in list(self.connections):
            conn.stop_reading()
        deadline = asyncio.get_running_loop().time() + grace
        while any(c.busy for c in self.connections):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()


def _answer(kind: str, remote: str) -> bytes:
    """GW-KV's form of the governor's refusals (docs/protocol.md §3: BUSY closes)."""
    if kind == "address":
        return _BUSY_ADDRESS
    return _BUSY


class GwkvConnection(asyncio.Protocol):
    """One TCP connection: parser -> ordered reply slots -> socket, with backpressure.

    Why one class of about 700 lines rather than several: ``data_received`` ->
    ``_take_requests`` -> ``_flush`` is the hot path (a pipelined GET costs about 4 µs of
    CPU in all), and the reply slots, the ordering groups, the streamed body, the pause
    reasons, the memory a stream holds and the connection's AUTH session are one state
    that every step of it reads and writes. Cut into collaborating objects it would pay
    an attribute hop per request on each step and spread one invariant (replies leave in
    request order, within ``MAX_COST``) over several files. What does not share that
    state lives outside: parsing (``kvbox.proto.gwkv``), meaning, ordering kinds and
    costs (``kvbox.kv.commands``), what AUTH and the access decision mean
    (``kvbox.server.kvauth``), admission and timeouts (``kvbox.server.governor``), the
    streamed body (``_Body``) and the server-wide state (``GwkvServer``).
    """

    __slots__ = (
        "_backlog",
        "_body",
        "_closing",
        "_cost",
        "_costs",
        "_fatal",
        "_group",
        "_kind",
        "_last_sets",
        "_log",
        "_logq",
        "_loop",
        "_out",
        "_parser",
        "_paused_reading",
        "_peer",
        "_prev",
        "_processing",
        "_reasons",
        "_remote",
        "_session",
        "_slots",
        "_streaming",
        "_t_rx",
        "_writable",
        "_write_paused",
        "_write_paused_at",
        "commands",
        "last_rx",
        "request_started",
        "server",
        "transport",
    )

    def __init__(self, server: GwkvServer) -> None:
        self.server = server
        self.commands = server.commands
        self._parser = p.RequestParser(max_value=server.max_value)
        self._slots: deque[bytes | asyncio.Future[Reply]] = deque()
        #: Cost of each slot (parallel to ``_slots``) and their sum (see ``MAX_COST``).
        self._costs: deque[int] = deque()
        self._cost = 0
        #: The latest SET batch: the next one must not overtake it (``_run_sets``).
        self._last_sets: Batch | None = None
        self._body: _Body | None = None
        self._streaming = False
        self._closing = False
        self._processing = False
        self._backlog = False  # requests wait in the parser because of backpressure
        self._fatal = False
        #: Ordering groups: the open group's kind and futures, and what it waits for.
        self._kind = _READ
        self._group: list[asyncio.Future[Reply]] = []
        self._prev: asyncio.Future[Any] | None = None
        self._reasons: set[str] = set()  # why reading is paused
        self._paused_reading = False
        self._write_paused = False
        self._write_paused_at = 0.0
        self._writable: asyncio.Event | None = None
        self.transport: asyncio.Transport | None = None
        self.last_rx = 0.0
        self.request_started = 0.0
        #: The access log's append (None: no access log), this client as its lines name
        #: it, the (request, arrival) of each slot that is a future, in slot order, and
        #: the ``perf_counter`` of the latest read (requests taken from it arrived then).
        self._log = server.access.gwkv if server.access is not None else None
        self._peer: Peer | None = None
        #: Who this connection is (``--kv-auth``) and its client's address, for the
        #: access decision.
        self._session = Session()
        self._remote = ""
        self._logq: deque[tuple[Any, float]] = deque()
        self._t_rx = 0.0

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports don't subclass asyncio's ABCs, so no isinstance check here.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self._loop = self.server.loop
        self.last_rx = self._loop.time()
        srv = self.server
        if self._log is not None:
            self._peer = Peer("gwkv", address_of(transport), self.commands.bucket)
        peername = transport.get_extra_info("peername")
        if srv.checks is not None:  # the access decision needs the client's address
            self._remote = _host_of(peername)
        refused = srv.governor.admit(self, srv.door, peername)
        if refused is not None:
            self._closing = True
            answer = srv.door.answer(refused, address_of(transport))
            srv.governor.refuse(transport, answer)
            if self._log is not None:
                now = time.perf_counter()
                self._log((self._peer, _BUSY_EVENT, answer, now, now))
            return
        srv.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        srv = self.server
        srv.connections.discard(self)
        srv.governor.release(self)
        for slot in self._slots:
            if isinstance(slot, asyncio.Future) and not slot.done():
                # The request still completes (a write stays durable); only the reply
                # has nowhere to go.
                slot.add_done_callback(_consume)
        self._slots.clear()
        self._logq.clear()
        if self._body is not None:
            self._body.abort("connection lost mid-value")
            self._body = None
        if self._writable is not None:
            self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        now = self.last_rx = self._loop.time()
        if self._log is not None:
            self._t_rx = time.perf_counter()
        self.commands.counters.bytes_in += len(data)
        parser = self._parser
        was_in_request = parser.in_request
        parser.feed(data)
        n = self._process()
        if parser.in_request and (n or not was_in_request):
            self.request_started = now

    def _process(self) -> int:
        """Turn buffered requests into slots; returns how many requests it took.

        Stops early when the socket's write buffer is full or too many replies are
        outstanding: the rest stays in the parser until ``resume_writing``. Without that,
        64 KiB of pipelined ``BGET``s of 64 KiB values would queue 400 MiB of replies.
        """
        self._processing = True
        try:
            total = 0
            while True:
                n, blocked = self._take_requests()
                total += n
                self._backlog = blocked
                if not blocked or self._closing or self._write_paused:
                    return total  # resume_writing() comes back here
                if self._cost > RESUME_COST:
                    self._pause("slots")  # _flush() resumes once replies drain
                    return total
                # The replies drained while we were taking requests: take more.
        finally:
            self._processing = False

    def _take_requests(self) -> tuple[int, bool]:
        """Requests from the parser into slots: (how many, stopped by backpressure)."""
        parser = self._parser
        commands = self.commands
        rows = BY_EVENT
        auth = self.server.checks
        alog = self._log
        # Requests answered on the spot, for the access log: one record for the batch.
        done_evs: list[p.RequestEvent] = []
        done_replies: list[bytes] = []
        by_op = commands.counters.by_op
        slots = self._slots
        costs = self._costs
        group = self._group
        quick = 0
        sets: list[p.Set] = []
        set_cost = 0
        n = 0
        k = 0
        blocked = False
        while not self._closing:
            k += 1
            if self._cost > MAX_COST or self._write_paused:
                blocked = True  # the rest waits in the parser until replies drain
                break
            if k & 63 == 0:
                if sets:
                    self._run_sets(sets, set_cost)
                    sets, set_cost = [], 0
                self._flush()
            ev = parser.next_event()
            if ev is None:
                break
            t = type(ev)
            body = self._body
            if body is not None:
                if t is p.BodyChunk:
                    body.push(ev.data)  # type: ignore[union-attr]
                    if body.buffered >= BODY_BUFFER:
                        self._pause("body")
                    continue
                if t is p.BodyEnd:
                    body.push(None)
                    self._body = None
                    continue
                # Bad framing after a streamed payload: that BSET's reply is this error.
                self._body = None
                if t is p.BadRequest:
                    body.abort(ev.message, ev.code)  # type: ignore[union-attr]
                    self._fatal = self._closing = ev.fatal  # type: ignore[union-attr]
                    if ev.fatal:  # type: ignore[union-attr]
                        break
                    continue
                body.abort("malformed value framing", "BADLENGTH")
            n += 1
            by_op[t.__name__] += 1
            row = rows[t]
            cost = len(ev.keys) if row.per_key else row.cost  # type: ignore[union-attr]
            self._cost += cost
            kind = row.kind
            # Under --kv-auth, a request that needs a permission is decided when it runs
            # (an AUTH before it may change who asks): no quick answer, no SET batch.
            checked = (
                auth is not None
                and row.action is not None
                and not auth.trusts(self._session.principal)
            )
            if checked and kind is _SETS:
                kind = _WRITE
            if kind is not self._kind or kind is _WRITE:
                # A new ordering group: it starts once everything before it is done.
                if sets:
                    self._run_sets(sets, set_cost)
                    sets, set_cost = [], 0
                self._close_group()
                group = self._group
                self._kind = kind
            if kind is _SETS:
                # Its slot is the whole run of SETs' (``_run_sets``): SETs in a row have
                # nothing between them, so one slot keeps their replies in order.
                sets.append(ev)  # type: ignore[arg-type]
                set_cost += cost
                continue
            fatal = t is p.BadRequest and ev.fatal  # type: ignore[union-attr]
            prev = self._prev
            if (prev is None or prev.done()) and not checked:
                # Nothing before it is pending: a request its row can answer at once is
                # answered here, with no task (a cached GET, PING, a refused request).
                answer = row.quick
                reply = None if answer is None else answer(commands, ev)
                if reply is not None:
                    quick += 1
                    slots.append(reply)
                    costs.append(cost)
                    if alog is not None:
                        done_evs.append(ev)
                        done_replies.append(reply)
                    if t is p.Quit or fatal:
                        self._fatal = fatal
                        self._closing = True
                        break
                    continue
                prev = None
            if t is p.BSet and ev.value is None:  # type: ignore[union-attr]
                body = self._body = _Body(self)
                self._take_memory(body, ev.length)  # type: ignore[union-attr]
                stream = commands.execute_stream(ev, aiter(body))  # type: ignore[arg-type]
                if checked:
                    stream = self._checked(ev, row, stream, body)
                fut = self._loop.create_task(_maybe_after(prev, stream))
                fut.add_done_callback(partial(self._stream_request_done, body))
            elif t is p.Auth:
                fut = self._loop.create_task(_maybe_after(prev, self._auth(ev)))  # type: ignore[arg-type]
                fut.add_done_callback(self._on_done)
            else:
                run = commands.execute(ev)
                if checked:
                    run = self._checked(ev, row, run)
                fut = self._loop.create_task(_maybe_after(prev, run))
                fut.add_done_callback(self._on_done)
            slots.append(fut)
            costs.append(cost)
            group.append(fut)
            if alog is not None:
                self._logq.append((ev, self._t_rx))
            if t is p.Quit or fatal:
                self._fatal = fatal
                self._closing = True
                break
        commands.counters.requests += n
        commands.counters.immediate += quick
        if done_evs and alog is not None:  # answered on the spot: no time to speak of
            alog((self._peer, done_evs, done_replies, self._t_rx, self._t_rx))
        if sets:
            self._run_sets(sets, set_cost)
        if len(group) > 64:
            self._group = [f for f in group if not f.done()]
        self._flush()
        return n, blocked

    async def _auth(self, ev: p.Auth) -> Reply:
        """One AUTH (``server/kvauth.py``); too many failures close the connection."""
        auth = self.server.kvauth
        if auth is None:
            return _NO_AUTH
        session = self._session
        before = session.principal
        remote = self._remote or _host_of(
            self.transport.get_extra_info("peername") if self.transport is not None else None
        )
        reply = await auth.authenticate(session, ev, loopback=_is_loopback(remote))
        if reply.startswith(b"ERR"):
            self.commands.counters.errors["DENIED"] += 1
            if session.failures >= MAX_FAILURES:
                self._fatal = self._closing = True
        elif session.principal != before and self._peer is not None:
            self._peer = dataclasses.replace(self._peer, principal=session.principal or "-")
        return reply

    async def _checked(
        self,
        ev: p.RequestEvent,
        row: Command,
        run: Coroutine[Any, Any, Reply],
        body: _Body | None = None,
    ) -> Reply:
        """``run`` if this connection's principal may (``KvAuth.allows``), else
        ``ERR DENIED``; a NOTFOUND becomes ``ERR DENIED`` for who may not list the bucket
        (S3's rule: absence is not told to those who may not look)."""
        auth = self.server.kvauth
        assert auth is not None
        principal = self._session.principal
        refused = auth.refuse_unauthenticated(self._session, row)
        if refused is None and not await auth.allows(principal, row, ev, self._remote):
            refused = DENIED
        if refused is not None:
            run.close()
            if body is not None:
                body.discard()
            self.commands.counters.errors["DENIED"] += 1
            return refused
        reply = await run
        if reply == p.NOTFOUND and not await auth.may_learn_absence(principal, self._remote):
            self.commands.counters.errors["DENIED"] += 1
            return DENIED
        return reply

    def _close_group(self) -> None:
        """End the open ordering group: later requests wait until all of it is done.

        Requests on one connection behave as if run one after another: reads in a row may
        run together, and plain SETs in a row share a commit, but nothing crosses a write.
        """
        pending = [f for f in self._group if not f.done()]
        if self._prev is not None and not self._prev.done():
            pending.append(self._prev)
        if pending:
            self._prev = asyncio.gather(*pending, return_exceptions=True)
        else:
            self._prev = None
        self._group = []

    def eof_received(self) -> bool | None:
        # Keep the write side open until every reply is out (one request per
        # connection: the client may half-close right after sending).
        self._closing = True
        if self._body is not None:  # the client gave up mid-value: nothing to commit
            self._body.abort("connection closed mid-value")
            self._body = None
        return bool(self._slots) or self._streaming

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_paused_at = self._loop.time()
        self._pause("write")

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None:
            self._writable.set()
        self._resume("write")
        self._flush()

    # --- replies ----------------------------------------------------------------------

    def _run_sets(self, sets: list[p.Set], cost: int) -> None:
        """Hand a run of plain SETs over together; one slot (and one future) answers all
        of them with their replies joined. They must take effect after what came before
        the group and after the previous batch of this connection; how (the journal
        keeps its own order) is the Store's business."""
        fut: asyncio.Future[Reply] = self._loop.create_future()
        self._slots.append(fut)
        self._costs.append(cost)
        self._group.append(fut)
        if self._log is not None:
            self._logq.append((sets, self._t_rx))
        prev = self._prev if self._prev is not None and not self._prev.done() else None
        self._last_sets = self.commands.set_batch(
            sets, partial(self._sets_done, fut), previous=self._last_sets, after=prev
        )

    def _sets_done(
        self, fut: asyncio.Future[Reply], replies: bytes, failure: BaseException | None
    ) -> None:
        if failure is not None:
            log.error("SET batch failed (%s)", self._who(), exc_info=failure)
        fut.set_result(replies)
        self._flush()

    def _gone(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def _take_memory(self, body: _Body, length: int) -> None:
        """Take the streamed value's share of the memory budget; if it must wait, the
        socket is not read meanwhile, and a value refused after the wait is answered
        ``ERR BUSY`` (the connection then closes: its payload is not read)."""
        budget = self.server.budget
        if budget is None:
            return
        cost = min(length, self.server.stream_memory)
        if budget.try_take(body.share, cost):
            return
        self._pause("budget")
        task = body.waiting = self._loop.create_task(budget.take(body.share, cost, gone=self._gone))

        def granted(t: asyncio.Task[bool]) -> None:
            body.waiting = None
            if t.cancelled() or t.exception() is not None or not t.result():
                body.abort("server memory for values in flight is full; retry later", "BUSY")
            self._resume("budget")

        task.add_done_callback(granted)

    def _stream_request_done(self, body: _Body, fut: asyncio.Future[Reply]) -> None:
        if body.waiting is not None:
            body.waiting.cancel()  # gives back whatever it was granted
        if self.server.budget is not None:
            self.server.budget.release(body.share)
        if self._body is body:
            # The write ended (failed) before its payload did: we won't read gigabytes
            # to throw them away. Reply, then close (docs/protocol.md: TOOLARGE on BSET).
            body.discard()
            self._body = None
            self._fatal = self._closing = True
            self._resume("body")
        self._on_done(fut)

    def _on_done(self, fut: asyncio.Future[Reply]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.error("GW-KV request failed (%s)", self._who(), exc_info=exc)
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self._streaming or self._write_paused:
            # While the socket's buffer is full, ready replies wait in their slots: the
            # client that doesn't read them is not allowed to grow our memory.
            return
        slots = self._slots
        costs = self._costs
        alog = self._log
        now = 0.0
        out: list[bytes] = []
        while slots:
            slot = slots[0]
            if isinstance(slot, bytes):
                out.append(slot)
                slots.popleft()
                self._cost -= costs.popleft()
                continue
            if not slot.done():
                break
            slots.popleft()
            self._cost -= costs.popleft()
            failed = slot.cancelled() or slot.exception() is not None
            reply: Reply = _INTERNAL if failed else slot.result()
            if alog is not None:
                if not now:
                    now = time.perf_counter()
                ev, t0 = self._logq.popleft()
                alog((self._peer, ev, reply, t0, now))
            if isinstance(reply, bytes):
                out.append(reply)
                continue
            header, body = reply
            out.append(header)
            transport.write(b"".join(out))
            out = []
            self._streaming = True
            task = self._loop.create_task(self._stream(body))
            task.add_done_callback(self._stream_done)
            break
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            self.commands.counters.bytes_out += len(data)
            transport.write(data)
        if not slots and not self._streaming and self._closing and not transport.is_closing():
            if self._fatal and transport.can_write_eof():
                # Framing is lost and unread request bytes may be queued: a close now
                # could reset the connection and destroy the ERR line in flight. Send
                # FIN, discard what still arrives for a moment, then close.
                self._fatal = False
                transport.write_eof()
                self._loop.call_later(LINGER, transport.close)
            else:
                transport.close()
        if "slots" in self._reasons and self._cost < RESUME_COST:
            self._resume("slots")
        elif self._backlog and not slots:
            self._maybe_process()  # e.g. a streamed reply ended while we were paused

    async def _stream(self, body: AsyncIterator[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        budget = self.server.budget
        share = Share()
        if budget is not None and not await budget.take(
            share, self.server.read_memory, gone=self._gone
        ):
            # The header is out already: a close is the only honest answer left.
            log.info("a streamed value found no room in the memory budget; closing")
            self.close()
            return
        try:
            async for chunk in body:
                self.commands.counters.bytes_out += len(chunk)
                # In slices, each waiting for the socket to drain, so that a chunk never
                # sits whole in the transport's buffer while the next one is read.
                with memoryview(chunk) as view:
                    for off in range(0, len(chunk), WRITE_SLICE):
                        if transport.is_closing():
                            return
                        transport.write(view[off : off + WRITE_SLICE])
                        if self._write_paused:
                            if self._writable is None:
                                self._writable = asyncio.Event()
                            self._writable.clear()
                            await self._writable.wait()
        finally:
            if budget is not None:
                budget.release(share)

    def _stream_done(self, task: asyncio.Task[None]) -> None:
        self._streaming = False
        if task.cancelled() or task.exception() is not None:
            exc = None if task.cancelled() else task.exception()
            # Damage is logged once per object by the Store, not once per reader.
            if exc is not None and not isinstance(exc, DataDamaged):
                log.error("streaming a value failed (%s)", self._who(), exc_info=exc)
            # The header is out, the body is not: the only honest signal is a close.
            self.close()
            return
        self._flush()

    def _who(self) -> str:
        """Which connection, for an error record: its access lines (status ERR:INTERNAL
        or ERR:STORAGE) carry the same connection id in their request ids."""
        peer = self._peer
        if peer is not None:
            return f"connection {peer.conn_id} from {peer.remote}"
        return "connection from " + address_of(self.transport)

    # --- flow control and limits ------------------------------------------------------

    def _pause(self, reason: str) -> None:
        self._reasons.add(reason)
        if not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def _resume(self, reason: str) -> None:
        self._reasons.discard(reason)
        if self._paused_reading and not self._reasons and self.transport is not None:
            self._paused_reading = False
            # Time spent paused by us is not the client's: restart its clocks.
            self.last_rx = self.request_started = self._loop.time()
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()
            self._maybe_process()

    def _maybe_process(self) -> None:
        """Take requests left in the parser by backpressure, once nothing holds them."""
        if (
            self._backlog
            and not self._processing
            and not self._streaming
            and not self._closing
            and not self._paused_reading
        ):
            self._process()

    def body_drained(self) -> None:
        if "body" in self._reasons:
            self._resume("body")

    def stop_reading(self) -> None:
        self._closing = True
        self._pause("shutdown")
        if not self._slots and not self._streaming and self.transport is not None:
            self.transport.close()

    @property
    def busy(self) -> bool:
        return bool(self._slots) or self._streaming or self._body is not None

    def idle_since(self) -> float | None:
        """For the governor's eviction: idle means no request, reply or payload pending."""
        if (
            self._closing
            or self._slots
            or self._streaming
            or self._body is not None
            or self._write_paused
            or self._parser.in_request
        ):
            return None
        return self.last_rx

    def evict(self) -> None:
        self.close()

    def check_timeouts(self, now: float) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        lim = self.server.limits
        timeouts = self.commands.counters.timeouts
        if self._paused_reading:
            # Paused because the client doesn't read its replies: a reply that stops
            # moving is bounded like a body that does.
            if self._write_paused and now - self._write_paused_at > lim.body_timeout:
                timeouts["send"] += 1
                self.transport.abort()
                self._closing = True
            return
        if self._closing:
            # Half-closed by the client, replies still owed: bounded like a request.
            if now - self.last_rx > lim.body_timeout + lim.idle_timeout:
                self.close()
            return
        idle = now - self.last_rx
        parser = self._parser
        # A request line must arrive whole within the timeout of its first byte (a slow
        # drip is no excuse); a payload must only keep making progress.
        if self._body is not None or parser.in_payload:
            stalled = idle > lim.body_timeout
            phase = "body"
        else:
            stalled = parser.in_request and now - self.request_started > lim.header_timeout
            phase = "header"
        if stalled:
            timeouts[phase] += 1
            if self._body is not None:
                self._body.abort("request timed out", "TIMEOUT")
                self._body = None
            else:
                self._slots.append(_TIMEOUT)
                self._costs.append(1)
                self._cost += 1
                if self._log is not None:
                    t = time.perf_counter()
                    self._log((self._peer, _TIMEOUT_EVENT, _TIMEOUT, t, t))
            self._fatal = self._closing = True
            self._flush()
            # Replies still being computed get a moment to go out; then the close.
            self._loop.call_later(LINGER * 4, self.close)
        elif not parser.in_request and not self._slots and idle > lim.idle_timeout:
            timeouts["idle"] += 1
            self.close()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


_READ: Final = Kind.READ
_SETS: Final = Kind.SETS
_WRITE: Final = Kind.WRITE

T = TypeVar("T")


def _maybe_after(
    prev: asyncio.Future[Any] | None, coro: Coroutine[Any, Any, T]
) -> Coroutine[Any, Any, T]:
    return coro if prev is None or prev.done() else _after(prev, coro)


async def _after(prev: asyncio.Future[Any], coro: Coroutine[Any, Any, T]) -> T:
    try:
        await asyncio.shield(prev)
    except BaseException:
        coro.close()
        raise
    return await coro


def _consume(fut: asyncio.Future[Reply]) -> None:
    if not fut.cancelled():
        fut.exception()


def _is_loopback(address: str) -> bool:
    """Whether ``address`` (a peer's IP) is this machine's own."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _host_of(peername: Any) -> str:
    return str(peername[0]) if isinstance(peername, tuple) and peername else ""
