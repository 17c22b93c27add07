"""MetaStore on an embedded SQLite database: the default, durable metadata store.

Layer: core. Rules:

* **One writer thread** owns the only write connection. ``commit()`` (and every bucket
  change) enqueues a job and awaits its future; the writer drains whatever is queued (up
  to ``MAX_BATCH_OPS`` ops), applies it in ONE transaction and resolves all the futures
  with one ``call_soon_threadsafe`` per event loop: group commit, so thousands of small
  writes share one fsync.
* **Durability**: WAL mode with ``synchronous=FULL``: a future resolves only after
  ``COMMIT`` returned, i.e. after the WAL was fsync'd.
* **Failure isolation**: ops run without savepoints (fast); a failure that is detected
  before an op writes anything (``NoSuchBucket``, bad argument, failed condition) costs
  nothing. Any other failure mid-batch rolls the whole batch back and replays it with a
  SAVEPOINT per job and per op, so only the failing op is lost.
* **Reads** run on a small pool of reader threads, each with its own connection (WAL
  readers never wait for the writer and always see every commit that has returned).
* Schema (``PRAGMA user_version`` = ``SCHEMA_VERSION``): ``versions`` keyed by ``seq``
  (never reused: AUTOINCREMENT) with indexes for newest-first per key, version id, and a
  partial unique index over rows that are the newest live version of their key (``live``),
  so ``list_objects`` is an index range scan in UTF-8 byte order (BINARY collation);
  ``buckets`` carries the object/byte counters, updated in the same transaction;
  ``chunks`` holds reference counts, and a chunk whose count reaches 0 is deleted and
  reported in ``WriteResult.freed_chunks``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from kvbox.core.meta import _rules
from kvbox.core.model import (
    EMPTY_ATTRS,
    NULL_VERSION,
    AtomicOp,
    Bucket,
    BucketStats,
    ChunkRef,
    DeleteOp,
    ObjectVersion,
    PurgeOp,
    PutOp,
    VersionIdGenerator,
    Versioning,
    WriteOp,
    WriteResult,
)
from kvbox.errors import (
    BucketNotEmpty,
    InvalidArgument,
    KvboxError,
    NoSuchBucket,
    StorageError,
)

#: File name of the metadata database inside a data directory (server, fsck, migrate).
META_FILE: Final = "meta.sqlite3"

SCHEMA_VERSION: Final = 1

#: Ops per group-commit transaction. Large enough that one fsync serves thousands of
#: writes, small enough that one batch holds the write lock for only tens of ms.
MAX_BATCH_OPS: Final = 4096

#: Reader threads. Reads are short index lookups, so a few threads saturate 2 cores.
DEFAULT_READERS: Final = 4

#: Keys per head_many query: well under SQLite's bound parameter and JSON size limits.
_HEAD_MANY_CHUNK: Final = 500
_PREFETCH_CHUNK: Final = 1000

_SYNC_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

_SCHEMA = """
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    versioning TEXT NOT NULL,
    attrs TEXT,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    is_null INTEGER NOT NULL,
    is_dm INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inline BLOB,
    chunks BLOB,
    content_type TEXT NOT NULL,
    attrs TEXT,
    live INTEGER NOT NULL
);
CREATE INDEX versions_key ON versions (bucket, key, seq);
CREATE UNIQUE INDEX versions_id ON versions (version_id, bucket, key);
CREATE UNIQUE INDEX versions_live ON versions (bucket, key) WHERE live = 1;
CREATE TABLE chunks (
    chunk_id BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Row layout of every versions SELECT below.
_COLS = (
    "seq, bucket, key, version_id, is_null, is_dm, size, etag, mtime_ns, inline, chunks,"
    " content_type, attrs"
)
_SEQ, _BUCKET, _KEY, _VID, _IS_NULL, _IS_DM, _SIZE = 0, 1, 2, 3, 4, 5, 6
_CHUNKS = 10

_SQL_NEWEST = f"SELECT {_COLS} FROM versions WHERE bucket = ? AND key = ? ORDER BY seq DESC LIMIT 1"
_SQL_NULL = (
    f"SELECT {_COLS} FROM versions WHERE bucket = ? AND key = ? AND is_null = ?"
    " ORDER BY seq DESC LIMIT 1"
)
_SQL_BY_ID = f"SELECT {_COLS} FROM versions WHERE version_id = ? AND bucket = ? AND key = ?"
_SQL_ALL = f"SELECT {_COLS} FROM versions WHERE bucket = ? AND key = ? ORDER BY seq DESC"
_SQL_INSERT = (
    "INSERT INTO versions (seq, bucket, key, version_id, is_null, is_dm, size, etag,"
    " mtime_ns, inline, chunks, content_type, attrs, live)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_HEAD_MANY = (
    f"SELECT {_COLS} FROM versions WHERE seq IN (SELECT (SELECT max(seq) FROM versions"
    " WHERE bucket = ? AND key = j.value) FROM json_each(?) AS j)"
)
_SQL_LIST = f"SELECT {_COLS} FROM versions INDEXED BY versions_live WHERE bucket = ? AND live = 1"

Row = tuple[Any, ...]


# --- encodings --------------------------------------------------------------------------


def _enc_chunks(chunks: Sequence[ChunkRef]) -> bytes | None:
    """32-byte digest + 8-byte big-endian size per chunk: 40 bytes instead of ~90 JSON."""
    if not chunks:
        return None
    return b"".join(bytes.fromhex(c.chunk_id) + c.size.to_bytes(8, "big") for c in chunks)


def _dec_chunks(blob: bytes | None) -> tuple[ChunkRef, ...]:
    if not blob:
        return ()
    return tuple(
        ChunkRef(blob[i : i + 32].hex(), int.from_bytes(blob[i + 32 : i + 40], "big"))
        for i in range(0, len(blob), 40)
    )


def _chunk_counts(blob: bytes) -> Counter[bytes]:
    """References per chunk digest in one version (a chunk may repeat in an object)."""
    return Counter(blob[i : i + 32] for i in range(0, len(blob), 40))


def _chunk_sizes(blob: bytes) -> dict[bytes, int]:
    return {
        blob[i : i + 32]: int.from_bytes(blob[i + 32 : i + 40], "big")
        for i in range(0, len(blob), 40)
    }


def _enc_attrs(attrs: Mapping[str, str]) -> str | None:
    return json.dumps(dict(attrs), separators=(",", ":"), sort_keys=True) if attrs else None


def _dec_attrs(text: str | None) -> Mapping[str, str]:
    return MappingProxyType(json.loads(text)) if text else EMPTY_ATTRS


def _version(row: Row) -> ObjectVersion:
    chunks, attrs = row[10], row[12]
    return ObjectVersion(
        row[1],
        row[2],
        row[3],
        row[6],
        row[7],
        row[8],
        row[5] == 1,
        row[4] == 1,
        row[9],
        _dec_chunks(chunks) if chunks else (),
        row[11],
        _dec_attrs(attrs) if attrs else EMPTY_ATTRS,
        row[0],
    )


def _maybe_version(row: Row | None) -> ObjectVersion | None:
    return _version(row) if row is not None else None


def _version_row(v: ObjectVersion) -> tuple[Any, ...]:
    return (
        v.seq,
        v.bucket,
        v.key,
        v.version_id,
        int(v.is_null),
        int(v.is_delete_marker),
        v.size,
        v.etag,
        v.mtime_ns,
        v.inline,
        _enc_chunks(v.chunks),
        v.content_type,
        _enc_attrs(v.attrs),
        0 if v.is_delete_marker else 1,
    )


def _bucket(row: Row) -> Bucket:
    return Bucket(row[0], row[1], row[2], Versioning(row[3]), _dec_attrs(row[4]))


def _live_size(row: Row | None) -> int | None:
    """Size of the row if it is a live newest version (counts in stats), else None."""
    return None if row is None or row[_IS_DM] else int(row[_SIZE])


def _translate(exc: BaseException) -> BaseException:
    """The one place where SQLite's exceptions become kvbox errors."""
    if isinstance(exc, KvboxError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return InvalidArgument(f"constraint violated: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"sqlite: {exc}")
    return exc


# --- the writer thread -----------------------------------------------------------------


class _Retry(Exception):
    """An op failed after it had written: replay the batch with savepoints."""


class _Job:
    __slots__ = ("failed", "fn", "future", "loop", "ops", "outcome", "weight")

    def __init__(
        self,
        fn: Callable[[bool], object],
        weight: int,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        ops: Sequence[WriteOp] = (),
    ) -> None:
        self.fn = fn
        self.ops = ops
        self.weight = weight
        self.loop = loop
        self.future = future
        self.outcome: object = None
        self.failed = False


_STOP: Final = object()

#: Counter changes of one op: (bucket, objects delta, bytes delta).
_Acc = list[tuple[str, int, int]]


def _deliver(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the caller was cancelled; the write still happened
            continue
        if job.failed:
            job.future.set_exception(job.outcome)  # type: ignore[arg-type]
        else:
            job.future.set_result(job.outcome)


class _Writer:
    """State and SQL of the writer thread. Only that thread touches any of it."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self.ids = VersionIdGenerator()
        self.seq = 0
        self.buckets: dict[str, Versioning] = {}
        #: Counter changes of the batch so far, written once before COMMIT.
        self.acc: _Acc = []
        #: (bucket, key) -> newest row, prefetched for the whole batch in a few queries
        #: and kept current by ``_change``; off in safe mode, where savepoint rollbacks
        #: would make it lie.
        self.newest_cache: dict[tuple[str, str], Row | None] = {}
        self.cache_on = False
        self.conn: sqlite3.Connection | None = None

    # setup

    def open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
        self.conn = conn
        self.cur = conn.cursor()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{self.path}: cannot switch to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        elif version != SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: metadata schema version {version}, this kvbox knows "
                f"{SCHEMA_VERSION}; run the matching kvbox version or migrate"
            )
        self.reload()

    def reload(self) -> None:
        """Re-read the writer's caches from the database (at open and after a rollback)."""
        c = self.cur
        row = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'versions'").fetchone()
        self.seq = int(row[0]) if row else 0
        self.buckets = {
            name: Versioning(state)
            for name, state in c.execute("SELECT name, versioning FROM buckets").fetchall()
        }

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # batches

    def run_batch(self, jobs: list[_Job]) -> None:
        try:
            try:
                self._transaction(jobs, safe=False)
            except _Retry:
                self._rollback()
                self._transaction(jobs, safe=True)
        except Exception as exc:  # BEGIN/COMMIT failed, disk full, ...: the batch is lost
            with contextlib.suppress(Exception):  # the futures must resolve regardless
                self._rollback()
            for job in jobs:
                job.failed = True
                job.outcome = StorageError(f"metadata commit failed: {_translate(exc)}")

    def _rollback(self) -> None:
        assert self.conn is not None
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.reload()

    def _transaction(self, jobs: list[_Job], safe: bool) -> None:
        self.acc.clear()
        self.newest_cache.clear()
        self.cache_on = not safe
        self.cur.execute("BEGIN IMMEDIATE")
        if not safe:
            self._prefetch(jobs)
        for job in jobs:
            try:
                job.outcome = job.fn(safe)
                job.failed = False
            except _Retry:
                raise
            except Exception as exc:
                job.outcome = _translate(exc)
                job.failed = True
        self._flush_deltas()
        self.cur.execute("COMMIT")

    def _prefetch(self, jobs: list[_Job]) -> None:
        """Load the newest row of every key the batch writes, a few hundred keys per
        query: one indexed lookup each, without a Python round trip per op."""
        wanted: dict[str, dict[str, None]] = {}
        for job in jobs:
            for op in job.ops:
                for sub in op.ops if isinstance(op, AtomicOp) else (op,):
                    if isinstance(sub, PutOp):
                        wanted.setdefault(sub.version.bucket, {})[sub.version.key] = None
                    elif isinstance(sub, DeleteOp):
                        wanted.setdefault(sub.bucket, {})[sub.key] = None
        cache = self.newest_cache
        c = self.cur
        for bucket, keyset in wanted.items():
            keys = list(keyset)
            for key in keys:
                cache[(bucket, key)] = None
            for i in range(0, len(keys), _PREFETCH_CHUNK):
                part = json.dumps(keys[i : i + _PREFETCH_CHUNK])
                for row in c.execute(_SQL_HEAD_MANY, (bucket, part)).fetchall():
                    cache[(bucket, row[_KEY])] = row

    def _guarded(self, safe: bool, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; a KvboxError means it wrote nothing. Anything else means it may
        have: in fast mode, replay the batch; in safe mode, undo just ``fn``."""
        if not safe:
            try:
                return fn()
            except KvboxError:
                raise
            except Exception as exc:
                raise _Retry from exc
        c = self.cur
        c.execute("SAVEPOINT guard")
        try:
            result = fn()
        except Exception as exc:
            c.execute("ROLLBACK TO guard")
            c.execute("RELEASE guard")
            raise _translate(exc) from exc
        c.execute("RELEASE guard")
        return result

    def _flush_deltas(self) -> None:
        if not self.acc:
            return
        deltas: dict[str, list[int]] = {}
        for name, d_objects, d_bytes in self.acc:
            d = deltas.get(name)
            if d is None:
                deltas[name] = [d_objects, d_bytes]
            else:
                d[0] += d_objects
                d[1] += d_bytes
        self.acc.clear()
        self.cur.executemany(
            "UPDATE buckets SET objects = objects + ?, bytes = bytes + ? WHERE name = ?",
            [(d[0], d[1], name) for name, d in deltas.items() if d[0] or d[1]],
        )

    def _filter_freed(self, results: list[WriteResult]) -> None:
        """A chunk freed by one op and referenced again by a later op of the same call is
        not free: drop it from the earlier result so its caller keeps the bytes."""
        freed = {cid for r in results for cid in r.freed_chunks}
        c = self.cur
        alive = {
            cid
            for cid in freed
            if c.execute(
                "SELECT 1 FROM chunks WHERE chunk_id = ?", (bytes.fromhex(cid),)
            ).fetchone()
        }
        if not alive:
            return
        for i, r in enumerate(results):
            if alive.intersection(r.freed_chunks):
                results[i] = WriteResult(
                    r.ok,
                    r.written,
                    r.removed,
                    r.current,
                    tuple(cid for cid in r.freed_chunks if cid not in alive),
                    r.not_found,
                )

    # jobs (each runs inside the batch transaction)

    def commit_ops(self, ops: Sequence[WriteOp], safe: bool) -> list[WriteResult]:
        results: list[WriteResult] = []
        error: BaseException | None = None
        any_freed = False
        apply = self._apply
        batch_acc = self.acc
        for op in ops:
            if safe:
                acc: _Acc = []
                try:
                    r = self._guarded(True, functools.partial(apply, op, acc))
                except Exception as exc:
                    error = error or exc
                    continue
                batch_acc.extend(acc)
            else:
                # Fast path: a KvboxError means the op wrote nothing (and added nothing to
                # the counters); anything else means it may have, so replay the batch.
                try:
                    r = apply(op, batch_acc)
                except KvboxError as exc:
                    error = error or exc
                    continue
                except Exception as exc:
                    raise _Retry from exc
            results.append(r)
            if r.freed_chunks:
                any_freed = True
        if error is not None:
            raise error
        if any_freed:
            self._filter_freed(results)
        return results

    def create_bucket(self, bucket: Bucket, safe: bool) -> bool:
        if bucket.name in self.buckets:
            return False
        self._flush_deltas()

        def run() -> bool:
            self.cur.execute(
                "INSERT INTO buckets (name, owner, created_ns, versioning, attrs)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    bucket.name,
                    bucket.owner,
                    bucket.created_ns,
                    bucket.versioning.value,
                    _enc_attrs(bucket.attrs),
                ),
            )
            return True

        created: bool = self._guarded(safe, run)
        self.buckets[bucket.name] = bucket.versioning
        return created

    def delete_bucket(self, name: str, safe: bool) -> bool:
        if name not in self.buckets:
            return False
        if self.cur.execute("SELECT 1 FROM versions WHERE bucket = ? LIMIT 1", (name,)).fetchone():
            raise BucketNotEmpty(name)
        self._flush_deltas()
        self._guarded(safe, lambda: self.cur.execute("DELETE FROM buckets WHERE name = ?", (name,)))
        del self.buckets[name]
        return True

    def set_versioning(self, name: str, state: Versioning, safe: bool) -> None:
        _rules.check_versioning_change(self._state(name), state)
        self._guarded(
            safe,
            lambda: self.cur.execute(
                "UPDATE buckets SET versioning = ? WHERE name = ?", (state.value, name)
            ),
        )
        self.buckets[name] = state

    def drop_versions_with_chunks(
        self, chunk_ids: Sequence[str], safe: bool
    ) -> list[ObjectVersion]:
        wanted = {bytes.fromhex(c) for c in chunk_ids}
        scan = self.conn.cursor() if self.conn is not None else self.cur
        doomed = [
            row
            for row in scan.execute(f"SELECT {_COLS} FROM versions WHERE chunks IS NOT NULL")
            if not wanted.isdisjoint(_chunk_counts(row[_CHUNKS]))
        ]
        scan.close()
        self.newest_cache.clear()

        def run() -> list[ObjectVersion]:
            acc: _Acc = []
            scratch: list[str] = []
            for row in doomed:
                newest = self._newest(row[_BUCKET], row[_KEY])
                self._change(row[_BUCKET], row[_KEY], newest, [row], None, acc, scratch)
            self.acc.extend(acc)
            return [_version(row) for row in doomed]

        removed: list[ObjectVersion] = self._guarded(safe, run)
        return removed

    # ops

    def _state(self, bucket: str) -> Versioning:
        state = self.buckets.get(bucket)
        if state is None:
            raise NoSuchBucket(bucket)
        return state

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _newest(self, bucket: str, key: str) -> Row | None:
        if self.cache_on:
            try:
                return self.newest_cache[(bucket, key)]
            except KeyError:
                pass
        return self._newest_db(bucket, key)

    def _newest_db(self, bucket: str, key: str) -> Row | None:
        row: Row | None = self.cur.execute(_SQL_NEWEST, (bucket, key)).fetchone()
        if self.cache_on:
            self.newest_cache[(bucket, key)] = row
        return row

    def _null_row(self, bucket: str, key: str, newest: Row | None, state: Versioning) -> Row | None:
        """The key's null version. In an OFF bucket every version is null, so it can only
        be the newest one, which spares a query on the hot path."""
        if newest is None:
            return None
        if newest[_IS_NULL]:
            return newest
        if state is Versioning.OFF:
            return None
        row: Row | None = self.cur.execute(_SQL_NULL, (newest[_BUCKET], newest[_KEY], 1)).fetchone()
        return row

    def _apply(self, op: WriteOp, acc: _Acc) -> WriteResult:
        if isinstance(op, PutOp):
            return self._put(op, acc)
        if isinstance(op, DeleteOp):
            return self._delete(op, acc)
        if isinstance(op, PurgeOp):
            return self._purge(op, acc)
        if isinstance(op, AtomicOp):
            return self._atomic(op, acc)
        raise InvalidArgument(f"not a write op: {op!r}")

    def _atomic(self, op: AtomicOp, acc: _Acc) -> WriteResult:
        for sub in op.ops:  # every bucket must exist before anything is written
            self._state(sub.version.bucket if isinstance(sub, PutOp) else sub.bucket)
        c = self.cur
        c.execute("SAVEPOINT atomic")
        mine: _Acc = []
        subs: list[WriteResult] = []
        try:
            for sub in op.ops:
                r = self._apply(sub, mine)
                if not r.ok:
                    self._undo_atomic(op)
                    return WriteResult(False, current=r.current)
                subs.append(r)
        except BaseException:
            self._undo_atomic(op)
            raise
        c.execute("RELEASE atomic")
        acc.extend(mine)
        return WriteResult(
            True,
            written=tuple(v for r in subs for v in r.written),
            removed=tuple(v for r in subs for v in r.removed),
            freed_chunks=tuple(sorted({ch for r in subs for ch in r.freed_chunks})),
            not_found=any(r.not_found for r in subs),
        )

    def _undo_atomic(self, op: AtomicOp) -> None:
        self.cur.execute("ROLLBACK TO atomic")
        self.cur.execute("RELEASE atomic")
        for sub in op.ops:
            if isinstance(sub, PutOp):
                self.newest_cache.pop((sub.version.bucket, sub.version.key), None)
            else:
                self.newest_cache.pop((sub.bucket, sub.key), None)

    def _put(self, op: PutOp, acc: _Acc) -> WriteResult:
        # The hot path of every write: kept flat (no helper calls for the common case
        # of an inline value replacing or following the newest version).
        v = op.version
        bucket, key = v.bucket, v.key
        state = self.buckets.get(bucket)
        if state is None:
            raise NoSuchBucket(bucket)
        if v.chunks:
            _rules.check_version(v)
        newest = self._newest(bucket, key)
        if op.condition is not None:
            current = _maybe_version(newest)
            if not _rules.condition_holds(op.condition, current):
                return WriteResult(False, current=current)
        enabled = state is Versioning.ENABLED
        self.seq += 1
        seq = self.seq
        is_dm = v.is_delete_marker
        new = ObjectVersion(
            bucket,
            key,
            v.version_id,
            v.size,
            v.etag,
            v.mtime_ns,
            is_dm,
            not enabled,
            v.inline,
            v.chunks,
            v.content_type,
            v.attrs,
            seq,
        )
        row = (
            seq,
            bucket,
            key,
            v.version_id,
            0 if enabled else 1,
            1 if is_dm else 0,
            v.size,
            v.etag,
            v.mtime_ns,
            v.inline,
            _enc_chunks(v.chunks) if v.chunks else None,
            v.content_type,
            _enc_attrs(v.attrs) if v.attrs else None,
            0 if is_dm else 1,
        )
        old_null = None if enabled or newest is None else self._null_row(bucket, key, newest, state)
        freed: list[str] = []
        self._change(bucket, key, newest, () if old_null is None else (old_null,), row, acc, freed)
        return WriteResult(
            True,
            (new,),
            (_version(old_null),) if old_null is not None else (),
            None,
            tuple(sorted(freed)) if freed else (),
        )

    def _delete(self, op: DeleteOp, acc: _Acc) -> WriteResult:
        state = self._state(op.bucket)
        newest = self._newest(op.bucket, op.key)
        if op.condition is not None:
            current = _maybe_version(newest)
            if not _rules.condition_holds(op.condition, current):
                return WriteResult(False, current=current)
        freed: list[str] = []
        if op.version_id is not None:
            if op.version_id == NULL_VERSION:
                target = self._null_row(op.bucket, op.key, newest, Versioning.SUSPENDED)
            elif newest is not None and newest[_VID] == op.version_id:
                target = newest
            else:
                target = self.cur.execute(_SQL_BY_ID, (op.version_id, op.bucket, op.key)).fetchone()
            if target is None:
                return WriteResult(True, not_found=True)
            self._change(op.bucket, op.key, newest, [target], None, acc, freed)
            return WriteResult(True, removed=(_version(target),), freed_chunks=tuple(sorted(freed)))
        old_null = None
        if state is not Versioning.ENABLED:
            old_null = self._null_row(op.bucket, op.key, newest, state)
            if state is Versioning.OFF and old_null is None:
                return WriteResult(True, not_found=True)
        marker = None
        if state is not Versioning.OFF:
            m = _rules.delete_marker(op, state, self.ids)
            marker = _rules.stamp(m, self._next_seq(), m.is_null)
        remove = [old_null] if old_null is not None else []
        self._change(
            op.bucket,
            op.key,
            newest,
            remove,
            _version_row(marker) if marker is not None else None,
            acc,
            freed,
        )
        return WriteResult(
            True,
            written=(marker,) if marker is not None else (),
            removed=(_version(old_null),) if old_null is not None else (),
            freed_chunks=tuple(sorted(freed)),
        )

    def _purge(self, op: PurgeOp, acc: _Acc) -> WriteResult:
        self._state(op.bucket)
        rows = self.cur.execute(_SQL_ALL, (op.bucket, op.key)).fetchall()
        if not rows:
            return WriteResult(True, not_found=True)
        freed: list[str] = []
        self._change(op.bucket, op.key, rows[0], rows, None, acc, freed)
        return WriteResult(
            True, removed=tuple(_version(r) for r in rows), freed_chunks=tuple(sorted(freed))
        )

    def _change(
        self,
        bucket: str,
        key: str,
        newest: Row | None,
        remove: Sequence[Row],
        insert: Row | None,
        acc: _Acc,
        freed: list[str],
    ) -> None:
        """Remove the ``remove`` rows, then append the ``insert`` row (``_version_row``
        layout); keep the ``live`` flag, chunk reference counts, the newest-row cache and
        the bucket counters (via ``acc``) in step."""
        c = self.cur
        gone = False
        for row in remove:
            c.execute("DELETE FROM versions WHERE seq = ?", (row[_SEQ],))
            if row[_CHUNKS]:
                self._unref(row[_CHUNKS], freed)
            if newest is not None and row[_SEQ] == newest[_SEQ]:
                gone = True
        old_size = None if newest is None or newest[_IS_DM] else newest[_SIZE]
        new_size: int | None
        if insert is not None:
            if old_size is not None and not gone and newest is not None:
                c.execute("UPDATE versions SET live = 0 WHERE seq = ?", (newest[_SEQ],))
            c.execute(_SQL_INSERT, insert)
            if self.cache_on:  # the row tuple doubles as a _COLS row (plus ``live``)
                self.newest_cache[(bucket, key)] = insert
            if insert[_CHUNKS] is not None:
                self._ref(insert[_CHUNKS])
            new_size = None if insert[_IS_DM] else insert[_SIZE]
        elif gone:
            after = self._newest_db(bucket, key)
            new_size = _live_size(after)
            if after is not None and new_size is not None:
                c.execute("UPDATE versions SET live = 1 WHERE seq = ?", (after[_SEQ],))
        else:
            return
        if old_size != new_size:
            acc.append(
                (
                    bucket,
                    (new_size is not None) - (old_size is not None),
                    (new_size or 0) - (old_size or 0),
                )
            )

    def _ref(self, blob: bytes) -> None:
        sizes = _chunk_sizes(blob)
        self.cur.executemany(
            "INSERT INTO chunks (chunk_id, size, refs) VALUES (?, ?, ?)"
            " ON CONFLICT (chunk_id) DO UPDATE SET refs = refs + excluded.refs",
            [(cid, sizes[cid], n) for cid, n in _chunk_counts(blob).items()],
        )

    def _unref(self, blob: bytes, freed: list[str]) -> None:
        c = self.cur
        for cid, n in _chunk_counts(blob).items():
            rows = c.execute(
                "UPDATE chunks SET refs = refs - ? WHERE chunk_id = ? RETURNING refs", (n, cid)
            ).fetchall()
            if rows and rows[0][0] <= 0:
                c.execute("DELETE FROM chunks WHERE chunk_id = ?", (cid,))
                freed.append(cid.hex())


# --- the store ----------------------------------------------------------------------------


class SqliteMetaStore:
    """``MetaStore`` in one SQLite file; see the module docstring for the design.

    A caller cancelled while awaiting ``commit`` does not undo it: the write is applied
    (or not) exactly as if the caller had waited.
    """

    def __init__(
        self, path: Path, *, synchronous: str = "FULL", readers: int = DEFAULT_READERS
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise InvalidArgument(f"synchronous must be one of {sorted(_SYNC_MODES)}")
        self._path = Path(path)
        self._sync = sync
        self._readers = max(1, readers)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer: _Writer | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._open = False

    @property
    def path(self) -> Path:
        return self._path

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._open:
            return
        writer = _Writer(self._path, self._sync)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._writer_main, args=(writer, ready), name="kvbox-meta-writer", daemon=True
        )
        thread.start()
        try:
            await asyncio.wrap_future(ready)
        except sqlite3.Error as exc:
            await asyncio.to_thread(thread.join)
            raise StorageError(f"{self._path}: {exc}") from exc
        except BaseException:
            await asyncio.to_thread(thread.join)
            raise
        self._thread = thread
        self._writer = writer
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._readers, thread_name_prefix="kvbox-meta-read"
        )
        self._open = True

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self._queue.put(_STOP)
        thread, pool = self._thread, self._pool
        self._thread = self._pool = self._writer = None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True)
        with self._conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _writer_main(self, writer: _Writer, ready: concurrent.futures.Future[None]) -> None:
        try:
            writer.open()
        except BaseException as exc:
            writer.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        q = self._queue
        stopping = False
        try:
            while not stopping:
                item = q.get()
                if item is _STOP:
                    break
                assert isinstance(item, _Job)
                batch = [item]
                weight = item.weight
                while weight < MAX_BATCH_OPS:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    assert isinstance(item, _Job)
                    batch.append(item)
                    weight += item.weight
                writer.run_batch(batch)
                self._resolve(batch)
        finally:
            writer.close()
            self._fail_pending()

    @staticmethod
    def _resolve(batch: list[_Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            # RuntimeError: that loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, jobs)

    def _fail_pending(self) -> None:
        """Jobs queued after close(): fail them rather than leave their callers hanging."""
        leftovers: list[_Job] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Job):
                item.failed = True
                item.outcome = StorageError("metadata store is closed")
                leftovers.append(item)
        self._resolve(leftovers)

    async def _submit(
        self, fn: Callable[[bool], object], weight: int = 1, ops: Sequence[WriteOp] = ()
    ) -> Any:
        if not self._open:
            raise StorageError("metadata store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(fn, weight, loop, future, ops))
        return await future

    # --- reads ------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if not self._open or self._pool is None:
            raise StorageError("metadata store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(self._reader()))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    # --- buckets ----------------------------------------------------------------------

    def _w(self) -> _Writer:
        if self._writer is None:
            raise StorageError("metadata store is not open")
        return self._writer

    async def create_bucket(self, bucket: Bucket) -> bool:
        w = self._w()
        created: bool = await self._submit(lambda safe: w.create_bucket(bucket, safe))
        return created

    async def get_bucket(self, name: str) -> Bucket | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT name, owner, created_ns, versioning, attrs FROM buckets WHERE name = ?",
                (name,),
            ).fetchone()
        )
        return _bucket(row) if row is not None else None

    async def list_buckets(self) -> list[Bucket]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name, owner, created_ns, versioning, attrs FROM buckets ORDER BY name"
            ).fetchall()
        )
        return [_bucket(r) for r in rows]

    async def delete_bucket(self, name: str) -> bool:
        w = self._w()
        deleted: bool = await self._submit(lambda safe: w.delete_bucket(name, safe))
        return deleted

    async def set_versioning(self, name: str, state: Versioning) -> None:
        w = self._w()
        await self._submit(lambda safe: w.set_versioning(name, Versioning(state), safe))

    # --- writes -----------------------------------------------------------------------

    async def commit(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        if not ops:
            return []
        w = self._w()
        ops = tuple(ops)
        results: list[WriteResult] = await self._submit(
            lambda safe: w.commit_ops(ops, safe), len(ops), ops
        )
        return results

    # --- object reads -----------------------------------------------------------------

    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        row = await self._read(lambda c: c.execute(_SQL_NEWEST, (bucket, key)).fetchone())
        return _maybe_version(row)

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]:
        if not keys:
            return []
        wanted = list(keys)

        def run(c: sqlite3.Connection) -> list[Row]:
            rows: list[Row] = []
            for i in range(0, len(wanted), _HEAD_MANY_CHUNK):
                part = json.dumps(wanted[i : i + _HEAD_MANY_CHUNK])
                rows.extend(c.execute(_SQL_HEAD_MANY, (bucket, part)).fetchall())
            return rows

        found = {row[_KEY]: _version(row) for row in await self._read(run)}
        return [found.get(k) for k in wanted]

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        args: tuple[object, ...] = (version_id, bucket, key)
        sql = _SQL_BY_ID
        if version_id == NULL_VERSION:
            sql, args = _SQL_NULL, (bucket, key, 1)
        row = await self._read(lambda c: c.execute(sql, args).fetchone())
        return _maybe_version(row)

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        if limit <= 0:
            return []
        rows = await self._read(
            lambda c: c.execute(_SQL_ALL + " LIMIT ?", (bucket, key, limit)).fetchall()
        )
        return [_version(r) for r in rows]

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        if limit <= 0:
            return []
        sql = _SQL_LIST
        args: list[object] = [bucket]
        if start_after and start_after >= prefix:
            sql += " AND key > ?"
            args.append(start_after)
        elif prefix:
            sql += " AND key >= ?"
            args.append(prefix)
        end = _rules.prefix_end(prefix)
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [_version(r) for r in rows]

    async def stats(self, bucket: str) -> BucketStats:
        row = await self._read(
            lambda c: c.execute(
                "SELECT objects, bytes FROM buckets WHERE name = ?", (bucket,)
            ).fetchone()
        )
        if row is None:
            raise NoSuchBucket(bucket)
        return BucketStats(int(row[0]), int(row[1]))

    # --- chunks -----------------------------------------------------------------------

    async def chunk_refs(self) -> dict[str, int]:
        rows = await self._read(lambda c: c.execute("SELECT chunk_id, refs FROM chunks").fetchall())
        return {bytes(cid).hex(): int(refs) for cid, refs in rows}

    async def chunk_ref_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        wanted = [
            (cid, bytes.fromhex(cid)) for cid in set(chunk_ids) if _rules.CHUNK_ID.fullmatch(cid)
        ]

        def run(c: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            for cid, raw in wanted:
                row = c.execute("SELECT refs FROM chunks WHERE chunk_id = ?", (raw,)).fetchone()
                if row is not None:
                    out[cid] = int(row[0])
            return out

        counts: dict[str, int] = await self._read(run)
        return counts

    async def drop_versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        for cid in chunk_ids:
            if _rules.CHUNK_ID.fullmatch(cid) is None:
                raise InvalidArgument(f"bad chunk id {cid!r}")
        w = self._w()
        ids = tuple(chunk_ids)
        removed: list[ObjectVersion] = await self._submit(
            lambda safe: w.drop_versions_with_chunks(ids, safe)
        )
        return removed
