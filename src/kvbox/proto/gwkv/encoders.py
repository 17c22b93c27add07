"""Request encoders (client side): ``encode_*`` validate with the server's rules and raise
``kvbox.errors`` exceptions, so a bad argument fails before it is sent.

Layer: proto (no I/O). The rules are ``kvbox.proto.gwkv``'s docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from kvbox.errors import InvalidArgument, InvalidKey, ValueTooLarge
from kvbox.proto.gwkv._stream import (
    _BAD_KEY_MESSAGE,
    is_version,
)
from kvbox.proto.gwkv.events import (
    DEFAULT_MAX_VALUE,
    MAX_KEY,
    MAX_MULTI,
    MAX_TEXT_VALUE,
    BGet,
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
    Request,
    Set,
    Stats,
    Version,
    Versions,
)
from kvbox.timeparse import InvalidInstant, format_instant, instant_of, parse_instant

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


def encode_auth(access_key: str, nonce: str | None = None, proof: str | None = None) -> bytes:
    """``AUTH <access key>`` (ask for a challenge) or ``AUTH <access key> <nonce>
    <proof>`` (answer it); the plain-secret form is nc's, never a client's."""
    if nonce is None or proof is None:
        return f"AUTH {access_key}\n".encode()
    return f"AUTH {access_key} {nonce} {proof}\n".encode()


def encode_quit() -> bytes:
    return b"QUIT\n"


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
