"""multipart/form-data bodies (S3 POST uploads) as events, without I/O.

Layer: proto (sans-IO: ``feed(bytes) -> events``, ``finish() -> events``; no asyncio).
It is a thin, typed layer over the ``multipart`` package's ``PushMultipartParser``, a
push parser with limits made for exactly this (RFC 7578), and it adds what an S3 POST
upload needs from a form (AWS's "Browser-based uploads using POST"):

* Form fields before the file arrive whole, as ``Field`` events; their names, values and
  part headers together may not pass ``MAX_FIELD_BYTES`` (AWS: "the form data and
  boundaries, excluding the contents of the file, cannot exceed 20 KB"), so nothing but
  the file can make the server hold more than that.
* The part named ``file`` is the upload: ``FileStart``, then ``FileData`` pieces as they
  come (never gathered), then ``FileEnd``. Its bytes end exactly where the next boundary
  begins, so ``FileEnd`` proves the file is whole.
* Parts after the file are read and dropped: AWS ignores them. Only their framing is
  checked, so a body must still end with its closing boundary (``finish`` gives
  ``End``); a body that stops early, or breaks the grammar anywhere, is
  ``MalformedForm``.
* Field names are kept as sent (S3 compares them case-insensitively; that is the
  caller's job); values are bytes (the caller decodes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import multipart

from kvbox.errors import FormFieldsTooLarge as FormFieldsTooLarge
from kvbox.errors import MalformedForm as MalformedForm

#: AWS's limit on everything in a POST form but the file (names, values, part headers).
MAX_FIELD_BYTES: Final = 20 * 1024
#: One part header line (name and value): generous for a Content-Disposition with a
#: long file name, far below anything that could hurt.
MAX_HEADER_LINE: Final = 4096 + 128
#: Headers per part: RFC 7578 uses at most three.
MAX_HEADERS: Final = 8
#: Parts per form: a real form has a few dozen; this bounds the work a hostile body of
#: tiny parts after the file can cause.
MAX_PARTS: Final = 1000
#: The form field that carries the upload.
FILE_FIELD: Final = "file"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    value: bytes


@dataclass(frozen=True, slots=True)
class FileStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class FileData:
    data: bytes


@dataclass(frozen=True, slots=True)
class FileEnd:
    size: int


@dataclass(frozen=True, slots=True)
class End:
    """The closing boundary: the form is complete."""


Event = Field | FileStart | FileData | FileEnd | End


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type, or MalformedForm.

    >>> boundary_of('multipart/form-data; boundary="----x"')
    '----x'
    """
    if content_type is None:
        raise MalformedForm("Bucket POST must be of the enclosure-type multipart/form-data")
    kind, options = multipart.parse_options_header(content_type)
    if kind.lower() != "multipart/form-data":
        raise MalformedForm("Bucket POST must be of the enclosure-type multipart/form-data")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200 or not boundary.isascii():
        raise MalformedForm("The multipart/form-data boundary is missing or invalid")
    return str(boundary)


class FormParser:
    """One form. ``feed`` every received piece, then ``finish`` at the end of the body.

    A ``MalformedForm`` is final: the parser must not be fed again.
    """

    def __init__(self, boundary: str, *, max_field_bytes: int = MAX_FIELD_BYTES) -> None:
        try:
            self._parser = multipart.PushMultipartParser(
                boundary,
                max_header_size=MAX_HEADER_LINE,
                max_header_count=MAX_HEADERS,
                max_segment_count=MAX_PARTS,
                # Lenient about a preamble, an epilogue and folded part headers (RFC
                # 2046 allows the first two); every limit and the closing boundary are
                # enforced all the same.
                strict=False,
            )
        except multipart.MultipartError as exc:
            raise MalformedForm(f"bad multipart boundary: {exc}") from None
        self._max_field_bytes = max_field_bytes
        self._field_bytes = 0
        self._segment: Any = None  # the multipart.MultipartSegment being read
        self._value = bytearray()
        self._in_file = False
        self._file_seen = False
        self._file_size = 0
        self._done = False

    @property
    def file_seen(self) -> bool:
        return self._file_seen

    def feed(self, data: bytes) -> list[Event]:
        if not data:
            return []
        return self._run(data)

    def finish(self) -> list[Event]:
        """The end of input: ``End``, or MalformedForm unless the closing boundary came."""
        out = self._run(b"")  # the parser checks that the stream is complete
        if not self._done:  # pragma: no cover - close() raises first
            raise MalformedForm("The POST body ended before its closing boundary")
        return out

    def _run(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        try:
            for ev in self._parser.parse(data):
                self._on(ev, out)
        except multipart.MultipartError as exc:
            raise MalformedForm(f"The POST body is not valid multipart/form-data: {exc}") from None
        if self._parser.closed and not self._done:
            self._done = True
            out.append(End())
        return out

    def _on(self, ev: Any, out: list[Event]) -> None:
        if isinstance(ev, multipart.MultipartSegment):
            self._start(ev, out)
        elif ev is None:
            self._end(out)
        else:
            self._data(bytes(ev), out)

    def _start(self, seg: Any, out: list[Event]) -> None:
        if seg.disposition != "form-data" or not seg.name:
            raise MalformedForm("every part of a POST form must be form-data with a name")
        self._segment = seg
        if self._file_seen:
            return  # after the file: read and dropped
        name = str(seg.name)
        if name.lower() == FILE_FIELD:
            self._in_file = self._file_seen = True
            out.append(FileStart(name, seg.filename, seg.content_type))
            return
        self._count(sum(len(k) + len(v) + 4 for k, v in seg.headerlist))
        self._value.clear()

    def _data(self, chunk: bytes, out: list[Event]) -> None:
        if self._in_file:
            self._file_size += len(chunk)
            out.append(FileData(chunk))
        elif not self._file_seen:
            self._count(len(chunk))
            self._value += chunk

    def _end(self, out: list[Event]) -> None:
        seg, self._segment = self._segment, None
        if self._in_file:
            self._in_file = False
            out.append(FileEnd(self._file_size))
        elif seg is not None and not self._file_seen:
            out.append(Field(str(seg.name), bytes(self._value)))
            self._value.clear()

    def _count(self, n: int) -> None:
        self._field_bytes += n
        if self._field_bytes > self._max_field_bytes:
            raise FormFieldsTooLarge(
                f"the POST form fields before the file pass {self._max_field_bytes} bytes"
            )


def parse_all(boundary: str, body: Iterable[bytes]) -> list[Event]:
    """Every event of a whole body (tests and small callers)."""
    parser = FormParser(boundary)
    out: list[Event] = []
    for piece in body:
        out += parser.feed(piece)
    return out + parser.finish()
