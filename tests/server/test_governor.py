"""kvbox.server.governor: admission, per-address limits, eviction of idle connections.

Layer: tests/server. In process, with small in-memory connections that record what the
governor asked of them (the real doors are driven in tests/e2e/test_limits.py).
"""

from __future__ import annotations

import asyncio
import doctest
import resource
from typing import Any

import pytest

from kvbox.metrics import ServerCounters
from kvbox.server import governor as governor_module
from kvbox.server.governor import Door, Governor, Limits, clamp_connections, fd_capacity


class Conn:
    """A connection the governor can ask about: idle since ``idle`` (None: busy)."""

    def __init__(self, idle: float | None = None) -> None:
        self.idle = idle
        self.evicted = False
        self.checked: list[float] = []

    def idle_since(self) -> float | None:
        return None if self.evicted else self.idle

    def check_timeouts(self, now: float) -> None:
        self.checked.append(now)

    def evict(self) -> None:
        self.evicted = True


def _set_idle(conn: Conn, since: float | None) -> None:
    """Change a connection's state behind the governor's back (mypy: not a constant)."""
    conn.idle = since


def _door(name: str = "test") -> Door:
    return Door(name, ServerCounters(), lambda kind, remote: kind.encode())


def _peer(i: int) -> tuple[str, int]:
    return (f"192.0.2.{i}", 40000 + i)


async def test_global_limit_refuses_busy_connections() -> None:
    gov = Governor(Limits(max_connections=3, max_connections_per_ip=0))
    door = _door()
    conns = [Conn() for _ in range(3)]
    for i, c in enumerate(conns):
        assert gov.admit(c, door, _peer(i)) is None
    assert gov.admit(Conn(), door, _peer(9)) == "busy"
    assert door.counters.refused["busy"] == 1
    assert door.counters.connections == 3 and door.counters.connections_total == 3
    gov.release(conns[0])
    gov.release(conns[0])  # twice is harmless
    assert door.counters.connections == 2
    assert gov.admit(Conn(), door, _peer(9)) is None


async def test_per_address_limit_counts_ipv6_by_slash_64() -> None:
    gov = Governor(Limits(max_connections=100, max_connections_per_ip=2))
    door = _door()
    same = [(f"2001:db8:1:2::{i:x}", 1, 0, 0) for i in range(1, 4)]
    assert gov.admit(Conn(), door, same[0]) is None
    assert gov.admit(Conn(), door, same[1]) is None
    assert gov.admit(Conn(), door, same[2]) == "address"
    assert gov.admit(Conn(), door, ("2001:db8:1:3::1", 1, 0, 0)) is None  # another /64
    mapped = Conn()
    assert gov.admit(mapped, door, ("::ffff:192.0.2.1", 1, 0, 0)) is None
    assert gov.admit(Conn(), door, ("192.0.2.1", 1)) is None
    assert gov.admit(Conn(), door, ("192.0.2.1", 2)) == "address"  # mapped is the same client
    gov.release(mapped)
    assert gov.admit(Conn(), door, ("192.0.2.1", 2)) is None
    assert door.counters.refused["address"] == 2
    assert gov.admit(Conn(), door, None) is None  # no address (a Unix socket): not counted


async def test_eviction_closes_the_longest_idle_first() -> None:
    gov = Governor(Limits(max_connections=4, max_connections_per_ip=0))
    door = _door()
    now = gov.loop.time()
    busy = Conn(None)
    fresh = Conn(now)  # idle for less than EVICT_MIN_IDLE: kept
    old = Conn(now - 100)
    older = Conn(now - 200)
    for i, c in enumerate((busy, fresh, old, older)):
        assert gov.admit(c, door, _peer(i)) is None
    assert gov.admit(Conn(), door, _peer(10)) is None
    conns = (busy, fresh, old, older)
    assert [c.evicted for c in conns] == [False, False, False, True]
    assert gov.admit(Conn(), door, _peer(11)) is None
    assert [c.evicted for c in conns] == [False, False, True, True]
    assert door.counters.evicted == 2
    # Nothing idle long enough is left: refused, and no rescan for a moment.
    assert gov.admit(Conn(), door, _peer(12)) == "busy"
    _set_idle(fresh, now - 50)
    assert gov.admit(Conn(), door, _peer(13)) == "busy", "rescanned too soon"
    gov._rescan_at = 0.0
    assert gov.admit(Conn(), door, _peer(13)) is None and fresh.evicted


async def test_a_candidate_that_became_busy_is_skipped() -> None:
    gov = Governor(Limits(max_connections=2, max_connections_per_ip=0))
    door = _door()
    now = gov.loop.time()
    a, b = Conn(now - 100), Conn(now - 50)
    gov.admit(a, door, _peer(1))
    gov.admit(b, door, _peer(2))
    gov._scan(now)
    _set_idle(a, None)  # a request arrived after the scan
    assert gov.admit(Conn(), door, _peer(3)) is None
    assert b.evicted and not a.evicted


async def test_evicted_connections_do_not_count_until_released() -> None:
    gov = Governor(Limits(max_connections=1, max_connections_per_ip=0))
    door = _door()
    old = Conn(gov.loop.time() - 10)
    gov.admit(old, door, _peer(1))
    newcomer = Conn()
    assert gov.admit(newcomer, door, _peer(2)) is None
    assert len(gov) == 2  # the evicted one is closing; it is released on connection_lost
    gov.release(old)
    assert len(gov) == 1 and door.counters.connections == 1


async def test_sweep_checks_every_connection() -> None:
    gov = Governor(Limits(header_timeout=0.1, body_timeout=0.1, idle_timeout=0.1))
    conns = [Conn() for _ in range(3)]
    for i, c in enumerate(conns):
        gov.admit(c, _door(), _peer(i))
    gov.start()
    try:
        await asyncio.sleep(0.2)
    finally:
        gov.stop()
    assert all(c.checked for c in conns)


class _Transport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.eof = False
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.out += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True


async def test_refusal_lingers_half_closed_then_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(governor_module, "LINGER", 0.05)
    monkeypatch.setattr(governor_module, "MAX_LINGERING", 1)
    gov = Governor(Limits())
    first, second = _Transport(), _Transport()
    t: Any = first
    gov.refuse(t, b"ERR BUSY\n")
    t = second
    gov.refuse(t, b"ERR BUSY\n")  # over MAX_LINGERING: written and closed at once
    assert first.out == second.out == b"ERR BUSY\n"
    assert first.eof and not first.closed
    assert second.closed and not second.eof
    await asyncio.sleep(0.1)
    assert first.closed


async def test_clamp_to_descriptors(caplog: pytest.LogCaptureFixture) -> None:
    lim = Limits(max_connections=50_000)
    assert clamp_connections(lim, 1_000).max_connections == 1_000
    assert "more than this process's file descriptors allow" in caplog.text
    assert clamp_connections(Limits(max_connections=10), 1_000).max_connections == 10


def test_fd_capacity_leaves_a_reserve() -> None:
    cap = fd_capacity()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 16 <= cap < soft


def test_doctests() -> None:
    assert doctest.testmod(governor_module).failed == 0
