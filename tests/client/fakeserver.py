"""An in-process GW-KV server for the clients' unit tests: the real codec over a dict.

Layer: tests/client. Rules: this is the clients' test double, the way httpx tests use
``MockTransport``: it speaks the protocol through ``kvbox.proto.gwkv`` (so framing is
real) but stores into a dict in threads, with none of the server's storage or asyncio
code. It exists to test the clients' framing and error handling; the real server is
tested end to end in tests/e2e.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from types import TracebackType

from kvbox.proto import gwkv
from kvbox.proto.gwkv import RequestEvent

#: Key whose writes the fake refuses with ``ERR STORAGE``, to test error replies.
FAIL_KEY = "fail"


class FakeServer:
    """TCP and UDP GW-KV on 127.0.0.1 ports chosen by the kernel."""

    def __init__(self, *, max_value: int = 1 << 30, stream_threshold: int = 64 * 1024) -> None:
        self.max_value = max_value
        self.stream_threshold = stream_threshold
        self.data: dict[str, tuple[str, bytes]] = {}
        #: Every write and delete per key, oldest first: (time_ns, version, value or
        #: None for a delete), for time-travel reads and reads by version id.
        self.history: dict[str, list[tuple[int, str, bytes | None]]] = {}
        self.requests: list[RequestEvent] = []  # every event seen, in order
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.settimeout(0.05)
        self.udp_port: int = self._udp.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._threads = [
            threading.Thread(target=self._accept_loop, daemon=True),
            threading.Thread(target=self._udp_loop, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self.drop_connections()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        self._udp.close()

    def drop_connections(self) -> None:
        """Close every open connection from the server side."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    # -- request handling --

    def _write(self, key: str, value: bytes, expected: str | None, conditional: bool) -> bytes:
        if key == FAIL_KEY:
            return gwkv.err("STORAGE", "disk on fire")
        with self._lock:
            current = self.data.get(key)
            if conditional and (current[0] if current else None) != expected:
                return gwkv.conflict(current[0] if current else None)
            version = f"{next(self._ids):026d}"
            self.data[key] = (version, value)
            self.history.setdefault(key, []).append((time.time_ns(), version, value))
        return gwkv.ok_version(version)

    def _delete(self, key: str) -> bytes:
        with self._lock:
            if self.data.pop(key, None) is None:
                return gwkv.NOTFOUND
            marker = f"{next(self._ids):026d}"
            self.history[key].append((time.time_ns(), marker, None))
        return gwkv.OK

    def _past(self, key: str, binary: bool, match: str | int) -> bytes:
        """GETV/GETAT: the version with id ``match`` (str) or the newest at ``match``
        (int, ns); a delete is NOTFOUND, as on the real server."""
        with self._lock:
            entries = list(self.history.get(key, ()))
        found = [
            (version, value)
            for ns, version, value in entries
            if (version == match if isinstance(match, str) else ns <= match)
        ]
        if not found or found[-1][1] is None:
            return gwkv.NOTFOUND
        version, value = found[-1]
        assert value is not None
        return gwkv.value_binary(value, version) if binary else self._text_reply(value)

    def _text(self, key: str) -> bytes:
        with self._lock:
            found = self.data.get(key)
        if found is None:
            return gwkv.NOTFOUND
        return self._text_reply(found[1])

    @staticmethod
    def _text_reply(value: bytes) -> bytes:
        if (
            len(value) > gwkv.MAX_TEXT_VALUE
            or not value.isascii()
            or any(b in value for b in (0, 10, 13))
        ):
            return gwkv.err("NOTTEXT", "use BGET")
        return gwkv.value_text(value)

    def handle(self, event: RequestEvent) -> bytes:
        self.requests.append(event)
        match event:
            case gwkv.Set(key, value):
                return self._write(key, value, None, False)
            case gwkv.Get(key):
                return self._text(key)
            case gwkv.Stats():
                return gwkv.ok(str(len(self.data)))
            case gwkv.Delete(key):
                return self._delete(key)
            case gwkv.Cas(key, expected, value):
                return self._write(key, value, expected, True)
            case gwkv.MultiSet(pairs):
                return gwkv.ok(*(self._write(k, v, None, False)[3:-1].decode() for k, v in pairs))
            case gwkv.MultiGet(keys):
                return gwkv.multi_get([self._text(k) for k in keys])
            case gwkv.BSet(key, _, value, conditional, expected) if value is not None:
                return self._write(key, value, expected, conditional)
            case gwkv.BGet(key):
                with self._lock:
                    found = self.data.get(key)
                if found is None:
                    return gwkv.NOTFOUND
                return gwkv.value_binary(found[1], found[0])
            case gwkv.Version(key):
                with self._lock:
                    found = self.data.get(key)
                return gwkv.ok_version(found[0]) if found else gwkv.NOTFOUND
            case gwkv.GetVersion(key, version, binary):
                return self._past(key, binary, version)
            case gwkv.GetAt(key, at_ns, binary):
                return self._past(key, binary, at_ns)
            case gwkv.Ping():
                return gwkv.PONG
            case gwkv.Info():
                return gwkv.info({"objects": len(self.data), "version": "fake"})
            case gwkv.Quit():
                return gwkv.BYE
            case gwkv.BadRequest(code, message):
                return gwkv.err(code, message)
        raise AssertionError(f"unhandled {event!r}")

    # -- transports --

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        parser = gwkv.RequestParser(self.max_value, stream_threshold=self.stream_threshold)
        streaming: gwkv.BSet | None = None
        body: list[bytes] = []
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(65536):
                parser.feed(data)
                out: list[bytes] = []
                while (event := parser.next_event()) is not None:
                    if isinstance(event, gwkv.BSet) and event.value is None:
                        streaming, body = event, []
                    elif isinstance(event, gwkv.BodyChunk):
                        body.append(event.data)
                    elif isinstance(event, gwkv.BodyEnd):
                        assert streaming is not None
                        whole = b"".join(body)
                        out.append(
                            self.handle(
                                gwkv.BSet(
                                    streaming.key,
                                    len(whole),
                                    whole,
                                    streaming.conditional,
                                    streaming.expected,
                                )
                            )
                        )
                        streaming = None
                    else:
                        out.append(self.handle(event))
                    if parser.closed or isinstance(event, gwkv.Quit):
                        conn.sendall(b"".join(out))
                        self._linger(conn)
                        return
                conn.sendall(b"".join(out))

    @staticmethod
    def _linger(conn: socket.socket) -> None:
        """Half-close and read a little longer, so the client reads our last reply
        instead of a reset caused by the bytes we did not read."""
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.5)
        with contextlib.suppress(OSError):
            while conn.recv(1 << 20):
                pass

    def _udp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._udp.recvfrom(65_536)
            except TimeoutError:
                continue
            except OSError:
                return
            parser = gwkv.RequestParser(gwkv.UDP_MAX, stream_threshold=gwkv.UDP_MAX)
            parser.feed(data)
            replies = []
            while (event := parser.next_event()) is not None:
                replies.append(self.handle(event))
            reply = b"".join(replies)
            if len(reply) > gwkv.UDP_MAX:
                reply = gwkv.err("TOOBIG", "use TCP")
            self._udp.sendto(reply, peer)
