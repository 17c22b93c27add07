"""One governor for the connections of every door: admission, timeouts, eviction.

Layer: server (asyncio). Rules:

* Every listener -- GW-KV, the HTTP port (S3, probes, console), the website port, a
  console port -- registers each connection here before it reads a byte: ``admit``
  answers whether it may stay, ``release`` forgets it. One limit counts them all
  (``--max-connections``), because they share one process's file descriptors; a second
  limit counts them per client address (``--max-connections-per-ip``; IPv6 by /64, the
  block one subscriber gets), so one client cannot take the rest.
* At the global limit an *idle* connection (no request in progress, nothing owed) is
  closed to make room, the longest idle first, as nginx drains keep-alive connections
  when it runs out; only when none is idle is the newcomer refused. A refusal is written
  in the door's own form (``Door.answer``: an ``ERR BUSY`` line, an S3 503 SlowDown) and
  the socket lingers half-closed for a moment so the answer is not destroyed by a reset.
* One timer sweeps every connection (``Governed.check_timeouts``); each door knows its
  own phases, the limits are common: a request head (HTTP headers, a GW-KV request line)
  must arrive whole within ``header_timeout`` of its first byte, a body -- either way --
  must keep moving within ``body_timeout``, and a connection with nothing in progress is
  closed after ``idle_timeout``.
* Counters per door (``ServerCounters.refused``, ``.timeouts``, ``.evicted``,
  ``.connections``) are what /metrics exports; the event loop is their only writer.

The numbers and their reasons are in docs/operations.md ("Faults and limits").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import ipaddress
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from kvbox.metrics import ServerCounters

log = logging.getLogger("kvbox.limits")

#: A connection must have been idle this long before it may be closed to make room: a
#: client that just got a reply is probably about to send its next request.
EVICT_MIN_IDLE: Final = 1.0
#: Connections closed per scan for eviction candidates: one scan of 10,000 connections
#: costs a few milliseconds, so it is done for a batch of newcomers, not for each.
EVICT_BATCH: Final = 64
#: After a scan found nothing idle, refuse without scanning again for this long (a flood
#: of newcomers must not turn into a flood of scans).
EVICT_RESCAN: Final = 0.25
#: Seconds a refused connection stays half-closed, reading and discarding, so the client
#: reads its refusal before the close (an unread request would make the close a reset).
LINGER: Final = 0.5
#: Refused connections lingering at once; beyond it a refusal is a plain close, so a
#: flood of refused connections cannot hold descriptors either.
MAX_LINGERING: Final = 128
#: Descriptors kept for everything that is not a client connection (SQLite and its
#: readers, journal segments, chunk files being written or sent, listeners, pipes).
FD_RESERVE_MAX: Final = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The connection limits of every door (flags of ``kvbox serve``)."""

    max_connections: int = 10_000
    max_connections_per_ip: int = 1_000
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100


class BodyTimeout(asyncio.TimeoutError):
    """A request body made no progress for ``body_timeout``: set on the request's stream
    by the sweeper, so whoever reads the body gets it (an S3 handler answers 400
    RequestTimeout). A ``TimeoutError`` so that aiohttp, draining the rest of an unread
    body after the response, treats it as the end of the connection and not a bug."""


#: Why a connection or a request head is refused, or timed out before a handler ran:
#: "busy" (the global limit, nothing idle), "address" (the per-address limit),
#: "header_bytes", "header_fields", "header_timeout". ``Door.answer(kind, remote)`` turns
#: it into bytes; ``remote`` (``ip:port`` or "-") is for a door that logs a refused request.
Answer = Callable[[str, str], bytes]


@dataclass(eq=False, slots=True)
class Door:
    """One listener: its name in /metrics, its counters, its refusals' wire form."""

    name: str
    counters: ServerCounters
    answer: Answer


class Governed(Protocol):
    """What the governor asks of a connection (GW-KV's and the HTTP doors' classes)."""

    def idle_since(self) -> float | None:
        """Loop time since which nothing is in progress on it; None while busy."""

    def check_timeouts(self, now: float) -> None:
        """Close it (answering in its protocol) if a limit of ``Limits`` is exceeded."""

    def evict(self) -> None:
        """Close it now to make room (it was idle)."""


def address_key(peername: Any) -> str:
    """The client a connection counts against: an IPv4 address, an IPv6 /64 (a mapped
    IPv4 address is IPv4), or "" when there is no address (a Unix socket).

    >>> address_key(("192.0.2.7", 5000)), address_key(("2001:db8:1:2:3::4", 5000, 0, 0))
    ('192.0.2.7', '2001:db8:1:2::/64')
    >>> address_key(("::ffff:192.0.2.7", 1, 0, 0))
    '192.0.2.7'
    """
    if not isinstance(peername, tuple) or not peername:
        return ""
    host = str(peername[0])
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


def fd_capacity() -> int:
    """Client connections this process can hold: its descriptor limit (raised to the hard
    limit first, as nginx's ``worker_rlimit_nofile`` and Go's runtime do) minus a
    reserve for its own files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return max(16, soft - min(FD_RESERVE_MAX, soft // 4))


class Governor:
    """Admission, eviction and the timeout sweep for all connections of all doors."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        #: Admitted connections, each with its door and address key.
        self._conns: dict[Governed, tuple[Door, str]] = {}
        self._per_address: dict[str, int] = {}
        #: Closed to make room, not yet released: they no longer count against the limit.
        self._evicted: set[Governed] = set()
        self._candidates: list[tuple[float, int, Governed]] = []
        self._rescan_at = 0.0
        self._lingering = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._conns)

    # --- admission ------------------------------------------------------------------

    def admit(self, conn: Governed, door: Door, peername: Any) -> str | None:
        """Register ``conn``; None if it may stay, else why not ("busy", "address")."""
        key = address_key(peername)
        lim = self.limits
        per = lim.max_connections_per_ip
        if per and key and self._per_address.get(key, 0) >= per:
            door.counters.refused["address"] += 1
            return "address"
        if len(self._conns) - len(self._evicted) >= lim.max_connections and not self._evict():
            door.counters.refused["busy"] += 1
            return "busy"
        self._conns[conn] = (door, key)
        if key:
            self._per_address[key] = self._per_address.get(key, 0) + 1
        c = door.counters
        c.connections += 1
        c.connections_total += 1
        return None

    def release(self, conn: Governed) -> None:
        """Forget ``conn`` (its connection is gone); safe to call more than once."""
        entry = self._conns.pop(conn, None)
        if entry is None:
            return
        door, key = entry
        door.counters.connections -= 1
        self._evicted.discard(conn)
        if key:
            n = self._per_address[key] - 1
            if n:
                self._per_address[key] = n
            else:
                del self._per_address[key]

    def _evict(self) -> bool:
        """Close one idle connection to make room; False if none is idle."""
        now = self.loop.time()
        while True:
            if not self._candidates:
                if now < self._rescan_at:
                    return False
                self._scan(now)
                if not self._candidates:
                    self._rescan_at = now + EVICT_RESCAN
                    return False
            since, _, conn = heapq.heappop(self._candidates)
            entry = self._conns.get(conn)
            if entry is None or conn in self._evicted:
                continue
            idle = conn.idle_since()
            if idle is None or idle != since:  # busy again since the scan
                continue
            self._evicted.add(conn)
            entry[0].counters.evicted += 1
            conn.evict()
            return True

    def _scan(self, now: float) -> None:
        found: list[tuple[float, int, Governed]] = []
        for conn in self._conns:
            if conn in self._evicted:
                continue
            since = conn.idle_since()
            if since is not None and now - since >= EVICT_MIN_IDLE:
                found.append((since, id(conn), conn))
        self._candidates = heapq.nsmallest(EVICT_BATCH, found)
        heapq.heapify(self._candidates)

    def refuse(self, transport: asyncio.BaseTransport, answer: bytes | None) -> None:
        """Send ``answer`` (if any) and close, lingering half-closed so that it arrives."""
        t: Any = transport
        if answer and not t.is_closing():
            t.write(answer)
        if answer and self._lingering < MAX_LINGERING and t.can_write_eof():
            self._lingering += 1
            t.write_eof()

            def close() -> None:
                self._lingering -= 1
                t.close()

            self.loop.call_later(LINGER, close)
        else:
            t.close()

    # --- the sweep ------------------------------------------------------------------

    def start(self) -> None:
        lim = self.limits
        shortest = min(lim.header_timeout, lim.body_timeout, lim.idle_timeout)
        period = max(0.05, min(1.0, shortest / 4))

        def sweep() -> None:
            now = self.loop.time()
            for conn in list(self._conns):
                try:
                    conn.check_timeouts(now)
                except Exception:  # one broken connection must not stop the sweep
                    log.exception("timeout check failed")
            self._sweeper = self.loop.call_later(period, sweep)

        self._sweeper = self.loop.call_later(period, sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def clamp_connections(limits: Limits, capacity: int) -> Limits:
    """``limits`` with ``max_connections`` no higher than the descriptors allow, saying so."""
    if limits.max_connections <= capacity:
        return limits
    log.warning(
        "--max-connections %d is more than this process's file descriptors allow; "
        "using %d (raise `ulimit -n` / LimitNOFILE to allow more)",
        limits.max_connections,
        capacity,
    )
    return dataclasses.replace(limits, max_connections=capacity)
