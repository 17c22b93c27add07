"""Tests of the GW-KV codec (kvbox.proto.gwkv), h11-style.

Every table case is fed three ways: whole, one byte at a time, and followed by more data
(a complete next request, and a partial one). Hypothesis checks the properties the
server relies on: encode/parse round-trips, random bytes never raise and never grow the
buffer past its bound, and replies round-trip through ``ReplyParser``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox import timeparse
from kvbox.errors import InvalidArgument, InvalidKey, ProtocolError, ValueTooLarge
from kvbox.proto import gwkv
from kvbox.proto.gwkv import (
    MAX_LINE,
    MAX_MULTI,
    BadRequest,
    BGet,
    BodyChunk,
    BodyEnd,
    BSet,
    Cas,
    Delete,
    Expect,
    Get,
    GetAt,
    GetVersion,
    Info,
    MultiGet,
    MultiSet,
    Ping,
    Quit,
    RequestEvent,
    RequestParser,
    Set,
    Stats,
    Version,
    Versions,
)
from kvbox.timeparse import MAX_INSTANT_NS, MIN_INSTANT_NS, InvalidInstant

VID = "01JDZ7W6G5R8Q4X0C2N9M1T3KA"
#: Small limits so the table can exercise streaming and TOOLARGE without megabytes.
THRESHOLD = 16
MAX_VALUE = 100


def make_parser() -> RequestParser:
    return RequestParser(max_value=MAX_VALUE, stream_threshold=THRESHOLD)


def drain(parser: RequestParser) -> list[RequestEvent]:
    events: list[RequestEvent] = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


def feed_pieces(pieces: Iterable[bytes], parser: RequestParser | None = None) -> list[RequestEvent]:
    parser = parser or make_parser()
    events: list[RequestEvent] = []
    for piece in pieces:
        parser.feed(piece)
        events.extend(drain(parser))
    return events


def coalesce(events: Sequence[RequestEvent]) -> list[RequestEvent]:
    """Join adjacent BodyChunks: how a body is cut depends on how it arrived."""
    out: list[RequestEvent] = []
    for event in events:
        if isinstance(event, BodyChunk) and out and isinstance(out[-1], BodyChunk):
            out[-1] = BodyChunk(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def bad(code: str, fatal: bool = False) -> BadRequest:
    """A BadRequest to compare by code and fatality (messages are free text)."""
    return BadRequest(code, "", fatal)


def normalize(events: Sequence[RequestEvent]) -> list[RequestEvent]:
    return [
        BadRequest(e.code, "", e.fatal) if isinstance(e, BadRequest) else e
        for e in coalesce(events)
    ]


def is_fatal(events: Sequence[RequestEvent]) -> bool:
    return bool(events) and isinstance(events[-1], BadRequest) and events[-1].fatal


K64 = "k" * 64
V1024 = b"v" * 1024

# (wire bytes, expected events with BadRequest messages blanked)
CASES: list[tuple[bytes, list[RequestEvent]]] = [
    # basic protocol
    (b"SET apple red\n", [Set("apple", b"red")]),
    (b"SET apple red\r\n", [Set("apple", b"red")]),
    (b"set apple red\n", [Set("apple", b"red")]),
    (b"SeT Apple red apple\n", [Set("Apple", b"red apple")]),
    (b"SET k \n", [Set("k", b"")]),
    (b"SET k  two  spaces \n", [Set("k", b" two  spaces ")]),
    (b"SET k\n", [bad("ARGS")]),
    (b"SET\n", [bad("ARGS")]),
    (b"SET  v\n", [bad("BADKEY")]),
    (b"SET bad-key x\n", [bad("BADKEY")]),
    (b"SET " + K64.encode() + b" x\n", [Set(K64, b"x")]),
    (b"SET " + K64.encode() + b"k x\n", [bad("BADKEY")]),
    (b"SET k\xc3\xa9 x\n", [bad("BADKEY")]),
    (b"SET k " + V1024 + b"\n", [Set("k", V1024)]),
    (b"SET k " + V1024 + b"v\n", [bad("TOOLARGE")]),
    (b"SET k a\x00b\n", [bad("BADVALUE")]),
    (b"SET k a\rb\n", [bad("BADVALUE")]),
    (b"SET k a\r\r\n", [bad("BADVALUE")]),
    (b"SET k caf\xc3\xa9\n", [bad("BADVALUE")]),
    (b"SET k \x01\x7f\t~\n", [Set("k", b"\x01\x7f\t~")]),
    (b"GET apple\n", [Get("apple")]),
    (b"get apple\r\n", [Get("apple")]),
    (b"GET\n", [bad("ARGS")]),
    (b"GET \n", [bad("BADKEY")]),
    (b"GET a b\n", [bad("ARGS")]),
    (b"GET a-b\n", [bad("BADKEY")]),
    (b"STATS\n", [Stats()]),
    (b"stats\r\n", [Stats()]),
    (b"STATS x\n", [bad("ARGS")]),
    # extensions
    (b"DELETE k\n", [Delete("k")]),
    (b"DELETE\n", [bad("ARGS")]),
    (b"CAS k - v\n", [Cas("k", None, b"v")]),
    (b"CAS k " + VID.encode() + b" v w\n", [Cas("k", VID, b"v w")]),
    (b"CAS k - \n", [Cas("k", None, b"")]),
    (b"CAS k -\n", [bad("ARGS")]),
    (b"CAS k\n", [bad("ARGS")]),
    (b"CAS k x! v\n", [bad("ARGS")]),
    (b"CAS k! - v\n", [bad("BADKEY")]),
    (b"CAS k - " + V1024 + b"v\n", [bad("TOOLARGE")]),
    (b"CAS k - \x80\n", [bad("BADVALUE")]),
    (b"MULTISET 2\na 1\nb two words\n", [MultiSet((("a", b"1"), ("b", b"two words")))]),
    (b"multiset 1\r\na 1\r\n", [MultiSet((("a", b"1"),))]),
    (b"MULTISET 2\na 1\nbad! 2\n", [bad("BADKEY")]),
    (b"MULTISET 2\nnospace\nbad! 2\n", [bad("ARGS")]),
    (b"MULTISET 2\na \x00\nb 1\n", [bad("BADVALUE")]),
    (b"MULTISET 1\na " + V1024 + b"v\n", [bad("TOOLARGE")]),
    (b"MULTISET 0\n", [bad("ARGS")]),
    (b"MULTISET\n", [bad("ARGS")]),
    (b"MULTISET 1001\n", [bad("ARGS", fatal=True)]),
    (b"MULTISET two\na 1\n", [bad("BADLENGTH", fatal=True)]),
    (b"MULTIGET a b c\n", [MultiGet(("a", "b", "c"))]),
    (b"MULTIGET a\n", [MultiGet(("a",))]),
    (b"MULTIGET\n", [bad("ARGS")]),
    (b"MULTIGET \n", [bad("ARGS")]),
    (b"MULTIGET a  b\n", [bad("BADKEY")]),
    (b"MULTIGET a b!\n", [bad("BADKEY")]),
    (b"MULTIGET a " + K64.encode() + b"k\n", [bad("BADKEY")]),
    (
        b"MULTIGET " + b" ".join([K64.encode()] * MAX_MULTI) + b"\n",
        [MultiGet((K64,) * MAX_MULTI)],
    ),
    (b"MULTIGET" + b" k" * (MAX_MULTI + 1) + b"\n", [bad("ARGS")]),
    (b"BSET blob 5\nhe\x00lo\n", [BSet("blob", 5, b"he\x00lo")]),
    (b"bset blob 6\nGET x\n\n", [BSet("blob", 6, b"GET x\n")]),
    (b"BSET blob 0\n\n", [BSet("blob", 0, b"")]),
    (b"BSET blob 007\n\r\n\xff\x00\x01\x02\x03\n", [BSet("blob", 7, b"\r\n\xff\x00\x01\x02\x03")]),
    (
        b"BSET big 20\n" + b"x" * 20 + b"\n",
        [BSet("big", 20, None), BodyChunk(b"x" * 20), BodyEnd()],
    ),
    (b"BSET blob 5\nhello!", [bad("BADLENGTH", fatal=True)]),
    (
        b"BSET big 20\n" + b"x" * 21,
        [BSet("big", 20, None), BodyChunk(b"x" * 20), bad("BADLENGTH", True)],
    ),
    (b"BSET blob x\n", [bad("BADLENGTH", fatal=True)]),
    (b"BSET blob -1\n", [bad("BADLENGTH", fatal=True)]),
    (b"BSET blob 1" + b"0" * 30 + b"\n", [bad("TOOLARGE", fatal=True)]),
    (b"BSET blob 101\n", [bad("TOOLARGE", fatal=True)]),
    (
        b"BSET blob 100\n" + b"y" * 100 + b"\n",
        [BSet("blob", 100, None), BodyChunk(b"y" * 100), BodyEnd()],
    ),
    (b"BSET bad! 3\nabc\n", [bad("BADKEY")]),
    (b"BSET bad! 30\n" + b"PING\n" * 6 + b"\n", [bad("BADKEY")]),
    (b"BSET bad! 3\nabcd", [bad("BADLENGTH", fatal=True)]),
    (b"BSET blob\n", [bad("ARGS")]),
    (b"BSET blob 1 2\n", [bad("ARGS")]),
    (b"BCAS blob - 3\nabc\n", [BSet("blob", 3, b"abc", conditional=True, expected=None)]),
    (
        b"BCAS blob " + VID.encode() + b" 3\nabc\n",
        [BSet("blob", 3, b"abc", conditional=True, expected=VID)],
    ),
    (
        b"BCAS blob - 17\n" + b"z" * 17 + b"\n",
        [BSet("blob", 17, None, True, None), BodyChunk(b"z" * 17), BodyEnd()],
    ),
    (b"BCAS blob x! 3\nabc\n", [bad("ARGS")]),
    (b"BCAS blob 3\n", [bad("ARGS")]),
    (b"BGET blob\n", [BGet("blob")]),
    (b"BGET\n", [bad("ARGS")]),
    (b"VERSION k\n", [Version("k")]),
    (b"VERSION k l\n", [bad("ARGS")]),
    (b"VERSIONS k\n", [Versions("k")]),
    (b"GETV k " + VID.encode() + b"\n", [GetVersion("k", VID)]),
    (b"bgetv k " + VID.encode() + b"\n", [GetVersion("k", VID, binary=True)]),
    (b"GETV k nope\n", [bad("ARGS")]),
    # time-travel reads: RFC 3339 with a zone, or epoch milliseconds
    (b"GETAT k 1500\n", [GetAt("k", 1_500_000_000)]),
    (b"getat k 0\r\n", [GetAt("k", 0)]),
    (b"GETAT k 1970-01-01T00:00:01.5Z\n", [GetAt("k", 1_500_000_000)]),
    (b"BGETAT k 1970-01-01T00:00:01.5Z\n", [GetAt("k", 1_500_000_000, binary=True)]),
    (b"GETAT k 1970-01-01t01:00:00.000000001+01:00\n", [GetAt("k", 1)]),
    (b"GETAT k 1969-12-31T19:00:00-05:00\n", [GetAt("k", 0)]),
    (b"GETAT k 2026-11-25T01:02:03.1234567891z\n", [GetAt("k", 1_795_568_523_123_456_789)]),
    (b"GETAT k 1795568523123\n", [GetAt("k", 1_795_568_523_123_000_000)]),
    (b"GETAT k 2026-11-25T01:02:03\n", [bad("ARGS")]),  # no zone
    (b"GETAT k 2026-11-25 01:02:03Z\n", [bad("ARGS")]),  # a space splits the instant
    (b"GETAT k 2026-11-25T01:02:03+0100\n", [bad("ARGS")]),
    (b"GETAT k 20261125T010203Z\n", [bad("ARGS")]),
    (b"GETAT k 2026-02-30T00:00:00Z\n", [bad("ARGS")]),
    (b"GETAT k 2026-12-31T23:59:60Z\n", [bad("ARGS")]),
    (b"GETAT k 2026-11-25T24:00:00Z\n", [bad("ARGS")]),
    (b"GETAT k 2026-11-25T01:02:03+24:00\n", [bad("ARGS")]),
    (b"GETAT k -1500\n", [bad("ARGS")]),
    (b"GETAT k 1.5\n", [bad("ARGS")]),
    (b"GETAT k 99999999999999999999\n", [bad("ARGS")]),
    (b"GETAT k \xd9\xa1\xd9\xa2\n", [bad("ARGS")]),  # Arabic-Indic digits
    (b"GETAT k yesterday\n", [bad("ARGS")]),
    (b"GETAT k \n", [bad("ARGS")]),
    (b"GETAT k\n", [bad("ARGS")]),
    (b"GETAT\n", [bad("ARGS")]),
    (b"GETAT k 1500 extra\n", [bad("ARGS")]),
    (b"GETAT bad! 1500\n", [bad("BADKEY")]),
    (b"BGETAT bad! yesterday\n", [bad("BADKEY")]),
    (b"PING\n", [Ping()]),
    (b"PING x\n", [bad("ARGS")]),
    (b"INFO\n", [Info()]),
    (b"info\n", [Info()]),
    (b"QUIT\n", [Quit()]),
    (b"QUIT now\n", [bad("ARGS")]),
    # unknown and framing
    (b"FOO bar\n", [bad("UNKNOWN")]),
    (b"\n", [bad("UNKNOWN")]),
    (b"\r\n", [bad("UNKNOWN")]),
    (b"G\xffT k\n", [bad("UNKNOWN")]),
    (b"GET " + b"a" * (MAX_LINE - 5) + b"\n", [bad("BADKEY")]),  # exactly MAX_LINE
    (b"GET " + b"a" * (MAX_LINE - 4) + b"\n", [bad("LINETOOLONG", fatal=True)]),
    (b"x" * MAX_LINE, [bad("LINETOOLONG", fatal=True)]),
    (b"MULTISET 1\n" + b"a" * MAX_LINE, [bad("LINETOOLONG", fatal=True)]),
    # several requests in one stream; replies are one per request
    (
        b"GET pear\nSET bad-key x\nMULTIGET apple pear\n",
        [Get("pear"), bad("BADKEY"), MultiGet(("apple", "pear"))],
    ),
    (b"SET a 1\nBSET b 2\nxy\nGET a\n", [Set("a", b"1"), BSet("b", 2, b"xy"), Get("a")]),
]


def _ids() -> list[str]:
    return [repr(case[0][:40]) for case in CASES]


@pytest.mark.parametrize(("wire", "expected"), CASES, ids=_ids())
def test_whole(wire: bytes, expected: list[RequestEvent]) -> None:
    assert normalize(feed_pieces([wire])) == expected


@pytest.mark.parametrize(("wire", "expected"), CASES, ids=_ids())
def test_byte_by_byte(wire: bytes, expected: list[RequestEvent]) -> None:
    pieces = [wire[i : i + 1] for i in range(len(wire))]
    assert normalize(feed_pieces(pieces)) == expected


@pytest.mark.parametrize(("wire", "expected"), CASES, ids=_ids())
def test_followed_by_more(wire: bytes, expected: list[RequestEvent]) -> None:
    parser = make_parser()
    events = feed_pieces([wire + b"PING\nGE"], parser)
    if is_fatal(expected):
        assert normalize(events) == expected
        assert parser.closed
        assert parser.held_bytes == 0
        assert not parser.in_request
        parser.feed(b"T a\n")
        assert parser.next_event() is None
    else:
        assert normalize(events) == [*expected, Ping()]
        assert parser.in_request  # "GE" is a request in progress
        parser.feed(b"T a\n")
        assert drain(parser) == [Get("a")]
        assert not parser.in_request


def test_bad_request_messages_are_single_safe_lines() -> None:
    events = feed_pieces([wire for wire, _ in CASES])
    for event in events:
        if isinstance(event, BadRequest):
            assert event.message and "\n" not in event.message and event.message.isascii()
            assert event.code in {
                "UNKNOWN",
                "ARGS",
                "BADKEY",
                "BADVALUE",
                "TOOLARGE",
                "LINETOOLONG",
                "BADLENGTH",
            }


def busy(parser: RequestParser) -> bool:
    """``in_request`` through a call, so mypy does not narrow the property."""
    return parser.in_request


def test_in_request_tracks_partial_requests() -> None:
    parser = make_parser()
    assert not busy(parser)
    parser.feed(b"BSET k 3\nab")
    assert parser.next_event() is None
    assert busy(parser)
    parser.feed(b"c\n")
    assert parser.next_event() == BSet("k", 3, b"abc")
    assert not busy(parser)
    parser.feed(b"MULTISET 2\na 1\n")
    assert parser.next_event() is None
    assert busy(parser)
    parser.feed(b"b 2\n")
    assert parser.next_event() == MultiSet((("a", b"1"), ("b", b"2")))
    assert not busy(parser)


def test_streamed_body_is_never_held_whole() -> None:
    parser = RequestParser(stream_threshold=1000)
    parser.feed(b"BSET big 1000000\n")
    assert parser.next_event() == BSet("big", 1_000_000, None)
    total = 0
    piece = b"\x00" * 65536
    sent = 0
    while sent < 1_000_000:
        data = piece[: 1_000_000 - sent]
        parser.feed(data)
        sent += len(data)
        for event in drain(parser):
            assert isinstance(event, BodyChunk)
            assert event.data is data  # pieces fed mid-body pass through without a copy
            total += len(event.data)
        assert parser.held_bytes <= len(piece)
    assert total == 1_000_000
    parser.feed(b"\nPING\n")
    assert drain(parser) == [BodyEnd(), Ping()]


def test_body_chunks_are_capped() -> None:
    parser = RequestParser(stream_threshold=10)
    parser.feed(b"BSET big 3000000\n" + b"a" * 3_000_000 + b"\n")
    events = drain(parser)
    assert events[0] == BSet("big", 3_000_000, None)
    chunks = events[1:-1]
    assert all(isinstance(c, BodyChunk) and len(c.data) <= gwkv.MAX_CHUNK for c in chunks)
    assert sum(len(c.data) for c in chunks if isinstance(c, BodyChunk)) == 3_000_000
    assert events[-1] == BodyEnd()


def test_default_max_value_and_threshold() -> None:
    parser = RequestParser()
    parser.feed(b"BSET k %d\n" % gwkv.STREAM_THRESHOLD)
    assert parser.next_event() is None  # small enough to arrive whole
    parser = RequestParser()
    parser.feed(b"BSET k %d\n" % (gwkv.STREAM_THRESHOLD + 1))
    assert parser.next_event() == BSet("k", gwkv.STREAM_THRESHOLD + 1, None)
    parser = RequestParser()
    parser.feed(b"BSET k %d\n" % (gwkv.DEFAULT_MAX_VALUE + 1))
    event = parser.next_event()
    assert isinstance(event, BadRequest) and event.code == "TOOLARGE" and event.fatal


def test_newline_free_flood_is_cut_at_max_line() -> None:
    parser = make_parser()
    events: list[RequestEvent] = []
    for _ in range(MAX_LINE // 1000 + 2):
        parser.feed(b"a" * 1000)
        events.extend(drain(parser))
        assert parser.held_bytes <= MAX_LINE + 1000
    assert normalize(events) == [bad("LINETOOLONG", fatal=True)]


# --- properties -----------------------------------------------------------------------

keys = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=1,
    max_size=64,
)
texts = st.binary(max_size=1024).filter(
    lambda v: v.isascii() and 0 not in v and 13 not in v and 10 not in v
) | st.text(
    alphabet=st.characters(min_codepoint=1, max_codepoint=127, exclude_characters="\r\n"),
    max_size=1024,
).map(str.encode)
version_ids = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)
expecteds = st.none() | version_ids
small_values = st.binary(max_size=THRESHOLD)

requests = st.one_of(
    st.builds(Set, keys, texts),
    st.builds(Get, keys),
    st.just(Stats()),
    st.builds(Delete, keys),
    st.builds(Cas, keys, expecteds, texts),
    st.builds(
        MultiSet,
        st.lists(st.tuples(keys, texts), min_size=1, max_size=20).map(tuple),
    ),
    st.builds(MultiGet, st.lists(keys, min_size=1, max_size=50).map(tuple)),
    small_values.map(lambda v: BSet("blob", len(v), v)),
    st.tuples(keys, expecteds, small_values).map(
        lambda t: BSet(t[0], len(t[2]), t[2], conditional=True, expected=t[1])
    ),
    st.builds(BGet, keys),
    st.builds(Version, keys),
    st.builds(Versions, keys),
    st.builds(GetVersion, keys, version_ids, st.booleans()),
    st.builds(GetAt, keys, st.integers(MIN_INSTANT_NS, MAX_INSTANT_NS), st.booleans()),
    st.just(Ping()),
    st.just(Info()),
    st.just(Quit()),
)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@given(st.lists(requests, min_size=1, max_size=20), st.lists(st.integers(0, 10**6)))
def test_parse_encode_roundtrip(reqs: list[gwkv.Request], cuts: list[int]) -> None:
    wire = b"".join(gwkv.encode_request(r) for r in reqs)
    assert feed_pieces(split(wire, cuts)) == reqs


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            requests.map(gwkv.encode_request),
            st.sampled_from([b"BSET k 50\n", b"MULTISET 3\n", b"\n", b"\r", b"x" * 5000]),
        ),
        max_size=30,
    ),
    st.lists(st.integers(0, 10**6)),
)
@settings(max_examples=300)
def test_random_bytes_only_produce_events(parts: list[bytes], cuts: list[int]) -> None:
    parser = make_parser()
    request_types = (
        Set,
        Get,
        Stats,
        Delete,
        Cas,
        MultiSet,
        MultiGet,
        BSet,
        BGet,
        Version,
        Versions,
        GetVersion,
        GetAt,
        Ping,
        Info,
        Quit,
    )
    for piece in split(b"".join(parts), cuts):
        parser.feed(piece)
        while (event := parser.next_event()) is not None:
            assert isinstance(event, (*request_types, BodyChunk, BodyEnd, BadRequest))
        assert parser.held_bytes <= MAX_LINE + THRESHOLD + 1 + len(piece)


@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(0, 10**6)))
def test_random_payload_roundtrip_when_streamed(value: bytes, cuts: list[int]) -> None:
    wire = gwkv.encode_bset("big", value) + b"PING\n"
    events = coalesce(feed_pieces(split(wire, cuts), RequestParser(stream_threshold=0)))
    assert events == [BSet("big", len(value), None), BodyChunk(value), BodyEnd(), Ping()]


# --- request encoders -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: gwkv.encode_get(""), InvalidKey),
        (lambda: gwkv.encode_get("a-b"), InvalidKey),
        (lambda: gwkv.encode_get("é"), InvalidKey),
        (lambda: gwkv.encode_get("k" * 65), InvalidKey),
        (lambda: gwkv.encode_set("k", "v" * 1025), ValueTooLarge),
        (lambda: gwkv.encode_set("k", "a\nb"), InvalidArgument),
        (lambda: gwkv.encode_set("k", b"a\x00b"), InvalidArgument),
        (lambda: gwkv.encode_set("k", "café"), InvalidArgument),
        (lambda: gwkv.encode_cas("k", "not-an-id", "v"), InvalidArgument),
        (lambda: gwkv.encode_multiget([]), InvalidArgument),
        (lambda: gwkv.encode_multiget(["k"] * 1001), InvalidArgument),
        (lambda: gwkv.encode_multiset([]), InvalidArgument),
        (lambda: gwkv.encode_bset_header("k", -1), InvalidArgument),
        (lambda: gwkv.encode_bset_header("k", gwkv.DEFAULT_MAX_VALUE + 1), ValueTooLarge),
        (lambda: gwkv.encode_getat("k", datetime(2026, 1, 1)), InvalidArgument),  # naive
        (lambda: gwkv.encode_getat("k", "2026-01-01T00:00:00"), InvalidArgument),
        (lambda: gwkv.encode_getat("k", " 1500"), InvalidArgument),
        (lambda: gwkv.encode_getat("k", "yesterday"), InvalidArgument),
        (lambda: gwkv.encode_getat("k", timeparse.MAX_EPOCH_MS + 1), InvalidArgument),
        (lambda: gwkv.encode_getat("k-", 1500), InvalidKey),
        (lambda: gwkv.encode_getat("k", True), TypeError),
        (lambda: gwkv.encode_getat("k", 1.5), TypeError),  # type: ignore[arg-type]
        (lambda: gwkv.encode_request(GetAt("k", MAX_INSTANT_NS + 1)), InvalidArgument),
    ],
)
def test_encoders_validate_like_the_server(call: object, error: type[Exception]) -> None:
    assert callable(call)
    with pytest.raises(error):
        call()


def test_encoders_golden() -> None:
    assert gwkv.encode_set("apple", "red") == b"SET apple red\n"
    assert gwkv.encode_cas("k", None, b"v") == b"CAS k - v\n"
    assert gwkv.encode_multiset({"a": "1", "b": "2"}.items()) == b"MULTISET 2\na 1\nb 2\n"
    assert gwkv.encode_multiget(["a", "b"]) == b"MULTIGET a b\n"
    assert gwkv.encode_bset("blob", b"he\x00lo") == b"BSET blob 5\nhe\x00lo\n"
    assert gwkv.encode_bcas_header("b", VID, 3) == f"BCAS b {VID} 3\n".encode()
    assert gwkv.encode_getat("k", 1500) == b"GETAT k 1500\n"
    assert gwkv.encode_getat("k", 1500, binary=True) == b"BGETAT k 1500\n"
    assert gwkv.encode_getat("k", -1500) == b"GETAT k 1969-12-31T23:59:58.500Z\n"
    when = datetime(2026, 11, 25, 2, 2, 3, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert gwkv.encode_getat("k", when) == b"GETAT k 2026-11-25T01:02:03.123456Z\n"
    assert gwkv.encode_getat("k", "2026-11-25T01:02:03+01:00") == (
        b"GETAT k 2026-11-25T01:02:03+01:00\n"
    )
    assert gwkv.encode_request(GetAt("k", 1_500_000_001, binary=True)) == (
        b"BGETAT k 1970-01-01T00:00:01.500000001Z\n"
    )
    assert gwkv.expect_for(GetAt("k", 0, binary=True)) == Expect.BINARY
    assert gwkv.expect_for(GetAt("k", 0)) == Expect.LINE


# --- instants (kvbox.timeparse, the rule GETAT/BGETAT share with S3's x-kvbox-at) ------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("0001500", 1_500_000_000),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.1Z", 100_000_000),
        ("1970-01-01T00:00:00.999999999999Z", 999_999_999),  # past ns: dropped (floor)
        ("1969-12-31T23:59:59.999999999Z", -1),
        ("2000-02-29T12:00:00-00:00", 951_825_600_000_000_000),
        ("0001-01-01T00:00:00Z", MIN_INSTANT_NS),
        ("9999-12-31T23:59:59.999999999Z", MAX_INSTANT_NS),
        (str(timeparse.MAX_EPOCH_MS), timeparse.MAX_EPOCH_MS * 1_000_000),
    ],
)
def test_instant_golden(text: str, ns: int) -> None:
    assert timeparse.parse_instant(text) == ns
    assert timeparse.parse_instant(text.encode()) == ns


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "RFC 3339"),
        ("2026-11-25T01:02:03", "zone"),
        ("2026-11-25T01:02:03.5", "zone"),
        ("2026-13-01T00:00:00Z", "calendar date"),
        ("2026-11-25T23:60:00Z", "time of day"),
        ("2026-11-25T23:59:60Z", "leap second"),
        ("2026-11-25T00:00:00+00:60", "offset"),
        ("0001-01-01T00:00:00+00:01", "out of range"),
        ("0000-01-01T00:00:00Z", "calendar date"),
        ("253402300800000", "out of range"),
        ("2026-11-25T01:02:03." + "1" * 60 + "Z", "RFC 3339"),  # longer than the cap
        ("+1500", "RFC 3339"),
        ("\uff11\uff15\uff10\uff10", "RFC 3339"),  # fullwidth digits: not ASCII
        ("2026-11-25", "RFC 3339"),
        ("2026-11-25T01:02Z", "RFC 3339"),
    ],
)
def test_instant_refusals_say_why(text: str, why: str) -> None:
    with pytest.raises(InvalidInstant, match=why) as info:
        timeparse.parse_instant(text)
    message = str(info.value)  # a fixed text: one short ASCII line, whatever came in
    assert message.isascii() and "\n" not in message and len(message) < 100


def test_instant_of_client_values() -> None:
    assert timeparse.instant_of(1500) == 1_500_000_000
    assert timeparse.instant_of(-1) == -1_000_000
    assert timeparse.instant_of(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005_000
    with pytest.raises(InvalidInstant, match="timezone-aware"):
        timeparse.instant_of(datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        timeparse.instant_of(False)
    with pytest.raises(TypeError):
        timeparse.format_instant(1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInstant):
        timeparse.format_instant(MIN_INSTANT_NS - 1)


instants = st.integers(MIN_INSTANT_NS, MAX_INSTANT_NS)


@given(instants)
def test_instant_format_parse_roundtrip(ns: int) -> None:
    text = timeparse.format_instant(ns)
    assert timeparse.parse_instant(text) == ns
    assert len(text) <= 30


@given(st.datetimes(timezones=st.timezones()).filter(lambda d: d.utcoffset() is not None))
def test_instant_agrees_with_datetime(when: datetime) -> None:
    """An aware datetime, its isoformat() (when that is RFC 3339) and instant_of agree
    with datetime's own arithmetic."""
    try:
        expected = timeparse.instant_of(when)
    except InvalidInstant:
        return  # its UTC instant falls outside years 0001-9999
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    assert expected == delta // timedelta(microseconds=1) * 1000
    text = when.isoformat()
    offset = when.utcoffset()
    if offset is not None and offset % timedelta(minutes=1) == timedelta(0):
        assert timeparse.parse_instant(text) == expected  # +hh:mm offsets are RFC 3339
    assert timeparse.parse_instant(gwkv.check_instant(when)) == expected


# --- replies --------------------------------------------------------------------------


def test_reply_encoders_golden() -> None:
    assert gwkv.ok_version(VID) == f"OK {VID}\n".encode()
    assert gwkv.ok() == b"OK\n"
    assert gwkv.ok("1") == b"OK 1\n"
    assert gwkv.ok("a", "b") == b"OK a b\n"
    assert gwkv.value_text(b"red") == b"VALUE red\n"
    assert gwkv.value_binary_header(5, VID) == f"VALUE 5 {VID}\n".encode()
    assert gwkv.value_binary(b"he\x00lo", VID) == f"VALUE 5 {VID}\n".encode() + b"he\x00lo\n"
    assert gwkv.notfound() == b"NOTFOUND\n"
    assert gwkv.conflict(None) == b"CONFLICT -\n"
    assert gwkv.conflict(VID) == f"CONFLICT {VID}\n".encode()
    assert gwkv.err("BADKEY", "no\r\ngood é") == b"ERR BADKEY no  good ?\n"
    assert gwkv.multi_get([gwkv.value_text(b"red"), gwkv.NOTFOUND]) == (
        b"OK 2\nVALUE red\nNOTFOUND\n"
    )
    assert gwkv.info({"objects": 3, "version": "0.1.0"}) == b"OK 2\nobjects 3\nversion 0.1.0\n"


def parse_replies(
    wire: bytes, kinds: Sequence[Expect], pieces: int = 0, threshold: int = 1 << 20
) -> list[gwkv.Reply]:
    parser = gwkv.ReplyParser(stream_threshold=threshold)
    parser.expect_many(kinds)
    out: list[gwkv.Reply] = []
    step = pieces or len(wire) or 1
    for i in range(0, max(len(wire), 1), step):
        parser.feed(wire[i : i + step])
        while (reply := parser.next_reply()) is not None:
            out.append(reply)
    assert parser.pending == 0
    return out


REPLY_CASES: list[tuple[bytes, Expect, list[gwkv.Reply]]] = [
    (b"OK " + VID.encode() + b"\n", Expect.LINE, [gwkv.OkReply((VID,))]),
    (b"OK\r\n", Expect.LINE, [gwkv.OkReply(())]),
    (b"OK PONG\n", Expect.LINE, [gwkv.OkReply(("PONG",))]),
    (b"VALUE red apple\n", Expect.LINE, [gwkv.ValueReply(b"red apple")]),
    (b"VALUE \n", Expect.LINE, [gwkv.ValueReply(b"")]),
    (b"NOTFOUND\n", Expect.LINE, [gwkv.NotFoundReply()]),
    (b"CONFLICT -\n", Expect.LINE, [gwkv.ConflictReply(None)]),
    (b"CONFLICT " + VID.encode() + b"\n", Expect.LINE, [gwkv.ConflictReply(VID)]),
    (b"ERR BADKEY key must be\n", Expect.LINE, [gwkv.ErrorReply("BADKEY", "key must be")]),
    (
        b"VALUE 5 " + VID.encode() + b"\nhe\nlo\n",
        Expect.BINARY,
        [gwkv.BinaryReply(5, VID, b"he\nlo")],
    ),
    (b"NOTFOUND\n", Expect.BINARY, [gwkv.NotFoundReply()]),
    (b"ERR NOTTEXT use BGET\n", Expect.BINARY, [gwkv.ErrorReply("NOTTEXT", "use BGET")]),
    (
        b"OK 3\nVALUE red\nNOTFOUND\nERR NOTTEXT use BGET\n",
        Expect.MULTI,
        [
            gwkv.MultiReply(
                (
                    gwkv.ValueReply(b"red"),
                    gwkv.NotFoundReply(),
                    gwkv.ErrorReply("NOTTEXT", "use BGET"),
                )
            )
        ],
    ),
    (b"ERR ARGS usage\n", Expect.MULTI, [gwkv.ErrorReply("ARGS", "usage")]),
    (
        b"OK 2\nobjects 3\nversion 0.1 x\n",
        Expect.INFO,
        [gwkv.InfoReply((("objects", "3"), ("version", "0.1 x")))],
    ),
]


@pytest.mark.parametrize(("wire", "kind", "expected"), REPLY_CASES)
@pytest.mark.parametrize("pieces", [0, 1, 3])
def test_reply_parser(wire: bytes, kind: Expect, expected: list[gwkv.Reply], pieces: int) -> None:
    assert parse_replies(wire, [kind], pieces) == expected


def test_reply_parser_streams_big_bodies() -> None:
    body = bytes(range(256)) * 40
    wire = gwkv.value_binary(body, VID) + b"OK\n"
    for pieces in (0, 1, 1000):
        out = parse_replies(wire, [Expect.BINARY, Expect.LINE], pieces, threshold=100)
        assert out[0] == gwkv.BinaryReply(len(body), VID, None)
        assert out[-2:] == [gwkv.ReplyEnd(), gwkv.OkReply(())]
        chunks = out[1:-2]
        assert b"".join(c.data for c in chunks if isinstance(c, gwkv.ReplyChunk)) == body


def test_reply_parser_waits_for_expectations() -> None:
    parser = gwkv.ReplyParser()
    parser.feed(b"OK\nNOTFOUND\n")
    assert parser.next_reply() is None
    parser.expect(Expect.LINE)
    assert parser.pending == 1
    assert parser.next_reply() == gwkv.OkReply(())
    assert parser.next_reply() is None
    parser.expect(Expect.LINE)
    assert parser.next_reply() == gwkv.NotFoundReply()


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (b"HELLO\n", Expect.LINE),
        (b"CONFLICT\n", Expect.LINE),
        (b"ERR\n", Expect.LINE),
        (b"OK 1\n", Expect.BINARY),
        (b"VALUE x y\n", Expect.BINARY),
        (b"VALUE 3 v\nabcd", Expect.BINARY),
        (b"OK x\n", Expect.MULTI),
        (b"OK 1\nOK\n", Expect.MULTI),
        (b"OK 1001\n", Expect.MULTI),
        (b"OK 1\nnospace\n", Expect.INFO),
        (b"VALUE red\n", Expect.INFO),
        (b"x" * (MAX_LINE + 1), Expect.LINE),
    ],
)
def test_reply_parser_rejects_malformed(wire: bytes, kind: Expect) -> None:
    parser = gwkv.ReplyParser()
    parser.expect(kind)
    parser.feed(wire)
    with pytest.raises(ProtocolError):
        parser.next_reply()
    with pytest.raises(ProtocolError):
        parser.next_reply()  # stays broken


versions = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)
item_replies = st.one_of(
    texts.map(gwkv.ValueReply),
    st.just(gwkv.NotFoundReply()),
    st.builds(
        gwkv.ErrorReply, st.sampled_from(["NOTTEXT", "STORAGE"]), st.text("abc ", max_size=20)
    ),
)
replies_with_wire = st.one_of(
    versions.map(lambda v: (gwkv.ok_version(v), Expect.LINE, gwkv.OkReply((v,)))),
    st.lists(versions, max_size=20).map(
        lambda vs: (gwkv.ok(*vs), Expect.LINE, gwkv.OkReply(tuple(vs)))
    ),
    texts.map(lambda v: (gwkv.value_text(v), Expect.LINE, gwkv.ValueReply(v))),
    st.just((gwkv.NOTFOUND, Expect.LINE, gwkv.NotFoundReply())),
    (st.none() | versions).map(lambda c: (gwkv.conflict(c), Expect.LINE, gwkv.ConflictReply(c))),
    st.tuples(versions, st.binary(max_size=300)).map(
        lambda t: (
            gwkv.value_binary(t[1], t[0]),
            Expect.BINARY,
            gwkv.BinaryReply(len(t[1]), t[0], t[1]),
        )
    ),
    st.lists(item_replies, min_size=1, max_size=20).map(
        lambda items: (
            gwkv.multi_get([_encode_item(i) for i in items]),
            Expect.MULTI,
            gwkv.MultiReply(tuple(items)),
        )
    ),
    st.lists(st.tuples(keys, st.text("abc 123", max_size=10)), max_size=10).map(
        lambda items: (gwkv.info(items), Expect.INFO, gwkv.InfoReply(tuple(items)))
    ),
)


def _encode_item(item: gwkv.ItemReply) -> bytes:
    if isinstance(item, gwkv.ValueReply):
        return gwkv.value_text(item.value)
    if isinstance(item, gwkv.ErrorReply):
        return gwkv.err(item.code, item.message)
    return gwkv.NOTFOUND


@given(st.lists(replies_with_wire, min_size=1, max_size=10), st.integers(1, 50))
def test_reply_roundtrip(cases: list[tuple[bytes, Expect, gwkv.Reply]], piece: int) -> None:
    wire = b"".join(c[0] for c in cases)
    assert parse_replies(wire, [c[1] for c in cases], piece) == [c[2] for c in cases]
