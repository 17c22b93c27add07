"""Versioning rules shared by every MetaStore implementation: pure functions, no I/O.

Layer: core. Rules: what a write *means* (which version it replaces, whether a
condition holds, how a delete marker looks) is decided here once, so the SQLite and the
in-memory store cannot drift apart on S3 semantics; the stores only decide *how* to
apply it. ``tests/core/meta/test_conformance.py`` pins the behaviour.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from kvbox.core.model import (
    EMPTY_ATTRS,
    NULL_VERSION,
    Condition,
    CondKind,
    DeleteOp,
    ObjectVersion,
    VersionIdGenerator,
    Versioning,
)
from kvbox.errors import InvalidArgument

CHUNK_ID = re.compile(r"[0-9a-f]{64}")

#: The largest code point; a prefix ending in it has no "next" string of equal length.
_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def condition_holds(cond: Condition | None, newest: ObjectVersion | None) -> bool:
    """Whether ``cond`` holds against the key's newest version.

    A delete marker or no version at all counts as absent: ``IF_VERSION`` and
    ``IF_ETAG`` compare only against a live newest version, never against an older one
    hidden under a marker.
    """
    if cond is None:
        return True
    live = newest is not None and not newest.is_delete_marker
    if cond.kind is CondKind.IF_ABSENT:
        return not live
    if not live or newest is None:
        return False
    if cond.kind is CondKind.IF_VERSION:
        return newest.version_id == cond.value
    return newest.etag == cond.value


def check_version(version: ObjectVersion) -> None:
    """Refuse a version whose chunk ids are not content addresses.

    Chunk ids end up as file names in the blob store and as 32-byte keys in SQLite, so
    anything but 64 lowercase hex digits is a caller bug, caught before any write.
    """
    for ref in version.chunks:
        if CHUNK_ID.fullmatch(ref.chunk_id) is None:
            raise InvalidArgument(f"bad chunk id {ref.chunk_id!r}")
        if ref.size < 0:
            raise InvalidArgument(f"bad chunk size {ref.size}")


def stamp(version: ObjectVersion, seq: int, is_null: bool) -> ObjectVersion:
    """``version`` as committed: its ``seq`` assigned and ``is_null`` set by the bucket's
    versioning state at commit time (not by what the caller guessed when it built it)."""
    v = version
    return ObjectVersion(
        v.bucket,
        v.key,
        v.version_id,
        v.size,
        v.etag,
        v.mtime_ns,
        v.is_delete_marker,
        is_null,
        v.inline,
        v.chunks,
        v.content_type,
        v.attrs,
        seq,
    )


def delete_marker(op: DeleteOp, state: Versioning, ids: VersionIdGenerator) -> ObjectVersion:
    """The marker a versionless delete writes (ENABLED: a new version; SUSPENDED: the
    null version). Only the caller's version id, mtime and attrs are kept: a marker has
    no bytes, whatever the caller put in it."""
    m = op.marker
    return ObjectVersion(
        bucket=op.bucket,
        key=op.key,
        version_id=m.version_id if m is not None else ids.new(),
        mtime_ns=m.mtime_ns if m is not None and m.mtime_ns else time.time_ns(),
        is_delete_marker=True,
        is_null=state is not Versioning.ENABLED,
        content_type=m.content_type if m is not None else "application/octet-stream",
        attrs=m.attrs if m is not None else EMPTY_ATTRS,
    )


def check_versioning_change(current: Versioning, new: Versioning) -> None:
    """S3 never lets a bucket go back to "never versioned" once versioning was on."""
    if new is Versioning.OFF and current is not Versioning.OFF:
        raise InvalidArgument("versioning cannot be turned off once enabled; suspend it")


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    UTF-8 byte order equals code point order, so incrementing the last code point that
    can be incremented gives an exclusive upper bound for an index range scan; None if
    there is no bound (empty prefix, or only U+10FFFF characters).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last == _MAX_CHAR:
            continue
        nxt = last + 1
        if nxt in _SURROGATES:
            nxt = _SURROGATES.stop
        return "".join(chars) + chr(nxt)
    return None


def check_chunk_ids(chunk_ids: Iterable[str]) -> None:
    """Chunk ids are 64 lowercase hex digits; anything else is InvalidArgument."""
    for cid in chunk_ids:
        if CHUNK_ID.fullmatch(cid) is None:
            raise InvalidArgument(f"bad chunk id {cid!r}")


def after_version_marker(newest_first: list[ObjectVersion], marker: str) -> list[ObjectVersion]:
    """The versions of the ``key-marker`` key that come after ``version-id-marker`` in a
    version listing. An empty marker skips the whole key (S3's rule); so does a marker
    that is gone (deleted between two pages), rather than failing the listing."""
    for i, v in enumerate(newest_first):
        if marker and (v.version_id == marker or (v.is_null and marker == NULL_VERSION)):
            return newest_first[i + 1 :]
    return []


def merge_attrs(old: Mapping[str, str], changes: Mapping[str, str | None]) -> Mapping[str, str]:
    """``old`` with ``changes`` applied: a None value removes the name."""
    merged = dict(old)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return MappingProxyType(merged) if merged else EMPTY_ATTRS
