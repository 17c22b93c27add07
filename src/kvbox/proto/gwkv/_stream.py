"""What both parsers share: refusals, token checks and the byte queue.

Layer: proto (no I/O). The rules are ``kvbox.proto.gwkv``'s docstring.
"""

from __future__ import annotations

from typing import Final

from kvbox.proto.gwkv.events import (
    _MAX_LENGTH_DIGITS,
    MAX_KEY,
    MAX_LINE,
    MAX_TEXT_VALUE,
    BadRequest,
)

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
    b"AUTH": "AUTH <access key> [<nonce> <proof> | <secret>]",
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


#: The longest access key, secret, nonce or proof AUTH takes: AWS-style keys are 20
#: and 40 characters, a proof 64 hex digits; a bound keeps a hostile line cheap.
MAX_CREDENTIAL: Final = 128
_VISIBLE: Final = bytes(range(0x21, 0x7F))


def _is_credential(token: bytes) -> bool:
    """1 to 128 printable ASCII characters (no space): keys, secrets, nonces, proofs."""
    return 0 < len(token) <= MAX_CREDENTIAL and not token.translate(None, _VISIBLE)


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
