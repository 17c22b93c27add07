"""Plain rows of the SQLite store's transaction: buckets, uploads and parts, chunk
reference counts, users and keys.

Layer: core (storage of ``kvbox.core.meta.sqlite``). These ``MetaTxn`` methods need no
overlay: each is one or two statements on the writer's connection, inside the batch's
transaction, so a savepoint or a rollback undoes them with everything else. They are a
base class of ``SqliteTxn`` only to keep the overlay's module to the overlay.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from kvbox.core.meta.codec import chunk_counts, chunk_digests, enc_attrs, enc_chunks
from kvbox.core.meta.sqlite.reads import SQL_UPLOAD
from kvbox.core.meta.sqlite.schema import (
    bucket_of,
    key_of,
    part_of,
    upload_of,
    user_of,
)
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import Bucket, ChunkRef, MultipartUpload, Part


class PlainRows:
    """The overlay-free half of ``SqliteTxn`` (module docstring)."""

    c: sqlite3.Cursor
    buckets: dict[str, Bucket]
    bids: dict[str, int]
    names: dict[int, str]
    deltas: dict[int, list[int]]

    def _load_buckets(self) -> None:
        rows = self.c.execute(
            "SELECT id, name, owner, created_ns, versioning, attrs FROM buckets"
        ).fetchall()
        self.buckets = {}
        self.bids = {}
        for row in rows:
            b = bucket_of(row[1:])
            self.buckets[b.name] = b
            self.bids[b.name] = int(row[0])
        self.names = {bid: name for name, bid in self.bids.items()}

    # --- buckets ------------------------------------------------------------------------

    def bucket(self, name: str) -> Bucket | None:
        return self.buckets.get(name)

    def insert_bucket(self, bucket: Bucket) -> None:
        self.c.execute(
            "INSERT INTO buckets (name, owner, created_ns, versioning, attrs)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                bucket.name,
                bucket.owner,
                bucket.created_ns,
                bucket.versioning.value,
                enc_attrs(bucket.attrs),
            ),
        )
        bid = int(self.c.lastrowid or 0)
        self.buckets[bucket.name] = bucket
        self.bids[bucket.name] = bid
        self.names[bid] = bucket.name

    def update_bucket(self, bucket: Bucket) -> None:
        self.c.execute(
            "UPDATE buckets SET versioning = ?, attrs = ? WHERE id = ?",
            (bucket.versioning.value, enc_attrs(bucket.attrs), self.bids[bucket.name]),
        )
        self.buckets[bucket.name] = bucket

    def delete_bucket(self, name: str) -> None:
        bid = self.bids.pop(name)
        self.c.execute("DELETE FROM buckets WHERE id = ?", (bid,))
        self.deltas.pop(bid, None)
        del self.buckets[name]
        del self.names[bid]

    def bucket_uploads(self, name: str) -> list[str]:
        rows = self.c.execute("SELECT upload_id FROM uploads WHERE bucket = ?", (self.bids[name],))
        return [r[0] for r in rows.fetchall()]

    def buckets_owned_by(self, owner: str) -> bool:
        found = self.c.execute("SELECT 1 FROM buckets WHERE owner = ? LIMIT 1", (owner,))
        return found.fetchone() is not None

    # --- chunk references ---------------------------------------------------------------

    def ref(self, chunks: Sequence[ChunkRef]) -> None:
        sizes = {c.chunk_id: c.size for c in chunks}
        self.c.executemany(
            "INSERT INTO chunks (chunk_id, size, refs) VALUES (?, ?, ?)"
            " ON CONFLICT (chunk_id) DO UPDATE SET refs = refs + excluded.refs",
            [(bytes.fromhex(cid), sizes[cid], n) for cid, n in chunk_counts(chunks).items()],
        )

    def unref(self, chunks: Sequence[ChunkRef]) -> list[str]:
        c = self.c
        freed: list[str] = []
        for cid, n in chunk_counts(chunks).items():
            raw = bytes.fromhex(cid)
            rows = c.execute(
                "UPDATE chunks SET refs = refs - ? WHERE chunk_id = ? RETURNING refs", (n, raw)
            ).fetchall()
            if rows and rows[0][0] <= 0:
                c.execute("DELETE FROM chunks WHERE chunk_id = ?", (raw,))
                freed.append(cid)
        return freed

    def chunk_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for cid in set(chunk_ids):
            row = self.c.execute(
                "SELECT refs FROM chunks WHERE chunk_id = ?", (bytes.fromhex(cid),)
            ).fetchone()
            if row is not None:
                out[cid] = int(row[0])
        return out

    def uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        wanted = {bytes.fromhex(c) for c in chunk_ids}
        rows = self.c.execute(
            "SELECT upload_id, chunks FROM parts WHERE chunks IS NOT NULL"
        ).fetchall()
        return [uid for uid, blob in rows if not wanted.isdisjoint(chunk_digests(blob))]

    # --- multipart uploads --------------------------------------------------------------

    def upload(self, upload_id: str) -> MultipartUpload | None:
        row = self.c.execute(f"{SQL_UPLOAD} WHERE u.upload_id = ?", (upload_id,)).fetchone()
        return upload_of(row) if row is not None else None

    def insert_upload(self, upload: MultipartUpload) -> None:
        self.c.execute(
            "INSERT INTO uploads (upload_id, bucket, key, initiated_ns, content_type, attrs)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                upload.upload_id,
                self.bids[upload.bucket],
                upload.key,
                upload.initiated_ns,
                upload.content_type,
                enc_attrs(upload.attrs),
            ),
        )

    def parts(self, upload_id: str) -> dict[int, Part]:
        rows = self.c.execute(
            "SELECT part_number, etag, size, chunks, mtime_ns, attrs FROM parts"
            " WHERE upload_id = ?",
            (upload_id,),
        ).fetchall()
        return {int(r[0]): part_of(r) for r in rows}

    def put_part(self, upload_id: str, part: Part) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO parts (upload_id, part_number, etag, size, chunks,"
            " mtime_ns, attrs) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                upload_id,
                part.part_number,
                part.etag,
                part.size,
                enc_chunks(part.chunks),
                part.mtime_ns,
                enc_attrs(part.attrs),
            ),
        )

    def delete_upload(self, upload_id: str) -> None:
        self.c.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        self.c.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

    # --- users and access keys ----------------------------------------------------------

    def user(self, name: str) -> User | None:
        row = self.c.execute(
            "SELECT name, created_ns, disabled FROM users WHERE name = ?", (name,)
        ).fetchone()
        return user_of(row) if row is not None else None

    def put_user(self, user: User) -> None:
        self.c.execute(
            "INSERT INTO users (name, created_ns, disabled) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled",
            (user.name, user.created_ns, int(user.disabled)),
        )

    def delete_user(self, name: str) -> None:
        self.c.execute("DELETE FROM access_keys WHERE user = ?", (name,))
        self.c.execute("DELETE FROM users WHERE name = ?", (name,))

    def access_key(self, access_key: str) -> AccessKey | None:
        row = self.c.execute(
            "SELECT access_key, secret_key, user, created_ns, disabled FROM access_keys"
            " WHERE access_key = ?",
            (access_key,),
        ).fetchone()
        return key_of(row) if row is not None else None

    def put_key(self, key: AccessKey) -> None:
        self.c.execute(
            "INSERT INTO access_keys (access_key, secret_key, user, created_ns, disabled)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (access_key) DO UPDATE SET disabled = excluded.disabled",
            (key.access_key, key.secret_key, key.user, key.created_ns, int(key.disabled)),
        )

    def delete_key(self, access_key: str) -> None:
        self.c.execute("DELETE FROM access_keys WHERE access_key = ?", (access_key,))
