"""multipart/form-data for POST uploads: h11-style feeding (whole, byte by byte, in random
cuts), the form rules (fields before the file whole, the file streamed, parts after it
dropped, the 20 KB limit) and fuzzing (random bytes raise only MalformedForm)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.errors import wire
from kvbox.proto.formdata import (
    MAX_FIELD_BYTES,
    End,
    Event,
    Field,
    FileData,
    FileEnd,
    FileStart,
    FormFieldsTooLarge,
    FormParser,
    MalformedForm,
    boundary_of,
    parse_all,
)

B = "----kvboxB0undary"


def body(
    fields: Sequence[tuple[str, bytes]],
    file: bytes | None,
    after: Sequence[tuple[str, bytes]] = (),
    filename: str = "a.txt",
) -> bytes:
    out = b""
    for name, value in fields:
        out += f'--{B}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value + b"\r\n"
    if file is not None:
        out += (
            f'--{B}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        out += file + b"\r\n"
    for name, value in after:
        out += f'--{B}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value + b"\r\n"
    return out + f"--{B}--\r\n".encode()


def squash(events: list[Event]) -> list[Event]:
    """The events with adjacent FileData joined (how a body is cut must not matter)."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, FileData) and out and isinstance(out[-1], FileData):
            out[-1] = FileData(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def fed(data: bytes, cuts: Sequence[int]) -> list[Event]:
    pieces, last = [], 0
    for cut in sorted(cuts):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    return squash(parse_all(B, pieces))


#: A file that holds CRLFs and a near-boundary, and every byte value.
FILE = b"line one\r\n--not a boundary\r\n" + bytes(range(256))
FORM = body(
    [("key", b"photos/${filename}"), ("policy", b"eyJ9"), ("x-amz-meta-a", "\u00e9".encode())],
    FILE,
    after=[("ignored", b"after the file")],
)
EXPECTED: list[Event] = [
    Field("key", b"photos/${filename}"),
    Field("policy", b"eyJ9"),
    Field("x-amz-meta-a", "\u00e9".encode()),
    FileStart("file", "a.txt", "text/plain"),
    FileData(FILE),
    FileEnd(len(FILE)),
    End(),
]


def test_whole_body() -> None:
    assert fed(FORM, []) == EXPECTED


def test_byte_by_byte() -> None:
    assert fed(FORM, range(1, len(FORM))) == EXPECTED


@given(st.lists(st.integers(min_value=1, max_value=len(FORM) - 1), max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_cuts(cuts: list[int]) -> None:
    assert fed(FORM, cuts) == EXPECTED


def test_trailing_epilogue_is_ignored() -> None:
    assert fed(FORM + b"epilogue junk\r\n", []) == EXPECTED


def test_a_body_cut_short_is_malformed_wherever_it_stops() -> None:
    for stop in (0, 5, 60, len(FORM) // 2, len(FORM) - 3):
        with pytest.raises(MalformedForm):
            parse_all(B, [FORM[:stop]])


def test_no_file_gives_fields_then_end() -> None:
    events = parse_all(B, [body([("key", b"k")], None)])
    assert events == [Field("key", b"k"), End()]


def test_parts_after_the_file_cost_nothing() -> None:
    """A part after the file may be any size: it is dropped as it streams."""
    big_after = body([("key", b"k")], b"f", after=[("pad", b"x" * (MAX_FIELD_BYTES * 4))])
    parser = FormParser(B)
    events = parser.feed(big_after) + parser.finish()
    assert [type(e) for e in events] == [Field, FileStart, FileData, FileEnd, End]


def test_fields_before_the_file_are_limited() -> None:
    big = body([("key", b"k"), ("pad", b"x" * MAX_FIELD_BYTES)], b"f")
    with pytest.raises(FormFieldsTooLarge):
        parse_all(B, [big])
    assert wire(FormFieldsTooLarge).s3 == "MaxPostPreDataLengthExceededError"
    assert wire(MalformedForm).s3 == "MalformedPOSTRequest"


def test_a_part_without_a_name_is_malformed() -> None:
    bad = f"--{B}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{B}--\r\n".encode()
    with pytest.raises(MalformedForm):
        parse_all(B, [bad])


def test_boundary_of_content_types() -> None:
    assert boundary_of(f"multipart/form-data; boundary={B}") == B
    assert boundary_of('Multipart/Form-Data; boundary="a b"') == "a b"
    for bad in (None, "text/plain", "multipart/form-data", "multipart/mixed; boundary=x"):
        with pytest.raises(MalformedForm):
            boundary_of(bad)


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_random_bytes_raise_only_malformed_form(data: bytes) -> None:
    with contextlib.suppress(MalformedForm):
        parse_all(B, [data])
