"""Every S3 XML body, in and out.

Layer: s3 protocol (pure; no I/O). Rules:

* Responses are frozen dataclasses with ``to_xml() -> bytes``; request bodies are
  dataclasses with ``from_xml(body) -> instance`` (and ``to_xml`` too, so tests can
  round-trip them). Element names, order and the S3 namespace
  (``http://s3.amazonaws.com/doc/2006-03-01/``) follow AWS's API reference; the
  golden tests in ``tests/s3/test_xml.py`` compare against its examples.
* Untrusted XML is parsed with ``defusedxml`` with DTDs forbidden: no entity
  expansion (billion laughs), no external entities, no DTD retrieval. Bodies are
  size-capped before parsing (``MAX_XML_BODY``, ``MAX_CONFIG_BODY``) and the shape is
  checked strictly: an unknown element, a missing required one, a bad number or
  boolean is ``MalformedXML``, as S3 validates against its schema. Element names are
  matched by local name, so bodies with or without the S3 namespace are accepted.
* Semantic limits that S3 checks while parsing are checked here too, with S3's codes:
  1,000 keys per Delete, 10,000 parts and ascending part numbers per
  CompleteMultipartUpload (``InvalidPartOrder``), tag-set rules (``InvalidTag``),
  CORS and website rules (``InvalidRequest`` / ``InvalidArgument``).
* Timestamps are aware ``datetime`` objects rendered as ``2009-10-12T17:50:30.000Z``;
  ETags are given bare and rendered quoted; with ``encoding_type="url"`` listings
  percent-encode keys, prefixes, delimiters and markers (``%20`` for space, ``%2B`` for
  plus, ``/`` kept), which both ``unquote`` and ``unquote_plus`` clients decode right.
* Characters XML 1.0 cannot carry (U+0001-U+0008 and friends) are written as S3 writes
  them, raw; that is what ``encoding-type=url`` exists for. CR is written ``&#13;`` so a
  key holding one comes back intact.
* Rendering writes strings directly rather than through ElementTree: a 1,000-key
  ListObjectsV2 page renders in a few milliseconds.
"""

from __future__ import annotations

import enum
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import parse_qsl, quote, urlencode

import defusedxml
import defusedxml.ElementTree as DET

from kvbox.s3.checksums import Algorithm, ChecksumType
from kvbox.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

#: Largest DeleteObjects / CompleteMultipartUpload body. 1,000 keys of 1,024 bytes with
#: version ids, or 10,000 parts with ETags and two checksums each, stay under 4 MiB.
MAX_XML_BODY = 4 * 1024 * 1024
#: Largest configuration body (tagging, versioning, CORS, website, ACL, ...). AWS caps a
#: CORS configuration at 64 KB; the others are far smaller.
MAX_CONFIG_BODY = 64 * 1024
#: S3's limits.
MAX_DELETE_OBJECTS = 1000
MAX_PARTS = 10_000
MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
MAX_CORS_RULES = 100
MAX_ROUTING_RULES = 50
CORS_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})

EMPTY_CHECKSUMS: Mapping[Algorithm, str] = MappingProxyType({})


def _no_checksums() -> Mapping[Algorithm, str]:
    return EMPTY_CHECKSUMS


# --- small helpers -------------------------------------------------------------------


def format_timestamp(when: datetime) -> str:
    """S3's timestamp form, always UTC with milliseconds.

    >>> format_timestamp(datetime(2009, 10, 12, 17, 50, 30, 123456, tzinfo=UTC))
    '2009-10-12T17:50:30.123Z'
    """
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Read a timestamp as the SDKs write them: ISO 8601 (``Z`` or an offset), or the
    RFC 1123 form botocore uses for ``Delete/Object/LastModifiedTime``.

    >>> parse_timestamp("Mon, 06 May 2024 07:08:09 GMT").isoformat()
    '2024-05-06T07:08:09+00:00'
    """
    t = text.strip()
    try:
        if t[:1].isdigit():
            when = datetime.fromisoformat(t.replace("Z", "+00:00"))
        else:
            when = parsedate_to_datetime(t)
    except (ValueError, TypeError, IndexError):
        raise S3Error("MalformedXML") from None
    if when.tzinfo is None:
        raise S3Error("MalformedXML")
    return when.astimezone(UTC)


def timestamp_from_ns(ns: int) -> datetime:
    """A core ``mtime_ns`` as an aware UTC datetime (microsecond precision)."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC)


def quote_etag(etag: str) -> str:
    """``"etag"``, whether or not it came quoted.

    >>> quote_etag("abc"), quote_etag('"abc"')
    ('"abc"', '"abc"')
    """
    return etag if len(etag) >= 2 and etag[0] == etag[-1] == '"' else f'"{etag}"'


def url_encode(value: str) -> str:
    """``encoding-type=url``: percent-encode all but unreserved characters and ``/``.

    >>> url_encode("a b+c/ü")
    'a%20b%2Bc/%C3%BC'
    """
    return quote(value, safe="/", encoding="utf-8", errors="surrogatepass")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


#: Character data escapes. CR is written as ``&#13;`` so that a key holding one survives
#: a parser's newline normalisation (XML 1.0 section 2.11); attributes also keep LF.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;"}
)


class _Builder:
    """A tiny element builder: children appended in call order, None values skipped.

    It writes strings directly (a 1,000-key listing renders in a few milliseconds,
    several times faster than building and serialising an ElementTree).
    """

    __slots__ = ("_attrs", "_parts", "_tag")

    def __init__(self, tag: str, attrs: str = "") -> None:
        self._tag = tag
        self._attrs = attrs
        self._parts: list[str | _Builder] = []

    def text(self, tag: str, value: str | int | bool | None) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            content = "true" if value else "false"
        elif isinstance(value, int):
            content = str(value)
        else:
            content = value.translate(_TEXT_ESCAPES)
        self._parts.append(f"<{tag}>{content}</{tag}>")

    def content(self, value: str) -> None:
        """Character data directly inside this element."""
        self._parts.append(value.translate(_TEXT_ESCAPES))

    def child(self, tag: str, attrs: dict[str, str] | None = None) -> _Builder:
        rendered = "".join(
            f' {name}="{value.translate(_ATTR_ESCAPES)}"' for name, value in (attrs or {}).items()
        )
        b = _Builder(tag, rendered)
        self._parts.append(b)
        return b

    def owner(self, tag: str, owner: Owner | None) -> None:
        if owner is None:
            return
        b = self.child(tag)
        b.text("ID", owner.id)
        b.text("DisplayName", owner.display_name)

    def checksums(self, checksums: Mapping[Algorithm, str]) -> None:
        for alg in Algorithm:  # the model's order, whatever the mapping's
            value = checksums.get(alg)
            if value is not None:
                self.text(alg.element, value)

    def write(self, out: list[str]) -> None:
        if not self._parts:
            out.append(f"<{self._tag}{self._attrs}/>")
            return
        out.append(f"<{self._tag}{self._attrs}>")
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                part.write(out)
        out.append(f"</{self._tag}>")


def _root(tag: str, *, namespace: bool = True) -> _Builder:
    return _Builder(tag, f' xmlns="{NS}"' if namespace else "")


def _finish(b: _Builder) -> bytes:
    out = [_DECLARATION]
    b.write(out)
    return "".join(out).encode("utf-8")


# --- parsing helpers -----------------------------------------------------------------


def _malformed(detail: str | None = None) -> S3Error:
    return S3Error("MalformedXML", detail)


def _parse(body: bytes, root: str, limit: int) -> ET.Element:
    """Parse an untrusted body safely and check its root element's name."""
    if len(body) > limit:
        raise S3Error("MaxMessageLengthExceeded", extra={"MaxMessageLength": str(limit)})
    if not body.strip():
        raise _malformed()
    try:
        el = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError):
        raise _malformed() from None
    if _local(el.tag) != root:
        raise _malformed()
    return el


def _children(el: ET.Element, allowed: Collection[str]) -> list[tuple[str, ET.Element]]:
    """The element's children by local name; any name not in ``allowed`` is malformed."""
    out: list[tuple[str, ET.Element]] = []
    for child in el:
        name = _local(child.tag)
        if name not in allowed:
            raise _malformed()
        out.append((name, child))
    return out


def _leaf(el: ET.Element) -> str:
    """The text of an element that must have no children (exact, whitespace kept)."""
    if len(el):
        raise _malformed()
    return el.text or ""


def _single(pairs: list[tuple[str, ET.Element]], name: str) -> ET.Element | None:
    found = [e for n, e in pairs if n == name]
    if len(found) > 1:
        raise _malformed()
    return found[0] if found else None


def _single_text(pairs: list[tuple[str, ET.Element]], name: str) -> str | None:
    el = _single(pairs, name)
    return None if el is None else _leaf(el)


def _required_text(pairs: list[tuple[str, ET.Element]], name: str) -> str:
    value = _single_text(pairs, name)
    if value is None:
        raise _malformed()
    return value


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t == "true":
        return True
    if t == "false":
        return False
    raise _malformed()


def _int(text: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    t = text.strip()
    if _INT.fullmatch(t) is None:
        raise _malformed()
    n = int(t)
    if not low <= n <= high:
        raise _malformed()
    return n


_INT = re.compile(r"-?[0-9]{1,19}")


def _checksums(pairs: list[tuple[str, ET.Element]]) -> Mapping[Algorithm, str]:
    out: dict[Algorithm, str] = {}
    for name, el in pairs:
        alg = _BY_ELEMENT.get(name)
        if alg is not None:
            if alg in out:
                raise _malformed()
            out[alg] = _leaf(el).strip()
    return MappingProxyType(out) if out else EMPTY_CHECKSUMS


_BY_ELEMENT = {alg.element: alg for alg in Algorithm}
_PART_ELEMENTS = frozenset({"PartNumber", "ETag", *_BY_ELEMENT})


# --- common pieces -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """A bucket or object owner (also an upload's Initiator)."""

    id: str
    display_name: str | None = None


# --- Error ---------------------------------------------------------------------------


def render_error(err: S3Error, *, request_id: str, host_id: str | None = None) -> bytes:
    """The ``<Error>`` body of an S3 error response (no namespace, as AWS sends it).

    Children: Code, Message, the error's extra fields, Resource, RequestId, HostId.

    >>> body = render_error(S3Error("NoSuchKey", resource="/b/k"), request_id="44425")
    >>> body[body.index(b"<Error>") :].decode().replace("><", ">\\n<").splitlines()
    ... # doctest: +NORMALIZE_WHITESPACE
    ['<Error>', '<Code>NoSuchKey</Code>', '<Message>The specified key does not exist.</Message>',
     '<Resource>/b/k</Resource>', '<RequestId>44425</RequestId>', '</Error>']
    """
    b = _root("Error", namespace=False)
    b.text("Code", err.code)
    b.text("Message", err.message)
    for name, value in err.extra.items():
        b.text(name, value)
    b.text("Resource", err.resource)
    b.text("RequestId", request_id)
    b.text("HostId", host_id)
    return _finish(b)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """An ``<Error>`` body read back (for tests and for kvbox's own S3 clients)."""

    code: str
    message: str
    resource: str | None
    request_id: str | None
    extra: Mapping[str, str]

    @classmethod
    def from_xml(cls, body: bytes) -> ErrorBody:
        el = _parse(body, "Error", MAX_CONFIG_BODY)
        fields: dict[str, str] = {}
        for child in el:
            fields[_local(child.tag)] = _leaf(child)
        code = fields.pop("Code", "")
        message = fields.pop("Message", "")
        resource = fields.pop("Resource", None)
        request_id = fields.pop("RequestId", None)
        fields.pop("HostId", None)
        return cls(code, message, resource, request_id, MappingProxyType(fields))


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
        b = _root("ListAllMyBucketsResult")
        buckets = b.child("Buckets")
        for entry in self.buckets:
            e = buckets.child("Bucket")
            e.text("Name", entry.name)
            e.text("CreationDate", format_timestamp(entry.creation_date))
            e.text("BucketRegion", entry.region)
        b.owner("Owner", self.owner)
        b.text("ContinuationToken", self.continuation_token)
        b.text("Prefix", self.prefix)
        return _finish(b)


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


def _contents(b: _Builder, entry: ObjectEntry, enc: bool) -> None:
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


def _common_prefixes(b: _Builder, prefixes: Sequence[str], enc: bool) -> None:
    for p in prefixes:
        b.child("CommonPrefixes").text("Prefix", url_encode(p) if enc else p)


def _enc(value: str | None, enc: bool) -> str | None:
    return None if value is None else (url_encode(value) if enc else value)


def _check_encoding(encoding_type: str | None) -> bool:
    if encoding_type not in (None, "url"):
        raise ValueError(f"unknown encoding type {encoding_type!r}")
    return encoding_type == "url"


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
        enc = _check_encoding(self.encoding_type)
        b = _root("ListBucketResult")
        b.text("Name", self.name)
        b.text("Prefix", _enc(self.prefix, enc))
        b.text("Marker", _enc(self.marker, enc))
        b.text("NextMarker", _enc(self.next_marker, enc))
        b.text("MaxKeys", self.max_keys)
        b.text("Delimiter", _enc(self.delimiter, enc))
        b.text("IsTruncated", self.is_truncated)
        b.text("EncodingType", self.encoding_type)
        for entry in self.contents:
            _contents(b, entry, enc)
        _common_prefixes(b, self.common_prefixes, enc)
        return _finish(b)


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
        enc = _check_encoding(self.encoding_type)
        b = _root("ListBucketResult")
        b.text("Name", self.name)
        b.text("Prefix", _enc(self.prefix, enc))
        b.text("ContinuationToken", self.continuation_token)
        b.text("NextContinuationToken", self.next_continuation_token)
        b.text("StartAfter", _enc(self.start_after, enc))
        b.text("KeyCount", self.key_count)
        b.text("MaxKeys", self.max_keys)
        b.text("Delimiter", _enc(self.delimiter, enc))
        b.text("IsTruncated", self.is_truncated)
        b.text("EncodingType", self.encoding_type)
        for entry in self.contents:
            _contents(b, entry, enc)
        _common_prefixes(b, self.common_prefixes, enc)
        return _finish(b)


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
        enc = _check_encoding(self.encoding_type)
        b = _root("ListVersionsResult")
        b.text("Name", self.name)
        b.text("Prefix", _enc(self.prefix, enc))
        b.text("KeyMarker", _enc(self.key_marker, enc))
        b.text("VersionIdMarker", self.version_id_marker)
        b.text("NextKeyMarker", _enc(self.next_key_marker, enc))
        b.text("NextVersionIdMarker", self.next_version_id_marker)
        b.text("MaxKeys", self.max_keys)
        b.text("Delimiter", _enc(self.delimiter, enc))
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
        _common_prefixes(b, self.common_prefixes, enc)
        return _finish(b)


# --- GetBucketLocation ---------------------------------------------------------------


def render_location(region: str | None) -> bytes:
    """GetBucketLocation. us-east-1 (or None) is the empty element, as AWS answers.

    >>> render_location("eu-west-1")
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">eu-west-1</LocationConstraint>'
    """
    b = _root("LocationConstraint")
    if region and region != "us-east-1":
        b.content(region)
    return _finish(b)


# --- CopyObject / UploadPartCopy -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyObjectResult:
    etag: str
    last_modified: datetime
    checksums: Mapping[Algorithm, str] = field(default_factory=_no_checksums)
    checksum_type: ChecksumType | None = None

    def to_xml(self) -> bytes:
        b = _root("CopyObjectResult")
        b.text("ETag", quote_etag(self.etag))
        b.text("LastModified", format_timestamp(self.last_modified))
        if self.checksum_type is not None:
            b.text("ChecksumType", self.checksum_type.value)
        b.checksums(self.checksums)
        return _finish(b)


@dataclass(frozen=True, slots=True)
class CopyPartResult:
    etag: str
    last_modified: datetime
    checksums: Mapping[Algorithm, str] = field(default_factory=_no_checksums)

    def to_xml(self) -> bytes:
        b = _root("CopyPartResult")
        b.text("ETag", quote_etag(self.etag))
        b.text("LastModified", format_timestamp(self.last_modified))
        b.checksums(self.checksums)
        return _finish(b)


# --- multipart -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitiateMultipartUploadResult:
    bucket: str
    key: str
    upload_id: str

    def to_xml(self) -> bytes:
        b = _root("InitiateMultipartUploadResult")
        b.text("Bucket", self.bucket)
        b.text("Key", self.key)
        b.text("UploadId", self.upload_id)
        return _finish(b)


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload body. ``etag`` is kept as sent
    (quotes stripped), the handler compares it with the stored part's."""

    part_number: int
    etag: str
    checksums: Mapping[Algorithm, str] = field(default_factory=_no_checksums)


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
        root = _parse(body, "CompleteMultipartUpload", MAX_XML_BODY)
        parts: list[CompletedPart] = []
        for _, el in _children(root, ("Part",)):
            pairs = _children(el, _PART_ELEMENTS)
            number = _int(_required_text(pairs, "PartNumber"), low=1, high=MAX_PARTS)
            etag = _required_text(pairs, "ETag").strip().strip('"')
            if not etag:
                raise _malformed()
            parts.append(CompletedPart(number, etag, _checksums(pairs)))
            if len(parts) > MAX_PARTS:
                raise _malformed()
        if not parts:
            raise _malformed()
        for before, after in itertools.pairwise(parts):
            if after.part_number <= before.part_number:
                raise S3Error("InvalidPartOrder")
        return cls(tuple(parts))

    def to_xml(self) -> bytes:
        b = _root("CompleteMultipartUpload")
        for part in self.parts:
            p = b.child("Part")
            p.text("PartNumber", part.part_number)
            p.text("ETag", quote_etag(part.etag))
            p.checksums(part.checksums)
        return _finish(b)


@dataclass(frozen=True, slots=True)
class CompleteMultipartUploadResult:
    location: str
    bucket: str
    key: str
    etag: str
    checksums: Mapping[Algorithm, str] = field(default_factory=_no_checksums)
    checksum_type: ChecksumType | None = None

    def to_xml(self) -> bytes:
        b = _root("CompleteMultipartUploadResult")
        b.text("Location", self.location)
        b.text("Bucket", self.bucket)
        b.text("Key", self.key)
        b.text("ETag", quote_etag(self.etag))
        b.checksums(self.checksums)
        if self.checksum_type is not None:
            b.text("ChecksumType", self.checksum_type.value)
        return _finish(b)


@dataclass(frozen=True, slots=True)
class PartEntry:
    part_number: int
    last_modified: datetime
    etag: str
    size: int
    checksums: Mapping[Algorithm, str] = field(default_factory=_no_checksums)


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
        b = _root("ListPartsResult")
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
        return _finish(b)


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
        enc = _check_encoding(self.encoding_type)
        b = _root("ListMultipartUploadsResult")
        b.text("Bucket", self.bucket)
        b.text("KeyMarker", _enc(self.key_marker, enc))
        b.text("UploadIdMarker", self.upload_id_marker)
        b.text("NextKeyMarker", _enc(self.next_key_marker, enc))
        b.text("NextUploadIdMarker", self.next_upload_id_marker)
        b.text("Prefix", _enc(self.prefix, enc))
        b.text("Delimiter", _enc(self.delimiter, enc))
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
        _common_prefixes(b, self.common_prefixes, enc)
        return _finish(b)


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
        root = _parse(body, "Delete", MAX_XML_BODY)
        pairs = _children(root, ("Object", "Quiet"))
        quiet_text = _single_text(pairs, "Quiet")
        objects: list[ObjectIdentifier] = []
        for name, el in pairs:
            if name != "Object":
                continue
            o = _children(el, ("Key", "VersionId", "ETag", "LastModifiedTime", "Size"))
            version_id = _single_text(o, "VersionId")
            etag = _single_text(o, "ETag")
            when = _single_text(o, "LastModifiedTime")
            size = _single_text(o, "Size")
            objects.append(
                ObjectIdentifier(
                    _required_text(o, "Key"),
                    version_id,
                    None if etag is None else etag.strip().strip('"'),
                    None if when is None else parse_timestamp(when),
                    None if size is None else _int(size),
                )
            )
            if len(objects) > MAX_DELETE_OBJECTS:
                raise _malformed()
        if not objects:
            raise _malformed()
        return cls(tuple(objects), False if quiet_text is None else _bool(quiet_text))

    def to_xml(self) -> bytes:
        b = _root("Delete")
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
        return _finish(b)


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
        b = _root("DeleteResult")
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
        return _finish(b)


# --- tagging -------------------------------------------------------------------------

_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _tag_chars_ok(text: str) -> bool:
    """AWS's tag alphabet: Unicode letters, digits, spaces, and ``_ . : / = + - @``."""
    return all(ch.isalnum() or ch.isspace() or ch in _TAG_PUNCTUATION for ch in text)


def _invalid_tag(message: str) -> S3Error:
    return S3Error("InvalidTag", message)


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
        root = _parse(body, "Tagging", MAX_CONFIG_BODY)
        tag_set = _single(_children(root, ("TagSet",)), "TagSet")
        if tag_set is None:
            raise _malformed()
        tags: list[tuple[str, str]] = []
        for _, el in _children(tag_set, ("Tag",)):
            pairs = _children(el, ("Key", "Value"))
            tags.append((_required_text(pairs, "Key"), _required_text(pairs, "Value")))
            if len(tags) > max_tags:
                break  # check() reports it; no need to read the rest
        return cls(tuple(tags)).check(max_tags)

    @classmethod
    def from_header(cls, value: str, *, max_tags: int = MAX_OBJECT_TAGS) -> Tagging:
        """``x-amz-tagging``: URL query form, ``k1=v1&k2=v2``."""
        try:
            pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=bool(value))
        except ValueError:
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
        b = _root("Tagging")
        tag_set = b.child("TagSet")
        for key, value in self.tags:
            t = tag_set.child("Tag")
            t.text("Key", key)
            t.text("Value", value)
        return _finish(b)


# --- versioning ----------------------------------------------------------------------


class VersioningStatus(enum.StrEnum):
    ENABLED = "Enabled"
    SUSPENDED = "Suspended"


class MfaDelete(enum.StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class VersioningConfiguration:
    """Put/GetBucketVersioning. A never-versioned bucket renders with no Status."""

    status: VersioningStatus | None = None
    mfa_delete: MfaDelete | None = None

    @classmethod
    def from_xml(cls, body: bytes) -> VersioningConfiguration:
        root = _parse(body, "VersioningConfiguration", MAX_CONFIG_BODY)
        pairs = _children(root, ("Status", "MfaDelete"))
        status = _single_text(pairs, "Status")
        mfa = _single_text(pairs, "MfaDelete")
        try:
            return cls(
                None if status is None else VersioningStatus(status.strip()),
                None if mfa is None else MfaDelete(mfa.strip()),
            )
        except ValueError:
            raise _malformed() from None

    def to_xml(self) -> bytes:
        b = _root("VersioningConfiguration")
        b.text("Status", None if self.status is None else self.status.value)
        b.text("MfaDelete", None if self.mfa_delete is None else self.mfa_delete.value)
        return _finish(b)


# --- CORS ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CORSRule:
    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CORSConfiguration:
    """Put/GetBucketCors: 1..100 rules, each with methods and origins."""

    rules: tuple[CORSRule, ...]

    @classmethod
    def from_xml(cls, body: bytes) -> CORSConfiguration:
        root = _parse(body, "CORSConfiguration", MAX_CONFIG_BODY)
        rules: list[CORSRule] = []
        for _, el in _children(root, ("CORSRule",)):
            pairs = _children(
                el,
                (
                    "ID",
                    "AllowedMethod",
                    "AllowedOrigin",
                    "AllowedHeader",
                    "ExposeHeader",
                    "MaxAgeSeconds",
                ),
            )

            def many(name: str, pairs: list[tuple[str, ET.Element]] = pairs) -> tuple[str, ...]:
                return tuple(_leaf(e).strip() for n, e in pairs if n == name)

            max_age = _single_text(pairs, "MaxAgeSeconds")
            rule = CORSRule(
                many("AllowedMethod"),
                many("AllowedOrigin"),
                many("AllowedHeader"),
                many("ExposeHeader"),
                None if max_age is None else _int(max_age),
                _single_text(pairs, "ID"),
            )
            rules.append(rule)
        config = cls(tuple(rules))
        config.check()
        return config

    def check(self) -> None:
        if not self.rules:
            raise _malformed()
        if len(self.rules) > MAX_CORS_RULES:
            raise S3Error(
                "InvalidRequest", f"The number of CORS rules should not exceed {MAX_CORS_RULES}"
            )
        for rule in self.rules:
            if not rule.allowed_methods or not rule.allowed_origins:
                raise _malformed()
            for method in rule.allowed_methods:
                if method not in CORS_METHODS:
                    raise S3Error(
                        "InvalidRequest",
                        "Found unsupported HTTP method in CORS config. "
                        f"Unsupported method is {method}",
                    )
            for origin in rule.allowed_origins:
                if origin.count("*") > 1:
                    raise S3Error(
                        "InvalidRequest",
                        f'AllowedOrigin "{origin}" can not have more than one wildcard.',
                    )
            for header in rule.allowed_headers:
                if header.count("*") > 1:
                    raise S3Error(
                        "InvalidRequest",
                        f'AllowedHeader "{header}" can not have more than one wildcard.',
                    )
            if rule.id is not None and len(rule.id) > 255:
                raise _malformed("The ID of a CORS rule is at most 255 characters")

    def to_xml(self) -> bytes:
        b = _root("CORSConfiguration")
        for rule in self.rules:
            r = b.child("CORSRule")
            r.text("ID", rule.id)
            for h in rule.allowed_headers:
                r.text("AllowedHeader", h)
            for m in rule.allowed_methods:
                r.text("AllowedMethod", m)
            for o in rule.allowed_origins:
                r.text("AllowedOrigin", o)
            for h in rule.expose_headers:
                r.text("ExposeHeader", h)
            r.text("MaxAgeSeconds", rule.max_age_seconds)
        return _finish(b)


# --- website -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedirectAllRequestsTo:
    host_name: str
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingCondition:
    key_prefix_equals: str | None = None
    http_error_code_returned_equals: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRedirect:
    host_name: str | None = None
    http_redirect_code: str | None = None
    protocol: str | None = None
    replace_key_prefix_with: str | None = None
    replace_key_with: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRule:
    redirect: RoutingRedirect
    condition: RoutingCondition | None = None


def _bad_website(message: str) -> S3Error:
    return S3Error("InvalidArgument", message)


def _check_protocol(protocol: str | None) -> None:
    if protocol is not None and protocol not in ("http", "https"):
        raise _bad_website(
            "Invalid protocol, protocol can be http or https. If not defined the protocol "
            "will be selected automatically."
        )


@dataclass(frozen=True, slots=True)
class WebsiteConfiguration:
    """Put/GetBucketWebsite: either a redirect of every request, or an index document
    (with an optional error document and routing rules)."""

    index_document: str | None = None
    error_document: str | None = None
    redirect_all_requests_to: RedirectAllRequestsTo | None = None
    routing_rules: tuple[RoutingRule, ...] = ()

    @classmethod
    def from_xml(cls, body: bytes) -> WebsiteConfiguration:
        root = _parse(body, "WebsiteConfiguration", MAX_CONFIG_BODY)
        pairs = _children(
            root, ("IndexDocument", "ErrorDocument", "RedirectAllRequestsTo", "RoutingRules")
        )
        index = _single(pairs, "IndexDocument")
        error = _single(pairs, "ErrorDocument")
        redirect_all = _single(pairs, "RedirectAllRequestsTo")
        rules_el = _single(pairs, "RoutingRules")
        redirect: RedirectAllRequestsTo | None = None
        if redirect_all is not None:
            r = _children(redirect_all, ("HostName", "Protocol"))
            redirect = RedirectAllRequestsTo(
                _required_text(r, "HostName"), _single_text(r, "Protocol")
            )
        rules: list[RoutingRule] = []
        if rules_el is not None:
            for _, rule_el in _children(rules_el, ("RoutingRule",)):
                rp = _children(rule_el, ("Condition", "Redirect"))
                redirect_el = _single(rp, "Redirect")
                if redirect_el is None:
                    raise _malformed()
                d = _children(
                    redirect_el,
                    (
                        "HostName",
                        "HttpRedirectCode",
                        "Protocol",
                        "ReplaceKeyPrefixWith",
                        "ReplaceKeyWith",
                    ),
                )
                condition: RoutingCondition | None = None
                cond_el = _single(rp, "Condition")
                if cond_el is not None:
                    c = _children(cond_el, ("KeyPrefixEquals", "HttpErrorCodeReturnedEquals"))
                    condition = RoutingCondition(
                        _single_text(c, "KeyPrefixEquals"),
                        _single_text(c, "HttpErrorCodeReturnedEquals"),
                    )
                rules.append(
                    RoutingRule(
                        RoutingRedirect(
                            _single_text(d, "HostName"),
                            _single_text(d, "HttpRedirectCode"),
                            _single_text(d, "Protocol"),
                            _single_text(d, "ReplaceKeyPrefixWith"),
                            _single_text(d, "ReplaceKeyWith"),
                        ),
                        condition,
                    )
                )
        suffix: str | None = None
        if index is not None:
            suffix = _required_text(_children(index, ("Suffix",)), "Suffix")
        error_key: str | None = None
        if error is not None:
            error_key = _required_text(_children(error, ("Key",)), "Key")
        config = cls(suffix, error_key, redirect, tuple(rules))
        config.check()
        return config

    def check(self) -> None:
        if self.redirect_all_requests_to is not None:
            if (
                self.index_document is not None
                or self.error_document is not None
                or (self.routing_rules)
            ):
                raise _bad_website(
                    "RedirectAllRequestsTo cannot be provided in conjunction with other "
                    "Routing Rules."
                )
            _check_protocol(self.redirect_all_requests_to.protocol)
            return
        if self.index_document is None:
            raise _bad_website(
                "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo "
                "is empty"
            )
        if not self.index_document or "/" in self.index_document:
            raise _bad_website("The IndexDocument Suffix is not well formed")
        if self.error_document is not None and not self.error_document:
            raise _bad_website("The ErrorDocument Key is not well formed")
        if len(self.routing_rules) > MAX_ROUTING_RULES:
            raise _bad_website(f"The number of routing rules must not exceed {MAX_ROUTING_RULES}")
        for rule in self.routing_rules:
            self._check_rule(rule)

    @staticmethod
    def _check_rule(rule: RoutingRule) -> None:
        d = rule.redirect
        if all(
            v is None
            for v in (
                d.host_name,
                d.http_redirect_code,
                d.protocol,
                d.replace_key_prefix_with,
                d.replace_key_with,
            )
        ):
            raise _bad_website("Redirect must contain at least one of the redirect elements")
        if d.replace_key_prefix_with is not None and d.replace_key_with is not None:
            raise _bad_website("You can only define ReplaceKeyPrefix or ReplaceKey but not both.")
        _check_protocol(d.protocol)
        code = d.http_redirect_code
        if code is not None and not (
            code.isascii()
            and code.isdigit()
            and len(code) == 3
            and code[0] == "3"
            and code != "300"
        ):
            raise _bad_website(
                f"The provided HTTP redirect code ({code}) is not valid. Valid codes are 3XX "
                "except 300."
            )
        c = rule.condition
        if c is not None:
            if c.key_prefix_equals is None and c.http_error_code_returned_equals is None:
                raise _bad_website(
                    "Condition cannot be empty. To redirect all requests without a "
                    "condition, the condition element shouldn't be present."
                )
            err = c.http_error_code_returned_equals
            if err is not None and not (
                err.isascii() and err.isdigit() and len(err) == 3 and err[0] in "45"
            ):
                raise _bad_website(
                    f"The provided HTTP error code ({err}) is not valid. Valid codes are 4XX "
                    "or 5XX."
                )

    def to_xml(self) -> bytes:
        b = _root("WebsiteConfiguration")
        if self.redirect_all_requests_to is not None:
            r = b.child("RedirectAllRequestsTo")
            r.text("HostName", self.redirect_all_requests_to.host_name)
            r.text("Protocol", self.redirect_all_requests_to.protocol)
        if self.index_document is not None:
            b.child("IndexDocument").text("Suffix", self.index_document)
        if self.error_document is not None:
            b.child("ErrorDocument").text("Key", self.error_document)
        if self.routing_rules:
            rules = b.child("RoutingRules")
            for rule in self.routing_rules:
                r = rules.child("RoutingRule")
                if rule.condition is not None:
                    c = r.child("Condition")
                    c.text("KeyPrefixEquals", rule.condition.key_prefix_equals)
                    c.text(
                        "HttpErrorCodeReturnedEquals",
                        rule.condition.http_error_code_returned_equals,
                    )
                d = r.child("Redirect")
                d.text("Protocol", rule.redirect.protocol)
                d.text("HostName", rule.redirect.host_name)
                d.text("ReplaceKeyPrefixWith", rule.redirect.replace_key_prefix_with)
                d.text("ReplaceKeyWith", rule.redirect.replace_key_with)
                d.text("HttpRedirectCode", rule.redirect.http_redirect_code)
        return _finish(b)


# --- ACLs ----------------------------------------------------------------------------

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
PERMISSIONS = frozenset({"FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP"})


class CannedAcl(enum.StrEnum):
    """The canned ACLs kvbox folds into its access decision (``x-amz-acl`` values)."""

    PRIVATE = "private"
    PUBLIC_READ = "public-read"
    PUBLIC_READ_WRITE = "public-read-write"
    AUTHENTICATED_READ = "authenticated-read"
    BUCKET_OWNER_READ = "bucket-owner-read"
    BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"

    @classmethod
    def from_header(cls, value: str) -> CannedAcl:
        """``x-amz-acl``; an unknown value is InvalidArgument, as AWS answers."""
        try:
            return cls(value.strip())
        except ValueError:
            raise S3Error(
                "InvalidArgument",
                extra={"ArgumentName": "x-amz-acl", "ArgumentValue": value},
            ) from None


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant. ``grantee_type`` is ``CanonicalUser`` (``id``), ``Group`` (``uri``) or
    ``AmazonCustomerByEmail`` (``email``), the ``xsi:type`` of the Grantee."""

    grantee_type: str
    permission: str
    id: str | None = None
    display_name: str | None = None
    uri: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class AccessControlPolicy:
    """Get/Put Bucket/Object ACL bodies."""

    owner: Owner
    grants: tuple[Grant, ...] = ()

    @classmethod
    def canned(
        cls, acl: CannedAcl, owner: Owner, bucket_owner: Owner | None = None
    ) -> AccessControlPolicy:
        """The grants AWS lists for a canned ACL (``bucket_owner`` for the bucket-owner-*
        ACLs on an object owned by someone else)."""
        grants = [_user_grant(owner, "FULL_CONTROL")]
        if acl in (CannedAcl.PUBLIC_READ, CannedAcl.PUBLIC_READ_WRITE):
            grants.append(Grant("Group", "READ", uri=ALL_USERS))
        if acl is CannedAcl.PUBLIC_READ_WRITE:
            grants.append(Grant("Group", "WRITE", uri=ALL_USERS))
        if acl is CannedAcl.AUTHENTICATED_READ:
            grants.append(Grant("Group", "READ", uri=AUTHENTICATED_USERS))
        if bucket_owner is not None and bucket_owner.id != owner.id:
            if acl is CannedAcl.BUCKET_OWNER_READ:
                grants.append(_user_grant(bucket_owner, "READ"))
            if acl is CannedAcl.BUCKET_OWNER_FULL_CONTROL:
                grants.append(_user_grant(bucket_owner, "FULL_CONTROL"))
        return cls(owner, tuple(grants))

    def as_canned(self) -> CannedAcl | None:
        """The canned ACL these grants amount to (for a PutAcl with a body), else None.

        Only the owner-relative canned forms are recognised (grants compared by grantee
        id or group URI, display names ignored); any other grant (another user,
        WRITE_ACP...) gives None, and the handler answers NotImplemented.
        """
        owner_full = ("CanonicalUser", "FULL_CONTROL", self.owner.id)
        grants = {
            (g.grantee_type, g.permission, g.id if g.grantee_type == "CanonicalUser" else g.uri)
            for g in self.grants
        }
        if owner_full not in grants:
            return None
        return _CANNED_BY_GRANTS.get(frozenset(grants - {owner_full}))

    @classmethod
    def from_xml(cls, body: bytes) -> AccessControlPolicy:
        try:
            root = _parse(body, "AccessControlPolicy", MAX_CONFIG_BODY)
            pairs = _children(root, ("Owner", "AccessControlList"))
            owner_el = _single(pairs, "Owner")
            if owner_el is None:
                raise _malformed()
            o = _children(owner_el, ("ID", "DisplayName"))
            owner = Owner(_required_text(o, "ID"), _single_text(o, "DisplayName"))
            grants: list[Grant] = []
            acl = _single(pairs, "AccessControlList")
            for _, grant_el in [] if acl is None else _children(acl, ("Grant",)):
                g = _children(grant_el, ("Grantee", "Permission"))
                grantee = _single(g, "Grantee")
                if grantee is None:
                    raise _malformed()
                kind = grantee.get(f"{{{XSI_NS}}}type")
                e = _children(grantee, ("ID", "DisplayName", "URI", "EmailAddress"))
                permission = _required_text(g, "Permission").strip()
                if kind not in ("CanonicalUser", "Group", "AmazonCustomerByEmail") or (
                    permission not in PERMISSIONS
                ):
                    raise _malformed()
                grants.append(
                    Grant(
                        kind,
                        permission,
                        _single_text(e, "ID"),
                        _single_text(e, "DisplayName"),
                        _single_text(e, "URI"),
                        _single_text(e, "EmailAddress"),
                    )
                )
        except S3Error as exc:
            if exc.code == "MalformedXML":
                raise S3Error("MalformedACLError") from None
            raise
        return cls(owner, tuple(grants))

    def to_xml(self) -> bytes:
        b = _root("AccessControlPolicy")
        b.owner("Owner", self.owner)
        acl = b.child("AccessControlList")
        for grant in self.grants:
            g = acl.child("Grant")
            grantee = g.child("Grantee", {"xmlns:xsi": XSI_NS, "xsi:type": grant.grantee_type})
            grantee.text("ID", grant.id)
            grantee.text("DisplayName", grant.display_name)
            grantee.text("URI", grant.uri)
            grantee.text("EmailAddress", grant.email)
            g.text("Permission", grant.permission)
        return _finish(b)


def _user_grant(owner: Owner, permission: str) -> Grant:
    return Grant("CanonicalUser", permission, owner.id, owner.display_name)


#: Grants beyond the owner's FULL_CONTROL -> the canned ACL they make.
_CANNED_BY_GRANTS: Mapping[frozenset[tuple[str, str, str | None]], CannedAcl] = {
    frozenset(): CannedAcl.PRIVATE,
    frozenset({("Group", "READ", ALL_USERS)}): CannedAcl.PUBLIC_READ,
    frozenset(
        {("Group", "READ", ALL_USERS), ("Group", "WRITE", ALL_USERS)}
    ): CannedAcl.PUBLIC_READ_WRITE,
    frozenset({("Group", "READ", AUTHENTICATED_USERS)}): CannedAcl.AUTHENTICATED_READ,
}


# --- policy status, public access block ----------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    is_public: bool

    def to_xml(self) -> bytes:
        b = _root("PolicyStatus")
        b.text("IsPublic", self.is_public)
        return _finish(b)


@dataclass(frozen=True, slots=True)
class PublicAccessBlockConfiguration:
    """Put/GetPublicAccessBlock; an element left out of a Put body means false."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    _NAMES: ClassVar[tuple[str, ...]] = (
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    )

    @classmethod
    def from_xml(cls, body: bytes) -> PublicAccessBlockConfiguration:
        root = _parse(body, "PublicAccessBlockConfiguration", MAX_CONFIG_BODY)
        pairs = _children(root, cls._NAMES)
        values = [_single_text(pairs, n) for n in cls._NAMES]
        a, b, c, d = (False if v is None else _bool(v) for v in values)
        return cls(a, b, c, d)

    def to_xml(self) -> bytes:
        b = _root("PublicAccessBlockConfiguration")
        b.text("BlockPublicAcls", self.block_public_acls)
        b.text("IgnorePublicAcls", self.ignore_public_acls)
        b.text("BlockPublicPolicy", self.block_public_policy)
        b.text("RestrictPublicBuckets", self.restrict_public_buckets)
        return _finish(b)


# --- CreateBucket --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateBucketConfiguration:
    """CreateBucket's optional body; an empty body is ``location_constraint=None``."""

    location_constraint: str | None = None

    @classmethod
    def from_xml(cls, body: bytes) -> CreateBucketConfiguration:
        if not body.strip():
            return cls()
        root = _parse(body, "CreateBucketConfiguration", MAX_CONFIG_BODY)
        pairs = _children(root, ("LocationConstraint", "Location", "Bucket", "Tags"))
        for unserved in ("Location", "Bucket", "Tags"):
            if _single(pairs, unserved) is not None:
                raise S3Error(
                    "NotImplemented",
                    f"CreateBucketConfiguration/{unserved} is not implemented by kvbox",
                )
        value = _single_text(pairs, "LocationConstraint")
        return cls(None if value is None else value.strip())

    def to_xml(self) -> bytes:
        b = _root("CreateBucketConfiguration")
        b.text("LocationConstraint", self.location_constraint)
        return _finish(b)
