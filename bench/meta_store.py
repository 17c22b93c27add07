#!/usr/bin/env python3
"""Throughput and latency of ``SqliteMetaStore`` alone: no server, no protocol, no blobs.

Reference tool, never shipped, not collected by pytest. Every case is bounded in both op
count and wall time (``--seconds``, default 2 s per case), so a full run takes about 20 s
on the 2-core machine. Durability is the real one (WAL, ``synchronous=FULL``) unless
``--sync`` says otherwise; the database lives in a temporary directory (``--dir`` to pick
the file system).

Cases (1 KB inline values, ops prebuilt so only the store is measured):

* ``new``        puts of keys never seen before, unversioned bucket
* ``overwrite``  puts over a 10,000-key set, unversioned bucket (null version replaced)
* ``versioned``  appends over a 10,000-key set, versioning enabled
* ``single``     1 op per ``commit`` call, 2,000 concurrent callers, overwrites
* ``ow16``       (not in the default run) overwrites in the GW-KV server's shapes only:
                 50 or 25 callers committing 16 or 8 ops each, as clients pipelining SETs

``N/call`` is ops per ``commit`` call, ``tasks`` the concurrent callers; ``writer cpu``
is the writer thread's CPU time per op (from /proc), the part that group commit cannot
spread over the second core; ``all cpu`` is the whole process's (event loop, writer,
checkpoints), the figure to compare when other work shares the machine. ``head`` and
``head_many`` report read latency percentiles on the overwritten key set.

    python bench/meta_store.py                 # every case
    python bench/meta_store.py overwrite head  # some cases
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.model import Bucket, ObjectVersion, PutOp, Versioning

VALUE = os.urandom(1024)
ETAG = "0" * 32
KEYSET = 10_000
MAX_OPS = 2_000_000


class _Stats:
    #: CPU seconds of the whole process in the last ``_drive`` (prebuilding excluded).
    proc = 0.0


def _writer_cpu() -> float:
    """CPU seconds used so far by the store's writer thread (0 if not found)."""
    for t in threading.enumerate():
        if t.name == "kvbox-meta-writer" and t.native_id is not None:
            try:
                fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)
            except OSError:
                return 0.0
            parts = fields[1].split()
            return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class _Ids:
    """Unique, cheap version ids (the real generator costs microseconds per id)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.tag}{self.n:024d}"


class _Maker:
    """Batches of puts: each key new (``fresh_keys``) or cycling over ``KEYSET`` keys."""

    def __init__(self, ids: _Ids, *, fresh_keys: bool, is_null: bool) -> None:
        self.ids = ids
        self.fresh_keys = fresh_keys
        self.is_null = is_null
        self.n = 0

    def __call__(self, count: int) -> list[PutOp]:
        out = []
        for _ in range(count):
            self.n += 1
            key = f"new:{self.n:012d}" if self.fresh_keys else f"key:{self.n % KEYSET:08d}"
            out.append(_op("b", key, self.ids.next(), self.is_null))
        return out


def _op(bucket: str, key: str, vid: str, is_null: bool) -> PutOp:
    return PutOp(
        ObjectVersion(
            bucket,
            key,
            vid,
            size=len(VALUE),
            etag=ETAG,
            mtime_ns=1_700_000_000_000_000_000,
            is_null=is_null,
            inline=VALUE,
        )
    )


async def _drive(
    store: SqliteMetaStore,
    make: Callable[[int], list[PutOp]],
    per_call: int,
    tasks: int,
    seconds: float,
) -> tuple[int, float, float]:
    """Run ``tasks`` callers each committing ``per_call`` ops per call until the deadline;
    returns (ops, wall seconds, writer CPU seconds)."""
    # Prebuild enough batches for the deadline at a generous rate, in rounds.
    total = 0
    cpu0 = _writer_cpu()
    proc0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    budget = MAX_OPS
    build_total = 0.0

    async def one(batches: list[list[PutOp]]) -> int:
        done = 0
        for b in batches:
            if time.perf_counter() >= deadline:
                break
            await store.commit(b)
            done += len(b)
        return done

    while time.perf_counter() < deadline and budget > 0:
        # ~0.5 s worth of work per round at 200k ops/s keeps prebuilding off the clock
        # mostly; the build time is excluded from the rate below.
        n_round = min(budget, 100_000)
        calls = max(1, n_round // per_call)
        t_build = time.perf_counter()
        c_build = time.thread_time()
        batches = [make(per_call) for _ in range(calls)]
        build = time.perf_counter() - t_build
        build_total += time.thread_time() - c_build
        deadline += build
        start += build
        per_task = [batches[i::tasks] for i in range(tasks)]
        done = await asyncio.gather(*(one(b) for b in per_task if b))
        total += sum(done)
        budget -= n_round
    wall = time.perf_counter() - start
    _Stats.proc = time.process_time() - proc0 - build_total
    return total, wall, _writer_cpu() - cpu0


async def _fresh(path: Path, versioning: Versioning, sync: str) -> SqliteMetaStore:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = SqliteMetaStore(path, synchronous=sync)
    await store.open()
    await store.create_bucket(Bucket("b", versioning=versioning))
    return store


async def _fill(store: SqliteMetaStore, ids: _Ids, is_null: bool) -> None:
    for i in range(0, KEYSET, 1000):
        await store.commit(
            [_op("b", f"key:{j:08d}", ids.next(), is_null) for j in range(i, i + 1000)]
        )


def _report(name: str, per_call: int, tasks: int, ops: int, wall: float, cpu: float) -> None:
    rate = ops / wall if wall else 0.0
    cpu_us = cpu / ops * 1e6 if ops else 0.0
    proc_us = _Stats.proc / ops * 1e6 if ops else 0.0
    print(
        f"{name:<10} {per_call:>6} {tasks:>6} {ops:>9} {rate:>11,.0f} {cpu_us:>10.1f} µs"
        f" {proc_us:>10.1f} µs",
        flush=True,
    )


async def _writes(case: str, path: Path, args: argparse.Namespace) -> None:
    shapes = {
        "new": [(100, 32), (1000, 8)],
        "overwrite": [(16, 50), (100, 32), (1000, 8)],
        "ow16": [(16, 50), (16, 25), (8, 25)],  # the server's shape: 50 clients pipelining 16 SETs
        "versioned": [(100, 32), (1000, 8)],
        "single": [(1, 2000)],
    }[case]
    versioned = case == "versioned"
    for per_call, tasks in shapes:
        ids = _Ids("V")
        store = await _fresh(path, Versioning.ENABLED if versioned else Versioning.OFF, args.sync)
        try:
            if case != "new":
                await _fill(store, ids, not versioned)
            make = _Maker(ids, fresh_keys=case == "new", is_null=not versioned)
            ops, wall, cpu = await _drive(store, make, per_call, tasks, args.seconds)
            _report(case, per_call, tasks, ops, wall, cpu)
        finally:
            await store.close()


async def _reads(path: Path, args: argparse.Namespace) -> None:
    ids = _Ids("V")
    store = await _fresh(path, Versioning.OFF, args.sync)
    try:
        await _fill(store, ids, True)
        await _fill(store, ids, True)  # every key overwritten once: realistic table shape
        keys = [f"key:{i % KEYSET:08d}" for i in range(0, 7919 * 20000, 7919)]
        deadline = time.perf_counter() + args.seconds / 2
        lat: list[float] = []
        for k in keys:
            t = time.perf_counter()
            got = await store.head("b", k)
            lat.append(time.perf_counter() - t)
            assert got is not None
            if t > deadline:
                break
        _lat("head", lat)
        lat = []
        deadline = time.perf_counter() + args.seconds / 2
        for i in range(0, len(keys) - 100, 100):
            t = time.perf_counter()
            got_many = await store.head_many("b", keys[i : i + 100])
            lat.append(time.perf_counter() - t)
            assert all(g is not None for g in got_many)
            if t > deadline:
                break
        _lat("head_many", lat, 100)
        # Concurrent heads: throughput of the reader pool with 64 callers.
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + args.seconds / 2

        async def reader(offset: int) -> int:
            done = 0
            for k in keys[offset::64]:
                if time.perf_counter() >= deadline:
                    break
                await store.head("b", k)
                done += 1
            return done

        n = sum(await asyncio.gather(*(reader(i) for i in range(64))))
        wall = time.perf_counter() - t0
        print(f"{'head x64':<10} concurrent {n / wall:>11,.0f} heads/s", flush=True)
    finally:
        await store.close()


def _lat(name: str, lat: list[float], per: int = 1) -> None:
    lat.sort()
    p50 = lat[len(lat) // 2] * 1e6
    p99 = lat[int(len(lat) * 0.99)] * 1e6
    mean = statistics.fmean(lat) * 1e6
    print(
        f"{name:<10} {len(lat):>6} calls  p50 {p50:8.1f} µs  p99 {p99:8.1f} µs"
        f"  mean {mean:8.1f} µs  ({per} key{'s' if per > 1 else ''}/call)",
        flush=True,
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", default=["new", "overwrite", "versioned", "single", "head"])
    ap.add_argument("--seconds", type=float, default=2.0, help="wall-time cap per case")
    ap.add_argument("--sync", default="FULL", help="PRAGMA synchronous (default FULL)")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the database")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / META_FILE
        print(
            f"{'case':<10} {'N/call':>6} {'tasks':>6} {'ops':>9} {'ops/s':>11}"
            f" {'writer cpu/op':>13} {'all cpu/op':>13}"
        )
        for case in args.cases:
            if case == "head":
                await _reads(path, args)
            else:
                await _writes(case, path, args)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
