"""kvbox.proto.httphead: the request-head meter, fed whole, byte by byte and split anywhere.

Layer: tests/proto. Every case of ``CASES`` runs three ways (h11's ``tr()`` habit): all at
once, one byte at a time, and followed by trailing bytes (a body, a pipelined request),
which must never be counted.
"""

from __future__ import annotations

import doctest
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvbox.proto import httphead
from kvbox.proto.httphead import HeadMeter, Verdict

GET = b"GET /b/k HTTP/1.1\r\n"

#: (head, max_bytes, max_fields) -> (verdict, done, size, fields) after feeding it.
CASES: list[tuple[bytes, int, int, Verdict | None, bool, int, int]] = [
    (GET + b"\r\n", 100, 10, None, True, len(GET) + 2, 0),
    (GET + b"Host: a\r\n\r\n", 100, 10, None, True, len(GET) + 11, 1),
    (GET + b"Host: a\r\n", 100, 10, None, False, len(GET) + 9, 1),
    (GET + b"Host: a\r\nX: 1\r\n\r\n", 100, 1, "fields", True, len(GET) + 17, 2),
    (GET + b"Host: a\r\nX: 1\r\nY", 100, 1, "fields", False, len(GET) + 16, 2),
    (GET + b"X: " + b"x" * 100 + b"\r\n", 64, 10, "bytes", False, len(GET) + 105, 1),
    # exactly at the limit is allowed
    (GET + b"\r\n", len(GET) + 2, 0, None, True, len(GET) + 2, 0),
    (GET + b"\r\n", len(GET) + 1, 0, "bytes", True, len(GET) + 2, 0),
    # empty lines before the request line are tolerated but counted
    (b"\r\n\r\n" + GET + b"\r\n", 100, 0, None, True, len(GET) + 6, 0),
    (b"\r\n" * 40, 64, 10, "bytes", False, 80, 0),
    (b"\n\n\r\n", 64, 10, None, False, 4, 0),
    # a request line with no end in sight
    (b"G" * 200, 100, 10, "bytes", False, 200, 0),
]


def _feed_all(meter: HeadMeter, parts: list[bytes]) -> Verdict | None:
    verdict: Verdict | None = None
    for part in parts:
        verdict = meter.feed(part) or verdict
    return verdict


#: Trailing bytes only make sense after a finished head (before it, they are head bytes).
WAYS = [
    pytest.param(way, *case, id=f"{way}-{i}")
    for i, case in enumerate(CASES)
    for way in ("whole", "bytewise", "trailing")
    if way != "trailing" or case[4]
]


@pytest.mark.parametrize(
    ("way", "head", "max_bytes", "max_fields", "verdict", "done", "size", "fields"), WAYS
)
def test_cases(
    way: str,
    head: bytes,
    max_bytes: int,
    max_fields: int,
    verdict: Verdict | None,
    done: bool,
    size: int,
    fields: int,
) -> None:
    meter = HeadMeter(max_bytes=max_bytes, max_fields=max_fields)
    if way == "whole":
        got = meter.feed(head)
    elif way == "bytewise":
        got = _feed_all(meter, [head[i : i + 1] for i in range(len(head))])
    else:
        got = meter.feed(head + b"PUT-BODY\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert got == verdict
    assert (meter.done, meter.size, meter.fields) == (done, size, fields)


def test_bytewise_stops_counting_at_the_verdict_limit() -> None:
    """Fed a byte at a time, the verdict comes at the first byte past the limit."""
    meter = HeadMeter(max_bytes=30, max_fields=100)
    head = GET + b"X-Long: " + b"v" * 50
    for i, byte in enumerate(head):
        verdict = meter.feed(bytes([byte]))
        if verdict is not None:
            assert (verdict, i + 1) == ("bytes", 31)
            return
    raise AssertionError("no verdict")


def test_reset_measures_the_next_head() -> None:
    meter = HeadMeter(max_bytes=100, max_fields=1)
    assert meter.feed(GET + b"A: 1\r\n\r\nbody") is None and meter.done
    assert meter.feed(b"more body") is None and meter.size == len(GET) + 8
    meter.reset()
    assert meter.feed(GET + b"A: 1\r\nB: 2\r\n") == "fields"


def test_doctests() -> None:
    assert doctest.testmod(httphead).failed == 0


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_split_gives_the_same_answer(data: bytes, cuts: list[int]) -> None:
    """Random bytes, cut anywhere: the same verdict, size and fields as fed whole, and
    the size never exceeds what was fed."""
    whole = HeadMeter(max_bytes=200, max_fields=5)
    expected = whole.feed(data)
    split = HeadMeter(max_bytes=200, max_fields=5)
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    parts = [data[a:b] for a, b in itertools.pairwise(points)]
    got: Verdict | None = None
    for part in parts:
        got = got or split.feed(part)
        if got is not None:
            break
    if expected is None:
        assert got is None
        assert (split.done, split.size, split.fields) == (whole.done, whole.size, whole.fields)
    else:
        assert got is not None  # the same kind may come earlier on a split, never none
    assert whole.size <= len(data)
