"""The journal's frame format (kvbox.core.journal.codec), without any file.

Layer: tests of core (pure). What recovery relies on: encoded frames scan back to exactly
the records written; a buffer cut anywhere yields exactly the whole frames before the cut
and says something is wrong when it did not end on a frame boundary; damage to a payload
is caught by the CRC, a hole in the LSN sequence ends the scan, and a frame whose CRC
matches but whose records do not parse raises ``CorruptFrame`` rather than being mistaken
for a torn write.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.core.integrity import crc32c
from kvbox.core.journal import codec
from kvbox.core.journal.codec import (
    FRAME_HEADER,
    MAGIC,
    CorruptFrame,
    Record,
    encode_frame,
    frame_header,
    record_pieces,
    scan,
)

# --- strategies -------------------------------------------------------------------------

#: Any text UTF-8 can carry (no lone surrogates), including the empty string.
_unicode = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_version_ids = st.text(alphabet=string.digits + string.ascii_uppercase, max_size=26)
_mtimes = st.integers(0, 2**64 - 1)
_values = st.binary(max_size=300)

#: One record's fields but its LSN (which the frame it lands in decides).
_fields = st.tuples(_unicode, _unicode, _version_ids, _mtimes, _values)
Fields = tuple[str, str, str, int, bytes]


def _frames(
    first_lsn: int, batches: Sequence[Sequence[Fields]]
) -> tuple[bytes, list[Record], list[int]]:
    """``batches`` encoded as consecutive frames from ``first_lsn``: the bytes, every
    record with its LSN, and the offset where each frame ends."""
    out = bytearray()
    records: list[Record] = []
    ends: list[int] = []
    lsn = first_lsn
    for batch in batches:
        recs = [Record(lsn + i, *f) for i, f in enumerate(batch)]
        out += encode_frame(lsn, recs)
        ends.append(len(out))
        records.extend(recs)
        lsn += len(recs)
    return bytes(out), records, ends


def _three_frames() -> tuple[bytes, list[Record], list[int]]:
    return _frames(
        7,
        [
            [("kv", "a", "V1", 1, b"one"), ("kv", "ü/€", "V2", 2, b"")],
            [("kv", "b", "V3", 3, b"\x00\xff" * 5)],
            [("bk", "c", "", 2**64 - 1, b"x"), ("bk", "", "V5", 0, b"yz"), ("bk", "d", "", 5, b"")],
        ],
    )


# --- round trips ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**40), st.lists(st.lists(_fields, max_size=8), max_size=6))
def test_frames_round_trip(first: int, batches: list[list[Fields]]) -> None:
    data, records, _ = _frames(first, batches)
    for expect in (first, None):
        found = scan(data, expect)
        assert found.records == records
        assert found.end == len(data)
        assert found.problem is None
        assert found.next_lsn == (first + len(records) if batches else expect)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(_unicode, st.binary(max_size=8)), min_size=100, max_size=300))
def test_one_frame_with_many_records(pairs: list[tuple[str, bytes]]) -> None:
    fields = [("kv", key, f"V{i}", i, value) for i, (key, value) in enumerate(pairs)]
    data, records, _ = _frames(1, [fields])
    found = scan(data, 1)
    assert found.records == records and found.next_lsn == 1 + len(fields)


def test_scan_accepts_a_memoryview_and_copies_values_out() -> None:
    data, records, _ = _three_frames()
    buf = bytearray(data)
    found = scan(memoryview(buf), 7)
    assert found.records == records
    buf[:] = bytes(len(buf))  # the records must not be views of the buffer
    assert found.records == records
    assert all(type(r.value) is bytes for r in found.records)


def test_encode_frame_numbers_records_from_first_lsn_whatever_they_say() -> None:
    frame = encode_frame(100, [Record(1, "kv", "k", "V", 9, b"v")])
    assert scan(frame).records == [Record(100, "kv", "k", "V", 9, b"v")]


def test_empty_buffer_and_empty_frame() -> None:
    assert scan(b"", 5) == codec.Scan([], 0, 5, None)
    assert scan(b"") == codec.Scan([], 0, None, None)
    empty = encode_frame(5, [])
    assert len(empty) == FRAME_HEADER
    found = scan(empty, 5)
    assert found.records == [] and found.end == FRAME_HEADER and found.problem is None


# --- torn writes ----------------------------------------------------------------------


def test_every_truncation_keeps_exactly_the_whole_frames_before_it() -> None:
    data, records, ends = _three_frames()
    boundaries = [0, *ends]
    lsns = [7, 9, 10, 13]  # the LSN each frame starts with; 13 follows the last
    counts = [0, 2, 3, 6]  # records in the frames before each boundary
    for cut in range(len(data) + 1):
        whole = max(i for i, b in enumerate(boundaries) if b <= cut)
        found = scan(data[:cut], 7)
        assert found.end == boundaries[whole], cut
        assert found.records == records[: counts[whole]], cut
        assert found.next_lsn == lsns[whole], cut
        if cut == boundaries[whole]:
            assert found.problem is None, cut
        else:
            assert found.problem is not None, cut
            assert "truncated" in found.problem, (cut, found.problem)


@pytest.mark.parametrize("tail", [b"\x00" * 100, b"K", b"KVJ1", b"garbage that is no frame"])
def test_junk_after_the_last_frame_is_reported_not_read(tail: bytes) -> None:
    data, records, ends = _three_frames()
    found = scan(data + tail, 7)
    assert found.records == records and found.end == ends[-1]
    assert found.problem is not None


# --- damage ---------------------------------------------------------------------------


def test_a_flipped_byte_in_any_payload_fails_the_checksum() -> None:
    data, records, ends = _three_frames()
    starts = [0, *ends[:-1]]
    counts = [0, 2, 3]
    for frame, (start, end) in enumerate(zip(starts, ends, strict=True)):
        for off in range(start + FRAME_HEADER, end):
            damaged = bytearray(data)
            damaged[off] ^= 0x01
            found = scan(bytes(damaged), 7)
            assert found.problem == "frame checksum mismatch", off
            assert found.end == start, off
            assert found.records == records[: counts[frame]], off


def test_a_flipped_checksum_or_magic_byte_ends_the_scan() -> None:
    data, records, ends = _three_frames()
    start = ends[0]  # damage the second frame's header
    for off, problem in [
        (start + 0, "bad frame magic"),
        (start + 3, "bad frame magic"),
        (start + 8, "frame checksum mismatch"),
        (start + 11, "frame checksum mismatch"),
    ]:
        damaged = bytearray(data)
        damaged[off] ^= 0x40
        found = scan(bytes(damaged), 7)
        assert (found.problem, found.end, found.records) == (problem, start, records[:2])


def test_a_payload_length_past_the_buffer_is_a_truncated_frame() -> None:
    data, records, ends = _three_frames()
    damaged = bytearray(data)
    damaged[ends[1] + 4 : ends[1] + 8] = (1 << 29).to_bytes(4, "little")
    found = scan(bytes(damaged), 7)
    assert found.problem == "truncated frame payload"
    assert found.end == ends[1] and found.records == records[:3]
    damaged[ends[1] + 4 : ends[1] + 8] = (0xFFFFFFFF).to_bytes(4, "little")  # > MAX_FRAME
    assert scan(bytes(damaged), 7).problem == "truncated frame payload"


def test_an_lsn_gap_is_reported() -> None:
    one = encode_frame(1, [Record(1, "kv", "a", "V", 1, b"1"), Record(2, "kv", "b", "V", 1, b"")])
    skips = encode_frame(4, [Record(4, "kv", "c", "V", 1, b"3")])  # lsn 3 is missing
    for expect in (1, None):
        found = scan(one + skips, expect)
        assert [r.key for r in found.records] == ["a", "b"]
        assert found.end == len(one) and found.next_lsn == 3
        assert found.problem == "frame starts at lsn 4, expected 3"
    overlaps = encode_frame(2, [Record(2, "kv", "c", "V", 1, b"3")])
    assert scan(one + overlaps, 1).problem == "frame starts at lsn 2, expected 3"


def test_the_first_frame_must_start_at_the_expected_lsn() -> None:
    frame = encode_frame(10, [Record(10, "kv", "a", "V", 1, b"1")])
    found = scan(frame, 9)
    assert found.records == [] and found.end == 0 and found.next_lsn == 9
    assert found.problem == "frame starts at lsn 10, expected 9"


def _crc_ok_frame(payload: bytes, count: int, first: int = 1) -> bytes:
    """A frame whose header (checksum included) is right for ``payload``, whatever the
    payload holds."""
    return frame_header(first, count, payload) + payload


def _record(bucket: bytes, key: bytes, vid: bytes, value: bytes) -> bytes:
    return b"".join(record_pieces(bucket, key, vid, 1, value, crc32c(value)))


_GOOD = _record(b"kv", b"k", b"V", b"value")


@pytest.mark.parametrize(
    ("payload", "count"),
    [
        pytest.param(_GOOD, 2, id="fewer-records-than-counted"),
        pytest.param(_GOOD + _GOOD, 1, id="bytes-after-the-records"),
        pytest.param(_GOOD[:-1], 1, id="value-runs-past-the-frame"),
        pytest.param(_GOOD[:10], 1, id="record-header-cut"),
        pytest.param(_record(b"kv", b"\xff\xfe", b"V", b""), 1, id="key-not-utf8"),
        pytest.param(_record(b"\xc3", b"k", b"V", b""), 1, id="bucket-not-utf8"),
        pytest.param(_record(b"kv", b"k", "é".encode(), b""), 1, id="version-not-ascii"),
        pytest.param(b"", 1, id="empty-payload-one-record"),
    ],
)
def test_a_frame_with_a_good_checksum_that_does_not_parse_raises(
    payload: bytes, count: int
) -> None:
    good = encode_frame(1, [Record(1, "kv", "before", "V", 1, b"")])
    bad = _crc_ok_frame(payload, count, first=2)
    with pytest.raises(CorruptFrame):
        scan(good + bad, 1)


@pytest.mark.parametrize("field", ["count", "lsn"])
def test_a_damaged_record_count_or_lsn_fails_the_checksum(field: str) -> None:
    """The CRC covers the header fields that say which records a frame holds, so a
    changed count or first LSN ends the scan at that frame like any damage."""
    data, records, ends = _three_frames()
    damaged = bytearray(data)
    if field == "count":
        damaged[ends[0] + 20 : ends[0] + 24] = (2).to_bytes(4, "little")  # it holds 1
    else:
        first = int.from_bytes(damaged[ends[0] + 12 : ends[0] + 20], "little")
        damaged[ends[0] + 12 : ends[0] + 20] = (first + 1).to_bytes(8, "little")
    found = scan(bytes(damaged), None)
    assert found.problem == "frame checksum mismatch"
    assert found.end == ends[0]
    assert found.records == records[:2]  # the first frame's, before the damaged one


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_never_raise_anything_but_corrupt_frame(junk: bytes, magic: bool) -> None:
    data, records, ends = _three_frames()
    tail = MAGIC + junk if magic else junk
    try:
        found = scan(data + tail, 7)
    except CorruptFrame:
        return
    assert found.records[: len(records)] == records
    assert found.end >= ends[-1]
    assert (found.problem is None) == (found.end == len(data + tail))
