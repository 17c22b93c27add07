"""Multipart upload bodies: initiate, complete, ListParts, ListMultipartUploads.

Layer: s3 protocol (pure; no I/O). The rules are ``kvbox.s3.xml``'s docstring.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kvbox.s3.checksums import Algorithm, ChecksumType
from kvbox.s3.errors import S3Error
from kvbox.s3.xml.base import (
    CHECKSUM_BY_ELEMENT,
    MAX_PARTS,
    MAX_XML_BODY,
    Owner,
    check_encoding,
    children_of,
    document,
    format_timestamp,
    malformed,
    no_checksums,
    parse_body,
    parse_checksums,
    parse_int,
    quote_etag,
    required_text,
    serialize,
    url_encode,
    url_encoded,
    write_common_prefixes,
)

# --- multipart -----------------------------------------------------------------------

#: What a CompleteMultipartUpload <Part> may hold.
_PART_ELEMENTS = frozenset({"PartNumber", "ETag", *CHECKSUM_BY_ELEMENT})


@dataclass(frozen=True, slots=True)
class InitiateMultipartUploadResult:
    bucket: str
    key: str
    upload_id: str

    def to_xml(self) -> bytes:
        b = document("InitiateMultipartUploadResult")
        b.text("Bucket", self.bucket)
        b.text("Key", self.key)
        b.text("UploadId", self.upload_id)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload body. ``etag`` is kept as sent
    (quotes stripped), the handler compares it with the stored part's."""

    part_number: int
    etag: str
    checksums: Mapping[Algorithm, str] = field(default_factory=no_checksums)


@dataclass(frozen=True, slots=True)
class CompleteMultipartUpload:
    """The CompleteMultipartUpload request body.

    Parsing checks what S3 checks before looking at any stored part: 1..10,000 parts,
    each with a PartNumber in 1..10,000 and an ETag (else MalformedXML), in strictly
    ascending order (else InvalidPartOrder).
    """

    parts: tuple[CompletedPart, ...]

    @classmethod
    def from_xml(cls, body: bytes) -> CompleteMultipartUpload:
        root = parse_body(body, "CompleteMultipartUpload", MAX_XML_BODY)
        parts: list[CompletedPart] = []
        for _, el in children_of(root, ("Part",)):
            pairs = children_of(el, _PART_ELEMENTS)
            number = parse_int(required_text(pairs, "PartNumber"), low=1, high=MAX_PARTS)
            etag = required_text(pairs, "ETag").strip().strip('"')
            if not etag:
                raise malformed()
            parts.append(CompletedPart(number, etag, parse_checksums(pairs)))
            if len(parts) > MAX_PARTS:
                raise malformed()
        if not parts:
            raise malformed()
        for before, after in itertools.pairwise(parts):
            if after.part_number <= before.part_number:
                raise S3Error("InvalidPartOrder")
        return cls(tuple(parts))

    def to_xml(self) -> bytes:
        b = document("CompleteMultipartUpload")
        for part in self.parts:
            p = b.child("Part")
            p.text("PartNumber", part.part_number)
            p.text("ETag", quote_etag(part.etag))
            p.checksums(part.checksums)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class CompleteMultipartUploadResult:
    location: str
    bucket: str
    key: str
    etag: str
    checksums: Mapping[Algorithm, str] = field(default_factory=no_checksums)
    checksum_type: ChecksumType | None = None

    def to_xml(self) -> bytes:
        b = document("CompleteMultipartUploadResult")
        b.text("Location", self.location)
        b.text("Bucket", self.bucket)
        b.text("Key", self.key)
        b.text("ETag", quote_etag(self.etag))
        b.checksums(self.checksums)
        if self.checksum_type is not None:
            b.text("ChecksumType", self.checksum_type.value)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class PartEntry:
    part_number: int
    last_modified: datetime
    etag: str
    size: int
    checksums: Mapping[Algorithm, str] = field(default_factory=no_checksums)


@dataclass(frozen=True, slots=True)
class ListPartsResult:
    bucket: str
    key: str
    upload_id: str
    part_number_marker: int
    max_parts: int
    is_truncated: bool
    parts: Sequence[PartEntry] = ()
    next_part_number_marker: int | None = None
    initiator: Owner | None = None
    owner: Owner | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: Algorithm | None = None
    checksum_type: ChecksumType | None = None

    def to_xml(self) -> bytes:
        b = document("ListPartsResult")
        b.text("Bucket", self.bucket)
        b.text("Key", self.key)
        b.text("UploadId", self.upload_id)
        b.text("PartNumberMarker", self.part_number_marker)
        b.text("NextPartNumberMarker", self.next_part_number_marker)
        b.text("MaxParts", self.max_parts)
        b.text("IsTruncated", self.is_truncated)
        for part in self.parts:
            p = b.child("Part")
            p.text("ETag", quote_etag(part.etag))
            p.text("LastModified", format_timestamp(part.last_modified))
            p.text("PartNumber", part.part_number)
            p.text("Size", part.size)
            p.checksums(part.checksums)
        b.owner("Initiator", self.initiator)
        b.owner("Owner", self.owner)
        b.text("StorageClass", self.storage_class)
        if self.checksum_algorithm is not None:
            b.text("ChecksumAlgorithm", self.checksum_algorithm.value)
        if self.checksum_type is not None:
            b.text("ChecksumType", self.checksum_type.value)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class UploadEntry:
    key: str
    upload_id: str
    initiated: datetime
    initiator: Owner | None = None
    owner: Owner | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: Algorithm | None = None
    checksum_type: ChecksumType | None = None


@dataclass(frozen=True, slots=True)
class ListMultipartUploadsResult:
    bucket: str
    key_marker: str
    upload_id_marker: str
    max_uploads: int
    is_truncated: bool
    uploads: Sequence[UploadEntry] = ()
    common_prefixes: Sequence[str] = ()
    prefix: str | None = None
    delimiter: str | None = None
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None
    encoding_type: str | None = None

    def to_xml(self) -> bytes:
        enc = check_encoding(self.encoding_type)
        b = document("ListMultipartUploadsResult")
        b.text("Bucket", self.bucket)
        b.text("KeyMarker", url_encoded(self.key_marker, enc))
        b.text("UploadIdMarker", self.upload_id_marker)
        b.text("NextKeyMarker", url_encoded(self.next_key_marker, enc))
        b.text("NextUploadIdMarker", self.next_upload_id_marker)
        b.text("Prefix", url_encoded(self.prefix, enc))
        b.text("Delimiter", url_encoded(self.delimiter, enc))
        b.text("MaxUploads", self.max_uploads)
        b.text("IsTruncated", self.is_truncated)
        b.text("EncodingType", self.encoding_type)
        for up in self.uploads:
            u = b.child("Upload")
            u.text("Key", url_encode(up.key) if enc else up.key)
            u.text("UploadId", up.upload_id)
            u.owner("Initiator", up.initiator)
            u.owner("Owner", up.owner)
            u.text("StorageClass", up.storage_class)
            u.text("Initiated", format_timestamp(up.initiated))
            if up.checksum_algorithm is not None:
                u.text("ChecksumAlgorithm", up.checksum_algorithm.value)
            if up.checksum_type is not None:
                u.text("ChecksumType", up.checksum_type.value)
        write_common_prefixes(b, self.common_prefixes, enc)
        return serialize(b)
