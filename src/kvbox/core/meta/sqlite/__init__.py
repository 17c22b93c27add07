"""MetaStore on an embedded SQLite database: the default, durable metadata store.

Layer: core. What a write means is ``kvbox.core.meta.rules``'s (through
``SharedRulesStore``); this package is how it is stored:

* ``schema`` -- the tables, opening and migrating the file, row <-> model codecs;
* ``txn`` -- ``SqliteTxn``, the rules' ``MetaTxn``: an overlay of the keys a batch writes
  (and a cache of hot ones), written with a few multi-row statements per batch;
* ``writer`` -- the one writer thread: group commit, one fsync for every write of a
  batch, and the replay that keeps one failing op from failing the others;
* ``reads`` -- every read as one indexed statement on a pool of reader threads, each
  with its own connection (WAL readers never wait for the writer and always see every
  commit that has returned).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from kvbox.core.meta import rules
from kvbox.core.meta.base import SharedRulesStore
from kvbox.core.meta.sqlite import reads
from kvbox.core.meta.sqlite.schema import META_FILE, SCHEMA_VERSION, SYNC_MODES, translate
from kvbox.core.meta.sqlite.writer import MAX_BATCH_OPS, Writer
from kvbox.core.meta.txn import MetaTxn
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    Bucket,
    BucketStats,
    MultipartUpload,
    ObjectVersion,
    Part,
    WriteOp,
    WriteResult,
)
from kvbox.errors import InvalidArgument, StorageError

__all__ = ["MAX_BATCH_OPS", "META_FILE", "SCHEMA_VERSION", "SqliteMetaStore"]

T = TypeVar("T")

#: Reader threads. Reads are short index lookups, so a few threads saturate 2 cores.
DEFAULT_READERS: Final = 4


class SqliteMetaStore(SharedRulesStore):
    """``MetaStore`` in one SQLite file; see the package docstring.

    A caller cancelled while awaiting a write does not undo it: the write is applied
    (or not) exactly as if the caller had waited.
    """

    def __init__(
        self, path: Path, *, synchronous: str = "FULL", readers: int = DEFAULT_READERS
    ) -> None:
        sync = synchronous.upper()
        if sync not in SYNC_MODES:
            raise InvalidArgument(f"synchronous must be one of {sorted(SYNC_MODES)}")
        self._path = Path(path)
        self._sync = sync
        self._readers = max(1, readers)
        self._writer: Writer | None = None
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
        writer = Writer(self._path, self._sync)
        try:
            await writer.start()
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: {exc}") from exc
        self._writer = writer
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._readers, thread_name_prefix="kvbox-meta-read"
        )
        self._open = True

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        writer, pool = self._writer, self._pool
        self._writer = self._pool = None
        if writer is not None:
            await writer.stop()
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True)
        with self._conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # --- writes: the rules, in the writer's transaction --------------------------------

    def _w(self) -> Writer:
        if self._writer is None:
            raise StorageError("metadata store is not open")
        return self._writer

    async def _write(
        self,
        fn: Callable[[MetaTxn[Any]], T],
        ops: Sequence[WriteOp] = (),
        upload: str | None = None,  # one writer: writes never run side by side
    ) -> T:
        result: T = await self._w().run(fn, 1, ops)
        return result

    async def _commit(self, ops: Sequence[WriteOp], journal_lsn: int | None) -> list[WriteResult]:
        results: list[WriteResult] = await self._w().run(
            lambda t: rules.commit(t, ops, journal_lsn), max(1, len(ops)), ops
        )
        return results

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

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open or self._pool is None:
            raise StorageError("metadata store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(self._reader()))
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def get_bucket(self, name: str) -> Bucket | None:
        return await self._read(lambda c: reads.get_bucket(c, name))

    async def list_buckets(self) -> list[Bucket]:
        return await self._read(reads.list_buckets)

    async def journal_lsn(self) -> int:
        return await self._read(reads.journal_lsn)

    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        return await self._read(lambda c: reads.head(c, bucket, key))

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]:
        if not keys:
            return []
        wanted = list(keys)
        return await self._read(lambda c: reads.head_many(c, bucket, wanted))

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        return await self._read(lambda c: reads.get_version(c, bucket, key, version_id))

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        if limit <= 0:
            return []
        return await self._read(lambda c: reads.list_versions(c, bucket, key, limit))

    async def list_bucket_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        limit: int = 1000,
    ) -> list[ObjectVersion]:
        if limit <= 0:
            return []
        return await self._read(
            lambda c: reads.list_bucket_versions(
                c, bucket, prefix, key_marker, version_id_marker, limit
            )
        )

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        if limit <= 0:
            return []
        return await self._read(lambda c: reads.list_objects(c, bucket, prefix, start_after, limit))

    async def stats(self, bucket: str) -> BucketStats:
        return await self._read(lambda c: reads.stats(c, bucket))

    async def get_upload(self, upload_id: str) -> MultipartUpload | None:
        return await self._read(lambda c: reads.get_upload(c, upload_id))

    async def list_parts(self, upload_id: str, marker: int = 0, limit: int = 1000) -> list[Part]:
        return await self._read(lambda c: reads.list_parts(c, upload_id, marker, limit))

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> list[MultipartUpload]:
        return await self._read(
            lambda c: reads.list_uploads(c, bucket, prefix, key_marker, upload_id_marker, limit)
        )

    async def check_storage(self) -> list[str]:
        return await self._read(reads.check_storage)

    async def recount(self, bucket: str) -> tuple[BucketStats, BucketStats]:
        return await self._read(lambda c: reads.recount(c, bucket))

    async def chunk_refs(self) -> dict[str, int]:
        return await self._read(reads.chunk_refs)

    async def chunk_ref_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        wanted = [cid for cid in set(chunk_ids) if rules.CHUNK_ID.fullmatch(cid)]
        return await self._read(lambda c: reads.chunk_ref_counts(c, wanted))

    async def get_user(self, name: str) -> User | None:
        return await self._read(lambda c: reads.get_user(c, name))

    async def list_users(self) -> list[User]:
        return await self._read(reads.list_users)

    async def list_keys(self, user: str) -> list[AccessKey]:
        return await self._read(lambda c: reads.list_keys(c, user))

    async def get_key(self, access_key: str) -> AccessKey | None:
        return await self._read(lambda c: reads.get_key(c, access_key))

    async def lookup_key(self, access_key: str) -> tuple[str, str] | None:
        return await self._read(lambda c: reads.lookup_key(c, access_key))
