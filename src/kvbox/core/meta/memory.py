"""MetaStore in plain Python dicts: tests, and the ``--max-memory`` cache mode.

Layer: core. Rules: what a write means comes from ``rules`` (through ``SharedRulesStore``);
this module is storage only: ``_MemoryTxn`` is the ``MetaTxn`` over dicts, and the reads.
No threads and no awaits inside an operation, so every write runs to completion inside
the calling coroutine and is atomic with respect to other tasks; nothing is durable.
A savepoint is an undo log of the primitive changes (``txn.UndoLog``), kept only while
one is open.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kvbox.core.meta import rules
from kvbox.core.meta.base import SharedRulesStore
from kvbox.core.meta.txn import MetaTxn, UndoLog
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    NULL_VERSION,
    Bucket,
    BucketStats,
    ChunkRef,
    MultipartUpload,
    ObjectVersion,
    Part,
    VersionIdGenerator,
    WriteOp,
    WriteResult,
)
from kvbox.errors import NoSuchBucket, NoSuchUpload

T = TypeVar("T")

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


def _seq_of(v: ObjectVersion) -> int:
    return v.seq


def _null_of(versions: list[ObjectVersion]) -> ObjectVersion | None:
    for v in reversed(versions):
        if v.is_null:
            return v
    return None


def _index(versions: list[ObjectVersion], v: ObjectVersion) -> int:
    for i in range(len(versions) - 1, -1, -1):
        if versions[i] is v:
            return i
    raise ValueError("version not held by this store")


class _MemKey:
    """A key as the rules hold it (``KeyState``): its bucket, and its two versions as
    this store's writes leave them."""

    __slots__ = ("b", "key", "newest", "null")

    def __init__(self, b: _MemBucket, key: str) -> None:
        self.b = b
        self.key = key
        self.newest: ObjectVersion | None = None
        self.null: ObjectVersion | None = None


class _MemoryTxn(UndoLog):
    """``MetaTxn`` over the store's dicts (module docstring); savepoints are
    ``UndoLog``'s."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = VersionIdGenerator()
        self.buckets: dict[str, _MemBucket] = {}
        self.refs: dict[str, int] = {}
        self.seq = 0
        self.journal_lsn = 0
        self.uploads: dict[str, MultipartUpload] = {}
        self.parts_of: dict[str, dict[int, Part]] = {}
        self.users: dict[str, User] = {}
        self.keys: dict[str, AccessKey] = {}
        #: An op fails only before it changes anything: no isolation needed.
        self.isolating = False

    # --- buckets ------------------------------------------------------------------------

    def bucket(self, name: str) -> Bucket | None:
        b = self.buckets.get(name)
        return b.bucket if b is not None else None

    def _b(self, name: str) -> _MemBucket:
        b = self.buckets.get(name)
        if b is None:
            raise NoSuchBucket(name)
        return b

    def insert_bucket(self, bucket: Bucket) -> None:
        self.buckets[bucket.name] = _MemBucket(bucket)
        self._log(lambda: self.buckets.pop(bucket.name, None))

    def update_bucket(self, bucket: Bucket) -> None:
        b = self._b(bucket.name)
        old, b.bucket = b.bucket, bucket

        def undo() -> None:
            b.bucket = old

        self._log(undo)

    def delete_bucket(self, name: str) -> None:
        b = self.buckets.pop(name)
        self._log(lambda: self.buckets.__setitem__(name, b))

    def bucket_has_versions(self, name: str) -> bool:
        return bool(self._b(name).keys)

    def bucket_uploads(self, name: str) -> list[str]:
        return [u.upload_id for u in self.uploads.values() if u.bucket == name]

    def buckets_owned_by(self, owner: str) -> bool:
        return any(b.bucket.owner == owner for b in self.buckets.values())

    # --- one key's versions -------------------------------------------------------------

    def key(self, bucket: str, key: str) -> _MemKey:
        b = self.buckets[bucket]
        k = _MemKey(b, key)
        versions = b.keys.get(key)
        if versions:
            newest = k.newest = versions[-1]
            k.null = newest if newest.is_null else _null_of(versions)
        return k

    def version(self, k: _MemKey, version_id: str) -> ObjectVersion | None:
        for v in reversed(k.b.keys.get(k.key) or ()):
            if v.version_id == version_id and not v.is_null:
                return v
        return None

    def newest_other(self, k: _MemKey, excluding: ObjectVersion) -> ObjectVersion | None:
        for v in reversed(k.b.keys.get(k.key) or ()):
            if not v.is_null and v is not excluding:
                return v
        return None

    def versions(self, k: _MemKey) -> list[ObjectVersion]:
        return (k.b.keys.get(k.key) or [])[::-1]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _put_in(self, v: ObjectVersion) -> None:
        keys = self.buckets[v.bucket].keys
        versions = keys.get(v.key)
        if not versions:  # none yet, or emptied by ``replace`` a moment ago
            keys[v.key] = [v]
        elif versions[-1].seq < v.seq:
            versions.append(v)
        else:  # only when an undo puts back an older version
            insort(versions, v, key=_seq_of)

    def _take_out(self, v: ObjectVersion) -> None:
        keys = self.buckets[v.bucket].keys
        versions = keys[v.key]
        del versions[_index(versions, v)]
        if not versions:
            del keys[v.key]

    def insert(self, k: _MemKey, v: ObjectVersion) -> None:
        if not v.is_null and self.version(k, v.version_id) is not None:
            raise rules.duplicate(v.version_id)
        self._put_in(v)
        if v.is_null:
            k.null = v
        self._log(lambda: self._take_out(v))

    def replace(self, k: _MemKey, old: ObjectVersion, new: ObjectVersion) -> None:
        versions = k.b.keys[k.key]
        i = _index(versions, old)
        if new.seq == old.seq:
            versions[i] = new
        else:
            del versions[i]
            self._put_in(new)
        if k.null is old:
            k.null = new
        if k.newest is old:
            self.set_newest(k, new)

        def undo() -> None:
            self._take_out(new)
            self._put_in(old)

        self._log(undo)

    def remove(self, k: _MemKey, v: ObjectVersion) -> None:
        self._take_out(v)
        if k.null is v:
            k.null = None
        self._log(lambda: self._put_in(v))

    def set_newest(self, k: _MemKey, after: ObjectVersion | None) -> None:
        before, k.newest = k.newest, after
        live, key = k.b.live, k.key
        was = before is not None and not before.is_delete_marker
        now = after is not None and not after.is_delete_marker
        if was and not now:
            live.discard(key)
            self._log(lambda: live.add(key))
        elif now and not was:
            live.add(key)
            self._log(lambda: live.discard(key))

    def count(self, k: _MemKey, objects: int, nbytes: int) -> None:
        b = k.b
        b.objects += objects
        b.bytes += nbytes

        def undo() -> None:
            b.objects -= objects
            b.bytes -= nbytes

        self._log(undo)

    def check(self) -> None:
        return None  # ``insert`` checks at once

    def isolated(
        self, fn: Callable[[MetaTxn[_MemKey], WriteOp], WriteResult], op: WriteOp
    ) -> WriteResult:
        return fn(self, op)  # an op fails only before it changes anything

    # --- chunk references ---------------------------------------------------------------

    def ref(self, chunks: Sequence[ChunkRef]) -> None:
        self._add_refs(chunks)
        self._log(lambda: self._drop_refs(chunks))

    def _add_refs(self, chunks: Sequence[ChunkRef]) -> None:
        refs = self.refs
        for c in chunks:
            refs[c.chunk_id] = refs.get(c.chunk_id, 0) + 1

    def _drop_refs(self, chunks: Sequence[ChunkRef]) -> list[str]:
        refs = self.refs
        freed: list[str] = []
        for c in chunks:
            n = refs[c.chunk_id] - 1
            if n:
                refs[c.chunk_id] = n
            else:
                del refs[c.chunk_id]
                freed.append(c.chunk_id)
        return freed

    def unref(self, chunks: Sequence[ChunkRef]) -> list[str]:
        freed = self._drop_refs(chunks)
        self._log(lambda: self._add_refs(chunks))
        return freed

    def chunk_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        refs = self.refs
        return {c: refs[c] for c in chunk_ids if c in refs}

    def versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        wanted = set(chunk_ids)
        return [
            v
            for b in self.buckets.values()
            for versions in b.keys.values()
            for v in versions
            if any(ref.chunk_id in wanted for ref in v.chunks)
        ]

    def uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        wanted = set(chunk_ids)
        return [
            upload_id
            for upload_id, parts in self.parts_of.items()
            if any(ref.chunk_id in wanted for p in parts.values() for ref in p.chunks)
        ]

    def set_journal_lsn(self, lsn: int) -> None:
        self.journal_lsn = max(self.journal_lsn, lsn)

    # --- multipart uploads --------------------------------------------------------------

    def upload(self, upload_id: str) -> MultipartUpload | None:
        return self.uploads.get(upload_id)

    def insert_upload(self, upload: MultipartUpload) -> None:
        uid = upload.upload_id
        self.uploads[uid] = upload
        self.parts_of[uid] = {}

        def undo() -> None:
            del self.uploads[uid]
            del self.parts_of[uid]

        self._log(undo)

    def parts(self, upload_id: str) -> dict[int, Part]:
        return self.parts_of[upload_id]

    def put_part(self, upload_id: str, part: Part) -> None:
        parts = self.parts_of[upload_id]
        n = part.part_number
        old = parts.get(n)
        parts[n] = part

        def undo() -> None:
            if old is None:
                del parts[n]
            else:
                parts[n] = old

        self._log(undo)

    def delete_upload(self, upload_id: str) -> None:
        upload = self.uploads.pop(upload_id)
        parts = self.parts_of.pop(upload_id)

        def undo() -> None:
            self.uploads[upload_id] = upload
            self.parts_of[upload_id] = parts

        self._log(undo)

    # --- users and access keys ----------------------------------------------------------

    def user(self, name: str) -> User | None:
        return self.users.get(name)

    def _restore(self, table: dict[str, T], name: str, old: T | None) -> None:
        if old is None:
            table.pop(name, None)
        else:
            table[name] = old

    def put_user(self, user: User) -> None:
        old = self.users.get(user.name)
        self.users[user.name] = user
        self._log(lambda: self._restore(self.users, user.name, old))

    def delete_user(self, name: str) -> None:
        for k in [k for k in self.keys.values() if k.user == name]:
            self.delete_key(k.access_key)
        old = self.users.pop(name)
        self._log(lambda: self._restore(self.users, name, old))

    def access_key(self, access_key: str) -> AccessKey | None:
        return self.keys.get(access_key)

    def put_key(self, key: AccessKey) -> None:
        old = self.keys.get(key.access_key)
        self.keys[key.access_key] = key
        self._log(lambda: self._restore(self.keys, key.access_key, old))

    def delete_key(self, access_key: str) -> None:
        old = self.keys.pop(access_key)
        self._log(lambda: self._restore(self.keys, access_key, old))


class MemoryMetaStore(SharedRulesStore):
    """``MetaStore`` in memory; see the module docstring."""

    def __init__(self) -> None:
        self._t = _MemoryTxn()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def _write(
        self,
        fn: Callable[[MetaTxn[Any]], T],
        ops: Sequence[WriteOp] = (),
        upload: str | None = None,  # one writer: writes never run side by side
    ) -> T:
        return fn(self._t)

    async def _commit(self, ops: Sequence[WriteOp], journal_lsn: int | None) -> list[WriteResult]:
        return rules.commit(self._t, ops, journal_lsn)

    # --- reads ------------------------------------------------------------------------

    async def get_bucket(self, name: str) -> Bucket | None:
        return self._t.bucket(name)

    async def list_buckets(self) -> list[Bucket]:
        buckets = self._t.buckets
        return [buckets[name].bucket for name in sorted(buckets)]

    async def journal_lsn(self) -> int:
        return self._t.journal_lsn

    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        b = self._t.buckets.get(bucket)
        versions = b.keys.get(key) if b is not None else None
        return versions[-1] if versions else None

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]:
        b = self._t.buckets.get(bucket)
        if b is None:
            return [None] * len(keys)
        out: list[ObjectVersion | None] = []
        for key in keys:
            versions = b.keys.get(key)
            out.append(versions[-1] if versions else None)
        return out

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        b = self._t.buckets.get(bucket)
        if b is None:
            return None
        versions = b.keys.get(key) or []
        if version_id == NULL_VERSION:
            return _null_of(versions)
        for v in reversed(versions):
            if v.version_id == version_id:
                return v
        return None

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        b = self._t.buckets.get(bucket)
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
        b = self._t.buckets.get(bucket)
        if b is None or limit <= 0:
            return []
        keys = sorted(
            k for k in b.keys if k.startswith(prefix) and (k >= key_marker if key_marker else True)
        )
        out: list[ObjectVersion] = []
        for key in keys:
            newest_first = b.keys[key][::-1]
            if key == key_marker:
                newest_first = rules.after_version_marker(newest_first, version_id_marker)
            for v in newest_first:
                out.append(v)
                if len(out) >= limit:
                    return out
        return out

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        b = self._t.buckets.get(bucket)
        if b is None or limit <= 0:
            return []
        end = rules.prefix_end(prefix)
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
        b = self._t.buckets.get(bucket)
        if b is None:
            raise NoSuchBucket(bucket)
        return BucketStats(b.objects, b.bytes)

    # --- multipart uploads ------------------------------------------------------------

    async def get_upload(self, upload_id: str) -> MultipartUpload | None:
        return self._t.uploads.get(upload_id)

    async def list_parts(self, upload_id: str, marker: int = 0, limit: int = 1000) -> list[Part]:
        parts = self._t.parts_of.get(upload_id)
        if parts is None:
            raise NoSuchUpload(upload_id)
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
        uploads = self._t.uploads
        found = sorted(
            (u.key, u.upload_id)
            for u in uploads.values()
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
            out.append(uploads[uid])
        return out

    # --- chunks -----------------------------------------------------------------------

    async def check_storage(self) -> list[str]:
        return []  # nothing is stored: nothing a disk could damage

    async def recount(self, bucket: str) -> tuple[BucketStats, BucketStats]:
        b = self._t.buckets.get(bucket)
        if b is None:
            raise NoSuchBucket(bucket)
        newest = [b.keys[key][-1] for key in b.live.iter_from("", inclusive=True)]
        return BucketStats(b.objects, b.bytes), BucketStats(
            len(newest), sum(v.size for v in newest)
        )

    async def chunk_refs(self) -> dict[str, int]:
        return dict(self._t.refs)

    async def chunk_ref_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        return self._t.chunk_counts(chunk_ids)

    # --- users and access keys --------------------------------------------------------

    async def get_user(self, name: str) -> User | None:
        return self._t.users.get(name)

    async def list_users(self) -> list[User]:
        found = self._t.users
        return [found[n] for n in sorted(found)]

    async def list_keys(self, user: str) -> list[AccessKey]:
        found = [k for k in self._t.keys.values() if k.user == user]
        return sorted(found, key=lambda k: (k.created_ns, k.access_key))

    async def get_key(self, access_key: str) -> AccessKey | None:
        return self._t.keys.get(access_key)

    async def lookup_key(self, access_key: str) -> tuple[str, str] | None:
        k = self._t.keys.get(access_key)
        if k is None or k.disabled:
            return None
        u = self._t.users.get(k.user)
        if u is None or u.disabled:
            return None
        return k.user, k.secret_key
