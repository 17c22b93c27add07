"""The PostgreSQL store's reads: one statement per ``MetaStore`` read, on any pooled
connection.

Layer: core (storage of ``kvbox.core.meta.postgres``). Rules: a read takes no lock and
sees every transaction committed before it began (READ COMMITTED), so a write
acknowledged by any gateway is visible to a read that starts after it on any other.
Where two statements must see one commit, they run in one REPEATABLE READ read-only
transaction. Every object read is an index lookup or a range scan of an index
(``tests/core/meta/test_postgres.py`` pins the listing's plan with EXPLAIN).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import asyncpg

from kvbox.core.meta import rules
from kvbox.core.meta.postgres.rows import (
    BUCKET_COLS,
    KEY_COLS,
    PART_COLS,
    UPLOAD_COLS,
    V_VCOLS,
    VCOLS,
    Connection,
    bucket_of,
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

Conn: TypeAlias = "Connection | asyncpg.Pool[Any]"

#: The bucket id of the name in parameter 1 (an InitPlan: looked up once per statement).
BID: Final = "(SELECT id FROM buckets WHERE name = $1)"
_HEAD: Final = (
    f"SELECT {V_VCOLS} FROM heads h JOIN versions v"
    " ON v.bucket = h.bucket AND v.key = h.key AND v.seq = h.seq"
)


def list_sql(where: str) -> str:
    """The listing: a range of the head rows' index (``where``: the key range, in
    parameters $2 on; $1 the bucket, the last one the limit), then each version by its
    primary key. The LATERAL ... LIMIT 1 keeps it a nested loop of index lookups in key
    order: a plain three-column join is estimated at one row, which makes a hash join
    over the whole ``versions`` table look cheap (tests/core/meta/test_postgres.py)."""
    return (
        f"SELECT {V_VCOLS} FROM (SELECT bucket, key, seq FROM heads"
        f" WHERE bucket = {BID} AND NOT is_dm{where} ORDER BY key LIMIT $LIMIT) AS h"
        f" CROSS JOIN LATERAL (SELECT {VCOLS} FROM versions"
        " WHERE bucket = h.bucket AND key = h.key AND seq = h.seq LIMIT 1) AS v ORDER BY h.key"
    )


_SQL_HISTORY: Final = (
    f"SELECT {VCOLS} FROM versions WHERE bucket = {BID} AND key = $2"
    " AND seq < $3 ORDER BY seq DESC LIMIT $4"
)
#: The versions of a page of keys after one key: keys from the head rows' index, each
#: key's history newest first from the primary key (a backward range scan), cut to the
#: page; the outer sort only merges rows already in order.


def _keys_history(bounded: bool) -> str:
    end = " AND key < $3" if bounded else " AND $3::text IS NULL"  # no upper bound
    return (
        f"SELECT {V_VCOLS} FROM (SELECT key FROM heads WHERE bucket = $1 AND key > $2{end}"
        " ORDER BY key LIMIT $4) AS h CROSS JOIN LATERAL"
        f" (SELECT {VCOLS} FROM versions WHERE bucket = $1 AND key = h.key"
        " ORDER BY seq DESC LIMIT $4) AS v ORDER BY v.key, v.seq DESC LIMIT $4"
    )


_SQL_KEYS_HISTORY: Final = {True: _keys_history(True), False: _keys_history(False)}
_NEVER: Final = 1 << 62


async def get_bucket(c: Conn, name: str) -> Bucket | None:
    r = await c.fetchrow(f"SELECT {BUCKET_COLS} FROM buckets WHERE name = $1", name)
    return bucket_of(r) if r is not None else None


async def list_buckets(c: Conn) -> list[Bucket]:
    return [bucket_of(r) for r in await c.fetch(f"SELECT {BUCKET_COLS} FROM buckets ORDER BY name")]


async def head(c: Conn, bucket: str, key: str) -> ObjectVersion | None:
    r = await c.fetchrow(f"{_HEAD} WHERE h.bucket = {BID} AND h.key = $2", bucket, key)
    return version_of(r, bucket) if r is not None else None


async def head_many(c: Conn, bucket: str, keys: list[str]) -> list[ObjectVersion | None]:
    rows = await c.fetch(
        f"{_HEAD} WHERE h.bucket = {BID} AND h.key = ANY($2::text[])", bucket, sorted(set(keys))
    )
    found = {r[1]: version_of(r, bucket) for r in rows}
    return [found.get(k) for k in keys]


async def get_version(c: Conn, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
    if version_id == NULL_VERSION:
        sql = f"SELECT {VCOLS} FROM versions WHERE bucket = {BID} AND key = $2 AND is_null"
        r = await c.fetchrow(sql, bucket, key)
    else:
        sql = (
            f"SELECT {VCOLS} FROM versions WHERE bucket = {BID} AND key = $2"
            " AND version_id = $3 ORDER BY is_null LIMIT 1"
        )
        r = await c.fetchrow(sql, bucket, key, version_id)
    return version_of(r, bucket) if r is not None else None


async def list_versions(c: Conn, bucket: str, key: str, limit: int) -> list[ObjectVersion]:
    rows = await c.fetch(_SQL_HISTORY, bucket, key, _NEVER, limit)
    return [version_of(r, bucket) for r in rows]


async def list_bucket_versions(
    c: Connection,
    bucket: str,
    prefix: str,
    key_marker: str,
    version_id_marker: str,
    limit: int,
) -> list[ObjectVersion]:
    """The marker's own key first (its versions older than the marker), then whole
    keys after it: two statements in one snapshot."""
    end = rules.prefix_end(prefix)
    keys_sql = _SQL_KEYS_HISTORY[end is not None]
    out: list[Any] = []
    async with c.transaction(isolation="repeatable_read", readonly=True):
        bid = await c.fetchval("SELECT id FROM buckets WHERE name = $1", bucket)
        if bid is None:
            return []
        after = ""
        if key_marker and key_marker >= prefix:
            after = key_marker
            if version_id_marker and key_marker.startswith(prefix):
                mark = await get_version(c, bucket, key_marker, version_id_marker)
                if mark is not None:
                    out.extend(await c.fetch(_SQL_HISTORY, bucket, key_marker, mark.seq, limit))
        if len(out) < limit:
            if after:
                out.extend(await c.fetch(keys_sql, bid, after, end, limit - len(out)))
            else:
                # keys >= prefix: the empty string is below every key but equal to prefix ""
                first = await c.fetch(_SQL_HISTORY, bucket, prefix, _NEVER, limit) if prefix else []
                out.extend(first)
                if len(out) < limit:
                    out.extend(await c.fetch(keys_sql, bid, prefix, end, limit - len(out)))
    return [version_of(r, bucket) for r in out[:limit]]


async def list_objects(
    c: Conn, bucket: str, prefix: str, start_after: str, limit: int
) -> list[ObjectVersion]:
    where = ""
    args: list[object] = [bucket]
    if start_after and start_after >= prefix:
        args.append(start_after)
        where += f" AND key > ${len(args)}"
    elif prefix:
        args.append(prefix)
        where += f" AND key >= ${len(args)}"
    end = rules.prefix_end(prefix)
    if end is not None:
        args.append(end)
        where += f" AND key < ${len(args)}"
    args.append(limit)
    sql = list_sql(where).replace("$LIMIT", f"${len(args)}")
    return [version_of(r, bucket) for r in await c.fetch(sql, *args)]


async def stats(c: Conn, bucket: str) -> BucketStats:
    r = await c.fetchrow(
        "SELECT b.id, coalesce(sum(n.objects), 0), coalesce(sum(n.bytes), 0) FROM buckets b"
        " LEFT JOIN bucket_counts n ON n.bucket = b.id WHERE b.name = $1 GROUP BY b.id",
        bucket,
    )
    if r is None:
        raise NoSuchBucket(bucket)
    return BucketStats(int(r[1]), int(r[2]))


async def recount(c: Connection, bucket: str) -> tuple[BucketStats, BucketStats]:
    """Stored counters and live heads counted, in one snapshot."""
    async with c.transaction(isolation="repeatable_read", readonly=True):
        stored = await stats(c, bucket)
        r = await c.fetchrow(
            "SELECT count(*), coalesce(sum(v.size), 0) FROM heads h"
            " JOIN buckets b ON b.id = h.bucket"
            " JOIN versions v ON v.bucket = h.bucket AND v.key = h.key AND v.seq = h.seq"
            " WHERE b.name = $1 AND NOT h.is_dm",
            bucket,
        )
    assert r is not None
    return stored, BucketStats(int(r[0]), int(r[1]))


# --- multipart uploads ------------------------------------------------------------------

_SQL_UPLOAD: Final = f"SELECT {UPLOAD_COLS} FROM uploads u JOIN buckets b ON b.id = u.bucket"


async def get_upload(c: Conn, upload_id: str) -> MultipartUpload | None:
    r = await c.fetchrow(f"{_SQL_UPLOAD} WHERE u.upload_id = $1", upload_id)
    return upload_of(r) if r is not None else None


async def list_parts(c: Connection, upload_id: str, marker: int, limit: int) -> list[Part]:
    async with c.transaction(isolation="repeatable_read", readonly=True):
        if await c.fetchval("SELECT 1 FROM uploads WHERE upload_id = $1", upload_id) is None:
            raise NoSuchUpload(upload_id)
        rows = await c.fetch(
            f"SELECT {PART_COLS} FROM parts WHERE upload_id = $1 AND part_number > $2"
            " ORDER BY part_number LIMIT $3",
            upload_id,
            marker,
            max(limit, 0),
        )
    return [part_of(r) for r in rows]


async def list_uploads(
    c: Conn,
    bucket: str,
    prefix: str,
    key_marker: str,
    upload_id_marker: str,
    limit: int,
) -> list[MultipartUpload]:
    sql = f"{_SQL_UPLOAD} WHERE b.name = $1 AND u.key >= $2"
    args: list[object] = [bucket, prefix]
    end = rules.prefix_end(prefix)
    if end is not None:
        args.append(end)
        sql += f" AND u.key < ${len(args)}"
    if key_marker and upload_id_marker:
        args += [key_marker, upload_id_marker]
        n = len(args)
        sql += f" AND (u.key > ${n - 1} OR (u.key = ${n - 1} AND u.upload_id > ${n}))"
    elif key_marker:
        args.append(key_marker)
        sql += f" AND u.key > ${len(args)}"
    args.append(max(limit, 0))
    sql += f" ORDER BY u.key, u.upload_id LIMIT ${len(args)}"
    return [upload_of(r) for r in await c.fetch(sql, *args)]


# --- chunks -----------------------------------------------------------------------------


async def chunk_refs(c: Conn) -> dict[str, int]:
    rows = await c.fetch("SELECT chunk_id, refs FROM chunks WHERE refs > 0")
    return {bytes(r[0]).hex(): int(r[1]) for r in rows}


async def chunk_ref_counts(c: Conn, chunk_ids: list[str]) -> dict[str, int]:
    rows = await c.fetch(
        "SELECT chunk_id, refs FROM chunks WHERE chunk_id = ANY($1::bytea[]) AND refs > 0",
        [bytes.fromhex(cid) for cid in chunk_ids],
    )
    return {bytes(r[0]).hex(): int(r[1]) for r in rows}


# --- users and access keys --------------------------------------------------------------


async def get_user(c: Conn, name: str) -> User | None:
    r = await c.fetchrow("SELECT name, created_ns, disabled FROM users WHERE name = $1", name)
    return user_of(r) if r is not None else None


async def list_users(c: Conn) -> list[User]:
    rows = await c.fetch("SELECT name, created_ns, disabled FROM users ORDER BY name")
    return [user_of(r) for r in rows]


async def list_keys(c: Conn, user: str) -> list[AccessKey]:
    rows = await c.fetch(
        f'SELECT {KEY_COLS} FROM access_keys WHERE "user" = $1 ORDER BY created_ns, access_key',
        user,
    )
    return [key_of(r) for r in rows]


async def get_key(c: Conn, access_key: str) -> AccessKey | None:
    r = await c.fetchrow(f"SELECT {KEY_COLS} FROM access_keys WHERE access_key = $1", access_key)
    return key_of(r) if r is not None else None


async def lookup_key(c: Conn, access_key: str) -> tuple[str, str] | None:
    r = await c.fetchrow(
        'SELECT k."user", k.secret_key FROM access_keys k JOIN users u ON u.name = k."user"'
        " WHERE k.access_key = $1 AND NOT k.disabled AND NOT u.disabled",
        access_key,
    )
    return (r[0], r[1]) if r is not None else None
