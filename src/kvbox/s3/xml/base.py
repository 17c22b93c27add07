"""What every S3 XML body shares: limits, the builder, safe parsing, errors, owners.

Layer: s3 protocol (pure; no I/O). The rules of all S3 XML are in ``kvbox.s3.xml``'s
docstring; the family modules build on these helpers.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from urllib.parse import quote

import defusedxml
import defusedxml.ElementTree as DET

from kvbox.s3.checksums import Algorithm
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


def no_checksums() -> Mapping[Algorithm, str]:
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


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


#: Character data escapes. CR is written as ``&#13;`` so that a key holding one survives
#: a parser's newline normalisation (XML 1.0 section 2.11); attributes also keep LF.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;"}
)


class Builder:
    """A tiny element builder: children appended in call order, None values skipped.

    It writes strings directly (a 1,000-key listing renders in a few milliseconds,
    several times faster than building and serialising an ElementTree).
    """

    __slots__ = ("_attrs", "_parts", "_tag")

    def __init__(self, tag: str, attrs: str = "") -> None:
        self._tag = tag
        self._attrs = attrs
        self._parts: list[str | Builder] = []

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

    def child(self, tag: str, attrs: dict[str, str] | None = None) -> Builder:
        rendered = "".join(
            f' {name}="{value.translate(_ATTR_ESCAPES)}"' for name, value in (attrs or {}).items()
        )
        b = Builder(tag, rendered)
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


def document(tag: str, *, namespace: bool = True) -> Builder:
    return Builder(tag, f' xmlns="{NS}"' if namespace else "")


def serialize(b: Builder) -> bytes:
    out = [_DECLARATION]
    b.write(out)
    return "".join(out).encode("utf-8")


# --- parsing helpers -----------------------------------------------------------------


def malformed(detail: str | None = None) -> S3Error:
    return S3Error("MalformedXML", detail)


def parse_body(body: bytes, root: str, limit: int) -> ET.Element:
    """Parse an untrusted body safely and check its root element's name."""
    if len(body) > limit:
        raise S3Error("MaxMessageLengthExceeded", extra={"MaxMessageLength": str(limit)})
    if not body.strip():
        raise malformed()
    try:
        el = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError):
        raise malformed() from None
    if local_name(el.tag) != root:
        raise malformed()
    return el


def children_of(el: ET.Element, allowed: Collection[str]) -> list[tuple[str, ET.Element]]:
    """The element's children by local name; any name not in ``allowed`` is malformed."""
    out: list[tuple[str, ET.Element]] = []
    for child in el:
        name = local_name(child.tag)
        if name not in allowed:
            raise malformed()
        out.append((name, child))
    return out


def leaf_text(el: ET.Element) -> str:
    """The text of an element that must have no children (exact, whitespace kept)."""
    if len(el):
        raise malformed()
    return el.text or ""


def single(pairs: list[tuple[str, ET.Element]], name: str) -> ET.Element | None:
    found = [e for n, e in pairs if n == name]
    if len(found) > 1:
        raise malformed()
    return found[0] if found else None


def single_text(pairs: list[tuple[str, ET.Element]], name: str) -> str | None:
    el = single(pairs, name)
    return None if el is None else leaf_text(el)


def required_text(pairs: list[tuple[str, ET.Element]], name: str) -> str:
    value = single_text(pairs, name)
    if value is None:
        raise malformed()
    return value


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t == "true":
        return True
    if t == "false":
        return False
    raise malformed()


def parse_int(text: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    t = text.strip()
    if _INT.fullmatch(t) is None:
        raise malformed()
    n = int(t)
    if not low <= n <= high:
        raise malformed()
    return n


_INT = re.compile(r"-?[0-9]{1,19}")


def parse_checksums(pairs: list[tuple[str, ET.Element]]) -> Mapping[Algorithm, str]:
    out: dict[Algorithm, str] = {}
    for name, el in pairs:
        alg = CHECKSUM_BY_ELEMENT.get(name)
        if alg is not None:
            if alg in out:
                raise malformed()
            out[alg] = leaf_text(el).strip()
    return MappingProxyType(out) if out else EMPTY_CHECKSUMS


CHECKSUM_BY_ELEMENT = {alg.element: alg for alg in Algorithm}


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
    b = document("Error", namespace=False)
    b.text("Code", err.code)
    b.text("Message", err.message)
    for name, value in err.extra.items():
        b.text(name, value)
    b.text("Resource", err.resource)
    b.text("RequestId", request_id)
    b.text("HostId", host_id)
    return serialize(b)


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
        el = parse_body(body, "Error", MAX_CONFIG_BODY)
        fields: dict[str, str] = {}
        for child in el:
            fields[local_name(child.tag)] = leaf_text(child)
        code = fields.pop("Code", "")
        message = fields.pop("Message", "")
        resource = fields.pop("Resource", None)
        request_id = fields.pop("RequestId", None)
        fields.pop("HostId", None)
        return cls(code, message, resource, request_id, MappingProxyType(fields))


# --- listings ----------------------------------------------------------------------


def write_common_prefixes(b: Builder, prefixes: Sequence[str], enc: bool) -> None:
    for p in prefixes:
        b.child("CommonPrefixes").text("Prefix", url_encode(p) if enc else p)


def url_encoded(value: str | None, enc: bool) -> str | None:
    return None if value is None else (url_encode(value) if enc else value)


def check_encoding(encoding_type: str | None) -> bool:
    if encoding_type not in (None, "url"):
        raise ValueError(f"unknown encoding type {encoding_type!r}")
    return encoding_type == "url"
