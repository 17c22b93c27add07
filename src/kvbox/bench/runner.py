"""The benchmark runner: splits the clients over worker processes and merges what they saw.

Layer: bench (orchestration). Rules: the runner does no load itself; it prepares the server
(populate), starts ``procs`` worker processes (spawned, so no state leaks from the parent),
waits until every worker is connected and warm, snapshots the server's CPU (INFO), releases
all workers at once, prints a progress line per second, and merges the results. Every wait
is bounded: the run stops at ``timeout_s`` and a worker that does not report in time is
terminated.

Why several processes: one Python process driving sockets tops out around 10-20 thousand
requests per second, below what the server may do; with one (uv)loop per core the load
generator gets as close as the machine allows, and its own CPU use is reported so a reader
can see when the client, not the server, was the bottleneck.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import os
import platform
import socket
import sys
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import IO, Any, cast

from kvbox import __version__
from kvbox.bench import serverinfo
from kvbox.bench.stats import (
    LatencySummary,
    log_histogram,
    merge_bins,
    split_by_op,
    summarize,
    timeline,
)
from kvbox.bench.worker import MODES, Mode, Shared, WorkerResult, WorkerSpec, worker_main
from kvbox.bench.workload import Workload

#: Width of a throughput-over-time bin.
BIN_S = 0.1
#: Share of --ops each client runs unmeasured first when --warmup is given.
WARMUP_SHARE = 0.1
#: Time allowed for spawning workers and opening their connections.
SETUP_TIMEOUT_S = 60.0
#: Time a worker gets past the deadline to report before it is terminated.
REPORT_GRACE_S = 15.0


class BenchError(Exception):
    """The benchmark could not run (server unreachable, workers failed to start)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    host: str = "127.0.0.1"
    port: int = 7070
    clients: int = 50
    ops: int = 10_000
    mode: Mode = "persistent"
    pipeline: int = 1
    procs: int = 2
    workload: Workload = field(default_factory=Workload)
    warmup: bool = False
    populate: bool | None = None  # None: populate when the run reads (get, mix)
    timeout_s: float = 300.0
    seed: int = 1
    #: ``conn`` mode to a 127.x server: one loopback source address per client
    #: (``worker.source_address`` says why).
    spread_sources: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        for name in ("clients", "ops", "pipeline", "procs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.mode == "conn" and self.pipeline != 1:
            raise ValueError("pipelining needs persistent connections (--mode persistent)")
        if self.timeout_s <= 0:
            raise ValueError("timeout must be positive")

    @property
    def unit(self) -> int:
        """Operations a client does per round trip."""
        return self.pipeline if self.mode == "persistent" else 1


@dataclass(slots=True)
class BenchReport:
    """Everything one run measured. ``as_json()`` is what ``--json`` writes."""

    config: BenchConfig
    started_at: str
    elapsed_s: float
    replies: int
    ok: int
    misses: int
    errors: int
    latency: LatencySummary | None
    bins: list[int]
    server_before: serverinfo.CpuSnapshot | None
    server_after: serverinfo.CpuSnapshot | None
    client_cpu_user_s: float
    client_cpu_sys_s: float
    timed_out: bool
    error_samples: list[str]
    populated_keys: int
    samples_ns: array[int] = field(repr=False, default_factory=lambda: array("q"))
    #: The SET replies' latencies (also in ``samples_ns``): GETs are the rest.
    set_samples_ns: array[int] = field(repr=False, default_factory=lambda: array("q"))

    @property
    def throughput(self) -> float:
        return self.replies / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def server_cpu_s(self) -> float | None:
        if self.server_before is None or self.server_after is None:
            return None
        return self.server_after.cpu_s - self.server_before.cpu_s

    @property
    def server_requests(self) -> int | None:
        if self.server_before is None or self.server_after is None:
            return None
        return self.server_after.requests - self.server_before.requests

    @property
    def server_cpu_us_per_request(self) -> float | None:
        cpu, reqs = self.server_cpu_s, self.server_requests
        if cpu is None or not reqs:
            return None
        return cpu / reqs * 1e6

    @property
    def client_cpu_us_per_op(self) -> float | None:
        if not self.replies:
            return None
        return (self.client_cpu_user_s + self.client_cpu_sys_s) / self.replies * 1e6

    def as_json(self) -> dict[str, Any]:
        cfg = self.config
        server: dict[str, Any] = {"reported": self.server_cpu_s is not None}
        if self.server_before is not None and self.server_after is not None:
            cpu_s = self.server_after.cpu_s - self.server_before.cpu_s
            server.update(
                cpu_user_s=self.server_after.cpu_user_s - self.server_before.cpu_user_s,
                cpu_sys_s=self.server_after.cpu_sys_s - self.server_before.cpu_sys_s,
                cpu_s=cpu_s,
                requests=self.server_requests,
                cpu_us_per_request=self.server_cpu_us_per_request,
                cpu_us_per_op=cpu_s / self.replies * 1e6 if self.replies else None,
                cpu_utilisation=cpu_s / self.elapsed_s if self.elapsed_s else None,
            )
        client_cpu = self.client_cpu_user_s + self.client_cpu_sys_s
        return {
            "tool": "kvbox bench",
            "kvbox_version": __version__,
            "started_at": self.started_at,
            "machine": {
                "hostname": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
            },
            "config": {
                "server": f"{cfg.host}:{cfg.port}",
                "clients": cfg.clients,
                "ops": cfg.ops,
                "op": cfg.workload.op,
                "set_ratio": cfg.workload.set_ratio,
                "value_size": cfg.workload.value_size,
                "keys": cfg.workload.keys,
                "key_prefix": cfg.workload.key_prefix,
                "mode": cfg.mode,
                "pipeline": cfg.pipeline,
                "procs": cfg.procs,
                "warmup": cfg.warmup,
                "timeout_s": cfg.timeout_s,
                "seed": cfg.seed,
                "spread_sources": cfg.spread_sources,
            },
            "populated_keys": self.populated_keys,
            "elapsed_s": self.elapsed_s,
            "ops": self.replies,
            "ok": self.ok,
            "notfound": self.misses,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "timed_out": self.timed_out,
            "complete": self.replies >= cfg.ops and not self.timed_out,
            "throughput_ops_s": self.throughput,
            "latency_ms": self.latency.as_dict() if self.latency else None,
            "latency_ms_by_op": {
                op: s.as_dict()
                for op, xs in split_by_op(
                    sorted(self.samples_ns), sorted(self.set_samples_ns)
                ).items()
                if (s := summarize(xs)) is not None
            },
            "server": server,
            "client": {
                "procs": cfg.procs,
                "cpu_user_s": self.client_cpu_user_s,
                "cpu_sys_s": self.client_cpu_sys_s,
                "cpu_s": client_cpu,
                "cpu_us_per_op": self.client_cpu_us_per_op,
            },
            "timeline": timeline(self.bins, BIN_S),
            "histogram_ms": [
                {"le_ms": round(le, 6), "count": n} for le, n in log_histogram(self.samples_ns)
            ],
        }

    def _by_op(self) -> dict[str, dict[str, float | int]]:
        """Latency of GETs and of SETs apart (a mix's two histograms in ``--plot``)."""
        ops = split_by_op(sorted(self.samples_ns), sorted(self.set_samples_ns))
        return {op: s.as_dict() for op, xs in ops.items() if (s := summarize(xs)) is not None}

    def summary(self) -> str:
        """The human-readable report ``kvbox bench`` prints."""
        cfg = self.config
        wl = cfg.workload
        shape = (
            f"persistent, pipeline {cfg.pipeline}"
            if cfg.mode == "persistent"
            else ("one request per connection")
        )
        mix = f"mix ({wl.set_ratio:.0%} SET)" if wl.op == "mix" else wl.op.upper()
        lines = [
            f"kvbox bench: {cfg.host}:{cfg.port}, {mix}, {wl.value_size}-byte values, "
            f"{wl.keys:,} keys, {shape}, {cfg.clients} clients in {cfg.procs} processes",
            f"  ops         {self.replies:,} (ok {self.ok:,}, notfound {self.misses:,}, "
            f"errors {self.errors:,}) in {self.elapsed_s:.2f} s"
            + ("  [TIMED OUT]" if self.timed_out else ""),
            f"  throughput  {self.throughput:,.0f} ops/s",
        ]
        if self.latency is not None:
            lat = self.latency
            lines.append(
                f"  latency ms  p50 {lat.p50_ms:.3f}  p90 {lat.p90_ms:.3f}  p99 {lat.p99_ms:.3f}"
                f"  p99.9 {lat.p999_ms:.3f}  max {lat.max_ms:.3f}  mean {lat.mean_ms:.3f}"
            )
        per_req = self.server_cpu_us_per_request
        if per_req is not None and self.server_cpu_s is not None:
            lines.append(
                f"  server CPU  {per_req:.1f} us/request ({self.server_cpu_s:.2f} s over "
                f"{self.server_requests:,} requests, "
                f"{self.server_cpu_s / self.elapsed_s:.0%} of a core)"
            )
        else:
            lines.append("  server CPU  not reported (INFO lacks cpu_user_s/cpu_sys_s/requests)")
        per_op = self.client_cpu_us_per_op
        if per_op is not None:
            client_cpu = self.client_cpu_user_s + self.client_cpu_sys_s
            lines.append(
                f"  client CPU  {per_op:.1f} us/op ({client_cpu:.2f} s in {cfg.procs} processes)"
            )
        for sample in self.error_samples[:5]:
            lines.append(f"  error       {sample}")
        return "\n".join(lines)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, largest first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan(config: BenchConfig) -> list[WorkerSpec]:
    """The per-process work: clients spread over processes, operations over clients.

    Operations are handed out in round trips (``pipeline`` requests in persistent mode),
    so the run does at least ``ops`` operations and exactly ``ops`` when it divides.
    """
    procs = min(config.procs, config.clients)
    unit = config.unit
    per_client = split_evenly(math.ceil(config.ops / unit), config.clients)
    warmup = 0
    if config.warmup:
        warmup = max(1, math.ceil(config.ops * WARMUP_SHARE / config.clients / unit)) * unit
    specs: list[WorkerSpec] = []
    start = 0
    for index, n_clients in enumerate(split_evenly(config.clients, procs)):
        ops = tuple(u * unit for u in per_client[start : start + n_clients])
        start += n_clients
        specs.append(
            WorkerSpec(
                index=index,
                host=config.host,
                port=config.port,
                mode=config.mode,
                pipeline=config.pipeline,
                client_ops=ops,
                warmup_ops=warmup,
                workload=config.workload,
                seed=config.seed * 1000 + index,
                timeout_s=config.timeout_s,
                bin_s=BIN_S,
                spread_sources=config.spread_sources,
            )
        )
    return specs


def resolve(host: str, port: int) -> str:
    """The numeric address for ``host``, resolved once so workers never hit the resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BenchError(f"cannot resolve {host}: {exc}") from exc
    return str(infos[0][4][0])


def run(config: BenchConfig, progress: IO[str] | None = sys.stderr) -> BenchReport:
    """Run one benchmark; ``progress`` gets a line per second (None: silent)."""
    config_host = config.host
    host = resolve(config.host, config.port)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        serverinfo.fetch_info(host, config.port)
    except serverinfo.ServerError as exc:
        raise BenchError(str(exc)) from exc
    populated = 0
    do_populate = config.populate if config.populate is not None else (config.workload.op != "set")
    if do_populate:
        _say(progress, f"populating {config.workload.keys:,} keys")
        try:
            populated = serverinfo.populate(host, config.port, config.workload, config.seed)
        except serverinfo.ServerError as exc:
            raise BenchError(f"populating failed: {exc}") from exc

    specs = plan(config)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    shared = Shared(
        go=go,
        t0=ctx.Value("d", 0.0, lock=False),
        ready=ctx.Array("b", len(specs), lock=False),
        counters=ctx.Array("q", 2 * len(specs), lock=False),
    )
    readers: dict[int, Connection] = {}
    procs: list[BaseProcess] = []
    collected: dict[int, WorkerResult] = {}
    try:
        for spec in specs:
            # one pipe per worker, its write end held by that worker alone: if the runner
            # dies the worker's send fails rather than blocking on a shared queue
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=worker_main,
                args=(spec, shared, writer),
                name=f"kvbox-bench-{spec.index}",
                daemon=True,
            )
            proc.start()
            writer.close()
            readers[spec.index] = reader
            procs.append(proc)
        if config.warmup:
            _say(progress, "warming up")
        _wait_ready(shared, readers, collected, procs,
                    SETUP_TIMEOUT_S + (config.timeout_s if config.warmup else 0.0))  # fmt: skip
        before = _cpu(host, config.port)
        shared.t0.value = time.perf_counter()
        go.set()
        deadline = time.monotonic() + config.timeout_s + REPORT_GRACE_S
        _watch(config, readers, collected, shared.counters, len(specs), deadline, progress)
        after = _cpu(host, config.port)
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
        for reader in readers.values():
            reader.close()

    failed = [r.setup_error for r in collected.values() if r.setup_error]
    if failed:
        raise BenchError("worker failed: " + "; ".join(failed))
    merged: array[int] = array("q")
    merged_sets: array[int] = array("q")
    for r in collected.values():
        merged.extend(r.latencies())
        merged_sets.extend(r.set_latencies())
    report = BenchReport(
        config=BenchConfig(**{**_fields(config), "host": config_host, "procs": len(specs)}),
        started_at=started_at,
        elapsed_s=max((r.elapsed_s for r in collected.values()), default=0.0),
        replies=sum(r.replies for r in collected.values()),
        ok=sum(r.ok for r in collected.values()),
        misses=sum(r.misses for r in collected.values()),
        errors=sum(r.errors for r in collected.values()),
        latency=summarize(merged),
        bins=merge_bins(r.bins for r in collected.values()),
        server_before=before,
        server_after=after,
        client_cpu_user_s=sum(r.cpu_user_s for r in collected.values()),
        client_cpu_sys_s=sum(r.cpu_sys_s for r in collected.values()),
        timed_out=any(r.timed_out for r in collected.values()) or len(collected) < len(specs),
        error_samples=[s for r in collected.values() for s in r.error_samples][:10],
        populated_keys=populated,
        samples_ns=merged,
        set_samples_ns=merged_sets,
    )
    return report


def _fields(config: BenchConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in BenchConfig.__dataclass_fields__}


def _cpu(host: str, port: int) -> serverinfo.CpuSnapshot | None:
    try:
        return serverinfo.cpu_snapshot(serverinfo.fetch_info(host, port))
    except serverinfo.ServerError:
        return None


def _say(stream: IO[str] | None, text: str) -> None:
    if stream is not None:
        print(f"kvbox bench: {text}", file=stream, flush=True)


def _receive(
    readers: dict[int, Connection], collected: dict[int, WorkerResult], timeout: float
) -> None:
    """Take whatever results arrive within ``timeout``; a worker that died gets a failure."""
    pending = [r for i, r in readers.items() if i not in collected]
    if not pending:
        return
    index_of = {id(r): i for i, r in readers.items()}
    for ready in wait(pending, timeout):
        index = index_of[id(ready)]
        try:
            res = cast(WorkerResult, readers[index].recv())
        except (EOFError, OSError):
            res = WorkerResult(index=index, setup_error="worker exited without a result")
        collected[index] = res


def _wait_ready(
    shared: Shared,
    readers: dict[int, Connection],
    collected: dict[int, WorkerResult],
    procs: list[BaseProcess],
    timeout: float,
) -> None:
    """Until every worker is connected and warm; a worker's failure ends the run at once."""
    end = time.monotonic() + timeout
    while not all(shared.ready[i] for i in range(len(procs))):
        _receive(readers, collected, 0.05)
        failed = sorted({r.setup_error for r in collected.values() if r.setup_error})
        if failed:
            raise BenchError("workers failed to start: " + "; ".join(failed))
        if time.monotonic() > end:
            raise BenchError(f"workers not ready after {timeout:.0f} s")


def _watch(
    config: BenchConfig,
    readers: dict[int, Connection],
    collected: dict[int, WorkerResult],
    counters: Any,
    workers: int,
    deadline: float,
    progress: IO[str] | None,
) -> None:
    """Collect every worker's result, printing progress each second until the deadline."""
    started = time.monotonic()
    next_tick = started + 1.0
    last_done = 0
    target = sum(sum(s.client_ops) for s in plan(config))
    while len(collected) < workers:
        now = time.monotonic()
        if now >= deadline:
            _say(progress, f"{workers - len(collected)} worker(s) did not report in time")
            return
        _receive(readers, collected, max(0.01, min(next_tick, deadline) - now))
        if time.monotonic() >= next_tick and len(collected) < workers:
            done = sum(counters[2 * i] for i in range(workers))
            errors = sum(counters[2 * i + 1] for i in range(workers))
            elapsed = time.monotonic() - started
            _say(
                progress,
                f"{elapsed:5.1f}s  {done:,}/{target:,} ops  {done - last_done:,} ops/s  "
                f"errors {errors:,}",
            )
            last_done = done
            next_tick += 1.0


__all__ = ["BenchConfig", "BenchError", "BenchReport", "plan", "run", "split_evenly"]
