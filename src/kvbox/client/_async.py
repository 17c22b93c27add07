"""``AsyncClient``: the GW-KV client on asyncio streams, with request pipelining.

Layer: client. Rules: the same codec (``kvbox.proto.gwkv``) and reply meanings
(``_common``) as the blocking client; only the I/O differs. One connection carries one
exchange at a time (an ``asyncio.Lock``), so concurrent tasks may share a client safely;
``pipeline`` is how to put many requests on the wire at once. File reads and writes for
``bset``/``bget_into`` run in a thread so a slow disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import ExitStack, asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import BinaryIO

from kvbox.auth.gwkv import prove
from kvbox.client import _common as c
from kvbox.errors import ConditionFailed, InvalidArgument, ProtocolError, RemoteError
from kvbox.proto import gwkv
from kvbox.proto.gwkv import (
    BinaryReply,
    ErrorReply,
    Expect,
    NotFoundReply,
    Reply,
    ReplyChunk,
    ReplyEnd,
    Request,
)

_RECV = 256 * 1024


class AsyncClient:
    """An asyncio GW-KV client over one TCP connection, opened on first use.

    >>> async with AsyncClient("127.0.0.1", 7070) as kv:   # doctest: +SKIP
    ...     await kv.set("apple", "red")
    ...     replies = await kv.pipeline([gwkv.Get("apple")] * 16)

    Errors are those of ``Client``: ``RemoteError`` for ``ERR``, ``ConditionFailed`` for
    ``CONFLICT``, and ``ConnectionRefusedError``/``ConnectionResetError``/``TimeoutError``
    naming the server. ``timeout`` bounds each wait for the network.
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
        #: With both, every connection authenticates first (``Client``'s docstring).
        self._credentials = c.credentials(access_key, secret_key)
        self.principal: str | None = None
        self._where = c.where(host, port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = gwkv.ReplyParser()
        self._lock = asyncio.Lock()
        self._closed = False
        self._closing: frozenset[str] = gwkv.CLOSING_CODES
        self._doomed = False  # the server will close after this exchange

    # -- connection --

    async def connect(self) -> None:
        """Open the connection now (otherwise the first request opens it)."""
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        if self._closed:
            raise ConnectionError(f"client for {self._where} is closed")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise TimeoutError(
                f"could not connect to {self._where} within {self.timeout} s"
            ) from None
        except ConnectionRefusedError:
            raise ConnectionRefusedError(f"connection refused by {self._where}") from None
        except OSError as exc:
            raise OSError(exc.errno, f"cannot connect to {self._where}: {exc.strerror}") from None
        self._reader, self._writer = reader, writer
        self._parser = gwkv.ReplyParser()
        if self._credentials is not None:
            try:
                await self._authenticate(writer, *self._credentials)
            except BaseException:
                self._drop()
                raise
        return reader, writer

    async def _authenticate(
        self, writer: asyncio.StreamWriter, access_key: str, secret_key: str
    ) -> None:
        """AUTH's two steps on a new connection (docs/protocol.md §5)."""
        self._parser.expect(Expect.LINE)
        writer.write(gwkv.encode_auth(access_key))
        nonce = c.word_of(await self._reply())
        self._parser.expect(Expect.LINE)
        writer.write(gwkv.encode_auth(access_key, nonce, prove(secret_key, access_key, nonce)))
        self.principal = c.word_of(await self._reply())

    def _drop(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        """Close the connection; the client cannot be used afterwards."""
        self._closed = True
        writer = self._writer
        self._drop()
        if writer is not None:
            with contextlib.suppress(OSError):  # already reset: closed is closed
                await writer.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _exchange(
        self, closing: frozenset[str] = gwkv.CLOSING_CODES
    ) -> AsyncIterator[asyncio.StreamWriter]:
        """Hold the connection for one exchange, translating errors. It is dropped if
        the exchange failed midway (out of step) or the server answered with an ``ERR``
        in ``closing`` (it closes after those)."""
        async with self._lock:
            if self._reader is not None and self._reader.at_eof():
                self._drop()  # closed by the server while we were idle
            _, writer = await self._ensure()
            self._closing = closing
            self._doomed = False
            ok = False
            try:
                yield writer
                ok = not self._doomed
            except (RemoteError, ConditionFailed):
                ok = not self._doomed  # a complete refusal: the connection is in step
                raise
            except TimeoutError:
                raise TimeoutError(f"no reply from {self._where} within {self.timeout} s") from None
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                raise ConnectionResetError(f"connection to {self._where} was reset") from None
            finally:
                if not ok:
                    self._drop()

    async def _reply(self) -> Reply:
        parser = self._parser
        reader = self._reader
        assert reader is not None
        while (reply := parser.next_reply()) is None:
            async with asyncio.timeout(self.timeout):
                data = await reader.read(_RECV)
            if not data:
                raise ConnectionResetError(f"{self._where} closed the connection")
            parser.feed(data)
        if type(reply) is ErrorReply and reply.code in self._closing:
            self._doomed = True
        return reply

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.timeout):
            await writer.drain()

    async def _call(
        self, payload: bytes, kind: Expect, closing: frozenset[str] = gwkv.CLOSING_CODES
    ) -> Reply:
        async with self._exchange(closing) as writer:
            self._parser.expect(kind)
            writer.write(payload)
            await self._drain(writer)
            return await self._reply()

    # -- pipelining --

    async def pipeline(self, requests: Sequence[Request]) -> list[Reply]:
        """Send all ``requests`` in one write, then read their replies, in order.

        Requests are ``kvbox.proto.gwkv`` request events (``Get("k")``, ``Set("k",
        b"v")``, ...). Replies are reply events, one per request and not interpreted:
        ``OkReply``, ``ValueReply``, ``NotFoundReply``, ``ConflictReply``,
        ``ErrorReply`` (an ``ERR`` for one request does not stop the others),
        ``BinaryReply`` (always with its whole value), ``MultiReply``, ``InfoReply``.
        """
        payload = b"".join([gwkv.encode_request(r) for r in requests])
        return await self.pipeline_raw(payload, [gwkv.expect_for(r) for r in requests])

    async def pipeline_raw(self, payload: bytes, kinds: Sequence[Expect]) -> list[Reply]:
        """``pipeline`` for pre-encoded requests: ``kinds`` gives each one's reply shape.

        The cheapest way to pipeline: encode a batch once (``gwkv.encode_*``) and send it
        as often as needed.
        """
        async with self._exchange() as writer:
            parser = self._parser
            parser.expect_many(kinds)
            writer.write(payload)
            await self._drain(writer)
            replies: list[Reply] = []
            for _ in range(len(kinds)):
                reply = parser.next_reply() or await self._reply()
                if isinstance(reply, BinaryReply) and reply.value is None:
                    parts: list[bytes] = []
                    while not isinstance(part := await self._reply(), ReplyEnd):
                        if not isinstance(part, ReplyChunk):
                            c.unexpected(part)
                        parts.append(part.data)
                    reply = BinaryReply(reply.length, reply.version, b"".join(parts))
                replies.append(reply)
            return replies

    # -- commands --

    async def set(self, key: str, value: bytes | str) -> str:
        """Store a text value (ASCII, no NUL/CR/LF, <= 1 KiB); return its version id."""
        return c.version_of(await self._call(gwkv.encode_set(key, value), Expect.LINE))

    async def get(self, key: str) -> bytes | None:
        """The newest value, or None; ``RemoteError`` ``NOTTEXT`` if it is not text
        (binary or over 1 KiB): read those with ``bget``."""
        return c.value_of(await self._call(gwkv.encode_get(key), Expect.LINE))

    async def stats(self) -> int:
        return c.count_of(await self._call(gwkv.encode_stats(), Expect.LINE))

    async def delete(self, key: str) -> bool:
        return c.deleted(await self._call(gwkv.encode_delete(key), Expect.LINE))

    async def cas(self, key: str, expected: str | None, value: bytes | str) -> str:
        """Set only if the newest version is ``expected`` (None: only if absent)."""
        reply = await self._call(gwkv.encode_cas(key, expected, value), Expect.LINE)
        return c.version_of(reply)

    async def mset(self, pairs: c.Pairs) -> list[str]:
        items = c.pair_list(pairs)
        reply = await self._call(gwkv.encode_multiset(items), Expect.LINE)
        return c.versions_of(reply, len(items))

    async def mget(self, keys: Iterable[str]) -> list[bytes | None]:
        """The values of ``keys`` in order (None where absent); text values only."""
        names = list(keys)
        reply = await self._call(gwkv.encode_multiget(names), Expect.MULTI)
        return c.items_of(reply, len(names))

    async def version(self, key: str) -> str | None:
        return c.maybe_version(await self._call(gwkv.encode_version(key), Expect.LINE))

    async def versions(self, key: str) -> list[c.VersionInfo]:
        """The key's versions (delete markers included), newest first, at most 1,000."""
        return c.version_list_of(await self._call(gwkv.encode_versions(key), Expect.INFO))

    async def ping(self) -> None:
        c.pong(await self._call(gwkv.encode_ping(), Expect.LINE))

    async def info(self) -> dict[str, str]:
        return c.info_of(await self._call(gwkv.encode_info(), Expect.INFO))

    # -- binary values --

    async def bset(self, key: str, data: bytes | BinaryIO, length: int | None = None) -> str:
        """Store any bytes, or a binary file object's contents, streamed (see Client)."""
        return await self._bwrite(gwkv.encode_bset_header, (key,), data, length)

    async def bcas(
        self, key: str, expected: str | None, data: bytes | BinaryIO, length: int | None = None
    ) -> str:
        return await self._bwrite(gwkv.encode_bcas_header, (key, expected), data, length)

    async def _bwrite(
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
                payload = header(*args, len(body)) + body + b"\n"
                reply = await self._call(payload, Expect.LINE, gwkv.BINARY_WRITE_CLOSING_CODES)
                return c.version_of(reply)
            source, size = await asyncio.to_thread(c.sized_source, data, length, stack)
            head = header(*args, size)
            async with self._exchange(gwkv.BINARY_WRITE_CLOSING_CODES) as writer:
                self._parser.expect(Expect.LINE)
                writer.write(head)
                left = size
                try:
                    while left:
                        chunk = await asyncio.to_thread(c.read_some, source, min(left, c.IO_CHUNK))
                        writer.write(chunk)
                        left -= len(chunk)
                        await self._drain(writer)
                    writer.write(b"\n")
                    await self._drain(writer)
                except (BrokenPipeError, ConnectionResetError):
                    await self._raise_early_reply()
                    raise
                reply = await self._reply()
        return c.version_of(reply)

    async def _raise_early_reply(self) -> None:
        """After a failed upload, raise the server's ``ERR`` if it sent one (see Client)."""
        try:
            async with asyncio.timeout(0.5):
                reply = await self._reply()
        except (OSError, ProtocolError):
            return
        if isinstance(reply, ErrorReply):
            self._drop()
            raise RemoteError(reply.code, reply.message)

    async def bget(self, key: str) -> bytes | None:
        """The newest value as bytes (whole, in memory), or None."""
        return await self._bread_whole(gwkv.encode_bget(key))

    async def bget_into(self, key: str, fileobj: BinaryIO) -> bool:
        """Stream the newest value into ``fileobj``; False (nothing written) if absent."""
        return await self._bread(gwkv.encode_bget(key), _writer_to(fileobj))

    async def get_version(self, key: str, version: str) -> bytes | None:
        """The bytes of one version of ``key`` (whole, in memory), or None if it has no
        such version."""
        return await self._bread_whole(gwkv.encode_getv(key, version, binary=True))

    async def get_at(self, key: str, when: datetime | int | str) -> bytes | None:
        """The bytes ``key`` had at the instant ``when``, or None if it had none then.

        ``when`` is an aware ``datetime``, an int of epoch milliseconds, or an RFC 3339
        string with a zone (see ``Client.get_at``); without versioning a key keeps only
        its newest version, so an earlier instant gets None.
        """
        return await self._bread_whole(gwkv.encode_getat(key, when, binary=True))

    async def get_at_into(self, key: str, when: datetime | int | str, fileobj: BinaryIO) -> bool:
        """Stream the value ``key`` had at ``when`` into ``fileobj``; False if none."""
        request = gwkv.encode_getat(key, when, binary=True)
        return await self._bread(request, _writer_to(fileobj))

    async def _bread_whole(self, request: bytes) -> bytes | None:
        parts: list[bytes] = []

        async def keep(data: bytes) -> None:
            parts.append(data)

        return b"".join(parts) if await self._bread(request, keep) else None

    async def _bread(self, request: bytes, sink: Callable[[bytes], Awaitable[None]]) -> bool:
        """Send one binary read (``BGET``, ``BGETV``, ``BGETAT``) and pour its value into
        ``sink``; False on ``NOTFOUND``."""
        async with self._exchange() as writer:
            self._parser.expect(Expect.BINARY)
            writer.write(request)
            await self._drain(writer)
            reply = await self._reply()
            if isinstance(reply, NotFoundReply):
                return False
            if not isinstance(reply, BinaryReply):
                c.unexpected(reply)
            if reply.value is not None:
                await sink(reply.value)
                return True
            while not isinstance(part := await self._reply(), ReplyEnd):
                if not isinstance(part, ReplyChunk):
                    c.unexpected(part)
                await sink(part.data)
            return True


def _writer_to(fileobj: BinaryIO) -> Callable[[bytes], Awaitable[None]]:
    """A sink writing into ``fileobj`` in a thread, so a slow disk never stalls the loop."""

    async def write(data: bytes) -> None:
        await asyncio.to_thread(fileobj.write, data)

    return write
