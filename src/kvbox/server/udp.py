"""GW-KV over UDP: one datagram of requests in, one datagram of replies out.

Layer: server (asyncio). Rules: the same parser and commands as TCP. A datagram must hold
complete requests (there is no stream to wait on); replies that would not fit one datagram
are replaced by ``ERR TOOBIG`` so a client never receives a truncated value, and an
``ERR TOOBIG`` always means that request changed nothing (``_answer``). Datagrams are
answered in arrival order per source only in so far as UDP promises anything: clients
match replies by sending one datagram at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, cast

from kvbox.kv.commands import BY_EVENT, Kind, KvCommands, Reply
from kvbox.proto import gwkv as p
from kvbox.server.accesslog import AccessLog, Peer, join_address
from kvbox.server.kvauth import DENIED, KvAuth

log = logging.getLogger("kvbox.udp")

_TOOBIG: Final = p.err("TOOBIG", "use TCP")
#: The "reply" the access log shows for a datagram that got none (overload, shutdown).
_DROPPED: Final = b""
#: Datagrams being answered at once; more are dropped (UDP's own answer to overload).
MAX_IN_FLIGHT: Final = 1024
#: A reply may be at most this many times its request, or ``AMPLIFY_FLOOR`` bytes,
#: whichever is larger; otherwise ``ERR TOOBIG``. UDP's source address is unverified,
#: so without a cap a 133-byte MULTIGET could reflect 64 KB at a spoofed victim (the
#: memcached-UDP attacks of 2018). A single GET of a 1 KB value stays allowed.
AMPLIFY_FACTOR: Final = 10
AMPLIFY_FLOOR: Final = 1400


#: The longest success reply of a write: ``OK <version>`` or ``CONFLICT <version>``
#: (docs/protocol.md §4); a MULTISET adds a version per pair.
_WRITE_REPLY: Final = len(b"CONFLICT ") + p.VERSION_LEN + 1
_PER_PAIR: Final = p.VERSION_LEN + 1


def _reply_room(ev: p.RequestEvent) -> int:
    """The reply bytes set aside for ``ev`` before anything runs: a write's longest
    success reply (it must never be replaced once the write is done), else an
    ``ERR TOOBIG`` line, which any request may be answered with."""
    if BY_EVENT[type(ev)].kind is Kind.READ:
        return len(_TOOBIG)
    if isinstance(ev, p.MultiSet):
        return max(len(_TOOBIG), len(b"OK\n") + _PER_PAIR * len(ev.pairs))
    return max(len(_TOOBIG), _WRITE_REPLY)


class GwkvDatagram(asyncio.DatagramProtocol):
    def __init__(
        self, commands: KvCommands, access: AccessLog | None = None, kvauth: KvAuth | None = None
    ) -> None:
        self.commands = commands
        self.access = access
        #: With --kv-auth on, every datagram acts as anonymous under the bucket's access
        #: decision (a datagram cannot authenticate); None or "off": open, as ever.
        self.kvauth = kvauth if kvauth is not None and kvauth.mode != "off" else None
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports don't subclass asyncio's ABCs, so no isinstance check here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        parser = p.RequestParser()
        parser.feed(data)
        events: list[p.RequestEvent] = []
        while (ev := parser.next_event()) is not None:
            if isinstance(ev, p.BSet) and ev.value is None:
                self._send(_TOOBIG, addr)
                self._log(addr, [ev], [_TOOBIG], _TOOBIG, time.perf_counter())
                return
            events.append(ev)
            if isinstance(ev, p.BadRequest) and ev.fatal:
                break
        if parser.in_request:
            # A datagram holds whole requests; one cut short didn't fit (or was cut).
            events.append(p.BadRequest("TOOBIG", "request does not fit a datagram; use TCP"))
        self.commands.counters.requests += len(events)
        limit = max(AMPLIFY_FLOOR, AMPLIFY_FACTOR * len(data))
        t0 = time.perf_counter()
        replies = [self.commands.immediate(ev) for ev in events] if self.kvauth is None else []
        if replies and all(r is not None for r in replies):
            sent = self._send(b"".join(replies), addr, limit)  # type: ignore[arg-type]
            self._log(addr, events, replies, sent, t0)  # type: ignore[arg-type]
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._log(addr, events, [_DROPPED] * len(events), _DROPPED, t0)
            return
        task = asyncio.ensure_future(self._answer(events, addr, limit, t0, str(addr[0])))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, events: list[p.RequestEvent], addr: Any, limit: int, t0: float, remote: str = ""
    ) -> None:
        """Run the datagram's requests in order, each with a place in the reply datagram.

        ``ERR TOOBIG`` must mean nothing changed, so the room a write's reply can take is
        set aside before anything runs: if the writes' replies cannot all fit, the
        datagram is refused whole and nothing runs. A read whose reply does not fit
        what is left gets ``ERR TOOBIG`` in its own place; the requests after it still
        run (a datagram used to be answered by one TOOBIG after its SETs had been
        applied, issue 10).
        """
        room = min(limit, p.UDP_MAX)
        reserved = [_reply_room(ev) for ev in events]
        if sum(reserved) > room:
            sent = self._send(_TOOBIG, addr)
            self._log(addr, events, [_TOOBIG] * len(events), sent, t0)
            return
        used = sum(reserved)
        out: list[bytes] = []
        for ev, held in zip(events, reserved, strict=True):
            reply = await self._run(ev, remote)
            if not isinstance(reply, bytes):  # a value to stream: never in a datagram
                reply = _TOOBIG
            extra = len(reply) - held
            if extra > 0:
                if used + extra > room:
                    # Only a read, or a write's refusal, outgrows its place: either way
                    # nothing changed, so TOOBIG (which always fits its place) is true.
                    reply = _TOOBIG
                else:
                    used += extra
            out.append(reply)
        sent = self._send(b"".join(out), addr, limit)
        self._log(addr, events, out, sent, t0)

    async def _run(self, ev: p.RequestEvent, remote: str) -> Reply:
        """Run one request, as anonymous under --kv-auth (``KvAuth``'s rules)."""
        auth = self.kvauth
        row = BY_EVENT[type(ev)]
        if auth is None or row.action is None:
            return await self.commands.execute(ev)
        if not await auth.allows(None, row, ev, remote):
            self.commands.counters.errors["DENIED"] += 1
            return DENIED
        reply = await self.commands.execute(ev)
        if reply == p.NOTFOUND and not await auth.may_learn_absence(None, remote):
            self.commands.counters.errors["DENIED"] += 1
            return DENIED
        return reply

    def _send(self, payload: bytes, addr: Any, limit: int = p.UDP_MAX) -> bytes:
        """Send the replies, or ``ERR TOOBIG`` in their place; what was sent."""
        if self.transport is None or self.transport.is_closing():
            return _DROPPED
        if len(payload) > min(limit, p.UDP_MAX):
            payload = _TOOBIG
        self.transport.sendto(payload, addr)
        return payload

    def _log(
        self,
        addr: Any,
        events: list[p.RequestEvent],
        replies: list[bytes],
        sent: bytes,
        t0: float,
    ) -> None:
        """One access-log record per request of the datagram, with the reply it got
        (``ERR TOOBIG`` for all when that replaced them, nothing when it was dropped)."""
        if self.access is None:
            return
        t1 = time.perf_counter()
        peer = Peer("gwkv-udp", join_address(addr[0], addr[1]), self.commands.bucket)
        replaced = sent is _TOOBIG or sent is _DROPPED
        for ev, reply in zip(events, replies, strict=True):
            self.access.gwkv((peer, ev, sent if replaced else reply, t0, t1))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)
