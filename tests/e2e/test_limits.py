"""Every connection bounded, on every port: hostile clients against a real ``kvbox serve``.

Layer: tests/e2e. Each test makes the fault for real -- idle connections by the hundred,
slowloris heads, endless headers, a signed upload that stalls, a client that stops
reading, a TLS handshake that never comes -- and checks the answer (in the port's own
form: S3 XML, the website's HTML, a GW-KV ``ERR`` line), the data, the server's memory
and that it keeps serving everyone else. Timeouts are shortened (``LIMITS``) so each
fault plays out in seconds; every loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import re
import select
import shutil
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from _ports import free_port

from ._s3 import S3Server, module_server, signed_head
from ._server import rss_kib
from ._tls import make_cert

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
IDLE_TIMEOUT = 3.0
#: Scheduling slack on a loaded 2-core machine (the sweep runs every ~0.4 s here).
SLACK = 3.0
LIMITS = [
    "--header-timeout", str(HEADER_TIMEOUT),
    "--body-timeout", str(BODY_TIMEOUT),
    "--idle-timeout", str(IDLE_TIMEOUT),
]  # fmt: skip

_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_CODE = re.compile(rb"<Code>([^<]+)</Code>")


# --- helpers ----------------------------------------------------------------------------


def connect(port: int, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes, and whether it did within ``within``."""
    out = bytearray()
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), False
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            return bytes(out), False
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out), True
        if not data:
            return bytes(out), True
        out += data


def answer(data: bytes) -> tuple[int, str]:
    """(status, S3 error code) of a raw HTTP response."""
    m = _STATUS.match(data)
    assert m, f"not an HTTP response: {data[:200]!r}"
    code = _CODE.search(data)
    return int(m.group(1)), code.group(1).decode() if code else ""


def metrics(port: int, cafile: Path | None = None) -> dict[str, float]:
    """The server's /metrics as {"name{labels}": value} (over TLS with ``cafile``)."""
    scheme = "https" if cafile else "http"
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    url = f"{scheme}://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def assert_serves(srv: S3Server) -> None:
    """The server still answers a signed S3 request and a GW-KV request promptly."""
    t0 = time.monotonic()
    s3 = srv.client()
    s3.put_object(Bucket="kv", Key="alive", Body=b"yes")
    assert s3.get_object(Bucket="kv", Key="alive")["Body"].read() == b"yes"
    with srv.server.connect() as w:
        assert w.request(b"GET alive\n") == b"VALUE yes\n"
    assert time.monotonic() - t0 < 5, "the server answered others only slowly"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    web_port, console_port = free_port(), free_port()
    ports = ["--web-port", str(web_port), "--console-port", str(console_port)]
    with module_server(tmp_path_factory, "limits", *LIMITS, *ports) as s:
        s.web_port = web_port  # type: ignore[attr-defined]
        s.console_port = console_port  # type: ignore[attr-defined]
        yield s


# --- request heads ----------------------------------------------------------------------


@pytest.mark.parametrize("door", ["s3", "web", "console"])
def test_slowloris_head_is_cut_at_the_header_timeout(srv: S3Server, door: str) -> None:
    """A head dripped a byte every 0.2 s never completes: the server answers in the
    port's form (S3's and the website's 400 RequestTimeout, the console port's 408) and
    closes, while serving others meanwhile."""
    port = {
        "s3": srv.http_port,
        "web": srv.web_port,  # type: ignore[attr-defined]
        "console": srv.console_port,  # type: ignore[attr-defined]
    }[door]
    head = b"GET /kv/alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: " + b"d" * 200
    t0 = time.monotonic()
    with connect(port) as sock:
        closed = False
        for i in range(len(head)):
            if select.select([sock], [], [], 0.2)[0]:
                break  # the server spoke (or closed): stop dripping and read it
            if time.monotonic() - t0 > HEADER_TIMEOUT + SLACK:
                break
            try:
                sock.sendall(head[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        data, gone = read_until_closed(sock, SLACK)
    elapsed = time.monotonic() - t0
    assert closed or gone, "the slowloris connection was never closed"
    assert elapsed < HEADER_TIMEOUT + SLACK + 1
    status, code = answer(data)
    if door == "s3":
        assert (status, code) == (400, "RequestTimeout")
        assert b"x-amz-request-id: " in data
    elif door == "web":
        assert status == 400
        assert b"x-amz-error-code: RequestTimeout" in data and b"<html>" in data
    else:
        assert status == 408 and b"did not arrive in time" in data
    assert_serves(srv)


def test_oversized_heads_are_refused_in_s3_form(srv: S3Server) -> None:
    port = srv.http_port
    big = b"GET /kv/alive HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 20_000 + b"\r\n\r\n"
    many = b"GET /kv/alive HTTP/1.1\r\nHost: x\r\n"
    many += b"".join(b"X-F%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    for head, extra in ((big, b"<MaxSizeAllowed>16384</MaxSizeAllowed>"), (many, b"100")):
        with connect(port) as sock:
            sock.sendall(head)
            data, closed = read_until_closed(sock, 5)
        assert closed
        assert answer(data) == (400, "RequestHeaderSectionTooLarge"), data[:300]
        assert extra in data
    # A real client's biggest legitimate head passes: 2 KB of user metadata (S3's limit).
    s3 = srv.client()
    meta = {f"m{i}": "v" * 90 for i in range(20)}
    s3.put_object(Bucket="kv", Key="meta", Body=b"x", Metadata=meta)
    assert s3.head_object(Bucket="kv", Key="meta")["Metadata"] == meta


def test_endless_headers_from_300_connections_stay_bounded(srv: S3Server) -> None:
    """The issue's attack: 300 connections that send a request line and then headers
    without end. Each is refused once its head passes --max-header-bytes; the server's
    memory stays within a few MiB of where it was, and others are served throughout."""
    pid = srv.server.pid
    base = peak = rss_kib(pid)
    socks = [connect(srv.http_port) for _ in range(300)]
    line = b"X-Endless: " + b"e" * 1000 + b"\r\n"
    refused = 0
    try:
        for s in socks:
            s.sendall(b"GET /kv/alive HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
        deadline = time.monotonic() + 20
        live = list(socks)
        while live and time.monotonic() < deadline:
            for s in list(live):
                try:
                    s.send(line)
                except BlockingIOError:
                    pass
                except OSError:  # reset after the refusal: done with this one
                    live.remove(s)
                    refused += 1
                    continue
                try:
                    if s.recv(1 << 16, socket.MSG_PEEK):
                        live.remove(s)
                        refused += 1
                except BlockingIOError:
                    pass
                except OSError:
                    live.remove(s)
                    refused += 1
            peak = max(peak, rss_kib(pid))
        assert not live, f"{len(live)} endless-header connections still open after 20 s"
    finally:
        for s in socks:
            s.close()
    grown = peak - base
    assert grown < 40 * 1024, f"RSS grew {grown} KiB under 300 endless-header connections"
    assert refused == 300
    assert_serves(srv)
    m = metrics(srv.http_port)
    assert m['kvbox_refused_connections_total{door="s3",reason="header_bytes"}'] >= 300


# --- idle and keep-alive ------------------------------------------------------------------


def test_idle_connections_are_closed_on_every_port(srv: S3Server) -> None:
    ports = {
        "s3": srv.http_port,
        "web": srv.web_port,  # type: ignore[attr-defined]
        "console": srv.console_port,  # type: ignore[attr-defined]
        "gwkv": srv.server.port,
    }
    t0 = time.monotonic()
    socks = {door: connect(port) for door, port in ports.items()}
    # one used connection too: a keep-alive connection after its response
    used = connect(srv.http_port)
    used.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert used.recv(1000).startswith(b"HTTP/1.1 200")
    try:
        for door, sock in [*socks.items(), ("s3 keep-alive", used)]:
            data, closed = read_until_closed(sock, IDLE_TIMEOUT + SLACK)
            assert closed, f"idle {door} connection never closed"
            assert data == b"", f"idle {door} connection got {data!r}"
        assert time.monotonic() - t0 >= IDLE_TIMEOUT * 0.8
    finally:
        for s in [*socks.values(), used]:
            s.close()


# --- bodies ---------------------------------------------------------------------------------


def test_stalled_signed_upload_times_out_and_writes_nothing(srv: S3Server) -> None:
    """A signed PUT whose body stops after 64 KiB of 10 MiB: 400 RequestTimeout once it
    has made no progress for --body-timeout, no object, and nothing retained."""
    pid = srv.server.pid
    base = rss_kib(pid)
    socks = [connect(srv.http_port) for _ in range(20)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(signed_head(srv.http_port, "PUT", f"/kv/stalled{i}", 10 << 20))
            sock.sendall(b"s" * 65536)
        t0 = time.monotonic()
        assert_serves(srv)  # while they stall
        for sock in socks:
            data, closed = read_until_closed(sock, BODY_TIMEOUT + SLACK)
            assert closed and answer(data) == (400, "RequestTimeout"), data[-300:]
        assert time.monotonic() - t0 >= BODY_TIMEOUT * 0.8
    finally:
        for sock in socks:
            sock.close()
    s3 = srv.client()
    listed = s3.list_objects_v2(Bucket="kv", Prefix="stalled").get("Contents", [])
    assert listed == []
    grown = rss_kib(pid) - base
    assert grown < 30 * 1024, f"20 stalled uploads left {grown} KiB behind"
    m = metrics(srv.http_port)
    assert m['kvbox_timeouts_total{door="s3",phase="body"}'] >= 20


def test_a_client_that_stops_reading_its_download_is_cut(srv: S3Server) -> None:
    s3 = srv.client()
    s3.put_object(Bucket="kv", Key="big", Body=b"b" * (24 << 20))
    before = metrics(srv.http_port).get('kvbox_timeouts_total{door="s3",phase="send"}', 0)
    with connect(srv.http_port) as sock:
        sock.sendall(signed_head(srv.http_port, "GET", "/kv/big", 0))
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        time.sleep(BODY_TIMEOUT + SLACK)  # read nothing more
        sock.settimeout(10)
        got = 0
        try:
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        assert got < 24 << 20, "the whole body arrived: the server never cut the reader off"
        assert time.monotonic() - t0 < BODY_TIMEOUT + SLACK + 10
    after = metrics(srv.http_port).get('kvbox_timeouts_total{door="s3",phase="send"}', 0)
    # Plain TCP bodies go out with sendfile, which gives up on its own (same bound).
    log = srv.server.log_text()
    assert after > before or "sendfile made no progress" in log or "cut short" in log
    assert_serves(srv)


# --- connection limits ------------------------------------------------------------------------


def test_connection_limit_closes_idle_first_then_refuses_with_slowdown(
    tmp_path: Path,
) -> None:
    srv = S3Server(
        tmp_path / "data", *LIMITS, "--max-connections", "120", "--max-connections-per-ip", "0"
    ).start()
    try:
        # 120 idle connections: a newcomer is still served, an idle one closed for it.
        idle = [connect(srv.http_port) for _ in range(120)]
        time.sleep(1.5)  # idle long enough to be closed for a newcomer
        assert_serves(srv)
        m = metrics(srv.http_port)
        assert m['kvbox_evicted_connections_total{door="s3"}'] >= 1
        for s in idle:
            s.close()
        # 120 busy connections (each half a request head): now a newcomer is refused,
        # on the S3 port with 503 SlowDown (what SDKs retry), on GW-KV with ERR BUSY.
        deadline = time.monotonic() + 10
        while metrics(srv.http_port)['kvbox_open_connections{door="s3"}'] > 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        busy = [connect(srv.http_port) for _ in range(120)]
        for s in busy:
            s.sendall(b"GET /kv/alive HTTP/1.1\r\n")
        time.sleep(0.3)
        with connect(srv.http_port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data, closed = read_until_closed(sock, 5)
        assert closed and answer(data) == (503, "SlowDown"), data[:300]
        with srv.server.connect() as w:
            assert w.readline().startswith(b"ERR BUSY")
        # The busy ones run out of time, and the server serves again.
        for s in busy:
            data, closed = read_until_closed(s, HEADER_TIMEOUT + SLACK)
            assert closed and answer(data) == (400, "RequestTimeout")
            s.close()
        assert_serves(srv)
        m = metrics(srv.http_port)
        assert m['kvbox_refused_connections_total{door="s3",reason="busy"}'] >= 1
        assert m['kvbox_refused_connections_total{door="gwkv",reason="busy"}'] >= 1
    finally:
        print(srv.server.log_text()[-5000:])
        srv.close()


def test_per_address_limit_leaves_room_for_other_clients(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data", *LIMITS, "--max-connections-per-ip", "30").start()
    try:
        held = [connect(srv.http_port, "127.0.0.1") for _ in range(20)]
        held += [connect(srv.server.port, "127.0.0.1") for _ in range(10)]
        with connect(srv.http_port, "127.0.0.1") as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data, _ = read_until_closed(sock, 5)
        assert answer(data) == (503, "SlowDown")
        assert b"from your address" in data
        with connect(srv.server.port, "127.0.0.1") as sock:
            data, _ = read_until_closed(sock, 5)
        assert data == b"ERR BUSY too many connections from your address\n"
        # Another address is a client of its own.
        with connect(srv.http_port, "127.0.0.2") as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, _ = read_until_closed(sock, 5)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n")
        for s in held:
            s.close()
    finally:
        srv.close()


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_thousands_of_idle_connections_never_exhaust_descriptors(tmp_path: Path) -> None:
    """The issue's first finding: 19,975 idle connections used up the descriptors, then
    GW-KV connections failed and S3 PUTs answered 500. Here the server gets only 1,024
    descriptors and 1,500 idle connections arrive on three ports: the connection limit
    (capped from the descriptor limit, with a warning) keeps descriptors for the
    server's own files, so PUTs and GW-KV keep working."""

    web_port = free_port()
    srv = S3Server(
        tmp_path / "data", *LIMITS, "--web-port", str(web_port), "--max-connections-per-ip", "0",
        prefix=["prlimit", "--nofile=1024:1024"],
    )  # fmt: skip
    socks: list[socket.socket] = []
    try:
        srv.start()
        log = srv.server.log_text
        assert "more than this process's file descriptors allow" in log()
        deadline = time.monotonic() + 30
        for i in range(1500):
            assert time.monotonic() < deadline, "opening connections took too long"
            socks.append(connect((srv.http_port, web_port, srv.server.port)[i % 3]))
        time.sleep(1.5)
        for i in range(5):  # each needs descriptors for its chunk and SQLite
            srv.client().put_object(Bucket="kv", Key=f"fd{i}", Body=b"z" * (3 << 20))
        assert_serves(srv)
        assert "Too many open files" not in log()
        assert "Traceback" not in log()
    finally:
        for s in socks:
            s.close()
        print(srv.server.log_text()[-5000:])
        srv.close()


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path)


def test_tls_handshakes_count_and_time_out(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    """Connections that never start their TLS handshake hold a slot only until the header
    timeout, and while they hold it they count against the limit."""
    crt, key = cert
    srv = S3Server(
        tmp_path / "data", *LIMITS, "--tls-cert", str(crt), "--tls-key", str(key),
        "--max-connections", "20", "--max-connections-per-ip", "0",
    ).start()  # fmt: skip
    try:
        silent = [connect(srv.http_port) for _ in range(20)]
        time.sleep(0.3)
        with connect(srv.http_port) as sock:  # no room: closed without a word
            data, closed = read_until_closed(sock, 5)
        assert closed and data == b""
        t0 = time.monotonic()
        for s in silent:
            data, closed = read_until_closed(s, HEADER_TIMEOUT + SLACK)
            assert closed and data == b""
            s.close()
        assert time.monotonic() - t0 < HEADER_TIMEOUT + SLACK + 2
        ctx = ssl.create_default_context(cafile=str(crt))
        conn = http.client.HTTPSConnection("127.0.0.1", srv.http_port, context=ctx, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        conn.close()
        m = metrics(srv.http_port, crt)
        assert m['kvbox_timeouts_total{door="s3",phase="header"}'] >= 20
        assert m['kvbox_refused_connections_total{door="s3",reason="busy"}'] >= 1
    finally:
        srv.close()
