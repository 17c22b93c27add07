"""The Store's read cache of newest versions, and the ``--max-memory`` eviction order.

Layer: core (no I/O). Rules: an entry is only ever replaced by a version with a larger
``seq``, or removed; a read that missed may fill the cache only if no write completed
while it was reading (``ReadCache.generation``). Together they make it impossible for a
slow read to put back an older version than a write already cached.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final, Literal, TypeAlias

from kvbox.core.model import ObjectVersion

#: Rough per-entry overhead of a cached version, for the cache's byte accounting.
ENTRY_OVERHEAD: Final = 240


class Miss(enum.Enum):
    """The read cache's "don't know" (None already means "known absent")."""

    MISS = "miss"


MISS: Final = Miss.MISS
Peeked: TypeAlias = ObjectVersion | Literal[Miss.MISS] | None
Key: TypeAlias = tuple[str, str]


class ReadCache:
    """Newest versions by (bucket, key), bounded by bytes, evicting oldest-inserted first.

    Insertion order rather than LRU: a hit costs one dict lookup (an LRU's reordering
    was 12% of a cached GET), and hot keys are re-inserted by every write anyway.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        #: Bumped on every committed write (``Store``) and every journal apply: a cache
        #: miss only populates the cache if it did not change while the miss was read.
        self.generation = 0
        self._d: OrderedDict[Key, ObjectVersion | None] = OrderedDict()

    @staticmethod
    def _cost(v: ObjectVersion | None) -> int:
        if v is None:
            return ENTRY_OVERHEAD
        return ENTRY_OVERHEAD + (len(v.inline) if v.inline is not None else 0)

    def get(self, k: Key) -> Peeked:
        return self._d.get(k, MISS)

    def put(self, k: Key, v: ObjectVersion | None) -> None:
        if self.max_bytes <= 0:
            return
        d = self._d
        old = d.pop(k, MISS)
        if old is not MISS:
            self.bytes -= self._cost(old)
        d[k] = v
        self.bytes += self._cost(v)
        while self.bytes > self.max_bytes and d:
            _, victim = d.popitem(last=False)  # O(1), unlike iterating a plain dict
            self.bytes -= self._cost(victim)

    def put_newer(self, k: Key, v: ObjectVersion) -> None:
        old = self._d.get(k)
        if old is not None and old.seq > v.seq:
            return
        self.put(k, v)

    def populate(self, generation: int, k: Key, v: ObjectVersion | None) -> None:
        """Cache what a read that started at ``generation`` found, unless a write
        completed meanwhile (its version may be newer than what the read saw)."""
        if generation == self.generation:
            self.put(k, v)

    def pop(self, k: Key) -> None:
        old = self._d.pop(k, MISS)
        if old is not MISS:
            self.bytes -= self._cost(old)

    def drop_bucket(self, bucket: str) -> None:
        """Forget every entry of ``bucket`` (a scan: buckets are deleted rarely)."""
        for k in [k for k in self._d if k[0] == bucket]:
            self.pop(k)


#: What one key costs in cache mode beside its value and its name: the version's row in
#: the memory store and its indexes, the read cache's and this LRU's entries, the version
#: id. Measured: 200,000 keys with empty values took the server from 58 to 216 MB, 828
#: bytes a key with 8-byte names; counting values alone, ``--max-memory 10KiB`` had let
#: them all in (issue 10).
ENTRY_COST = 900


def entry_cost(key: str, size: int) -> int:
    """The memory a version of ``key`` with ``size`` bytes of value costs in cache mode."""
    return ENTRY_COST + len(key) + size


class Lru:
    """What each key costs, in recency order: the ``--max-memory`` eviction policy.

    A key's cost is ``entry_cost`` of its newest version, or the sum over every version it
    keeps in a versioned bucket (``add``). Reads count as uses: a hit in the read cache
    (``Store.peek``) and a read that had to ask the memory store (``Store.head``) alike.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.sizes: OrderedDict[Key, int] = OrderedDict()

    def touch(self, k: Key) -> None:
        if k in self.sizes:
            self.sizes.move_to_end(k)

    def set(self, k: Key, size: int) -> None:
        self.bytes -= self.sizes.pop(k, 0)
        self.sizes[k] = size
        self.bytes += size

    def add(self, k: Key, size: int) -> None:
        """One more version of ``k`` kept beside the others (a versioned bucket), or with
        a negative ``size`` one fewer; a key left with nothing is forgotten."""
        total = self.sizes.get(k, 0) + size
        if total > 0:
            self.set(k, total)
        else:
            self.drop(k)

    def drop(self, k: Key) -> None:
        self.bytes -= self.sizes.pop(k, 0)

    def victims(self, keep: Key) -> list[Key]:
        """Keys to evict, least recently used first, until the bytes fit (never ``keep``,
        the key just written)."""
        out: list[Key] = []
        excess = self.bytes - self.max_bytes
        for k, size in self.sizes.items():
            if excess <= 0:
                break
            if k == keep:
                continue
            out.append(k)
            excess -= size
        return out
