"""The Store: versioned objects and buckets over a MetaStore and a BlobStore.

Layer: core. Rules: knows no protocol; every front door (GW-KV, S3, the website
endpoint, the console) calls only this. The Store keeps S3's object semantics (what a
put, a delete, a conditional write, a multipart completion builds and commits, and what
the read cache learns from it); each part keeps one promise in its own module:

* ``route`` -- **whether a write goes through the journal (``kvbox.core.journal``) or
  straight to the MetaStore is decided there, and only there**, with the barrier that
  keeps both in acknowledgement order. Front doors hand over writes (``submit_batch``
  for pipelined SETs) and never reason about the journal.
* ``buckets`` -- the bucket table and every change of a bucket's settings.
* ``chunks`` -- chunk bytes durable before the metadata that references them is
  committed; pins, and collection after a re-check. A crash between the two leaves an
  orphan chunk (``kvbox fsck`` removes it), never a version without its bytes.
  ``streams`` writes a value of any size into chunks; ``bodies`` reads them back,
  verified and pinned.
* ``cache`` -- newest versions for hot reads with no thread hop and no SQL, and in
  ``--max-memory`` mode the LRU eviction that bounds the stored bytes.
* ``multipart`` -- S3 multipart uploads.

What a write *means* (versioning, delete markers, conditions, object lock, reference
counts) is decided in the metadata transaction, by ``kvbox.core.meta.rules``, never
here: a check made here would race writers in other processes.

A write is acknowledged only when its journal frame was fsync'd or its
``MetaStore.commit`` returned (docs/ARCHITECTURE.md, "Durability").

Why one module of about 850 lines and one class of about 750 (over the ~800/~400 this
codebase aims at): it is the one surface every front door uses, about 45 public methods;
what is left in it is the object operations themselves (put, streamed put, batch, delete,
attrs and lock changes, multipart completion, the reads the cache answers), each a short
composition of the parts above, plus one-line delegations that keep the doors' calls
unchanged. Cutting it by operation family would split the read cache's and the LRU's
bookkeeping, which every write must do the same way, over several classes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

from kvbox.core import lock
from kvbox.core.blob import BlobStore
from kvbox.core.integrity import crc32c, value_sound
from kvbox.core.journal import JournalWrites
from kvbox.core.journal.memtable import Memtable
from kvbox.core.meta import MetaStore
from kvbox.core.model import (
    EMPTY_ATTRS,
    AtomicOp,
    Bucket,
    BucketStats,
    ChunkRef,
    Condition,
    DeleteOp,
    MultipartUpload,
    ObjectVersion,
    Part,
    PurgeOp,
    PutOp,
    SetAttrsOp,
    VersionIdGenerator,
    Versioning,
    WriteResult,
)
from kvbox.core.space import Space
from kvbox.core.store.bodies import Bodies
from kvbox.core.store.buckets import Buckets
from kvbox.core.store.cache import ENTRY_COST, MISS, Lru, Peeked, ReadCache, entry_cost
from kvbox.core.store.chunks import Background, Chunks, PinnedFiles
from kvbox.core.store.hashing import update_holding_gil
from kvbox.core.store.multipart import Multipart
from kvbox.core.store.route import Route
from kvbox.core.store.streams import write_stream
from kvbox.errors import (
    ChunkMissing,
    ConditionFailed,
    DataDamaged,
    KvboxError,
    StorageFull,
    ValueTooLarge,
)

#: Values up to this size live inside the metadata row. SQLite's own measurements
#: ("Internal Versus External BLOBs") find blobs under ~100 KB read faster from the
#: database than from separate files, and it saves a file fsync per small write.
INLINE_MAX: Final = 64 * 1024
#: Large values are cut into chunks of this size: big enough that per-chunk overhead
#: (a file, an fsync, a metadata entry) is negligible, small enough to buffer one.
CHUNK_SIZE: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of small writes handed to ``Store.submit_batch``."""

    #: Each item's version id or error, once all are durable.
    done: asyncio.Future[list[str | KvboxError]]
    #: It went through the journal: a later journaled batch needs not wait for it.
    in_journal: bool


def _batch_durable(
    done: asyncio.Future[list[str | KvboxError]],
    results: list[str | KvboxError],
    durable: asyncio.Future[int],
) -> None:
    if done.done():
        return
    if durable.cancelled():
        done.cancel()
    elif (exc := durable.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(results)


class Store:
    """Versioned objects over a MetaStore and a BlobStore. One per server process."""

    def __init__(
        self,
        meta: MetaStore,
        blobs: BlobStore,
        *,
        cache_bytes: int = 64 * 1024 * 1024,
        max_memory: int | None = None,
        inline_max: int = INLINE_MAX,
        chunk_size: int = CHUNK_SIZE,
        journal_dir: Path | None = None,
        space: Space | None = None,
    ) -> None:
        self.meta = meta
        #: Free space against ``--min-free`` (None: not watched, as in cache mode).
        self.space = space
        self.blobs = blobs
        self.inline_max = inline_max
        self.chunk_size = chunk_size
        #: What one streamed write (``put_stream``, an upload part) holds in memory at
        #: most: a chunk being hashed and written, the next one filling, and the copy
        #: handed to the writer -- for the server's memory budget (server/budget.py).
        self.stream_memory = 3 * chunk_size
        self._ids = VersionIdGenerator()
        self._background = Background()
        self.chunks = Chunks(meta, blobs, self._background)
        self.multipart = Multipart(meta, self.chunks, self._ids, chunk_size)
        self.bodies = Bodies(blobs, self.chunks)
        self._cache = ReadCache(cache_bytes)
        self._lru = Lru(max_memory) if max_memory is not None else None
        self._route = Route(
            meta, self._cache, self.chunks, journal_dir if max_memory is None else None
        )
        #: ``journal.memtable`` while the journal is open, held directly: every GET
        #: looks at it.
        self._memtable: Memtable | None = None
        self.buckets = Buckets(
            meta, self._route, self._cache, self.chunks, cache_mode=max_memory is not None
        )
        self._buckets = self.buckets.by_name  # read on every request
        #: Moves on when another process changed users or keys (``refresh_buckets``):
        #: a door that caches key lookups drops them when it sees a new value.
        self.identity_epoch = 0
        self._settle = self._route.settle
        self._exclusive = self._route.exclusive
        self._commit = self._route.commit
        #: Damaged reads refused: counted for /metrics, logged once per object.
        self.damage = self.bodies.damage

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self.space is not None:
            self.space.open()  # on a full disk, before the replay needs the room
        await self.blobs.open()
        await self.meta.open()
        await self._route.open()
        self._memtable = self._route.memtable
        await self.buckets.load()
        if self.space is not None:
            self.space.start()

    async def close(self) -> None:
        if self.space is not None:
            await self.space.stop()
        await self._route.close()
        self._memtable = None
        await self._background.close()
        await self.meta.close()
        await self.blobs.close()

    @property
    def journal(self) -> JournalWrites | None:
        """The write-ahead journal while open (None without one: ``route.Route``)."""
        return self._route.journal

    @property
    def journal_dir(self) -> Path | None:
        return self._route.journal_dir

    async def sweep_chunk_writers(self) -> None:
        """Wait for background chunk collection (tests, shutdown)."""
        await self._background.drain()

    async def remove_orphans(self, chunk_ids: Sequence[str]) -> int:
        """See ``Chunks.remove_orphans``: chunk files found on disk that nothing needs."""
        return await self.chunks.remove_orphans(chunk_ids)

    @property
    def max_memory(self) -> int | None:
        return self._lru.max_bytes if self._lru is not None else None

    # --- small writes: the journal or one direct commit (``route.Route``) ----------

    def submit_batch(
        self,
        bucket: str,
        items: Sequence[tuple[str, bytes]],
        *,
        previous: Batch | None = None,
        after: asyncio.Future[Any] | None = None,
    ) -> Batch:
        """Independent small writes (pipelined SETs) handed over at once: ``Batch.done``
        gives each item's version id or error when all are durable (or fails as a whole).

        They take effect after ``after`` (what the caller's earlier requests must finish
        first) and after ``previous`` (the caller's previous batch), which is all a front
        door says; whether they go through the journal, and whether that lets them skip
        waiting, is this method's decision. Through the journal they need no task: a
        task per batch of SETs cost one request per connection more than the rest of its
        path in Python.
        """
        if self.space is not None:
            refused = self._refused(self.space, items)
            if refused is not None:
                return refused
        if (after is None or after.done()) and (
            previous is None or previous.in_journal or previous.done.done()
        ):
            # Journaled batches are durable and applied in submission order, so one
            # never waits for an earlier journaled one.
            b = self._buckets.get(bucket)
            route = self._route
            j = route.journal
            if b is not None and j is not None and route.journaled(b) and not j.memtable.full():
                results, durable = j.submit(
                    b, items, self._ids.new_many(len(items)), self.inline_max
                )
                done: asyncio.Future[list[str | KvboxError]] = durable.get_loop().create_future()
                durable.add_done_callback(partial(_batch_durable, done, results))
                return Batch(done, in_journal=True)
        deps: list[asyncio.Future[Any]] = []
        for f in (after, None if previous is None else previous.done):
            if f is not None and not f.done():
                deps.append(f)
        return Batch(asyncio.ensure_future(self._put_batch_after(deps, bucket, items)), False)

    @staticmethod
    def _refused(space: Space, items: Sequence[tuple[str, bytes]]) -> Batch | None:
        """A batch refused whole for want of space (its items all answer
        ``StorageFull``), or None if it may go ahead."""
        try:
            space.check(sum(len(d) for _, d in items))
        except StorageFull as exc:
            done: asyncio.Future[list[str | KvboxError]] = (
                asyncio.get_running_loop().create_future()
            )
            done.set_result([exc] * len(items))
            return Batch(done, in_journal=True)
        return None

    async def _put_batch_after(
        self, deps: list[asyncio.Future[Any]], bucket: str, items: Sequence[tuple[str, bytes]]
    ) -> list[str | KvboxError]:
        if deps:
            await asyncio.gather(*deps, return_exceptions=True)  # order, not outcome
        return await self.put_batch(bucket, items)

    async def put_batch(
        self, bucket: str, items: Sequence[tuple[str, bytes]]
    ) -> list[str | KvboxError]:
        """Independent small writes sharing one commit (pipelined SETs); each item's
        result is its new version id or its error.

        Unlike ``put_many`` each item stands alone: one that fails doesn't stop the others.
        In a bucket without versioning they go through the journal (``Route.journaled``).
        """
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        if self.space is not None:
            try:
                self.space.check(sum(len(d) for _, d in items))
            except StorageFull as exc:
                return [exc] * len(items)
        while self._route.journaled(b):
            j = self._route.journal
            assert j is not None
            if not j.memtable.full():
                out, durable = j.submit(b, items, self._ids.new_many(len(items)), self.inline_max)
                await durable
                return out
            await j.apply()  # backpressure: the applier is behind
        out_: list[ObjectVersion | KvboxError | None] = []
        ops: list[PutOp] = []
        slots: list[int] = []
        limit = self.inline_max
        if self._lru is not None:
            limit = min(limit, self._lru.max_bytes - ENTRY_COST)
        md5 = hashlib.md5
        new_id = self._ids.new
        now = time.time_ns()
        is_null = b.versioning is not Versioning.ENABLED
        # A bucket with object lock and a default retention gives it to every new version.
        attrs = lock.new_version_attrs(b, EMPTY_ATTRS, now) if b.attrs else EMPTY_ATTRS
        for key, data in items:
            size = len(data)
            if size > limit:
                out_.append(ValueTooLarge("value too large for a batched write"))
                continue
            slots.append(len(out_))
            out_.append(None)
            v = ObjectVersion(
                bucket, key, new_id(), size, md5(data, usedforsecurity=False).hexdigest(), now,
                False, is_null, data, (), "application/octet-stream", attrs, 0, crc32c(data),
            )  # fmt: skip
            ops.append(PutOp(v))
        if ops:
            results = await self._commit(ops)
            for i, r in zip(slots, results, strict=True):
                (v,) = r.written
                self._after_put(v)
                out_[i] = v
        return [r.version_id if isinstance(r, ObjectVersion) else r for r in out_]  # type: ignore[misc]

    # --- buckets (``buckets.Buckets``) -------------------------------------------------

    async def ensure_bucket(
        self, name: str, *, owner: str = "root", versioning: Versioning = Versioning.OFF
    ) -> Bucket:
        return await self.buckets.ensure(name, owner=owner, versioning=versioning)

    async def list_buckets(self) -> list[Bucket]:
        return await self.meta.list_buckets()

    def cached_bucket(self, name: str) -> Bucket | None:
        """``get_bucket``'s answer when it is in memory already (always, once the bucket
        was read: see there), without a wait; None if not known yet."""
        return self._buckets.get(name)

    async def get_bucket(self, name: str) -> Bucket | None:
        """See ``Buckets.get``; with metadata shared by several gateways,
        ``refresh_buckets`` applies the others' changes."""
        return await self.buckets.get(name)

    async def refresh_buckets(
        self, names: Sequence[str] | None = None, users: bool = False
    ) -> None:
        """See ``Buckets.refresh``: another gateway changed these buckets, and maybe
        users or access keys: then ``identity_epoch`` moves on, which empties the doors'
        caches of key lookups."""
        if users:
            self.identity_epoch += 1
        await self.buckets.refresh(names)

    async def set_bucket_attrs(self, name: str, changes: Mapping[str, str | None]) -> Bucket:
        """Change bucket settings (policy, ACL, CORS, website...); None removes one."""
        return await self.buckets.set_attrs(name, changes)

    async def create_bucket(
        self,
        name: str,
        *,
        owner: str,
        versioning: Versioning = Versioning.OFF,
        attrs: Mapping[str, str] = EMPTY_ATTRS,
        object_lock: bool = False,
    ) -> bool:
        """See ``Buckets.create``: False if the name is taken."""
        return await self.buckets.create(
            name, owner=owner, versioning=versioning, attrs=attrs, object_lock=object_lock
        )

    async def delete_bucket(self, name: str) -> bool:
        """See ``Buckets.delete``: False if there was no such bucket."""
        return await self.buckets.delete(name)

    async def set_versioning(self, name: str, state: Versioning) -> None:
        await self.buckets.set_versioning(name, state)

    async def set_lock_config(self, name: str, config: lock.LockConfig) -> Bucket:
        """See ``Buckets.set_lock_config``."""
        return await self.buckets.set_lock_config(name, config)

    async def stats(self, bucket: str) -> BucketStats:
        return await self.buckets.stats(bucket)

    # --- reads ------------------------------------------------------------------------

    def peek(self, bucket: str, key: str) -> Peeked:
        """The cached newest version (None: known absent), or ``MISS``: no thread hop."""
        k = (bucket, key)
        mt = self._memtable
        if mt is not None and (mt.live or mt.frozen):
            pv = mt.get(k)
            if pv is not None:
                return pv
        v = self._cache.get(k)
        if v is not MISS and self._lru is not None:
            self._lru.touch(k)
        return v

    async def head(self, bucket: str, key: str, *, verify: bool = True) -> ObjectVersion | None:
        """Newest version of ``key`` (maybe a delete marker) or None.

        Its inline value, read from the MetaStore, is checked against its checksum
        first: ``DataDamaged`` if they differ. ``verify=False`` is for callers that use
        only the metadata (a delete, an access decision), so that damage never stops
        them: they get the version as stored, and it is not cached.
        """
        v = self.peek(bucket, key)
        if v is not MISS:
            return v
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        gen = self._cache.generation
        found = await self.meta.head(bucket, key)
        if found is not None and not value_sound(found):
            if not verify:
                return found
            raise self._damaged_value(found)
        self._cache.populate(gen, (bucket, key), found)
        if self._lru is not None:
            self._lru.touch((bucket, key))  # a read the cache missed is a use all the same
        return found

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]:
        out: list[ObjectVersion | None] = []
        missing: list[int] = []
        for i, key in enumerate(keys):
            v = self.peek(bucket, key)
            if v is MISS:
                missing.append(i)
                out.append(None)
            else:
                out.append(v)
        if missing:
            self._buckets.get(bucket) or await self.buckets.miss(bucket)
            gen = self._cache.generation
            found = await self.meta.head_many(bucket, [keys[i] for i in missing])
            for i, v in zip(missing, found, strict=True):
                if v is not None and not value_sound(v):
                    raise self._damaged_value(v)
                out[i] = v
                self._cache.populate(gen, (bucket, keys[i]), v)
        return out

    async def get_version(
        self, bucket: str, key: str, version_id: str, *, verify: bool = True
    ) -> ObjectVersion | None:
        """One version by id; its inline value checked as ``head`` checks it."""
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        await self._settle()
        v = await self.meta.get_version(bucket, key, version_id)
        if verify and v is not None and not value_sound(v):
            raise self._damaged_value(v)
        return v

    def _damaged_value(self, v: ObjectVersion) -> DataDamaged:
        return self.damaged(v, DataDamaged("the inline value does not match its checksum"))

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        await self._settle()
        return await self.meta.list_versions(bucket, key, limit)

    # Bytes of a version (``bodies.Bodies``: verified, pinned while read).

    async def read(self, version: ObjectVersion) -> bytes:
        """All bytes of a version. For values that may be large, use ``iter_bytes``."""
        return await self.bodies.read(version)

    def iter_bytes(
        self, version: ObjectVersion, first: int = 0, last: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """See ``Bodies.iter_bytes``: bytes ``first..last`` (inclusive), chunk by chunk."""
        return self.bodies.iter_bytes(version, first, last)

    async def open_read(
        self, version: ObjectVersion, first: int = 0, last: int | None = None
    ) -> AsyncIterator[bytes]:
        """See ``Bodies.open_read``: ``iter_bytes`` with its first piece read."""
        return await self.bodies.open_read(version, first, last)

    def damaged(self, version: ObjectVersion, exc: DataDamaged | ChunkMissing) -> DataDamaged:
        """See ``Bodies.damaged``."""
        return self.bodies.damaged(version, exc)

    async def pin_files(self, version: ObjectVersion, first: int, last: int) -> PinnedFiles | None:
        """See ``Bodies.pin_files``: a range as pinned, checked local files."""
        return await self.bodies.pin_files(version, first, last)

    async def list_bucket_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        limit: int = 1000,
    ) -> list[ObjectVersion]:
        """See ``MetaStore.list_bucket_versions``."""
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        await self._settle()
        return await self.meta.list_bucket_versions(
            bucket, prefix, key_marker, version_id_marker, limit
        )

    async def version_at(self, bucket: str, key: str, at_ns: int) -> ObjectVersion | None:
        """The version of ``key`` that was the newest at ``at_ns`` (a time-travel read):
        the newest version whose ``mtime_ns`` is not after it, possibly a delete marker;
        None if the key had no version then.

        Only what is still stored can be found: a bucket that never had versioning keeps
        one (null) version per key, so it can answer only "now" or "not yet".
        """
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        await self._settle()
        # Keys with ``key`` as prefix sort after it, so the first page starts at the key;
        # later pages continue after the last version seen.
        key_marker = marker = ""
        while True:
            page = await self.meta.list_bucket_versions(bucket, key, key_marker, marker, 1000)
            for v in page:
                if v.key != key:
                    return None
                if v.mtime_ns <= at_ns:
                    if not value_sound(v):
                        raise self._damaged_value(v)
                    return v
            if len(page) < 1000:
                return None
            key_marker, marker = key, page[-1].s3_version_id

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        """Newest live versions in UTF-8 byte order (see ``MetaStore.list_objects``)."""
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        await self._settle()
        return await self.meta.list_objects(bucket, prefix, start_after, limit)

    # --- writes -----------------------------------------------------------------------

    def _new_version(
        self,
        bucket: Bucket,
        key: str,
        *,
        size: int,
        etag: str,
        inline: bytes | None,
        chunks: tuple[ChunkRef, ...] = (),
        content_type: str = "application/octet-stream",
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> ObjectVersion:
        now = time.time_ns()
        if bucket.attrs or attrs:
            attrs = lock.new_version_attrs(bucket, attrs, now)
        return ObjectVersion(
            bucket=bucket.name,
            key=key,
            version_id=self._ids.new(),
            size=size,
            etag=etag,
            mtime_ns=now,
            is_null=bucket.versioning is not Versioning.ENABLED,
            inline=inline,
            chunks=chunks,
            content_type=content_type,
            attrs=attrs,
            inline_crc=None if inline is None else crc32c(inline),
        )

    def _check_size(self, size: int) -> None:
        if self._lru is not None and size + ENTRY_COST > self._lru.max_bytes:
            raise ValueTooLarge(f"value of {size} bytes exceeds --max-memory")

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        condition: Condition | None = None,
        content_type: str = "application/octet-stream",
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> ObjectVersion:
        """Write ``data`` as the newest version; returns it once durable.

        ``attrs`` carries what a front door keeps with the version (S3: user metadata,
        Content-Encoding, tags, checksums), as strings.
        """
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        self._check_size(len(data))
        if self.space is not None:
            self.space.check(len(data))
        md5 = hashlib.md5(usedforsecurity=False)
        update_holding_gil(md5, data)
        etag = md5.hexdigest()
        if len(data) <= self.inline_max:
            v = self._new_version(
                b,
                key,
                size=len(data),
                etag=etag,
                inline=data,
                content_type=content_type,
                attrs=attrs,
            )
            return await self._commit_put(PutOp(v, condition))
        chunks: list[ChunkRef] = []
        try:
            for off in range(0, len(data), self.chunk_size):
                chunks.append(await self.chunks.put(data[off : off + self.chunk_size], b))
            v = self._new_version(
                b,
                key,
                size=len(data),
                etag=etag,
                inline=None,
                chunks=tuple(chunks),
                content_type=content_type,
                attrs=attrs,
            )
            return await self._commit_put(PutOp(v, condition))
        finally:
            self.chunks.release(chunks)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        source: AsyncIterator[bytes],
        *,
        condition: Condition | None = None,
        content_type: str = "application/octet-stream",
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> ObjectVersion:
        """Write a value of any size from ``source``, holding at most two chunks
        (``streams.write_stream``)."""
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        if self.space is not None:
            self.space.check()  # refused before a byte of the body is read
            source = _charged(self.space, source)
        body = await write_stream(
            self.chunks,
            source,
            self.chunk_size,
            inline_max=self.inline_max,
            check_size=self._check_size,
            bucket=b,
        )
        try:
            v = self._new_version(
                b,
                key,
                size=body.size,
                etag=body.etag,
                inline=body.inline,
                chunks=body.chunks,
                content_type=content_type,
                attrs=attrs,
            )
            return await self._commit_put(PutOp(v, condition))
        finally:
            self.chunks.release(list(body.chunks))

    async def put_many(
        self, bucket: str, pairs: Iterable[tuple[str, bytes]]
    ) -> list[ObjectVersion]:
        """Write several small values atomically: all are committed or none."""
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        if self.space is not None:
            self.space.check()
        ops: list[PutOp] = []
        for key, data in pairs:
            if len(data) > self.inline_max:
                raise ValueTooLarge("put_many takes values up to the inline size")
            self._check_size(len(data))
            etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
            ops.append(PutOp(self._new_version(b, key, size=len(data), etag=etag, inline=data)))
        (result,) = await self._commit([AtomicOp(tuple(ops))])
        written = list(result.written)
        for v in written:
            self._after_put(v)
        return written

    async def delete(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        bypass_governance: bool = False,
        now_ns: int | None = None,
        condition: Condition | None = None,
    ) -> WriteResult:
        """S3 DeleteObject semantics (see ``model.DeleteOp``); with ``condition``, only if
        it holds against the key's newest version (else ``ok`` false, nothing changed).

        In a bucket with object lock a version named by ``version_id`` is removed only if
        ``kvbox.core.lock`` allows it at ``now_ns`` (default: now) with
        ``bypass_governance``; else ``ObjectLocked``. The metadata transaction that
        removes it decides, so no other writer can change its lock in between. A delete
        without a version id there only ever adds a delete marker (versioning is always
        on), which S3 allows.
        """
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        marker = None
        if version_id is None and b.versioning is not Versioning.OFF:
            marker = ObjectVersion(
                bucket=bucket,
                key=key,
                version_id=self._ids.new(),
                mtime_ns=time.time_ns(),
                is_delete_marker=True,
                is_null=b.versioning is Versioning.SUSPENDED,
            )
        op = DeleteOp(bucket, key, version_id, marker, condition, bypass_governance, now_ns or 0)
        try:
            (result,) = await self._commit([op])
        except StorageFull:
            # Full to the last byte: the reserve file is there for exactly this.
            if self.space is None or not self.space.release_reserve():
                raise
            (result,) = await self._commit([op])
        k = (bucket, key)
        self._cache.pop(k)
        if self._lru is not None:
            if marker is None and version_id is None:
                self._lru.drop(k)  # the key's one version is gone
            else:
                # A marker is one more version kept; removing one named version frees
                # what it cost (its size is in the result).
                for v in result.written:
                    self._lru.add(k, entry_cost(key, v.size))
                for v in result.removed:
                    self._lru.add(k, -entry_cost(key, v.size))
        return result

    async def set_attrs(
        self, bucket: str, key: str, version_id: str | None, attrs: Mapping[str, str]
    ) -> ObjectVersion | None:
        """Replace a stored version's attrs in place (tags, ACL): same version id, same
        Last-Modified. None if there is no such version (or it is a delete marker).

        The version's object lock entries are never changed here: the stored ones are
        carried over whatever ``attrs`` holds (``lock.rewritten_attrs``; only
        ``set_object_lock`` changes them), so a tag or ACL change can neither drop nor
        forge a retention.
        """
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        return await self._set_attrs(SetAttrsOp(bucket, key, version_id, attrs))

    async def set_object_lock(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        *,
        retention: lock.Retention | lock.Keep | None = lock.KEEP,
        legal_hold: bool | None = None,
        bypass_governance: bool = False,
        now_ns: int | None = None,
    ) -> ObjectVersion | None:
        """Change a version's retention (``lock.KEEP``: leave it; None: remove it) and/or
        legal hold (None: leave it), as ``kvbox.core.lock.check_change`` allows at
        ``now_ns`` (in the metadata transaction); else ``ObjectLocked``.
        ``InvalidBucketState`` without object lock on the bucket; None if there is no
        such version (or it is a delete marker)."""
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        now = time.time_ns() if now_ns is None else now_ns
        change = lock.LockChange(retention, legal_hold, bypass_governance, now)
        return await self._set_attrs(SetAttrsOp(bucket, key, version_id, EMPTY_ATTRS, change))

    async def _set_attrs(self, op: SetAttrsOp) -> ObjectVersion | None:
        (result,) = await self._commit([op])
        self._cache.pop((op.bucket, op.key))
        return None if result.not_found else result.written[0]

    async def _commit_put(self, op: PutOp) -> ObjectVersion:
        (result,) = await self._commit([op])
        if not result.ok:
            cur = result.current
            raise ConditionFailed(
                current=cur.version_id if cur is not None and not cur.is_delete_marker else None
            )
        (v,) = result.written
        self._after_put(v)
        return v

    def _after_put(self, v: ObjectVersion) -> None:
        k = (v.bucket, v.key)
        self._cache.put_newer(k, v)
        lru = self._lru
        if lru is not None:
            cost = entry_cost(v.key, v.size)
            if v.is_null:
                lru.set(k, cost)  # it replaced the key's one version
            else:
                lru.add(k, cost)  # a versioned bucket keeps the older ones too
            if lru.bytes > lru.max_bytes:
                victims = lru.victims(keep=k)
                for victim in victims:
                    lru.drop(victim)
                    self._cache.pop(victim)
                self._background.spawn(self._commit([PurgeOp(b, key) for b, key in victims]))

    # --- multipart uploads (``multipart.Multipart``; the commit is the Store's) --------

    async def create_multipart(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> MultipartUpload:
        """Start an upload; ``attrs`` are the object's, kept until completion."""
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        if self.space is not None:
            self.space.check()
        return await self.multipart.create(bucket, key, content_type, attrs)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> MultipartUpload:
        """The upload, which must belong to ``bucket``/``key`` (else ``NoSuchUpload``;
        ``NoSuchBucket`` first when the bucket is gone, as S3 answers)."""
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        return await self.multipart.get(bucket, key, upload_id)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        source: AsyncIterator[bytes],
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> Part:
        """Store one part from ``source`` (see ``Multipart.upload_part``)."""
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        if self.space is not None:
            self.space.check()
            source = _charged(self.space, source)
        return await self.multipart.upload_part(b, key, upload_id, part_number, source, attrs)

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        derive_attrs: Callable[[Sequence[Part], Mapping[str, str]], Mapping[str, str]]
        | None = None,
        condition: Condition | None = None,
    ) -> tuple[ObjectVersion, list[Part]]:
        """Make the listed (part number, etag) parts, in ascending order, the object.

        The parts are checked by ``Multipart.choose`` (``InvalidPart``,
        ``EntityTooSmall``); the metadata store re-checks their ETags in the same
        transaction that moves the parts' chunks to the version. ``condition`` (S3's
        If-Match / If-None-Match on the Complete) is decided in that transaction too:
        when it fails, ``ConditionFailed`` and nothing changes, the upload stays open.
        Returns the version and the parts used.
        """
        b = self._buckets.get(bucket) or await self.buckets.miss(bucket)
        up, chosen, etag = await self.multipart.choose(bucket, key, upload_id, parts)
        size = sum(p.size for p in chosen)
        self._check_size(size)
        attrs = up.attrs if derive_attrs is None else derive_attrs(chosen, up.attrs)
        v = self._new_version(
            b,
            key,
            size=size,
            etag=etag,
            inline=None,
            chunks=tuple(c for p in chosen for c in p.chunks),
            content_type=up.content_type,
            attrs=attrs,
        )
        try:
            async with self._exclusive():
                result = await self.meta.complete_upload(upload_id, v, list(parts), condition)
        finally:
            self._cache.generation += 1
        if not result.ok:
            cur = result.current
            raise ConditionFailed(
                current=cur.version_id if cur is not None and not cur.is_delete_marker else None
            )
        self.chunks.collect_later(result.freed_chunks)
        (written,) = result.written
        self._after_put(written)
        return written, chosen

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        await self.multipart.abort(bucket, key, upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, marker: int = 0, limit: int = 1000
    ) -> tuple[MultipartUpload, list[Part]]:
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        return await self.multipart.list_parts(bucket, key, upload_id, marker, limit)

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> list[MultipartUpload]:
        self._buckets.get(bucket) or await self.buckets.miss(bucket)
        return await self.meta.list_uploads(bucket, prefix, key_marker, upload_id_marker, limit)


async def _charged(space: Space, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``source``, each piece charged to the reserve before it goes on (a large
    upload, or a part, stops at the reserve)."""
    async for piece in source:
        space.check(len(piece))
        yield piece
