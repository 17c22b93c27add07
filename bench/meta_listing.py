#!/usr/bin/env python3
"""Listing pages of a big bucket, and the cost of a small write, on SQLite and PostgreSQL.

Reference tool, never shipped, not collected by pytest. Loads ``--keys`` keys (default
1,000,000, 1,000 ops per commit) into one unversioned bucket of a MetaStore alone (no
server, no blobs), then times ``list_objects`` pages of 1,000 keys from random start keys
(``--pages``, default 200) and single-op commits (``--writes``, 2,000 callers' worth in
bursts of 64): the same calls the S3 door makes for ListObjectsV2 and PUT.

    python bench/meta_listing.py                                   # SQLite in a tmp dir
    python bench/meta_listing.py --meta postgresql://u:p@h:5432/db # PostgreSQL (migrated)

Durability is each store's real one (SQLite WAL + synchronous=FULL; PostgreSQL as the
server is set up: the tests' embedded server runs with fsync=off, say so when quoting).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from kvbox.core.meta import MetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.model import Bucket, ObjectVersion, PutOp

VALUE = b"x" * 100
ETAG = "0" * 32


def _key(i: int) -> str:
    return f"photos/{i % 997:03d}/{i:09d}.jpg"


async def _load(store: MetaStore, keys: int) -> float:
    t0 = time.perf_counter()
    batch = 1000
    for start in range(0, keys, batch * 8):
        calls = []
        for s in range(start, min(start + batch * 8, keys), batch):
            ops = [
                PutOp(ObjectVersion("big", _key(i), "", len(VALUE), ETAG, 1, inline=VALUE))
                for i in range(s, min(s + batch, keys))
            ]
            calls.append(store.commit(ops))
        await asyncio.gather(*calls)
    return time.perf_counter() - t0


async def _pages(store: MetaStore, keys: int, pages: int) -> list[float]:
    rnd = random.Random(7)
    out = []
    for _ in range(pages):
        start = _key(rnd.randrange(keys))
        t0 = time.perf_counter()
        page = await store.list_objects("big", prefix="photos/", start_after=start, limit=1000)
        out.append(time.perf_counter() - t0)
        assert page, start
    return out


async def _writes(store: MetaStore, writes: int) -> tuple[float, list[float]]:
    lat: list[float] = []

    async def one(i: int) -> None:
        v = ObjectVersion("big", f"w/{i % 512}", "", len(VALUE), ETAG, 1, inline=VALUE)
        t0 = time.perf_counter()
        await store.commit([PutOp(v)])
        lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    for s in range(0, writes, 64):
        await asyncio.gather(*(one(i) for i in range(s, min(s + 64, writes))))
    return writes / (time.perf_counter() - t0), lat


def _ms(xs: list[float], q: float) -> str:
    xs = sorted(xs)
    return f"{xs[min(len(xs) - 1, int(q * len(xs)))] * 1000:.2f}"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meta", help="a migrated PostgreSQL database (else SQLite)")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--writes", type=int, default=2000)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    store: MetaStore
    if args.meta:
        from kvbox.core.meta.postgres import PostgresMetaStore

        store = PostgresMetaStore(args.meta)
        kind = "postgresql"
    else:
        store = SqliteMetaStore(Path(tmp.name) / META_FILE)
        kind = "sqlite"
    await store.open()
    try:
        await store.create_bucket(Bucket("big"))
        load = await _load(store, args.keys)
        pages = await _pages(store, args.keys, args.pages)
        rate, lat = await _writes(store, args.writes)
    finally:
        await store.close()
        tmp.cleanup()
    print(
        f"{kind}: {args.keys:,} keys loaded in {load:.1f} s ({args.keys / load:,.0f}/s); "
        f"list page of 1,000: median {statistics.median(pages) * 1000:.2f} ms, "
        f"p99 {_ms(pages, 0.99)} ms; single-op commits (64 at a time): {rate:,.0f}/s, "
        f"p50 {_ms(lat, 0.5)} ms, p99 {_ms(lat, 0.99)} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
