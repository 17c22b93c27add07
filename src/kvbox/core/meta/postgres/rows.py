"""Rows of kvbox's PostgreSQL tables <-> the core's models, and the statements they share.

Layer: core (storage of ``kvbox.core.meta.postgres``; pure apart from the record type).
The tables are ``kvbox.core.pg``'s migration 0001; chunk lists and attrs use the
encoding of every SQL backend (``kvbox.core.meta.codec``).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from kvbox.core.meta.codec import dec_attrs, dec_chunks, dec_ct, enc_attrs, enc_chunks, enc_ct
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import Bucket, MultipartUpload, ObjectVersion, Part, Versioning

Record = Any  # asyncpg.Record: indexable by position and by name
#: A connection, whether taken from a pool or not.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: Columns of ``versions``, in the order of ``VCOLS`` and of ``version_row``.
VERSION_COLUMNS: Final = (
    "bucket",
    "key",
    "seq",
    "version_id",
    "is_null",
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
VCOLS: Final = ", ".join(VERSION_COLUMNS)
#: The same, of the table aliased ``v`` (in joins).
V_VCOLS: Final = ", ".join("v." + c for c in VERSION_COLUMNS)
#: PostgreSQL array types of those columns, for ``unnest`` of a whole batch of rows.
VTYPES: Final = (
    "int8",
    "text",
    "int8",
    "text",
    "bool",
    "bool",
    "int8",
    "text",
    "int8",
    "bytea",
    "bytea",
    "text",
    "text",
    "int8",
)
BUCKET_COLS: Final = "id, name, owner, created_ns, versioning, attrs"
UPLOAD_COLS: Final = "u.upload_id, b.name, u.key, u.initiated_ns, u.content_type, u.attrs"
PART_COLS: Final = "part_number, etag, size, chunks, mtime_ns, attrs"
KEY_COLS: Final = 'access_key, secret_key, "user", created_ns, disabled'


def unnest(types: tuple[str, ...], first: int = 1) -> str:
    """``unnest($1::t1[], $2::t2[], ...)``: a batch of rows as parallel arrays, one
    statement whatever the number of rows."""
    args = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types))
    return f"unnest({args})"


def version_of(r: Record, bucket: str, offset: int = 0) -> ObjectVersion:
    """A ``versions`` row (``VCOLS`` from ``offset``) as the version of ``bucket``."""
    o = offset
    chunks = r[o + 10]
    attrs = r[o + 12]
    return ObjectVersion(
        bucket,
        r[o + 1],
        r[o + 3],
        r[o + 6],
        r[o + 7],
        r[o + 8],
        r[o + 5],
        r[o + 4],
        r[o + 9],
        dec_chunks(chunks) if chunks else (),
        dec_ct(r[o + 11]),
        dec_attrs(attrs),
        r[o + 2],
        r[o + 13],
    )


def version_row(bucket_id: int, v: ObjectVersion) -> tuple[Any, ...]:
    """``v`` as a ``versions`` row of bucket ``bucket_id`` (``VERSION_COLUMNS``)."""
    return (
        bucket_id,
        v.key,
        v.seq,
        v.version_id,
        v.is_null,
        v.is_delete_marker,
        v.size,
        v.etag,
        v.mtime_ns,
        v.inline,
        enc_chunks(v.chunks) if v.chunks else None,
        enc_ct(v.content_type),
        enc_attrs(v.attrs) if v.attrs else None,
        v.inline_crc,
    )


def columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` parallel lists (the arguments of an ``unnest``)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def bucket_of(r: Record) -> Bucket:
    """A ``buckets`` row (``BUCKET_COLS``)."""
    return Bucket(r[1], r[2], r[3], Versioning(r[4]), dec_attrs(r[5]))


def upload_of(r: Record) -> MultipartUpload:
    """An ``uploads`` row joined with its bucket's name (``UPLOAD_COLS``)."""
    return MultipartUpload(r[1], r[2], r[0], int(r[3]), dec_ct(r[4]), dec_attrs(r[5]))


def part_of(r: Record) -> Part:
    """A ``parts`` row (``PART_COLS``)."""
    return Part(int(r[0]), r[1], int(r[2]), dec_chunks(r[3]), int(r[4]), dec_attrs(r[5]))


def part_row(upload_id: str, p: Part) -> tuple[Any, ...]:
    return (
        upload_id,
        p.part_number,
        p.etag,
        p.size,
        enc_chunks(p.chunks),
        p.mtime_ns,
        enc_attrs(p.attrs),
    )


def user_of(r: Record) -> User:
    return User(r[0], int(r[1]), bool(r[2]))


def key_of(r: Record) -> AccessKey:
    """An ``access_keys`` row (``KEY_COLS``)."""
    return AccessKey(r[0], r[1], r[2], int(r[3]), bool(r[4]))
