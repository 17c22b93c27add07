"""A small reverse proxy that publishes a kvbox HTTP port under a sub-path, for the
console's "behind a reverse proxy" test.

Layer: tests/e2e. Rules: what nginx's ``location /storage/ { proxy_pass http://kvbox/; }``
does, and no more: requests under ``PREFIX/`` are forwarded with the prefix stripped,
the Host kept, and ``X-Forwarded-Prefix``, ``X-Forwarded-Proto`` and ``X-Forwarded-For``
added; anything else is 404. Bodies stream both ways. It runs an aiohttp server on its
own event loop in a daemon thread, bound to 127.0.0.1, and stops when closed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

from aiohttp import ClientSession, ClientTimeout, web

#: Hop-by-hop headers (RFC 9110 §7.6.1) a proxy must not forward.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class SubPathProxy:
    def __init__(self, upstream_port: int, prefix: str = "/storage") -> None:
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.prefix = prefix.rstrip("/")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="subpath-proxy", daemon=True)
        self.seen: list[str] = []  # "METHOD /path" of every request, for assertions

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    def __enter__(self) -> SubPathProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        session = ClientSession(timeout=ClientTimeout(total=60), auto_decompress=False)
        server = web.Server(lambda request: self._forward(session, request))
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await session.close()

    async def _forward(
        self, session: ClientSession, request: web.BaseRequest
    ) -> web.StreamResponse:
        path = request.raw_path
        self.seen.append(f"{request.method} {path}")
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            return web.Response(status=404, text="not behind this proxy")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["X-Forwarded-Prefix"] = self.prefix
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-For"] = request.remote or ""
        body = request.content if request.body_exists else None
        async with session.request(
            request.method,
            self.upstream + (path[len(self.prefix) :] or "/"),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            out = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    out.headers.add(k, v)
            if upstream.content_length is not None:
                out.content_length = upstream.content_length
            await out.prepare(request)
            async for piece in upstream.content.iter_chunked(1 << 16):
                await out.write(piece)
            await out.write_eof()
            return out
