"""``kvbox migrate-to-cluster``: one single-node data directory into a cluster, losslessly.

Layer: cluster. Rules:

* The data directory is locked for the whole run (no server may write it meanwhile),
  and its GW-KV journal is replayed into its SQLite metadata first (opening and closing
  a ``Store`` over it), so acknowledged writes still in the journal move too.
* The destination must be empty (no bucket, no user): a migration is a copy into a new
  cluster, never a merge, so it can be checked by comparing both sides whole.
* Order: chunks first (each read checked against its address, then written to R blob
  nodes), then metadata (buckets with their settings, every version of every key oldest
  first with its version id, null-ness, time, attributes and checksum; delete markers;
  multipart uploads in progress and their parts; users and access keys with their
  secrets), so no version in the cluster ever references a chunk not there yet.
* Then everything is read back from both sides and compared: versions (metadata and
  bytes), uploads, parts, users, keys. The report says what moved; any difference is an
  error, and the source directory is never changed, so a failed run is simply run again
  into a fresh database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kvbox.cluster.store import ClusterBlobStore
from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.datadir import lock_data_dir
from kvbox.core.journal import JOURNAL_DIR
from kvbox.core.meta import MetaStore
from kvbox.core.meta.postgres import PostgresMetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.model import MultipartUpload, ObjectVersion, Part
from kvbox.core.pg import PgUrl
from kvbox.core.store import Store
from kvbox.errors import DataDirError, InvalidArgument, StorageError

#: Versions restored per transaction.
_BATCH: Final = 200
#: Chunks copied at once.
_PARALLEL: Final = 8


@dataclass(slots=True)
class MigrationReport:
    buckets: int = 0
    versions: int = 0
    chunks: int = 0
    chunk_bytes: int = 0
    uploads: int = 0
    parts: int = 0
    users: int = 0
    keys: int = 0


async def _versions(meta: MetaStore, bucket: str) -> AsyncIterator[list[ObjectVersion]]:
    """Each key's versions, oldest first, key by key."""
    key_marker, vid_marker = "", ""
    current: list[ObjectVersion] = []
    while page := await meta.list_bucket_versions(
        bucket, key_marker=key_marker, version_id_marker=vid_marker, limit=1000
    ):
        for v in page:
            if current and current[0].key != v.key:
                yield current[::-1]
                current = []
            current.append(v)
        key_marker, vid_marker = page[-1].key, page[-1].version_id
        if page[-1].is_null:
            vid_marker = "null"
    if current:
        yield current[::-1]


async def _uploads(meta: MetaStore, bucket: str) -> list[tuple[MultipartUpload, list[Part]]]:
    found: list[tuple[MultipartUpload, list[Part]]] = []
    key_marker, id_marker = "", ""
    while page := await meta.list_uploads(
        bucket, key_marker=key_marker, upload_id_marker=id_marker
    ):
        for u in page:
            parts: list[Part] = []
            marker = 0
            while more := await meta.list_parts(u.upload_id, marker):
                parts += more
                marker = more[-1].part_number
            found.append((u, parts))
        key_marker, id_marker = page[-1].key, page[-1].upload_id
    return found


def _same(v: ObjectVersion) -> tuple[object, ...]:
    """What must read back equal (``seq`` is the destination's own)."""
    return (
        v.bucket, v.key, v.version_id, v.size, v.etag, v.mtime_ns, v.is_delete_marker,
        v.is_null, v.inline, v.chunks, v.content_type, dict(v.attrs),
    )  # fmt: skip


async def replay_journal(data: Path) -> None:
    """Apply what the GW-KV journal holds to the SQLite metadata (open + close a Store)."""
    store = Store(
        SqliteMetaStore(data / META_FILE), LocalDirBlobStore(data), journal_dir=data / JOURNAL_DIR
    )
    await store.open()
    await store.close()


async def migrate_to_cluster(
    data: Path,
    meta_url: PgUrl,
    secret: bytes,
    *,
    replicas: int = 3,
    write_quorum: int | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> MigrationReport:
    if not (data / META_FILE).exists():
        raise DataDirError(f"{data}: no kvbox data directory here (no {META_FILE})")
    with lock_data_dir(data):
        await replay_journal(data)
        src = SqliteMetaStore(data / META_FILE)
        local = LocalDirBlobStore(data)
        dst = PostgresMetaStore(meta_url)
        blobs = ClusterBlobStore(meta_url, secret, replicas=replicas, write_quorum=write_quorum)
        await src.open()
        await local.open()
        try:
            await dst.open()
            try:
                await blobs.open()
                try:
                    report = await _copy(src, local, dst, blobs, say)
                    await _compare(src, local, dst, blobs)
                finally:
                    await blobs.close()
            finally:
                await dst.close()
        finally:
            await local.close()
            await src.close()
    return report


async def _copy(
    src: MetaStore,
    local: LocalDirBlobStore,
    dst: PostgresMetaStore,
    blobs: ClusterBlobStore,
    say: Callable[[str], None],
) -> MigrationReport:
    if await dst.list_buckets() or await dst.list_users():
        raise InvalidArgument(
            "the cluster's database already holds buckets or users: migrate-to-cluster "
            "copies into an empty cluster only (make a new database and `kvbox migrate` it)"
        )
    r = MigrationReport()
    refs = await src.chunk_refs()
    ids = sorted(refs)
    say(f"copying {len(ids)} chunks to the blob nodes")
    sem = asyncio.Semaphore(_PARALLEL)

    async def copy(cid: str) -> int:
        async with sem:
            data = await local.read(cid)  # checked against its address
            ref = await blobs.put(data)
            if ref.chunk_id != cid:
                raise StorageError(f"chunk {cid} changed on its way to the cluster")
            return ref.size

    sizes = await asyncio.gather(*(copy(c) for c in ids))
    r.chunks, r.chunk_bytes = len(ids), sum(sizes)
    buckets = await src.list_buckets()
    for b in buckets:
        await dst.create_bucket(b)
        r.buckets += 1
        batch: list[ObjectVersion] = []
        async for key_versions in _versions(src, b.name):
            batch += key_versions
            if len(batch) >= _BATCH:
                await dst.restore_versions(batch)
                r.versions += len(batch)
                batch = []
        if batch:
            await dst.restore_versions(batch)
            r.versions += len(batch)
        for upload, parts in await _uploads(src, b.name):
            await dst.create_upload(upload)
            for part in parts:
                await dst.put_part(upload.upload_id, part)
            r.uploads += 1
            r.parts += len(parts)
        say(f"bucket {b.name}: copied")
    for user in await src.list_users():
        keys = await src.list_keys(user.name)
        await dst.restore_user(user, keys)
        r.users += 1
        r.keys += len(keys)
    say(
        f"copied {r.buckets} buckets, {r.versions} versions, {r.uploads} uploads "
        f"({r.parts} parts), {r.users} users ({r.keys} keys)"
    )
    return r


async def _compare(
    src: MetaStore, local: LocalDirBlobStore, dst: MetaStore, blobs: ClusterBlobStore
) -> None:
    """Everything reads back the same from the cluster (module docstring)."""

    def differ(what: str) -> StorageError:
        return StorageError(
            f"migrate-to-cluster: {what} differs after the copy; nothing in the data "
            "directory was changed: investigate, then run again into a fresh database"
        )

    if await src.list_buckets() != await dst.list_buckets():
        raise differ("the list of buckets")
    for b in await src.list_buckets():
        mine = [_same(v) async for kv in _versions(src, b.name) for v in kv]
        theirs = [_same(v) async for kv in _versions(dst, b.name) for v in kv]
        if mine != theirs:
            raise differ(f"bucket {b.name}'s versions")
        if await _uploads(src, b.name) != await _uploads(dst, b.name):
            raise differ(f"bucket {b.name}'s multipart uploads")
    if await src.list_users() != await dst.list_users():
        raise differ("the list of users")
    for u in await src.list_users():
        if await src.list_keys(u.name) != await dst.list_keys(u.name):
            raise differ(f"user {u.name}'s access keys")
    if await src.chunk_refs() != await dst.chunk_refs():
        raise differ("the chunk reference counts")
    for cid in await src.chunk_refs():
        if await blobs.read(cid) != await local.read(cid):
            raise differ(f"chunk {cid}")
