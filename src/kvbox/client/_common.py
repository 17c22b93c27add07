"""What each reply means: shared by ``Client``, ``AsyncClient`` and ``UdpClient``.

Layer: client. Rules: no I/O. Each function takes the reply event of one request (from
``kvbox.proto.gwkv.ReplyParser``) and returns the method's result, or raises the
``kvbox.errors`` exception the reply stands for: ``ERR`` -> ``RemoteError``, ``CONFLICT``
-> ``ConditionFailed``, anything the request cannot get -> ``ProtocolError``. Keeping this
here means the three clients differ only in how bytes travel.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO, NoReturn

from kvbox.errors import ConditionFailed, InvalidArgument, ProtocolError, RemoteError
from kvbox.proto.gwkv import (
    ConflictReply,
    ErrorReply,
    InfoReply,
    MultiReply,
    NotFoundReply,
    OkReply,
    Reply,
    ValueReply,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7070
DEFAULT_TIMEOUT = 5.0
#: Bytes per read or write when streaming a body: large enough for throughput, small
#: enough that a 5 GiB value never sits in memory.
IO_CHUNK = 1 << 20

Pairs = Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]


def credentials(access_key: str | None, secret_key: str | None) -> tuple[str, str] | None:
    """Both keys or neither (AUTH needs the pair)."""
    if access_key is None and secret_key is None:
        return None
    if not access_key or not secret_key:
        raise InvalidArgument("an access key and a secret key go together")
    return access_key, secret_key


def where(host: str, port: int) -> str:
    """``host:port`` for messages, with IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unexpected(reply: Reply) -> NoReturn:
    if isinstance(reply, ErrorReply):
        raise RemoteError(reply.code, reply.message)
    raise ProtocolError(f"unexpected reply {reply!r}")


def version_of(reply: Reply) -> str:
    """``OK <version>`` of a write; ``CONFLICT`` raises ``ConditionFailed``."""
    if type(reply) is OkReply and len(reply.words) == 1:
        return reply.words[0]
    if isinstance(reply, ConflictReply):
        shown = reply.current or "none (the key has no live value)"
        raise ConditionFailed(f"conflict: current version is {shown}", current=reply.current)
    unexpected(reply)


def versions_of(reply: Reply, count: int) -> list[str]:
    if isinstance(reply, OkReply) and len(reply.words) == count:
        return list(reply.words)
    unexpected(reply)


def value_of(reply: Reply) -> bytes | None:
    """A ``GET`` reply. ``ERR NOTTEXT`` (a binary or large value) raises ``RemoteError``:
    ``GET`` is the text protocol, ``bget`` reads any value."""
    if type(reply) is ValueReply:
        return reply.value
    if isinstance(reply, NotFoundReply):
        return None
    unexpected(reply)


def count_of(reply: Reply) -> int:
    if isinstance(reply, OkReply) and len(reply.words) == 1 and reply.words[0].isdigit():
        return int(reply.words[0])
    unexpected(reply)


def deleted(reply: Reply) -> bool:
    if isinstance(reply, OkReply):
        return True
    if isinstance(reply, NotFoundReply):
        return False
    unexpected(reply)


def maybe_version(reply: Reply) -> str | None:
    if isinstance(reply, NotFoundReply):
        return None
    return version_of(reply)


def word_of(reply: Reply) -> str:
    """The one word of an ``OK <word>`` reply (AUTH's nonce, then its principal)."""
    if type(reply) is OkReply and len(reply.words) == 1:
        return reply.words[0]
    unexpected(reply)


def pong(reply: Reply) -> None:
    if isinstance(reply, OkReply) and reply.words == ("PONG",):
        return
    unexpected(reply)


def info_of(reply: Reply) -> dict[str, str]:
    if isinstance(reply, InfoReply):
        return dict(reply.items)
    unexpected(reply)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One line of a ``VERSIONS`` reply."""

    version: str
    size: int
    mtime_ms: int
    deleted: bool


def version_list_of(reply: Reply) -> list[VersionInfo]:
    """``VERSIONS`` reuses the ``INFO`` framing: the version id is the name."""
    if not isinstance(reply, InfoReply):
        unexpected(reply)
    out = []
    for version, rest in reply.items:
        size, mtime_ms, state = rest.split(" ")
        out.append(VersionInfo(version, int(size), int(mtime_ms), state == "DELETED"))
    return out


def items_of(reply: Reply, count: int) -> list[bytes | None]:
    """``MULTIGET`` values in order, None where absent; an item's ``ERR`` (``NOTTEXT``
    for a binary value) raises ``RemoteError`` -- use ``bget`` for binary values."""
    if not isinstance(reply, MultiReply) or len(reply.items) != count:
        unexpected(reply)
    out: list[bytes | None] = []
    for item in reply.items:
        if isinstance(item, ValueReply):
            out.append(item.value)
        elif isinstance(item, NotFoundReply):
            out.append(None)
        else:
            raise RemoteError(item.code, f"{item.message} (key #{len(out) + 1})")
    return out


def pair_list(pairs: Pairs) -> list[tuple[str, bytes | str]]:
    return list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)


def sized_source(data: BinaryIO, length: int | None, stack: ExitStack) -> tuple[BinaryIO, int]:
    """A file object and the number of bytes to send from it.

    The protocol needs the length before the payload. A seekable file gives it from its
    position to its end; an unseekable one (a pipe, stdin) is first copied to an
    anonymous temporary file -- on disk, so a large stream is never held in memory.
    """
    if length is not None:
        if length < 0:
            raise InvalidArgument(f"length must be >= 0, not {length}")
        return data, length
    try:
        seekable = data.seekable()
    except (AttributeError, ValueError):
        seekable = False
    if seekable:
        try:
            here = data.tell()
            end = data.seek(0, io.SEEK_END)
            data.seek(here)
            return data, end - here
        except OSError:
            pass
    spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed by stack)
    shutil.copyfileobj(data, spool, IO_CHUNK)
    size = spool.tell()
    spool.seek(0)
    return spool, size


def read_some(source: BinaryIO, size: int) -> bytes:
    """1 to ``size`` bytes of a payload from ``source``; raise if it has ended early.

    A short file cannot be padded: the length was announced, so the connection is lost.
    """
    chunk = source.read(size)
    if not chunk:
        raise InvalidArgument("the file ended before the announced length")
    if not isinstance(chunk, bytes | bytearray):
        raise TypeError("bset needs a binary file object (open it with 'rb')")
    return bytes(chunk)
