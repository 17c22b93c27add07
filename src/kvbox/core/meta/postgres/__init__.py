"""MetaStore on PostgreSQL: the metadata of a cluster of gateways (``--meta postgresql://``).

Layer: core. What a write means is ``kvbox.core.meta.rules``'s (through
``SharedRulesStore``), exactly as for SQLite and memory; this package is how it is
stored and how PostgreSQL decides every race between gateways:

* ``rows`` -- the tables (``kvbox.core.pg`` migration 0001) <-> the core's models;
* ``txn`` -- ``PgTxn``, the rules' ``MetaTxn``: rows locked and loaded inside the
  transaction, the rules run on them in memory, the net changes written in bulk;
* ``writer`` -- group commit: one transaction for a burst of writes, a few of them in
  flight (writes on one key in order), each rerun as a whole when another gateway won a
  race;
* ``reads`` -- every read one indexed statement on any pooled connection;
* ``changes`` -- LISTEN/NOTIFY: what other gateways changed, for in-process caches;
* ``health`` -- whether the database answers (``unreachable``: ``/readyz``).

Every gateway runs its own ``PostgresMetaStore`` on one database; nothing here is
shared between them but the database. The schema must be at ``migrations.LATEST``
(``open`` refuses any other, naming ``kvbox migrate``), unless the store is told to
migrate it (``kvbox serve --migrate``).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import asyncpg

from kvbox.core.meta import rules
from kvbox.core.meta.base import SharedRulesStore
from kvbox.core.meta.postgres import reads
from kvbox.core.meta.postgres.changes import ChangeListener, OnChange
from kvbox.core.meta.postgres.health import Health
from kvbox.core.meta.postgres.rows import Connection
from kvbox.core.meta.postgres.txn import CHANNEL, NO_JOURNAL, STRIPES
from kvbox.core.meta.postgres.writer import MAX_BATCH_OPS, Writer, upload_scope
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
from kvbox.core.pg import DRIVER_ERRORS, PgUrl, connect, lost, migrations, open_pool, translate
from kvbox.errors import KvboxError, MetaUnavailable, StorageError

__all__ = ["CHANNEL", "MAX_BATCH_OPS", "PostgresMetaStore"]

T = TypeVar("T")

#: Pooled connections per gateway: the writer holds one per batch in flight (at most
#: ``writer.MAX_INFLIGHT``), reads take the rest.
DEFAULT_POOL: Final = 10


class PostgresMetaStore(SharedRulesStore):
    """``MetaStore`` in a PostgreSQL database; see the package docstring.

    ``migrate``: bring the schema to ``LATEST`` at open (else a schema that is not
    exactly ``LATEST`` is refused). A caller cancelled while awaiting a write does not
    undo it.
    """

    def __init__(
        self, url: str | PgUrl, *, pool_size: int = DEFAULT_POOL, migrate: bool = False
    ) -> None:
        self.url = url if isinstance(url, PgUrl) else PgUrl.parse(url)
        self._pool_size = max(2, pool_size)
        self._migrate = migrate
        self._pool: asyncpg.Pool | None = None
        self._writer: Writer | None = None
        self._listener: ChangeListener | None = None
        self._health: Health | None = None
        #: Who this store is in NOTIFY payloads (its own changes need no invalidation).
        self.origin = secrets.token_hex(8)

    @property
    def writer(self) -> Writer | None:
        return self._writer

    # --- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn = await connect(self.url, application="kvbox-migrate")
        try:
            if self._migrate:
                await migrations.migrate(conn)
            await migrations.check(conn, self.url.redacted)
        except KvboxError:
            raise
        except Exception as exc:
            raise translate(exc, self.url) from None
        finally:
            await conn.close()
        self._pool = await open_pool(self.url, max_size=self._pool_size, application="kvbox")
        writer = Writer(self._pool, self.url, secrets.randbelow(STRIPES), self.origin)
        writer.start()
        self._writer = writer
        self._health = Health(self._pool, self.url)
        self._health.start()

    @property
    def unreachable(self) -> str | None:
        """Why the database cannot be reached right now (one line, no password), or
        None: what ``/readyz`` says (``health``)."""
        return None if self._health is None else self._health.problem

    def listen(self, on_change: OnChange) -> ChangeListener:
        """Hear what other gateways change (``changes``): ``on_change`` gets bucket
        names, or None for "anything may have changed"."""
        if self._listener is None:
            self._listener = ChangeListener(self.url, self.origin, on_change)
            self._listener.start()
        return self._listener

    async def close(self) -> None:
        writer, pool, listener, health = self._writer, self._pool, self._listener, self._health
        self._writer = None
        self._pool = None
        self._listener = None
        self._health = None
        if health is not None:
            await health.stop()
        if listener is not None:
            await listener.stop()
        if writer is not None:
            await writer.stop()
        if pool is not None:
            await pool.close()

    # --- writes -----------------------------------------------------------------------

    def _w(self) -> Writer:
        if self._writer is None:
            raise StorageError("metadata store is not open")
        return self._writer

    async def _run(
        self,
        fn: Callable[[MetaTxn[Any]], object],
        weight: int,
        ops: Sequence[WriteOp],
        keys: frozenset[tuple[str, str]] | None = None,
    ) -> Any:
        try:
            return await self._w().run(fn, weight, ops, keys)
        except MetaUnavailable as exc:
            self._down(exc)
            raise

    def _down(self, exc: MetaUnavailable) -> None:
        if self._health is not None:
            self._health.down(exc)

    async def _write(
        self,
        fn: Callable[[MetaTxn[Any]], T],
        ops: Sequence[WriteOp] = (),
        upload: str | None = None,
    ) -> T:
        # A multipart upload's own changes name no object key but are no bucket-wide
        # change either: scoped to the upload, they run beside other batches (S3 clients
        # upload parts in parallel) instead of alone (``writer.upload_scope``).
        keys = None
        if upload is not None:
            keys = frozenset(rules.keys_of(ops)) | upload_scope(upload)
        result: T = await self._run(fn, 1, ops, keys)
        return result

    async def _commit(self, ops: Sequence[WriteOp], journal_lsn: int | None) -> list[WriteResult]:
        if journal_lsn is not None:
            raise StorageError(NO_JOURNAL)
        results: list[WriteResult] = await self._run(
            lambda t: rules.commit(t, ops, journal_lsn), max(1, len(ops)), ops
        )
        return results

    # --- reads ------------------------------------------------------------------------

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("metadata store is not open")
        return self._pool

    async def _read(self, fn: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        for again in (True, False):
            try:
                return await fn(self._p())
            except KvboxError:
                raise
            except DRIVER_ERRORS as exc:
                # A read is safe to run again: once more when a pooled connection died
                # under it (the server restarted since), not when none can be made.
                if again and lost(exc):
                    continue
                err = translate(exc, self.url)
                if isinstance(err, MetaUnavailable):
                    self._down(err)
                raise err from None
        raise AssertionError("unreachable")

    async def _read_txn(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """A read of several statements in one snapshot, on one connection."""

        async def run(pool: asyncpg.Pool) -> T:
            async with pool.acquire() as conn:
                return await fn(conn)

        return await self._read(run)

    async def get_bucket(self, name: str) -> Bucket | None:
        return await self._read(lambda c: reads.get_bucket(c, name))

    async def list_buckets(self) -> list[Bucket]:
        return await self._read(reads.list_buckets)

    async def journal_lsn(self) -> int:
        # A journal opening over this store asks first: it is refused before it could
        # acknowledge a write (migration 0005 says why none is kept here).
        raise StorageError(NO_JOURNAL)

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
        return await self._read_txn(
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
        return await self._read_txn(lambda c: reads.list_parts(c, upload_id, marker, limit))

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
        # PostgreSQL checks its own pages (data checksums, amcheck) and is run by its
        # operator; kvbox has nothing to add from a client connection.
        return []

    async def recount(self, bucket: str) -> tuple[BucketStats, BucketStats]:
        return await self._read_txn(lambda c: reads.recount(c, bucket))

    async def chunk_refs(self) -> dict[str, int]:
        return await self._read(reads.chunk_refs)

    async def chunk_ref_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        wanted = [cid for cid in set(chunk_ids) if rules.CHUNK_ID.fullmatch(cid)]
        if not wanted:
            return {}
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
