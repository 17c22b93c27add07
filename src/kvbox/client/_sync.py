"""Blocking GW-KV clients: ``Client`` over TCP, ``UdpClient`` and ``udp_request`` over UDP.

Layer: client. Rules: all framing is ``kvbox.proto.gwkv`` (encoders + ``ReplyParser``),
all reply meaning is ``_common``; this module only moves bytes. Socket errors are
translated here, once, into ``OSError`` subclasses whose message names the server:
``ConnectionRefusedError``, ``ConnectionResetError``, ``TimeoutError``.

A connection that failed mid-request is out of step, so it is dropped; the next call
opens a new one. ``timeout`` bounds each wait for the network, not a whole transfer: a
5 GiB ``bset`` may take minutes as long as bytes keep moving.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from types import TracebackType
from typing import BinaryIO

from kvbox.auth.gwkv import prove
from kvbox.client import _common as c
from kvbox.errors import (
    ConditionFailed,
    InvalidArgument,
    ProtocolError,
    RemoteError,
    ValueTooLarge,
)
from kvbox.proto import gwkv
from kvbox.proto.gwkv import (
    BinaryReply,
    ErrorReply,
    Expect,
    NotFoundReply,
    Reply,
    ReplyChunk,
    ReplyEnd,
)

#: recv() size: one read takes a whole 16-deep pipeline of replies or a body chunk.
_RECV = 256 * 1024
#: Seconds idle after which a connection is checked for a server-side close first.
_STALE_AFTER = 1.0


class _SyncApi:
    """The commands, written once over ``_call`` (one request -> one reply event)."""

    def _call(self, payload: bytes, kind: Expect) -> Reply:
        raise NotImplementedError

    def set(self, key: str, value: bytes | str) -> str:
        """Store a text value (ASCII, no NUL/CR/LF, <= 1 KiB); return its version id."""
        return c.version_of(self._call(gwkv.encode_set(key, value), Expect.LINE))

    def get(self, key: str) -> bytes | None:
        """The newest value, or None; ``RemoteError`` ``NOTTEXT`` if it is not text
        (binary or over 1 KiB): read those with ``bget``."""
        return c.value_of(self._call(gwkv.encode_get(key), Expect.LINE))

    def stats(self) -> int:
        """The number of keys with a live value."""
        return c.count_of(self._call(gwkv.encode_stats(), Expect.LINE))

    def delete(self, key: str) -> bool:
        """Delete ``key``; False if it had no live value."""
        return c.deleted(self._call(gwkv.encode_delete(key), Expect.LINE))

    def cas(self, key: str, expected: str | None, value: bytes | str) -> str:
        """Set ``key`` only if its newest version is ``expected`` (None: only if absent).

        Raises ``ConditionFailed`` (with ``.current``) when the compare loses.
        """
        return c.version_of(self._call(gwkv.encode_cas(key, expected, value), Expect.LINE))

    def mset(self, pairs: c.Pairs) -> list[str]:
        """Write all pairs atomically; return their version ids in order."""
        items = c.pair_list(pairs)
        reply = self._call(gwkv.encode_multiset(items), Expect.LINE)
        return c.versions_of(reply, len(items))

    def mget(self, keys: Iterable[str]) -> list[bytes | None]:
        """The values of ``keys`` in order (None where absent); text values only."""
        names = list(keys)
        reply = self._call(gwkv.encode_multiget(names), Expect.MULTI)
        return c.items_of(reply, len(names))

    def version(self, key: str) -> str | None:
        """The newest version id of ``key``, or None."""
        return c.maybe_version(self._call(gwkv.encode_version(key), Expect.LINE))

    def versions(self, key: str) -> list[c.VersionInfo]:
        """The key's versions (delete markers included), newest first, at most 1,000."""
        return c.version_list_of(self._call(gwkv.encode_versions(key), Expect.INFO))

    def get_version(self, key: str, version: str) -> bytes | None:
        """The bytes of one version of ``key``; None if it has no such version."""
        reply = self._call(gwkv.encode_getv(key, version, binary=True), Expect.BINARY)
        if isinstance(reply, NotFoundReply):
            return None
        if isinstance(reply, BinaryReply) and reply.value is not None:
            return reply.value
        c.unexpected(reply)

    def get_at(self, key: str, when: datetime | int | str) -> bytes | None:
        """The bytes ``key`` had at the instant ``when``, or None if it had none then.

        ``when`` is an aware ``datetime``, an int of epoch milliseconds, or a wire
        instant string (RFC 3339 with a zone); a naive ``datetime`` raises
        ``InvalidArgument``. Only stored history can be read: without versioning a key
        keeps its newest version only, so an earlier instant gets None.
        """
        reply = self._call(gwkv.encode_getat(key, when, binary=True), Expect.BINARY)
        if isinstance(reply, NotFoundReply):
            return None
        if isinstance(reply, BinaryReply) and reply.value is not None:
            return reply.value
        c.unexpected(reply)

    def ping(self) -> None:
        c.pong(self._call(gwkv.encode_ping(), Expect.LINE))

    def info(self) -> dict[str, str]:
        """Server figures: objects, bytes, connections, uptime_s, cpu_user_s, ..."""
        return c.info_of(self._call(gwkv.encode_info(), Expect.INFO))

    def bset(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> str:
        """Store any bytes; return the version id."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("this client sends bset values as bytes")
        return c.version_of(self._call(gwkv.encode_bset(key, bytes(data)), Expect.LINE))

    def bget(self, key: str) -> bytes | None:
        """The newest value as bytes, or None."""
        reply = self._call(gwkv.encode_bget(key), Expect.BINARY)
        if isinstance(reply, NotFoundReply):
            return None
        if isinstance(reply, BinaryReply) and reply.value is not None:
            return reply.value
        c.unexpected(reply)


@contextmanager
def _network_errors(where: str, timeout: float | None) -> Iterator[None]:
    """Translate socket errors into OSErrors that say which server and what happened."""
    try:
        yield
    except TimeoutError:
        raise TimeoutError(f"no reply from {where} within {timeout} s") from None
    except ConnectionRefusedError:
        raise ConnectionRefusedError(f"connection refused by {where}") from None
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        raise ConnectionResetError(f"connection to {where} was reset") from None
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {where}: {exc.strerror}") from None


class Client(_SyncApi):
    """A blocking GW-KV client over one TCP connection.

    >>> with Client("127.0.0.1", 7070) as kv:   # doctest: +SKIP
    ...     version = kv.set("apple", "red")
    ...     kv.get("apple")
    b'red'

    Not thread-safe: use one client per thread.
    """

    def __init__(
        self,
        host: str = c.DEFAULT_HOST,
        port: int = c.DEFAULT_PORT,
        timeout: float | None = c.DEFAULT_TIMEOUT,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        #: With both, every connection authenticates first (AUTH's challenge-response:
        #: the secret never crosses the network); the principal the server named.
        self._credentials = c.credentials(access_key, secret_key)
        self.principal: str | None = None
        self._where = c.where(host, port)
        self._sock: socket.socket | None = None
        self._parser = gwkv.ReplyParser()
        self._closed = False
        self._last = time.monotonic()  # end of the last exchange
        self._closing: frozenset[str] = gwkv.CLOSING_CODES
        self._doomed = False  # the server will close after this exchange
        self._connect()

    # -- connection --

    def _connect(self) -> socket.socket:
        if self._closed:
            raise ConnectionError(f"client for {self._where} is closed")
        with _network_errors(self._where, self.timeout):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"could not connect to {self._where} within {self.timeout} s"
                ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._parser = gwkv.ReplyParser()
        if self._credentials is not None:
            try:
                self._authenticate(sock, *self._credentials)
            except BaseException:
                self._drop()
                raise
        return sock

    def _authenticate(self, sock: socket.socket, access_key: str, secret_key: str) -> None:
        """AUTH's two steps on a new connection (docs/protocol.md §5)."""
        with _network_errors(self._where, self.timeout):
            self._parser.expect(Expect.LINE)
            sock.sendall(gwkv.encode_auth(access_key))
            nonce = c.word_of(self._reply(sock))
            self._parser.expect(Expect.LINE)
            sock.sendall(gwkv.encode_auth(access_key, nonce, prove(secret_key, access_key, nonce)))
            self.principal = c.word_of(self._reply(sock))

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Close the connection; the client cannot be used afterwards."""
        self._closed = True
        self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stale(self, sock: socket.socket) -> bool:
        """True if the server closed (or spoke on) the connection while we were idle.

        With no request outstanding, anything readable -- end of file, or a parting
        ``ERR`` -- means the server is done with this connection (e.g. its idle
        timeout), so a request sent on it would be lost. Checked only after a pause so
        back-to-back calls pay nothing.
        """
        if time.monotonic() - self._last < _STALE_AFTER:
            return False
        return bool(select.select([sock], [], [], 0)[0])

    @contextmanager
    def _exchange(self, closing: frozenset[str] = gwkv.CLOSING_CODES) -> Iterator[socket.socket]:
        """One request/reply exchange: the socket, with errors translated. The connection
        is dropped if the exchange failed midway (it is out of step) or the server
        answered with an ``ERR`` in ``closing`` (it closes after those)."""
        sock = self._sock
        if sock is not None and self._stale(sock):
            self._drop()
            sock = None
        sock = sock or self._connect()
        self._closing = closing
        self._doomed = False
        ok = False
        try:
            with _network_errors(self._where, self.timeout):
                yield sock
            ok = True
        except (RemoteError, ConditionFailed):
            ok = True  # a complete refusal: the connection is still in step
            raise
        finally:
            self._last = time.monotonic()
            if not ok or self._doomed:
                self._drop()

    def _reply(self, sock: socket.socket) -> Reply:
        parser = self._parser
        while (reply := parser.next_reply()) is None:
            data = sock.recv(_RECV)
            if not data:
                raise ConnectionResetError(f"{self._where} closed the connection")
            parser.feed(data)
        if type(reply) is ErrorReply and reply.code in self._closing:
            self._doomed = True
        return reply

    def _call(
        self, payload: bytes, kind: Expect, closing: frozenset[str] = gwkv.CLOSING_CODES
    ) -> Reply:
        with self._exchange(closing) as sock:
            self._parser.expect(kind)
            sock.sendall(payload)
            return self._reply(sock)

    # -- streaming --

    def bset(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> str:
        """Store any bytes, or the contents of a binary file object, streamed.

        From a file, ``length`` bytes are sent from its current position (default: up to
        its end; an unseekable stream is first spooled to a temporary file, not memory).
        """
        return self._bwrite(gwkv.encode_bset_header, (key,), data, length)

    def bcas(
        self, key: str, expected: str | None, data: bytes | BinaryIO, length: int | None = None
    ) -> str:
        """``bset`` only if the newest version is ``expected`` (None: only if absent)."""
        return self._bwrite(gwkv.encode_bcas_header, (key, expected), data, length)

    def _bwrite(
        self,
        header: Callable[..., bytes],
        args: tuple[str] | tuple[str, str | None],
        data: bytes | BinaryIO,
        length: int | None,
    ) -> str:
        with ExitStack() as stack:
            if isinstance(data, bytes | bytearray | memoryview):
                body = bytes(data)
                if length is not None and length != len(body):
                    raise InvalidArgument(f"length {length} != len(data) {len(body)}")
                head: bytes = header(*args, len(body))
                if len(body) <= c.IO_CHUNK:
                    reply = self._call(
                        head + body + b"\n", Expect.LINE, gwkv.BINARY_WRITE_CLOSING_CODES
                    )
                    return c.version_of(reply)
                source: BinaryIO | None = None
                size = len(body)
            else:
                source, size = c.sized_source(data, length, stack)
                head = header(*args, size)
                body = b""
            with self._exchange(gwkv.BINARY_WRITE_CLOSING_CODES) as sock:
                self._parser.expect(Expect.LINE)
                try:
                    sock.sendall(head)
                    if source is None:
                        sock.sendall(body)
                    else:
                        left = size
                        while left:
                            chunk = c.read_some(source, min(left, c.IO_CHUNK))
                            sock.sendall(chunk)
                            left -= len(chunk)
                    sock.sendall(b"\n")
                except (BrokenPipeError, ConnectionResetError):
                    # The server may have refused the value (e.g. TOOLARGE) and closed:
                    # its reply says why, which beats "broken pipe".
                    self._raise_early_reply(sock)
                    raise
                reply = self._reply(sock)
        return c.version_of(reply)

    def _raise_early_reply(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(0.5)
            reply = self._reply(sock)
        except (OSError, ProtocolError):
            return
        if isinstance(reply, ErrorReply):
            self._drop()  # the server closes after refusing a body it did not read
            raise RemoteError(reply.code, reply.message)

    def bget(self, key: str) -> bytes | None:
        """The newest value as bytes (whole, in memory), or None."""
        parts: list[bytes] = []
        return b"".join(parts) if self._bread(gwkv.encode_bget(key), parts.append) else None

    def bget_into(self, key: str, fileobj: BinaryIO) -> bool:
        """Stream the newest value into ``fileobj``; False (nothing written) if absent."""
        return self._bread(gwkv.encode_bget(key), fileobj.write)

    def get_version(self, key: str, version: str) -> bytes | None:
        """The bytes of one version of ``key`` (streamed), or None if it has no such one."""
        parts: list[bytes] = []
        request = gwkv.encode_getv(key, version, binary=True)
        return b"".join(parts) if self._bread(request, parts.append) else None

    def get_version_into(self, key: str, version: str, fileobj: BinaryIO) -> bool:
        return self._bread(gwkv.encode_getv(key, version, binary=True), fileobj.write)

    def get_at(self, key: str, when: datetime | int | str) -> bytes | None:
        """The bytes ``key`` had at the instant ``when`` (streamed), or None if it had
        none then. ``when``: an aware ``datetime``, int epoch milliseconds, or an RFC
        3339 string with a zone; without versioning only the newest version is kept."""
        parts: list[bytes] = []
        request = gwkv.encode_getat(key, when, binary=True)
        return b"".join(parts) if self._bread(request, parts.append) else None

    def get_at_into(self, key: str, when: datetime | int | str, fileobj: BinaryIO) -> bool:
        """Stream the value ``key`` had at ``when`` into ``fileobj``; False if none."""
        return self._bread(gwkv.encode_getat(key, when, binary=True), fileobj.write)

    def _bread(self, request: bytes, sink: Callable[[bytes], object]) -> bool:
        with self._exchange() as sock:
            self._parser.expect(Expect.BINARY)
            sock.sendall(request)
            reply = self._reply(sock)
            if isinstance(reply, NotFoundReply):
                return False
            if not isinstance(reply, BinaryReply):
                c.unexpected(reply)
            if reply.value is not None:
                sink(reply.value)
                return True
            while not isinstance(part := self._reply(sock), ReplyEnd):
                if not isinstance(part, ReplyChunk):
                    c.unexpected(part)
                sink(part.data)
            return True


def udp_request(
    host: str, port: int, payload: bytes, timeout: float | None = c.DEFAULT_TIMEOUT
) -> bytes:
    """Send one datagram of requests and return the reply datagram.

    The socket is connected, so a closed port shows up as ``ConnectionRefusedError``
    (from the ICMP error) instead of a timeout. No retries: UDP requests may be lost.
    """
    if len(payload) > gwkv.UDP_MAX:
        raise ValueTooLarge(f"request of {len(payload)} bytes does not fit a datagram: use TCP")
    where = c.where(host, port)
    with _network_errors(where, timeout):
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.send(payload)
            return sock.recv(65_536)


class UdpClient(_SyncApi):
    """The same commands, one datagram per request (no connection, no streaming).

    Requests and replies must fit one datagram (``UDP_MAX`` bytes); a reply that does
    not comes back as ``ERR TOOBIG`` (raised as ``RemoteError``).
    """

    def __init__(
        self,
        host: str = c.DEFAULT_HOST,
        port: int = c.DEFAULT_PORT,
        timeout: float | None = c.DEFAULT_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def _call(self, payload: bytes, kind: Expect) -> Reply:
        data = udp_request(self.host, self.port, payload, self.timeout)
        parser = gwkv.ReplyParser(stream_threshold=gwkv.UDP_MAX)
        parser.expect(kind)
        parser.feed(data)
        reply = parser.next_reply()
        if reply is None:
            raise ProtocolError(f"incomplete reply datagram {data[:80]!r}")
        return reply

    def close(self) -> None:
        """Nothing to close (one socket per request); here for symmetry with Client."""

    def __enter__(self) -> UdpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
