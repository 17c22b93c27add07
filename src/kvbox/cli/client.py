"""``kvbox client``: one GW-KV operation from the command line.

Layer: cli. Rules: argument handling and output only; the protocol is ``kvbox.client``.
Output goes to stdout as bytes (values are not decoded); every error goes to stderr as
``kvbox client: <message>`` with an exit status that tells scripts what happened
(``EXIT_*`` below).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from kvbox.bench.address import parse_server
from kvbox.client import Client, UdpClient
from kvbox.client._common import DEFAULT_TIMEOUT
from kvbox.errors import (
    ConditionFailed,
    InvalidArgument,
    ProtocolError,
    RemoteError,
    gwkv_code,
)
from kvbox.proto.gwkv import UDP_MAX

EXIT_OK = 0
EXIT_MISSING = 1  # NOTFOUND, or CONFLICT
EXIT_USAGE = 2
EXIT_SERVER = 3  # an ERR reply, or a key/value the server's rules refuse (checked first)
EXIT_NETWORK = 4  # refused, reset, timed out, or a reply that makes no sense

_EPILOG = """\
operations (case-insensitive):
  set KEY VALUE...          store a text value (words joined by single spaces);
                            with --file, store the file's bytes (BSET)
  get KEY                   print the value
  stats                     print the number of keys
  delete KEY                delete the key
  cas KEY EXPECTED VALUE... set only if the newest version is EXPECTED
                            ('-': only if the key is absent); --file as for set
  mset KEY VALUE [KEY VALUE ...]
                            set several keys atomically; prints one version per line
  mget KEY...               print one line per key: its value, or an empty line if it
                            is absent (and a note on stderr; exit status 1)
  bset KEY [-]              store bytes from --file PATH, or from stdin ('-', or no
                            --file); streamed, never held in memory whole
  bget KEY                  write the value's bytes to stdout, or to --output PATH
  version KEY               print the newest version id
  versions KEY              print the key's versions, newest first:
                            'VERSION SIZE TIME VALUE|DELETED'
  getv KEY VERSION          write one version's bytes to stdout, or to --output PATH
  getat KEY INSTANT         write the bytes the key had at INSTANT to stdout, or to
                            --output PATH; INSTANT is RFC 3339 with a zone
                            (2026-11-25T01:02:03.123Z) or epoch milliseconds. Without
                            versioning only the newest version is kept, so an earlier
                            INSTANT is 'not found'
  ping                      print PONG
  info                      print the server's figures, one 'name value' per line

set, cas and bset print the new version id.
Arguments starting with '-' (other than '-' itself) go after '--'.

get and mget read text values; a binary or large value is refused (NOTTEXT): use bget.

exit status: 0 ok; 1 not found, or CAS conflict; 2 usage error;
3 the request was refused (an ERR reply, or a key or value breaking the protocol's
rules, checked before sending); 4 connection refused, reset or timed out.
"""

_USAGE = {
    "set": "set KEY VALUE... (or set KEY --file PATH)",
    "get": "get KEY",
    "stats": "stats",
    "delete": "delete KEY",
    "cas": "cas KEY EXPECTED VALUE... (or cas KEY EXPECTED --file PATH)",
    "mset": "mset KEY VALUE [KEY VALUE ...]",
    "mget": "mget KEY [KEY ...]",
    "bset": "bset KEY [-] [--file PATH]",
    "bget": "bget KEY [--output PATH]",
    "version": "version KEY",
    "versions": "versions KEY",
    "getv": "getv KEY VERSION [--output PATH]",
    "getat": "getat KEY INSTANT [--output PATH]",
    "ping": "ping",
    "info": "info",
}


class _Usage(Exception):
    """A command line that names a real operation but misuses it."""


class _Missing(Exception):
    """NOTFOUND (or an absent key in mget): exit status 1 after the output so far."""


class _FileError(Exception):
    """A --file/--output path that cannot be used (a usage error, not a network one)."""


@dataclass
class _Ctx:
    args: argparse.Namespace
    client: Client | UdpClient
    out: BinaryIO


def add_parser(sub: Any) -> None:
    ap: argparse.ArgumentParser = sub.add_parser(
        "client",
        help="run one GW-KV operation against a server",
        description="Run one GW-KV operation against a kvbox server "
        "(HOST[:PORT], port 7070 by default; IPv6 as [::1]:7070).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "server", metavar="HOST[:PORT]", help="the server's GW-KV address (port 7070 by default)"
    )
    ap.add_argument(
        "operation",
        metavar="OPERATION",
        type=str.lower,
        choices=sorted(_USAGE),
        help="what to do: one of the operations listed below",
    )
    ap.add_argument("words", nargs="*", metavar="ARG", help="key, values, ...")
    ap.add_argument(
        "--file", metavar="PATH", help="value from this file ('-': stdin) for set, cas, bset"
    )
    ap.add_argument(
        "--output", metavar="PATH", help="bget, getv, getat: write the value here, not stdout"
    )
    ap.add_argument("--udp", action="store_true", help="one datagram each way, not TCP")
    ap.add_argument(
        "--access-key",
        default=os.environ.get("KVBOX_ACCESS_KEY"),
        metavar="KEY",
        help="authenticate as this kvbox key first (AUTH's challenge-response; the secret "
        "never crosses the network); env KVBOX_ACCESS_KEY",
    )
    ap.add_argument(
        "--secret-key-file",
        default=os.environ.get("KVBOX_SECRET_KEY_FILE"),
        metavar="PATH",
        help="the secret key for --access-key, read from this file (env KVBOX_SECRET_KEY_FILE; "
        "or set KVBOX_SECRET_KEY): never a command-line argument, which other users see",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="network timeout (default %(default)s)",
    )
    ap.set_defaults(func=run)


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(access key, secret key) from the flags and environment, or (None, None)."""
    access_key: str | None = args.access_key or None
    if access_key is None:
        return None, None
    secret: str | None = os.environ.get("KVBOX_SECRET_KEY")
    if args.secret_key_file:
        try:
            secret = Path(args.secret_key_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise _Usage(f"cannot read --secret-key-file: {exc.strerror}") from None
    if not secret:
        raise _Usage("--access-key needs a secret: --secret-key-file or KVBOX_SECRET_KEY")
    return access_key, secret


def run(args: argparse.Namespace) -> int:
    def err(message: str) -> None:
        print(f"kvbox client: {message}", file=sys.stderr)

    op: str = args.operation
    try:
        host, port = parse_server(args.server)
        _check_options(op, args)
    except (ValueError, _Usage) as exc:
        err(str(exc))
        return EXIT_USAGE
    out = sys.stdout.buffer
    try:
        client: Client | UdpClient
        access_key, secret_key = _credentials(args)
        if args.udp:
            if access_key is not None:
                raise _Usage("--udp cannot authenticate (a datagram has no connection)")
            client = UdpClient(host, port, timeout=args.timeout)
        else:
            client = Client(
                host, port, timeout=args.timeout, access_key=access_key, secret_key=secret_key
            )
        with client:
            _OPERATIONS[op](_Ctx(args, client, out))
    except _Usage as exc:
        err(f"{exc}\nusage: kvbox client HOST[:PORT] {_USAGE[op]}")
        return EXIT_USAGE
    except _Missing as exc:
        err(str(exc))
        return EXIT_MISSING
    except ConditionFailed as exc:
        err(str(exc))
        return EXIT_MISSING
    except InvalidArgument as exc:
        # The client checks keys and values with the server's own rules before sending;
        # a refusal is a refusal whichever side found it, so it is reported the same way.
        err(f"refused: {gwkv_code(exc)} {exc}")
        return EXIT_SERVER
    except RemoteError as exc:
        err(f"server refused: {exc.code} {exc.message}".rstrip())
        return EXIT_SERVER
    except ProtocolError as exc:
        err(f"bad reply from {args.server}: {exc}")
        return EXIT_NETWORK
    except _FileError as exc:
        err(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # the clients' messages name the server and the failure
        err(str(exc))
        return EXIT_NETWORK
    finally:
        with contextlib.suppress(OSError, ValueError):
            out.flush()
    return EXIT_OK


def _check_options(op: str, args: argparse.Namespace) -> None:
    if args.file is not None and op not in ("set", "cas", "bset"):
        raise _Usage("--file only goes with set, cas and bset")
    if args.output is not None and op not in _OUTPUT_OPS:
        raise _Usage("--output only goes with bget, getv and getat")
    if args.timeout is not None and args.timeout <= 0:
        raise _Usage("--timeout must be positive")


def _words(ctx: _Ctx, least: int, most: int | None) -> list[str]:
    words: list[str] = ctx.args.words
    if len(words) < least or (most is not None and len(words) > most):
        raise _Usage("wrong number of arguments")
    return words


def _line(ctx: _Ctx, data: bytes | str) -> None:
    ctx.out.write((data.encode() if isinstance(data, str) else data) + b"\n")


# --- operations -----------------------------------------------------------------------


@contextlib.contextmanager
def _source(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; open errors are usage errors)
    except OSError as exc:
        raise _FileError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        yield f


def _send_binary(ctx: _Ctx, key: str, expected: str | None, conditional: bool, path: str) -> str:
    client = ctx.client
    if isinstance(client, UdpClient) and conditional:
        raise _Usage("cas --file does not go over --udp")
    with _source(path) as f:
        if isinstance(client, Client):
            if conditional:
                return client.bcas(key, expected, f)
            return client.bset(key, f)
        data = f.read(UDP_MAX + 1)
        if len(data) > UDP_MAX:
            raise _Usage(f"value too big for one datagram ({UDP_MAX} bytes): drop --udp")
        return client.bset(key, data)


def _set(ctx: _Ctx) -> None:
    if ctx.args.file is not None:
        key = _words(ctx, 1, 1)[0]
        _line(ctx, _send_binary(ctx, key, None, False, ctx.args.file))
        return
    words = _words(ctx, 2, None)
    _line(ctx, ctx.client.set(words[0], " ".join(words[1:])))


def _get(ctx: _Ctx) -> None:
    key = _words(ctx, 1, 1)[0]
    value = ctx.client.get(key)
    if value is None:
        raise _Missing(f"{key}: not found")
    _line(ctx, value)


def _stats(ctx: _Ctx) -> None:
    _words(ctx, 0, 0)
    _line(ctx, str(ctx.client.stats()))


def _delete(ctx: _Ctx) -> None:
    key = _words(ctx, 1, 1)[0]
    if not ctx.client.delete(key):
        raise _Missing(f"{key}: not found")
    _line(ctx, "OK")


def _cas(ctx: _Ctx) -> None:
    if ctx.args.file is not None:
        key, expected = _words(ctx, 2, 2)
        version = _send_binary(ctx, key, _expected(expected), True, ctx.args.file)
    else:
        words = _words(ctx, 3, None)
        version = ctx.client.cas(words[0], _expected(words[1]), " ".join(words[2:]))
    _line(ctx, version)


def _expected(word: str) -> str | None:
    return None if word == "-" else word


def _mset(ctx: _Ctx) -> None:
    words = _words(ctx, 2, None)
    if len(words) % 2:
        raise _Usage("mset takes KEY VALUE pairs")
    for version in ctx.client.mset(list(zip(words[::2], words[1::2], strict=True))):
        _line(ctx, version)


def _mget(ctx: _Ctx) -> None:
    keys = _words(ctx, 1, None)
    missing = []
    for key, value in zip(keys, ctx.client.mget(keys), strict=True):
        if value is None:
            missing.append(key)
        _line(ctx, value or b"")
    if missing:
        raise _Missing(f"not found: {' '.join(missing)}")


def _bset(ctx: _Ctx) -> None:
    words = _words(ctx, 1, 2)
    if len(words) == 2 and words[1] != "-":
        raise _Usage("bset reads its value from --file PATH or stdin ('-')")
    path = ctx.args.file if ctx.args.file is not None else "-"
    _line(ctx, _send_binary(ctx, words[0], None, False, path))


def _bget(ctx: _Ctx) -> None:
    key = _words(ctx, 1, 1)[0]
    client = ctx.client

    def fetch(sink: BinaryIO) -> bool:
        if isinstance(client, Client):
            return client.bget_into(key, sink)
        return _write_whole(client.bget(key), sink)  # UDP: one datagram, whole

    _download(ctx, fetch, f"{key}: not found")


def _download(ctx: _Ctx, fetch: Callable[[BinaryIO], bool], missing: str) -> None:
    """Run ``fetch`` into stdout or ``--output``; ``missing`` is the message when it
    finds nothing (exit status 1)."""
    path = ctx.args.output
    if path is None or path == "-":
        sink = _LastByte(ctx.out)
        if not fetch(cast(BinaryIO, sink)):
            raise _Missing(missing)
        if sink.last not in (b"", b"\n") and _is_terminal(ctx.out):
            # A person reading a terminal gets the prompt on a line of its own; a pipe or
            # a redirect gets the value's bytes exactly, as they were stored.
            ctx.out.write(b"\n")
        return
    # Into a temporary file beside the target, renamed when complete: a failed or
    # absent download never leaves a truncated file at PATH.
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kvbox-", dir=directory)
    except OSError as exc:
        raise _FileError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            found = fetch(f)
        if not found:
            raise _Missing(missing)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class _LastByte:
    """A write-through sink that remembers the last byte written (see ``_download``)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.last = b""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if len(data):
            self.last = bytes(data[-1:])
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


def _is_terminal(out: BinaryIO) -> bool:
    try:
        return out.isatty()
    except (OSError, ValueError):
        return False


def _write_whole(value: bytes | None, sink: BinaryIO) -> bool:
    if value is not None:
        sink.write(value)
    return value is not None


def _version(ctx: _Ctx) -> None:
    key = _words(ctx, 1, 1)[0]
    version = ctx.client.version(key)
    if version is None:
        raise _Missing(f"{key}: not found")
    _line(ctx, version)


def _versions(ctx: _Ctx) -> None:
    key = _words(ctx, 1, 1)[0]
    versions = ctx.client.versions(key)
    if not versions:
        raise _Missing(f"{key}: no versions")
    for v in versions:
        when = datetime.fromtimestamp(v.mtime_ms / 1000, UTC).isoformat(timespec="milliseconds")
        _line(ctx, f"{v.version} {v.size} {when} {'DELETED' if v.deleted else 'VALUE'}")


def _getv(ctx: _Ctx) -> None:
    key, version = _words(ctx, 2, 2)
    client = ctx.client

    def fetch(sink: BinaryIO) -> bool:
        if isinstance(client, Client):
            return client.get_version_into(key, version, sink)
        return _write_whole(client.get_version(key, version), sink)

    _download(ctx, fetch, f"{key}: no version {version}")


def _getat(ctx: _Ctx) -> None:
    key, instant = _words(ctx, 2, 2)
    client = ctx.client

    def fetch(sink: BinaryIO) -> bool:
        if isinstance(client, Client):
            return client.get_at_into(key, instant, sink)
        return _write_whole(client.get_at(key, instant), sink)

    _download(ctx, fetch, f"{key}: not found at {instant}")


def _ping(ctx: _Ctx) -> None:
    _words(ctx, 0, 0)
    ctx.client.ping()
    _line(ctx, "PONG")


def _info(ctx: _Ctx) -> None:
    _words(ctx, 0, 0)
    for name, value in ctx.client.info().items():
        _line(ctx, f"{name} {value}")


#: Operations that write a value's bytes, to stdout or ``--output``.
_OUTPUT_OPS = frozenset({"bget", "getv", "getat"})

_OPERATIONS: dict[str, Callable[[_Ctx], None]] = {
    "set": _set,
    "get": _get,
    "stats": _stats,
    "delete": _delete,
    "cas": _cas,
    "mset": _mset,
    "mget": _mget,
    "bset": _bset,
    "bget": _bget,
    "version": _version,
    "versions": _versions,
    "getv": _getv,
    "getat": _getat,
    "ping": _ping,
    "info": _info,
}
