"""The memtable (kvbox.core.journal.memtable): acknowledged writes not yet applied.

Layer: tests/core/journal. Rules: the real ``Memtable`` with real entries, no journal
and no MetaStore: what it promises on its own is that the newest entry of a key wins,
that entries being applied stay readable, that a failed apply loses nothing newer, and
that its byte bounds (an upper bound, counted exactly only near a limit) decide when
the applier must start and when writers must wait.
"""

from __future__ import annotations

import hashlib

import pytest

from kvbox.core.integrity import crc32c
from kvbox.core.journal import memtable
from kvbox.core.journal.memtable import ENTRY_OVERHEAD, Key, Memtable, Pending


def _entry(lsn: int, vid: str, data: bytes, mtime: int = 1_000) -> Pending:
    return (lsn, vid, mtime, data, crc32c(data))


def _add(table: Memtable, *items: tuple[Key, Pending]) -> bool:
    return table.add(list(items), sum(len(e[3]) for _, e in items))


K1: Key = ("kv", "apple")
K2: Key = ("kv", "pear")


def test_an_entry_reads_as_a_null_version_with_its_bytes_inline() -> None:
    table = Memtable()
    assert table.get(K1) is None
    pending = [table.pending]
    _add(table, (K1, _entry(1, "V1", b"red", mtime=42)))
    pending.append(table.pending)
    assert pending == [False, True]
    v = table.get(K1)
    assert v is not None
    assert (v.bucket, v.key, v.version_id, v.mtime_ns) == ("kv", "apple", "V1", 42)
    assert v.inline == b"red" and v.size == 3 and v.chunks == ()
    assert v.etag == hashlib.md5(b"red").hexdigest()
    assert v.is_null and not v.is_delete_marker


def test_the_later_record_of_a_key_wins_and_reads_are_built_once() -> None:
    table = Memtable()
    _add(table, (K1, _entry(1, "V1", b"red")), (K1, _entry(2, "V2", b"green")))
    first = table.get(K1)
    assert first is not None and first.version_id == "V2" and first.inline == b"green"
    assert table.get(K1) is first, "a second read must reuse the version built"
    _add(table, (K1, _entry(3, "V3", b"blue")))
    third = table.get(K1)
    assert third is not None and third.version_id == "V3", "a stale built version was served"


def test_frozen_entries_stay_readable_and_live_ones_shadow_them() -> None:
    table = Memtable()
    _add(table, (K1, _entry(1, "V1", b"red")), (K2, _entry(2, "P1", b"x")))
    frozen = table.freeze()
    assert set(frozen) == {K1, K2}
    assert table.live == {} and table.bytes == 0 and table.journaled == 0
    assert table.pending, "entries being applied are still pending"
    v = table.get(K2)
    assert v is not None and v.version_id == "P1"
    _add(table, (K1, _entry(3, "V2", b"newer")))
    v = table.get(K1)
    assert v is not None and v.version_id == "V2", "the applier's copy hid a newer write"


def test_a_failed_apply_puts_entries_back_under_newer_ones() -> None:
    table = Memtable()
    _add(table, (K1, _entry(1, "V1", b"old")), (K2, _entry(2, "P1", b"kept")))
    frozen = table.freeze()
    _add(table, (K1, _entry(3, "V2", b"new")))
    table.thaw(frozen)
    table.applied()
    assert table.frozen == {}
    assert table.live[K1][1] == "V2", "thaw overwrote a newer entry"
    assert table.live[K2][1] == "P1", "thaw lost an entry"
    assert table.bytes == len(b"new") + len(b"kept") + 2 * ENTRY_OVERHEAD  # counted exactly


def test_applied_forgets_the_frozen_entries_and_their_built_versions() -> None:
    table = Memtable()
    _add(table, (K1, _entry(1, "V1", b"a")), (K2, _entry(2, "P1", b"b")))
    table.get(K1)
    table.get(K2)
    table.freeze()
    _add(table, (K2, _entry(3, "P2", b"c")))
    table.get(K2)
    table.applied()
    assert table.get(K1) is None, "an applied entry is still served from the memtable"
    assert set(table.versions) == {K2}
    assert not table.frozen


def test_add_says_when_the_applier_must_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memtable, "MEM_SOFT", 10 * ENTRY_OVERHEAD)
    table = Memtable()
    assert not _add(table, (K1, _entry(1, "V1", b"x" * 10)))
    big = [(("kv", f"k{i}"), _entry(i + 2, f"V{i}", b"y" * 100)) for i in range(10)]
    assert table.add(big, 1000), "past MEM_SOFT the applier must be woken"


def test_journaled_bytes_alone_also_wake_the_applier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overwrites of one key keep the table small but the journal grows: the replay
    after a crash is bounded by JOURNAL_SOFT, not by the table's size."""
    monkeypatch.setattr(memtable, "JOURNAL_SOFT", 1000)
    table = Memtable()
    woke = [_add(table, (K1, _entry(n, f"V{n}", b"z" * 100))) for n in range(1, 11)]
    assert woke[:9] == [False] * 9 and woke[9], woke
    assert len(table.live) == 1


def test_full_counts_exactly_before_making_writers_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The running count is an upper bound (an overwrite adds without subtracting the
    entry it replaced): ``full`` must recount before it answers yes."""
    limit = 4 * (100 + ENTRY_OVERHEAD)
    monkeypatch.setattr(memtable, "MEM_HARD", limit)
    table = Memtable()
    for n in range(1, 9):  # eight writes of one key: the bound says 8 entries
        _add(table, (K1, _entry(n, f"V{n}", b"v" * 100)))
    assert table.bytes >= limit
    assert not table.full(), "one key's overwrites made writers wait"
    assert table.bytes == 100 + ENTRY_OVERHEAD
    for i in range(4):
        _add(table, (("kv", f"other{i}"), _entry(20 + i, f"O{i}", b"v" * 100)))
    assert table.full(), "five distinct entries are past the limit"
