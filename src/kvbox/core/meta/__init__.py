"""Metadata storage behind one narrow, async interface.

Layer: core. Two interfaces, one per side:

* ``MetaStore`` (here) is what the ``Store`` and the tools call: about forty async
  methods at S3's level. Its semantics are defined by the docstrings here and by
  ``tests/core/meta/test_conformance*.py``, never by one implementation.
* ``txn.MetaTxn`` is what a backend implements: storage access inside one transaction
  (read a key's newest and null versions, write and remove rows, count references).
  What every write *means* is decided once, in ``rules``, and ``base.SharedRulesStore``
  runs each ``MetaStore`` write as a rules function in one transaction of the backend.

Backends: ``sqlite`` (the embedded default: WAL, one writer thread, group commit),
``memory`` (tests and the ``--max-memory`` cache mode), and PostgreSQL later, which
implements ``MetaTxn`` in SQL and its reads, and shares everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    Bucket,
    BucketStats,
    Condition,
    MultipartUpload,
    ObjectVersion,
    Part,
    Versioning,
    WriteOp,
    WriteResult,
)


class MetaStore(Protocol):
    """Buckets, object versions and chunk reference counts.

    Durability: when ``commit`` returns, its effects are on stable storage (for durable
    implementations) and visible to every later read. Each op in one ``commit`` call is
    applied in order and atomically; an ``AtomicOp`` is all-or-nothing. Reads never see a
    half-applied op.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # buckets
    async def create_bucket(self, bucket: Bucket) -> bool:
        """Create ``bucket``; False (and no change) if the name exists."""
        ...

    async def get_bucket(self, name: str) -> Bucket | None: ...

    async def list_buckets(self) -> list[Bucket]: ...

    async def delete_bucket(self, name: str) -> tuple[str, ...] | None:
        """Delete a bucket that holds no versions (delete markers included), together
        with its multipart uploads in progress and their parts, in one transaction.

        S3 deletes a bucket whose only contents are unfinished uploads; doing it
        atomically means no upload can outlive its bucket and no part keeps a chunk.
        Returns the chunks the parts freed (sorted), None if the bucket does not exist;
        raises ``kvbox.errors.BucketNotEmpty`` (and then changes nothing).
        """
        ...

    async def set_bucket_attrs(self, name: str, changes: Mapping[str, str | None]) -> Bucket:
        """Set (or, for a None value, remove) bucket settings in ``Bucket.attrs``
        durably; returns the bucket as now stored. Raises ``NoSuchBucket``."""
        ...

    async def set_versioning(self, name: str, state: Versioning) -> None:
        """Raises ``NoSuchBucket``, or ``InvalidArgument`` for a way back to OFF."""
        ...

    # writes
    async def commit(
        self, ops: Sequence[WriteOp], *, journal_lsn: int | None = None
    ) -> list[WriteResult]:
        """Apply ``ops`` in order, durably; one result per op (see ``model.WriteResult``).

        ``journal_lsn``: the ops carry the journal's records up to this LSN
        (``kvbox.core.journal``); it is stored in the same transaction, so after a crash
        ``journal_lsn()`` says exactly which records still need applying. It never goes
        down (a smaller value leaves it as is), and is stored even when an op fails.

        Raises ``kvbox.errors.NoSuchBucket`` if an op names a missing bucket (and then
        nothing of that op is applied; other ops of the call still are), and
        ``kvbox.errors.InvalidArgument`` for an op that would give a key two versions with
        the same ``version_id`` or names a chunk id that is not 64 lowercase hex digits
        (same rule). The first such error is raised after the other ops were applied.

        The store, not the caller, decides ``is_null`` from the bucket's versioning state
        at commit time (ENABLED: false, else true) and assigns ``seq``; ``written`` holds
        the versions as stored. ``freed_chunks`` is sorted, and never lists a chunk that a
        later op of the same call referenced again. A caller cancelled while waiting does
        not undo the commit.
        """
        ...

    async def journal_lsn(self) -> int:
        """The highest ``journal_lsn`` any commit stored (0 if none)."""
        ...

    # multipart uploads

    async def create_upload(self, upload: MultipartUpload) -> None:
        """Record a new upload; raises ``NoSuchBucket``."""
        ...

    async def get_upload(self, upload_id: str) -> MultipartUpload | None: ...

    async def put_part(self, upload_id: str, part: Part) -> tuple[str, ...]:
        """Store ``part`` (replacing a part of the same number); the part holds one
        reference to each of its chunks. Returns the chunks freed by the replaced part
        (sorted). Raises ``NoSuchUpload``."""
        ...

    async def list_parts(self, upload_id: str, marker: int = 0, limit: int = 1000) -> list[Part]:
        """Parts numbered above ``marker``, ascending, at most ``limit``."""
        ...

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> list[MultipartUpload]:
        """Uploads of ``bucket`` with ``prefix``, ordered by (key, upload_id), after
        (``key_marker``, ``upload_id_marker``): with an empty upload id marker, every
        upload of ``key_marker`` itself is skipped too, as S3 does."""
        ...

    async def complete_upload(
        self,
        upload_id: str,
        version: ObjectVersion,
        parts: Sequence[tuple[int, str]],
        condition: Condition | None = None,
    ) -> WriteResult:
        """Atomically: check that each (part number, etag) of ``parts`` is a stored part
        (else ``InvalidPart``), commit ``version`` as ``commit([PutOp(version, condition)])``
        would (its chunks are the parts' chunks, which the caller lists in order), and
        remove the upload with all its parts. The parts' references move to the version,
        so no chunk is copied; chunks of parts left out are freed. A ``condition`` that
        does not hold (S3's If-Match / If-None-Match) changes nothing, the upload included:
        the result is ``ok=False`` with ``current``. Raises ``NoSuchUpload``."""
        ...

    async def abort_upload(self, upload_id: str) -> tuple[str, ...]:
        """Remove the upload and its parts; returns the freed chunks (sorted). Raises
        ``NoSuchUpload``."""
        ...

    # reads (a missing bucket reads as empty: None or [], except ``stats``)
    async def head(self, bucket: str, key: str) -> ObjectVersion | None:
        """The newest version of ``key`` (possibly a delete marker), or None."""
        ...

    async def head_many(self, bucket: str, keys: Sequence[str]) -> list[ObjectVersion | None]: ...

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        """A version by its ``version_id``; the string "null" finds the null version."""
        ...

    async def list_versions(self, bucket: str, key: str, limit: int = 1000) -> list[ObjectVersion]:
        """Versions of one key, newest first."""
        ...

    async def list_bucket_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        limit: int = 1000,
    ) -> list[ObjectVersion]:
        """Every version (delete markers included) of keys with ``prefix``: by key in
        UTF-8 byte order, newest first within a key, at most ``limit``, one consistent
        snapshot. Starts at ``key_marker``: with an empty ``version_id_marker`` (or one
        that names no version of that key) after all of its versions, else after that
        version (S3's ListObjectVersions markers; "null" names the null version)."""
        ...

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> list[ObjectVersion]:
        """Newest live versions of keys > ``start_after`` with ``prefix``, in UTF-8 byte
        order, at most ``limit``: an indexed range scan, never a full scan."""
        ...

    async def stats(self, bucket: str) -> BucketStats:
        """O(1) counters of the bucket; raises ``kvbox.errors.NoSuchBucket``."""
        ...

    # integrity (fsck --verify and the scrubber)
    async def check_storage(self) -> list[str]:
        """The backend's own consistency check of its storage (SQLite: ``PRAGMA
        integrity_check``): what it found wrong, empty when sound."""
        ...

    async def recount(self, bucket: str) -> tuple[BucketStats, BucketStats]:
        """The bucket's stored counters and the same counted from its rows (newest live
        versions), both as of one commit; raises ``kvbox.errors.NoSuchBucket``."""
        ...

    async def correct_counts(self, bucket: str, objects: int, nbytes: int) -> None:
        """Add ``objects`` and ``nbytes`` to the bucket's counters (``kvbox fsck --repair``
        of a drift ``recount`` found, with no server running)."""
        ...

    # chunks (fsck and garbage collection)
    async def chunk_refs(self) -> dict[str, int]:
        """Every chunk id referenced by any version, with its reference count."""
        ...

    async def chunk_ref_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        """Current reference counts of ``chunk_ids`` (0 or absent: unreferenced). Used by
        the service's chunk GC to re-check a freed chunk right before deleting it."""
        ...

    async def drop_versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        """Remove for good every version that references one of ``chunk_ids`` (fsck
        --repair of missing chunks); returns the removed versions."""
        ...

    async def drop_uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        """Abort every multipart upload with a part that references one of
        ``chunk_ids`` (fsck --repair: such an upload could only complete into an object
        with missing bytes); returns their upload ids, sorted."""
        ...

    # users and access keys (S3 identities besides root; see ``kvbox.core.meta.users``)
    async def create_user(self, name: str, created_ns: int) -> User:
        """Raises ``InvalidArgument`` for a bad or reserved name, ``UserExists``."""
        ...

    async def get_user(self, name: str) -> User | None: ...

    async def list_users(self) -> list[User]:
        """By name."""
        ...

    async def set_user_disabled(self, name: str, disabled: bool) -> None:
        """Raises ``NoSuchUser``. A disabled user's keys do not authenticate."""
        ...

    async def delete_user(self, name: str) -> None:
        """Delete the user and all its keys; raises ``NoSuchUser``, or ``UserOwnsBuckets``
        (a Conflict) while a bucket still belongs to it."""
        ...

    async def add_key(self, user: str, created_ns: int) -> AccessKey:
        """A new, enabled, generated key of ``user``; raises ``NoSuchUser``."""
        ...

    async def list_keys(self, user: str) -> list[AccessKey]:
        """Keys of ``user``, oldest first (an unknown user has none)."""
        ...

    async def get_key(self, access_key: str) -> AccessKey | None: ...

    async def lookup_key(self, access_key: str) -> tuple[str, str] | None:
        """(user, secret) for an enabled key of an enabled user, else None: the one
        question authentication asks."""
        ...

    async def set_key_disabled(self, access_key: str, disabled: bool) -> None:
        """Raises ``NoSuchAccessKey``."""
        ...

    async def delete_key(self, access_key: str) -> None:
        """Raises ``NoSuchAccessKey``."""
        ...

    async def rotate_key(self, access_key: str, created_ns: int) -> AccessKey:
        """Atomically add a new key for the same user and disable ``access_key``; returns
        the new key. Raises ``NoSuchAccessKey``."""
        ...
