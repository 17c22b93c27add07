"""One conformance suite for every BlobStore implementation.

Layer: tests/core/blob. Rules: each test runs against every store through the ``blobs``
fixture. Damage that no public call can cause (a corrupted file, a crash leftover) is
made by the fixture's ``Harness`` with whatever that store's storage is; a store without
such storage skips with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cluster._nodes import BlobNodeProcess
from kvbox.auth.cluster import load_secret
from kvbox.cluster.store import ClusterBlobStore
from kvbox.core.blob import BlobStore
from kvbox.core.blob.localdir import CRC_XATTR, LocalDirBlobStore
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.model import Bucket
from kvbox.core.pg import PgUrl
from kvbox.errors import ChunkMissing, DataDamaged, InvalidArgument, StorageError


class Harness:
    def __init__(
        self, kind: str, root: Path, cluster: tuple[str, list[BlobNodeProcess]] | None = None
    ) -> None:
        self.kind = kind
        self.root = root
        self.cluster = cluster

    async def open(self) -> BlobStore:
        store: BlobStore
        if self.kind == "localdir":
            store = LocalDirBlobStore(self.root)
        elif self.kind == "memory":
            store = MemoryBlobStore()
        else:
            store = await self._fresh_cluster()
        await store.open()
        return store

    async def _fresh_cluster(self) -> ClusterBlobStore:
        """The session's nodes, emptied: no chunk files, no chunk rows (the nodes stay
        registered). Deletes are immediate (gc_delay 0), as one gateway's may be."""
        assert self.cluster is not None
        url, nodes = self.cluster
        for n in nodes:
            for d in (n.data / "chunks").iterdir():
                if d.name != "tmp":
                    shutil.rmtree(d)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("TRUNCATE kvbox.blob_chunks, kvbox.chunk_replicas")
        finally:
            await conn.close()
        secret = load_secret(nodes[0].secret_file.read_bytes(), "test")
        return ClusterBlobStore(PgUrl.parse(url), secret, replicas=3, gc_delay=0)

    def corrupt(self, store: BlobStore, chunk_id: str) -> None:
        if self.cluster is not None:  # every replica: a cluster serves any sound one
            for n in self.cluster[1]:
                if n.chunk_file(chunk_id).exists():
                    self._flip(n.chunk_file(chunk_id))
            return
        path = store.local_path(chunk_id)
        if path is None:
            assert isinstance(store, MemoryBlobStore)
            store._chunks[chunk_id] = b"rotten"
        else:
            self._flip(path)

    @staticmethod
    def _flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))

    def temp_files(self) -> list[Path]:
        if self.cluster is not None:
            return [p for n in self.cluster[1] for p in n.temp_files()]
        if self.kind != "localdir":
            pytest.skip("the memory store has no temp files")
        return list((self.root / "chunks" / "tmp").iterdir())


@pytest.fixture(params=["localdir", "memory", "cluster"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    cluster = request.getfixturevalue("blob_cluster") if request.param == "cluster" else None
    return Harness(request.param, tmp_path / "data", cluster)


@pytest.fixture
async def blobs(harness: Harness) -> AsyncIterator[BlobStore]:
    store = await harness.open()
    yield store
    await store.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def listed(store: BlobStore) -> list[str]:
    return [c async for c in store.list_chunks()]


async def test_put_read_exists_delete(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 40
    ref = await blobs.put(data)
    assert ref.chunk_id == sha(data) and ref.size == len(data)
    assert await blobs.exists(ref.chunk_id)
    assert await blobs.read(ref.chunk_id) == data
    assert await blobs.verify(ref.chunk_id)
    assert await listed(blobs) == [ref.chunk_id]
    await blobs.delete(ref.chunk_id)
    assert not await blobs.exists(ref.chunk_id)
    assert await listed(blobs) == []
    await blobs.delete(ref.chunk_id)  # already gone: no error
    with pytest.raises(ChunkMissing):
        await blobs.read(ref.chunk_id)
    assert not await blobs.verify(ref.chunk_id)


async def test_read_ranges(blobs: BlobStore) -> None:
    data = bytes(range(100))
    ref = await blobs.put(data)
    cid = ref.chunk_id
    assert await blobs.read(cid, 10, 5) == data[10:15]
    assert await blobs.read(cid, 90) == data[90:]
    assert await blobs.read(cid, 95, 50) == data[95:]
    assert await blobs.read(cid, 0, 0) == b""
    assert await blobs.read(cid, 100) == b""
    assert await blobs.read(cid, 500, 10) == b""
    with pytest.raises(InvalidArgument):
        await blobs.read(cid, -1)
    with pytest.raises(InvalidArgument):
        await blobs.read(cid, 0, -2)


async def test_streamed_writer_equals_put(blobs: BlobStore) -> None:
    pieces = [b"alpha", b"", b"beta" * 1000, bytes(70_000)]
    w = blobs.writer()
    for p in pieces:
        await w.write(p)
    assert await listed(blobs) == []  # nothing visible before commit
    ref = await w.commit()
    whole = b"".join(pieces)
    assert ref.chunk_id == sha(whole) and ref.size == len(whole)
    assert await blobs.read(ref.chunk_id) == whole
    with pytest.raises(StorageError):
        await w.write(b"more")
    with pytest.raises(StorageError):
        await w.commit()
    await w.abort()  # harmless after commit
    assert await blobs.read(ref.chunk_id) == whole


async def test_a_bucket_is_a_placement_hint_only(blobs: BlobStore) -> None:
    """``writer(bucket)``: the same chunk, id and bytes whichever bucket (and R) it is
    written for, and one chunk for identical bytes of two buckets."""
    data = b"written for two buckets " * 100
    refs = []
    for bucket in (Bucket("one", attrs={"replicas": "1"}), Bucket("other"), None):
        w = blobs.writer(bucket)
        await w.write(data)
        refs.append(await w.commit())
    assert refs == [refs[0]] * 3 and refs[0].chunk_id == sha(data)
    assert await blobs.read(refs[0].chunk_id) == data
    assert await listed(blobs) == [refs[0].chunk_id]


async def test_abort_leaves_nothing(blobs: BlobStore, harness: Harness) -> None:
    w = blobs.writer()
    await w.write(b"doomed" * 1000)
    await w.abort()
    await w.abort()
    assert await listed(blobs) == []
    assert not await blobs.exists(sha(b"doomed" * 1000))
    assert harness.temp_files() == []


async def test_empty_chunk(blobs: BlobStore) -> None:
    ref = await blobs.put(b"")
    assert ref.chunk_id == sha(b"") and ref.size == 0
    assert await blobs.read(ref.chunk_id) == b""
    w = blobs.writer()
    assert await w.commit() == ref
    assert await listed(blobs) == [ref.chunk_id]


async def test_identical_content_is_stored_once(blobs: BlobStore, harness: Harness) -> None:
    a = await blobs.put(b"same bytes")
    w = blobs.writer()
    await w.write(b"same ")
    await w.write(b"bytes")
    b = await w.commit()
    assert a == b
    assert await listed(blobs) == [a.chunk_id]
    if harness.kind != "memory":
        assert harness.temp_files() == []


async def test_concurrent_puts(blobs: BlobStore) -> None:
    datas = [str(i % 20).encode() * 500 for i in range(100)]
    refs = await asyncio.gather(*(blobs.put(d) for d in datas))
    assert [r.chunk_id for r in refs] == [sha(d) for d in datas]
    assert sorted(await listed(blobs)) == sorted({sha(d) for d in datas})
    for r, d in zip(refs, datas, strict=True):
        assert await blobs.read(r.chunk_id) == d


async def test_list_is_sorted_and_complete(blobs: BlobStore) -> None:
    ids = {(await blobs.put(str(i).encode())).chunk_id for i in range(300)}
    got = await listed(blobs)
    assert got == sorted(ids)


async def test_verify_detects_corruption(blobs: BlobStore, harness: Harness) -> None:
    good = await blobs.put(b"good bytes")
    bad = await blobs.put(b"soon to rot")
    harness.corrupt(blobs, bad.chunk_id)
    assert await blobs.verify(good.chunk_id)
    assert not await blobs.verify(bad.chunk_id)
    assert await blobs.exists(bad.chunk_id)  # present, just wrong


async def test_a_damaged_chunk_is_never_read(blobs: BlobStore, harness: Harness) -> None:
    """Every read checks the whole chunk first, ranges included: damage is an error
    naming the chunk, never different bytes."""
    good = await blobs.put(b"good bytes" * 1000)
    bad = await blobs.put(b"soon to rot" * 1000)
    harness.corrupt(blobs, bad.chunk_id)
    for offset, length in ((0, -1), (5000, 10), (0, 1)):
        with pytest.raises(DataDamaged) as caught:
            await blobs.read(bad.chunk_id, offset, length)
        assert caught.value.chunk_id == bad.chunk_id
        assert bad.chunk_id in str(caught.value) and str(caught.value).startswith("damaged: ")
    assert await blobs.read(good.chunk_id, 10, 5) == (b"good bytes" * 1000)[10:15]
    assert await blobs.read(good.chunk_id) == b"good bytes" * 1000


async def test_ids_that_are_not_content_addresses(blobs: BlobStore) -> None:
    for bad in ("../../etc/passwd", "AB" * 32, "", "a" * 63):
        assert not await blobs.exists(bad)
        assert not await blobs.verify(bad)
        assert blobs.local_path(bad) is None
        await blobs.delete(bad)
        with pytest.raises(ChunkMissing):
            await blobs.read(bad)


# --- localdir specifics --------------------------------------------------------------------


async def test_localdir_layout_and_local_path(tmp_path: Path) -> None:
    store = LocalDirBlobStore(tmp_path)
    await store.open()
    ref = await store.put(b"hello")
    path = store.local_path(ref.chunk_id)
    cid = ref.chunk_id
    assert path == tmp_path / "chunks" / cid[:2] / cid[2:4] / cid
    assert path.read_bytes() == b"hello"


async def test_localdir_open_removes_crash_leftovers(tmp_path: Path) -> None:
    store = LocalDirBlobStore(tmp_path)
    await store.open()
    kept = await store.put(b"kept")
    leftover = tmp_path / "chunks" / "tmp" / "half-written"
    leftover.write_bytes(b"partial")
    # Stray files that are not chunks are never listed.
    (tmp_path / "chunks" / "ab").mkdir(exist_ok=True)
    (tmp_path / "chunks" / "ab" / "README").write_text("not a chunk")
    reopened = LocalDirBlobStore(tmp_path)
    await reopened.open()
    assert not leftover.exists()
    assert await listed(reopened) == [kept.chunk_id]


async def test_localdir_damaged_copy_is_replaced_on_put(tmp_path: Path) -> None:
    """Writing the same bytes again heals a damaged file, truncated or (the case a size
    check cannot see) changed in place."""
    store = LocalDirBlobStore(tmp_path)
    await store.open()
    ref = await store.put(b"precious bytes")
    path = store.local_path(ref.chunk_id)
    assert path is not None
    for damage in (b"prec", b"Precious bytes"):
        path.write_bytes(damage)
        assert not await store.verify(ref.chunk_id)
        again = await store.put(b"precious bytes")
        assert again == ref
        assert await store.verify(ref.chunk_id)
        assert await store.read(ref.chunk_id) == b"precious bytes"


async def test_localdir_checksum_attribute(tmp_path: Path) -> None:
    """Reads check a chunk's CRC32C attribute and fall back to its address: a missing
    or wrong attribute on a sound file is no damage (and is rewritten), changed bytes
    under a right attribute are."""
    store = LocalDirBlobStore(tmp_path)
    await store.open()
    data = os.urandom(3 * 1024 * 1024 + 5)
    ref = await store.put(data)
    path = store.local_path(ref.chunk_id)
    assert path is not None
    if not store.xattrs:
        pytest.skip(f"{tmp_path} keeps no user xattrs: every check hashes the address")
    crc = os.getxattr(path, CRC_XATTR)
    assert len(crc) == 4
    os.removexattr(path, CRC_XATTR)  # a chunk written before the attribute existed
    assert await store.read(ref.chunk_id) == data
    assert os.getxattr(path, CRC_XATTR) == crc
    os.setxattr(path, CRC_XATTR, b"\0\0\0\0")  # a damaged attribute, sound bytes
    fd = os.open(path, os.O_RDONLY)
    try:
        store.check_file(fd, ref.chunk_id)
    finally:
        os.close(fd)
    assert os.getxattr(path, CRC_XATTR) == crc
    with open(path, "r+b") as f:  # now the bytes: the attribute is right, they are not
        f.seek(2_000_000)
        f.write(b"\xff\xfe")
    with pytest.raises(DataDamaged):
        await store.read(ref.chunk_id, 10, 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(DataDamaged):
            store.check_file(fd, ref.chunk_id)
    finally:
        os.close(fd)
    assert not await store.verify(ref.chunk_id)


async def test_localdir_survives_a_new_instance(tmp_path: Path) -> None:
    store = LocalDirBlobStore(tmp_path)
    await store.open()
    ref = await store.put(b"durable")
    other = LocalDirBlobStore(tmp_path)
    await other.open()
    assert await other.read(ref.chunk_id) == b"durable"
