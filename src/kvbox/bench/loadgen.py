"""``kvbox loadgen``: a steady SET/GET load at a target rate, for client pods and soak tests.

Layer: bench (I/O). Rules: runs until ``duration`` or a stop signal, so nothing in it may
grow with run time: latency samples are summarized and dropped every report interval, the
requests in flight are capped (``max_in_flight``), and the ack log is appended, never held.

Shape: one TCP connection, requests pipelined on it in schedule order. The schedule is
open-loop: operation *n* is due at ``start + n / rate`` whatever the replies are doing, so a
slow server shows up as latency rather than as a quietly lower rate (closed-loop generators
"coordinate" with the server and hide stalls). Replies arrive in request order (GW-KV
guarantees it), so a FIFO of what was sent pairs each reply with its request.

When the connection fails, every request in flight counts as failed (its outcome is unknown:
a SET may or may not have been applied), the generator reconnects with capped exponential
backoff and jitter, and the schedule restarts from the reconnect instead of bursting the
backlog into a server that just came back.

Ack log (``--ack-log FILE``): one line per acknowledged SET, appended when its ``OK`` arrives,
``<key> <version> <sha256 of value, hex>``. Every line names a write the server promised
was durable; a checker can kill the server, restart it, and require for each key that the
newest version is at least the last acknowledged one (version ids sort by time) and, when
it is that one, that the value's hash matches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

from kvbox.auth.gwkv import prove
from kvbox.bench.stats import NS_PER_MS, RunningWindow, percentile
from kvbox.bench.workload import encode_get, encode_set, key_name, make_value
from kvbox.proto.gwkv import MAX_KEY, MAX_TEXT_VALUE, encode_auth

LogFormat = Literal["plain", "json"]

#: Longest wait between reconnect attempts: short enough to notice a restarted server fast.
BACKOFF_MAX_S = 5.0
BACKOFF_INITIAL_S = 0.1
#: A request without a reply for this long means the connection is dead (or the server
#: stuck); the connection is dropped and its requests count as failed.
REQUEST_TIMEOUT_S = 10.0
#: Requests sent in one write at most, and the scheduler's shortest sleep: above ~1,000
#: ops/s requests go out in small batches rather than one wake-up each.
MAX_BATCH = 256
MIN_SLEEP_S = 0.001
#: If the schedule falls this far behind (the generator itself is too slow), skip ahead
#: rather than burst; the skipped operations are reported as ``lagged``.
MAX_LAG_S = 1.0
#: Seconds a stop waits for the replies still in flight, so their acks are logged.
DRAIN_S = 2.0


@dataclass(frozen=True, slots=True)
class LoadgenConfig:
    host: str = "127.0.0.1"
    port: int = 7070
    rate: float = 100.0
    duration_s: float | None = None
    keys: int = 1000
    value_size: int = 100
    set_ratio: float = 0.5
    report_every_s: float = 5.0
    key_prefix: str = "lg"
    log_format: LogFormat = "plain"
    ack_log: Path | None = None
    max_in_flight: int = 1000
    connect_timeout_s: float = 5.0
    seed: int | None = None
    #: GW-KV AUTH on every connection (a server with --kv-auth); the secret never shows.
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be positive")
        if self.keys < 1:
            raise ValueError("keys must be >= 1")
        if self.value_size < 0:
            raise ValueError("value size must be >= 0")
        if not 0.0 <= self.set_ratio <= 1.0:
            raise ValueError("set ratio must be between 0 and 1")
        if self.report_every_s <= 0:
            raise ValueError("report interval must be positive")
        if self.key_prefix and not (self.key_prefix.isascii() and self.key_prefix.isalnum()):
            raise ValueError("key prefix must be letters and digits")
        if len(key_name(self.key_prefix, self.keys - 1)) > MAX_KEY:
            raise ValueError(f"key prefix too long: keys must be at most {MAX_KEY} bytes")
        if self.log_format not in ("plain", "json"):
            raise ValueError("log format must be plain or json")
        if self.max_in_flight < 1:
            raise ValueError("max in flight must be >= 1")
        if (self.access_key is None) != (self.secret_key is None) or self.secret_key == "":
            raise ValueError("an access key needs its secret key (and the other way round)")

    @property
    def binary(self) -> bool:
        return self.value_size > MAX_TEXT_VALUE


@dataclass(slots=True)
class _Pending:
    """One request in flight: what to do with its reply."""

    is_set: bool
    key: bytes
    sha: str  # hex sha256 of the value (SET only)
    sent_ns: int


class Totals:
    """Counters over the whole run (the per-interval ones live in a RunningWindow)."""

    __slots__ = (
        "acked_sets", "connect_failures", "errors", "gets", "lagged", "notfound", "ops",
        "reconnects", "sets",
    )  # fmt: skip

    def __init__(self) -> None:
        self.ops = 0  # replies that were successes (OK / VALUE / NOTFOUND)
        self.sets = 0
        self.gets = 0
        self.notfound = 0
        self.acked_sets = 0
        self.errors = 0  # ERR replies + requests lost with a connection
        self.reconnects = 0
        self.connect_failures = 0
        self.lagged = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Conn(asyncio.Protocol):
    """The connection's reply side: pairs replies with the FIFO of pending requests."""

    def __init__(self, gen: LoadGenerator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.inflight: collections.deque[_Pending] = collections.deque()
        self.buf = b""
        self.skip = 0  # bytes of a BGET body (+ LF) still to skip
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: While AUTH runs (before any request is sent), reply lines go here instead.
        self.greeting: asyncio.Queue[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if self.greeting is not None:
            *lines, self.buf = data.split(b"\n")
            for line in lines:
                self.greeting.put_nowait(line)
            return
        pos, end = 0, len(data)
        now = time.perf_counter_ns()
        while pos < end:
            if self.skip:
                take = min(self.skip, end - pos)
                pos += take
                self.skip -= take
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self.buf = data[pos:]
                break
            line = data[pos:nl]
            pos = nl + 1
            if not self.inflight:
                self.gen.protocol_error(f"reply with no request: {line[:80]!r}")
                self.close()
                return
            req = self.inflight.popleft()
            if line.startswith(b"VALUE ") and self.gen.config.binary:
                parts = line.split(b" ")
                if len(parts) == 3 and parts[1].isdigit():
                    self.skip = int(parts[1]) + 1
            self.gen.on_reply(req, line, now - req.sent_ns)
        self.gen.flush_acks()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LoadGenerator:
    """Schedules operations, keeps one connection up, logs a report each interval."""

    def __init__(self, config: LoadgenConfig, out: IO[str] | None = None) -> None:
        self.config = config
        self.out = out if out is not None else sys.stdout
        self.rng = random.Random(config.seed)
        self.base_value = make_value(config.value_size, self.rng.randrange(1 << 30))
        self.totals = Totals()
        self.window = RunningWindow()
        self.window_errors = 0
        self.conn: _Conn | None = None
        self.seq = 0
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self._ack_file: IO[str] | None = None
        self._ack_dirty = False
        self._last_report = self.started

    # --- replies --------------------------------------------------------------------

    def on_reply(self, req: _Pending, line: bytes, latency_ns: int) -> None:
        t = self.totals
        if line.startswith(b"OK") and req.is_set:
            version = line[3:].decode("ascii", "replace")
            t.ops += 1
            t.sets += 1
            t.acked_sets += 1
            self.window.add(latency_ns)
            if self._ack_file is not None:
                self._ack_file.write(f"{req.key.decode()} {version} {req.sha}\n")
                self._ack_dirty = True
        elif line.startswith(b"VALUE ") and not req.is_set:
            t.ops += 1
            t.gets += 1
            self.window.add(latency_ns)
        elif line == b"NOTFOUND" and not req.is_set:
            t.ops += 1
            t.gets += 1
            t.notfound += 1
            self.window.add(latency_ns)
        else:
            t.errors += 1
            self.window_errors += 1
            self.log_event("error reply", reply=line[:200].decode("ascii", "replace"))

    def flush_acks(self) -> None:
        if self._ack_dirty and self._ack_file is not None:
            self._ack_file.flush()
            self._ack_dirty = False

    def protocol_error(self, message: str) -> None:
        self.totals.errors += 1
        self.window_errors += 1
        self.log_event("protocol error", detail=message)

    # --- requests ---------------------------------------------------------------------

    def _next_request(self, now_ns: int) -> tuple[bytes, _Pending]:
        cfg = self.config
        key = key_name(cfg.key_prefix, self.rng.randrange(cfg.keys))
        if self.rng.random() < cfg.set_ratio:
            self.seq += 1
            # a value unique to this write, so the ack log's hash names exactly one write
            stamp = b"%012d" % self.seq
            value = (stamp + self.base_value[len(stamp) :])[: cfg.value_size]
            sha = hashlib.sha256(value).hexdigest()
            return encode_set(key, value), _Pending(True, key, sha, now_ns)
        return encode_get(key, cfg.binary), _Pending(False, key, "", now_ns)

    def _send(self, conn: _Conn, count: int) -> None:
        now = time.perf_counter_ns()
        chunks: list[bytes] = []
        for _ in range(count):
            data, pending = self._next_request(now)
            chunks.append(data)
            conn.inflight.append(pending)
        assert conn.transport is not None
        conn.transport.write(b"".join(chunks))

    # --- connection -------------------------------------------------------------------

    async def _connect(self) -> _Conn | None:
        """Connect, retrying with backoff until connected or stopping."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        delay = BACKOFF_INITIAL_S
        while not self.stopping.is_set():
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: _Conn(self), cfg.host, cfg.port),
                    cfg.connect_timeout_s,
                )
                if cfg.access_key is not None and cfg.secret_key is not None:
                    await asyncio.wait_for(
                        self._authenticate(proto, cfg.access_key, cfg.secret_key),
                        cfg.connect_timeout_s,
                    )
                return proto
            except (OSError, TimeoutError) as exc:
                self.totals.connect_failures += 1
                wait = delay * (0.5 + self.rng.random() / 2)
                self.log_event("connect failed", error=str(exc) or type(exc).__name__,
                               retry_in_s=round(wait, 3))  # fmt: skip
                delay = min(BACKOFF_MAX_S, delay * 2)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
        return None

    async def _authenticate(self, conn: _Conn, access_key: str, secret_key: str) -> None:
        """GW-KV AUTH's challenge-response before the first request (docs/protocol.md
        §5); a refusal is a failed connection, retried with backoff like any other."""
        assert conn.transport is not None
        greeting = conn.greeting = asyncio.Queue()
        try:
            conn.transport.write(encode_auth(access_key))
            nonce = (await greeting.get()).removeprefix(b"OK ")
            proof = prove(secret_key, access_key, nonce.decode("ascii", "replace"))
            conn.transport.write(encode_auth(access_key, nonce.decode("ascii", "replace"), proof))
            answer = await greeting.get()
        finally:
            conn.greeting = None
        if not answer.startswith(b"OK "):
            conn.close()
            raise ConnectionRefusedError(f"AUTH refused: {answer[:120].decode(errors='replace')}")

    def _drop(self, conn: _Conn, reason: str) -> None:
        lost = len(conn.inflight)
        conn.inflight.clear()
        self.totals.errors += lost
        self.window_errors += lost
        conn.close()
        self.log_event("connection lost", reason=reason, requests_failed=lost)

    # --- main loop --------------------------------------------------------------------

    async def run(self) -> Totals:
        cfg = self.config
        if cfg.ack_log is not None:
            self._ack_file = open(cfg.ack_log, "a", encoding="ascii")  # noqa: SIM115
        self.log_event(
            "start", server=f"{cfg.host}:{cfg.port}", rate=cfg.rate, keys=cfg.keys,
            value_size=cfg.value_size, set_ratio=cfg.set_ratio,
        )  # fmt: skip
        reporter = asyncio.create_task(self._report_loop())
        try:
            if cfg.duration_s is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drive(), cfg.duration_s)
            else:
                await self._drive()
        finally:
            self.stopping.set()
            await self._drain()
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            self.report(final=True)
            if self.conn is not None:
                self.conn.close()
            if self._ack_file is not None:
                self._ack_file.close()
        return self.totals

    async def _drive(self) -> None:
        cfg = self.config
        interval = 1.0 / cfg.rate
        first = True
        while not self.stopping.is_set():
            conn = await self._connect()
            if conn is None:
                return
            if not first:
                self.totals.reconnects += 1
                self.log_event("reconnected", reconnects=self.totals.reconnects)
            first = False
            self.conn = conn
            reason = await self._pump(conn, interval)
            if reason is not None and not self.stopping.is_set():
                self._drop(conn, reason)
                self.conn = None

    async def _pump(self, conn: _Conn, interval: float) -> str | None:
        """Send on schedule until the connection fails (its reason) or a stop (None)."""
        cfg = self.config
        next_t = time.monotonic()
        while not self.stopping.is_set():
            if conn.lost.done():
                return "server closed the connection"
            now = time.monotonic()
            if conn.inflight and (
                time.perf_counter_ns() - conn.inflight[0].sent_ns > REQUEST_TIMEOUT_S * 1e9
            ):
                return f"no reply within {REQUEST_TIMEOUT_S:g} s"
            if now - next_t > MAX_LAG_S:
                skipped = int((now - next_t) / interval)
                self.totals.lagged += skipped
                next_t += skipped * interval
            if now >= next_t:
                due = int((now - next_t) / interval) + 1
                room = cfg.max_in_flight - len(conn.inflight)
                count = min(due, room, MAX_BATCH)
                if count > 0:
                    self._send(conn, count)
                    next_t += count * interval
            # short sleeps: a lost connection or a stop is noticed within 0.1 s at any rate
            await asyncio.sleep(min(0.1, max(MIN_SLEEP_S, next_t - time.monotonic())))
        return None

    async def _drain(self) -> None:
        """After a stop: give replies in flight a moment so their acks are logged."""
        conn = self.conn
        if conn is None or conn.lost.done():
            return
        deadline = time.monotonic() + DRAIN_S
        while conn.inflight and not conn.lost.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if conn.inflight:
            self._drop(conn, "stopped with replies outstanding")

    # --- reporting --------------------------------------------------------------------

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.report_every_s)
            self.report()

    def report(self, final: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        span = max(1e-9, now - self._last_report)
        w = self.window
        ordered = sorted(w.samples)
        fields: dict[str, Any] = {
            "elapsed_s": round(now - self.started, 3),
            "ops": w.ops,
            "ops_per_s": round(w.ops / span, 1),
            "p50_ms": round(percentile(ordered, 50) / NS_PER_MS, 3) if ordered else None,
            "p99_ms": round(percentile(ordered, 99) / NS_PER_MS, 3) if ordered else None,
            "errors": self.window_errors,
            "reconnects": self.totals.reconnects,
            "connected": self.conn is not None and not self.conn.lost.done(),
            "total": self.totals.as_dict(),
        }
        self.window.reset()
        self.window_errors = 0
        self._last_report = now
        self.log_event("final" if final else "report", **fields)
        return fields

    def log_event(self, event: str, **fields: Any) -> None:
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        if self.config.log_format == "json":
            line = json.dumps({"ts": ts, "event": event, **fields}, separators=(",", ":"))
        else:
            parts = []
            for name, value in fields.items():
                if name == "total":
                    value = " ".join(f"{k}={v}" for k, v in value.items() if v)
                    parts.append(f"[total {value}]")
                    continue
                parts.append(f"{name}={'-' if value is None else value}")
            line = f"{ts} kvbox loadgen: {event} " + " ".join(parts)
        print(line, file=self.out, flush=True)


def run(config: LoadgenConfig, out: IO[str] | None = None) -> Totals:
    """Run a load generator until its duration ends or SIGTERM/SIGINT; returns the totals."""

    async def main() -> Totals:
        gen = LoadGenerator(config, out)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gen.stopping.set)
        try:
            return await gen.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(main())
    result: Totals = uvloop.run(main())
    return result
