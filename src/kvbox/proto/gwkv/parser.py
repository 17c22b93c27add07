"""``RequestParser`` (server side): received bytes in, request events out.

Layer: proto (no I/O). The rules are ``kvbox.proto.gwkv``'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kvbox.proto.gwkv._stream import (
    _ARGS,
    _BADEXPECTED,
    _BADEXPECTED_VERSION,
    _BADKEY,
    _BADVALUE,
    _MULTISET_BADCOUNT,
    _MULTISET_COUNT,
    _MULTISET_LINE,
    _NO_NEWLINE,
    _UNKNOWN,
    _ByteQueue,
    _expected,
    _Fatal,
    _is_credential,
    _is_key,
    _key_error,
    _length,
    _text_error,
    is_version,
)
from kvbox.proto.gwkv.events import (
    _MAX_LENGTH_DIGITS,
    DEFAULT_MAX_VALUE,
    MAX_CHUNK,
    MAX_KEY,
    MAX_LINE,
    MAX_MULTI,
    MAX_TEXT_VALUE,
    STREAM_THRESHOLD,
    Auth,
    BadRequest,
    BGet,
    BodyChunk,
    BodyEnd,
    BSet,
    Cas,
    Delete,
    Get,
    GetAt,
    GetVersion,
    Info,
    MultiGet,
    MultiSet,
    Ping,
    Quit,
    RequestEvent,
    Set,
    Stats,
    Version,
    Versions,
)
from kvbox.timeparse import InvalidInstant, parse_instant

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

    def _auth(self, line: bytes, sp: int) -> RequestEvent:
        parts = line[sp + 1 :].split(b" ") if sp >= 0 else []
        if not 1 <= len(parts) <= 3 or not all(_is_credential(t) for t in parts):
            return _ARGS[b"AUTH"]
        words = [t.decode() for t in parts]
        if len(words) == 1:
            return Auth(words[0])
        if len(words) == 2:
            return Auth(words[0], secret=words[1])
        return Auth(words[0], nonce=words[1], proof=words[2])

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
    b"AUTH": RequestParser._auth,
}
#: Every command word the parser knows (``kvbox.kv.commands.COMMANDS`` has a row for each).
COMMAND_WORDS: Final = frozenset(_HANDLERS)
