"""What a metadata write means, decided once for every backend.

Layer: core (no I/O of its own: everything it reads and writes goes through one
``MetaTxn``). Rules: S3's versioning (null versions replaced in place, versions
appended, delete markers, removal by version id and what becomes the newest version
then), conditions, ``AtomicOp``, in-place attrs rewrites, multipart completion (the parts'
references move to the version), chunk reference counting and which chunks a write
frees, bucket and user changes: all of it lives here, so the SQLite, the memory and the
PostgreSQL store cannot drift apart on semantics; a backend only decides *how* to
store (``txn``). ``tests/core/meta/test_conformance*.py`` and ``test_differential.py``
pin the behaviour.

Every function checks before it changes anything: a ``KvboxError`` means nothing of
that call (or op) was written, except where a savepoint makes the change all-or-nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TypeVar

from kvbox.core import lock
from kvbox.core.integrity import crc32c
from kvbox.core.meta import users
from kvbox.core.meta.txn import KeyState, MetaTxn
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    EMPTY_ATTRS,
    NULL_VERSION,
    AtomicOp,
    Bucket,
    Condition,
    CondKind,
    DeleteOp,
    MultipartUpload,
    ObjectVersion,
    Part,
    PurgeOp,
    PutOp,
    SetAttrsOp,
    VersionIdGenerator,
    Versioning,
    WriteOp,
    WriteResult,
)
from kvbox.errors import (
    BucketNotEmpty,
    InvalidArgument,
    InvalidBucketState,
    InvalidPart,
    KvboxError,
    NoSuchBucket,
    NoSuchUpload,
)

CHUNK_ID = re.compile(r"[0-9a-f]{64}")

K = TypeVar("K", bound=KeyState)

#: The largest code point; a prefix ending in it has no "next" string of equal length.
_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)
_OFF, _ENABLED = Versioning.OFF, Versioning.ENABLED


# --- pure helpers ------------------------------------------------------------------------


def condition_holds(cond: Condition | None, newest: ObjectVersion | None) -> bool:
    """Whether ``cond`` holds against the key's newest version.

    A delete marker or no version at all counts as absent: ``IF_VERSION`` and
    ``IF_ETAG`` compare only against a live newest version, never against an older one
    hidden under a marker.
    """
    if cond is None:
        return True
    if cond.kind is CondKind.IF_NOT_NEWEST:
        return newest is None or newest.version_id != cond.value
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


def check_chunk_ids(chunk_ids: Iterable[str]) -> None:
    """Chunk ids are 64 lowercase hex digits; anything else is InvalidArgument."""
    for cid in chunk_ids:
        if CHUNK_ID.fullmatch(cid) is None:
            raise InvalidArgument(f"bad chunk id {cid!r}")


def stamp(v: ObjectVersion, seq: int, is_null: bool) -> ObjectVersion:
    """``v`` as committed: its ``seq`` assigned and ``is_null`` set by the bucket's
    versioning state at commit time (not by what the caller guessed when it built it)."""
    return ObjectVersion(
        v.bucket, v.key, v.version_id, v.size, v.etag, v.mtime_ns, v.is_delete_marker,
        is_null, v.inline, v.chunks, v.content_type, v.attrs, seq, value_crc(v),
    )  # fmt: skip


def value_crc(v: ObjectVersion) -> int | None:
    """The checksum stored with ``v``'s inline value: the one the value came with from
    the Store (``kvbox.core.integrity``), computed here only for a version built without
    it, so that every stored inline value has one."""
    if v.inline is None or v.inline_crc is not None:
        return v.inline_crc
    return crc32c(v.inline)


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


def keys_of(ops: Iterable[WriteOp]) -> Iterator[tuple[str, str]]:
    """The (bucket, key) pairs ``ops`` write, for a backend that loads them up front."""
    for op in ops:
        t = type(op)
        if t is PutOp:
            v = op.version  # type: ignore[union-attr]
            yield v.bucket, v.key
        elif t is AtomicOp:
            yield from keys_of(op.ops)  # type: ignore[union-attr]
        else:
            yield op.bucket, op.key  # type: ignore[union-attr]


def duplicate(version_id: str) -> InvalidArgument:
    """The error for a second version of a key with the same version id."""
    return InvalidArgument(f"version id {version_id} already exists for this key")


# --- helpers over a transaction -------------------------------------------------------------


def _bucket(txn: MetaTxn[K], name: str) -> Bucket:
    b = txn.bucket(name)
    if b is None:
        raise NoSuchBucket(name)
    return b


def _find(txn: MetaTxn[K], k: K, version_id: str) -> ObjectVersion | None:
    """A version of the key by its id; "null" names the null version."""
    if version_id == NULL_VERSION:
        return k.null
    newest = k.newest
    if newest is not None and newest.version_id == version_id:
        return newest
    null = k.null
    if null is not None and null.version_id == version_id:
        return null
    return txn.version(k, version_id)


def _count(
    txn: MetaTxn[K], k: K, before: ObjectVersion | None, after: ObjectVersion | None
) -> None:
    """The bucket's counters follow the key's newest version: counted while it is live."""
    old_live = before is not None and not before.is_delete_marker
    new_live = after is not None and not after.is_delete_marker
    objects = new_live - old_live
    nbytes = (after.size if new_live and after is not None else 0) - (
        before.size if old_live and before is not None else 0
    )
    if objects or nbytes:
        txn.count(k, objects, nbytes)


def correct_counts(txn: MetaTxn[K], bucket: str, objects: int, nbytes: int) -> None:
    """Move the bucket's counters by what ``MetaStore.recount`` found them off by."""
    if txn.bucket(bucket) is None:
        raise NoSuchBucket(bucket)
    if objects or nbytes:
        txn.count(txn.key(bucket, ""), objects, nbytes)


def _remove(
    txn: MetaTxn[K], k: K, state: Versioning, target: ObjectVersion, freed: list[str]
) -> None:
    """Remove ``target`` for good; if it was the newest, the next one takes its place:
    the null version or the newest non-null one, whichever is newer."""
    newest = k.newest
    after = None
    if target is newest:
        null = k.null
        after = null if null is not None and null is not target else None
        if state is not _OFF:  # a bucket never versioned holds only its null version
            other = txn.newest_other(k, target)
            if other is not None and (after is None or other.seq > after.seq):
                after = other
    if target.chunks:
        freed += txn.unref(target.chunks)
    txn.remove(k, target)
    if target is newest:
        txn.set_newest(k, after)
        _count(txn, k, newest, after)


def _check_id_free(txn: MetaTxn[K], k: K, state: Versioning, vid: str) -> None:
    """A key never has two versions with one id, except that a null write replaces the
    null version whatever its id. In an ENABLED bucket a clash with a non-null version
    is ``MetaTxn.insert``'s to report (a unique index does it for free)."""
    if state is _ENABLED:
        null = k.null
        if null is not None and null.version_id == vid:
            raise duplicate(vid)
        return
    newest = k.newest
    if state is not _OFF and newest is not None:  # SUSPENDED; OFF keys hold only the null
        if not newest.is_null and newest.version_id == vid:
            raise duplicate(vid)
        if txn.version(k, vid) is not None:
            raise duplicate(vid)


def _place(
    txn: MetaTxn[K], k: K, new: ObjectVersion
) -> tuple[tuple[ObjectVersion, ...], tuple[str, ...]]:
    """Make ``new`` (stamped) the key's newest version; a null ``new`` replaces the null
    version. Returns the versions removed and the chunks freed."""
    newest = k.newest
    null = k.null
    freed: list[str] = []
    if new.is_null and null is not None:
        if new.chunks:
            txn.ref(new.chunks)  # before the old ones go: a chunk in both never hits zero
        if null.chunks:
            freed = txn.unref(null.chunks)
        txn.replace(k, null, new)
        removed: tuple[ObjectVersion, ...] = (null,)
    else:
        txn.insert(k, new)  # first: it may refuse a duplicate id before anything changed
        if new.chunks:
            txn.ref(new.chunks)
        removed = ()
    txn.set_newest(k, new)
    if newest is None or newest.is_delete_marker or newest.size != new.size or new.is_delete_marker:
        _count(txn, k, newest, new)
    return removed, (tuple(sorted(freed)) if freed else ())


def restore(txn: MetaTxn[K], v: ObjectVersion) -> None:
    """Copy ``v`` as another store holds it (``kvbox migrate-to-cluster``): its version
    id, null-ness, time, attributes and checksum kept, only ``seq`` new. A key's
    versions arrive oldest first, so each becomes the key's newest, with references and
    counters as if it had just been written; no condition or object-lock rule applies
    (they held when it was written). The destination's own unique indexes still refuse
    a version id twice."""
    if txn.bucket(v.bucket) is None:
        raise NoSuchBucket(v.bucket)
    if v.chunks:
        check_version(v)
    _place(txn, txn.key(v.bucket, v.key), stamp(v, txn.next_seq(), v.is_null))


def restore_user(txn: MetaTxn[K], user: User, keys: Sequence[AccessKey]) -> None:
    """Copy a user and its access keys as they are (secrets, states and times kept)."""
    if txn.user(user.name) is not None:
        raise users.UserExists(user.name)
    txn.put_user(user)
    for key in keys:
        txn.put_key(key)


def _sorted(freed: list[str]) -> tuple[str, ...]:
    return tuple(sorted(freed)) if freed else ()


# --- write ops ----------------------------------------------------------------------------


def put(txn: MetaTxn[K], op: PutOp) -> WriteResult:
    """``op.version`` as the key's newest version (``model.PutOp``). The hot path of
    every write: kept flat."""
    v = op.version
    b = txn.bucket(v.bucket)
    if b is None:
        raise NoSuchBucket(v.bucket)
    if v.chunks:
        check_version(v)
    state = b.versioning
    k = txn.key(v.bucket, v.key)
    if op.condition is not None and not condition_holds(op.condition, k.newest):
        return WriteResult(False, current=k.newest)
    if state is not _OFF:
        _check_id_free(txn, k, state, v.version_id)
    attrs = v.attrs
    if b.attrs or attrs:  # object lock: refused without it, default retention with it
        attrs = lock.new_version_attrs(b, attrs, v.mtime_ns)
    new = ObjectVersion(
        v.bucket, v.key, v.version_id, v.size, v.etag, v.mtime_ns, v.is_delete_marker,
        state is not _ENABLED, v.inline, v.chunks, v.content_type, attrs, txn.next_seq(),
        value_crc(v),
    )  # fmt: skip
    removed, freed = _place(txn, k, new)
    return WriteResult(True, (new,), removed, None, freed)


def delete(txn: MetaTxn[K], op: DeleteOp) -> WriteResult:
    """S3 DeleteObject (``model.DeleteOp``), object lock's refusal included."""
    b = _bucket(txn, op.bucket)
    state = b.versioning
    k = txn.key(op.bucket, op.key)
    if op.condition is not None and not condition_holds(op.condition, k.newest):
        return WriteResult(False, current=k.newest)
    freed: list[str] = []
    if op.version_id is not None:
        target = _find(txn, k, op.version_id)
        if target is None:
            return WriteResult(True, not_found=True)
        if b.attrs and target.attrs and lock.config_of(b) is not None:
            now = op.now_ns or time.time_ns()
            lock.check_removal(target, now, bypass_governance=op.bypass_governance)
        _remove(txn, k, state, target, freed)
        return WriteResult(True, removed=(target,), freed_chunks=_sorted(freed))
    if state is _OFF:
        null = k.null
        if null is None:
            return WriteResult(True, not_found=True)
        _remove(txn, k, state, null, freed)
        return WriteResult(True, removed=(null,), freed_chunks=_sorted(freed))
    marker = delete_marker(op, state, txn.ids)
    _check_id_free(txn, k, state, marker.version_id)
    marker = stamp(marker, txn.next_seq(), marker.is_null)
    removed, gone = _place(txn, k, marker)
    return WriteResult(True, written=(marker,), removed=removed, freed_chunks=gone)


def purge(txn: MetaTxn[K], op: PurgeOp) -> WriteResult:
    """Every version of the key, gone (cache-mode eviction, admin)."""
    _bucket(txn, op.bucket)
    k = txn.key(op.bucket, op.key)
    newest = k.newest
    gone = txn.versions(k)
    if not gone:
        return WriteResult(True, not_found=True)
    freed: list[str] = []
    for v in gone:
        if v.chunks:
            freed += txn.unref(v.chunks)
        txn.remove(k, v)
    txn.set_newest(k, None)
    _count(txn, k, newest, None)
    return WriteResult(True, removed=tuple(gone), freed_chunks=_sorted(freed))


def set_attrs(txn: MetaTxn[K], op: SetAttrsOp) -> WriteResult:
    """A version's attrs rewritten in place (``model.SetAttrsOp``); its object lock
    entries only through ``op.lock_change`` (``kvbox.core.lock``)."""
    b = _bucket(txn, op.bucket)
    if op.lock_change is not None and lock.config_of(b) is None:
        raise InvalidBucketState("Bucket is missing Object Lock Configuration")
    if op.lock_change is None and lock.config_of(b) is None and lock.has_lock_attrs(op.attrs):
        raise InvalidArgument("object lock settings in a bucket without object lock")
    k = txn.key(op.bucket, op.key)
    target = k.newest if op.version_id is None else _find(txn, k, op.version_id)
    if target is None or target.is_delete_marker:
        return WriteResult(True, not_found=True)
    t = target
    if op.lock_change is not None:
        new_attrs: Mapping[str, str] = op.lock_change.applied(t.attrs)
    else:
        new_attrs = lock.rewritten_attrs(b, t.attrs, op.attrs)
    attrs = MappingProxyType(dict(new_attrs)) if new_attrs else EMPTY_ATTRS
    new = ObjectVersion(
        t.bucket, t.key, t.version_id, t.size, t.etag, t.mtime_ns, t.is_delete_marker,
        t.is_null, t.inline, t.chunks, t.content_type, attrs, t.seq, t.inline_crc,
    )  # fmt: skip
    txn.replace(k, target, new)
    return WriteResult(True, written=(new,))


def atomic(txn: MetaTxn[K], op: AtomicOp) -> WriteResult:
    """Sub-ops all-or-nothing: the first failed condition undoes the others."""
    for sub in op.ops:  # every bucket must exist, whatever the conditions say
        _bucket(txn, sub.version.bucket if isinstance(sub, PutOp) else sub.bucket)
    token = txn.savepoint()
    subs: list[WriteResult] = []
    try:
        for sub in op.ops:
            r = put(txn, sub) if isinstance(sub, PutOp) else delete(txn, sub)
            if not r.ok:
                txn.rollback_to(token)
                return WriteResult(False, current=r.current)
            subs.append(r)
            if r.written and not r.written[0].is_null:
                txn.check()  # a duplicate id fails at its sub-op, before later conditions
    except BaseException:
        txn.rollback_to(token)
        raise
    txn.release(token)
    return WriteResult(
        True,
        written=tuple(v for r in subs for v in r.written),
        removed=tuple(v for r in subs for v in r.removed),
        freed_chunks=tuple(sorted({c for r in subs for c in r.freed_chunks})),
        not_found=any(r.not_found for r in subs),
    )


def apply(txn: MetaTxn[K], op: WriteOp) -> WriteResult:
    """One op of a commit."""
    t = type(op)
    if t is PutOp:
        return put(txn, op)  # type: ignore[arg-type]
    if t is DeleteOp:
        return delete(txn, op)  # type: ignore[arg-type]
    if t is AtomicOp:
        return atomic(txn, op)  # type: ignore[arg-type]
    if t is PurgeOp:
        return purge(txn, op)  # type: ignore[arg-type]
    if t is SetAttrsOp:
        return set_attrs(txn, op)  # type: ignore[arg-type]
    raise InvalidArgument(f"not a write op: {op!r}")


def commit(
    txn: MetaTxn[K], ops: Sequence[WriteOp], journal_lsn: int | None = None
) -> list[WriteResult]:
    """``MetaStore.commit``: each op applied in order, independently (each through
    ``MetaTxn.isolated``, so that its failure stays its own); the first error is raised
    after the others were applied."""
    if journal_lsn is not None:
        txn.set_journal_lsn(journal_lsn)  # stored even when an op fails
    results: list[WriteResult] = []
    error: KvboxError | None = None
    any_freed = False
    for op in ops:
        try:
            if txn.isolating:
                r = txn.isolated(apply, op)
            elif type(op) is PutOp:
                r = put(txn, op)
            else:
                r = apply(txn, op)
        except KvboxError as exc:
            error = error or exc
            continue
        results.append(r)
        if r.freed_chunks:
            any_freed = True
    if error is not None:
        raise error
    if any_freed:
        _drop_reused(txn, results)
    return results


def _drop_reused(txn: MetaTxn[K], results: list[WriteResult]) -> None:
    """A chunk freed by one op and referenced again by a later op of the same call is
    not free: drop it from the earlier result, so its caller keeps the bytes."""
    freed = [c for r in results for c in r.freed_chunks]
    alive = txn.chunk_counts(freed)
    if not alive:
        return
    for i, r in enumerate(results):
        if r.freed_chunks and not alive.keys().isdisjoint(r.freed_chunks):
            results[i] = WriteResult(
                r.ok,
                r.written,
                r.removed,
                r.current,
                tuple(c for c in r.freed_chunks if c not in alive),
                r.not_found,
            )


# --- buckets ------------------------------------------------------------------------------


def create_bucket(txn: MetaTxn[K], bucket: Bucket) -> bool:
    if txn.bucket(bucket.name) is not None:
        return False
    txn.insert_bucket(bucket)
    return True


def delete_bucket(txn: MetaTxn[K], name: str) -> tuple[str, ...] | None:
    """``MetaStore.delete_bucket``: with its multipart uploads, or not at all."""
    if txn.bucket(name) is None:
        return None
    if txn.bucket_has_versions(name):
        raise BucketNotEmpty(name)
    freed: list[str] = []
    for upload_id in txn.bucket_uploads(name):
        _drop_upload(txn, upload_id, freed)
    txn.delete_bucket(name)
    return tuple(sorted(set(freed)))


def set_bucket_attrs(txn: MetaTxn[K], name: str, changes: Mapping[str, str | None]) -> Bucket:
    old = _bucket(txn, name)
    lock.check_config_change(old, changes)
    attrs = merge_attrs(old.attrs, changes)
    new = Bucket(old.name, old.owner, old.created_ns, old.versioning, attrs)
    txn.update_bucket(new)
    return new


def set_versioning(txn: MetaTxn[K], name: str, state: Versioning) -> None:
    old = _bucket(txn, name)
    lock.check_versioning(old, state)
    check_versioning_change(old.versioning, state)
    txn.update_bucket(Bucket(old.name, old.owner, old.created_ns, state, old.attrs))


# --- multipart uploads ----------------------------------------------------------------------


def _parts(txn: MetaTxn[K], upload_id: str) -> dict[int, Part]:
    if txn.upload(upload_id) is None:
        raise NoSuchUpload(upload_id)
    return txn.parts(upload_id)


def _drop_upload(txn: MetaTxn[K], upload_id: str, freed: list[str]) -> None:
    for p in txn.parts(upload_id).values():
        if p.chunks:
            freed += txn.unref(p.chunks)
    txn.delete_upload(upload_id)


def create_upload(txn: MetaTxn[K], upload: MultipartUpload) -> None:
    _bucket(txn, upload.bucket)
    if txn.upload(upload.upload_id) is not None:
        raise InvalidArgument(f"upload id {upload.upload_id} already exists")
    txn.insert_upload(upload)


def put_part(txn: MetaTxn[K], upload_id: str, part: Part) -> tuple[str, ...]:
    """The part (replacing one of its number) holds one reference to each of its
    chunks; returns the chunks the replaced part freed."""
    check_chunk_ids(ref.chunk_id for ref in part.chunks)
    old = _parts(txn, upload_id).get(part.part_number)
    if part.chunks:
        txn.ref(part.chunks)  # the new chunks before the old go: one in both stays
    txn.put_part(upload_id, part)
    freed: list[str] = []
    if old is not None and old.chunks:
        freed += txn.unref(old.chunks)
    return tuple(sorted(set(freed)))


def complete_upload(
    txn: MetaTxn[K],
    upload_id: str,
    version: ObjectVersion,
    parts: Sequence[tuple[int, str]],
    condition: Condition | None = None,
) -> WriteResult:
    """``MetaStore.complete_upload``: the version committed and the upload removed, as
    one; the parts' references move to the version, those of parts left out go. A
    ``condition`` that does not hold changes nothing, the upload included."""
    check_version(version)
    _bucket(txn, version.bucket)
    stored = _parts(txn, upload_id)
    for number, etag in parts:
        p = stored.get(number)
        if p is None or p.etag != etag:
            raise InvalidPart(f"part {number} was not uploaded or its ETag differs")
    token = txn.savepoint()
    try:
        r = put(txn, PutOp(version, condition))
        if not r.ok:  # the condition failed: nothing was written, the upload stays
            txn.release(token)
            return r
        txn.check()
        freed = list(r.freed_chunks)
        _drop_upload(txn, upload_id, freed)
    except BaseException:
        txn.rollback_to(token)
        raise
    txn.release(token)
    alive = txn.chunk_counts(freed)
    still = tuple(sorted({c for c in freed if c not in alive}))
    return WriteResult(True, r.written, r.removed, None, still)


def abort_upload(txn: MetaTxn[K], upload_id: str) -> tuple[str, ...]:
    _parts(txn, upload_id)
    freed: list[str] = []
    _drop_upload(txn, upload_id, freed)
    return tuple(sorted(set(freed)))


# --- fsck repairs ---------------------------------------------------------------------------


def drop_versions_with_chunks(txn: MetaTxn[K], chunk_ids: Sequence[str]) -> list[ObjectVersion]:
    """Every version that references one of ``chunk_ids``, removed for good."""
    check_chunk_ids(chunk_ids)
    doomed = txn.versions_with_chunks(chunk_ids)
    freed: list[str] = []
    for d in doomed:
        state = _bucket(txn, d.bucket).versioning
        k = txn.key(d.bucket, d.key)
        # The object the transaction holds for this version now (the scan's may be a
        # copy): removal goes by identity.
        target = _find(txn, k, d.s3_version_id)
        if target is not None and target.seq == d.seq:
            _remove(txn, k, state, target, freed)
    return doomed


def drop_uploads_with_chunks(txn: MetaTxn[K], chunk_ids: Sequence[str]) -> list[str]:
    """Every upload with a part that references one of ``chunk_ids``, aborted."""
    check_chunk_ids(chunk_ids)
    doomed = sorted(set(txn.uploads_with_chunks(chunk_ids)))
    freed: list[str] = []
    for upload_id in doomed:
        _drop_upload(txn, upload_id, freed)
    return doomed


# --- users and access keys ------------------------------------------------------------------


def _user(txn: MetaTxn[K], name: str) -> User:
    u = txn.user(name)
    if u is None:
        raise users.NoSuchUser(name)
    return u


def _key(txn: MetaTxn[K], access_key: str) -> AccessKey:
    k = txn.access_key(access_key)
    if k is None:
        raise users.NoSuchAccessKey(access_key)
    return k


def create_user(txn: MetaTxn[K], name: str, created_ns: int) -> User:
    users.check_user_name(name)
    if txn.user(name) is not None:
        raise users.UserExists(name)
    user = User(name, created_ns)
    txn.put_user(user)
    return user


def set_user_disabled(txn: MetaTxn[K], name: str, disabled: bool) -> None:
    u = _user(txn, name)
    txn.put_user(User(u.name, u.created_ns, disabled))


def delete_user(txn: MetaTxn[K], name: str) -> None:
    _user(txn, name)
    if txn.buckets_owned_by(name):
        raise users.UserOwnsBuckets(f"user {name} still owns buckets")
    txn.delete_user(name)


def add_key(txn: MetaTxn[K], user: str, created_ns: int) -> AccessKey:
    _user(txn, user)
    key = users.new_key(user, created_ns)
    txn.put_key(key)
    return key


def set_key_disabled(txn: MetaTxn[K], access_key: str, disabled: bool) -> None:
    k = _key(txn, access_key)
    txn.put_key(AccessKey(k.access_key, k.secret_key, k.user, k.created_ns, disabled))


def delete_key(txn: MetaTxn[K], access_key: str) -> None:
    _key(txn, access_key)
    txn.delete_key(access_key)


def rotate_key(txn: MetaTxn[K], access_key: str, created_ns: int) -> AccessKey:
    """A new key for the same user, and the old one disabled, as one change."""
    old = _key(txn, access_key)
    new = users.new_key(old.user, created_ns)
    txn.put_key(new)
    txn.put_key(AccessKey(old.access_key, old.secret_key, old.user, old.created_ns, True))
    return new
