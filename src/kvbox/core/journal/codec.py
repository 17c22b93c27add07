"""The journal's on-disk format: frames of small writes, without I/O.

Layer: core (pure: bytes in, bytes and records out; ``journal.log`` does the I/O).

A journal segment is a sequence of *frames*. One frame is what one flush wrote and
fsync'd, so a crash can tear only the last frame of the last segment, and a frame is
acknowledged whole or not at all. The reader therefore trusts a frame only if its header
and its CRC-32 over the payload check out, and stops at the first one that doesn't.

    frame   := header payload
    header  := magic "KVJ2" | payload length u32 | crc u32 | first lsn u64
               | record count u32                           (little-endian, 24 bytes)
    crc     := CRC-32 of (first lsn u64 | record count u32 | payload)
    payload := record*
    record  := bucket length u16 | key length u16 | version id length u8
               | value length u32 | mtime ns u64 | value crc u32
               | bucket | key | version id | value
    value crc := CRC-32C of value (``kvbox.core.integrity.crc32c``)

A record carries its value's checksum from the moment the write arrived to the metadata
row it becomes (``ObjectVersion.inline_crc``), and the reader checks it too. Frames of
kvbox before the checksum (magic "KVJ1", records without ``value crc``) still read, so a
journal an unclean stop left behind replays after an upgrade; their records' values get
their checksum as they are read.

Records are numbered by their *log sequence number* (LSN): a frame's records have the
consecutive LSNs ``first lsn .. first lsn + count - 1``, and frames follow each other in
LSN order, without gaps, across segments.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kvbox.core.integrity import crc32c

MAGIC: Final = b"KVJ2"
#: Frames written before records carried their value's checksum.
MAGIC_V1: Final = b"KVJ1"
_FRAME: Final = struct.Struct("<4sIIQI")
_RECORD: Final = struct.Struct("<HHBIQI")
_RECORD_V1: Final = struct.Struct("<HHBIQ")
FRAME_HEADER: Final = _FRAME.size
#: A frame larger than this is corrupt, whatever its header says (the writer never
#: builds one: it cuts flushes long before).
MAX_FRAME: Final = 1 << 30
#: Field limits the encoding can carry: S3 keys are at most 1,024 bytes of UTF-8 and
#: bucket names 63; journaled values are small (inline) ones.
MAX_KEY: Final = 0xFFFF
MAX_VALUE: Final = 0xFFFFFFFF

_pack_record = _RECORD.pack


@dataclass(frozen=True, slots=True)
class Record:
    """One journaled write: ``value`` became the newest (null) version of ``key``.
    ``crc`` is its CRC-32C: the record's own, or (not given: a record of a "KVJ1"
    frame, which had none) computed from ``value`` here."""

    lsn: int
    bucket: str
    key: str
    version_id: str
    mtime_ns: int
    value: bytes
    crc: int = -1

    def __post_init__(self) -> None:
        if self.crc < 0:
            object.__setattr__(self, "crc", crc32c(self.value))


def record_pieces(
    bucket: bytes, key: bytes, version_id: bytes, mtime_ns: int, value: bytes, crc: int
) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The pieces of one record, to be joined into a payload with the others (the value
    is copied once, when the frame is built)."""
    return (
        _pack_record(len(bucket), len(key), len(version_id), len(value), mtime_ns, crc),
        bucket,
        key,
        version_id,
        value,
    )


_COVERED: Final = struct.Struct("<QI")


def _crc(first_lsn: int, count: int, payload: bytes | memoryview) -> int:
    """The frame's checksum, over the header fields that say which records it holds
    as well as over the records themselves."""
    return zlib.crc32(payload, zlib.crc32(_COVERED.pack(first_lsn, count)))


def frame_header(first_lsn: int, count: int, payload: bytes) -> bytes:
    return _FRAME.pack(MAGIC, len(payload), _crc(first_lsn, count, payload), first_lsn, count)


def encode_frame(first_lsn: int, records: Sequence[Record]) -> bytes:
    """A whole frame (tests and tools; the server joins pieces instead)."""
    pieces: list[bytes] = []
    for r in records:
        pieces.extend(
            record_pieces(
                r.bucket.encode(), r.key.encode(), r.version_id.encode(), r.mtime_ns, r.value, r.crc
            )
        )
    payload = b"".join(pieces)
    return frame_header(first_lsn, len(records), payload) + payload


def encode_frame_v1(first_lsn: int, records: Sequence[Record]) -> bytes:
    """A whole frame as kvbox wrote them before records carried their checksum (tests
    of upgrades: such a journal must still replay)."""
    pieces: list[bytes] = []
    for r in records:
        b, k, vid = r.bucket.encode(), r.key.encode(), r.version_id.encode()
        pieces += [_RECORD_V1.pack(len(b), len(k), len(vid), len(r.value), r.mtime_ns)]
        pieces += [b, k, vid, r.value]
    payload = b"".join(pieces)
    return (
        _FRAME.pack(MAGIC_V1, len(payload), _crc(first_lsn, len(records), payload), first_lsn,
                    len(records))
        + payload
    )  # fmt: skip


class CorruptFrame(ValueError):
    """A frame whose checksum matched but whose records don't parse: not a torn write
    (the CRC would have caught that) but a bug or deliberate damage."""


@dataclass(frozen=True, slots=True)
class Scan:
    """What a buffer holds: its whole frames' records, in order, and where they end.

    ``end < len(data)`` means the rest is not a whole, valid frame: a torn write (the
    normal end of a crashed segment) or damage; ``problem`` says which check failed.
    ``next_lsn`` is the LSN the frame after ``end`` would have to start with.
    """

    records: list[Record]
    end: int
    next_lsn: int | None
    problem: str | None


def scan(data: bytes | memoryview, expect_lsn: int | None = None) -> Scan:
    """Decode the frames of ``data`` up to the first bad one.

    ``expect_lsn`` (if known) is the LSN the first frame must start with; a frame that
    breaks the sequence ends the scan like a bad checksum does.
    """
    view = memoryview(data)
    records: list[Record] = []
    off = 0
    n = len(view)
    lsn = expect_lsn
    while off < n:
        if n - off < FRAME_HEADER:
            return Scan(records, off, lsn, "truncated frame header")
        magic, length, crc, first, count = _FRAME.unpack_from(view, off)
        if magic != MAGIC and magic != MAGIC_V1:
            return Scan(records, off, lsn, "bad frame magic")
        if length > MAX_FRAME or off + FRAME_HEADER + length > n:
            return Scan(records, off, lsn, "truncated frame payload")
        payload = view[off + FRAME_HEADER : off + FRAME_HEADER + length]
        if _crc(first, count, payload) != crc:
            return Scan(records, off, lsn, "frame checksum mismatch")
        if lsn is not None and first != lsn:
            return Scan(records, off, lsn, f"frame starts at lsn {first}, expected {lsn}")
        records.extend(_decode_payload(payload, first, count, magic == MAGIC))
        off += FRAME_HEADER + length
        lsn = first + count
    return Scan(records, off, lsn, None)


def _decode_payload(payload: memoryview, first: int, count: int, crcs: bool) -> list[Record]:
    out: list[Record] = []
    off = 0
    n = len(payload)
    fmt = _RECORD if crcs else _RECORD_V1
    unpack = fmt.unpack_from
    size = fmt.size
    crc = -1
    try:
        for i in range(count):
            if crcs:
                lb, lk, lv, lval, mtime, crc = unpack(payload, off)
            else:
                lb, lk, lv, lval, mtime = unpack(payload, off)
            off += size
            end = off + lb + lk + lv + lval
            if end > n:
                raise CorruptFrame(f"record {first + i} runs past its frame")
            bucket = str(payload[off : off + lb], "utf-8")
            off += lb
            key = str(payload[off : off + lk], "utf-8")
            off += lk
            vid = str(payload[off : off + lv], "ascii")
            off += lv
            value = bytes(payload[off:end])
            if crcs and crc32c(value) != crc:
                raise CorruptFrame(f"record {first + i}: its value does not match its checksum")
            out.append(Record(first + i, bucket, key, vid, mtime, value, crc))
            off = end
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptFrame(f"frame at lsn {first}: {exc}") from exc
    if off != n:
        raise CorruptFrame(f"frame at lsn {first}: {n - off} bytes after its {count} records")
    return out
