"""The HTTP front door in process: query parsing, Expect, and GetObject over sendfile.

Layer: tests/server. A real Store (SQLite metadata, chunk files in a temp directory)
behind the real S3 front door and ``build_app``, served by aiohttp on 127.0.0.1 under
both event loops kvbox can run on (uvloop, as ``kvbox serve`` does, and asyncio's);
requests are presigned with kvbox's own signer and sent by aiohttp's client. Whether a
body went out with sendfile is read where an operator would read it: /metrics.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest
import uvloop
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from kvbox.auth import presign_url
from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.meta.sqlite import SqliteMetaStore
from kvbox.core.store import Store
from kvbox.metrics import ServerCounters
from kvbox.s3door.frontend import S3Frontend
from kvbox.s3door.handlers.common import Context
from kvbox.s3door.handlers.object import FILE_BODY_MIN
from kvbox.server.http import build_app, parse_query

AK = "HTTPTESTACCESSKEY001"
SK = "http-test-secret/key+0000000000000000000"
#: Chunks of an odd size, so ranges start and end inside chunks and on their edges.
CHUNK = 300_000
#: Big enough for sendfile, spanning several chunks, ending in a partial one.
SIZE = 2 * FILE_BODY_MIN + 12_345

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


# --- query parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["", "a", "a=", "=b", "a&&b", "a+b=c+d%20e", "%zz=%E2%82%AC&x=%ff", "&&=&", "a=b=c", "k=%2B+"],
)
def test_parse_query_matches_parse_qsl(raw: str) -> None:
    assert parse_query(raw) == parse_qsl(raw, keep_blank_values=True)


@given(st.text(alphabet="ab=&+%2F0x€ ", max_size=30))
def test_parse_query_matches_parse_qsl_on_any_text(raw: str) -> None:
    assert parse_query(raw) == parse_qsl(raw, keep_blank_values=True)


# --- a served store ------------------------------------------------------------------


class Served:
    """kvbox's HTTP front door over a fresh store, listening on 127.0.0.1."""

    def __init__(self, root: Path, ssl_context: ssl.SSLContext | None = None) -> None:
        self.root = root
        self.ssl_context = ssl_context
        self.blobs = LocalDirBlobStore(root)
        self.store = Store(
            SqliteMetaStore(root / "meta.db", synchronous="normal"), self.blobs, chunk_size=CHUNK
        )
        self.runner: web.ServerRunner | None = None
        self.base = ""

    async def __aenter__(self) -> Served:
        await self.store.open()
        await self.store.ensure_bucket("bkt")
        s3 = S3Frontend(Context(self.store, "kv"), access_key=AK, secret_key=SK)

        async def stored() -> tuple[int, int]:
            return 0, 0

        server = build_app(ServerCounters(), stored, lambda: None, s3)
        self.runner = web.ServerRunner(server, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        scheme = "https" if self.ssl_context else "http"
        self.base = f"{scheme}://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.store.close()

    def url(self, method: str, key: str) -> str:
        scheme, _, host = self.base.partition("://")
        return presign_url(
            method, scheme, host, f"/bkt/{key}", access_key=AK, secret_key=SK,
            now=datetime.now(UTC), expires=300, region="us-east-1",
        )  # fmt: skip

    async def sendfile_responses(self, http: aiohttp.ClientSession) -> int:
        async with http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        m = re.search(r"^kvbox_sendfile_responses_total (\S+)$", text, re.MULTILINE)
        assert m is not None, text
        return int(float(m.group(1)))

    def chunk_files(self) -> set[Path]:
        return {p for p in (self.root / "chunks").rglob("*") if p.is_file()}


def _run(loop: str, scenario: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(scenario(), 120))


# --- GetObject with sendfile ---------------------------------------------------------


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_get_object_bytes_and_ranges_go_out_with_sendfile(tmp_path: Path, loop: str) -> None:
    data = os.urandom(SIZE)
    last = SIZE - 1
    big_ranges = {  # Range header -> (first, last): each at least FILE_BODY_MIN long
        f"bytes=100-{FILE_BODY_MIN + 100}": (100, FILE_BODY_MIN + 100),  # inside chunks
        f"bytes={CHUNK}-": (CHUNK, last),  # from a chunk's first byte
        f"bytes=-{FILE_BODY_MIN + 7}": (SIZE - FILE_BODY_MIN - 7, last),  # a suffix
        f"bytes={CHUNK - 1}-{CHUNK + FILE_BODY_MIN}": (CHUNK - 1, CHUNK + FILE_BODY_MIN),
        f"bytes=0-{SIZE + 1000}": (0, last),  # past the end: clipped
    }

    async def scenario() -> None:
        async with Served(tmp_path) as srv, aiohttp.ClientSession() as http:
            await srv.store.put("bkt", "big", data)
            old_files = srv.chunk_files()
            assert len(old_files) == -(-SIZE // CHUNK)
            assert await srv.sendfile_responses(http) == 0

            async with http.get(srv.url("GET", "big")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Length"] == str(SIZE)
                assert await resp.read() == data
            assert await srv.sendfile_responses(http) == 1

            for n, (header, (first, end)) in enumerate(big_ranges.items(), start=2):
                async with http.get(srv.url("GET", "big"), headers={"Range": header}) as resp:
                    assert resp.status == 206, header
                    assert resp.headers["Content-Range"] == f"bytes {first}-{end}/{SIZE}"
                    assert await resp.read() == data[first : end + 1], header
                assert await srv.sendfile_responses(http) == n, header

            sent = await srv.sendfile_responses(http)
            small = f"bytes={CHUNK - 5}-{CHUNK + 5}"  # below FILE_BODY_MIN: streamed
            async with http.get(srv.url("GET", "big"), headers={"Range": small}) as resp:
                assert resp.status == 206
                assert await resp.read() == data[CHUNK - 5 : CHUNK + 6]
            async with http.head(srv.url("HEAD", "big")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Length"] == str(SIZE)
            assert await srv.sendfile_responses(http) == sent

            # Every send released its pins: once the object is replaced, its old
            # chunk files are collected.
            await srv.store.put("bkt", "big", b"small now")
            await srv.store.sweep_chunk_writers()
            assert not (old_files & srv.chunk_files())

    _run(loop, scenario)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_client_gone_mid_sendfile_releases_the_files(tmp_path: Path, loop: str) -> None:
    """A client that reads a little of a big object and hangs up: the server stays
    healthy and the object's files are unpinned (collected once it is replaced)."""
    big = os.urandom(24 * 1024 * 1024)  # well past the loopback socket buffers

    async def scenario() -> None:
        async with Served(tmp_path) as srv, aiohttp.ClientSession() as http:
            await srv.store.put("bkt", "big", big)
            old_files = srv.chunk_files()
            host, _, port = srv.base.removeprefix("http://").partition(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            path = srv.url("GET", "big").removeprefix(srv.base)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            await reader.readexactly(64 * 1024)
            writer.transport.abort()  # RST: the send fails at once
            await srv.store.put("bkt", "big", b"replaced")
            for _ in range(100):  # the sendfile thread notices and lets go
                await srv.store.sweep_chunk_writers()
                if not (old_files & srv.chunk_files()):
                    break
                await asyncio.sleep(0.05)
            assert not (old_files & srv.chunk_files())
            async with http.get(f"{srv.base}/healthz") as resp:
                assert resp.status == 200

    _run(loop, scenario)


@pytest.fixture
def tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test certificate"
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(crt, key)
    client = ssl.create_default_context(cafile=str(crt))
    return server, client


def test_tls_connections_stream_instead(
    tmp_path: Path, tls_context: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_context
    data = os.urandom(SIZE)

    async def scenario() -> None:
        async with (
            Served(tmp_path / "data", server_ctx) as srv,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as http,
        ):
            await srv.store.put("bkt", "big", data)
            old_files = srv.chunk_files()
            async with http.get(srv.url("GET", "big"), headers={"Range": "bytes=7-"}) as resp:
                assert resp.status == 206
                assert await resp.read() == data[7:]
            assert await srv.sendfile_responses(http) == 0
            await srv.store.put("bkt", "big", b"small now")  # and nothing stayed pinned
            await srv.store.sweep_chunk_writers()
            assert not (old_files & srv.chunk_files())

    (tmp_path / "data").mkdir()
    _run("uvloop", scenario)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_expect_100_continue(tmp_path: Path, loop: str) -> None:
    """``100 Continue`` comes once the request is authenticated and authorised, before
    the body; an expectation other than 100-continue is ignored, as AWS does; a refused
    upload gets its final answer without ever being asked for its body."""

    async def scenario() -> None:
        async with Served(tmp_path) as srv:
            host, _, port = srv.base.removeprefix("http://").partition(":")
            path = srv.url("PUT", "obj").removeprefix(srv.base)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n".encode()
            )
            await writer.drain()
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            writer.write(
                f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 3\r\n"
                "Expect: something-else\r\n\r\nabc".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"100 Continue" not in head
            writer.close()
            v = await srv.store.head("bkt", "obj")
            assert v is not None and await srv.store.read(v) == b"abc"

            # Unsigned: refused before the body; no 100, the connection closes after.
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"PUT /bkt/refused HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
            assert b"100 Continue" not in answer and b"<Code>AccessDenied</Code>" in answer
            assert b"Connection: close" in answer
            writer.close()
            assert await srv.store.head("bkt", "refused") is None

    _run(loop, scenario)


# --- requests aiohttp refuses itself ---------------------------------------------------

#: Raw requests aiohttp's parser refuses -> the S3 code kvbox answers.
UNPARSABLE = [
    (b"GARBAGE / HTTP/1.1\r\nHost: h\r\n\r\n", 405, "MethodNotAllowed"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 405, "MethodNotAllowed"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 400, "BadRequest"),
    (b"GET / HTTP/9.9\r\nHost: h\r\n\r\n", 400, "BadRequest"),
    (b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400, "BadRequest"),
    (
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "BadRequest",
    ),
    (
        b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
        400,
        "RequestHeaderSectionTooLarge",
    ),
    (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        400,
        "RequestHeaderSectionTooLarge",
    ),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 400, "RequestHeaderSectionTooLarge"),
]


def test_requests_aiohttp_refuses_get_s3_errors_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every response carries S3's XML error and a request id, even one the HTTP library
    makes before any S3 code runs; none is logged as a server error."""

    async def scenario() -> None:
        async with Served(tmp_path) as srv:
            host, _, port = srv.base.removeprefix("http://").partition(":")
            for raw, status, code in UNPARSABLE:
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(raw)
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), timeout=10)
                writer.close()
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.split(b" ", 2)[1] == str(status).encode(), (raw[:40], answer[:300])
                headers = dict(
                    line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
                )
                request_id = headers[b"x-amz-request-id"]
                assert headers[b"Content-Type"] == b"application/xml"
                assert f"<Code>{code}</Code>".encode() in body, body
                assert b"<RequestId>" + request_id + b"</RequestId>" in body

    with caplog.at_level("INFO"):
        _run("uvloop", scenario)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not [r for r in caplog.records if r.exc_info]
    refused = [r for r in caplog.records if "refused before S3 saw it" in r.getMessage()]
    assert len(refused) == len(UNPARSABLE)
