"""The journal's files (kvbox.core.journal.log): real segments in ``tmp_path``.

Layer: tests of core. Rules: no mocks; every failure is a real one (a truncated or
damaged file, a deleted segment, a descriptor that refuses writes). What is checked is
what ``Store`` and recovery rely on: LSNs are consecutive in submission order, hooks see
every durable record in order before anyone is told, a reopen hands back exactly what
was not applied, a torn tail is cut (a preallocated segment's zeros are a clean end) and
later appends are read back, applied segments are deleted but never the current one, a
hole in the segments is an error unless everything in it was applied, and a failed write
breaks the journal for good.

Segments are preallocated to ``segment_bytes``; the tests use small ones (``SEGMENT``)
so that each costs little disk.
"""

from __future__ import annotations

import asyncio
import errno
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kvbox.core.integrity import crc32c
from kvbox.core.journal import codec
from kvbox.core.journal.codec import FRAME_HEADER, Record, record_pieces
from kvbox.core.journal.log import SEGMENT_SUFFIX, Journal
from kvbox.errors import StorageError

Batch = list[tuple[str, bytes]]

#: Segment size for most tests: every segment is preallocated to it.
SEGMENT = 64 * 1024


def _pieces(batch: Batch, bucket: str = "kv") -> list[bytes]:
    out: list[bytes] = []
    for i, (key, value) in enumerate(batch):
        vid = f"V{i}".encode()
        out.extend(record_pieces(bucket.encode(), key.encode(), vid, 42, value, crc32c(value)))
    return out


def _records(first: int, batch: Batch, bucket: str = "kv") -> list[Record]:
    return [
        Record(first + i, bucket, key, f"V{i}", 42, value, crc32c(value))
        for i, (key, value) in enumerate(batch)
    ]


def _noop(first: int) -> None:
    pass


async def _put(j: Journal, batch: Batch, hook: Callable[[int], None] = _noop) -> int:
    return await j.submit(_pieces(batch), len(batch), hook)


def _frame_firsts(data: bytes) -> list[int]:
    """The first LSN of every frame in ``data``, walking the headers."""
    out: list[int] = []
    off = 0
    while off + FRAME_HEADER <= len(data) and data[off : off + 4] == codec.MAGIC:
        _, length, _, first, _ = struct.unpack_from("<4sIIQI", data, off)
        out.append(first)
        off += FRAME_HEADER + length
    return out


def _scan_file(seg: Path) -> codec.Scan:
    """A segment's frames; whatever follows them must be preallocated zeros."""
    data = seg.read_bytes()
    found = codec.scan(data)
    assert not any(data[found.end :]), (seg, found.problem, found.end)
    return found


def _all_records(path: Path) -> list[Record]:
    """Every record in the segments of ``path``, read without the Journal class."""
    out: list[Record] = []
    for seg in sorted(path.glob(f"*{SEGMENT_SUFFIX}")):
        out.extend(_scan_file(seg).records)
    return out


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = Journal(tmp_path / "journal", segment_bytes=SEGMENT)
    assert j.open(0) == []
    yield j
    await j.close()


async def _reopen(
    path: Path, applied: int, segment_bytes: int = SEGMENT
) -> tuple[Journal, list[Record]]:
    j = Journal(path, segment_bytes=segment_bytes)
    return j, j.open(applied)


def _busy(j: Journal) -> bool:
    return j.busy


def _firsts(path: Path) -> list[int]:
    return sorted(int(p.name.removesuffix(SEGMENT_SUFFIX)) for p in path.iterdir())


# --- submitting -------------------------------------------------------------------------


async def test_concurrent_submissions_get_consecutive_lsns_hooks_first(journal: Journal) -> None:
    sizes = [1, 3, 2, 5, 1, 4, 2, 6]
    batches = [[(f"b{n}k{i}", b"v" * (n * i)) for i in range(size)] for n, size in enumerate(sizes)]
    futs: dict[int, asyncio.Future[int]] = {}
    hooks: list[tuple[int, int]] = []
    resolved: list[int] = []

    def hook_for(n: int) -> Callable[[int], None]:
        def hook(first: int) -> None:
            # Before this submission's future (and every later one) is resolved.
            assert not any(f.done() for f in futs.values() if f is futs[n] or _lsn(f) > first)
            hooks.append((n, first))

        return hook

    def _lsn(f: asyncio.Future[int]) -> int:
        return f.result() if f.done() else 1 << 62

    async def writer(n: int) -> int:
        for _ in range(n % 3):  # start in a mixed order of loop turns
            await asyncio.sleep(0)
        fut = journal.submit(_pieces(batches[n]), sizes[n], hook_for(n))
        futs[n] = fut
        fut.add_done_callback(lambda f: resolved.append(f.result()))
        first = await fut
        # Durable means in the file: its last record is there once the future resolves.
        on_disk = {r.lsn for r in _all_records(journal.path)}
        assert first + sizes[n] - 1 in on_disk
        return first

    firsts = await asyncio.gather(*(writer(n) for n in range(len(sizes))))
    order = sorted(range(len(sizes)), key=lambda n: firsts[n])
    lsn = 1
    for n in order:  # consecutive, without gaps or overlaps
        assert firsts[n] == lsn
        lsn += sizes[n]
    total = sum(sizes)
    assert journal.durable_lsn == total
    assert [first for _, first in hooks] == sorted(firsts)  # hooks in LSN order
    assert sorted(n for n, _ in hooks) == list(range(len(sizes)))  # each hook once
    assert resolved == sorted(firsts)
    want = [r for n in order for r in _records(firsts[n], batches[n])]
    assert _all_records(journal.path) == want


async def test_submissions_of_one_loop_pass_share_a_frame(journal: Journal) -> None:
    futs = [journal.submit(_pieces([(f"k{n}", b"x")]), 1, _noop) for n in range(8)]
    assert _busy(journal)
    assert await asyncio.gather(*futs) == list(range(1, 9))
    await journal.wait_idle()
    assert not _busy(journal)
    (seg,) = journal.segment_files()
    # The flush starts at the end of the loop pass: all eight are in its one frame.
    assert _frame_firsts(seg.read_bytes()) == [1]


async def test_submissions_while_a_flush_runs_share_the_next_frame(journal: Journal) -> None:
    first = journal.submit(_pieces([("k0", b"x")]), 1, _noop)
    while not journal._flushing:  # the end of this loop pass starts the flush
        await asyncio.sleep(0)
    futs = [journal.submit(_pieces([(f"k{n}", b"x")]), 1, _noop) for n in range(1, 8)]
    assert await asyncio.gather(first, *futs) == list(range(1, 9))
    await journal.wait_idle()
    (seg,) = journal.segment_files()
    # The first submission was flushed alone; the seven behind it made one frame.
    assert _frame_firsts(seg.read_bytes()) == [1, 2]


async def test_segments_are_preallocated_and_their_zeros_are_a_clean_end(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0, segment_bytes=1 << 20)
    assert await _put(j, [("a", b"1")]) == 1
    (seg,) = j.segment_files()
    assert seg.stat().st_size == 1 << 20
    await j.close()
    j, pending = await _reopen(path, 0, segment_bytes=1 << 20)
    assert pending == [Record(1, "kv", "a", "V0", 42, b"1")]
    assert seg.stat().st_size == 1 << 20  # nothing cut
    await j.close()


async def test_a_frame_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0, segment_bytes=256)
    await _put(j, [("small", b"s")])
    big = [("big", b"B" * 1000)]
    assert await _put(j, big) == 2
    assert await _put(j, [("after", b"a")]) == 3
    await j.close()
    j, pending = await _reopen(path, 0, segment_bytes=256)
    assert [(r.lsn, r.key, len(r.value)) for r in pending] == [
        (1, "small", 1),
        (2, "big", 1000),
        (3, "after", 1),
    ]
    await j.close()


async def test_a_failing_hook_does_not_stop_the_others(journal: Journal) -> None:
    seen: list[int] = []

    def bad(first: int) -> None:
        raise RuntimeError("hook bug")

    f1 = journal.submit(_pieces([("a", b"1")]), 1, bad)
    f2 = journal.submit(_pieces([("b", b"2")]), 1, seen.append)
    assert list(await asyncio.gather(f1, f2)) == [1, 2]
    assert seen == [2]


# --- reopening --------------------------------------------------------------------------


async def test_reopen_returns_exactly_the_records_after_applied(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0)
    batches: list[Batch] = [[("a", b"1"), ("b", b"")], [("ü/€", b"\x00" * 300)], [("a", b"3")]]
    for batch in batches:
        await _put(j, batch)
    await j.close()
    want = _records(1, batches[0]) + _records(3, batches[1]) + _records(4, batches[2])
    for applied in range(0, 5):
        j, pending = await _reopen(path, applied)
        assert pending == [r for r in want if r.lsn > applied], applied
        assert j.durable_lsn == 4
        await j.close()
    # Appends go on after the last LSN, and are read back with the rest.
    j, _ = await _reopen(path, 4)
    assert await _put(j, [("c", b"5")]) == 5
    await j.close()
    assert [r.lsn for r in _all_records(path)] == [1, 2, 3, 4, 5]
    j, pending = await _reopen(path, 0)
    assert pending == [*want, Record(5, "kv", "c", "V0", 42, b"5")]
    await j.close()


async def test_reopen_when_everything_and_more_was_applied(tmp_path: Path) -> None:
    """The metadata may be ahead of the journal's end (its last frames were lost): LSNs
    go on after what was applied, and the hole behind them is no error, since
    everything in it was applied."""
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0)
    await _put(j, [("a", b"1"), ("b", b"2")])
    await j.close()
    j, pending = await _reopen(path, 10)
    assert pending == []
    assert await _put(j, [("c", b"3")]) == 11
    await j.close()
    j, pending = await _reopen(path, 10)
    assert pending == [Record(11, "kv", "c", "V0", 42, b"3")]
    await j.release(j.durable_lsn)
    assert _firsts(path) == [12]
    await j.close()


async def test_a_fresh_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "journal"
    j, pending = await _reopen(path, 0)
    assert pending == [] and path.is_dir()
    assert await _put(j, [("k", b"v")]) == 1
    await j.close()


# --- torn tails ---------------------------------------------------------------------------

#: What a crash (or junk) may leave after the frames of the last segment, as a function
#: of the segment's frames: a third frame cut short, or something that is no frame.
_TAILS: dict[str, Callable[[bytes], bytes]] = {
    "cut-mid-payload": lambda frames: frames[:-5],
    "cut-mid-header": lambda frames: frames[: _frame_end(frames, 2) + 10],
    "cut-after-header": lambda frames: frames[: _frame_end(frames, 2) + FRAME_HEADER],
    "garbage": lambda frames: frames + b"\x8f garbage \x01\x02" * 20,
    "partial-magic": lambda frames: frames + codec.MAGIC[:3],
    "bad-checksum-frame": lambda frames: frames + codec.frame_header(6, 1, b"payload") + b"paylOad",
    "nothing": lambda frames: frames,
}


def _frame_end(data: bytes, frames: int) -> int:
    off = 0
    for _ in range(frames):
        (length,) = struct.unpack_from("<I", data, off + 4)
        off += FRAME_HEADER + length
    return off


@pytest.mark.parametrize("zeros", [True, False], ids=["preallocated", "short-file"])
@pytest.mark.parametrize("damage", list(_TAILS))
async def test_a_torn_tail_is_cut_and_later_appends_are_read_back(
    tmp_path: Path, damage: str, zeros: bool
) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0)
    first = [("a", b"1"), ("b", b"22")]
    second = [("c", b"333")]
    third = [("d", b"4444"), ("e", b"5" * 100)]
    for batch in (first, second, third):
        await _put(j, batch)
    (seg,) = j.segment_files()
    await j.close()
    whole = seg.read_bytes()
    frames = whole[: codec.scan(whole).end]
    torn = _TAILS[damage](frames)
    if zeros:  # the segment's preallocated zeros after whatever was written
        torn += bytes(len(whole) - len(torn))
    seg.write_bytes(torn)
    # A cut inside the third frame loses it (it was never acknowledged); junk after
    # the third frame loses nothing.
    kept = 3 if len(torn.rstrip(b"\0")) < len(frames) else 5
    good_end = _frame_end(frames, 2 if kept == 3 else 3)

    j, pending = await _reopen(path, 0)
    want = (_records(1, first) + _records(3, second) + _records(4, third))[:kept]
    assert pending == want
    # Cut on disk, not just skipped: nothing but zeros is left behind the good frames.
    after = seg.read_bytes()
    assert after[:good_end] == frames[:good_end] and not any(after[good_end:])
    later = [("f", b"after"), ("g", b"")]
    assert await _put(j, later) == kept + 1
    await j.close()

    j, pending = await _reopen(path, 0)
    assert pending == [*want, *_records(kept + 1, later)]
    assert await _put(j, [("h", b"again")]) == kept + 3
    await j.close()
    assert [r.lsn for r in _all_records(path)] == list(range(1, kept + 4))


async def test_a_segment_torn_before_its_first_frame_ends(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0)
    await _put(j, [("a", b"1")])
    (seg,) = j.segment_files()
    await j.close()
    seg.write_bytes(seg.read_bytes()[:7])  # not even one whole header
    j, pending = await _reopen(path, 0)
    assert pending == []
    assert await _put(j, [("b", b"2")]) == 1
    await j.close()
    j, pending = await _reopen(path, 0)
    assert pending == [Record(1, "kv", "b", "V0", 42, b"2")]
    await j.close()


# --- segments -----------------------------------------------------------------------------


async def _segmented(path: Path, frames: int = 10) -> list[Path]:
    """A journal whose frames (one record of ~90 bytes each) fill segments of 256 bytes
    two at a time; closed again. Returns its segment files."""
    j, _ = await _reopen(path, 0, segment_bytes=256)
    for n in range(frames):
        assert await _put(j, [(f"k{n}", bytes([n]) * 40)]) == n + 1
    segs = j.segment_files()
    await j.close()
    return segs


async def test_rotation_makes_segments_named_by_their_first_lsn(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    segs = await _segmented(path)
    assert [s.name for s in segs] == [f"{n:020d}{SEGMENT_SUFFIX}" for n in (1, 3, 5, 7, 9)]
    assert sorted(path.iterdir()) == segs
    for s in segs:
        assert s.stat().st_size == 256
        first = int(s.name.removesuffix(SEGMENT_SUFFIX))
        assert _frame_firsts(s.read_bytes()) == [first, first + 1]
    j, pending = await _reopen(path, 0, segment_bytes=256)
    assert [(r.lsn, r.key) for r in pending] == [(n + 1, f"k{n}") for n in range(10)]
    assert await _put(j, [("next", bytes(40))]) == 11
    await j.close()
    j, pending = await _reopen(path, 0, segment_bytes=256)
    assert [r.lsn for r in pending] == list(range(1, 12))
    await j.close()


async def test_release_deletes_only_fully_applied_segments(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    await _segmented(path)
    j, _ = await _reopen(path, 0, segment_bytes=256)
    segs = _firsts(path)
    assert segs[:5] == [1, 3, 5, 7, 9]
    current = segs[-1]  # appends go here (9, or a fresh one the reopen started at 11)

    def on_disk() -> list[int]:
        firsts = _firsts(path)
        assert [p.name for p in j.segment_files()] == [f"{f:020d}{SEGMENT_SUFFIX}" for f in firsts]
        return firsts

    await j.release(0)
    assert on_disk() == segs
    await j.release(1)  # segment 1 holds lsn 2 too
    assert on_disk() == segs
    await j.release(2)
    assert on_disk() == segs[1:]
    await j.release(5)  # lsn 6, in segment 5, is not applied
    assert on_disk() == segs[2:]
    await j.release(8)
    assert on_disk() == segs[4:]
    await j.release(10)  # everything applied: the current segment stays
    assert on_disk() == [current]
    await j.release(1000)
    assert on_disk() == [current]
    assert await _put(j, [("more", bytes(40))]) == 11
    await j.close()
    j, pending = await _reopen(path, 10, segment_bytes=256)
    assert [r.lsn for r in pending] == [11]
    await j.close()


async def test_release_keeps_the_segment_being_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0, segment_bytes=256)
    for n in range(5):
        await _put(j, [(f"k{n}", bytes(40))])
        await j.release(j.durable_lsn)
        (seg,) = j.segment_files()
        assert seg.exists() and _firsts(path) == [int(seg.name.removesuffix(SEGMENT_SUFFIX))]
    await j.close()
    j, pending = await _reopen(path, 4, segment_bytes=256)
    assert [r.lsn for r in pending] == [5]
    await j.close()


async def test_a_missing_segment_is_an_error_unless_all_it_held_was_applied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal"
    segs = await _segmented(path)
    segs[2].unlink()  # lsn 5 and 6
    for applied in (0, 4, 5):
        with pytest.raises(StorageError, match="missing"):
            Journal(path, segment_bytes=256).open(applied)
    j, pending = await _reopen(path, 6, segment_bytes=256)
    assert [r.lsn for r in pending] == [7, 8, 9, 10]
    await j.close()


@pytest.mark.parametrize("where", ["first", "middle"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
async def test_damage_in_a_segment_that_is_not_the_last_is_an_error(
    tmp_path: Path, where: str, damage: str
) -> None:
    path = tmp_path / "journal"
    segs = await _segmented(path)
    seg = segs[0 if where == "first" else 2]
    data = bytearray(seg.read_bytes())
    end = codec.scan(bytes(data)).end
    if damage == "flip":
        data[FRAME_HEADER + 5] ^= 0x10
    elif damage == "truncate":  # the segment's last frame cut short, zeros behind it
        data[end - 3 :] = bytes(len(data) - end + 3)
    else:
        data[end : end + 4] = b"junk"
    seg.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="damaged"):
        Journal(path, segment_bytes=256).open(0)
    assert seg.read_bytes() == bytes(data)  # nothing cut in a segment that isn't last


async def test_a_corrupt_frame_in_the_last_segment_is_an_error_not_a_tail(tmp_path: Path) -> None:
    """A frame whose checksum holds but whose records don't parse is not a torn write
    (that would fail the checksum): it is damage, and nothing is cut."""
    path = tmp_path / "journal"
    segs = await _segmented(path)
    data = bytearray(segs[-1].read_bytes())
    found = codec.scan(bytes(data), int(segs[-1].name.split(".")[0]))
    bad = codec.frame_header(found.next_lsn or 1, 1, b"")  # one record counted, none there
    data[found.end : found.end + len(bad)] = bad
    segs[-1].write_bytes(bytes(data))
    with pytest.raises(StorageError):
        Journal(path, segment_bytes=256).open(0)
    assert segs[-1].read_bytes() == bytes(data)


async def test_a_foreign_file_name_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    await _segmented(path, frames=2)
    (path / f"notanumber{SEGMENT_SUFFIX}").write_bytes(b"")
    with pytest.raises(StorageError, match="not a journal segment"):
        Journal(path).open(0)


# --- a failed write -----------------------------------------------------------------------


async def test_a_failed_write_breaks_the_journal_for_good(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j, _ = await _reopen(path, 0)
    assert await _put(j, [("kept", b"1")]) == 1
    (seg,) = j.segment_files()
    before = seg.read_bytes()
    # Make the segment's descriptor refuse writes: a real EBADF from the kernel. (dup2
    # over it rather than closing it, so the number can't be reused by another file
    # meanwhile, and close() still closes a descriptor of ours.)
    ro = os.open(seg, os.O_RDONLY)
    try:
        os.dup2(ro, j._fd)
    finally:
        os.close(ro)
    hooked: list[int] = []
    flushing = j.submit(_pieces([("lost", b"2")]), 1, hooked.append)
    waiting = j.submit(_pieces([("lost2", b"3")]), 1, hooked.append)
    for fut in (flushing, waiting):
        with pytest.raises(StorageError, match="journal write failed"):
            await fut
    assert isinstance(j.broken, OSError) and j.broken.errno == errno.EBADF
    assert hooked == []  # nothing failed was presented as durable
    assert j.durable_lsn == 1
    later = j.submit(_pieces([("later", b"4")]), 1, hooked.append)
    assert later.done()
    with pytest.raises(StorageError, match="journal unusable"):
        await later
    await j.wait_idle()
    assert not _busy(j)
    await j.close()
    assert seg.read_bytes() == before

    # What was durable before the failure is still there; a new Journal works again.
    j, pending = await _reopen(path, 0)
    assert pending == [Record(1, "kv", "kept", "V0", 42, b"1")]
    assert j.broken is None
    assert await _put(j, [("again", b"5")]) == 2
    await j.close()
