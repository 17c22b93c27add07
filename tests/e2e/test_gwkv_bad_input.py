"""Garbage thrown at a live server: every bad request gets ERR or a timely close.

Layer: tests/e2e. Rules: one server with short timeouts serves the whole module and holds
seed data written before any garbage arrives; after every test the seed data must read
back byte for byte with unchanged versions and the server must still answer. Resource
tests (thousands of connections, a client that never reads) use their own servers and
watch the server's RSS. Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import time
from collections.abc import Iterator

import pytest

from ._gwkv import err_code
from ._server import KvboxServer, Wire, parse_ok_version
from .conftest import ServerFactory

IDLE_TIMEOUT = 1.0
REQUEST_TIMEOUT = 1.0
#: Slack on top of a timeout for the server to notice it and close (a busy 2-core box).
SLACK = 2.5
MAX_LINE = 66_560

SEED_TEXT = {f"seed{i}": f"seed value {i} " + "x" * i for i in range(20)}
SEED_BINARY = {
    "seedbin0": bytes(range(256)) * 3,
    "seedbin1": b"\n\x00\r\n" * 50,
    "seedbig": random.Random(5).randbytes(3 << 20),  # streamed, stored as chunks
}
SEED_COUNT = len(SEED_TEXT) + len(SEED_BINARY)


class Seeded:
    """The module's server and what it held before any garbage arrived."""

    def __init__(self, server: KvboxServer) -> None:
        self.server = server
        self.versions: dict[str, str] = {}
        with server.connect(timeout=60) as w:
            for k, v in SEED_TEXT.items():
                self.versions[k] = parse_ok_version(w.request(f"SET {k} {v}\n".encode()))
            for k, b in SEED_BINARY.items():
                self.versions[k] = parse_ok_version(w.bset(k, b))

    def assert_intact(self) -> None:
        srv = self.server
        assert srv.running, f"server died:\n{srv.new_log()}"
        with srv.connect(timeout=60) as w:
            assert w.request(b"PING\n") == b"OK PONG\n"
            for k, v in SEED_TEXT.items():
                assert w.request(f"GET {k}\n".encode()) == f"VALUE {v}\n".encode()
                assert w.request(f"VERSION {k}\n".encode()) == f"OK {self.versions[k]}\n".encode()
            for k, b in SEED_BINARY.items():
                assert w.bget(k) == (b, self.versions[k]), k
            assert w.request(b"STATS\n") == b"OK %d\n" % SEED_COUNT


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    base = tmp_path_factory.mktemp("badinput")
    srv = KvboxServer(
        base / "data",
        args=[
            "--idle-timeout",
            str(IDLE_TIMEOUT),
            "--request-timeout",
            str(REQUEST_TIMEOUT),
            "--max-value-size",
            "10MiB",
        ],
    )
    try:
        srv.start()
        yield Seeded(srv)
    finally:
        srv.close()
        print(f"--- server log\n{srv.log_text()[-20000:]}")


@pytest.fixture
def srv(seeded: Seeded) -> Iterator[KvboxServer]:
    """The module's server; after the test, the seed data must be untouched."""
    yield seeded.server
    seeded.assert_intact()


def expect_err_then_close(w: Wire, code: str, within: float = 5.0) -> None:
    """The server answers ``ERR <code>`` and closes the connection."""
    t0 = time.monotonic()
    closed = w.closed_by_peer(within)
    out = bytes(w.buf)
    assert closed, f"not closed within {within} s; got {out!r}"
    assert err_code(out) == code, out
    assert time.monotonic() - t0 < within


def assert_absent(server: KvboxServer, *keys: str) -> None:
    with server.connect() as w:
        for k in keys:
            assert w.request(f"VERSION {k}\n".encode()) == b"NOTFOUND\n", k


# --- malformed requests on a connection that stays open ---------------------------------------


UNKNOWN = [b"FOO\n", b"GETX a\n", b"SE T a b\n", b"\x00\n", b"\xf0\x9f\x99\x82 x\n", b"HTTP/1.1\n"]


def test_unknown_commands(srv: KvboxServer) -> None:
    with srv.connect() as w:
        for req in UNKNOWN:
            assert err_code(w.request(req)) == "UNKNOWN", req
        assert w.request(b"PING\n") == b"OK PONG\n"
        # an HTTP request line is just an unknown command too
        assert err_code(w.request(b"GET / HTTP/1.1\r\n")) in ("ARGS", "BADKEY")
        assert w.request(b"PING\n") == b"OK PONG\n"


ARGS_CASES = [
    b"GET\n",
    b"GET a b\n",
    b"SET\n",
    b"SET k\n",
    b"DELETE\n",
    b"DELETE a b\n",
    b"CAS k\n",
    b"CAS k -\n",
    b"BGET\n",
    b"VERSION\n",
    b"MULTIGET\n",
    b"STATS now\n",
    b"MULTISET\n",
]


def test_missing_and_extra_arguments(srv: KvboxServer) -> None:
    with srv.connect() as w:
        for req in ARGS_CASES:
            assert err_code(w.request(req)) == "ARGS", req
            assert w.request(b"PING\n") == b"OK PONG\n"
    assert_absent(srv, "k", "a")


@pytest.mark.parametrize("count", [b"many", b"-1", b"1e2", b""])
def test_bad_multiset_count(srv: KvboxServer, count: bytes) -> None:
    """A count that is not a number loses the framing (how many lines follow?)."""
    with srv.connect() as w:
        w.send(b"MULTISET " + count + b"\nmsk v\n")
        code = err_code(w.readline())
        if code == "BADLENGTH":
            assert w.closed_by_peer(5.0)
        else:
            assert code == "ARGS"
    assert_absent(srv, "msk")


BAD_KEYS = [
    b"a-b",
    b"a" * 65,
    b"k_1",
    b"\xc3\xa9",
    b"a.b",
    b"..",
    b"a/b",
    b"%2e",
    b"a\tb",
    b"a\x00b",
]


def test_bad_keys(srv: KvboxServer) -> None:
    with srv.connect() as w:
        for key in BAD_KEYS:
            for req in (
                b"GET " + key + b"\n",
                b"SET " + key + b" v\n",
                b"DELETE " + key + b"\n",
                b"VERSION " + key + b"\n",
                b"BGET " + key + b"\n",
                b"CAS " + key + b" - v\n",
                b"MULTIGET ok " + key + b"\n",
            ):
                assert err_code(w.request(req)) == "BADKEY", req
        # an empty key (two spaces) is a bad key or a bad argument list, never a write
        assert err_code(w.request(b"SET  v\n")) in ("BADKEY", "ARGS")
        assert w.request(b"PING\n") == b"OK PONG\n"


def test_bad_key_on_bset_never_runs_its_payload(srv: KvboxServer) -> None:
    payload = b"SET zz 1"
    with srv.connect() as w:
        w.send(b"BSET a-b %d\n" % len(payload) + payload + b"\nPING\n")
        assert err_code(w.readline()) == "BADKEY"
        # either the payload was skipped (in step) or the connection was closed
        try:
            rest = w.readline()
        except (EOFError, ConnectionResetError):
            rest = b""
        assert rest in (b"OK PONG\n", b""), rest
    assert_absent(srv, "zz", "a")


BAD_VALUES = [
    b"SET k a\x00b\n",
    b"SET k a\rb\n",
    b"SET k \x80\n",
    b"SET k caf\xc3\xa9\n",
    b"SET k \xff\xfe\n",
    b"SET k abc\r\r\n",
    b"CAS k - a\x00\n",
    b"SET k \x00\n",
]


def test_bad_values(srv: KvboxServer) -> None:
    with srv.connect() as w:
        for req in BAD_VALUES:
            assert err_code(w.request(req)) == "BADVALUE", req
        assert err_code(w.request(b"SET k " + b"v" * 1025 + b"\n")) == "TOOLARGE"
        assert err_code(w.request(b"SET seed1 " + b"v" * 1025 + b"\n")) == "TOOLARGE"
        assert err_code(w.request(b"SET seed2 bad\x00\n")) == "BADVALUE"
        assert w.request(b"PING\n") == b"OK PONG\n"
    assert_absent(srv, "k")


# --- framing errors: reply, then close -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"A" * (MAX_LINE + 5000),
        b"SET k " + b"v" * (MAX_LINE + 5000),
        b"GET " + b"k" * 200_000 + b"\n",
    ],
    ids=["junk", "set", "with-newline"],
)
def test_huge_line(srv: KvboxServer, data: bytes) -> None:
    with srv.connect() as w:
        # the server may close before it has read everything
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            w.send(data)
        expect_err_then_close(w, "LINETOOLONG")
    assert_absent(srv, "k")


def test_payload_longer_than_its_length(srv: KvboxServer) -> None:
    with srv.connect() as w:
        w.send(b"BSET lie 3\nhello\nPING\n")
        expect_err_then_close(w, "BADLENGTH")
    assert_absent(srv, "lie")


def test_length_longer_than_payload(srv: KvboxServer) -> None:
    """The declared length swallows the next requests, then framing breaks."""
    with srv.connect() as w:
        w.send(b"BSET lie 10\nabc\nPING\nPING\nSET x 1\n")
        expect_err_then_close(w, "BADLENGTH")
    assert_absent(srv, "lie", "x")


def test_length_longer_than_payload_then_silence(srv: KvboxServer) -> None:
    with srv.connect() as w:
        w.send(b"BSET lie 100\n" + b"z" * 50)
        expect_err_then_close(w, "TIMEOUT", REQUEST_TIMEOUT + SLACK)
    assert_absent(srv, "lie")


@pytest.mark.parametrize(
    "length", [b"abc", b"-5", b"1e3", b"+5", b"0x10", b"5.0", b"\xd9\xa5", b"5 "]
)
@pytest.mark.parametrize("command", [b"BSET nl", b"BCAS nl -"])
def test_non_numeric_length(srv: KvboxServer, command: bytes, length: bytes) -> None:
    with srv.connect() as w:
        w.send(command + b" " + length + b"\nhello\n")
        code = err_code(w.readline())
        # a trailing space is an extra (empty) argument: ARGS, and the connection stays open
        if not (length.endswith(b" ") and code == "ARGS"):
            assert code == "BADLENGTH"
            assert w.closed_by_peer(5.0), "framing is lost: the server must close"
    assert_absent(srv, "nl")


@pytest.mark.parametrize("length", [b"10485761", b"6000000000", b"9" * 30])
def test_length_over_max_value_size(srv: KvboxServer, length: bytes) -> None:
    with srv.connect() as w:
        w.send(b"BSET toolong " + length + b"\n" + b"x" * 1000)
        expect_err_then_close(w, "TOOLARGE")
    assert_absent(srv, "toolong")


def test_exactly_max_value_size_is_accepted(srv: KvboxServer) -> None:
    value = bytes(range(256)) * (10 << 12)
    with srv.connect(timeout=60) as w:
        version = parse_ok_version(w.bset("maxsize", value))
        assert w.bget("maxsize") == (value, version)
        assert w.request(b"DELETE maxsize\n") == b"OK\n"


# --- random garbage -------------------------------------------------------------------------

VOCAB = [
    b"SET",
    b"GET",
    b"STATS",
    b"DELETE",
    b"CAS",
    b"MULTISET",
    b"MULTIGET",
    b"BSET",
    b"BCAS",
    b"BGET",
    b"VERSION",
    b"PING",
    b"INFO",
    b"set",
    b"bset",
]
STATUS_WORDS = (b"OK", b"VALUE", b"NOTFOUND", b"CONFLICT", b"ERR")


#: Token-mode junk never contains letters or digits except in these words, so the only keys
#: garbage can ever write are these (cleaned up after each round).
_NUMBERS = [0, 1, 2, 5, 10, 1000, 1 << 40, -1]
_FUZZ_KEYS = [b"fz%d" % i for i in range(10)] + VOCAB + [str(n).encode() for n in _NUMBERS]
_NON_ALNUM = bytes(b for b in range(256) if not chr(b).isascii() or not chr(b).isalnum())


def _random_junk(rng: random.Random) -> bytes:
    """Random bytes, or random tokens around command words; keys never look like seeds."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(1, 3000))
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 12)):
        roll = rng.random()
        if roll < 0.4:
            parts.append(rng.choice(VOCAB))
        elif roll < 0.6:
            parts.append(b"fz%d" % rng.randint(0, 9))
        elif roll < 0.75:
            parts.append(str(rng.choice(_NUMBERS)).encode())
        else:
            parts.append(bytes(rng.choice(_NON_ALNUM) for _ in range(rng.randint(0, 20))))
        parts.append(rng.choice([b" ", b"  ", b"\n", b"\r\n", b"\x00", b""]))
    return b"".join(parts)


def _fuzz_round(srv: KvboxServer, rng: random.Random, conns: int) -> list[bytes]:
    socks: list[Wire] = []
    replies: list[bytes] = []
    try:
        for _ in range(conns):
            w = srv.connect()
            socks.append(w)
            try:
                w.send(_random_junk(rng))
                w.sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass
        for w in socks:
            replies.append(w.read_to_close(limit=1 << 20))
    finally:
        for w in socks:
            w.close()
    return replies


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage(srv: KvboxServer, seed: int) -> None:
    rng = random.Random(seed)
    replies = _fuzz_round(srv, rng, 60)
    for reply in replies:
        if reply:
            first = reply.split(b"\n", 1)[0].split(b" ", 1)[0]
            assert first in STATUS_WORDS, reply[:200]
    # garbage may only ever have written the fuzz keys; clean them up for the seed check
    with srv.connect() as w:
        for key in _FUZZ_KEYS:
            if re.fullmatch(rb"[A-Za-z0-9]+", key):
                assert w.request(b"DELETE " + key + b"\n") in (b"OK\n", b"NOTFOUND\n")


# --- timeouts ---------------------------------------------------------------------------------


def test_silent_connection_is_closed_after_idle_timeout(srv: KvboxServer) -> None:
    with srv.connect() as w:
        t0 = time.monotonic()
        assert w.closed_by_peer(IDLE_TIMEOUT + SLACK), "silent connection never closed"
        assert time.monotonic() - t0 >= IDLE_TIMEOUT * 0.8


def test_used_then_idle_connection_is_closed(srv: KvboxServer) -> None:
    with srv.connect() as w:
        assert w.request(b"PING\n") == b"OK PONG\n"
        assert w.closed_by_peer(IDLE_TIMEOUT + SLACK)


def test_partial_line_then_silence(srv: KvboxServer) -> None:
    with srv.connect() as w:
        w.send(b"SET partial value but no newline")
        expect_err_then_close(w, "TIMEOUT", REQUEST_TIMEOUT + SLACK)
    assert_absent(srv, "partial")


def test_slow_drip(srv: KvboxServer) -> None:
    """One byte every 0.3 s: each byte is progress, but the request never completes in time.

    The line is longer than the drip can deliver before the deadline we allow, so the key
    cannot be written even by a server that never times the request out.
    """
    line = b"SET drip " + b"d" * 40 + b"\n"
    limit = REQUEST_TIMEOUT + SLACK + 1
    t0 = time.monotonic()
    closed = False
    with srv.connect() as w:
        for i in range(len(line)):
            if time.monotonic() - t0 > limit:
                break
            try:
                w.sock.send(line[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if w.closed_by_peer(0.3):
                closed = True
                break
        elapsed = time.monotonic() - t0
        reply = bytes(w.buf)
    assert closed, f"drip connection still open after {elapsed:.1f} s; got {reply!r}"
    assert reply == b"" or err_code(reply) == "TIMEOUT", reply
    assert_absent(srv, "drip")


def test_stalled_payload_drip(srv: KvboxServer) -> None:
    """A length-prefixed body that stops arriving is timed out as well."""
    with srv.connect() as w:
        w.send(b"BSET stall 1000\n" + b"s" * 10)
        time.sleep(0.3)
        w.send(b"s")
        expect_err_then_close(w, "TIMEOUT", REQUEST_TIMEOUT + SLACK)
    assert_absent(srv, "stall")


# --- resources ------------------------------------------------------------------------------


def _open_many(server: KvboxServer, n: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    deadline = time.monotonic() + 60
    for _ in range(n):
        assert time.monotonic() < deadline, "opening connections took too long"
        socks.append(socket.create_connection((server.host, server.port), timeout=10))
    return socks


def test_two_thousand_idle_connections(server_factory: ServerFactory) -> None:
    # All from 127.0.0.1: the per-address limit (1,000 by default) is tested elsewhere
    # (tests/e2e/test_limits.py); here 2,000 idle connections must simply be cheap.
    server = server_factory("--idle-timeout", "120", "--max-connections-per-ip", "0")
    parse_ok_version(server.oneshot(b"SET before value\n"))
    base_rss = server.rss_kib()
    socks = _open_many(server, 2000)
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        with server.connect(timeout=5) as w:
            assert w.request(b"GET before\n") == b"VALUE value\n"
        assert time.monotonic() - t0 < 2.0, "new client not answered promptly"
        assert int(server.info()["connections"]) >= 2000
        grown = server.rss_kib() - base_rss
        assert grown < 100 * 1024, f"RSS grew {grown} KiB for 2000 idle connections"
        # a few of the idle ones still work
        for s in socks[::500]:
            s.sendall(b"PING\n")
            assert s.recv(100) == b"OK PONG\n"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while int(server.info()["connections"]) > 5:
        assert time.monotonic() < deadline, "closed connections never released"
        time.sleep(0.1)
    assert server.oneshot(b"GET before\n") == b"VALUE value\n"


def test_max_connections_busy(server_factory: ServerFactory) -> None:
    """At ``--max-connections`` a newcomer gets ``ERR BUSY`` and a close when no held
    connection is idle (each here has half a request line in, so each is busy); once one
    goes, the slot is free again and the others are untouched. (An *idle* connection is
    closed to make room instead: tests/e2e/test_limits.py.)"""
    server = server_factory("--max-connections", "5")
    held = [server.connect() for _ in range(5)]
    try:
        for w in held:
            assert w.request(b"PING\n") == b"OK PONG\n"
            w.send(b"GET hel")  # a request in progress: not idle, never evicted
        with server.connect() as extra:
            expect_err_then_close(extra, "BUSY")
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            with server.connect() as w:
                w.send(b"PING\n")
                if w.closed_by_peer(0.3):
                    assert err_code(bytes(w.buf)) == "BUSY"
                    assert time.monotonic() < deadline, "slot never freed"
                    continue
                assert w.readline() == b"OK PONG\n"
                break
        for w in held:
            assert w.request(b"lo\n") == b"NOTFOUND\n"
    finally:
        for w in held:
            w.close()


def _flood_without_reading(server: KvboxServer, request: bytes, seconds: float) -> int:
    """Pipeline ``request`` for ``seconds`` and never read; the server's peak RSS in KiB."""
    start = peak = server.rss_kib()
    s = socket.create_connection((server.host, server.port), timeout=10)
    try:
        s.setblocking(False)
        batch = request * max(1, 65536 // len(request))
        deadline = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < deadline and sent < 200 << 20:
            try:
                sent += s.send(batch)
            except BlockingIOError:
                time.sleep(0.05)  # backpressure: exactly what we want to see
            peak = max(peak, server.rss_kib())
            if peak > start + (300 << 10):
                break  # already far past what the test allows: spare the machine
        peak = max(peak, server.rss_kib())
    finally:
        s.close()
    return peak


def test_client_that_never_reads(server_factory: ServerFactory) -> None:
    server = server_factory("--request-timeout", "30", "--idle-timeout", "30")
    text = b"t" * 1000
    with server.connect() as w:
        parse_ok_version(w.request(b"SET text " + text + b"\n"))
        blob_version = parse_ok_version(w.bset("blob", bytes(range(256)) * 256))
    base = server.rss_kib()
    peak_text = _flood_without_reading(server, b"GET text\n", 3.0)
    peak_blob = _flood_without_reading(server, b"BGET blob\n", 3.0)
    for name, peak in (("GET", peak_text), ("BGET", peak_blob)):
        assert peak - base < 100 * 1024, f"{name} flood grew RSS by {peak - base} KiB"
    time.sleep(0.5)
    with server.connect() as w:
        assert w.request(b"GET text\n") == b"VALUE " + text + b"\n"
        assert w.bget("blob") == (bytes(range(256)) * 256, blob_version)
    assert server.rss_kib() - base < 100 * 1024


def test_everything_still_intact(seeded: Seeded) -> None:
    """Last: after all the garbage above the seed data is unchanged and a restart is clean."""
    seeded.assert_intact()
    seeded.server.restart()
    seeded.assert_intact()
