"""Object bodies: CopyObject/UploadPartCopy results, DeleteObjects, tagging, PostResponse.

Layer: s3 protocol (pure; no I/O). The rules are ``kvbox.s3.xml``'s docstring.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, unquote_to_bytes, urlencode

from kvbox.s3.checksums import Algorithm, ChecksumType
from kvbox.s3.errors import S3Error
from kvbox.s3.xml.base import (
    MAX_BUCKET_TAGS,
    MAX_CONFIG_BODY,
    MAX_DELETE_OBJECTS,
    MAX_OBJECT_TAGS,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_XML_BODY,
    children_of,
    document,
    format_timestamp,
    malformed,
    no_checksums,
    parse_body,
    parse_bool,
    parse_int,
    parse_timestamp,
    quote_etag,
    required_text,
    serialize,
    single,
    single_text,
)

# --- GetObjectAttributes --------------------------------------------------------------


class ObjectAttribute(enum.StrEnum):
    """The names ``x-amz-object-attributes`` may list."""

    ETAG = "ETag"
    CHECKSUM = "Checksum"
    OBJECT_PARTS = "ObjectParts"
    STORAGE_CLASS = "StorageClass"
    OBJECT_SIZE = "ObjectSize"

    @classmethod
    def parse_header(cls, value: str | None) -> frozenset[ObjectAttribute]:
        """``x-amz-object-attributes``: a comma-separated list, AWS's errors otherwise.

        >>> sorted(ObjectAttribute.parse_header("ETag, ObjectSize"))
        [<ObjectAttribute.ETAG: 'ETag'>, <ObjectAttribute.OBJECT_SIZE: 'ObjectSize'>]
        """
        names = [n.strip() for n in (value or "").split(",") if n.strip()]
        if not names:
            raise S3Error(
                "InvalidRequest",
                "The x-amz-object-attributes header specifying the attributes to be "
                "retrieved is either missing or empty",
            )
        try:
            return frozenset(cls(n) for n in names)
        except ValueError:
            raise S3Error("InvalidArgument", "Invalid attribute name specified.") from None


@dataclass(frozen=True, slots=True)
class ObjectPartAttributes:
    part_number: int
    size: int
    checksums: Mapping[Algorithm, str] = field(default_factory=no_checksums)


@dataclass(frozen=True, slots=True)
class ObjectPartsAttributes:
    """``ObjectParts``: the part count, and a page of parts when they have checksums."""

    total_parts: int
    part_number_marker: int = 0
    next_part_number_marker: int | None = None
    max_parts: int = 1000
    is_truncated: bool = False
    parts: tuple[ObjectPartAttributes, ...] = ()
    #: False when the object has no part checksums: AWS then lists no parts.
    listed: bool = False


@dataclass(frozen=True, slots=True)
class GetObjectAttributesResponse:
    """Only the attributes asked for are set; the ETag is bare (no quotes), as AWS
    returns it here, unlike everywhere else."""

    etag: str | None = None
    checksums: Mapping[Algorithm, str] | None = None
    checksum_type: ChecksumType | None = None
    object_parts: ObjectPartsAttributes | None = None
    storage_class: str | None = None
    object_size: int | None = None

    def to_xml(self) -> bytes:
        b = document("GetObjectAttributesResponse")
        b.text("ETag", self.etag)
        if self.checksums:
            c = b.child("Checksum")
            c.checksums(self.checksums)
            c.text("ChecksumType", self.checksum_type.value if self.checksum_type else None)
        op = self.object_parts
        if op is not None:
            o = b.child("ObjectParts")
            o.text("PartsCount", op.total_parts)
            if op.listed:
                o.text("PartNumberMarker", op.part_number_marker)
                o.text("NextPartNumberMarker", op.next_part_number_marker)
                o.text("MaxParts", op.max_parts)
                o.text("IsTruncated", op.is_truncated)
                for part in op.parts:
                    p = o.child("Part")
                    p.text("PartNumber", part.part_number)
                    p.text("Size", part.size)
                    p.checksums(part.checksums)
        b.text("StorageClass", self.storage_class)
        b.text("ObjectSize", self.object_size)
        return serialize(b)


# --- CopyObject / UploadPartCopy -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyObjectResult:
    etag: str
    last_modified: datetime
    checksums: Mapping[Algorithm, str] = field(default_factory=no_checksums)
    checksum_type: ChecksumType | None = None

    def to_xml(self) -> bytes:
        b = document("CopyObjectResult")
        b.text("ETag", quote_etag(self.etag))
        b.text("LastModified", format_timestamp(self.last_modified))
        if self.checksum_type is not None:
            b.text("ChecksumType", self.checksum_type.value)
        b.checksums(self.checksums)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class CopyPartResult:
    etag: str
    last_modified: datetime
    checksums: Mapping[Algorithm, str] = field(default_factory=no_checksums)

    def to_xml(self) -> bytes:
        b = document("CopyPartResult")
        b.text("ETag", quote_etag(self.etag))
        b.text("LastModified", format_timestamp(self.last_modified))
        b.checksums(self.checksums)
        return serialize(b)


# --- DeleteObjects -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectIdentifier:
    """One ``<Object>`` of a Delete body. ``etag``, ``last_modified_time`` and ``size``
    are the 2024 conditional-delete fields: delete only if they still match."""

    key: str
    version_id: str | None = None
    etag: str | None = None
    last_modified_time: datetime | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """The DeleteObjects request body: 1..1,000 objects, optionally Quiet."""

    objects: tuple[ObjectIdentifier, ...]
    quiet: bool = False

    @classmethod
    def from_xml(cls, body: bytes) -> Delete:
        root = parse_body(body, "Delete", MAX_XML_BODY)
        pairs = children_of(root, ("Object", "Quiet"))
        quiet_text = single_text(pairs, "Quiet")
        objects: list[ObjectIdentifier] = []
        for name, el in pairs:
            if name != "Object":
                continue
            o = children_of(el, ("Key", "VersionId", "ETag", "LastModifiedTime", "Size"))
            version_id = single_text(o, "VersionId")
            etag = single_text(o, "ETag")
            when = single_text(o, "LastModifiedTime")
            size = single_text(o, "Size")
            objects.append(
                ObjectIdentifier(
                    required_text(o, "Key"),
                    version_id,
                    None if etag is None else etag.strip().strip('"'),
                    None if when is None else parse_timestamp(when),
                    None if size is None else parse_int(size),
                )
            )
            if len(objects) > MAX_DELETE_OBJECTS:
                raise malformed()
        if not objects:
            raise malformed()
        return cls(tuple(objects), False if quiet_text is None else parse_bool(quiet_text))

    def to_xml(self) -> bytes:
        b = document("Delete")
        for obj in self.objects:
            o = b.child("Object")
            o.text("Key", obj.key)
            o.text("VersionId", obj.version_id)
            o.text("ETag", None if obj.etag is None else quote_etag(obj.etag))
            if obj.last_modified_time is not None:
                o.text("LastModifiedTime", format_timestamp(obj.last_modified_time))
            o.text("Size", obj.size)
        if self.quiet:
            b.text("Quiet", True)
        return serialize(b)


@dataclass(frozen=True, slots=True)
class DeletedEntry:
    key: str
    version_id: str | None = None
    delete_marker: bool | None = None
    delete_marker_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteErrorEntry:
    key: str
    code: str
    message: str
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """DeleteObjects' answer. In quiet mode the handler passes no ``deleted`` entries."""

    deleted: Sequence[DeletedEntry] = ()
    errors: Sequence[DeleteErrorEntry] = ()

    def to_xml(self) -> bytes:
        b = document("DeleteResult")
        for d in self.deleted:
            e = b.child("Deleted")
            e.text("Key", d.key)
            e.text("VersionId", d.version_id)
            e.text("DeleteMarker", d.delete_marker)
            e.text("DeleteMarkerVersionId", d.delete_marker_version_id)
        for err in self.errors:
            e = b.child("Error")
            e.text("Key", err.key)
            e.text("VersionId", err.version_id)
            e.text("Code", err.code)
            e.text("Message", err.message)
        return serialize(b)


# --- tagging -------------------------------------------------------------------------

_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _tag_chars_ok(text: str) -> bool:
    """AWS's tag alphabet: Unicode letters, digits, spaces, and ``_ . : / = + - @``."""
    return all(ch.isalnum() or ch.isspace() or ch in _TAG_PUNCTUATION for ch in text)


def _invalid_tag(message: str) -> S3Error:
    return S3Error("InvalidTag", message)


def _form_decode(text: str) -> str:
    """URL query form: ``+`` is a space, ``%XX`` bytes must make UTF-8."""
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")


@dataclass(frozen=True, slots=True)
class Tagging:
    """A tag set (object or bucket), in the order given.

    >>> Tagging.from_header("project=kvbox&env=dev%20box").tags
    (('project', 'kvbox'), ('env', 'dev box'))
    """

    tags: tuple[tuple[str, str], ...] = ()

    def check(self, max_tags: int = MAX_OBJECT_TAGS) -> Tagging:
        """Apply S3's tag rules; returns self so parsers can chain it."""
        if len(self.tags) > max_tags:
            if max_tags == MAX_BUCKET_TAGS:
                raise _invalid_tag(f"Bucket tag count cannot be greater than {max_tags}")
            raise _invalid_tag(f"Object tags cannot be greater than {max_tags}")
        seen: set[str] = set()
        for key, value in self.tags:
            if not 1 <= len(key) <= MAX_TAG_KEY_CHARS or not _tag_chars_ok(key):
                raise _invalid_tag("The TagKey you have provided is invalid")
            if len(value) > MAX_TAG_VALUE_CHARS or not _tag_chars_ok(value):
                raise _invalid_tag("The TagValue you have provided is invalid")
            if key.lower().startswith("aws:"):
                raise _invalid_tag("Your TagKey cannot be prefixed with aws:")
            if key in seen:
                raise _invalid_tag("Cannot provide multiple Tags with the same key")
            seen.add(key)
        return self

    @classmethod
    def from_xml(cls, body: bytes, *, max_tags: int = MAX_OBJECT_TAGS) -> Tagging:
        root = parse_body(body, "Tagging", MAX_CONFIG_BODY)
        tag_set = single(children_of(root, ("TagSet",)), "TagSet")
        if tag_set is None:
            raise malformed()
        tags: list[tuple[str, str]] = []
        for _, el in children_of(tag_set, ("Tag",)):
            pairs = children_of(el, ("Key", "Value"))
            tags.append((required_text(pairs, "Key"), required_text(pairs, "Value")))
            if len(tags) > max_tags:
                break  # check() reports it; no need to read the rest
        return cls(tuple(tags)).check(max_tags)

    @classmethod
    def from_header(cls, value: str, *, max_tags: int = MAX_OBJECT_TAGS) -> Tagging:
        """``x-amz-tagging``: URL query form, ``k1=v1&k2=v2``.

        A name without ``=`` is a tag with an empty value, as AWS reads ``a=b&c``.

        >>> Tagging.from_header("a=b&c&d=&e+f=g%2Bh").tags
        (('a', 'b'), ('c', ''), ('d', ''), ('e f', 'g+h'))
        """
        pairs: list[tuple[str, str]] = []
        for piece in value.split("&") if value else ():
            name, _, text = piece.partition("=")
            try:
                if not piece:
                    raise ValueError("an empty parameter")
                pairs.append((_form_decode(name), _form_decode(text)))
            except ValueError:  # UnicodeDecodeError included
                raise S3Error(
                    "InvalidArgument",
                    "The header 'x-amz-tagging' shall be encoded as "
                    "UTF-8 then URLEncoded URL query parameters without tag name "
                    "duplicates.",
                ) from None
        return cls(tuple(pairs)).check(max_tags)

    def to_header(self) -> str:
        return urlencode(self.tags, quote_via=quote)

    def to_xml(self) -> bytes:
        b = document("Tagging")
        tag_set = b.child("TagSet")
        for key, value in self.tags:
            t = tag_set.child("Tag")
            t.text("Key", key)
            t.text("Value", value)
        return serialize(b)


# --- POST Object -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostResponse:
    """The body of a POST upload answered with ``success_action_status`` 201."""

    location: str
    bucket: str
    key: str
    etag: str

    def to_xml(self) -> bytes:
        b = document("PostResponse", namespace=False)
        b.text("Location", self.location)
        b.text("Bucket", self.bucket)
        b.text("Key", self.key)
        b.text("ETag", quote_etag(self.etag))
        return serialize(b)
