"""One benchmark worker process: an event loop driving its share of the clients.

Layer: bench (I/O). Rules: one process runs one (uv)loop and never shares Python objects
with the others; it talks to the runner only through the synchronisation primitives and the
result queue it is given, and returns plain data (latencies as packed bytes) so results
pickle cheaply. Every loop is bounded: each client does a fixed number of operations, and
the whole measured phase is cut at the run's deadline.

Two shapes, as issue 2 §6 defines them:

* ``conn``: each operation opens a connection, writes one request, reads one reply and
  closes. Its latency runs from just before the connect to the close, as the course
  measured it.
* ``persistent``: each client keeps one connection and writes ``pipeline`` requests in one
  ``write``, then waits for all their replies (redis-benchmark's ``-P``). A request's
  latency runs from that write to the arrival of the bytes that completed its reply.

The hot loops use asyncio protocols rather than streams, and pre-encoded requests
(``workload``) rather than the client library: a stream read plus an event object per reply
would make the load generator, not the server, the thing being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import resource
import socket
import time
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from kvbox.bench.workload import ReplyScanner, Workload, batch_pool, request_pool

Mode = Literal["conn", "persistent"]
MODES: tuple[Mode, ...] = ("conn", "persistent")

#: How often a worker publishes its counters for the runner's progress line.
PUBLISH_INTERVAL_S = 0.1
#: Reconnect attempts of one persistent client before it gives up for the run.
MAX_RECONNECTS = 3
#: How long a ready worker waits for the start signal before giving up.
SETUP_WAIT_S = 120.0
#: Linux's IP_BIND_ADDRESS_NO_PORT (not in Python's socket module): bind an address but
#: leave picking the port to connect(), which checks the whole 4-tuple.
_IP_BIND_ADDRESS_NO_PORT = 24


def source_address(worker: int, client: int) -> str:
    """The loopback address client ``client`` of worker ``worker`` connects from in
    ``conn`` mode (every 127.0.0.0/8 address is local on Linux).

    Why: one request per connection leaves a socket in TIME_WAIT per request, on the
    client side. From one source address, tens of thousands of them crowd the 28,000
    ephemeral ports, and each ``connect()`` then searches for a free one: measured here,
    83 % of the load generator's time went to ``connect()``, which capped it at about
    14,600 connections/s whatever the server. A source address per client gives each
    its own port space: the same generator then reaches about 25,000/s against
    ``bench/bare_server.py`` at half the CPU per connection. The server's work per
    connection is the same either way.
    """
    return f"127.{1 + worker % 254}.{client // 250}.{1 + client % 250}"


def _spread_sources(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.version == 4 and addr.is_loopback


class EventLike(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...


class ValueLike(Protocol):
    value: float


class ArrayLike(Protocol):
    def __getitem__(self, index: int) -> int: ...
    def __setitem__(self, index: int, value: int) -> None: ...


class SenderLike(Protocol):
    def send(self, obj: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Shared:
    """The runner's synchronisation primitives, as one worker sees them.

    ``ready[index]`` is set once the worker is connected and warm; ``go`` releases every
    worker at once; ``t0`` is the runner's ``perf_counter`` at that moment (CLOCK_MONOTONIC,
    the same clock in every process) so time bins line up across workers; ``counters``
    holds (replies, errors) per worker for the progress line.
    """

    go: EventLike
    t0: ValueLike
    ready: ArrayLike
    counters: ArrayLike


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker process does; built by the runner, pickled to the child."""

    index: int
    host: str
    port: int
    mode: Mode
    pipeline: int
    client_ops: tuple[int, ...]  # operations per client of this worker
    warmup_ops: int  # unmeasured operations per client before the start signal
    workload: Workload
    seed: int
    timeout_s: float
    bin_s: float
    connect_timeout_s: float = 5.0
    #: ``conn`` mode to a 127.x address: each client connects from its own loopback
    #: address (``source_address``).
    spread_sources: bool = True


@dataclass(slots=True)
class WorkerResult:
    """What one worker measured, as plain picklable data."""

    index: int
    ok: int = 0
    misses: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_ns: bytes = b""  # array('q') packed
    set_latencies_ns: bytes = b""  # the SET replies' among them
    bins: list[int] = field(default_factory=list)
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    elapsed_s: float = 0.0
    timed_out: bool = False
    setup_error: str | None = None

    @property
    def replies(self) -> int:
        return self.ok + self.misses + self.errors

    def latencies(self) -> array[int]:
        samples: array[int] = array("q")
        samples.frombytes(self.latencies_ns)
        return samples

    def set_latencies(self) -> array[int]:
        samples: array[int] = array("q")
        samples.frombytes(self.set_latencies_ns)
        return samples


class _Recorder:
    """Latency samples and completions per time bin for one worker, shared by its clients."""

    __slots__ = ("bin_ns", "bins", "enabled", "samples", "set_samples", "t0_ns")

    def __init__(self, bin_s: float) -> None:
        self.bin_ns = max(1, int(bin_s * 1e9))
        self.t0_ns = 0
        self.bins: list[int] = []
        self.samples: array[int] = array("q")
        #: The latencies of SET replies, also in ``samples`` (a mix plots GET and SET apart).
        self.set_samples: array[int] = array("q")
        self.enabled = False

    def record(self, latency_ns: int, replies: int, now_ns: int, sets: int = 0) -> None:
        if not self.enabled:
            return
        if replies == 1:
            self.samples.append(latency_ns)
        else:
            self.samples.extend([latency_ns] * replies)
        if sets:
            self.set_samples.extend([latency_ns] * sets)
        b = (now_ns - self.t0_ns) // self.bin_ns
        bins = self.bins
        if b >= len(bins):
            bins.extend([0] * (b + 1 - len(bins)))
        bins[b] += replies


class _Client:
    """Per-client counters: one reply scanner (its buffer is reset per connection)."""

    __slots__ = ("conn_error_samples", "conn_errors", "scanner")

    def __init__(self, workload: Workload) -> None:
        self.scanner = ReplyScanner(binary=workload.binary, expect_len=workload.value_size)
        self.conn_errors = 0
        self.conn_error_samples: list[str] = []

    def connection_failed(self, exc: BaseException, requests: int = 1) -> None:
        self.conn_errors += requests
        if len(self.conn_error_samples) < 3:
            self.conn_error_samples.append(f"{type(exc).__name__}: {exc}"[:200])
        self.scanner.reset()

    def clear(self) -> None:
        self.scanner.reset()
        self.scanner.clear_counts()
        self.conn_errors = 0
        self.conn_error_samples = []

    @property
    def replies(self) -> int:
        s = self.scanner
        return s.ok + s.misses + s.errors + self.conn_errors

    @property
    def errors(self) -> int:
        return self.scanner.errors + self.conn_errors


class _OneShot(asyncio.Protocol):
    """One request per connection: write on connect, resolve ``done`` at the reply."""

    __slots__ = ("client", "done", "request")

    def __init__(self, request: bytes, client: _Client, done: asyncio.Future[None]) -> None:
        self.request = request
        self.client = client
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.client.scanner.feed(data) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(
                exc if isinstance(exc, OSError) else ConnectionResetError("connection lost")
            )


class _Pipelined(asyncio.Protocol):
    """A persistent connection with one batch of requests in flight at a time."""

    def __init__(self, client: _Client, recorder: _Recorder) -> None:
        self.client = client
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.outstanding = 0
        self.sent_ns = 0
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def send(self, batch: bytes, count: int) -> asyncio.Future[None]:
        assert self.transport is not None
        self.outstanding = count
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(batch)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        scanner = self.client.scanner
        sets = scanner.sets
        done = scanner.feed(data)
        if done:
            now = time.perf_counter_ns()
            self.recorder.record(now - self.sent_ns, done, now, scanner.sets - sets)
            self.outstanding -= done
            if self.outstanding <= 0 and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc if isinstance(exc, OSError) else ConnectionResetError("connection lost")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.recorder = _Recorder(spec.bin_s)
        self.clients = [_Client(spec.workload) for _ in spec.client_ops]
        self.conns: list[_Pipelined | None] = [None] * len(spec.client_ops)
        self.spread = spec.mode == "conn" and spec.spread_sources and _spread_sources(spec.host)
        total_ops = sum(spec.client_ops) + spec.warmup_ops * len(spec.client_ops)
        if spec.mode == "conn":
            self.pool = request_pool(spec.workload, total_ops, spec.seed)
        else:
            self.pool = batch_pool(spec.workload, -(-total_ops // spec.pipeline), spec.pipeline,
                                   spec.seed)  # fmt: skip

    # --- connections ------------------------------------------------------------------

    async def _connect(self, i: int) -> _Pipelined | None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        client = self.clients[i]
        for attempt in range(MAX_RECONNECTS + 1):
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Pipelined(client, self.recorder), spec.host, spec.port
                    ),
                    spec.connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                client.connection_failed(exc, requests=0)
                await asyncio.sleep(0.05 * 2**attempt)
                continue
            self.conns[i] = proto
            return proto
        return None

    async def open_all(self) -> None:
        if self.spec.mode == "persistent":
            await asyncio.gather(*(self._connect(i) for i in range(len(self.clients))))

    def close_all(self) -> None:
        for proto in self.conns:
            if proto is not None and proto.transport is not None:
                proto.transport.close()

    # --- clients ------------------------------------------------------------------------

    async def _conn_client(self, i: int, ops: int, offset: int) -> None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        client = self.clients[i]
        pool = self.pool
        size = len(pool)
        record = self.recorder.record
        host, port = spec.host, spec.port
        perf = time.perf_counter_ns
        source = source_address(spec.index, i) if self.spread else None
        for n in range(ops):
            request = pool[(offset + n) % size]
            done: asyncio.Future[None] = loop.create_future()
            t = perf()
            try:
                sock = await self._connect_from(source) if source is not None else None
                if sock is None:
                    source = None  # can't bind it here: connect the usual way from now on
                if sock is not None:
                    transport, _ = await loop.create_connection(
                        lambda r=request, d=done: _OneShot(r, client, d),  # type: ignore[misc]
                        sock=sock,
                    )
                else:
                    transport, _ = await loop.create_connection(
                        lambda r=request, d=done: _OneShot(r, client, d),  # type: ignore[misc]
                        host,
                        port,
                    )
                try:
                    await done
                finally:
                    transport.close()
            except OSError as exc:
                client.connection_failed(exc)
                continue
            now = perf()
            record(now - t, 1, now, request.startswith(b"SET "))

    async def _connect_from(self, source: str) -> socket.socket | None:
        """A socket connected to the server from ``source``; None if that address
        can't be bound here (a system where only 127.0.0.1 is local)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            try:
                sock.bind((source, 0))
            except OSError:
                sock.close()
                return None
            await asyncio.get_running_loop().sock_connect(sock, (self.spec.host, self.spec.port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _persistent_client(self, i: int, ops: int, offset: int) -> None:
        pipeline = self.spec.pipeline
        pool = self.pool
        size = len(pool)
        client = self.clients[i]
        proto = self.conns[i]
        reconnects = 0
        for n in range(-(-ops // pipeline)):
            if proto is None or proto.lost is not None:
                if reconnects >= MAX_RECONNECTS:
                    return
                reconnects += 1
                proto = await self._connect(i)
                if proto is None:
                    return
            try:
                await proto.send(pool[(offset + n) % size], pipeline)
            except OSError as exc:
                client.connection_failed(exc, requests=proto.outstanding)
                proto = None

    def _client_coros(self, ops_of: Callable[[int], int]) -> list[Coroutine[Any, Any, None]]:
        size = len(self.pool)
        stride = max(1, size // max(1, len(self.clients)))
        run = self._conn_client if self.spec.mode == "conn" else self._persistent_client
        return [run(i, ops_of(i), (i * stride) % size) for i in range(len(self.clients))]

    async def warmup(self) -> None:
        """The unmeasured operations, bounded by the run's timeout like the measured ones."""
        if self.spec.warmup_ops > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._client_coros(lambda _i: self.spec.warmup_ops)),
                    self.spec.timeout_s,
                )
            for c in self.clients:
                c.clear()

    async def measured(self, t0_ns: int, deadline: float) -> bool:
        """Run every client's share; True if the deadline cut the run short."""
        self.recorder.t0_ns = t0_ns
        self.recorder.enabled = True
        try:
            await asyncio.wait_for(
                asyncio.gather(*self._client_coros(lambda i: self.spec.client_ops[i])),
                max(0.001, deadline - time.monotonic()),
            )
        except TimeoutError:
            return True
        finally:
            self.recorder.enabled = False
        return False

    async def publish(self, progress: ArrayLike, parent_pid: int) -> None:
        """Publish counters for the progress line; stop everything if the runner died."""
        base = 2 * self.spec.index
        while True:
            progress[base] = sum(c.replies for c in self.clients)
            progress[base + 1] = sum(c.errors for c in self.clients)
            if os.getppid() != parent_pid:
                # an orphan would load the server until its deadline: end it now
                os._exit(3)
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    def result(self) -> WorkerResult:
        res = WorkerResult(index=self.spec.index)
        for c in self.clients:
            s = c.scanner
            res.ok += s.ok
            res.misses += s.misses
            res.errors += s.errors + c.conn_errors
            res.error_samples.extend(s.error_samples + c.conn_error_samples)
        res.error_samples = res.error_samples[:10]
        res.latencies_ns = self.recorder.samples.tobytes()
        res.set_latencies_ns = self.recorder.set_samples.tobytes()
        res.bins = self.recorder.bins
        return res


class ParentGone(Exception):
    """The runner died: a worker must not go on loading the server on its own."""


def _check_parent(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        raise ParentGone("the benchmark runner exited")


async def _run(spec: WorkerSpec, shared: Shared, parent_pid: int) -> WorkerResult:
    worker = _Worker(spec)
    await worker.open_all()
    await worker.warmup()
    # Connected and warm: say so, then wait for the start signal, polling so that a dead
    # runner or a start that never comes ends this process. Blocking the loop here is fine:
    # nothing is in flight.
    shared.ready[spec.index] = 1
    give_up = time.monotonic() + SETUP_WAIT_S
    while not shared.go.wait(0.2):
        _check_parent(parent_pid)
        if time.monotonic() > give_up:
            raise TimeoutError("no start signal from the benchmark runner")
    publisher = asyncio.create_task(worker.publish(shared.counters, parent_pid))
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = time.monotonic() + spec.timeout_s
    try:
        timed_out = await worker.measured(int(shared.t0.value * 1e9), deadline)
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    _check_parent(parent_pid)
    worker.close_all()
    res = worker.result()
    res.cpu_user_s = after.ru_utime - before.ru_utime
    res.cpu_sys_s = after.ru_stime - before.ru_stime
    res.elapsed_s = elapsed
    res.timed_out = timed_out
    base = 2 * spec.index
    shared.counters[base] = res.replies
    shared.counters[base + 1] = res.errors
    return res


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def worker_main(spec: WorkerSpec, shared: Shared, results: SenderLike) -> None:
    """Process entry point: run the worker and send exactly one WorkerResult back.

    ``results`` is the write end of a pipe only this worker holds, so if the runner dies
    the send fails instead of blocking forever.
    """
    parent_pid = os.getppid()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            res = runner.run(_run(spec, shared, parent_pid))
    except ParentGone:
        os._exit(3)
    except BaseException as exc:  # report it; never leave the runner waiting
        res = WorkerResult(index=spec.index, setup_error=f"{type(exc).__name__}: {exc}")
    try:
        results.send(res)
    except OSError:
        os._exit(3)  # the runner is gone
