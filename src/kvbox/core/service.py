"""The storage core's one service: operations that span metadata and bytes.

Layer: core. Rules: knows no protocol; front doors (GW-KV, later S3 and the console) call
only this. It owns three things the stores below it don't:

* **Order of durability.** Chunk bytes are made durable (``BlobStore``) before the
  metadata that references them is committed (``MetaStore.commit``), and a write is
  acknowledged only when that commit returns. A crash between the two leaves an orphan
  chunk (harmless; ``kvbox fsck`` removes it), never a version without its bytes.
* **Chunk garbage collection.** Chunks freed by a commit are deleted only after a
  re-check, under ``_chunk_lock``, that no committed version references them and no write
  in flight has pinned them (docs/ARCHITECTURE.md, "Chunk lifetime").
* **A read cache** of newest versions (small values inline), so hot GETs need no thread hop
  and no SQL; and in ``--max-memory`` mode the LRU eviction that bounds the stored bytes.
* **The journal's memtable** (``kvbox.core.journal``). Batched small writes into a bucket
  without versioning are acknowledged once their journal frame is fsync'd; until the
  background applier has committed them to the MetaStore they live in ``_mem`` (and,
  while being applied, ``_imm``), which single-key reads consult first. Every other read
  first applies what is pending (``_settle``), and every other write also waits out
  journal writes in flight and stops new ones until it is committed (``_exclusive``),
  so the MetaStore sees all writes in the order they were acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeAlias

from kvbox.core import lock
from kvbox.core.blob import BlobStore
from kvbox.core.journal import Journal, to_version
from kvbox.core.journal.codec import pack_record
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
    WriteOp,
    WriteResult,
)
from kvbox.errors import (
    ConditionFailed,
    EntityTooSmall,
    InvalidArgument,
    InvalidBucketState,
    InvalidPart,
    KvboxError,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotFound,
    StorageError,
    ValueTooLarge,
)

#: Values up to this size live inside the metadata row. SQLite's own measurements
#: ("Internal Versus External BLOBs") find blobs under ~100 KB read faster from the
#: database than from separate files, and it saves a file fsync per small write.
INLINE_MAX: Final = 64 * 1024
#: Large values are cut into chunks of this size: big enough that per-chunk overhead
#: (a file, an fsync, a metadata entry) is negligible, small enough to buffer one.
CHUNK_SIZE: Final = 8 * 1024 * 1024
#: The memtable's bounds: past ``MEM_SOFT`` bytes the applier starts at once instead of
#: at its next interval; past ``MEM_HARD`` journaled writes wait for it (backpressure).
MEM_SOFT: Final = 32 * 1024 * 1024
MEM_HARD: Final = 128 * 1024 * 1024
#: The applier commits the memtable at least this often (seconds), and sooner once
#: ``JOURNAL_SOFT`` bytes were journaled since its last start. Longer means fewer commits
#: of hot keys (each key once per interval: at 100,000 SETs/s over 10,000 keys, the
#: SQLite writer's share of the GIL halves from 1 s to 2 s) and more journal to read
#: after a crash (bounded by ``JOURNAL_SOFT``, a few seconds of replay).
APPLY_INTERVAL: Final = 2.0
JOURNAL_SOFT: Final = 256 * 1024 * 1024
#: Memtable entries turned into ops between two yields to the event loop.
_APPLY_SLICE: Final = 1000
#: Memtable bytes counted per entry besides its value.
_MEM_OVERHEAD: Final = 200
#: S3's smallest part but the last of a multipart upload.
MIN_PART_SIZE: Final = 5 * 1024 * 1024
#: Rough per-entry overhead of a cached version, for the cache's byte accounting.
_ENTRY_OVERHEAD: Final = 240
#: Pieces up to this size are hashed on the event loop: MD5 of 256 KiB takes about half
#: a millisecond, less than a worker-thread round trip costs a small PUT in CPU and
#: GIL hand-offs (a 4 KiB body hashes in microseconds).
_HASH_INLINE_MAX: Final = 256 * 1024


async def _md5_update(md5: hashlib._Hash, data: bytes) -> None:
    """Hash ``data``, in a worker thread only when it is big enough to hold the loop."""
    if len(data) > _HASH_INLINE_MAX:
        await asyncio.to_thread(md5.update, data)
    else:
        update_holding_gil(md5, data)


#: hashlib releases the GIL while it hashes 2048 bytes or more (CPython's
#: HASHLIB_GIL_MINSIZE). Getting it back means waiting for whichever thread took it
#: meanwhile -- under load, the metadata writer -- which cost a 4 KiB PUT ~50 µs on the
#: loop's thread. Small data is cheaper hashed in pieces that keep the GIL.
_GIL_MINSIZE: Final = 2048
_KEEP_GIL_MAX: Final = 64 * 1024


class Updatable(Protocol):
    """A hash or checksum fed incrementally (hashlib objects, ``s3.checksums``)."""

    def update(self, data: bytes | memoryview, /) -> None: ...


def update_holding_gil(h: Updatable, data: bytes) -> None:
    """``h.update(data)``; for data up to 64 KiB, without letting go of the GIL."""
    n = len(data)
    if n < _GIL_MINSIZE or n > _KEEP_GIL_MAX:
        h.update(data)
        return
    view = memoryview(data)
    step = _GIL_MINSIZE - 1
    for off in range(0, n, step):
        h.update(view[off : off + step])


@dataclass(frozen=True, slots=True)
class FileSegment:
    """``length`` bytes at ``offset`` of a local chunk file (``Store.pin_files``)."""

    path: Path
    offset: int
    length: int


class Miss(enum.Enum):
    """The read cache's "don't know" (None already means "known absent")."""

    MISS = "miss"


MISS: Final = Miss.MISS
_MISS: Final = MISS
Peeked: TypeAlias = ObjectVersion | Literal[Miss.MISS] | None

log = logging.getLogger(__name__)


#: A journaled write not yet applied to the MetaStore (a memtable entry): its LSN,
#: version id, mtime and bytes. A plain tuple of atomic values: the cheapest thing to
#: build, and the garbage collector stops tracking it, which matters at 100,000 a second.
_Pending: TypeAlias = tuple[int, str, int, bytes]
_LSN: Final = 0
_VID: Final = 1
_MTIME: Final = 2
_DATA: Final = 3


def _done_future(value: int) -> asyncio.Future[int]:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _consume_result(task: asyncio.Future[None]) -> None:
    """Mark a task's outcome as seen: its awaiter may be gone (cancelled)."""
    if not task.cancelled():
        task.exception()


class _Cache:
    """Newest versions by (bucket, key), bounded by bytes, evicting oldest-inserted first.

    Insertion order rather than LRU: a hit costs one dict lookup (an LRU's reordering
    was 12% of a cached GET), and hot keys are re-inserted by every write anyway.
    Entries are only ever replaced by versions with a larger ``seq`` or removed, so a slow
    read can never put back an older version than a write already cached (see
    ``Store._populate``).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[tuple[str, str], ObjectVersion | None] = OrderedDict()

    @staticmethod
    def _cost(v: ObjectVersion | None) -> int:
        if v is None:
            return _ENTRY_OVERHEAD
        return _ENTRY_OVERHEAD + (len(v.inline) if v.inline is not None else 0)

    def get(self, k: tuple[str, str]) -> Peeked:
        return self._d.get(k, _MISS)

    def put(self, k: tuple[str, str], v: ObjectVersion | None) -> None:
        if self.max_bytes <= 0:
            return
        d = self._d
        old = d.pop(k, _MISS)
        if old is not _MISS:
            self.bytes -= self._cost(old)
        d[k] = v
        self.bytes += self._cost(v)
        while self.bytes > self.max_bytes and d:
            _, victim = d.popitem(last=False)  # O(1), unlike iterating a plain dict
            self.bytes -= self._cost(victim)

    def put_newer(self, k: tuple[str, str], v: ObjectVersion) -> None:
        old = self._d.get(k)
        if old is not None and old.seq > v.seq:
            return
        self.put(k, v)

    def pop(self, k: tuple[str, str]) -> None:
        old = self._d.pop(k, _MISS)
        if old is not _MISS:
            self.bytes -= self._cost(old)

    def drop_bucket(self, bucket: str) -> None:
        """Forget every entry of ``bucket`` (a scan: buckets are deleted rarely)."""
        for k in [k for k in self._d if k[0] == bucket]:
            self.pop(k)


class _Lru:
    """Stored bytes per key in recency order: the ``--max-memory`` eviction policy."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.sizes: OrderedDict[tuple[str, str], int] = OrderedDict()

    def touch(self, k: tuple[str, str]) -> None:
        if k in self.sizes:
            self.sizes.move_to_end(k)

    def set(self, k: tuple[str, str], size: int) -> None:
        self.bytes -= self.sizes.pop(k, 0)
        self.sizes[k] = size
        self.bytes += size

    def drop(self, k: tuple[str, str]) -> None:
        self.bytes -= self.sizes.pop(k, 0)

    def victims(self, keep: tuple[str, str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        excess = self.bytes - self.max_bytes
        for k, size in self.sizes.items():
            if excess <= 0:
                break
            if k == keep:
                continue
            out.append(k)
            excess -= size
        return out


#: Chunk ids looked up per ``_chunk_lock`` hold in ``remove_orphans``.
_ORPHAN_BATCH: Final = 256


class _KeyMutex:
    """A key's mutex and how many tasks hold or await it (the entry goes at zero)."""

    __slots__ = ("mutex", "users")

    def __init__(self) -> None:
        self.mutex = asyncio.Lock()
        self.users = 0


def _locked_attrs(bucket: Bucket, attrs: Mapping[str, str], now_ns: int) -> Mapping[str, str]:
    """A new version's attrs in ``bucket``: lock entries are refused without object lock,
    and the default retention is added where the write named no retention."""
    config = lock.config_of(bucket)
    if config is None:
        if attrs and lock.has_lock_attrs(attrs):
            raise InvalidArgument("object lock settings in a bucket without object lock")
        return attrs
    given = lock.VersionLock.of(attrs)
    wanted = config.new_version_lock(given, now_ns)
    if wanted == given:
        return attrs
    return {**attrs, **wanted.attrs()}


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
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        #: Where the journal lives; None: every write commits to the MetaStore directly.
        self.journal_dir = journal_dir if max_memory is None else None
        self._journal: Journal | None = None
        self._mem: dict[tuple[str, str], _Pending] = {}
        self._imm: dict[tuple[str, str], _Pending] = {}
        #: Versions built (with their MD5) for memtable entries that were read.
        self._mem_v: dict[tuple[str, str], ObjectVersion] = {}
        self._mem_bytes = 0
        #: ``_mem_bytes`` as of its last exact count (``_recount``).
        self._mem_counted = 0
        #: Bytes journaled since the applier last took the memtable.
        self._journaled_bytes = 0
        #: Writes that must not be overtaken by journaled ones are running (``_exclusive``).
        self._direct = 0
        self._apply_lock = asyncio.Lock()
        self._apply_wake = asyncio.Event()
        self._applier: asyncio.Task[None] | None = None
        self._closing = False
        #: An apply was cancelled while its commit ran (only the loop's teardown can do
        #: that, see ``_apply``), so whether it happened is unknown: no later write or
        #: apply may go on in this process; the next start replays the journal.
        self._apply_lost = False
        self.inline_max = inline_max
        self.chunk_size = chunk_size
        self._ids = VersionIdGenerator()
        self._cache = _Cache(cache_bytes)
        self._lru = _Lru(max_memory) if max_memory is not None else None
        self._buckets: dict[str, Bucket] = {}
        #: Bumped on every committed write; a cache miss only populates the cache if no
        #: write completed while it was reading (so it can't cache a stale version).
        self._write_gen = 0
        self._pinned: Counter[str] = Counter()
        self._chunk_lock = asyncio.Lock()
        #: One mutex per key of a bucket with object lock, held while its versions are
        #: removed or their attrs rewritten, so a lock decision and the write it allows
        #: are one step (``_key_mutex``). Entries live only while held or awaited.
        self._key_locks: dict[tuple[str, str], _KeyMutex] = {}
        self._gc_tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        await self.blobs.open()
        await self.meta.open()
        if self.journal_dir is not None:
            from kvbox.core.journal import open_journal

            self._journal = await open_journal(self.meta, self.journal_dir)
            self._applier = asyncio.create_task(self._apply_loop(), name="kvbox-journal-apply")
        for b in await self.meta.list_buckets():
            self._buckets[b.name] = b

    async def close(self) -> None:
        if self._applier is not None:
            self._closing = True
            self._apply_wake.set()
            with contextlib.suppress(Exception):
                await self._applier  # it finishes the apply it is in, then stops
            self._applier = None
        if self._journal is not None:
            await self._journal.wait_idle()
            try:
                await self._apply()  # a clean stop leaves nothing to replay
            except Exception:
                log.exception("journal: the last apply failed; the next start replays it")
            finally:
                await self._journal.close()
                self._journal = None
        if self._gc_tasks:
            await asyncio.gather(*self._gc_tasks, return_exceptions=True)
        await self.meta.close()
        await self.blobs.close()

    # --- the journal ------------------------------------------------------------------

    async def _apply_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._apply_wake.wait(), APPLY_INTERVAL)
            self._apply_wake.clear()
            if not self._mem or self._closing:
                continue
            try:
                await self._apply()
            except Exception:
                log.exception("journal: applying the memtable failed; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def _apply(self) -> None:
        """Commit the memtable to the MetaStore, with the journal LSN it covers.

        The work runs in a task of its own, so a caller cancelled while waiting (a
        client gone, a timeout) never leaves it half done: an apply whose commit may or
        may not have happened would make every later step guesswork.
        """
        if self._apply_lost:
            raise StorageError("an interrupted journal apply needs a restart of kvbox")
        task = asyncio.ensure_future(self._apply_locked())
        task.add_done_callback(_consume_result)
        await asyncio.shield(task)

    async def _apply_locked(self) -> None:
        async with self._apply_lock:
            mem = self._mem
            journal = self._journal
            if not mem or journal is None or self._apply_lost:
                return
            # On durability, records enter the memtable at once and in LSN order, so it
            # now holds (the newest of) every record up to ``durable_lsn``.
            lsn = journal.durable_lsn
            self._imm, self._mem, self._mem_bytes, self._mem_counted = mem, {}, 0, 0
            self._journaled_bytes = 0
            try:
                ops = await self._apply_ops(mem)
                results = await self.meta.commit(ops, journal_lsn=lsn)
            except (NotFound, InvalidArgument) as exc:  # one op failed, the rest is in
                log.error("journal: applying the memtable: %s", exc)
                for k in mem:
                    self._cache.pop(k)
                results = []
            except asyncio.CancelledError:
                # The commit may still happen (MetaStore.commit isn't undone by a
                # cancel); only a replay from the journal at the next start can tell.
                self._apply_lost = True
                raise
            except BaseException:
                # Nothing was applied (the commit failed as a whole: StorageError):
                # back into the memtable, under newer entries, for the next try.
                for k, e in mem.items():
                    if k not in self._mem:
                        self._mem[k] = e
                self._recount()
                raise
            finally:
                self._imm = {}
                if self._mem_v:
                    mem_now = self._mem
                    self._mem_v = {k: v for k, v in self._mem_v.items() if k in mem_now}
                self._write_gen += 1
            put_newer = self._cache.put_newer
            freed: list[str] = []
            for r in results:
                (v,) = r.written
                put_newer((v.bucket, v.key), v)
                freed.extend(r.freed_chunks)
            if freed:
                self._spawn(self._collect(freed))
        await journal.release(lsn)

    async def _apply_ops(self, mem: dict[tuple[str, str], _Pending]) -> list[WriteOp]:
        """The memtable as PutOps. Built a slice at a time, letting the loop serve
        requests in between: each op costs an MD5 of its value. Their order doesn't
        matter: one commit, one op per key."""
        items = list(mem.items())
        ops: list[WriteOp] = []
        for i in range(0, len(items), _APPLY_SLICE):
            if i:
                await asyncio.sleep(0)
            ops.extend(PutOp(self._pending_version(k, e)) for k, e in items[i : i + _APPLY_SLICE])
        return ops

    def _pending_version(self, k: tuple[str, str], e: _Pending) -> ObjectVersion:
        v = self._mem_v.get(k)
        if v is None or v.version_id != e[_VID]:
            v = to_version(k[0], k[1], e[_VID], e[_MTIME], e[_DATA])
        return v

    async def _settle(self) -> None:
        """Before a read the memtable can't answer: apply every acknowledged write."""
        if self._mem or self._imm or self._apply_lost:
            await self._apply()

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Around a write that doesn't go through the journal: journal writes in flight
        are applied first, and no new one starts until this write is committed."""
        if self._apply_lost:
            raise StorageError("an interrupted journal apply needs a restart of kvbox")
        self._direct += 1
        try:
            journal = self._journal
            if journal is not None:
                await journal.wait_idle()
                await self._settle()
            yield
        finally:
            self._direct -= 1

    def _on_durable(
        self, entries: list[tuple[tuple[str, str], _Pending]], nbytes: int
    ) -> Callable[[int], None]:
        def hook(first: int) -> None:
            self._mem.update(entries)  # one C loop; the entries carry their LSNs
            # An upper bound: a key written again replaced its older entry. Counted
            # exactly only when the bound says the memtable may be getting big.
            self._mem_bytes += nbytes + len(entries) * _MEM_OVERHEAD
            self._journaled_bytes += nbytes
            if self._mem_bytes >= MEM_SOFT:
                self._recount(MEM_SOFT)
            if self._mem_bytes >= MEM_SOFT or self._journaled_bytes >= JOURNAL_SOFT:
                self._apply_wake.set()

        return hook

    def _recount(self, limit: int = 0) -> None:
        """Count the memtable's bytes exactly (a pass over it, about 50 ns an entry),
        but for a ``limit`` only once a quarter of it was added since the last count:
        near a limit, counting at every batch would cost a pass per batch."""
        if limit and self._mem_bytes - self._mem_counted < limit // 4:
            return
        mem = self._mem
        self._mem_bytes = sum([len(e[_DATA]) for e in mem.values()]) + len(mem) * _MEM_OVERHEAD
        self._mem_counted = self._mem_bytes

    def _journaled(self, b: Bucket) -> bool:
        j = self._journal
        return (
            j is not None
            and self._direct == 0
            and j.broken is None
            and not self._apply_lost
            and b.versioning is Versioning.OFF
        )

    def submit_batch(
        self, bucket: str, items: Sequence[tuple[str, bytes]]
    ) -> tuple[list[str | KvboxError], asyncio.Future[int]] | None:
        """``put_batch`` without a coroutine, when the batch can go through the journal
        right now: each item's version id (or error) at once, and a future that
        resolves (or fails) when they are durable. None: use ``put_batch``.

        For front doors that answer from callbacks: a task per batch of SETs cost one
        request per connection more than the rest of its path in Python.
        """
        b = self._buckets.get(bucket)
        if b is None or not self._journaled(b):
            return None
        if self._mem_bytes >= MEM_HARD:
            self._recount(MEM_HARD)
            if self._mem_bytes >= MEM_HARD:
                return None
        return self._submit_journaled(b, items)

    async def _put_journaled(
        self, b: Bucket, items: Sequence[tuple[str, bytes]]
    ) -> list[str | KvboxError]:
        out, durable = self._submit_journaled(b, items)
        await durable
        return out

    def _submit_journaled(
        self, b: Bucket, items: Sequence[tuple[str, bytes]]
    ) -> tuple[list[str | KvboxError], asyncio.Future[int]]:
        journal = self._journal
        assert journal is not None
        bucket = b.name
        bb = bucket.encode()
        limit = self.inline_max
        now = time.time_ns()
        lb = len(bb)
        pack = pack_record
        out: list[str | KvboxError] = []
        pieces: list[bytes] = []
        entries: list[tuple[tuple[str, str], _Pending]] = []
        ids = iter(self._ids.new_many(len(items)))  # a value too large wastes its id
        # ``submit`` below, with nothing in between that could let another batch in,
        # gives these records the LSNs from ``next_lsn`` on.
        lsn = journal.next_lsn
        total = 0
        for key, data in items:
            n = len(data)
            if n > limit:
                out.append(ValueTooLarge("value too large for a batched write"))
                continue
            vid = next(ids)
            total += n
            kb = key.encode()
            vb = vid.encode()
            pieces += (pack(lb, len(kb), len(vb), n, now), bb, kb, vb, data)
            entries.append(((bucket, key), (lsn, vid, now, data)))
            lsn += 1
            out.append(vid)
        if entries:
            return out, journal.submit(pieces, len(entries), self._on_durable(entries, total))
        return out, _done_future(lsn)

    @property
    def max_memory(self) -> int | None:
        return self._lru.max_bytes if self._lru is not None else None

    # --- buckets ----------------------------------------------------------------------

    async def ensure_bucket(
        self, name: str, *, owner: str = "root", versioning: Versioning = Versioning.OFF
    ) -> Bucket:
        bucket = await self.meta.get_bucket(name)
        if bucket is None:
            bucket = Bucket(name, owner, time.time_ns(), versioning)
            if not await self.meta.create_bucket(bucket):
                bucket = await self.meta.get_bucket(name)
                assert bucket is not None
        if versioning is not Versioning.OFF and bucket.versioning is not versioning:
            async with self._exclusive():
                await self.meta.set_versioning(name, versioning)
                bucket = await self.meta.get_bucket(name)
                assert bucket is not None
                self._buckets[name] = bucket
        self._buckets[name] = bucket
        return bucket

    def _bucket(self, name: str) -> Bucket:
        b = self._buckets.get(name)
        if b is None:
            raise NoSuchBucket(name)
        return b

    # --- reads ------------------------------------------------------------------------

    def peek(self, bucket: str, key: str) -> Peeked:
        """The cached newest version (None: known absent), or ``MISS``: no thread hop."""
        k = (bucket, key)
        if self._mem or self._imm:
            e = self._mem.get(k) or self._imm.get(k)
            if e is not None:
                pv = self._mem_v.get(k)
                if pv is None or pv.version_id != e[_VID]:
                    pv = self._mem_v[k] = self._pending_version(k, e)
                return pv
        v = self._cache.get(k)
        if v is not _MISS and self._lru is not None:
            self._lru.touch(k)
        return v

    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        """Newest version of ``key`` (maybe a delete marker) or None."""
        v = self.peek(bucket, key)
        if v is not _MISS:
            return v
        self._bucket(bucket)
        gen = self._write_gen
        found = await self.meta.head(bucket, key)
        self._populate(gen, bucket, key, found)
        return found

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]:
        out: list[ObjectVersion | None] = []
        missing: list[int] = []
        for i, key in enumerate(keys):
            v = self.peek(bucket, key)
            if v is _MISS:
                missing.append(i)
                out.append(None)
            else:
                out.append(v)
        if missing:
            self._bucket(bucket)
            gen = self._write_gen
            found = await self.meta.head_many(bucket, [keys[i] for i in missing])
            for i, v in zip(missing, found, strict=True):
                out[i] = v
                self._populate(gen, bucket, keys[i], v)
        return out

    def _populate(self, gen: int, bucket: str, key: str, v: ObjectVersion | None) -> None:
        if gen == self._write_gen:
            self._cache.put((bucket, key), v)

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        self._bucket(bucket)
        await self._settle()
        return await self.meta.get_version(bucket, key, version_id)

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        self._bucket(bucket)
        await self._settle()
        return await self.meta.list_versions(bucket, key, limit)

    async def read(self, version: ObjectVersion) -> bytes:
        """All bytes of a version. For values that may be large, use ``iter_bytes``."""
        if version.inline is not None:
            return version.inline
        return b"".join([piece async for piece in self.iter_bytes(version)])

    async def iter_bytes(self, version: ObjectVersion) -> AsyncIterator[bytes]:
        """The version's bytes in order, one chunk in memory at a time.

        The chunks are pinned for the whole read, so an overwrite or delete that frees
        them meanwhile can't have them collected under the reader. Raises ``NoSuchKey`` if
        the version was removed before the read could pin it (call ``head`` again).
        """
        if version.inline is not None:
            yield version.inline
            return
        await self._pin_for_read(version)
        try:
            for c in version.chunks:
                yield await self.blobs.read(c.chunk_id)
        finally:
            self._release(list(version.chunks))

    async def pin_files(
        self, version: ObjectVersion, first: int, last: int
    ) -> tuple[list[FileSegment], Callable[[], None]] | None:
        """Bytes ``first..last`` (inclusive) of a chunked version as local file segments,
        for a zero-copy send; None when the version is inline or a chunk has no local file.

        The chunks stay pinned, exactly as during ``iter_bytes``, until the returned
        ``release`` is called (on the loop; calling it twice is harmless), so an
        overwrite or delete meanwhile cannot have a file collected under the sender.
        Raises ``NoSuchKey`` if the version is already gone.
        """
        if version.inline is not None or not version.chunks:
            return None
        segments: list[FileSegment] = []
        pos = 0
        for c in version.chunks:
            end = pos + c.size  # this chunk holds bytes pos..end-1
            if end > first and pos <= last:
                path = self.blobs.local_path(c.chunk_id)
                if path is None:
                    return None
                start = max(first, pos)
                segments.append(FileSegment(path, start - pos, min(last + 1, end) - start))
            pos = end
        if not segments:
            return None
        await self._pin_for_read(version)
        chunks = list(version.chunks)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(chunks)

        return segments, release

    async def _pin_for_read(self, version: ObjectVersion) -> None:
        ids = [c.chunk_id for c in version.chunks]
        async with self._chunk_lock:
            refs = await self.meta.chunk_ref_counts(ids)
            if any(refs.get(c, 0) == 0 and c not in self._pinned for c in ids):
                raise NoSuchKey(f"{version.key}: version {version.version_id} is gone")
            for c in ids:
                self._pinned[c] += 1

    async def list_bucket_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        limit: int = 1000,
    ) -> list[ObjectVersion]:
        """See ``MetaStore.list_bucket_versions``."""
        self._bucket(bucket)
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
        self._bucket(bucket)
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
                    return v
            if len(page) < 1000:
                return None
            key_marker, marker = key, page[-1].s3_version_id

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        """Newest live versions in UTF-8 byte order (see ``MetaStore.list_objects``)."""
        self._bucket(bucket)
        await self._settle()
        return await self.meta.list_objects(bucket, prefix, start_after, limit)

    async def list_buckets(self) -> list[Bucket]:
        return await self.meta.list_buckets()

    async def get_bucket(self, name: str) -> Bucket | None:
        """The bucket with its settings. Served from memory once known: this process is
        the only writer of its data directory (``datadir.lock_data_dir``) and every
        bucket change goes through this class, so the copy is never stale. The access
        check reads it on every request that is not root's."""
        b = self._buckets.get(name)
        if b is not None:
            return b
        b = await self.meta.get_bucket(name)
        if b is not None:
            self._buckets[name] = b
        return b

    async def set_bucket_attrs(self, name: str, changes: Mapping[str, str | None]) -> Bucket:
        """Change bucket settings (policy, ACL, CORS, website...); None removes one."""
        b = await self.meta.set_bucket_attrs(name, changes)
        self._buckets[name] = b
        return b

    async def create_bucket(
        self,
        name: str,
        *,
        owner: str,
        versioning: Versioning = Versioning.OFF,
        attrs: Mapping[str, str] = EMPTY_ATTRS,
        object_lock: bool = False,
    ) -> bool:
        """False if the name is taken (by anyone: S3 bucket names are global).

        ``object_lock``: the bucket is created with object lock on, and so with
        versioning enabled for good (``kvbox.core.lock``).
        """
        if object_lock:
            self._check_lock_possible()
            versioning = Versioning.ENABLED
            attrs = {**attrs, lock.CONFIG_ATTR: lock.LockConfig().to_attr()}
        bucket = Bucket(name, owner, time.time_ns(), versioning, attrs)
        created = await self.meta.create_bucket(bucket)
        if created:
            self._buckets[name] = bucket
        return created

    async def delete_bucket(self, name: str) -> bool:
        """Delete a bucket without versions, and its unfinished multipart uploads with it;
        raises ``BucketNotEmpty``. False if there was no such bucket.

        The read cache forgets the bucket's keys: a key looked up while the bucket
        existed is cached as absent, and must answer NoSuchBucket now, not NoSuchKey
        (nor, should the name be created again, anything of the old bucket's).
        """
        async with self._exclusive():
            freed = await self.meta.delete_bucket(name)
            self._buckets.pop(name, None)
            self._cache.drop_bucket(name)
        if freed:
            self._spawn(self._collect(list(freed)))
        return freed is not None

    async def set_versioning(self, name: str, state: Versioning) -> None:
        """Raises ``InvalidBucketState`` for anything but ENABLED in a bucket with object
        lock: S3 never lets such a bucket suspend versioning."""
        b = self._buckets.get(name)
        if state is not Versioning.ENABLED and lock.config_of(b) is not None:
            raise InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning "
                "state cannot be changed."
            )
        # The new state is in ``_buckets`` before journaled writes may start again.
        async with self._exclusive():
            await self.meta.set_versioning(name, state)
            b = await self.meta.get_bucket(name)
            if b is not None:
                self._buckets[name] = b

    async def set_lock_config(self, name: str, config: lock.LockConfig) -> Bucket:
        """Turn object lock on (for good) and set its default retention. The bucket's
        versioning must be ENABLED (S3: else ``InvalidBucketState``); from then on it
        cannot be suspended (``set_versioning``)."""
        self._check_lock_possible()
        b = self._bucket(name)
        if b.versioning is not Versioning.ENABLED:
            raise InvalidBucketState(
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
            )
        return await self.set_bucket_attrs(name, {lock.CONFIG_ATTR: config.to_attr()})

    def _check_lock_possible(self) -> None:
        if self._lru is not None:
            # Cache mode evicts keys to stay under --max-memory: it could never keep a
            # promise not to remove a version.
            raise InvalidArgument("object lock is not available in cache mode (--max-memory)")

    async def stats(self, bucket: str) -> BucketStats:
        self._bucket(bucket)
        await self._settle()
        return await self.meta.stats(bucket)

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
            attrs = _locked_attrs(bucket, attrs, now)
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
        )

    def _check_size(self, size: int) -> None:
        if self._lru is not None and size > self._lru.max_bytes:
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
        b = self._bucket(bucket)
        self._check_size(len(data))
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
                chunks.append(await self._put_chunk(data[off : off + self.chunk_size]))
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
            self._release(chunks)

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
        """Write a value of any size from ``source``, holding at most two chunks.

        Pipelined: while chunk N is hashed (MD5 for the ETag, SHA-256 for its address,
        in two worker threads at once) and written and fsync'd, the loop already reads
        chunk N+1 from ``source``. One chunk job at a time keeps the MD5 in order and
        memory bounded; measured on a 1 GiB upload, overlapping the two roughly
        doubles what one serial chunk at a time reached.
        """
        b = self._bucket(bucket)
        md5 = hashlib.md5(usedforsecurity=False)
        chunks: list[ChunkRef] = []
        size = 0
        buf = bytearray()
        inflight: asyncio.Future[ChunkRef] | None = None
        try:
            async for piece in source:
                size += len(piece)
                self._check_size(size)
                buf += piece
                if len(buf) >= self.chunk_size:
                    data = bytes(buf[: self.chunk_size])
                    del buf[: self.chunk_size]
                    if inflight is not None:
                        chunks.append(await inflight)
                        inflight = None
                    inflight = asyncio.ensure_future(self._md5_and_put(md5, data))
            if inflight is not None:
                chunks.append(await inflight)
                inflight = None
            tail = bytes(buf)
            await _md5_update(md5, tail)
            if not chunks and size <= self.inline_max:
                v = self._new_version(
                    b,
                    key,
                    size=size,
                    etag=md5.hexdigest(),
                    inline=tail,
                    content_type=content_type,
                    attrs=attrs,
                )
            else:
                if tail:
                    chunks.append(await self._put_chunk(tail))
                v = self._new_version(
                    b,
                    key,
                    size=size,
                    etag=md5.hexdigest(),
                    inline=None,
                    chunks=tuple(chunks),
                    content_type=content_type,
                    attrs=attrs,
                )
            return await self._commit_put(PutOp(v, condition))
        finally:
            if inflight is not None:
                # Failed or cancelled mid-body: the last chunk job may still finish, and
                # its chunk must be unpinned like the others once it has.
                inflight.add_done_callback(self._release_when_done)
            self._release(chunks)

    async def _md5_and_put(self, md5: Any, data: bytes) -> ChunkRef:
        """Chunk ``data``'s MD5 update (for the object's ETag) and its durable write, in
        parallel worker threads (hashlib releases the GIL on large buffers)."""
        _, ref = await asyncio.gather(asyncio.to_thread(md5.update, data), self._put_chunk(data))
        return ref

    def _release_when_done(self, job: asyncio.Future[ChunkRef]) -> None:
        if not job.cancelled() and job.exception() is None:
            self._release([job.result()])

    async def put_many(
        self, bucket: str, pairs: Iterable[tuple[str, bytes]]
    ) -> list[ObjectVersion]:
        """Write several small values atomically: all are committed or none."""
        b = self._bucket(bucket)
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

    async def put_batch(
        self, bucket: str, items: Sequence[tuple[str, bytes]]
    ) -> list[str | KvboxError]:
        """Independent small writes sharing one commit (pipelined SETs); each item's
        result is its new version id or its error.

        Unlike ``put_many`` each item stands alone: one that fails doesn't stop the others.
        In a bucket without versioning they go through the journal (module docstring).
        """
        b = self._bucket(bucket)
        while self._journaled(b):
            if self._mem_bytes >= MEM_HARD:
                self._recount(MEM_HARD)
            if self._mem_bytes < MEM_HARD:
                return await self._put_journaled(b, items)
            await self._apply()  # backpressure: the applier is behind
        out: list[ObjectVersion | KvboxError | None] = []
        ops: list[PutOp] = []
        slots: list[int] = []
        limit = self.inline_max if self._lru is None else min(self.inline_max, self._lru.max_bytes)
        md5 = hashlib.md5
        new_id = self._ids.new
        now = time.time_ns()
        is_null = b.versioning is not Versioning.ENABLED
        # A bucket with object lock and a default retention gives it to every new version.
        attrs = _locked_attrs(b, EMPTY_ATTRS, now) if b.attrs else EMPTY_ATTRS
        for key, data in items:
            size = len(data)
            if size > limit:
                out.append(ValueTooLarge("value too large for a batched write"))
                continue
            slots.append(len(out))
            out.append(None)
            v = ObjectVersion(
                bucket, key, new_id(), size, md5(data, usedforsecurity=False).hexdigest(), now,
                False, is_null, data, (), "application/octet-stream", attrs,
            )  # fmt: skip
            ops.append(PutOp(v))
        if ops:
            results = await self._commit(ops)
            for i, r in zip(slots, results, strict=True):
                (v,) = r.written
                self._after_put(v)
                out[i] = v
        return [r.version_id if isinstance(r, ObjectVersion) else r for r in out]  # type: ignore[misc]

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
        ``bypass_governance``; else ``ObjectLocked``. A delete without a version id
        there only ever adds a delete marker (versioning is always on), which S3 allows.
        """
        b = self._bucket(bucket)
        if version_id is not None and lock.config_of(b) is not None:
            async with self._key_mutex(bucket, key):
                v = await self.get_version(bucket, key, version_id)
                if v is not None:
                    now = time.time_ns() if now_ns is None else now_ns
                    lock.check_removal(v, now, bypass_governance=bypass_governance)
                return await self._delete(b, key, version_id, condition)
        return await self._delete(b, key, version_id, condition)

    async def _delete(
        self, b: Bucket, key: str, version_id: str | None, condition: Condition | None
    ) -> WriteResult:
        bucket = b.name
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
        (result,) = await self._commit([DeleteOp(bucket, key, version_id, marker, condition)])
        k = (bucket, key)
        self._cache.pop(k)
        if self._lru is not None:
            self._lru.drop(k)
        return result

    async def set_attrs(
        self, bucket: str, key: str, version_id: str | None, attrs: Mapping[str, str]
    ) -> ObjectVersion | None:
        """Replace a stored version's attrs in place (tags, ACL): same version id, same
        Last-Modified. None if there is no such version (or it is a delete marker).

        The version's object lock entries are never changed here: the stored ones are
        carried over whatever ``attrs`` holds (only ``set_object_lock`` changes them), so
        a tag or ACL change can neither drop nor forge a retention.
        """
        b = self._bucket(bucket)
        if lock.config_of(b) is None:
            if lock.has_lock_attrs(attrs):
                raise InvalidArgument("object lock settings in a bucket without object lock")
            return await self._set_attrs(bucket, key, version_id, attrs)
        async with self._key_mutex(bucket, key):
            v = await self._version_or_newest(bucket, key, version_id)
            if v is None or v.is_delete_marker:
                return None
            kept = lock.without_lock(attrs)
            kept.update(lock.VersionLock.of(v.attrs).attrs())
            return await self._set_attrs(bucket, key, v.version_id, kept)

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
        ``now_ns``; else ``ObjectLocked``. ``InvalidBucketState`` without object lock on
        the bucket; None if there is no such version (or it is a delete marker)."""
        b = self._bucket(bucket)
        if lock.config_of(b) is None:
            raise InvalidBucketState("Bucket is missing Object Lock Configuration")
        now = time.time_ns() if now_ns is None else now_ns
        async with self._key_mutex(bucket, key):
            v = await self._version_or_newest(bucket, key, version_id)
            if v is None or v.is_delete_marker:
                return None
            current = lock.VersionLock.of(v.attrs)
            new_retention = current.retention
            if not isinstance(retention, lock.Keep):
                lock.check_change(current, retention, now, bypass_governance=bypass_governance)
                new_retention = retention
            hold = current.legal_hold if legal_hold is None else legal_hold
            attrs = lock.without_lock(v.attrs)
            attrs.update(lock.VersionLock(new_retention, hold).attrs())
            return await self._set_attrs(bucket, key, v.version_id, attrs)

    async def _version_or_newest(
        self, bucket: str, key: str, version_id: str | None
    ) -> ObjectVersion | None:
        if version_id is not None:
            return await self.get_version(bucket, key, version_id)
        await self._settle()
        return await self.meta.head(bucket, key)

    async def _set_attrs(
        self, bucket: str, key: str, version_id: str | None, attrs: Mapping[str, str]
    ) -> ObjectVersion | None:
        (result,) = await self._commit([SetAttrsOp(bucket, key, version_id, attrs)])
        self._cache.pop((bucket, key))
        return None if result.not_found else result.written[0]

    @contextlib.asynccontextmanager
    async def _key_mutex(self, bucket: str, key: str) -> AsyncIterator[None]:
        """Serialise lock decisions on one key with the writes they allow: without it a
        delete could check a version, then a retention be set on it, then the delete
        remove it. Only keys of buckets with object lock take it."""
        k = (bucket, key)
        entry = self._key_locks.get(k)
        if entry is None:
            entry = self._key_locks[k] = _KeyMutex()
        entry.users += 1
        try:
            async with entry.mutex:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._key_locks[k]

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
            lru.set(k, v.size)
            if lru.bytes > lru.max_bytes:
                victims = lru.victims(keep=k)
                for victim in victims:
                    lru.drop(victim)
                    self._cache.pop(victim)
                self._spawn(self._commit([PurgeOp(b, key) for b, key in victims]))

    async def _commit(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        # ``_exclusive`` spelled out: this is every direct write's path (S3 PUTs among
        # them), and an async context manager costs a generator per call.
        if self._apply_lost:
            raise StorageError("an interrupted journal apply needs a restart of kvbox")
        self._direct += 1
        try:
            journal = self._journal
            if journal is not None and (journal.busy or self._mem or self._imm):
                await journal.wait_idle()
                await self._settle()
            results = await self.meta.commit(ops)
        finally:
            self._direct -= 1
            self._write_gen += 1
        freed = [c for r in results for c in r.freed_chunks]
        if freed:
            self._spawn(self._collect(freed))
        return results

    # --- multipart uploads ------------------------------------------------------------

    async def create_multipart(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> MultipartUpload:
        """Start an upload; ``attrs`` are the object's, kept until completion."""
        self._bucket(bucket)
        upload = MultipartUpload(bucket, key, self._ids.new(), time.time_ns(), content_type, attrs)
        await self.meta.create_upload(upload)
        return upload

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> MultipartUpload:
        """The upload, which must belong to ``bucket``/``key`` (else ``NoSuchUpload``;
        ``NoSuchBucket`` first when the bucket is gone, as S3 answers)."""
        self._bucket(bucket)
        up = await self.meta.get_upload(upload_id)
        if up is None or up.bucket != bucket or up.key != key:
            raise NoSuchUpload(upload_id)
        return up

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        source: AsyncIterator[bytes],
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> Part:
        """Store one part from ``source`` as chunks (never inline: the parts' chunks
        become the object's), holding at most one chunk in memory."""
        await self.get_upload(bucket, key, upload_id)
        md5 = hashlib.md5(usedforsecurity=False)
        chunks: list[ChunkRef] = []
        size = 0
        buf = bytearray()
        try:
            async for piece in source:
                size += len(piece)
                buf += piece
                if len(buf) >= self.chunk_size:
                    data = bytes(buf[: self.chunk_size])
                    del buf[: self.chunk_size]
                    await asyncio.to_thread(md5.update, data)
                    chunks.append(await self._put_chunk(data))
            tail = bytes(buf)
            await _md5_update(md5, tail)
            if tail:
                chunks.append(await self._put_chunk(tail))
            part = Part(part_number, md5.hexdigest(), size, tuple(chunks), time.time_ns(), attrs)
            freed = await self.meta.put_part(upload_id, part)
            if freed:
                self._spawn(self._collect(list(freed)))
            return part
        finally:
            self._release(chunks)

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        derive_attrs: Callable[[Sequence[Part], Mapping[str, str]], Mapping[str, str]]
        | None = None,
    ) -> tuple[ObjectVersion, list[Part]]:
        """Make the listed (part number, etag) parts, in ascending order, the object.

        The caller checks the order (S3 does so before anything else); here each part
        must exist with that ETag (``InvalidPart``) and all but the last be at least
        ``MIN_PART_SIZE`` (``EntityTooSmall``). The ETag is S3's multipart one: the MD5
        of the parts' binary MD5s, then ``-N``. The metadata store re-checks the ETags
        in the same transaction that moves the parts' chunks to the version, so a part
        re-uploaded meanwhile cannot slip in. Returns the version and the parts used.
        """
        up = await self.get_upload(bucket, key, upload_id)
        stored: dict[int, Part] = {}
        marker = 0
        while True:
            page = await self.meta.list_parts(upload_id, marker, 1000)
            stored.update((p.part_number, p) for p in page)
            if len(page) < 1000:
                break
            marker = page[-1].part_number
        chosen: list[Part] = []
        for number, etag in parts:
            p = stored.get(number)
            if p is None or p.etag != etag:
                raise InvalidPart(f"part {number} was not uploaded or its ETag differs")
            chosen.append(p)
        for p in chosen[:-1]:
            if p.size < MIN_PART_SIZE:
                raise EntityTooSmall(f"part {p.part_number} is smaller than 5 MiB")
        md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
        etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
        b = self._bucket(bucket)
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
                result = await self.meta.complete_upload(upload_id, v, list(parts))
        finally:
            self._write_gen += 1
        if result.freed_chunks:
            self._spawn(self._collect(list(result.freed_chunks)))
        (written,) = result.written
        self._after_put(written)
        return written, chosen

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        await self.get_upload(bucket, key, upload_id)
        freed = await self.meta.abort_upload(upload_id)
        if freed:
            self._spawn(self._collect(list(freed)))

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, marker: int = 0, limit: int = 1000
    ) -> tuple[MultipartUpload, list[Part]]:
        up = await self.get_upload(bucket, key, upload_id)
        return up, await self.meta.list_parts(upload_id, marker, limit)

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> list[MultipartUpload]:
        self._bucket(bucket)
        return await self.meta.list_uploads(bucket, prefix, key_marker, upload_id_marker, limit)

    # --- chunks -----------------------------------------------------------------------

    async def _put_chunk(self, data: bytes) -> ChunkRef:
        w = self.blobs.writer()
        try:
            await w.write(data)
        except BaseException:
            await w.abort()
            raise
        async with self._chunk_lock:
            ref = await w.commit()
            self._pinned[ref.chunk_id] += 1
        return ref

    def _release(self, chunks: list[ChunkRef]) -> None:
        """Unpin a write's chunks; if the write failed they are unreferenced, and the
        collector (which re-checks references) removes them."""
        if not chunks:
            return
        self._unpin(chunks)
        self._spawn(self._collect([c.chunk_id for c in chunks]))

    def _unpin(self, chunks: Iterable[ChunkRef]) -> None:
        for c in chunks:
            n = self._pinned[c.chunk_id] - 1
            if n <= 0:
                del self._pinned[c.chunk_id]
            else:
                self._pinned[c.chunk_id] = n

    async def _collect(self, chunk_ids: list[str]) -> None:
        """Delete freed chunks that nothing references or pins any more."""
        async with self._chunk_lock:
            candidates = [c for c in set(chunk_ids) if c not in self._pinned]
            if not candidates:
                return
            refs = await self.meta.chunk_ref_counts(candidates)
            for c in candidates:
                if refs.get(c, 0) == 0 and c not in self._pinned:
                    await self.blobs.delete(c)

    async def remove_orphans(self, chunk_ids: Sequence[str]) -> int:
        """Delete those of ``chunk_ids`` that no version or part references and no write
        or reader pins, as ``_collect`` does for freed chunks; how many were deleted.

        The leftover sweep (``kvbox.core.leftovers``) hands in chunk files it found on
        disk. Safe against writes in flight: a write installs each chunk and pins it in
        one step under ``_chunk_lock`` and unpins it only after its metadata committed,
        and this checks pins and references under the same lock. Batches keep the lock
        short, so writes wait at most one batch's lookup.
        """
        removed = 0
        for i in range(0, len(chunk_ids), _ORPHAN_BATCH):
            batch = chunk_ids[i : i + _ORPHAN_BATCH]
            async with self._chunk_lock:
                candidates = [c for c in batch if c not in self._pinned]
                if not candidates:
                    continue
                refs = await self.meta.chunk_ref_counts(candidates)
                for c in candidates:
                    if refs.get(c, 0) == 0 and c not in self._pinned:
                        await self.blobs.delete(c)
                        removed += 1
        return removed

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._gc_tasks.add(task)
        task.add_done_callback(self._gc_tasks.discard)

    async def sweep_chunk_writers(self) -> None:
        """Wait for background chunk collection (tests, shutdown)."""
        while self._gc_tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._gc_tasks))
