"""fsck over the real stores (SQLite + local directory), the data directory lock, and
the ``kvbox fsck`` command.

Layer: tests/core. Rules: damage is done the way it happens in life (a chunk file
deleted or overwritten on disk, a stray file), never by editing the database; every
repair is followed by a second fsck that must come back clean.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kvbox.cli.main import main
from kvbox.core import lock
from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.datadir import LOCK_FILE, acquire_data_dir, lock_data_dir
from kvbox.core.fsck import fsck
from kvbox.core.lock import LockConfig
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.model import (
    Bucket,
    BucketStats,
    ChunkRef,
    MultipartUpload,
    ObjectVersion,
    Part,
    PutOp,
    VersionIdGenerator,
    Versioning,
)
from kvbox.errors import StorageError

IDS = VersionIdGenerator()


@dataclass
class Data:
    meta: SqliteMetaStore
    blobs: LocalDirBlobStore

    async def put(self, key: str, *pieces: bytes, bucket: str = "b") -> ObjectVersion:
        chunks = [await self.blobs.put(p) for p in pieces]
        v = ObjectVersion(
            bucket, key, IDS.new(), size=sum(c.size for c in chunks), chunks=tuple(chunks)
        )
        [r] = await self.meta.commit([PutOp(v)])
        return r.written[0]

    def path(self, ref: ChunkRef) -> Path:
        path = self.blobs.local_path(ref.chunk_id)
        assert path is not None
        return path


async def _open(root: Path) -> Data:
    meta = SqliteMetaStore(root / META_FILE)
    blobs = LocalDirBlobStore(root)
    await meta.open()
    await blobs.open()
    await meta.create_bucket(Bucket("b"))
    await meta.create_bucket(Bucket("v", versioning=Versioning.ENABLED))
    return Data(meta, blobs)


@pytest.fixture
async def data(tmp_path: Path) -> AsyncIterator[Data]:
    d = await _open(tmp_path)
    yield d
    await d.meta.close()
    await d.blobs.close()


async def test_clean_store(data: Data) -> None:
    await data.put("k", b"one", b"two")
    await data.put("j", b"two")
    report = await fsck(data.meta, data.blobs, repair=False, verify=True)
    assert report.ok and report.problems == 0
    assert (report.chunks_present, report.chunks_referenced) == (2, 2)
    text = report.render()
    assert "missing chunks: 0" in text and "orphan" not in text and "note" not in text
    assert text.endswith("result: clean")


async def test_orphans_reported_then_deleted(data: Data) -> None:
    v = await data.put("k", b"kept")
    orphan = await data.blobs.put(b"nobody wants me")
    report = await fsck(data.meta, data.blobs, repair=False, verify=False)
    # A leftover a crash may leave: a note, not damage.
    assert report.orphans == [orphan.chunk_id] and report.ok and report.problems == 0
    text = report.render()
    assert f"orphan {orphan.chunk_id}" in text and "note: orphan chunks: 1" in text
    assert text.endswith("result: clean (1 notes: leftovers of a crash)")
    assert await data.blobs.exists(orphan.chunk_id)  # not without --repair
    report = await fsck(data.meta, data.blobs, repair=True, verify=False)
    assert report.ok and report.deleted_chunks == 1 and report.dropped == []
    assert not await data.blobs.exists(orphan.chunk_id)
    assert await data.blobs.read(v.chunks[0].chunk_id) == b"kept"
    assert (await fsck(data.meta, data.blobs, repair=False, verify=True)).problems == 0


async def test_missing_chunk_drops_the_version(data: Data) -> None:
    v = await data.put("big", b"part-1", b"part-2", b"part-3")
    other = await data.put("other", b"part-2")  # shares a chunk with big
    data.path(v.chunks[0]).unlink()
    report = await fsck(data.meta, data.blobs, repair=False, verify=False)
    assert report.missing == [v.chunks[0].chunk_id] and not report.ok
    assert "missing chunks: 1" in report.render()
    assert await data.meta.head("b", "big") == v  # nothing changes without --repair
    report = await fsck(data.meta, data.blobs, repair=True, verify=False)
    assert report.ok and [d.version_id for d in report.dropped] == [v.version_id]
    assert "dropped b/big" in report.render()
    assert await data.meta.head("b", "big") is None
    assert await data.meta.head("b", "other") == other
    # part-3 lost its only reference and went; part-2 is still used by "other".
    assert not await data.blobs.exists(v.chunks[2].chunk_id)
    assert await data.blobs.read(other.chunks[0].chunk_id) == b"part-2"
    assert await data.meta.chunk_refs() == {other.chunks[0].chunk_id: 1}
    assert (await fsck(data.meta, data.blobs, repair=False, verify=True)).problems == 0


async def test_missing_chunk_in_versioned_bucket_restores_previous(data: Data) -> None:
    old = await data.put("k", b"old bytes", bucket="v")
    new = await data.put("k", b"new bytes", bucket="v")
    data.path(new.chunks[0]).unlink()
    report = await fsck(data.meta, data.blobs, repair=True, verify=False)
    assert [d.version_id for d in report.dropped] == [new.version_id]
    assert await data.meta.head("v", "k") == old
    assert await data.meta.stats("v") == BucketStats(1, old.size)


async def test_repair_never_drops_a_version_object_lock_protects(data: Data) -> None:
    """Bytes lost under a retention or legal hold: the version stays (reported as kept,
    fsck still failing until a restore), unprotected versions go as usual, and one
    sharing the protected version's lost chunk goes too without taking the chunk id."""
    await data.meta.create_bucket(
        Bucket("l", versioning=Versioning.ENABLED, attrs={lock.CONFIG_ATTR: LockConfig().to_attr()})
    )
    until = time.time_ns() + 30 * lock.NS_PER_DAY
    retained = lock.VersionLock(lock.Retention(lock.Mode.COMPLIANCE, until)).attrs()
    held = lock.VersionLock(legal_hold=True).attrs()
    chunk = await data.blobs.put(b"shared bytes")
    other = await data.blobs.put(b"held bytes")
    versions = []
    for bucket, key, refs, attrs in (
        ("l", "retained", (chunk,), retained),
        ("l", "held", (other,), held),
        ("l", "free", (other,), {}),
        ("b", "elsewhere", (chunk,), {}),
    ):
        v = ObjectVersion(bucket, key, IDS.new(), size=12, chunks=refs, attrs=attrs)
        [r] = await data.meta.commit([PutOp(v)])
        versions.append(r.written[0])
    data.path(chunk).unlink()
    (data.path(other)).write_bytes(b"rotten bytes")  # corrupt: caught by --verify
    report = await fsck(data.meta, data.blobs, repair=True, verify=True)
    assert sorted(v.key for v in report.kept_locked) == ["held", "retained"]
    assert sorted(v.key for v in report.dropped) == ["elsewhere", "free"]
    assert not report.ok and "restore their chunks from a backup" in report.render()
    for v in versions[:2]:
        assert await data.meta.get_version("l", v.key, v.version_id) == v
    assert data.path(other).exists()  # a locked version's damaged bytes are not deleted
    again = await fsck(data.meta, data.blobs, repair=True, verify=True)
    assert not again.ok and len(again.kept_locked) == 2 and again.dropped == []


async def test_missing_part_chunk_aborts_the_upload(data: Data) -> None:
    """A part whose bytes are gone could only complete into a broken object: repair
    aborts its upload (and keeps uploads whose parts are whole)."""
    lost = await data.blobs.put(b"part one of a doomed upload")
    kept = await data.blobs.put(b"a part that is fine")
    for upload_id, ref in (("up-doomed", lost), ("up-fine", kept)):
        await data.meta.create_upload(MultipartUpload("b", "big", upload_id))
        await data.meta.put_part(upload_id, Part(1, "e" * 32, ref.size, (ref,)))
    data.path(lost).unlink()
    report = await fsck(data.meta, data.blobs, repair=False, verify=False)
    assert report.missing == [lost.chunk_id]
    report = await fsck(data.meta, data.blobs, repair=True, verify=False)
    assert report.aborted_uploads == ["up-doomed"] and report.ok
    assert "aborted upload up-doomed" in report.render()
    assert await data.meta.get_upload("up-doomed") is None
    assert await data.meta.get_upload("up-fine") is not None
    assert (await fsck(data.meta, data.blobs, repair=False, verify=True)).problems == 0


async def test_verify_finds_and_repairs_corruption(data: Data) -> None:
    v = await data.put("k", b"x" * 5000)
    keep = await data.put("j", b"fine")
    path = data.path(v.chunks[0])
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    assert (await fsck(data.meta, data.blobs, repair=False, verify=False)).problems == 0
    report = await fsck(data.meta, data.blobs, repair=False, verify=True)
    assert report.corrupt == [v.chunks[0].chunk_id]
    assert f"corrupt {v.chunks[0].chunk_id}" in report.render()
    report = await fsck(data.meta, data.blobs, repair=True, verify=True)
    assert report.ok and [d.key for d in report.dropped] == ["k"]
    assert not path.exists()
    assert await data.meta.head("b", "k") is None
    assert await data.meta.head("b", "j") == keep
    assert (await fsck(data.meta, data.blobs, repair=False, verify=True)).problems == 0


def _flip_in_file(path: Path, needle: bytes) -> None:
    """Change one byte of ``needle`` (found once) in a stopped store's file, as a bad
    disk would."""
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at >= 0 and raw.find(needle, at + 1) < 0
    raw[at] ^= 0x20
    path.write_bytes(bytes(raw))


async def test_verify_names_damaged_inline_values_and_repair_drops_them(
    tmp_path: Path,
) -> None:
    d = await _open(tmp_path)
    for key, value in (("a", b"hello-value-a"), ("b", b"hello-value-b")):
        await d.meta.commit([PutOp(ObjectVersion("b", key, IDS.new(), len(value), inline=value))])
    old = b"hello-old-version"
    [r] = await d.meta.commit([PutOp(ObjectVersion("v", "k", IDS.new(), len(old), inline=old))])
    hurt = r.written[0]
    new = b"hello-new"
    await d.meta.commit([PutOp(ObjectVersion("v", "k", IDS.new(), len(new), inline=new))])
    await d.meta.close()
    _flip_in_file(tmp_path / META_FILE, b"hello-value-b")
    _flip_in_file(tmp_path / META_FILE, old)
    await d.meta.open()
    try:
        assert (await fsck(d.meta, d.blobs, repair=False, verify=False)).problems == 0
        report = await fsck(d.meta, d.blobs, repair=False, verify=True)
        named = sorted((x.version.bucket, x.version.key) for x in report.damaged_values)
        assert named == [("b", "b"), ("v", "k")] and not report.ok
        text = report.render()
        assert "damaged inline values: 2" in text
        assert (
            f"damaged v/k version {hurt.version_id}: the inline value does not match its "
            "checksum" in text
        )
        assert "metadata database: ok" in text
        report = await fsck(d.meta, d.blobs, repair=True, verify=True)
        assert report.ok and len(report.dropped) == 2
        assert await d.meta.head("b", "b") is None
        assert (await d.meta.head("v", "k")) is not None  # the sound newer version stays
        assert await d.meta.stats("b") == BucketStats(1, 13)
        assert (await fsck(d.meta, d.blobs, repair=False, verify=True)).problems == 0
    finally:
        await d.meta.close()
        await d.blobs.close()


async def test_counters_checked_against_the_rows_and_corrected(tmp_path: Path) -> None:
    """The drift a disk-full episode left before the writer's fix (see
    tests/core/meta/test_sqlite.py, which reproduces its cause): made here the only way
    it can be made now, in the counters' row."""
    import sqlite3

    d = await _open(tmp_path)
    await d.put("k1", b"one")
    await d.put("k2", b"two!")
    await d.meta.close()
    conn = sqlite3.connect(tmp_path / META_FILE)
    conn.execute("UPDATE buckets SET objects = objects - 1, bytes = bytes + 7 WHERE name = 'b'")
    conn.commit()
    conn.close()
    await d.meta.open()
    try:
        report = await fsck(d.meta, d.blobs, repair=False, verify=False)
        assert [str(x) for x in report.counters] == [
            "bucket b: counters say 1 objects, 14 bytes; its rows hold 2 objects, 7 bytes"
        ]
        assert not report.ok and "counters that drifted from the rows: 1" in report.render()
        report = await fsck(d.meta, d.blobs, repair=True, verify=False)
        assert report.ok and await d.meta.stats("b") == BucketStats(2, 7)
        assert (await fsck(d.meta, d.blobs, repair=False, verify=True)).problems == 0
    finally:
        await d.meta.close()
        await d.blobs.close()


def test_cli_reports_a_broken_database_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage over one page of the versions table (server stopped): fsck --verify says
    what SQLite's own check says and exits 1; the database is not touched."""

    async def fill() -> None:
        d = await _open(tmp_path)
        for i in range(40):
            ops = [
                PutOp(ObjectVersion("b", f"key-{i:03}-{j:03}", IDS.new(), 500, inline=b"v" * 500))
                for j in range(50)
            ]
            await d.meta.commit(ops)
        await d.meta.close()
        await d.blobs.close()

    asyncio.run(fill())
    db = tmp_path / META_FILE
    raw = bytearray(db.read_bytes())
    page = 4096
    middle = (len(raw) // page // 2) * page
    raw[middle + 8 : middle + page - 8] = os.urandom(page - 16)
    db.write_bytes(bytes(raw))
    status = main(["fsck", "--data", str(tmp_path), "--verify"])
    out = capsys.readouterr()
    assert status == 1, out
    text = out.out + out.err
    assert "damaged" in text and ("malformed" in text or "integrity" in text.lower())
    assert "Traceback" not in text
    # --repair changes nothing in a database it cannot read through.
    assert main(["fsck", "--data", str(tmp_path), "--verify", "--repair"]) == 1
    assert "repair: not attempted" in capsys.readouterr().out
    assert db.read_bytes() == bytes(raw)


# --- the data directory lock --------------------------------------------------------------


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    with lock_data_dir(tmp_path) as held:
        assert held.held
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(
            StorageError, match=f"in use by another kvbox process \\(pid {os.getpid()}"
        ):
            acquire_data_dir(tmp_path)
    again = acquire_data_dir(tmp_path)
    again.release()
    again.release()
    assert not again.held


def test_lock_needs_an_existing_dir_unless_asked_to_create(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such data directory"):
        acquire_data_dir(tmp_path / "nope")
    with lock_data_dir(tmp_path / "new" / "dir", create=True):
        assert (tmp_path / "new" / "dir" / LOCK_FILE).exists()


# --- the command ----------------------------------------------------------------------------


def _prepare(root: Path) -> str:
    """A data dir with one value whose middle chunk file was lost; returns its chunk id."""

    async def go() -> str:
        d = await _open(root)
        v = await d.put("big", b"a" * 100, b"b" * 100, b"c" * 100)
        await d.meta.close()
        d.path(v.chunks[1]).unlink()
        return v.chunks[1].chunk_id

    return asyncio.run(go())


def test_cli_reports_repairs_and_exits_by_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lost = _prepare(tmp_path)
    assert main(["fsck", "--data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"missing {lost}" in out and "--repair" in out
    assert main(["fsck", "--data", str(tmp_path), "--repair", "--verify"]) == 0
    assert "dropped b/big" in capsys.readouterr().out
    assert main(["fsck", "--data", str(tmp_path), "--verify"]) == 0
    assert "result: clean" in capsys.readouterr().out
    leftovers = [p for p in (tmp_path / "chunks").rglob("*") if p.is_file()]
    assert leftovers == []


def test_cli_data_dir_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _prepare(tmp_path)
    monkeypatch.setenv("KVBOX_DATA", str(tmp_path))
    assert main(["fsck"]) == 1
    assert "missing chunks: 1" in capsys.readouterr().out


def test_cli_refuses_a_locked_or_foreign_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _prepare(tmp_path)
    with lock_data_dir(tmp_path):
        assert main(["fsck", "--data", str(tmp_path), "--repair"]) == 2
        assert "in use by another kvbox process" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["fsck", "--data", str(empty)]) == 2
    assert "not a data directory" in capsys.readouterr().err
    assert main(["fsck", "--data", str(tmp_path / "absent")]) == 2
    assert "no such data directory" in capsys.readouterr().err
