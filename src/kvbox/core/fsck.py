"""Consistency check between the metadata and the chunk files: ``kvbox fsck``.

Layer: core. Rules: works on any MetaStore + BlobStore pair through their Protocols, and
must only run while no server uses them (the CLI holds the data directory lock).

Two kinds of findings. **Notes** are leftovers a crash (``kill -9``, power loss) is
allowed to leave, because a chunk is written and fsync'd before the metadata that
references it commits; they cost disk space, never correctness, and leave the exit
status 0:

* orphan chunks: present, referenced by no version (a write -- a PUT, a part of a
  multipart upload, a BSET -- interrupted between its chunks and its commit, or a delete
  interrupted between its commit and the chunk's removal). A running server removes
  them itself (``kvbox.core.leftovers``); ``repair`` deletes them now.
* temporary files in ``chunks/tmp/`` (a chunk being written when the process died): the
  next start deletes them, and so does ``repair``.
* journal records not yet applied (an unclean stop): applied by the check itself, as by
  the next start.

**Damage** is what no crash can cause under the durability contract (a lost or changed
file, a bad disk): exit status 1 until repaired.

* missing chunks: referenced, absent. A read of such a version would fail midway;
  ``repair`` drops every version that references one, so no read can return partial
  data (the key then shows its previous version, or nothing), and aborts every
  multipart upload with a part that references one.
* corrupt chunks (only with ``verify``, which rehashes every referenced chunk): bytes no
  longer match the id; repaired like missing ones, and the bad file is deleted.
* damaged inline values (only with ``verify``, which reads every version): bytes that no
  longer match the checksum stored with them (``kvbox.core.integrity``); ``repair``
  drops those versions.
* the metadata storage's own check (``MetaStore.check_storage``: SQLite's
  ``integrity_check``, every page and index): a broken page is reported as it is;
  ``repair`` cannot mend it (restore the database from a backup, or rebuild it with
  ``sqlite3 meta.sqlite3 .recover``).
* counters: a bucket's stored object and byte counters (``STATS``) against its rows
  counted; ``repair`` sets the counters to the count.

Every version a damaged chunk or value belongs to is named (bucket, key, version id),
so an operator knows what to restore or re-upload.

Object lock has the last word here too (``kvbox.core.lock``): a version that a retention
or legal hold protects is never dropped, even with its bytes gone -- removing it would
erase the record that it existed, which is what the lock promises not to do. It is
reported (``kept_locked``) as damage that only a restore of its chunks from a backup can
fix, so fsck keeps exiting non-zero until then; its lost chunk ids are kept out of the
drop, and other versions that share them are dropped one by one.

Orphans are computed again after dropping versions, since dropped versions may leave
their other chunks unreferenced.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from kvbox.core import lock
from kvbox.core.blob import BlobStore
from kvbox.core.integrity import value_sound
from kvbox.core.meta import MetaStore
from kvbox.core.model import BucketStats, DeleteOp, ObjectVersion
from kvbox.errors import ObjectLocked, StorageError

#: Chunk ids / versions listed per category in ``render``; the counts are always whole.
RENDER_LIMIT = 50


@dataclass(frozen=True)
class Damaged:
    """One damaged version, named: what of it is damaged (``why``)."""

    version: ObjectVersion
    why: str

    def __str__(self) -> str:
        v = self.version
        return f"{v.bucket}/{v.key} version {v.version_id}: {self.why}"


@dataclass(frozen=True)
class Drift:
    """A bucket whose stored counters differ from its rows counted."""

    bucket: str
    stored: BucketStats
    counted: BucketStats

    def __str__(self) -> str:
        s, c = self.stored, self.counted
        return (
            f"bucket {self.bucket}: counters say {s.objects} objects, {s.bytes} bytes; "
            f"its rows hold {c.objects} objects, {c.bytes} bytes"
        )


@dataclass
class FsckReport:
    chunks_present: int = 0
    chunks_referenced: int = 0
    #: Notes (see the module docstring): leftovers a crash may leave.
    orphans: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    journal_applied: bool = False
    #: Damage.
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    verified: bool = False
    #: What the metadata storage's own check found wrong (a broken SQLite page).
    storage: list[str] = field(default_factory=list)
    #: Versions whose inline value fails its checksum (with ``verify``).
    damaged_values: list[Damaged] = field(default_factory=list)
    #: Versions that reference a missing or corrupt chunk: the same damage as
    #: ``missing``/``corrupt``, named by what it hurts.
    damaged_chunks: list[Damaged] = field(default_factory=list)
    #: Buckets whose counters drifted from their rows.
    counters: list[Drift] = field(default_factory=list)
    repaired: bool = False
    #: Versions removed by ``repair`` because they referenced missing or corrupt chunks.
    dropped: list[ObjectVersion] = field(default_factory=list)
    #: Multipart uploads aborted by ``repair`` for the same reason (a part's chunk).
    aborted_uploads: list[str] = field(default_factory=list)
    #: Chunk files deleted by ``repair`` (orphans found, plus any left by dropped
    #: versions, plus corrupt files).
    deleted_chunks: int = 0
    #: Versions ``repair`` did not drop although their bytes are lost, because object
    #: lock protects them (see the module docstring).
    kept_locked: list[ObjectVersion] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Damage found (notes are not problems)."""
        return (
            len(self.missing)
            + len(self.corrupt)
            + len(self.storage)
            + len(self.damaged_values)
            + len(self.counters)
        )

    @property
    def notes(self) -> int:
        """Leftovers of a crash found (each orphan chunk and temporary file)."""
        return len(self.orphans) + len(self.temp_files)

    @property
    def ok(self) -> bool:
        """Nothing is damaged any more: it never was, or ``repair`` fixed everything."""
        return (self.problems == 0 or self.repaired) and not self.kept_locked and not self.storage

    def render(self) -> str:
        lines = [
            f"chunks on disk: {self.chunks_present}, referenced by versions: "
            f"{self.chunks_referenced}",
        ]
        if self.journal_applied:
            lines.append(
                "note: the journal held writes an unclean stop left unapplied; they are applied now"
            )
        lines += _listing(
            "orphan chunks",
            "orphan",
            self.orphans,
            note="left by writes or deletes a crash interrupted; no version uses them. "
            "A running server deletes them after a safety delay; --repair deletes them now",
        )
        lines += _listing(
            "temporary files",
            "temp",
            self.temp_files,
            note="chunks being written when the server stopped; the next start "
            "deletes them, as does --repair",
        )
        if self.storage:
            lines += _listing(
                "metadata database", "damaged:", [s.replace("\n", "; ") for s in self.storage]
            )
            lines.append(
                "  (restore meta.sqlite3 from a backup, or rebuild it: "
                "sqlite3 meta.sqlite3 .recover | sqlite3 recovered.sqlite3)"
            )
        elif self.verified:
            lines.append("metadata database: ok (SQLite integrity_check)")
        lines += _listing("missing chunks", "missing", self.missing)
        if self.verified:
            lines += _listing("corrupt chunks", "corrupt", self.corrupt)
            lines += _listing("damaged inline values", "damaged", self.damaged_values)
        else:
            lines.append(
                "corrupt chunks, damaged inline values: not checked "
                "(use --verify to read every chunk and value)"
            )
        lines += _listing("versions with damaged chunks", "damaged", self.damaged_chunks)
        lines += _listing("counters that drifted from the rows", "drift:", self.counters)
        if self.repaired:
            lines.append(f"repair: deleted {self.deleted_chunks} chunk files")
            lines.append(
                f"repair: dropped {len(self.dropped)} versions whose bytes were lost or damaged"
            )
            for v in self.dropped[:RENDER_LIMIT]:
                lines.append(f"  dropped {v.bucket}/{v.key} version {v.version_id}")
            if len(self.dropped) > RENDER_LIMIT:
                lines.append(f"  ... and {len(self.dropped) - RENDER_LIMIT} more")
            if self.kept_locked:
                lines.append(
                    f"repair: kept {len(self.kept_locked)} versions whose bytes were lost or "
                    "damaged: object lock protects them; restore their chunks from a backup"
                )
                for v in self.kept_locked[:RENDER_LIMIT]:
                    lines.append(f"  kept {v.bucket}/{v.key} version {v.version_id}")
            if self.aborted_uploads:
                lines.append(
                    f"repair: aborted {len(self.aborted_uploads)} multipart uploads whose "
                    "parts' bytes were lost or damaged"
                )
                lines += [f"  aborted upload {u}" for u in self.aborted_uploads[:RENDER_LIMIT]]
        if self.problems == 0 and self.notes and self.repaired:
            lines.append(f"result: clean (removed {self.notes} leftovers of a crash)")
        elif self.problems == 0 and self.notes:
            lines.append(f"result: clean ({self.notes} notes: leftovers of a crash)")
        elif self.problems == 0:
            lines.append("result: clean")
        elif self.storage:
            lines.append(
                f"result: {self.problems} problems found; the metadata database is damaged "
                "(repair: not attempted: restore or rebuild the database first)"
            )
        elif self.repaired and self.kept_locked:
            lines.append(
                f"result: repaired what object lock allows; {len(self.kept_locked)} "
                "protected versions still have lost bytes"
            )
        elif self.repaired:
            lines.append(f"result: repaired {self.problems} problems")
        else:
            lines.append(f"result: {self.problems} problems found; run with --repair to fix")
        return "\n".join(lines)


def _listing(title: str, word: str, ids: Sequence[object], note: str | None = None) -> list[str]:
    if note is not None and not ids:
        return []
    head = f"note: {title}: {len(ids)} ({note})" if note is not None else f"{title}: {len(ids)}"
    out = [head]
    out += [f"  {word} {cid}" for cid in ids[:RENDER_LIMIT]]
    if len(ids) > RENDER_LIMIT:
        out.append(f"  ... and {len(ids) - RENDER_LIMIT} more")
    return out


async def fsck(meta: MetaStore, blobs: BlobStore, *, repair: bool, verify: bool) -> FsckReport:
    """Check (and with ``repair``, fix) ``meta`` against ``blobs``; both must be open."""
    refs = await meta.chunk_refs()
    present = {cid async for cid in blobs.list_chunks()}
    report = FsckReport(
        chunks_present=len(present),
        chunks_referenced=len(refs),
        orphans=sorted(present - refs.keys()),
        missing=sorted(refs.keys() - present),
        verified=verify,
    )
    try:
        report.storage = await meta.check_storage()
    except StorageError as exc:
        report.storage = [str(exc)]
    if verify:
        report.corrupt = [c for c in sorted(present & refs.keys()) if not await blobs.verify(c)]
    try:
        await _walk(meta, report, verify)
    except StorageError as exc:  # a broken page the walk ran into
        report.storage.append(f"reading the versions failed: {exc}")
    if not repair or report.storage:  # nothing read from a broken database is trusted
        return report
    await _drop_damaged_values(meta, report)
    lost = report.missing + report.corrupt
    keep: set[str] = set()
    if lost:
        report.kept_locked, keep, sharing = await _protected_damage(meta, set(lost))
        report.dropped = await meta.drop_versions_with_chunks([c for c in lost if c not in keep])
        for v in sharing:  # unprotected, but their lost chunks are a kept version's too
            (r,) = await meta.commit([DeleteOp(v.bucket, v.key, v.version_id)])
            report.dropped += r.removed  # (nothing if the drop above already took it)
        report.aborted_uploads = await meta.drop_uploads_with_chunks(lost)
    for cid in report.corrupt:
        if cid not in keep:  # a locked version's damaged bytes stay for a restore to read
            await blobs.delete(cid)
    still_referenced = await meta.chunk_refs()
    unreferenced = sorted((present - set(report.corrupt)) - still_referenced.keys())
    for cid in unreferenced:
        await blobs.delete(cid)
    report.deleted_chunks = len(unreferenced) + len(report.corrupt)
    for b in await meta.list_buckets():  # after the drops, which counted correctly
        stored, counted = await meta.recount(b.name)
        if stored != counted:
            await meta.correct_counts(
                b.name, counted.objects - stored.objects, counted.bytes - stored.bytes
            )
    report.repaired = True
    return report


async def _walk(meta: MetaStore, report: FsckReport, verify: bool) -> None:
    """Counters against rows in every bucket; with ``verify`` (or chunks missing) every
    version, to check its inline value and name the versions damaged chunks hurt."""
    lost = {c: "missing" for c in report.missing} | {c: "corrupt" for c in report.corrupt}
    for b in await meta.list_buckets():
        stored, counted = await meta.recount(b.name)
        if stored != counted:
            report.counters.append(Drift(b.name, stored, counted))
        if not verify and not lost:
            continue
        async for v in all_versions(meta, b.name):
            if verify and not value_sound(v):
                why = "the inline value does not match its checksum"
                report.damaged_values.append(Damaged(v, why))
            for cid in _ids(v):
                if cid in lost:
                    why = f"chunk {cid} is {lost[cid]}"
                    report.damaged_chunks.append(Damaged(v, why))


async def _drop_damaged_values(meta: MetaStore, report: FsckReport) -> None:
    """Drop the versions whose inline value is damaged, except those object lock
    protects (kept, as versions with lost chunks are)."""
    for d in report.damaged_values:
        v = d.version
        try:
            (r,) = await meta.commit([DeleteOp(v.bucket, v.key, v.s3_version_id)])
        except ObjectLocked:
            report.kept_locked.append(v)
            continue
        report.dropped += r.removed


async def _protected_damage(
    meta: MetaStore, lost: set[str]
) -> tuple[list[ObjectVersion], set[str], list[ObjectVersion]]:
    """Versions with lost chunks that object lock protects, their lost chunks, and the
    unprotected versions (in any bucket) that share one of those chunks. Reads every
    version only when some bucket has object lock."""
    buckets = await meta.list_buckets()
    if not any(lock.config_of(b) is not None for b in buckets):
        return [], set(), []
    now = time.time_ns()
    damaged: list[ObjectVersion] = []
    for b in buckets:
        damaged += [v async for v in all_versions(meta, b.name) if lost.intersection(_ids(v))]
    kept = [v for v in damaged if lock.removal_refusal(v, now, bypass_governance=False)]
    keep = {c for v in kept for c in _ids(v) if c in lost}
    kept_ids = {(v.bucket, v.key, v.version_id) for v in kept}
    sharing = [
        v
        for v in damaged
        if (v.bucket, v.key, v.version_id) not in kept_ids and keep.intersection(_ids(v))
    ]
    return kept, keep, sharing


def _ids(v: ObjectVersion) -> list[str]:
    return [c.chunk_id for c in v.chunks]


async def all_versions(meta: MetaStore, bucket: str) -> AsyncIterator[ObjectVersion]:
    """Every version of ``bucket``, a page at a time (fsck and the scrubber)."""
    key_marker = version_marker = ""
    while True:
        page = await meta.list_bucket_versions(bucket, "", key_marker, version_marker, 1000)
        for v in page:
            yield v
        if len(page) < 1000:
            return
        key_marker, version_marker = page[-1].key, page[-1].s3_version_id
