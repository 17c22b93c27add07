"""The SQLite metadata database: its schema, how it is opened, and row <-> model codecs.

Layer: core (storage of ``kvbox.core.meta.sqlite``). Schema (``PRAGMA user_version`` =
``SCHEMA_VERSION``): ``buckets`` (integer id, name, settings, object/byte counters
updated in the same transaction as the versions); ``versions``, one row per version,
with partial indexes ``versions_null`` (the one null version of a key), ``versions_id``
and ``versions_seq`` (non-null versions by id, and newest first); ``live`` and
``markers`` map each key to its newest version when that is live or a delete marker,
so a listing is a range scan of ``live``'s primary key in UTF-8 byte order (BINARY
collation). ``chunks`` holds reference counts; ``state`` the highest ``seq`` ever given
(a seq is never reused, even after its version is gone) and the journal LSN applied;
``uploads`` and ``parts`` the multipart uploads; ``users`` and ``access_keys`` the S3
users. A version's ``crc`` is the CRC-32C of its ``inline`` value (NULL without one),
the checksum the Store checks every value read back against (``kvbox.core.integrity``).
Durability: WAL with ``synchronous=FULL`` (a commit returns after the WAL's fsync).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Final

from kvbox.core.integrity import crc32c
from kvbox.core.meta.codec import DEFAULT_CT, dec_attrs, dec_chunks, enc_attrs, enc_chunks
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    EMPTY_ATTRS,
    Bucket,
    MultipartUpload,
    ObjectVersion,
    Part,
    Versioning,
)
from kvbox.core.space import full_error
from kvbox.errors import DataDamaged, InvalidArgument, KvboxError, StorageError

#: File name of the metadata database inside a data directory (server, fsck, migrate).
log = logging.getLogger("kvbox.integrity")

META_FILE: Final = "meta.sqlite3"

#: 2: integer bucket ids, in-place null versions, ``live``/``markers`` head tables.
#: 3: ``uploads`` and ``parts`` (S3 multipart uploads).
#: 4: ``users`` and ``access_keys`` (S3 users; no migration from 3).
#: 5: ``state.journal``, the journal LSN applied (migrated from 4 in place).
#: 6: ``versions.crc``, each inline value's CRC-32C (migrated from 4 and 5 in place,
#:    computed from the values as they are then).
SCHEMA_VERSION: Final = 6

#: Page size of a new database (SQLite's default). Every row a batch changes costs the
#: WAL a whole page, yet 2 KiB pages (half the bytes for 1 KB values) measured slower
#: per write: more pages per B-tree and as many page writes (bench/meta_store.py).
PAGE_SIZE: Final = 4096

#: WAL pages between automatic checkpoints (SQLite's default). Checkpoints run inside
#: the writer's COMMIT and cost it under 1 µs per write here; larger values measured no
#: better and only trade many short stalls for fewer long ones.
WAL_AUTOCHECKPOINT: Final = 1000

SYNC_MODES: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

_SCHEMA = """
CREATE TABLE buckets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    versioning TEXT NOT NULL,
    attrs TEXT,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    seq INTEGER NOT NULL,
    journal INTEGER NOT NULL DEFAULT 0
);
INSERT INTO state (id, seq) VALUES (0, 0);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    bucket INTEGER NOT NULL,
    key TEXT NOT NULL,
    is_null INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    version_id TEXT NOT NULL,
    is_dm INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inline BLOB,
    chunks BLOB,
    content_type TEXT,
    attrs TEXT,
    crc INTEGER
);
CREATE UNIQUE INDEX versions_null ON versions (bucket, key) WHERE is_null = 1;
CREATE UNIQUE INDEX versions_id ON versions (bucket, key, version_id) WHERE is_null = 0;
CREATE INDEX versions_seq ON versions (bucket, key, seq) WHERE is_null = 0;
CREATE TABLE live (
    bucket INTEGER NOT NULL,
    key TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE markers (
    bucket INTEGER NOT NULL,
    key TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE chunks (
    chunk_id BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    bucket INTEGER NOT NULL,
    key TEXT NOT NULL,
    initiated_ns INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    attrs TEXT
) WITHOUT ROWID;
CREATE INDEX uploads_key ON uploads (bucket, key, upload_id);
CREATE TABLE parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunks BLOB,
    mtime_ns INTEGER NOT NULL,
    attrs TEXT,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE access_keys (
    access_key TEXT PRIMARY KEY,
    secret_key TEXT NOT NULL,
    user TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX access_keys_user ON access_keys (user, created_ns);
"""

# Row layout: the column order of ``versions``, so a row tuple is also the parameter
# tuple of the multi-row upsert.
COLUMNS: Final = (
    "id",
    "bucket",
    "key",
    "is_null",
    "seq",
    "version_id",
    "is_dm",
    "size",
    "etag",
    "mtime_ns",
    "inline",
    "chunks",
    "content_type",
    "attrs",
    "crc",
)
ID, BUCKET, KEY, IS_NULL, SEQ, VID, IS_DM, SIZE = range(8)
INLINE, CHUNKS, ATTRS, CRC = 10, 11, 13, 14
NCOLS: Final = len(COLUMNS)
COLS: Final = ", ".join(COLUMNS)
VCOLS: Final = ", ".join("v." + c for c in COLUMNS)

Row = tuple[Any, ...]


def heads_sql(where: str, extra: str = "") -> str:
    """Rows of ``versions`` that are the newest of their key: via ``live``, then via
    ``markers`` (``h`` is the head table, ``v`` the version)."""
    return " UNION ALL ".join(
        f"SELECT {VCOLS}{extra} FROM {table} AS h CROSS JOIN versions AS v"
        f" WHERE {where} AND v.id = h.id"
        for table in ("live", "markers")
    )


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """The writer's connection: WAL, the durability asked for, the schema created or
    migrated."""
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    try:
        # Only a new, empty database takes a page size; an existing one keeps its own.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        elif version in _MIGRATIONS:
            _migrate(conn, version)
        elif version != SCHEMA_VERSION:
            raise StorageError(
                f"{path}: metadata schema version {version}, this kvbox knows "
                f"{SCHEMA_VERSION}; run the matching kvbox version or migrate"
            )
    except BaseException:
        conn.close()
        raise
    return conn


def _value_crc(value: bytes | None) -> int | None:
    return None if value is None else crc32c(value)


def _add_journal_lsn(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE state ADD COLUMN journal INTEGER NOT NULL DEFAULT 0")


def _add_value_crcs(conn: sqlite3.Connection) -> None:
    """Every inline value's checksum, computed from its bytes as they are now: damage
    older than the upgrade cannot be told from data (``kvbox fsck --verify`` before an
    upgrade checks the chunks; values had no checksum to check)."""
    conn.execute("ALTER TABLE versions ADD COLUMN crc INTEGER")
    conn.create_function("kvbox_crc32c", 1, _value_crc, deterministic=True)
    conn.execute("UPDATE versions SET crc = kvbox_crc32c(inline) WHERE inline IS NOT NULL")


#: What each older schema needs, in order, to become ``SCHEMA_VERSION``: one step per
#: version it lacks.
_MIGRATIONS: Final = {4: (_add_journal_lsn, _add_value_crcs), 5: (_add_value_crcs,)}


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a database from ``version`` to ``SCHEMA_VERSION`` in one transaction: a
    crash meanwhile leaves it at ``version``, whole."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in _MIGRATIONS[version]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


#: Corruption messages already logged (one ERROR line each, not one per request).
_logged_corrupt: set[str] = set()


def translate(exc: BaseException) -> BaseException:
    """The one place where SQLite's exceptions become kvbox errors. A damaged database
    file ("database disk image is malformed") is ``DataDamaged``, as a damaged chunk is:
    GW-KV ``ERR STORAGE damaged``, S3 500, logged once, named by ``kvbox fsck``."""
    if isinstance(exc, KvboxError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return InvalidArgument(f"constraint violated: {exc}")
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
            damaged = DataDamaged(f"the metadata database: {exc}")
            if str(exc) not in _logged_corrupt and len(_logged_corrupt) < 100:
                _logged_corrupt.add(str(exc))
                log.error("%s (kvbox fsck --verify checks it)", damaged)
            return damaged
        if name == "SQLITE_FULL":
            return full_error("the metadata database could not grow")
        return StorageError(f"sqlite: {exc}")
    return exc


# --- encodings: one for every SQL backend (``kvbox.core.meta.codec``) ------------------


def version_of(row: Row, bucket: str) -> ObjectVersion:
    """The version a row holds, its inline bytes *unchecked*: the Store checks them
    against ``inline_crc`` where it serves them (``kvbox.core.integrity``)."""
    chunks, ct, attrs = row[11], row[12], row[13]
    return ObjectVersion(
        bucket,
        row[2],
        row[5],
        row[7],
        row[8],
        row[9],
        row[6] == 1,
        row[3] == 1,
        row[10],
        dec_chunks(chunks) if chunks else (),
        DEFAULT_CT if ct is None else ct,
        dec_attrs(attrs) if attrs else EMPTY_ATTRS,
        row[4],
        row[14],
    )


def row_of(rid: int, bid: int, v: ObjectVersion) -> Row:
    """``v`` as the ``versions`` row ``rid`` of bucket ``bid`` (the column order)."""
    ct = v.content_type
    return (
        rid,
        bid,
        v.key,
        1 if v.is_null else 0,
        v.seq,
        v.version_id,
        1 if v.is_delete_marker else 0,
        v.size,
        v.etag,
        v.mtime_ns,
        v.inline,
        enc_chunks(v.chunks) if v.chunks else None,
        None if ct == DEFAULT_CT else ct,
        enc_attrs(v.attrs) if v.attrs else None,
        v.inline_crc,
    )


def upload_of(row: Row) -> MultipartUpload:
    return MultipartUpload(
        row[0], row[1], row[2], int(row[3]), row[4] or DEFAULT_CT, dec_attrs(row[5])
    )


def part_of(row: Row) -> Part:
    n, etag, size, chunks, mtime, attrs = row
    return Part(int(n), etag, int(size), dec_chunks(chunks), int(mtime), dec_attrs(attrs))


def bucket_of(row: Row) -> Bucket:
    return Bucket(row[0], row[1], row[2], Versioning(row[3]), dec_attrs(row[4]))


def user_of(row: Row) -> User:
    return User(row[0], row[1], bool(row[2]))


def key_of(row: Row) -> AccessKey:
    return AccessKey(row[0], row[1], row[2], row[3], bool(row[4]))
