"""ListBuckets, ListObjects (v1, v2) and ListObjectVersions results.

Layer: s3 protocol (pure; no I/O). The rules are ``kvbox.s3.xml``'s docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kvbox.s3.checksums import Algorithm, ChecksumType
from kvbox.s3.xml.base import (
    Builder,
    Owner,
    check_encoding,
    document,
    format_timestamp,
    quote_etag,
    serialize,
    url_encode,
    url_encoded,
    write_common_prefixes,
)

# --- ListBuckets ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketEntry:
    name: str
    creation_date: datetime
    region: str | None = None


@dataclass(frozen=True, slots=True)
class ListAllMyBucketsResult:
    """ListBuckets. ``continuation_token``/``prefix`` appear when the request paged."""

    buckets: Sequence[BucketEntry]
    owner: Owner
    continuation_token: str | None = None
    prefix: str | None = None

    def to_xml(self) -> bytes:
        b = document("ListAllMyBucketsResult")
        buckets = b.child("Buckets")
        for entry in self.buckets:
            e = buckets.child("Bucket")
            e.text("Name", entry.name)
            e.text("CreationDate", format_timestamp(entry.creation_date))
            e.text("BucketRegion", entry.region)
        b.owner("Owner", self.owner)
        b.text("ContinuationToken", self.continuation_token)
        b.text("Prefix", self.prefix)
        return serialize(b)


# --- ListObjects (v1, v2) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One ``<Contents>`` of a listing. ``etag`` bare (rendered quoted)."""

    key: str
    last_modified: datetime
    etag: str
    size: int
    storage_class: str = "STANDARD"
    owner: Owner | None = None
    checksum_algorithm: Algorithm | None = None
    checksum_type: ChecksumType | None = None


def _contents(b: Builder, entry: ObjectEntry, enc: bool) -> None:
    c = b.child("Contents")
    c.text("Key", url_encode(entry.key) if enc else entry.key)
    c.text("LastModified", format_timestamp(entry.last_modified))
    c.text("ETag", quote_etag(entry.etag))
    if entry.checksum_algorithm is not None:
        c.text("ChecksumAlgorithm", entry.checksum_algorithm.value)
    if entry.checksum_type is not None:
        c.text("ChecksumType", entry.checksum_type.value)
    c.text("Size", entry.size)
    c.owner("Owner", entry.owner)
    c.text("StorageClass", entry.storage_class)


@dataclass(frozen=True, slots=True)
class ListObjectsResult:
    """ListObjects (v1): marker paging; ``next_marker`` only when a delimiter was given."""

    name: str
    prefix: str
    marker: str
    max_keys: int
    is_truncated: bool
    contents: Sequence[ObjectEntry] = ()
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    next_marker: str | None = None
    encoding_type: str | None = None

    def to_xml(self) -> bytes:
        enc = check_encoding(self.encoding_type)
        b = document("ListBucketResult")
        b.text("Name", self.name)
        b.text("Prefix", url_encoded(self.prefix, enc))
        b.text("Marker", url_encoded(self.marker, enc))
        b.text("NextMarker", url_encoded(self.next_marker, enc))
        b.text("MaxKeys", self.max_keys)
        b.text("Delimiter", url_encoded(self.delimiter, enc))
        b.text("IsTruncated", self.is_truncated)
        b.text("EncodingType", self.encoding_type)
        for entry in self.contents:
            _contents(b, entry, enc)
        write_common_prefixes(b, self.common_prefixes, enc)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class ListObjectsV2Result:
    """ListObjectsV2. ``KeyCount`` is rendered as contents + common prefixes, as S3 counts."""

    name: str
    prefix: str
    max_keys: int
    is_truncated: bool
    contents: Sequence[ObjectEntry] = ()
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    encoding_type: str | None = None
    continuation_token: str | None = None
    next_continuation_token: str | None = None
    start_after: str | None = None

    @property
    def key_count(self) -> int:
        return len(self.contents) + len(self.common_prefixes)

    def to_xml(self) -> bytes:
        enc = check_encoding(self.encoding_type)
        b = document("ListBucketResult")
        b.text("Name", self.name)
        b.text("Prefix", url_encoded(self.prefix, enc))
        b.text("ContinuationToken", self.continuation_token)
        b.text("NextContinuationToken", self.next_continuation_token)
        b.text("StartAfter", url_encoded(self.start_after, enc))
        b.text("KeyCount", self.key_count)
        b.text("MaxKeys", self.max_keys)
        b.text("Delimiter", url_encoded(self.delimiter, enc))
        b.text("IsTruncated", self.is_truncated)
        b.text("EncodingType", self.encoding_type)
        for entry in self.contents:
            _contents(b, entry, enc)
        write_common_prefixes(b, self.common_prefixes, enc)
        return serialize(b)


# --- ListObjectVersions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionEntry:
    key: str
    version_id: str
    is_latest: bool
    last_modified: datetime
    etag: str
    size: int
    storage_class: str = "STANDARD"
    owner: Owner | None = None
    checksum_algorithm: Algorithm | None = None
    checksum_type: ChecksumType | None = None


@dataclass(frozen=True, slots=True)
class DeleteMarkerEntry:
    key: str
    version_id: str
    is_latest: bool
    last_modified: datetime
    owner: Owner | None = None


@dataclass(frozen=True, slots=True)
class ListVersionsResult:
    """ListObjectVersions: ``entries`` in listing order, versions and delete markers
    interleaved (key ascending, newest first within a key), as S3 returns them."""

    name: str
    prefix: str
    key_marker: str
    version_id_marker: str
    max_keys: int
    is_truncated: bool
    entries: Sequence[VersionEntry | DeleteMarkerEntry] = ()
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    next_key_marker: str | None = None
    next_version_id_marker: str | None = None
    encoding_type: str | None = None

    def to_xml(self) -> bytes:
        enc = check_encoding(self.encoding_type)
        b = document("ListVersionsResult")
        b.text("Name", self.name)
        b.text("Prefix", url_encoded(self.prefix, enc))
        b.text("KeyMarker", url_encoded(self.key_marker, enc))
        b.text("VersionIdMarker", self.version_id_marker)
        b.text("NextKeyMarker", url_encoded(self.next_key_marker, enc))
        b.text("NextVersionIdMarker", self.next_version_id_marker)
        b.text("MaxKeys", self.max_keys)
        b.text("Delimiter", url_encoded(self.delimiter, enc))
        b.text("IsTruncated", self.is_truncated)
        b.text("EncodingType", self.encoding_type)
        for entry in self.entries:
            if isinstance(entry, DeleteMarkerEntry):
                m = b.child("DeleteMarker")
                m.text("Key", url_encode(entry.key) if enc else entry.key)
                m.text("VersionId", entry.version_id)
                m.text("IsLatest", entry.is_latest)
                m.text("LastModified", format_timestamp(entry.last_modified))
                m.owner("Owner", entry.owner)
                continue
            v = b.child("Version")
            v.text("Key", url_encode(entry.key) if enc else entry.key)
            v.text("VersionId", entry.version_id)
            v.text("IsLatest", entry.is_latest)
            v.text("LastModified", format_timestamp(entry.last_modified))
            v.text("ETag", quote_etag(entry.etag))
            if entry.checksum_algorithm is not None:
                v.text("ChecksumAlgorithm", entry.checksum_algorithm.value)
            if entry.checksum_type is not None:
                v.text("ChecksumType", entry.checksum_type.value)
            v.text("Size", entry.size)
            v.text("StorageClass", entry.storage_class)
            v.owner("Owner", entry.owner)
        write_common_prefixes(b, self.common_prefixes, enc)
        return serialize(b)
