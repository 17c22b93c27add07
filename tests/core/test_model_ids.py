"""Version ids: unique, 26 Crockford base-32 characters, in creation order within a process,
whether made one at a time (``new``) or in batches (``new_many``, the journaled SET path)."""

from __future__ import annotations

import re
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.core.model import VersionIdGenerator

_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=20))
def test_new_many_and_new_interleave_unique_and_ordered(sizes: list[int]) -> None:
    gen = VersionIdGenerator()
    ids: list[str] = []
    for n in sizes:
        batch = gen.new_many(n)
        assert len(batch) == n
        ids.extend(batch)
        ids.append(gen.new())
    assert all(_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # creation order, across 1,024-id head changes too


def test_new_many_of_nothing() -> None:
    assert VersionIdGenerator().new_many(0) == []


def test_counter_wrap_stays_unique() -> None:
    gen = VersionIdGenerator()
    gen.new()
    gen._last_ms += 10**9  # hold the clock's millisecond: every id now uses the counter
    gen._rand = (1 << 80) - 5  # five ids from the end of the 80-bit counter
    ids = gen.new_many(12) + [gen.new() for _ in range(3)]
    assert len(set(ids)) == len(ids)


def test_threads_share_one_generator() -> None:
    gen = VersionIdGenerator()
    out: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        for _ in range(200):
            out[i].extend(gen.new_many(7))
            out[i].append(gen.new())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for part in out for i in part]
    assert len(ids) == 4 * 200 * 8
    assert len(set(ids)) == len(ids)
