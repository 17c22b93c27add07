#!/usr/bin/env python3
"""Cost of a read-cache put once the cache is full, so every put evicts: µs per put.

Reference tool, never shipped, not collected by pytest (the regression test for the same
bug, tests/core/test_service_regressions.py, counts operations instead of timing them).
The first review found eviction by ``next(iter(dict))`` growing with the number of
entries already evicted (CPython skips the deleted slots at the front each time): at
260,000 entries a put cost ~10x a put without eviction. With O(1) eviction the three
sizes below should cost about the same per put. Bounded: 50,000 puts per size.

    python bench/cache_evict.py
"""

from __future__ import annotations

import time

from kvbox.core.model import ObjectVersion
from kvbox.core.store.cache import ReadCache

#: What ``ReadCache`` charges per entry (its overhead constant) plus the 10-byte values below.
ENTRY_COST = 240 + 10
PUTS = 50_000


def _versions(n: int) -> list[ObjectVersion]:
    return [
        ObjectVersion("kv", f"k{i}", "V", 10, "", 0, inline=b"0123456789", seq=i + 1)
        for i in range(n)
    ]


def per_put_us(entries: int) -> float:
    """µs per put into a full cache of ``entries`` entries (each put evicts one)."""
    cache = ReadCache(ENTRY_COST * entries)
    vs = _versions(entries + PUTS)
    for i in range(entries):
        cache.put(("kv", vs[i].key), vs[i])
    t0 = time.perf_counter()
    for v in vs[entries:]:
        cache.put(("kv", v.key), v)
    return (time.perf_counter() - t0) / PUTS * 1e6


def baseline_us() -> float:
    """µs per put into a cache that never evicts."""
    cache = ReadCache(1 << 40)
    vs = _versions(PUTS)
    t0 = time.perf_counter()
    for v in vs:
        cache.put(("kv", v.key), v)
    return (time.perf_counter() - t0) / PUTS * 1e6


def main() -> None:
    print(f"no eviction:            {baseline_us():6.2f} µs per put")
    for entries in (10_000, 100_000, 260_000):
        print(f"full, {entries:>7} entries: {per_put_us(entries):6.2f} µs per put (evicting)")


if __name__ == "__main__":
    main()
