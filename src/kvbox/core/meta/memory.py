"""MetaStore in plain Python dicts: tests, and the ``--max-memory`` cache mode.

Layer: core. Rules: no threads and no awaits inside an operation, so every method runs
to completion inside the calling coroutine and is atomic with respect to other tasks;
nothing is durable. The semantics are ``kvbox.core.meta.MetaStore``'s and come from
``_rules``; an ``AtomicOp`` is made all-or-nothing with an undo log of the two primitive
mutations (insert a version, remove a version), which also keep the per-bucket counters,
the sorted set of live keys and the chunk reference counts in step.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from kvbox.core.meta import _rules, users
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    NULL_VERSION,
    AtomicOp,
    Bucket,
    BucketStats,
    ChunkRef,
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
    InvalidPart,
    KvboxError,
    NoSuchBucket,
    NoSuchUpload,
)

#: Keys per leaf list of ``_SortedKeys``: inserting into a Python list is a memmove, so
#: leaves of ~1,000 pointers keep an insert to a few microseconds at any size while
#: keeping the leaf index short (the same trade as a B-tree's page size).
_LEAF = 1000


class _SortedKeys:
    """A sorted set of strings (code point order = UTF-8 byte order) with O(log n)-ish
    insert, discard and range iteration: a list of sorted leaves plus their maxima."""

    __slots__ = ("_leaves", "_maxes")

    def __init__(self) -> None:
        self._leaves: list[list[str]] = []
        self._maxes: list[str] = []

    def add(self, key: str) -> None:
        if not self._leaves:
            self._leaves.append([key])
            self._maxes.append(key)
            return
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
            self._leaves[i].append(key)
            self._maxes[i] = key
        else:
            leaf = self._leaves[i]
            j = bisect_left(leaf, key)
            if j < len(leaf) and leaf[j] == key:
                return
            leaf.insert(j, key)
        leaf = self._leaves[i]
        if len(leaf) > 2 * _LEAF:
            self._leaves[i : i + 1] = [leaf[:_LEAF], leaf[_LEAF:]]
            self._maxes[i : i + 1] = [leaf[_LEAF - 1], leaf[-1]]

    def discard(self, key: str) -> None:
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return
        leaf = self._leaves[i]
        j = bisect_left(leaf, key)
        if j == len(leaf) or leaf[j] != key:
            return
        del leaf[j]
        if not leaf:
            del self._leaves[i]
            del self._maxes[i]
        else:
            self._maxes[i] = leaf[-1]

    def iter_from(self, low: str, inclusive: bool) -> Iterator[str]:
        """Keys >= ``low`` (or > ``low``), ascending."""
        find = bisect_left if inclusive else bisect_right
        i = find(self._maxes, low)
        if i == len(self._maxes):
            return
        j = find(self._leaves[i], low)
        while i < len(self._leaves):
            leaf = self._leaves[i]
            yield from leaf[j:]
            i += 1
            j = 0


@dataclass(slots=True)
class _MemBucket:
    bucket: Bucket
    #: key -> its versions, oldest first (ascending ``seq``); a key with none is absent.
    keys: dict[str, list[ObjectVersion]] = field(default_factory=dict)
    #: keys whose newest version is not a delete marker (what list_objects shows).
    live: _SortedKeys = field(default_factory=_SortedKeys)
    objects: int = 0
    bytes: int = 0


#: One undo-log entry: (was_inserted, bucket, version).
_Undo = list[tuple[bool, _MemBucket, ObjectVersion]]


def _seq_of(v: ObjectVersion) -> int:
    return v.seq


def _find_null(versions: list[ObjectVersion]) -> ObjectVersion | None:
    for v in reversed(versions):
        if v.is_null:
            return v
    return None


class MemoryMetaStore:
    """``MetaStore`` in memory; see the module docstring."""

    def __init__(self) -> None:
        self._buckets: dict[str, _MemBucket] = {}
        self._refs: dict[str, int] = {}
        self._seq = 0
        self._journal_lsn = 0
        self._ids = VersionIdGenerator()
        self._uploads: dict[str, MultipartUpload] = {}
        self._parts: dict[str, dict[int, Part]] = {}
        self._users: dict[str, User] = {}
        self._keys: dict[str, AccessKey] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # --- buckets ----------------------------------------------------------------------

    async def create_bucket(self, bucket: Bucket) -> bool:
        if bucket.name in self._buckets:
            return False
        self._buckets[bucket.name] = _MemBucket(bucket)
        return True

    async def get_bucket(self, name: str) -> Bucket | None:
        b = self._buckets.get(name)
        return b.bucket if b is not None else None

    async def list_buckets(self) -> list[Bucket]:
        return [self._buckets[name].bucket for name in sorted(self._buckets)]

    async def delete_bucket(self, name: str) -> tuple[str, ...] | None:
        b = self._buckets.get(name)
        if b is None:
            return None
        if b.keys:
            raise BucketNotEmpty(name)
        freed: list[str] = []
        for upload_id in [u.upload_id for u in self._uploads.values() if u.bucket == name]:
            for p in self._parts.pop(upload_id, {}).values():
                self._unref_chunks(p.chunks, freed)
            del self._uploads[upload_id]
        del self._buckets[name]
        return tuple(sorted(set(freed)))

    async def set_bucket_attrs(self, name: str, changes: Mapping[str, str | None]) -> Bucket:
        b = self._bucket(name)
        old = b.bucket
        attrs = _rules.merge_attrs(old.attrs, changes)
        b.bucket = Bucket(old.name, old.owner, old.created_ns, old.versioning, attrs)
        return b.bucket

    async def set_versioning(self, name: str, state: Versioning) -> None:
        b = self._bucket(name)
        _rules.check_versioning_change(b.bucket.versioning, state)
        old = b.bucket
        b.bucket = Bucket(old.name, old.owner, old.created_ns, state, old.attrs)

    # --- writes -----------------------------------------------------------------------

    async def commit(
        self, ops: Sequence[WriteOp], *, journal_lsn: int | None = None
    ) -> list[WriteResult]:
        results: list[WriteResult] = []
        error: KvboxError | None = None
        for op in ops:
            try:
                results.append(self._apply(op, None))
            except KvboxError as exc:
                error = error or exc
        if journal_lsn is not None:
            self._journal_lsn = max(self._journal_lsn, journal_lsn)
        if error is not None:
            raise error
        return [self._still_freed(r) for r in results]

    async def journal_lsn(self) -> int:
        return self._journal_lsn

    def _still_freed(self, result: WriteResult) -> WriteResult:
        """Drop from ``freed_chunks`` a chunk that a later op of the same call referenced
        again, so the caller never deletes bytes a committed version needs."""
        if not result.freed_chunks:
            return result
        freed = tuple(c for c in result.freed_chunks if c not in self._refs)
        if len(freed) == len(result.freed_chunks):
            return result
        return WriteResult(
            result.ok, result.written, result.removed, result.current, freed, result.not_found
        )

    def _apply(self, op: WriteOp, undo: _Undo | None) -> WriteResult:
        if isinstance(op, PutOp):
            return self._put(op, undo)
        if isinstance(op, DeleteOp):
            return self._delete(op, undo)
        if isinstance(op, PurgeOp):
            return self._purge(op, undo)
        if isinstance(op, AtomicOp):
            return self._atomic(op, undo)
        if isinstance(op, SetAttrsOp):
            return self._set_attrs(op)
        raise InvalidArgument(f"not a write op: {op!r}")

    def _set_attrs(self, op: SetAttrsOp) -> WriteResult:
        b = self._bucket(op.bucket)
        versions = b.keys.get(op.key)
        if not versions:
            return WriteResult(True, not_found=True)
        if op.version_id is None:
            target: ObjectVersion | None = versions[-1]
        else:
            target = self._find(versions, op.version_id)
        if target is None or target.is_delete_marker:
            return WriteResult(True, not_found=True)
        new = dataclasses.replace(target, attrs=MappingProxyType(dict(op.attrs)))
        versions[versions.index(target)] = new
        return WriteResult(True, written=(new,))

    def _atomic(self, op: AtomicOp, outer: _Undo | None) -> WriteResult:
        for sub in op.ops:  # every bucket must exist, whatever the conditions say
            self._bucket(sub.version.bucket if isinstance(sub, PutOp) else sub.bucket)
        undo: _Undo = []
        subs: list[WriteResult] = []
        try:
            for sub in op.ops:
                r = self._apply(sub, undo)
                if not r.ok:
                    self._rollback(undo)
                    return WriteResult(False, current=r.current)
                subs.append(r)
        except BaseException:
            self._rollback(undo)
            raise
        if outer is not None:
            outer.extend(undo)
        return WriteResult(
            True,
            written=tuple(v for r in subs for v in r.written),
            removed=tuple(v for r in subs for v in r.removed),
            freed_chunks=tuple(sorted({c for r in subs for c in r.freed_chunks})),
            not_found=any(r.not_found for r in subs),
        )

    def _rollback(self, undo: _Undo) -> None:
        scratch: list[str] = []
        for inserted, b, v in reversed(undo):
            if inserted:
                self._remove(b, v, scratch, None)
            else:
                self._insert(b, v, None)
        undo.clear()

    def _put(self, op: PutOp, undo: _Undo | None) -> WriteResult:
        v = op.version
        b = self._bucket(v.bucket)
        _rules.check_version(v)
        versions = b.keys.get(v.key)
        newest = versions[-1] if versions else None
        if not _rules.condition_holds(op.condition, newest):
            return WriteResult(False, current=newest)
        enabled = b.bucket.versioning is Versioning.ENABLED
        old_null = None if enabled or not versions else _find_null(versions)
        self._check_unique(versions, v.version_id, old_null)
        new = _rules.stamp(v, self._next_seq(), not enabled)
        freed: list[str] = []
        if old_null is not None:
            self._remove(b, old_null, freed, undo)
        self._insert(b, new, undo)
        removed = (old_null,) if old_null is not None else ()
        return WriteResult(True, written=(new,), removed=removed, freed_chunks=tuple(sorted(freed)))

    def _delete(self, op: DeleteOp, undo: _Undo | None) -> WriteResult:
        b = self._bucket(op.bucket)
        versions = b.keys.get(op.key)
        newest = versions[-1] if versions else None
        if not _rules.condition_holds(op.condition, newest):
            return WriteResult(False, current=newest)
        freed: list[str] = []
        if op.version_id is not None:
            target = self._find(versions, op.version_id)
            if target is None:
                return WriteResult(True, not_found=True)
            self._remove(b, target, freed, undo)
            return WriteResult(True, removed=(target,), freed_chunks=tuple(sorted(freed)))
        state = b.bucket.versioning
        old_null = None
        if state is not Versioning.ENABLED and versions:
            old_null = _find_null(versions)
        if state is Versioning.OFF and old_null is None:
            return WriteResult(True, not_found=True)
        removed = (old_null,) if old_null is not None else ()
        marker = None
        if state is not Versioning.OFF:
            marker = _rules.delete_marker(op, state, self._ids)
            self._check_unique(versions, marker.version_id, old_null)
            marker = _rules.stamp(marker, self._next_seq(), marker.is_null)
        if old_null is not None:
            self._remove(b, old_null, freed, undo)
        if marker is None:
            return WriteResult(True, removed=removed, freed_chunks=tuple(sorted(freed)))
        self._insert(b, marker, undo)
        return WriteResult(
            True, written=(marker,), removed=removed, freed_chunks=tuple(sorted(freed))
        )

    def _purge(self, op: PurgeOp, undo: _Undo | None) -> WriteResult:
        b = self._bucket(op.bucket)
        versions = b.keys.get(op.key)
        if not versions:
            return WriteResult(True, not_found=True)
        removed = tuple(reversed(versions))
        freed: list[str] = []
        for v in removed:
            self._remove(b, v, freed, undo)
        return WriteResult(True, removed=removed, freed_chunks=tuple(sorted(freed)))

    # --- the two primitive mutations ----------------------------------------------------

    def _insert(self, b: _MemBucket, v: ObjectVersion, undo: _Undo | None) -> None:
        versions = b.keys.get(v.key)
        if versions is None:
            versions = b.keys[v.key] = []
        old = versions[-1] if versions else None
        if old is None or old.seq < v.seq:
            versions.append(v)
        else:  # only when an undo puts back an older version
            insort(versions, v, key=_seq_of)
        refs = self._refs
        for ref in v.chunks:
            refs[ref.chunk_id] = refs.get(ref.chunk_id, 0) + 1
        self._renewest(b, v.key, old, versions[-1])
        if undo is not None:
            undo.append((True, b, v))

    def _remove(
        self, b: _MemBucket, v: ObjectVersion, freed: list[str], undo: _Undo | None
    ) -> None:
        versions = b.keys[v.key]
        old = versions[-1]
        for i in range(len(versions) - 1, -1, -1):
            if versions[i] is v:
                del versions[i]
                break
        new = versions[-1] if versions else None
        if new is None:
            del b.keys[v.key]
        refs = self._refs
        for ref in v.chunks:
            n = refs[ref.chunk_id] - 1
            if n:
                refs[ref.chunk_id] = n
            else:
                del refs[ref.chunk_id]
                freed.append(ref.chunk_id)
        self._renewest(b, v.key, old, new)
        if undo is not None:
            undo.append((False, b, v))

    @staticmethod
    def _renewest(
        b: _MemBucket, key: str, old: ObjectVersion | None, new: ObjectVersion | None
    ) -> None:
        """Keep counters and the live-key set in step with a change of newest version."""
        if old is new:
            return
        old_live = old is not None and not old.is_delete_marker
        new_live = new is not None and not new.is_delete_marker
        if old_live and old is not None:
            b.objects -= 1
            b.bytes -= old.size
        if new_live and new is not None:
            b.objects += 1
            b.bytes += new.size
        if old_live and not new_live:
            b.live.discard(key)
        elif new_live and not old_live:
            b.live.add(key)

    # --- helpers ----------------------------------------------------------------------

    def _bucket(self, name: str) -> _MemBucket:
        b = self._buckets.get(name)
        if b is None:
            raise NoSuchBucket(name)
        return b

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @staticmethod
    def _find(versions: list[ObjectVersion] | None, version_id: str) -> ObjectVersion | None:
        if not versions:
            return None
        if version_id == NULL_VERSION:
            return _find_null(versions)
        for v in reversed(versions):
            if v.version_id == version_id:
                return v
        return None

    @staticmethod
    def _check_unique(
        versions: list[ObjectVersion] | None, version_id: str, replaced: ObjectVersion | None
    ) -> None:
        if versions and any(x.version_id == version_id and x is not replaced for x in versions):
            raise InvalidArgument(f"version id {version_id} already exists for this key")

    # --- multipart uploads -------------------------------------------------------------

    def _ref_chunks(self, chunks: Sequence[ChunkRef]) -> None:
        refs = self._refs
        for ref in chunks:
            refs[ref.chunk_id] = refs.get(ref.chunk_id, 0) + 1

    def _unref_chunks(self, chunks: Sequence[ChunkRef], freed: list[str]) -> None:
        refs = self._refs
        for ref in chunks:
            n = refs[ref.chunk_id] - 1
            if n:
                refs[ref.chunk_id] = n
            else:
                del refs[ref.chunk_id]
                freed.append(ref.chunk_id)

    def _upload_parts(self, upload_id: str) -> dict[int, Part]:
        parts = self._parts.get(upload_id)
        if parts is None:
            raise NoSuchUpload(upload_id)
        return parts

    async def create_upload(self, upload: MultipartUpload) -> None:
        self._bucket(upload.bucket)
        if upload.upload_id in self._uploads:
            raise InvalidArgument(f"upload id {upload.upload_id} already exists")
        self._uploads[upload.upload_id] = upload
        self._parts[upload.upload_id] = {}

    async def get_upload(self, upload_id: str) -> MultipartUpload | None:
        return self._uploads.get(upload_id)

    async def put_part(self, upload_id: str, part: Part) -> tuple[str, ...]:
        for ref in part.chunks:
            if _rules.CHUNK_ID.fullmatch(ref.chunk_id) is None:
                raise InvalidArgument(f"bad chunk id {ref.chunk_id!r}")
        parts = self._upload_parts(upload_id)
        old = parts.get(part.part_number)
        self._ref_chunks(part.chunks)
        parts[part.part_number] = part
        freed: list[str] = []
        if old is not None:
            self._unref_chunks(old.chunks, freed)
        return tuple(sorted(set(freed)))

    async def list_parts(self, upload_id: str, marker: int = 0, limit: int = 1000) -> list[Part]:
        parts = self._upload_parts(upload_id)
        numbers = sorted(n for n in parts if n > marker)
        return [parts[n] for n in numbers[: max(limit, 0)]]

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> list[MultipartUpload]:
        found = sorted(
            (u.key, u.upload_id)
            for u in self._uploads.values()
            if u.bucket == bucket and u.key.startswith(prefix)
        )
        out: list[MultipartUpload] = []
        for key, uid in found:
            if key_marker and (
                key < key_marker
                or (key == key_marker and (not upload_id_marker or uid <= upload_id_marker))
            ):
                continue
            if len(out) >= limit:
                break
            out.append(self._uploads[uid])
        return out

    async def complete_upload(
        self, upload_id: str, version: ObjectVersion, parts: Sequence[tuple[int, str]]
    ) -> WriteResult:
        stored = self._upload_parts(upload_id)
        for number, etag in parts:
            p = stored.get(number)
            if p is None or p.etag != etag:
                raise InvalidPart(f"part {number} was not uploaded or its ETag differs")
        result = self._put(PutOp(version), None)
        freed = list(result.freed_chunks)
        for p in stored.values():
            self._unref_chunks(p.chunks, freed)
        del self._parts[upload_id]
        del self._uploads[upload_id]
        still = tuple(sorted({c for c in freed if c not in self._refs}))
        return WriteResult(True, result.written, result.removed, None, still)

    async def abort_upload(self, upload_id: str) -> tuple[str, ...]:
        parts = self._upload_parts(upload_id)
        freed: list[str] = []
        for p in parts.values():
            self._unref_chunks(p.chunks, freed)
        del self._parts[upload_id]
        del self._uploads[upload_id]
        return tuple(sorted(set(freed)))

    # --- reads ------------------------------------------------------------------------

    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        b = self._buckets.get(bucket)
        if b is None:
            return None
        versions = b.keys.get(key)
        return versions[-1] if versions else None

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]:
        b = self._buckets.get(bucket)
        if b is None:
            return [None] * len(keys)
        out: list[ObjectVersion | None] = []
        for key in keys:
            versions = b.keys.get(key)
            out.append(versions[-1] if versions else None)
        return out

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        b = self._buckets.get(bucket)
        if b is None:
            return None
        return self._find(b.keys.get(key), version_id)

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        b = self._buckets.get(bucket)
        versions = b.keys.get(key) if b is not None else None
        if not versions or limit <= 0:
            return []
        return versions[: -limit - 1 : -1]

    async def list_bucket_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        limit: int = 1000,
    ) -> list[ObjectVersion]:
        # Sorting every key per page is O(n log n): fine for the tests and the cache
        # mode this store serves; the SQLite store walks its key index instead.
        b = self._buckets.get(bucket)
        if b is None or limit <= 0:
            return []
        keys = sorted(
            k for k in b.keys if k.startswith(prefix) and (k >= key_marker if key_marker else True)
        )
        out: list[ObjectVersion] = []
        for key in keys:
            newest_first = b.keys[key][::-1]
            if key == key_marker:
                newest_first = _rules.after_version_marker(newest_first, version_id_marker)
            for v in newest_first:
                out.append(v)
                if len(out) >= limit:
                    return out
        return out

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        b = self._buckets.get(bucket)
        if b is None or limit <= 0:
            return []
        end = _rules.prefix_end(prefix)
        if start_after and start_after >= prefix:
            keys = b.live.iter_from(start_after, inclusive=False)
        else:
            keys = b.live.iter_from(prefix, inclusive=True)
        out: list[ObjectVersion] = []
        for key in keys:
            if end is not None and key >= end:
                break
            out.append(b.keys[key][-1])
            if len(out) >= limit:
                break
        return out

    async def stats(self, bucket: str) -> BucketStats:
        b = self._bucket(bucket)
        return BucketStats(b.objects, b.bytes)

    # --- chunks -----------------------------------------------------------------------

    async def chunk_refs(self) -> dict[str, int]:
        return dict(self._refs)

    async def chunk_ref_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        refs = self._refs
        return {c: refs[c] for c in chunk_ids if c in refs}

    async def drop_versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        wanted = set(chunk_ids)
        doomed = [
            (b, v)
            for b in self._buckets.values()
            for versions in b.keys.values()
            for v in versions
            if any(ref.chunk_id in wanted for ref in v.chunks)
        ]
        scratch: list[str] = []
        for b, v in doomed:
            self._remove(b, v, scratch, None)
        return [v for _, v in doomed]

    async def drop_uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        wanted = set(chunk_ids)
        doomed = sorted(
            upload_id
            for upload_id, parts in self._parts.items()
            if any(ref.chunk_id in wanted for p in parts.values() for ref in p.chunks)
        )
        for upload_id in doomed:
            await self.abort_upload(upload_id)
        return doomed

    # --- users and access keys --------------------------------------------------------

    def _user(self, name: str) -> User:
        u = self._users.get(name)
        if u is None:
            raise users.NoSuchUser(name)
        return u

    def _key(self, access_key: str) -> AccessKey:
        k = self._keys.get(access_key)
        if k is None:
            raise users.NoSuchAccessKey(access_key)
        return k

    async def create_user(self, name: str, created_ns: int) -> User:
        users.check_user_name(name)
        if name in self._users:
            raise users.UserExists(name)
        self._users[name] = User(name, created_ns)
        return self._users[name]

    async def get_user(self, name: str) -> User | None:
        return self._users.get(name)

    async def list_users(self) -> list[User]:
        return [self._users[n] for n in sorted(self._users)]

    async def set_user_disabled(self, name: str, disabled: bool) -> None:
        u = self._user(name)
        self._users[name] = User(u.name, u.created_ns, disabled)

    async def delete_user(self, name: str) -> None:
        self._user(name)
        if any(b.bucket.owner == name for b in self._buckets.values()):
            raise users.UserOwnsBuckets(f"user {name} still owns buckets")
        for k in [k for k in self._keys.values() if k.user == name]:
            del self._keys[k.access_key]
        del self._users[name]

    async def add_key(self, user: str, created_ns: int) -> AccessKey:
        self._user(user)
        key = users.new_key(user, created_ns)
        self._keys[key.access_key] = key
        return key

    async def list_keys(self, user: str) -> list[AccessKey]:
        found = [k for k in self._keys.values() if k.user == user]
        return sorted(found, key=lambda k: (k.created_ns, k.access_key))

    async def get_key(self, access_key: str) -> AccessKey | None:
        return self._keys.get(access_key)

    async def lookup_key(self, access_key: str) -> tuple[str, str] | None:
        k = self._keys.get(access_key)
        if k is None or k.disabled:
            return None
        u = self._users.get(k.user)
        if u is None or u.disabled:
            return None
        return k.user, k.secret_key

    async def set_key_disabled(self, access_key: str, disabled: bool) -> None:
        k = self._key(access_key)
        self._keys[access_key] = AccessKey(
            k.access_key, k.secret_key, k.user, k.created_ns, disabled
        )

    async def delete_key(self, access_key: str) -> None:
        self._key(access_key)
        del self._keys[access_key]

    async def rotate_key(self, access_key: str, created_ns: int) -> AccessKey:
        old = self._key(access_key)
        new = users.new_key(old.user, created_ns)
        self._keys[new.access_key] = new
        await self.set_key_disabled(access_key, True)
        return new
