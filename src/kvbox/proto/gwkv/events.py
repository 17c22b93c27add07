"""Request events and the protocol's limits: what a parsed request is.

Layer: proto (no I/O). The rules are ``kvbox.proto.gwkv``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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
class Auth:
    """``AUTH <access key>`` (ask for a challenge), ``AUTH <access key> <nonce> <proof>``
    (answer it) or ``AUTH <access key> <secret>`` (loopback only): docs/protocol.md §5.
    Its arguments are credentials, so nothing logs them (``server/accesslog.py``)."""

    access_key: str
    secret: str | None = None
    nonce: str | None = None
    proof: str | None = None

    def __repr__(self) -> str:  # never a secret or proof in a log or a traceback
        return f"Auth(access_key={self.access_key!r})"


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
    | Auth
)
RequestEvent = Request | BodyChunk | BodyEnd | BadRequest
