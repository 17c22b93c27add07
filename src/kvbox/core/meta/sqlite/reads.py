"""The SQLite store's reads: one function per ``MetaStore`` read, run on a reader thread.

Layer: core (storage of ``kvbox.core.meta.sqlite``). Rules: each function takes a
reader connection (WAL: it never waits for the writer and sees every commit that has
returned) and is one statement, or one read transaction where two statements must see
the same commit; every object read is an index lookup or a range scan of an index
(``tests/core/meta/test_sqlite.py`` checks the query plans).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Final

from kvbox.core.meta import rules
from kvbox.core.meta.sqlite.schema import (
    COLS,
    KEY,
    SEQ,
    VCOLS,
    Row,
    bucket_of,
    heads_sql,
    key_of,
    part_of,
    upload_of,
    user_of,
    version_of,
)
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    NULL_VERSION,
    Bucket,
    BucketStats,
    MultipartUpload,
    ObjectVersion,
    Part,
)
from kvbox.errors import NoSuchBucket, NoSuchUpload

#: Keys per head_many query: well under SQLite's JSON and statement limits.
_HEAD_MANY_CHUNK: Final = 500
#: Keys whose histories one page of a version listing reads per step.
_KEYS_PER_STEP: Final = 256

BID: Final = "(SELECT id FROM buckets WHERE name = ?1)"

# Parameter 1 is always the bucket name.
SQL_HEAD: Final = heads_sql(f"h.bucket = {BID} AND h.key = ?2") + " LIMIT 1"
SQL_HEAD_MANY: Final = "WITH j AS MATERIALIZED (SELECT value FROM json_each(?2)) " + heads_sql(
    f"h.bucket = {BID} AND h.key IN (SELECT value FROM j)"
)
SQL_BY_ID: Final = (
    f"SELECT {COLS} FROM versions"
    f" WHERE bucket = {BID} AND key = ?2 AND version_id = ?3 AND is_null = 0"
    f" UNION ALL SELECT {COLS} FROM versions"
    f" WHERE bucket = {BID} AND key = ?2 AND is_null = 1 AND version_id = ?3"
    " LIMIT 1"
)
SQL_NULL: Final = f"SELECT {COLS} FROM versions WHERE bucket = {BID} AND key = ?2 AND is_null = 1"
SQL_HISTORY: Final = (
    f"SELECT {COLS} FROM versions WHERE bucket = {BID} AND key = ?2 AND is_null = 0"
    " ORDER BY seq DESC LIMIT ?3"
)
SQL_HISTORY_BELOW: Final = (
    f"SELECT {COLS} FROM versions WHERE bucket = {BID} AND key = ?2 AND is_null = 0"
    " AND seq < ?4 ORDER BY seq DESC LIMIT ?3"
)
#: The listing: a range of ``live``'s primary key, each row joined by row id; the
#: caller appends the key range (``h.key``), ORDER BY and LIMIT.
SQL_LIST: Final = (
    f"SELECT {VCOLS} FROM live AS h CROSS JOIN versions AS v ON v.id = h.id WHERE h.bucket = {BID}"
)
SQL_UPLOAD: Final = (
    "SELECT b.name, u.key, u.upload_id, u.initiated_ns, u.content_type, u.attrs"
    " FROM uploads u JOIN buckets b ON b.id = u.bucket"
)
_SQL_BUCKET: Final = "SELECT name, owner, created_ns, versioning, attrs FROM buckets"
_SQL_KEYS: Final = "SELECT access_key, secret_key, user, created_ns, disabled FROM access_keys"


def get_bucket(c: sqlite3.Connection, name: str) -> Bucket | None:
    row = c.execute(f"{_SQL_BUCKET} WHERE name = ?", (name,)).fetchone()
    return bucket_of(row) if row is not None else None


def list_buckets(c: sqlite3.Connection) -> list[Bucket]:
    return [bucket_of(r) for r in c.execute(f"{_SQL_BUCKET} ORDER BY name").fetchall()]


def journal_lsn(c: sqlite3.Connection) -> int:
    return int(c.execute("SELECT journal FROM state").fetchone()[0])


def head(c: sqlite3.Connection, bucket: str, key: str) -> ObjectVersion | None:
    row = c.execute(SQL_HEAD, (bucket, key)).fetchone()
    return version_of(row, bucket) if row is not None else None


def head_many(c: sqlite3.Connection, bucket: str, keys: list[str]) -> list[ObjectVersion | None]:
    found: dict[str, ObjectVersion] = {}
    for i in range(0, len(keys), _HEAD_MANY_CHUNK):
        part = json.dumps(keys[i : i + _HEAD_MANY_CHUNK], ensure_ascii=False)
        for row in c.execute(SQL_HEAD_MANY, (bucket, part)).fetchall():
            found[row[KEY]] = version_of(row, bucket)
    return [found.get(k) for k in keys]


def get_version(
    c: sqlite3.Connection, bucket: str, key: str, version_id: str
) -> ObjectVersion | None:
    if version_id == NULL_VERSION:
        row = c.execute(SQL_NULL, (bucket, key)).fetchone()
    else:
        row = c.execute(SQL_BY_ID, (bucket, key, version_id)).fetchone()
    return version_of(row, bucket) if row is not None else None


def list_versions(c: sqlite3.Connection, bucket: str, key: str, limit: int) -> list[ObjectVersion]:
    # Both statements in one read transaction, so they see the same commit.
    c.execute("BEGIN")
    try:
        rows: list[Row] = c.execute(SQL_HISTORY, (bucket, key, limit)).fetchall()
        null = c.execute(SQL_NULL, (bucket, key)).fetchone()
    finally:
        c.execute("COMMIT")
    if null is not None:
        rows.append(null)
        rows.sort(key=lambda r: r[SEQ], reverse=True)
    return [version_of(r, bucket) for r in rows[:limit]]


def list_bucket_versions(
    c: sqlite3.Connection,
    bucket: str,
    prefix: str,
    key_marker: str,
    version_id_marker: str,
    limit: int,
) -> list[ObjectVersion]:
    """Every key with a version has exactly one head row, in ``live`` or in
    ``markers``: walk the union of the two key indexes a step of keys at a time, and read
    each key's history through its own index, all in one snapshot."""
    end = rules.prefix_end(prefix)
    out: list[Row] = []
    c.execute("BEGIN")
    try:
        start, inclusive = max(prefix, key_marker), True
        while len(out) < limit:
            args: list[object] = [bucket, start]
            op = ">=" if inclusive else ">"
            cond = f"bucket = {BID} AND key {op} ?2"
            if end is not None:
                cond += " AND key < ?3"
                args.append(end)
            keys = [
                r[0]
                for r in c.execute(
                    f"SELECT key FROM live WHERE {cond} UNION ALL"
                    f" SELECT key FROM markers WHERE {cond} ORDER BY 1 LIMIT {_KEYS_PER_STEP}",
                    args,
                ).fetchall()
            ]
            if not keys:
                break
            for key in keys:
                want = limit - len(out)
                below = None  # list only versions older than this seq
                if key == key_marker:
                    mark = None
                    if version_id_marker:
                        mark = c.execute(SQL_BY_ID, (bucket, key, version_id_marker)).fetchone()
                        if mark is None and version_id_marker == NULL_VERSION:
                            mark = c.execute(SQL_NULL, (bucket, key)).fetchone()
                    if mark is None:
                        continue  # no marker (or it is gone): skip the key
                    below = mark[SEQ]
                history: list[Row] = c.execute(
                    SQL_HISTORY_BELOW, (bucket, key, want, below or (1 << 62))
                ).fetchall()
                null = c.execute(SQL_NULL, (bucket, key)).fetchone()
                if null is not None and (below is None or null[SEQ] < below):
                    history.append(null)
                    history.sort(key=lambda r: r[SEQ], reverse=True)
                out.extend(history[:want])
                if len(out) >= limit:
                    break
            start, inclusive = keys[-1], False
    finally:
        c.execute("COMMIT")
    return [version_of(r, bucket) for r in out]


def list_objects(
    c: sqlite3.Connection, bucket: str, prefix: str, start_after: str, limit: int
) -> list[ObjectVersion]:
    sql = SQL_LIST
    args: list[object] = [bucket]
    if start_after and start_after >= prefix:
        sql += " AND h.key > ?"
        args.append(start_after)
    elif prefix:
        sql += " AND h.key >= ?"
        args.append(prefix)
    end = rules.prefix_end(prefix)
    if end is not None:
        sql += " AND h.key < ?"
        args.append(end)
    sql += " ORDER BY h.key LIMIT ?"
    args.append(limit)
    return [version_of(r, bucket) for r in c.execute(sql, args).fetchall()]


def stats(c: sqlite3.Connection, bucket: str) -> BucketStats:
    row = c.execute("SELECT objects, bytes FROM buckets WHERE name = ?", (bucket,)).fetchone()
    if row is None:
        raise NoSuchBucket(bucket)
    return BucketStats(int(row[0]), int(row[1]))


def recount(c: sqlite3.Connection, bucket: str) -> tuple[BucketStats, BucketStats]:
    """Stored counters and live rows counted, in one read transaction (one commit)."""
    c.execute("BEGIN")
    try:
        row = c.execute("SELECT id, objects, bytes FROM buckets WHERE name = ?", (bucket,))
        found = row.fetchone()
        if found is None:
            raise NoSuchBucket(bucket)
        n, size = c.execute(
            "SELECT count(*), coalesce(sum(v.size), 0) FROM live l"
            " JOIN versions v ON v.id = l.id WHERE l.bucket = ?",
            (found[0],),
        ).fetchone()
    finally:
        c.execute("COMMIT")
    return BucketStats(int(found[1]), int(found[2])), BucketStats(int(n), int(size))


#: Complaints ``integrity_check`` lists at most: enough to show the damage's extent.
INTEGRITY_MAX: Final = 100


def check_storage(c: sqlite3.Connection) -> list[str]:
    """SQLite's own check of every page, index and constraint (``integrity_check``)."""
    rows = c.execute(f"PRAGMA integrity_check({INTEGRITY_MAX})").fetchall()
    return [str(r[0]) for r in rows if r[0] != "ok"]


# --- multipart uploads ------------------------------------------------------------------


def get_upload(c: sqlite3.Connection, upload_id: str) -> MultipartUpload | None:
    row = c.execute(f"{SQL_UPLOAD} WHERE u.upload_id = ?", (upload_id,)).fetchone()
    return upload_of(row) if row is not None else None


def list_parts(c: sqlite3.Connection, upload_id: str, marker: int, limit: int) -> list[Part]:
    if not c.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone():
        raise NoSuchUpload(upload_id)
    rows = c.execute(
        "SELECT part_number, etag, size, chunks, mtime_ns, attrs FROM parts"
        " WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?",
        (upload_id, marker, max(limit, 0)),
    ).fetchall()
    return [part_of(r) for r in rows]


def list_uploads(
    c: sqlite3.Connection,
    bucket: str,
    prefix: str,
    key_marker: str,
    upload_id_marker: str,
    limit: int,
) -> list[MultipartUpload]:
    sql = f"{SQL_UPLOAD} WHERE b.name = ? AND u.key >= ?"
    args: list[object] = [bucket, prefix]
    end = rules.prefix_end(prefix)
    if end is not None:
        sql += " AND u.key < ?"
        args.append(end)
    if key_marker and upload_id_marker:
        sql += " AND (u.key > ? OR (u.key = ? AND u.upload_id > ?))"
        args += [key_marker, key_marker, upload_id_marker]
    elif key_marker:
        sql += " AND u.key > ?"
        args.append(key_marker)
    sql += " ORDER BY u.key, u.upload_id LIMIT ?"
    args.append(max(limit, 0))
    return [upload_of(r) for r in c.execute(sql, args).fetchall()]


# --- chunks -----------------------------------------------------------------------------


def chunk_refs(c: sqlite3.Connection) -> dict[str, int]:
    rows = c.execute("SELECT chunk_id, refs FROM chunks").fetchall()
    return {bytes(cid).hex(): int(refs) for cid, refs in rows}


def chunk_ref_counts(c: sqlite3.Connection, chunk_ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cid in chunk_ids:
        row = c.execute("SELECT refs FROM chunks WHERE chunk_id = ?", (bytes.fromhex(cid),))
        found = row.fetchone()
        if found is not None:
            out[cid] = int(found[0])
    return out


# --- users and access keys --------------------------------------------------------------


def get_user(c: sqlite3.Connection, name: str) -> User | None:
    row = c.execute(
        "SELECT name, created_ns, disabled FROM users WHERE name = ?", (name,)
    ).fetchone()
    return user_of(row) if row is not None else None


def list_users(c: sqlite3.Connection) -> list[User]:
    rows = c.execute("SELECT name, created_ns, disabled FROM users ORDER BY name").fetchall()
    return [user_of(r) for r in rows]


def list_keys(c: sqlite3.Connection, user: str) -> list[AccessKey]:
    rows = c.execute(
        f"{_SQL_KEYS} WHERE user = ? ORDER BY created_ns, access_key", (user,)
    ).fetchall()
    return [key_of(r) for r in rows]


def get_key(c: sqlite3.Connection, access_key: str) -> AccessKey | None:
    row = c.execute(f"{_SQL_KEYS} WHERE access_key = ?", (access_key,)).fetchone()
    return key_of(row) if row is not None else None


def lookup_key(c: sqlite3.Connection, access_key: str) -> tuple[str, str] | None:
    row = c.execute(
        "SELECT k.user, k.secret_key FROM access_keys k JOIN users u ON u.name = k.user"
        " WHERE k.access_key = ? AND k.disabled = 0 AND u.disabled = 0",
        (access_key,),
    ).fetchone()
    return (row[0], row[1]) if row is not None else None
