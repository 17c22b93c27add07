"""Reply encoders (server side): small functions returning the bytes of one reply.

Layer: proto (no I/O). The rules are ``kvbox.proto.gwkv``'s docstring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

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
