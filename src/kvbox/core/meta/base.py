"""The write half of ``MetaStore``, once for every backend: a rules function per write.

Layer: core. Each write method names the ``rules`` function that decides it and hands
it to the backend's ``_write`` (one transaction around one call) or ``_commit`` (a
commit's ops, each isolated by ``MetaTxn.isolated``). A backend subclasses
``SharedRulesStore`` and implements those two, ``open``/``close`` and the reads; it never
re-implements what a write means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kvbox.core.meta import rules
from kvbox.core.meta.txn import MetaTxn
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    Bucket,
    Condition,
    MultipartUpload,
    ObjectVersion,
    Part,
    PutOp,
    Versioning,
    WriteOp,
    WriteResult,
)

T = TypeVar("T")


class SharedRulesStore:
    """``MetaStore``'s writes over ``_write``/``_commit`` (module docstring)."""

    async def _write(
        self,
        fn: Callable[[MetaTxn[Any]], T],
        ops: Sequence[WriteOp] = (),
        upload: str | None = None,
    ) -> T:
        """Run ``fn`` in one transaction and commit it durably; ``ops`` are the write ops
        it will apply (a hint for loading their keys up front), ``upload`` the multipart
        upload it changes (a hint for a backend that runs writes side by side: without
        either, ``fn`` may change anything). A ``KvboxError`` from ``fn`` means it
        changed nothing."""
        raise NotImplementedError

    async def _commit(self, ops: Sequence[WriteOp], journal_lsn: int | None) -> list[WriteResult]:
        """``rules.commit(txn, ops, journal_lsn)`` in one transaction, durably."""
        raise NotImplementedError

    # --- copying another store (kvbox migrate-to-cluster) -------------------------------

    async def restore_versions(self, versions: Sequence[ObjectVersion]) -> None:
        """``rules.restore`` of each version, in order, in one transaction (its keys
        announced as puts, so a backend that loads rows loads them all up front)."""
        batch = tuple(versions)

        def run(t: MetaTxn[Any]) -> None:
            for v in batch:
                rules.restore(t, v)

        await self._write(run, [PutOp(v) for v in batch])

    async def restore_user(self, user: User, keys: Sequence[AccessKey]) -> None:
        frozen = tuple(keys)
        await self._write(lambda t: rules.restore_user(t, user, frozen))

    # --- buckets ----------------------------------------------------------------------

    async def create_bucket(self, bucket: Bucket) -> bool:
        return await self._write(lambda t: rules.create_bucket(t, bucket))

    async def delete_bucket(self, name: str) -> tuple[str, ...] | None:
        return await self._write(lambda t: rules.delete_bucket(t, name))

    async def set_bucket_attrs(self, name: str, changes: Mapping[str, str | None]) -> Bucket:
        frozen = dict(changes)
        return await self._write(lambda t: rules.set_bucket_attrs(t, name, frozen))

    async def set_versioning(self, name: str, state: Versioning) -> None:
        state = Versioning(state)
        await self._write(lambda t: rules.set_versioning(t, name, state))

    # --- writes -----------------------------------------------------------------------

    async def commit(
        self, ops: Sequence[WriteOp], *, journal_lsn: int | None = None
    ) -> list[WriteResult]:
        if not ops and journal_lsn is None:
            return []
        return await self._commit(tuple(ops), journal_lsn)

    # --- multipart uploads ------------------------------------------------------------

    async def create_upload(self, upload: MultipartUpload) -> None:
        await self._write(lambda t: rules.create_upload(t, upload), upload=upload.upload_id)

    async def put_part(self, upload_id: str, part: Part) -> tuple[str, ...]:
        rules.check_chunk_ids(ref.chunk_id for ref in part.chunks)
        return await self._write(lambda t: rules.put_part(t, upload_id, part), upload=upload_id)

    async def complete_upload(
        self,
        upload_id: str,
        version: ObjectVersion,
        parts: Sequence[tuple[int, str]],
        condition: Condition | None = None,
    ) -> WriteResult:
        rules.check_version(version)
        wanted = tuple(parts)
        return await self._write(
            lambda t: rules.complete_upload(t, upload_id, version, wanted, condition),
            (PutOp(version, condition),),
            upload_id,
        )

    async def abort_upload(self, upload_id: str) -> tuple[str, ...]:
        return await self._write(lambda t: rules.abort_upload(t, upload_id), upload=upload_id)

    # --- chunks and counters (fsck repairs) -------------------------------------------

    async def correct_counts(self, bucket: str, objects: int, nbytes: int) -> None:
        await self._write(lambda t: rules.correct_counts(t, bucket, objects, nbytes))

    async def drop_versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        rules.check_chunk_ids(chunk_ids)
        ids = tuple(chunk_ids)
        return await self._write(lambda t: rules.drop_versions_with_chunks(t, ids))

    async def drop_uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        rules.check_chunk_ids(chunk_ids)
        ids = tuple(chunk_ids)
        return await self._write(lambda t: rules.drop_uploads_with_chunks(t, ids))

    # --- users and access keys --------------------------------------------------------

    async def create_user(self, name: str, created_ns: int) -> User:
        return await self._write(lambda t: rules.create_user(t, name, created_ns))

    async def set_user_disabled(self, name: str, disabled: bool) -> None:
        await self._write(lambda t: rules.set_user_disabled(t, name, disabled))

    async def delete_user(self, name: str) -> None:
        await self._write(lambda t: rules.delete_user(t, name))

    async def add_key(self, user: str, created_ns: int) -> AccessKey:
        return await self._write(lambda t: rules.add_key(t, user, created_ns))

    async def set_key_disabled(self, access_key: str, disabled: bool) -> None:
        await self._write(lambda t: rules.set_key_disabled(t, access_key, disabled))

    async def delete_key(self, access_key: str) -> None:
        await self._write(lambda t: rules.delete_key(t, access_key))

    async def rotate_key(self, access_key: str, created_ns: int) -> AccessKey:
        return await self._write(lambda t: rules.rotate_key(t, access_key, created_ns))
