"""GW-KV over UDP against a live server: requests and replies, datagrams too big, and the
amplification cap.

Layer: tests/e2e. Rules: one datagram at a time; exact replies per docs/protocol.md §1.
"""

from __future__ import annotations

from ._gwkv import err_code
from ._server import KvboxServer, parse_ok_version

# --- GW-KV over UDP ------------------------------------------------------------------------


def test_udp_set_get_stats(server: KvboxServer) -> None:
    version = parse_ok_version(server.udp(b"SET u1 hello over udp\n"))
    assert server.udp(b"GET u1\n") == b"VALUE hello over udp\n"
    assert server.udp(b"VERSION u1\n") == f"OK {version}\n".encode()
    assert server.udp(b"STATS\n") == b"OK 1\n"
    assert server.udp(b"GET nothing\n") == b"NOTFOUND\n"
    # several requests in one datagram: their replies in one datagram, in order
    reply = server.udp(b"SET u2 two\nGET u2\nSTATS\nGET u1\n")
    lines = reply.split(b"\n")
    parse_ok_version(lines[0] + b"\n")
    assert lines[1:] == [b"VALUE two", b"OK 2", b"VALUE hello over udp", b""]
    # data written over UDP is the same data TCP sees
    assert server.oneshot(b"GET u2\n") == b"VALUE two\n"
    assert err_code(server.udp(b"SET bad-key x\n")) == "BADKEY"


def test_udp_too_big(server: KvboxServer) -> None:
    big = bytes(i % 251 for i in range(100_000))
    with server.connect() as w:
        version = parse_ok_version(w.bset("big", big))
    # the reply would not fit a datagram
    reply = server.udp(b"BGET big\n")
    assert err_code(reply) == "TOOBIG", reply
    assert b"TCP" in reply
    # a length-prefixed request whose payload cannot fit the datagram
    reply = server.udp(b"BSET other 100000\n" + b"x" * 60_000)
    assert err_code(reply) == "TOOBIG", reply
    # a maximal datagram of many MULTIGET replies is too big as a reply as well
    for i in range(80):
        server.udp(b"SET t%d " % i + b"v" * 1000 + b"\n")
    keys = b" ".join(b"t%d" % i for i in range(80))
    assert err_code(server.udp(b"MULTIGET " + keys + b"\n")) == "TOOBIG"
    # nothing was written, the server still answers over both transports
    assert server.udp(b"GET other\n") == b"NOTFOUND\n"
    with server.connect() as w:
        assert w.bget("big") == (big, version)
    assert server.udp(b"PING\n") == b"OK PONG\n"


# --- R10: the UDP amplification cap --------------------------------------------------------


def test_udp_reply_is_capped_against_amplification(server: KvboxServer) -> None:
    """A 133-byte UDP MULTIGET of one 1 KB key x62 used to reflect 64 KB; a reply may now
    be at most max(1400 bytes, 10x the request), else ``ERR TOOBIG``. Replies under the
    cap still work: a GET of a 1 KB value, and a MULTIGET of 62 short values."""
    value = b"v" * 1024
    with server.connect() as w:
        parse_ok_version(w.request(b"SET a " + value + b"\n"))
        for i in range(62):
            parse_ok_version(w.request(b"SET s%d short\n" % i))
    amplify = b"MULTIGET " + b" ".join([b"a"] * 62) + b"\n"
    assert len(amplify) == 133
    reply = server.udp(amplify)
    assert reply.startswith(b"ERR TOOBIG ") and len(reply) <= 1400, reply[:80]
    assert server.udp(b"GET a\n") == b"VALUE " + value + b"\n"
    short = b"MULTIGET " + b" ".join(b"s%d" % i for i in range(62)) + b"\n"
    assert server.udp(short) == b"OK 62\n" + b"VALUE short\n" * 62
    # Two 1 KB values for a 14-byte request: over the 1400-byte floor.
    assert server.udp(b"MULTIGET a a\n").startswith(b"ERR TOOBIG ")
