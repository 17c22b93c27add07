"""Reply events and ``ReplyParser`` (client side): one reply event per request, in order.

Layer: proto (no I/O). The rules are ``kvbox.proto.gwkv``'s docstring.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from kvbox.errors import ProtocolError
from kvbox.proto.gwkv._stream import (
    _ByteQueue,
    _Fatal,
)
from kvbox.proto.gwkv.events import (
    _MAX_LENGTH_DIGITS,
    MAX_CHUNK,
    MAX_INFO_LINES,
    MAX_MULTI,
    STREAM_THRESHOLD,
    BGet,
    GetAt,
    GetVersion,
    Info,
    MultiGet,
    Request,
    Versions,
)

# --- reply events (client side) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OkReply:
    """``OK`` and its words: a version id, a count, ``PONG``, the versions of MULTISET."""

    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ValueReply:
    """``VALUE <value>``: a text value."""

    value: bytes


@dataclass(frozen=True, slots=True)
class NotFoundReply:
    pass


@dataclass(frozen=True, slots=True)
class ConflictReply:
    current: str | None  # None: the key has no live value ("-")


@dataclass(frozen=True, slots=True)
class ErrorReply:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BinaryReply:
    """``VALUE <length> <version>``: like ``BSet``, ``value`` is None when the body
    is longer than the parser's stream threshold and follows as ``ReplyChunk`` events
    and one ``ReplyEnd``."""

    length: int
    version: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ReplyChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class ReplyEnd:
    pass


ItemReply = ValueReply | NotFoundReply | ErrorReply


@dataclass(frozen=True, slots=True)
class MultiReply:
    """A ``MULTIGET`` reply: one item per requested key, in order."""

    items: tuple[ItemReply, ...]


@dataclass(frozen=True, slots=True)
class InfoReply:
    items: tuple[tuple[str, str], ...]


LineReply = OkReply | ValueReply | NotFoundReply | ConflictReply | ErrorReply
Reply = LineReply | BinaryReply | ReplyChunk | ReplyEnd | MultiReply | InfoReply

NOT_FOUND_REPLY: Final = NotFoundReply()


class Expect(enum.IntEnum):
    """What shape of reply a request gets; the client says it per request, in order."""

    LINE = 0  # one line: OK ..., VALUE <text>, NOTFOUND, CONFLICT ..., ERR ...
    BINARY = 1  # BGET: VALUE <length> <version> + body, or NOTFOUND / ERR
    MULTI = 2  # MULTIGET: OK <n> + n item lines, or ERR
    INFO = 3  # INFO: OK <n> + n "<name> <value>" lines, or ERR


def expect_for(request: Request) -> Expect:
    """The reply shape of a request event (used for pipelining request events)."""
    if isinstance(request, BGet) or (isinstance(request, GetVersion | GetAt) and request.binary):
        return Expect.BINARY
    if isinstance(request, MultiGet):
        return Expect.MULTI
    if isinstance(request, Info | Versions):
        return Expect.INFO
    return Expect.LINE


# --- reply parser (client side) -------------------------------------------------------

_R_IDLE, _R_SMALL, _R_STREAM, _R_END, _R_MULTI, _R_INFO, _R_DEAD = range(7)


def _parse_line(line: bytes) -> LineReply:
    """One reply line; raise ``ProtocolError`` if it is none of the §3 statuses."""
    if line[:6] == b"VALUE " or line == b"VALUE":
        return ValueReply(line[6:])
    if line == b"NOTFOUND":
        return NOT_FOUND_REPLY
    text = line.decode("utf-8", "replace")
    status, _, rest = text.partition(" ")
    if status == "OK":
        return OkReply(tuple(rest.split(" ")) if rest else ())
    if status == "ERR" and rest:
        code, _, message = rest.partition(" ")
        return ErrorReply(code, message)
    if status == "CONFLICT" and rest and " " not in rest:
        return ConflictReply(None if rest == "-" else rest)
    raise ProtocolError(f"malformed reply line {line[:80]!r}")


class ReplyParser(_ByteQueue):
    """Turns a server's byte stream into reply events, one per expected request.

    Usage: ``expect(kind)`` for each request sent (in order), ``feed()`` received
    bytes, and ``next_reply()`` until it returns None. Each request yields one reply
    event, except a ``BINARY`` reply whose body exceeds ``stream_threshold``: its
    ``BinaryReply(value=None)`` is followed by ``ReplyChunk`` events and a ``ReplyEnd``.
    Bytes that arrive while nothing is expected stay buffered. A malformed reply raises
    ``ProtocolError`` and the parser stays broken: the connection is out of step.
    """

    __slots__ = (
        "_expected",
        "_head",
        "_items",
        "_left",
        "_remaining",
        "_state",
        "_threshold",
        "_version",
    )

    def __init__(self, stream_threshold: int = STREAM_THRESHOLD) -> None:
        super().__init__()
        self._threshold = stream_threshold
        self._expected: list[Expect] = []
        self._head = 0  # index of the next expectation in _expected
        self._state = _R_IDLE
        self._remaining = 0
        self._left = 0
        self._items: list[ItemReply] | list[tuple[str, str]] = []
        self._version = ""

    def expect(self, kind: Expect) -> None:
        """Announce that the next request sent gets a reply of shape ``kind``."""
        self._expected.append(kind)

    def expect_many(self, kinds: Iterable[Expect]) -> None:
        self._expected.extend(kinds)

    @property
    def pending(self) -> int:
        """Replies expected and not (or not completely) returned yet."""
        busy = self._state not in (_R_IDLE, _R_DEAD)
        return len(self._expected) - self._head + busy

    def feed(self, data: bytes) -> None:
        if data and self._state != _R_DEAD:
            self._enqueue(data)

    def next_reply(self) -> Reply | None:
        """The next reply event, or None if more bytes are needed (or none is expected)."""
        if self._state == _R_DEAD:
            raise ProtocolError("reply stream is out of step")
        try:
            return self._next_reply()
        except _Fatal as exc:
            self._fail()
            raise ProtocolError(f"reply {exc.event.message}") from None
        except ProtocolError:
            self._fail()
            raise

    def _fail(self) -> None:
        self._state = _R_DEAD
        self._clear()

    def _next_reply(self) -> Reply | None:
        state = self._state
        if state == _R_IDLE:
            if self._head >= len(self._expected):
                return None
            line = self._line()
            if line is None:
                return None
            kind = self._expected[self._head]
            self._head += 1
            if self._head > 64 and self._head * 2 > len(self._expected):
                del self._expected[: self._head]
                self._head = 0
            if kind == Expect.LINE:
                return _parse_line(line)
            if line[:6] == b"VALUE " and kind == Expect.BINARY:
                return self._begin_body(line)
            if line[:3] == b"OK " and kind >= Expect.MULTI:
                return self._begin_lines(line, kind)
            reply = _parse_line(line)
            if isinstance(reply, ErrorReply | NotFoundReply) and (
                kind == Expect.BINARY or isinstance(reply, ErrorReply)
            ):
                return reply
            raise ProtocolError(f"unexpected reply {line[:80]!r} to a {kind.name} request")
        if state in (_R_MULTI, _R_INFO):
            return self._next_lines()
        if state == _R_SMALL:
            data = self._payload(self._remaining)
            if data is None:
                return None
            self._state = _R_IDLE
            return BinaryReply(self._remaining, self._version, data)
        if state == _R_STREAM:
            if self._remaining:
                piece = self._piece(min(self._remaining, MAX_CHUNK))
                if piece is None:
                    return None
                self._remaining -= len(piece)
                return ReplyChunk(piece)
            self._state = _R_END
        # _R_END
        end = self._exact(1)
        if end is None:
            return None
        if end != b"\n":
            raise ProtocolError("reply body not followed by newline")
        self._state = _R_IDLE
        return ReplyEnd()

    def _begin_body(self, line: bytes) -> Reply | None:
        words = line.split(b" ")
        if len(words) != 3 or not words[1].isdigit() or len(words[1]) > _MAX_LENGTH_DIGITS:
            raise ProtocolError(f"malformed binary reply header {line[:80]!r}")
        length = int(words[1])
        version = words[2].decode("utf-8", "replace")
        self._remaining = length
        if length <= self._threshold:
            self._state = _R_SMALL
            self._version = version
            return self._next_reply()
        self._state = _R_STREAM
        return BinaryReply(length, version, None)

    def _begin_lines(self, line: bytes, kind: Expect) -> Reply | None:
        count = line[3:]
        limit = MAX_MULTI if kind == Expect.MULTI else MAX_INFO_LINES
        if not count.isdigit() or len(count) > 6 or int(count) > limit:
            raise ProtocolError(f"malformed reply count {line[:80]!r}")
        self._left = int(count)
        self._items = []
        self._state = _R_MULTI if kind == Expect.MULTI else _R_INFO
        return self._next_lines()

    def _next_lines(self) -> Reply | None:
        items = self._items
        multi = self._state == _R_MULTI
        while self._left:
            line = self._line()
            if line is None:
                return None
            self._left -= 1
            if multi:
                item = _parse_line(line)
                if not isinstance(item, ValueReply | NotFoundReply | ErrorReply):
                    raise ProtocolError(f"unexpected MULTIGET item {line[:80]!r}")
                items.append(item)  # type: ignore[arg-type]
            else:
                name, sp, value = line.decode("utf-8", "replace").partition(" ")
                if not sp:
                    raise ProtocolError(f"malformed INFO line {line[:80]!r}")
                items.append((name, value))  # type: ignore[arg-type]
        self._state = _R_IDLE
        self._items = []
        if multi:
            return MultiReply(tuple(items))  # type: ignore[arg-type]
        return InfoReply(tuple(items))  # type: ignore[arg-type]
