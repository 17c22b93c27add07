"""GW-KV codec: bytes in, events out; replies in, bytes out. No I/O.

Layer: proto. Rules: no asyncio, no sockets, no storage imports; the grammar is
docs/protocol.md and every limit below points there. The server feeds received bytes to
``RequestParser`` and gets request events; the client feeds received bytes to
``ReplyParser`` and gets reply events. Both can be fed any split of the stream.

The module has four parts:

* request events and ``RequestParser`` (server side): ``feed(bytes)`` then call
  ``next_event()`` until it returns None. A refused request is a ``BadRequest`` event, never
  an exception: untrusted bytes cannot make the parser raise.
* reply encoders (server side): small functions returning the bytes of one reply.
* request encoders (client side): ``encode_*`` functions that validate with the same rules
  as the server and raise ``kvbox.errors`` exceptions, so a bad argument fails before it
  is sent.
* reply events and ``ReplyParser`` (client side): the client announces what each request
  expects (``Expect``), in order, and gets one reply event per request from
  ``next_reply()``. A malformed reply raises ``ProtocolError``: the server is trusted
  code, so a broken reply is a bug to report, not an input to survive.

Performance: the server parses >100k pipelined requests per second in one process, so
the parser never loops over bytes in Python. Lines are found with ``bytes.find`` on an
immutable buffer plus an offset; received pieces that arrive while a line is incomplete
are queued and joined once, when a newline (or enough payload) is there, which keeps a
byte-at-a-time sender from costing quadratic copying.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

from kvbox.errors import InvalidArgument, InvalidKey, ProtocolError, ValueTooLarge
from kvbox.timeparse import InvalidInstant, format_instant, instant_of, parse_instant

# --- limits (docs/protocol.md §2) -----------------------------------------------------

MAX_KEY = 64
MAX_TEXT_VALUE = 1024
MAX_MULTI = 1000
#: 65 KiB: a MULTIGET of MAX_MULTI 64-byte keys needs 9 + 1000 * 65 = 65,009 bytes.
MAX_LINE = 66_560
#: Length-prefixed payloads up to this size arrive as one event (``BSet.value``); larger
#: ones stream as ``BodyChunk`` events so they are never held whole in memory.
STREAM_THRESHOLD = 1 << 20
DEFAULT_MAX_VALUE = 5 << 30
UDP_MAX = 65_507
#: Largest ``BodyChunk`` cut from the parser's own buffer. Pieces fed while a body is
#: streaming pass through whole (no copy), so this only bounds re-sliced data.
MAX_CHUNK = 1 << 20
#: A length prefix has at most this many digits: 5 GiB needs 10, 20 covers any int64.
#: Bounding it keeps ``int()`` cheap on hostile input.
_MAX_LENGTH_DIGITS = 20
#: ``INFO`` replies with more lines than this are refused by the client parser.
MAX_INFO_LINES = 10_000


# --- request events -------------------------------------------------------------------


class Set(NamedTuple):
    """A named tuple, not a dataclass like the other events: a frozen dataclass costs
    about 1 µs to build, which at 100,000 SETs a second is a tenth of a core; and as a
    ``(key, value)`` pair it goes to ``Store.put_batch`` as is."""

    key: str
    value: bytes


class Get(NamedTuple):
    """A named tuple for the same reason as ``Set``: GETs are as frequent."""

    key: str


@dataclass(frozen=True, slots=True)
class Stats:
    pass


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class Cas:
    key: str
    expected: str | None  # None: only if absent ("-" on the wire)
    value: bytes


@dataclass(frozen=True, slots=True)
class MultiSet:
    pairs: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class MultiGet:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BSet:
    """A length-prefixed write (``BSET``, or ``BCAS`` when ``conditional``).

    If ``length <= STREAM_THRESHOLD`` the payload is in ``value`` and no body events
    follow. Otherwise ``value`` is None and the payload follows as ``BodyChunk`` events
    and one ``BodyEnd``.
    """

    key: str
    length: int
    value: bytes | None
    conditional: bool = False
    expected: str | None = None


@dataclass(frozen=True, slots=True)
class BodyChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class BodyEnd:
    pass


@dataclass(frozen=True, slots=True)
class BGet:
    key: str


@dataclass(frozen=True, slots=True)
class Version:
    key: str


@dataclass(frozen=True, slots=True)
class Versions:
    """``VERSIONS <key>``: the key's versions, newest first."""

    key: str


@dataclass(frozen=True, slots=True)
class GetVersion:
    """``GETV <key> <version>`` (text reply) or ``BGETV`` (``binary``: length-prefixed)."""

    key: str
    version: str
    binary: bool = False


@dataclass(frozen=True, slots=True)
class GetAt:
    """``GETAT <key> <instant>`` (text reply) or ``BGETAT`` (``binary``): the version of
    ``key`` that was the newest at ``at_ns`` (nanoseconds since the Unix epoch; the wire
    form is RFC 3339 or epoch milliseconds, see ``kvbox.timeparse``)."""

    key: str
    at_ns: int
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Info:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that was refused. ``fatal``: framing is lost, close after replying."""

    code: str
    message: str
    fatal: bool = False


Request = (
    Set
    | Get
    | Stats
    | Delete
    | Cas
    | MultiSet
    | MultiGet
    | BSet
    | BGet
    | Version
    | Versions
    | GetVersion
    | GetAt
    | Ping
    | Info
    | Quit
)
RequestEvent = Request | BodyChunk | BodyEnd | BadRequest


# --- refusals -------------------------------------------------------------------------

_BAD_KEY_MESSAGE = "key must be 1-64 letters or digits"
_BADKEY: Final = BadRequest("BADKEY", _BAD_KEY_MESSAGE)
_BADVALUE: Final = BadRequest("BADVALUE", "text value must be ASCII without NUL or CR")
_TOOLARGE_TEXT: Final = BadRequest("TOOLARGE", f"text value over {MAX_TEXT_VALUE} bytes: use BSET")
_BADEXPECTED: Final = BadRequest(
    "ARGS", "expected must be a version id (26 characters of Crockford base 32) or -"
)
_BADEXPECTED_VERSION: Final = BadRequest(
    "ARGS", "version must be a version id (26 characters of Crockford base 32)"
)
_UNKNOWN: Final = BadRequest("UNKNOWN", "unknown command")
_LINETOOLONG: Final = BadRequest("LINETOOLONG", f"line over {MAX_LINE} bytes", fatal=True)
_BADLENGTH: Final = BadRequest("BADLENGTH", "length must be a decimal number", fatal=True)
_NO_NEWLINE: Final = BadRequest("BADLENGTH", "payload not followed by newline", fatal=True)

#: ``ERR ARGS`` message per command word: the command's grammar line.
_USAGE: Final = {
    b"SET": "SET <key> <value>",
    b"GET": "GET <key>",
    b"STATS": "STATS",
    b"DELETE": "DELETE <key>",
    b"CAS": "CAS <key> <expected> <value>",
    b"MULTISET": "MULTISET <n>, n from 1 to 1000, then n lines <key> <value>",
    b"MULTIGET": "MULTIGET <key1> ... <keyN>, N from 1 to 1000",
    b"BSET": "BSET <key> <length>",
    b"BCAS": "BCAS <key> <expected> <length>",
    b"BGET": "BGET <key>",
    b"VERSION": "VERSION <key>",
    b"VERSIONS": "VERSIONS <key>",
    b"GETV": "GETV <key> <version>",
    b"BGETV": "BGETV <key> <version>",
    b"GETAT": "GETAT <key> <instant>",
    b"BGETAT": "BGETAT <key> <instant>",
    b"PING": "PING",
    b"INFO": "INFO",
    b"QUIT": "QUIT",
}
_ARGS: Final = {cmd: BadRequest("ARGS", f"usage: {usage}") for cmd, usage in _USAGE.items()}
_MULTISET_LINE: Final = BadRequest("ARGS", "MULTISET lines must be <key> <value>")
_MULTISET_COUNT: Final = BadRequest("ARGS", _ARGS[b"MULTISET"].message, fatal=True)
_MULTISET_BADCOUNT: Final = BadRequest(
    "BADLENGTH", "MULTISET count must be a decimal number", fatal=True
)


class _Fatal(Exception):
    """Raised inside the parsers to abandon the stream; carries the event to report."""

    def __init__(self, event: BadRequest) -> None:
        super().__init__(event.message)
        self.event = event


def _text_error(value: bytes) -> BadRequest | None:
    """The refusal for a text value, or None if it is a legal one (§2)."""
    if len(value) > MAX_TEXT_VALUE:
        return _TOOLARGE_TEXT
    if not value.isascii() or 0 in value or 13 in value:
        return _BADVALUE
    return None


def _key_error(token: bytes) -> BadRequest:
    """Why ``token`` is not a key; a space in it means the argument count was wrong."""
    return _BADKEY if b" " not in token else BadRequest("ARGS", "too many arguments")


def _is_key(token: bytes) -> bool:
    # bytes.isalnum() is ASCII-only and False for b"": exactly [A-Za-z0-9]+.
    return len(token) <= MAX_KEY and token.isalnum()


#: Version ids are 26 characters of Crockford base 32 (``core.model.VersionIdGenerator``).
VERSION_LEN: Final = 26
_VERSION_ALPHABET: Final = frozenset(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def is_version(token: bytes) -> bool:
    return len(token) == VERSION_LEN and _VERSION_ALPHABET.issuperset(token)


def _expected(token: bytes) -> str | None:
    """Decode a CAS ``<expected>``; raise ValueError if it is neither ``-`` nor an id.

    A well-formed id the store never issued simply loses the compare (``CONFLICT``),
    which is the truthful answer; anything else is a malformed request (``ARGS``).
    """
    if token == b"-":
        return None
    if is_version(token):
        return token.decode()
    raise ValueError(token)


def _length(token: bytes) -> int:
    if not token.isdigit():
        raise _Fatal(_BADLENGTH)
    if len(token) > _MAX_LENGTH_DIGITS:
        # A decimal number, just an absurd one: too large, without converting it
        # (int() of thousands of digits is slow and capped by Python).
        return 1 << 70
    return int(token)


# --- the byte queue both parsers read from --------------------------------------------


class _ByteQueue:
    """Received bytes not yet parsed: ``_buf[_pos:]`` followed by the pieces in ``_more``.

    ``feed`` never copies: when everything before has been consumed the piece becomes
    ``_buf``, otherwise it is queued. Queued pieces are joined into ``_buf`` only when a
    line is complete or a payload is whole, so the cost of joining is paid once per line
    or payload whatever the split of the stream.
    """

    __slots__ = ("_buf", "_more", "_more_len", "_pos", "_scanned")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._more: list[bytes] = []
        self._more_len = 0
        self._scanned = 0  # leading pieces of _more known to hold no b"\n"

    def _enqueue(self, data: bytes) -> None:
        if self._pos >= len(self._buf) and not self._more:
            self._buf = bytes(data)  # no copy when data is already bytes
            self._pos = 0
        else:
            piece = bytes(data)
            self._more.append(piece)
            self._more_len += len(piece)

    @property
    def _buffered(self) -> int:
        return len(self._buf) - self._pos + self._more_len

    @property
    def held_bytes(self) -> int:
        """Bytes of received data this parser keeps alive (for memory-bound checks)."""
        return len(self._buf) + self._more_len

    def _merge(self) -> None:
        self._buf = self._buf[self._pos :] + b"".join(self._more)
        self._pos = 0
        self._more.clear()
        self._more_len = 0
        self._scanned = 0

    def _clear(self) -> None:
        self._buf = b""
        self._pos = 0
        self._more.clear()
        self._more_len = 0
        self._scanned = 0

    def _line(self) -> bytes | None:
        """The next line without ``\\n`` (and a ``\\r`` before it), or None if incomplete.

        Raises ``_Fatal(LINETOOLONG)`` once MAX_LINE bytes have arrived without a newline,
        so a newline-free sender never makes the buffer grow past about MAX_LINE.
        """
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if not self._newline_queued():
                if len(buf) - pos + self._more_len >= MAX_LINE:
                    raise _Fatal(_LINETOOLONG)
                return None
            self._merge()
            buf = self._buf
            pos = 0
            nl = buf.find(b"\n")
        if nl - pos >= MAX_LINE:
            raise _Fatal(_LINETOOLONG)
        self._pos = nl + 1
        if nl > pos and buf[nl - 1] == 13:
            nl -= 1
        return buf[pos:nl]

    def _newline_queued(self) -> bool:
        more = self._more
        for i in range(self._scanned, len(more)):
            if 10 in more[i]:
                return True
        self._scanned = len(more)
        return False

    def _exact(self, n: int) -> bytes | None:
        """The next ``n`` bytes as one object, or None until that many have arrived."""
        if len(self._buf) - self._pos < n:
            if self._buffered < n:
                return None
            self._merge()
        pos = self._pos
        self._pos = pos + n
        return self._buf[pos : pos + n]

    def _payload(self, n: int) -> bytes | None:
        """The next ``n`` bytes, which must be followed by ``\\n`` (consumed too).

        None until ``n + 1`` bytes have arrived; ``_Fatal(BADLENGTH)`` if the byte after
        them is not ``\\n``.
        """
        if len(self._buf) - self._pos <= n:
            if self._buffered <= n:
                return None
            self._merge()
        buf = self._buf
        pos = self._pos
        if buf[pos + n] != 10:
            raise _Fatal(_NO_NEWLINE)
        self._pos = pos + n + 1
        return buf[pos : pos + n]

    def _piece(self, limit: int) -> bytes | None:
        """Up to ``limit`` (> 0) next bytes, whatever is at hand, or None if nothing is."""
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            if not self._more:
                return None
            buf = self._buf = self._more.pop(0)
            self._more_len -= len(buf)
            self._scanned = 0
            pos = 0
        end = pos + limit
        if pos == 0 and end >= len(buf):
            self._pos = len(buf)
            return buf  # a whole received piece: no copy
        self._pos = min(end, len(buf))
        return buf[pos:end]


# --- request parser (server side) -----------------------------------------------------

_LINE, _MULTI, _SMALL, _STREAM, _SKIP, _END, _DEAD = range(7)

_Handler = Callable[["RequestParser", bytes, int], RequestEvent | None]


class RequestParser(_ByteQueue):
    """Turns a client's byte stream into request events (docs/protocol.md).

    Call ``feed()`` with each received piece, then ``next_event()`` until it returns
    None. Each request gives exactly one event that needs one reply: a request event or a
    ``BadRequest`` (answer ``ERR <code> <message>``). A streamed ``BSet`` (``value`` None)
    is followed by ``BodyChunk`` events and one ``BodyEnd`` -- or by a fatal
    ``BadRequest`` if the byte after the payload is not ``\\n``. After a fatal
    ``BadRequest`` the parser returns nothing more and ignores further input.

    ``max_value`` is ``--max-value-size``; ``stream_threshold`` (default
    ``STREAM_THRESHOLD``) is the largest payload delivered whole in ``BSet.value``.
    """

    __slots__ = (
        "_body",
        "_max_value",
        "_multi_error",
        "_multi_left",
        "_multi_pairs",
        "_remaining",
        "_state",
        "_threshold",
    )

    def __init__(
        self, max_value: int = DEFAULT_MAX_VALUE, *, stream_threshold: int = STREAM_THRESHOLD
    ) -> None:
        super().__init__()
        self._max_value = max_value
        self._threshold = stream_threshold
        self._state = _LINE
        self._remaining = 0  # payload bytes still to come (_SMALL, _STREAM, _SKIP)
        #: What to report when the payload is over: (key, conditional, expected) while
        #: reading a small body, the refusal while skipping one.
        self._body: tuple[str, bool, str | None] | BadRequest | None = None
        self._multi_left = 0
        self._multi_pairs: list[tuple[str, bytes]] = []
        self._multi_error: BadRequest | None = None

    def feed(self, data: bytes) -> None:
        """Add received bytes. Cheap: no parsing, and no copy in the common case."""
        if data and self._state != _DEAD:
            self._enqueue(data)

    @property
    def in_request(self) -> bool:
        """True when part of a request has arrived: the server's request timeout applies.

        False means the connection is idle between requests (the idle timeout applies).
        """
        return self._state not in (_LINE, _DEAD) or (self._state == _LINE and self._buffered > 0)

    @property
    def in_payload(self) -> bool:
        """Inside a length-prefixed payload (kept, streamed or skipped): the server then
        only asks that bytes keep coming, not that the request finish by a deadline."""
        return self._state in (_SMALL, _STREAM, _SKIP, _END)

    @property
    def closed(self) -> bool:
        """True after a fatal ``BadRequest``: the connection must be closed."""
        return self._state == _DEAD

    def next_event(self) -> RequestEvent | None:
        """The next event, or None if more bytes are needed (or the parser is dead)."""
        try:
            if self._state != _LINE:
                return self._next_special()
            # Hot path, inlined from _ByteQueue._line for the common complete-line case.
            buf = self._buf
            pos = self._pos
            nl = buf.find(b"\n", pos)
            if nl < 0 or nl - pos >= MAX_LINE:
                line = self._line()
                if line is None:
                    return None
            else:
                self._pos = nl + 1
                if nl > pos and buf[nl - 1] == 13:
                    nl -= 1
                if buf.startswith(b"SET ", pos):
                    # The hottest request: its value is sliced straight out of the
                    # buffer (one copy, not two). Anything unusual takes the general
                    # path below, which finds the right error.
                    ksp = buf.find(b" ", pos + 4, nl)
                    if ksp >= 0:
                        key = buf[pos + 4 : ksp]
                        if len(key) <= MAX_KEY and key.isalnum():
                            value = buf[ksp + 1 : nl]
                            if (
                                len(value) <= MAX_TEXT_VALUE
                                and value.isascii()
                                and 0 not in value
                                and 13 not in value
                            ):
                                return Set(key.decode(), value)
                line = buf[pos:nl]
            sp = line.find(b" ")
            cmd = line[:sp] if sp >= 0 else line
            if cmd == b"GET":
                key = line[4:]
                if len(key) <= MAX_KEY and key.isalnum():
                    return Get(key.decode())
                return _key_error(key) if sp >= 0 else _ARGS[b"GET"]
            if cmd == b"SET":
                return self._set(line, sp)
            handler = _HANDLERS.get(cmd) or _HANDLERS.get(cmd.upper())
            if handler is None:
                return _UNKNOWN
            return handler(self, line, sp)
        except _Fatal as exc:
            self._state = _DEAD
            self._clear()
            return exc.event

    # -- one method per command; ``sp`` is the index of the first space or -1 --

    def _set(self, line: bytes, sp: int) -> RequestEvent:
        ksp = line.find(b" ", sp + 1) if sp >= 0 else -1
        if ksp < 0:
            return _ARGS[b"SET"]
        key = line[sp + 1 : ksp]
        if len(key) > MAX_KEY or not key.isalnum():
            return _BADKEY
        value = line[ksp + 1 :]
        if len(value) > MAX_TEXT_VALUE or not value.isascii() or 0 in value or 13 in value:
            return _text_error(value) or _BADVALUE
        return Set(key.decode(), value)

    def _get(self, line: bytes, sp: int) -> RequestEvent:
        key = self._one_key(line, sp, b"GET")
        return key if isinstance(key, BadRequest) else Get(key)

    def _delete(self, line: bytes, sp: int) -> RequestEvent:
        key = self._one_key(line, sp, b"DELETE")
        return key if isinstance(key, BadRequest) else Delete(key)

    def _bget(self, line: bytes, sp: int) -> RequestEvent:
        key = self._one_key(line, sp, b"BGET")
        return key if isinstance(key, BadRequest) else BGet(key)

    def _version(self, line: bytes, sp: int) -> RequestEvent:
        key = self._one_key(line, sp, b"VERSION")
        return key if isinstance(key, BadRequest) else Version(key)

    def _versions(self, line: bytes, sp: int) -> RequestEvent:
        key = self._one_key(line, sp, b"VERSIONS")
        return key if isinstance(key, BadRequest) else Versions(key)

    def _getv(self, line: bytes, sp: int) -> RequestEvent:
        return self._key_version(line, sp, b"GETV", binary=False)

    def _bgetv(self, line: bytes, sp: int) -> RequestEvent:
        return self._key_version(line, sp, b"BGETV", binary=True)

    @staticmethod
    def _key_version(line: bytes, sp: int, cmd: bytes, *, binary: bool) -> RequestEvent:
        parts = line[sp + 1 :].split(b" ") if sp >= 0 else []
        if len(parts) != 2:
            return _ARGS[cmd]
        key, version = parts
        if not _is_key(key):
            return _key_error(key)
        if not is_version(version):
            return _BADEXPECTED_VERSION
        return GetVersion(key.decode(), version.decode(), binary)

    def _getat(self, line: bytes, sp: int) -> RequestEvent:
        return self._key_instant(line, sp, b"GETAT", binary=False)

    def _bgetat(self, line: bytes, sp: int) -> RequestEvent:
        return self._key_instant(line, sp, b"BGETAT", binary=True)

    @staticmethod
    def _key_instant(line: bytes, sp: int, cmd: bytes, *, binary: bool) -> RequestEvent:
        parts = line[sp + 1 :].split(b" ") if sp >= 0 else []
        if len(parts) != 2:
            return _ARGS[cmd]
        key, instant = parts
        if not _is_key(key):
            return _key_error(key)
        try:
            at_ns = parse_instant(instant)
        except InvalidInstant as exc:
            # The messages are timeparse's fixed texts: never an echo of the request.
            return BadRequest("ARGS", str(exc))
        return GetAt(key.decode(), at_ns, binary)

    @staticmethod
    def _one_key(line: bytes, sp: int, cmd: bytes) -> str | BadRequest:
        if sp < 0:
            return _ARGS[cmd]
        key = line[sp + 1 :]
        if len(key) <= MAX_KEY and key.isalnum():
            return key.decode()
        return _key_error(key)

    def _stats(self, line: bytes, sp: int) -> RequestEvent:
        return Stats() if sp < 0 else _ARGS[b"STATS"]

    def _ping(self, line: bytes, sp: int) -> RequestEvent:
        return Ping() if sp < 0 else _ARGS[b"PING"]

    def _info(self, line: bytes, sp: int) -> RequestEvent:
        return Info() if sp < 0 else _ARGS[b"INFO"]

    def _quit(self, line: bytes, sp: int) -> RequestEvent:
        return Quit() if sp < 0 else _ARGS[b"QUIT"]

    def _cas(self, line: bytes, sp: int) -> RequestEvent:
        ksp = line.find(b" ", sp + 1) if sp >= 0 else -1
        esp = line.find(b" ", ksp + 1) if ksp >= 0 else -1
        if esp < 0:
            return _ARGS[b"CAS"]
        key = line[sp + 1 : ksp]
        if not _is_key(key):
            return _BADKEY
        try:
            expected = _expected(line[ksp + 1 : esp])
        except ValueError:
            return _BADEXPECTED
        value = line[esp + 1 :]
        error = _text_error(value)
        if error is not None:
            return error
        return Cas(key.decode(), expected, value)

    def _multiget(self, line: bytes, sp: int) -> RequestEvent:
        rest = line[sp + 1 :] if sp >= 0 else b""
        if not rest:
            return _ARGS[b"MULTIGET"]
        keys = rest.split(b" ")
        if len(keys) > MAX_MULTI:
            return _ARGS[b"MULTIGET"]
        # One C-level pass over all keys instead of a Python loop per key.
        if not rest.replace(b" ", b"").isalnum() or not (
            min(map(len, keys)) > 0 and max(map(len, keys)) <= MAX_KEY
        ):
            return _BADKEY
        return MultiGet(tuple(rest.decode().split(" ")))

    def _multiset(self, line: bytes, sp: int) -> RequestEvent | None:
        if sp < 0:
            return _ARGS[b"MULTISET"]
        count = line[sp + 1 :]
        if not count.isdigit() or len(count) > _MAX_LENGTH_DIGITS:
            # Not a number: how many lines follow is unknown, so framing is lost.
            raise _Fatal(_MULTISET_BADCOUNT)
        n = int(count)
        if n == 0:
            return _ARGS[b"MULTISET"]
        if n > MAX_MULTI:
            # Reading that many lines to stay in step would let one request pin the
            # connection for ever; and leaving them unread would run pair lines such as
            # "DELETE x" as commands. Closing is the only safe answer.
            raise _Fatal(_MULTISET_COUNT)
        self._state = _MULTI
        self._multi_left = n
        self._multi_pairs = []
        self._multi_error = None
        return self._next_multiset()

    def _bset(self, line: bytes, sp: int) -> RequestEvent | None:
        args = line[sp + 1 :].split(b" ") if sp >= 0 else []
        if len(args) != 2:
            return _ARGS[b"BSET"]
        return self._begin_body(args[0], None, args[1])

    def _bcas(self, line: bytes, sp: int) -> RequestEvent | None:
        args = line[sp + 1 :].split(b" ") if sp >= 0 else []
        if len(args) != 3:
            return _ARGS[b"BCAS"]
        return self._begin_body(args[0], args[1], args[2])

    def _begin_body(
        self, key: bytes, expected_token: bytes | None, length_token: bytes
    ) -> RequestEvent | None:
        length = _length(length_token)
        if length > self._max_value:
            raise _Fatal(BadRequest("TOOLARGE", f"value over {self._max_value} bytes", fatal=True))
        self._remaining = length
        refusal: BadRequest | None = None
        expected: str | None = None
        if not _is_key(key):
            refusal = _BADKEY
        elif expected_token is not None:
            try:
                expected = _expected(expected_token)
            except ValueError:
                refusal = _BADEXPECTED
        if refusal is not None:
            # The payload is on its way whatever we think of the key: read past it so the
            # connection stays in step (its bytes must never be parsed as commands).
            self._state = _SKIP
            self._body = refusal
            return self._next_special()
        conditional = expected_token is not None
        if length <= self._threshold:
            self._state = _SMALL
            self._body = (key.decode(), conditional, expected)
            return self._next_special()
        self._state = _STREAM
        return BSet(key.decode(), length, None, conditional, expected)

    # -- states other than "expecting a request line" --

    def _next_special(self) -> RequestEvent | None:
        state = self._state
        if state == _STREAM:
            if self._remaining:
                data = self._piece(min(self._remaining, MAX_CHUNK))
                if data is None:
                    return None
                self._remaining -= len(data)
                return BodyChunk(data)
            return self._end_of_body(BodyEnd())
        if state == _SMALL:
            data = self._payload(self._remaining)
            if data is None:
                return None
            header = self._body
            assert isinstance(header, tuple)
            self._state = _LINE
            self._body = None
            return BSet(header[0], self._remaining, data, header[1], header[2])
        if state == _SKIP:
            while self._remaining:
                data = self._piece(min(self._remaining, MAX_CHUNK))
                if data is None:
                    return None
                self._remaining -= len(data)
            refusal = self._body
            assert isinstance(refusal, BadRequest)
            return self._end_of_body(refusal)
        if state == _MULTI:
            return self._next_multiset()
        if state == _END:
            return self._end_of_body(BodyEnd())
        return None  # _DEAD

    def _end_of_body(self, event: RequestEvent) -> RequestEvent | None:
        """Check the ``\\n`` that must follow a payload, then report ``event``."""
        self._state = _END
        self._body = event if isinstance(event, BadRequest) else self._body
        end = self._exact(1)
        if end is None:
            return None
        if end != b"\n":
            raise _Fatal(_NO_NEWLINE)
        self._state = _LINE
        pending = self._body
        self._body = None
        return pending if isinstance(pending, BadRequest) else BodyEnd()

    def _next_multiset(self) -> RequestEvent | None:
        while self._multi_left:
            line = self._line()
            if line is None:
                return None
            self._multi_left -= 1
            if self._multi_error is not None:
                continue  # refused already; only keep in step
            sp = line.find(b" ")
            if sp < 0:
                self._multi_error = _MULTISET_LINE
                continue
            key = line[:sp]
            value = line[sp + 1 :]
            error = _BADKEY if not _is_key(key) else _text_error(value)
            if error is not None:
                self._multi_error = error
                continue
            self._multi_pairs.append((key.decode(), value))
        self._state = _LINE
        error = self._multi_error
        pairs = tuple(self._multi_pairs)
        self._multi_pairs = []
        self._multi_error = None
        return error if error is not None else MultiSet(pairs)


_HANDLERS: Final[dict[bytes, _Handler]] = {
    b"SET": RequestParser._set,
    b"GET": RequestParser._get,
    b"STATS": RequestParser._stats,
    b"DELETE": RequestParser._delete,
    b"CAS": RequestParser._cas,
    b"MULTISET": RequestParser._multiset,
    b"MULTIGET": RequestParser._multiget,
    b"BSET": RequestParser._bset,
    b"BCAS": RequestParser._bcas,
    b"BGET": RequestParser._bget,
    b"VERSION": RequestParser._version,
    b"VERSIONS": RequestParser._versions,
    b"GETV": RequestParser._getv,
    b"BGETV": RequestParser._bgetv,
    b"GETAT": RequestParser._getat,
    b"BGETAT": RequestParser._bgetat,
    b"PING": RequestParser._ping,
    b"INFO": RequestParser._info,
    b"QUIT": RequestParser._quit,
}
#: Every command word the parser knows (``kvbox.kv.commands.COMMANDS`` has a row for each).
COMMAND_WORDS: Final = frozenset(_HANDLERS)


# --- reply encoders (server side) -----------------------------------------------------

NOTFOUND: Final = b"NOTFOUND\n"
OK: Final = b"OK\n"
PONG: Final = b"OK PONG\n"
BYE: Final = b"OK BYE\n"
#: The byte after a ``VALUE <length> <version>`` body.
BODY_END: Final = b"\n"


def ok(*words: str) -> bytes:
    """``OK`` and its words: ``ok(version)``, ``ok(str(count))``, ``ok(*versions)``."""
    if not words:
        return OK
    return b"OK " + " ".join(words).encode() + b"\n"


def ok_version(version: str) -> bytes:
    """``OK <version>``: the reply to every successful write, kept to one concatenation."""
    return b"OK " + version.encode() + b"\n"


def value_text(value: bytes) -> bytes:
    """``VALUE <value>``: a text value (``GET``, and ``MULTIGET`` lines)."""
    return b"VALUE " + value + b"\n"


def value_binary_header(length: int, version: str) -> bytes:
    """``VALUE <length> <version>``; the body and ``BODY_END`` follow it."""
    return b"VALUE %d %s\n" % (length, version.encode())


def value_binary(value: bytes, version: str) -> bytes:
    """A whole ``BGET`` reply for a value small enough to hold in memory."""
    return b"VALUE %d %s\n%s\n" % (len(value), version.encode(), value)


def notfound() -> bytes:
    return NOTFOUND


def conflict(current: str | None) -> bytes:
    """``CONFLICT <current>``, ``-`` when the key has no live value."""
    return b"CONFLICT " + (current or "-").encode() + b"\n"


def err(code: str, message: str) -> bytes:
    """``ERR <CODE> <message>``; the message is made one safe ASCII line."""
    text = message.replace("\r", " ").replace("\n", " ")
    return f"ERR {code} {text}".encode("ascii", "replace") + b"\n"


def multi_get(items: Sequence[bytes]) -> bytes:
    """A ``MULTIGET`` reply from each key's already-encoded line, in request order.

    Each item is ``value_text(v)``, ``NOTFOUND`` or ``err("NOTTEXT", ...)``.
    """
    return b"OK %d\n" % len(items) + b"".join(items)


def info(items: Mapping[str, object] | Iterable[tuple[str, object]]) -> bytes:
    """An ``INFO`` reply: ``OK <n>`` then one ``<name> <value>`` line per item."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    lines = [f"{name} {value}".replace("\n", " ") for name, value in pairs]
    body = "".join(line + "\n" for line in lines)
    return f"OK {len(lines)}\n{body}".encode("ascii", "replace")


#: ``ERR`` codes after which the server closes the connection (docs/protocol.md §3).
#: ``TOOLARGE`` closes it too, but only in reply to ``BSET``/``BCAS``.
CLOSING_CODES: Final = frozenset({"LINETOOLONG", "BADLENGTH", "TIMEOUT", "BUSY"})
BINARY_WRITE_CLOSING_CODES: Final = CLOSING_CODES | {"TOOLARGE"}


def versions_reply(items: Iterable[tuple[str, int, int, bool]]) -> bytes:
    """A ``VERSIONS`` reply: ``OK <n>`` then ``<version> <size> <mtime_ms> VALUE|DELETED``
    per version, newest first (the same framing as ``INFO``)."""
    lines = [
        b"%s %d %d %s\n" % (v.encode(), size, mtime_ms, b"DELETED" if deleted else b"VALUE")
        for v, size, mtime_ms, deleted in items
    ]
    return b"OK %d\n" % len(lines) + b"".join(lines)


# --- request encoders (client side) ---------------------------------------------------


def check_key(key: str) -> bytes:
    """The wire form of ``key``; raise ``InvalidKey`` unless it is 1-64 ``[A-Za-z0-9]``."""
    if not isinstance(key, str) or not (
        0 < len(key) <= MAX_KEY and key.isascii() and key.isalnum()
    ):
        raise InvalidKey(f"{key!r}: {_BAD_KEY_MESSAGE}")
    return key.encode()


def check_text(value: bytes | str) -> bytes:
    """The wire form of a text value; raise unless ``SET`` can carry it (§2)."""
    if isinstance(value, str):
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidArgument("text value must be ASCII: use bset for binary") from None
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise TypeError(f"value must be bytes or str, not {type(value).__name__}")
    if len(data) > MAX_TEXT_VALUE:
        raise ValueTooLarge(f"text value over {MAX_TEXT_VALUE} bytes: use bset")
    if not data.isascii() or 0 in data or 13 in data or 10 in data:
        raise InvalidArgument("text value must be ASCII without NUL, CR or LF: use bset for binary")
    return data


def check_expected(expected: str | None) -> bytes:
    """The wire form of a CAS ``<expected>``: a version id, or None for ``-``."""
    if expected is None:
        return b"-"
    if isinstance(expected, str) and expected.isascii() and is_version(expected.encode()):
        return expected.encode()
    raise InvalidArgument(f"{expected!r} is not a version id")


def check_instant(when: datetime | int | str) -> bytes:
    """The wire form of a ``GETAT`` instant; raise ``InvalidArgument`` unless the server
    would take it.

    An aware ``datetime`` is sent as RFC 3339 UTC (exact to its microsecond); an ``int``
    is epoch milliseconds (sent as is, or as RFC 3339 if negative, since the decimal
    form has no sign); a ``str`` must already be a wire instant and is sent unchanged.
    """
    try:
        if isinstance(when, str):
            parse_instant(when)
            return when.encode("ascii")
        if isinstance(when, int) and not isinstance(when, bool) and when >= 0:
            instant_of(when)  # range check
            return b"%d" % when
        return format_instant(instant_of(when)).encode()
    except InvalidInstant as exc:
        raise InvalidArgument(str(exc)) from None


def check_length(length: int, max_value: int = DEFAULT_MAX_VALUE) -> bytes:
    if not isinstance(length, int) or length < 0:
        raise InvalidArgument(f"length must be a non-negative int, not {length!r}")
    if length > max_value:
        raise ValueTooLarge(f"value over {max_value} bytes")
    return b"%d" % length


def encode_set(key: str, value: bytes | str) -> bytes:
    return b"SET " + check_key(key) + b" " + check_text(value) + b"\n"


def encode_get(key: str) -> bytes:
    return b"GET " + check_key(key) + b"\n"


def encode_stats() -> bytes:
    return b"STATS\n"


def encode_delete(key: str) -> bytes:
    return b"DELETE " + check_key(key) + b"\n"


def encode_cas(key: str, expected: str | None, value: bytes | str) -> bytes:
    return b"CAS %s %s %s\n" % (check_key(key), check_expected(expected), check_text(value))


def encode_multiset(pairs: Iterable[tuple[str, bytes | str]]) -> bytes:
    lines = [check_key(key) + b" " + check_text(value) + b"\n" for key, value in pairs]
    if not 0 < len(lines) <= MAX_MULTI:
        raise InvalidArgument(f"MULTISET takes 1-{MAX_MULTI} pairs, not {len(lines)}")
    return b"MULTISET %d\n" % len(lines) + b"".join(lines)


def encode_multiget(keys: Iterable[str]) -> bytes:
    words = [check_key(key) for key in keys]
    if not 0 < len(words) <= MAX_MULTI:
        raise InvalidArgument(f"MULTIGET takes 1-{MAX_MULTI} keys, not {len(words)}")
    return b"MULTIGET " + b" ".join(words) + b"\n"


def encode_bset_header(key: str, length: int) -> bytes:
    """``BSET <key> <length>``: send ``length`` bytes and ``BODY_END`` after it."""
    return b"BSET %s %s\n" % (check_key(key), check_length(length))


def encode_bcas_header(key: str, expected: str | None, length: int) -> bytes:
    return b"BCAS %s %s %s\n" % (check_key(key), check_expected(expected), check_length(length))


def encode_bset(key: str, value: bytes) -> bytes:
    return encode_bset_header(key, len(value)) + value + b"\n"


def encode_bcas(key: str, expected: str | None, value: bytes) -> bytes:
    return encode_bcas_header(key, expected, len(value)) + value + b"\n"


def encode_bget(key: str) -> bytes:
    return b"BGET " + check_key(key) + b"\n"


def encode_version(key: str) -> bytes:
    return b"VERSION " + check_key(key) + b"\n"


def encode_versions(key: str) -> bytes:
    return b"VERSIONS " + check_key(key) + b"\n"


def encode_getv(key: str, version: str, *, binary: bool = False) -> bytes:
    ver = check_expected(version)
    return (b"BGETV " if binary else b"GETV ") + check_key(key) + b" " + ver + b"\n"


def encode_getat(key: str, when: datetime | int | str, *, binary: bool = False) -> bytes:
    """``GETAT``/``BGETAT``: ``when`` as ``check_instant`` takes it."""
    at = check_instant(when)
    return (b"BGETAT " if binary else b"GETAT ") + check_key(key) + b" " + at + b"\n"


def encode_ping() -> bytes:
    return b"PING\n"


def encode_info() -> bytes:
    return b"INFO\n"


def encode_quit() -> bytes:
    return b"QUIT\n"


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


def encode_request(request: Request) -> bytes:
    """The wire form of a request event; ``parse(encode_request(r)) == r``."""
    match request:
        case Set(key, value):
            return encode_set(key, value)
        case Get(key):
            return encode_get(key)
        case Stats():
            return encode_stats()
        case Delete(key):
            return encode_delete(key)
        case Cas(key, expected, value):
            return encode_cas(key, expected, value)
        case MultiSet(pairs):
            return encode_multiset(pairs)
        case MultiGet(keys):
            return encode_multiget(keys)
        case BSet(key, length, value, conditional, expected):
            if value is None or len(value) != length:
                raise InvalidArgument("a BSet event needs its whole value to be encoded")
            if conditional:
                return encode_bcas(key, expected, value)
            return encode_bset(key, value)
        case BGet(key):
            return encode_bget(key)
        case Version(key):
            return encode_version(key)
        case Versions(key):
            return encode_versions(key)
        case GetVersion(key, version, binary):
            return encode_getv(key, version, binary=binary)
        case GetAt(key, at_ns, binary):
            if not isinstance(at_ns, int) or isinstance(at_ns, bool):
                raise InvalidArgument(f"at_ns must be an int of nanoseconds, not {at_ns!r}")
            try:
                instant = format_instant(at_ns)
            except InvalidInstant as exc:
                raise InvalidArgument(str(exc)) from None
            return encode_getat(key, instant, binary=binary)
        case Ping():
            return encode_ping()
        case Info():
            return encode_info()
        case Quit():
            return encode_quit()
    raise TypeError(f"not a request: {request!r}")


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
