"""The Store's read cache (kvbox.core.store.cache), on its own.

Layer: tests/core/store. Rules: where a property is about cost (eviction), the test
counts operations, never times them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kvbox.core.model import ObjectVersion
from kvbox.core.store import MISS
from kvbox.core.store.cache import ReadCache

# --- R7: the read cache evicts in constant time --------------------------------------------------


def _version(i: int, size: int = 10) -> ObjectVersion:
    return ObjectVersion("kv", f"k{i}", f"V{i}", size, "", 0, inline=b"v" * size, seq=i + 1)


def _count_iterations(cache: ReadCache) -> list[int]:
    """Swap the cache's mapping for a subclass of its own type that counts ``iter()``
    calls; the returned one-item list holds the count."""
    count = [0]
    base: type[Any] = type(cache._d)

    class Counting(base):  # type: ignore[misc]
        def __iter__(self) -> Iterator[Any]:
            count[0] += 1
            return super().__iter__()  # type: ignore[no-any-return]

    cache._d = Counting(cache._d)
    return count


def test_cache_eviction_does_not_scan_from_the_front() -> None:
    """Once the cache is full every put evicts the oldest entry. Before the fix that meant
    ``next(iter(dict))``, which in CPython walks over every slot deleted at the front of
    the dict: after N evictions each put cost O(N) (r7: 10x slower per put at 260,000
    entries). Eviction must never iterate the mapping, and it must still be exact:
    oldest first, with the byte count matching what is held."""
    cap = 1000
    entry = 240 + 10  # the cache's per-entry overhead plus a 10-byte value
    cache = ReadCache(entry * cap)
    iterations = _count_iterations(cache)
    for i in range(20 * cap):
        cache.put(("kv", f"k{i}"), _version(i))
    assert iterations[0] == 0, "eviction iterated the cache's mapping"
    held = [i for i in range(20 * cap) if cache.get(("kv", f"k{i}")) is not MISS]
    assert held == list(range(19 * cap, 20 * cap)), "exactly the newest entries are kept"
    assert cache.bytes == entry * cap
    # A re-put moves a key to the back, so the next eviction takes the one after it.
    cache.put(("kv", f"k{19 * cap}"), _version(19 * cap))
    cache.put(("kv", "fresh"), _version(10**6))
    assert cache.get(("kv", f"k{19 * cap}")) is not MISS
    assert cache.get(("kv", f"k{19 * cap + 1}")) is MISS
    assert iterations[0] == 0
