"""Plain data of the storage core: buckets, object versions, chunks, write operations.

Layer: core. Rules: frozen dataclasses and enums only; no I/O, no protocol knowledge.
Every front door (GW-KV, S3, console) and every MetaStore/BlobStore implementation
speaks in these types, so they are the contract between layers.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvbox.core.lock import LockChange

EMPTY_ATTRS: Mapping[str, str] = MappingProxyType({})


def _no_attrs() -> Mapping[str, str]:
    # dataclasses refuse an unhashable default (a mappingproxy), so hand out the one
    # shared, read-only empty mapping through a factory instead.
    return EMPTY_ATTRS


#: Version id S3 shows for versions written while versioning was not enabled.
NULL_VERSION = "null"


class Versioning(enum.StrEnum):
    """The three states of a bucket's versioning, exactly as S3 has them.

    A bucket starts ``OFF`` (S3's "never enabled"); once ``ENABLED`` it can only go to
    ``SUSPENDED`` and back, never to ``OFF`` again.
    """

    OFF = "off"
    ENABLED = "enabled"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    owner: str = "root"
    created_ns: int = 0
    versioning: Versioning = Versioning.OFF
    #: Room for later bucket settings (policy, CORS, website) as opaque JSON strings.
    attrs: Mapping[str, str] = field(default_factory=_no_attrs)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One content-addressed chunk of an object's bytes, in order."""

    chunk_id: str  # lowercase hex SHA-256 of the chunk's bytes
    size: int


@dataclass(slots=True)
class ObjectVersion:
    """One version of a key: its bytes (inline or as chunks) and its metadata.

    Treat it as immutable once built. It is not ``frozen`` only because a frozen
    dataclass's ``__init__`` costs three times as much (1.6 µs against 0.5 µs measured)
    and every write builds two of them.

    ``version_id`` is unique per write, in every versioning state: S3 shows it as
    ``x-amz-version-id`` only when the version was written with versioning enabled
    (``is_null`` false), but GW-KV compare-and-set always uses it, so it never suffers
    from ABA the way an ETag would.
    """

    bucket: str
    key: str
    version_id: str
    size: int = 0
    etag: str = ""  # hex MD5 of the bytes for single-part writes, S3-style
    mtime_ns: int = 0
    is_delete_marker: bool = False
    is_null: bool = False
    inline: bytes | None = None
    chunks: tuple[ChunkRef, ...] = ()
    content_type: str = "application/octet-stream"
    attrs: Mapping[str, str] = field(default_factory=_no_attrs)
    #: Commit order assigned by the MetaStore (0 until committed). Newest = largest.
    seq: int = 0
    #: CRC-32C of ``inline`` (``kvbox.core.integrity.crc32c``), computed when the value
    #: entered the Store and kept with it from then on; None: no inline value, or not
    #: computed yet (the MetaStore computes it before it stores the row).
    inline_crc: int | None = None

    @property
    def s3_version_id(self) -> str:
        return NULL_VERSION if self.is_null else self.version_id


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """An S3 multipart upload in progress: where its object will go and what it keeps."""

    bucket: str
    key: str
    upload_id: str
    initiated_ns: int = 0
    content_type: str = "application/octet-stream"
    attrs: Mapping[str, str] = field(default_factory=_no_attrs)


@dataclass(frozen=True, slots=True)
class Part:
    """One uploaded part: its bytes are chunks the part holds a reference to, so they
    become the object's chunks on completion without being copied."""

    part_number: int
    etag: str  # hex MD5 of the part's bytes
    size: int
    chunks: tuple[ChunkRef, ...] = ()
    mtime_ns: int = 0
    attrs: Mapping[str, str] = field(default_factory=_no_attrs)


# --- write operations: what MetaStore.commit() takes --------------------------------


class CondKind(enum.Enum):
    IF_ABSENT = "if-absent"  # no live (non-delete-marker) newest version
    IF_VERSION = "if-version"  # newest live version has this version_id
    IF_ETAG = "if-etag"  # newest live version has this etag (S3 If-Match)
    # The named version is not the key's newest (marker or not): lifecycle removes a
    # noncurrent version only while it is still noncurrent.
    IF_NOT_NEWEST = "if-not-newest"


@dataclass(frozen=True, slots=True)
class Condition:
    kind: CondKind
    value: str = ""


@dataclass(frozen=True, slots=True)
class PutOp:
    """Write ``version`` as the newest version of its key.

    With versioning ENABLED the version is appended. Otherwise (OFF or SUSPENDED) the
    version is a "null" version (``is_null`` must be set by the caller) and it replaces
    the key's previous null version, if any; other versions stay.
    """

    version: ObjectVersion
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete a key, S3-style.

    With ``version_id`` set: remove that version for good. Without: in an ENABLED
    bucket append ``marker`` (a delete marker); in a SUSPENDED bucket replace the null
    version with ``marker`` (is_null); in an OFF bucket remove the null version.

    In a bucket with object lock a version named by ``version_id`` is removed only if
    ``kvbox.core.lock`` allows it at ``now_ns`` with ``bypass_governance`` (else
    ``ObjectLocked``), decided in the transaction that removes it.
    """

    bucket: str
    key: str
    version_id: str | None = None
    marker: ObjectVersion | None = None
    condition: Condition | None = None
    bypass_governance: bool = False
    #: The time object lock judges the removal at (the writer's clock); 0: the commit's.
    now_ns: int = 0


@dataclass(frozen=True, slots=True)
class PurgeOp:
    """Remove every version of a key (cache eviction, admin)."""

    bucket: str
    key: str


@dataclass(frozen=True, slots=True)
class AtomicOp:
    """Several puts/deletes applied all-or-nothing (GW-KV MULTISET).

    Sub-ops see each other's effects in order. Its one WriteResult gathers the
    sub-results (``not_found`` if any sub-op had it); if any condition fails, nothing is
    applied and the result is ``ok`` false with that sub-op's ``current``.
    """

    ops: tuple[PutOp | DeleteOp, ...]


@dataclass(frozen=True, slots=True)
class SetAttrsOp:
    """Replace the ``attrs`` of one stored version in place (S3 tagging and ACLs).

    ``version_id`` None means the newest version. Size, bytes, ETag, ``mtime_ns`` and
    ``seq`` stay: S3 changes neither the version nor Last-Modified when tags or an ACL
    change. A missing version or a delete marker gives ``not_found`` and no change.
    Not allowed inside an ``AtomicOp``.

    In a bucket with object lock the version's lock entries stay as stored whatever
    ``attrs`` holds; only ``lock_change`` changes them (and then ``attrs`` is unused),
    as ``kvbox.core.lock`` allows, decided in the transaction that writes them.
    """

    bucket: str
    key: str
    version_id: str | None
    attrs: Mapping[str, str]
    lock_change: LockChange | None = None


WriteOp = PutOp | DeleteOp | PurgeOp | AtomicOp | SetAttrsOp


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one WriteOp.

    ``ok`` false means the condition failed (nothing written); ``current`` then holds the
    newest version at the time (None if the key had none). ``freed_chunks`` lists chunks
    whose reference count fell to zero, which the caller may delete from the BlobStore.
    ``written`` holds the committed versions (with ``seq`` set), ``removed`` the versions
    that were removed for good. ``not_found`` is set by a delete of a missing version.
    """

    ok: bool
    written: tuple[ObjectVersion, ...] = ()
    removed: tuple[ObjectVersion, ...] = ()
    current: ObjectVersion | None = None
    freed_chunks: tuple[str, ...] = ()
    not_found: bool = False


@dataclass(frozen=True, slots=True)
class BucketStats:
    objects: int  # keys whose newest version is not a delete marker
    bytes: int  # sum of those newest versions' sizes


# --- version ids ----------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Every 10-bit value as two Crockford digits: 80 random bits are 8 lookups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


class VersionIdGenerator:
    """ULID-style ids: 48-bit milliseconds + 80 bits, monotonic within a process.

    26 characters of Crockford base 32: 10 for the milliseconds (cached, they change at
    most once per millisecond) and 16 for the 80-bit counter. This runs once per write, so
    it avoids per-character loops. Lexicographic order follows creation order inside one
    process, which makes version ids readable in listings; correctness never depends on it
    (``seq`` orders versions).

    The random part comes from a PRNG seeded by the OS once, not from ``os.urandom``
    each millisecond: that syscall lets go of the GIL, and on the event loop's thread
    taking it back behind the metadata writer cost tens of microseconds per write.
    Ids must be unique, not unguessable.
    """

    def __init__(self) -> None:
        self._rng = random.Random()  # seeded from os.urandom
        self._lock = threading.Lock()
        self._last_ms = -1
        self._rand = 0
        self._head_of = -1  # the value of rand >> 10 that _head was built for
        self._head = ""

    def new(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                self._rand = r = (self._rand + 1) & ((1 << 80) - 1)
            else:
                self._last_ms = ms
                self._rand = r = self._rng.getrandbits(79)
                self._head_of = -1
            if r >> 10 != self._head_of:
                self._rehead(r)
            return self._head + _PAIRS[r & 1023]

    def new_many(self, n: int) -> list[str]:
        """``n`` ids, as ``n`` calls of ``new`` would give them, for a quarter of the
        cost: one lock, one clock read, and string work only per 1,024 ids."""
        out: list[str] = []
        if n <= 0:
            return out
        pairs = _PAIRS
        with self._lock:
            r = self._advance(n)
            end = r + n
            while r < end:
                # Ids up to the next multiple of 1,024 share everything but their last
                # two characters: one head, then a slice of the pairs table.
                block_end = min(end, ((r >> 10) + 1) << 10)
                if r >> 10 != self._head_of:
                    self._rehead(r)
                head = self._head
                lo = r & 1023
                out += [head + tail for tail in pairs[lo : lo + block_end - r]]
                r = block_end
        return out

    def _advance(self, n: int) -> int:
        """Reserve ``n`` consecutive counter values; returns the first."""
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            r = (self._rand + 1) & ((1 << 80) - 1)
        else:
            self._last_ms = ms
            r = self._rng.getrandbits(79)  # room for 2**79 ids before the counter wraps
            self._head_of = -1
        if r + n - 1 >= 1 << 80:  # wrapping: start over at 0 (still unique per ms)
            r = 0
            self._head_of = -1
        self._rand = r + n - 1
        return r

    def _rehead(self, r: int) -> None:
        # Everything but the last two characters changes once per 1,024 ids.
        self._head_of = r >> 10
        p = _PAIRS
        self._head = (
            "".join(_CROCKFORD[(self._last_ms >> sh) & 31] for sh in range(45, -1, -5))
            + p[r >> 70] + p[(r >> 60) & 1023] + p[(r >> 50) & 1023]
            + p[(r >> 40) & 1023] + p[(r >> 30) & 1023] + p[(r >> 20) & 1023]
            + p[(r >> 10) & 1023]
        )  # fmt: skip
