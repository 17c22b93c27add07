"""S3 multipart uploads: parts as chunks, and the checks before completion.

Layer: core. Rules: a part's bytes are always chunks, never inline, because on
completion the parts' chunks become the object's without being copied (the MetaStore
moves their references in the same transaction that commits the version, and re-checks
each part's ETag there, so a part re-uploaded meanwhile cannot slip in). The version
itself is committed by the ``Store``, through the one path every direct write takes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final

from kvbox.core.meta import MetaStore
from kvbox.core.model import EMPTY_ATTRS, Bucket, MultipartUpload, Part, VersionIdGenerator
from kvbox.core.store.chunks import Chunks
from kvbox.core.store.streams import write_stream
from kvbox.errors import EntityTooSmall, InvalidPart, NoSuchUpload

#: S3's smallest part but the last of a multipart upload.
MIN_PART_SIZE: Final = 5 * 1024 * 1024
#: Parts per ``MetaStore.list_parts`` page when completing (S3's own page size).
_PAGE: Final = 1000


class Multipart:
    """Uploads in progress over the Store's MetaStore and chunks (module docstring)."""

    def __init__(
        self, meta: MetaStore, chunks: Chunks, ids: VersionIdGenerator, chunk_size: int
    ) -> None:
        self.meta = meta
        self.chunks = chunks
        self._ids = ids
        self.chunk_size = chunk_size

    async def create(
        self, bucket: str, key: str, content_type: str, attrs: Mapping[str, str]
    ) -> MultipartUpload:
        """Start an upload; ``attrs`` are the object's, kept until completion."""
        upload = MultipartUpload(bucket, key, self._ids.new(), time.time_ns(), content_type, attrs)
        await self.meta.create_upload(upload)
        return upload

    async def get(self, bucket: str, key: str, upload_id: str) -> MultipartUpload:
        """The upload, which must belong to ``bucket``/``key`` (else ``NoSuchUpload``)."""
        up = await self.meta.get_upload(upload_id)
        if up is None or up.bucket != bucket or up.key != key:
            raise NoSuchUpload(upload_id)
        return up

    async def upload_part(
        self,
        bucket: Bucket,
        key: str,
        upload_id: str,
        part_number: int,
        source: AsyncIterator[bytes],
        attrs: Mapping[str, str] = EMPTY_ATTRS,
    ) -> Part:
        """Store one part from ``source`` as chunks (``streams.write_stream``)."""
        await self.get(bucket.name, key, upload_id)
        body = await write_stream(self.chunks, source, self.chunk_size, bucket=bucket)
        try:
            part = Part(part_number, body.etag, body.size, body.chunks, time.time_ns(), attrs)
            self.chunks.collect_later(await self.meta.put_part(upload_id, part))
            return part
        finally:
            self.chunks.release(list(body.chunks))

    async def choose(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> tuple[MultipartUpload, list[Part], str]:
        """The upload, the listed (part number, etag) parts and S3's multipart ETag
        (the MD5 of the parts' binary MD5s, then ``-N``).

        Each part must exist with that ETag (``InvalidPart``) and all but the last be at
        least ``MIN_PART_SIZE`` (``EntityTooSmall``); the order was checked by the caller
        (S3 does so before anything else).
        """
        up = await self.get(bucket, key, upload_id)
        stored: dict[int, Part] = {}
        marker = 0
        while True:
            page = await self.meta.list_parts(upload_id, marker, _PAGE)
            stored.update((p.part_number, p) for p in page)
            if len(page) < _PAGE:
                break
            marker = page[-1].part_number
        chosen: list[Part] = []
        for number, etag in parts:
            p = stored.get(number)
            if p is None or p.etag != etag:
                raise InvalidPart(f"part {number} was not uploaded or its ETag differs")
            chosen.append(p)
        for p in chosen[:-1]:
            if p.size < MIN_PART_SIZE:
                raise EntityTooSmall(f"part {p.part_number} is smaller than 5 MiB")
        md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
        etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
        return up, chosen, etag

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        await self.get(bucket, key, upload_id)
        self.chunks.collect_later(await self.meta.abort_upload(upload_id))

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, marker: int, limit: int
    ) -> tuple[MultipartUpload, list[Part]]:
        up = await self.get(bucket, key, upload_id)
        return up, await self.meta.list_parts(upload_id, marker, limit)
