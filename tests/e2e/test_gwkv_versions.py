"""GW-KV over a versioned bucket: VERSIONS, GETV/BGETV and the time-travel reads
GETAT/BGETAT, through raw sockets, UDP, the Python client and the CLI."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta, timezone

from kvbox import Client

from ._server import KvboxServer, Wire, parse_ok_version
from .conftest import ServerFactory


def test_versioned_bucket_keeps_history(server_factory: ServerFactory) -> None:
    server = server_factory("--kv-versioning", "true")
    with server.connect() as w:
        v1 = parse_ok_version(w.request(b"SET cat first\n"))
        v2 = parse_ok_version(w.request(b"SET cat second\n"))
        big = os.urandom(3 << 20)  # chunked, not inline
        v3 = parse_ok_version(w.bset("cat", big))
        assert w.request(b"DELETE cat\n") == b"OK\n"
        assert w.request(b"GET cat\n") == b"NOTFOUND\n"
        w.send(b"VERSIONS cat\n")
        assert w.readline() == b"OK 4\n"
        lines = [w.readline().split() for _ in range(4)]
        assert [line[3] for line in lines] == [b"DELETED", b"VALUE", b"VALUE", b"VALUE"]
        assert [line[0].decode() for line in lines[1:]] == [v3, v2, v1]
        assert [int(line[1]) for line in lines[1:]] == [len(big), 6, 5]
        assert w.request(f"GETV cat {v1}\n".encode()) == b"VALUE first\n"
        assert w.request(f"GETV cat {v3}\n".encode()).startswith(b"ERR NOTTEXT")
        marker = lines[0][0].decode()
        assert w.request(f"GETV cat {marker}\n".encode()) == b"NOTFOUND\n"
        assert w.request(b"GETV cat 00000000000000000000000000\n") == b"NOTFOUND\n"
        assert w.request(b"GETV cat notaversion\n").startswith(b"ERR ARGS")
        assert w.request(b"VERSIONS bad-key\n").startswith(b"ERR BADKEY")
    with Client("127.0.0.1", server.port) as c:
        assert c.get_version("cat", v3) == big
        assert c.get_version("cat", v2) == b"second"
        assert [v.version for v in c.versions("cat")][1:] == [v3, v2, v1]
    out = server.cli("getv", "cat", v2)
    assert out.returncode == 0 and out.stdout == b"second"
    listing = server.cli("versions", "cat")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 4


def test_unversioned_bucket_keeps_only_the_newest(server_factory: ServerFactory) -> None:
    server = server_factory()
    with server.connect() as w:
        v1 = parse_ok_version(w.request(b"SET dog one\n"))
        v2 = parse_ok_version(w.request(b"SET dog two\n"))
        w.send(b"VERSIONS dog\n")
        assert w.readline() == b"OK 1\n"
        assert w.readline().split()[0].decode() == v2
        assert w.request(f"GETV dog {v1}\n".encode()) == b"NOTFOUND\n"
        w.send(b"VERSIONS nothing\n")
        assert w.readline() == b"OK 0\n"


# --- time travel: GETAT / BGETAT -----------------------------------------------------

#: Seconds between a write and the instants taken around it. The server stamps a version
#: with its own clock (this machine's) before it answers; the slack keeps every instant
#: clearly on one side of every write.
SLACK = 0.03


def _mark() -> float:
    """An instant strictly between the last write and the next one."""
    time.sleep(SLACK)
    now = time.time()
    time.sleep(SLACK)
    return now


def _ms(t: float) -> str:
    return str(int(t * 1000))


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _bgetat(w: Wire, key: str, instant: str) -> tuple[bytes, str] | None:
    w.send(f"BGETAT {key} {instant}\n".encode())
    return w.read_bget_reply()


def test_time_travel_reads(server_factory: ServerFactory) -> None:
    """Nothing, then v1 (text), then v2 (3 MiB, chunked), then a delete: each instant
    reads what was current then, in both instant forms and both reply forms."""
    server = server_factory("--kv-versioning", "enabled")
    big = os.urandom(3 << 20)
    with server.connect() as w:
        before = _mark()
        v1 = parse_ok_version(w.request(b"SET story first\n"))
        at_v1 = _mark()
        v2 = parse_ok_version(w.bset("story", big))
        at_v2 = _mark()
        assert w.request(b"DELETE story\n") == b"OK\n"
        gone = _mark()
        for fmt in (_ms, _rfc3339):
            assert w.request(f"GETAT story {fmt(before)}\n".encode()) == b"NOTFOUND\n"
            assert w.request(f"GETAT story {fmt(at_v1)}\n".encode()) == b"VALUE first\n"
            assert w.request(f"getat story {fmt(at_v2)}\n".encode()).startswith(b"ERR NOTTEXT")
            assert w.request(f"GETAT story {fmt(gone)}\n".encode()) == b"NOTFOUND\n"
            assert _bgetat(w, "story", fmt(before)) is None
            assert _bgetat(w, "story", fmt(at_v1)) == (b"first", v1)
            assert _bgetat(w, "story", fmt(at_v2)) == (big, v2)
            assert _bgetat(w, "story", fmt(gone)) is None
        # the same instant in another zone is the same instant
        west = datetime.fromtimestamp(at_v1, timezone(-timedelta(hours=7, minutes=30)))
        assert west.isoformat().endswith("-07:30")
        assert w.request(f"GETAT story {west.isoformat()}\n".encode()) == b"VALUE first\n"
        assert w.request(b"GETAT never 0\n") == b"NOTFOUND\n"
        # a GETAT pipelined after a SET sees it (reads never overtake a write)
        w.send(b"SET fresh yes\nGETAT fresh 253402300799999\n")
        parse_ok_version(w.readline())
        assert w.readline() == b"VALUE yes\n"

    # over UDP: text values fit a datagram; a 3 MiB value does not
    assert server.udp(f"GETAT story {_ms(at_v1)}\n".encode()) == b"VALUE first\n"
    assert server.udp(f"BGETAT story {_ms(at_v2)}\n".encode()).startswith(b"ERR TOOBIG")

    with Client("127.0.0.1", server.port) as c:
        assert c.get_at("story", datetime.fromtimestamp(before, UTC)) is None
        assert (
            c.get_at("story", datetime.fromtimestamp(at_v1, timezone(timedelta(hours=9))))
            == b"first"
        )
        assert c.get_at("story", int(at_v2 * 1000)) == big
        assert c.get_at("story", _rfc3339(gone)) is None

    assert server.cli("getat", "story", _rfc3339(at_v1)).stdout == b"first"
    out = server.cli("getat", "story", _ms(before))
    assert (out.returncode, out.stdout) == (1, b"")
    assert b"not found" in out.stderr
    assert server.cli("getat", "story", _ms(gone)).returncode == 1
    dst = server.data_dir.parent / "story.bin"
    out = server.cli("getat", "story", _ms(at_v2), "--output", str(dst))
    assert out.returncode == 0, out.stderr
    assert dst.read_bytes() == big


BAD_INSTANTS = [
    (b"2026-11-25T01:02:03", b"zone"),
    (b"2026-11-25T01:02:03+0100", b"RFC 3339"),
    (b"2026-02-30T00:00:00Z", b"calendar date"),
    (b"2026-12-31T23:59:60Z", b"leap second"),
    (b"-5", b"RFC 3339"),
    (b"yesterday", b"RFC 3339"),
    (b"99999999999999999999", b"out of range"),
]


def test_bad_instants_are_refused(server_factory: ServerFactory) -> None:
    server = server_factory("--kv-versioning", "enabled")
    with server.connect() as w:
        w.request(b"SET k v\n")
        for instant, why in BAD_INSTANTS:
            for cmd in (b"GETAT", b"BGETAT"):
                reply = w.request(cmd + b" k " + instant + b"\n")
                assert reply.startswith(b"ERR ARGS ") and why in reply, (instant, reply)
        assert w.request(b"GETAT k\n") == b"ERR ARGS usage: GETAT <key> <instant>\n"
        assert w.request(b"BGETAT k 1 2\n") == b"ERR ARGS usage: BGETAT <key> <instant>\n"
        assert w.request(b"GETAT bad-key 0\n").startswith(b"ERR BADKEY")
        assert w.request(b"PING\n") == b"OK PONG\n"  # refusals keep the connection
    out = server.cli("getat", "k", "2026-11-25T01:02:03")
    assert out.returncode == 3 and b"ARGS" in out.stderr and b"zone" in out.stderr
    assert _udp_lines(server, b"GETAT k yesterday\n")[0].startswith(b"ERR ARGS")


def _udp_lines(server: KvboxServer, data: bytes) -> list[bytes]:
    return re.findall(rb"[^\n]*\n", server.udp(data))


def test_time_travel_without_versioning(server_factory: ServerFactory) -> None:
    """Without versioning only the newest version is kept: an instant at or after it
    reads it, an earlier one (even while an older value was current) is NOTFOUND."""
    server = server_factory()
    with server.connect() as w:
        before = _mark()
        w.request(b"SET dog one\n")
        at_one = _mark()
        v2 = parse_ok_version(w.request(b"SET dog two\n"))
        now = _mark()
        assert w.request(f"GETAT dog {_ms(before)}\n".encode()) == b"NOTFOUND\n"
        assert w.request(f"GETAT dog {_ms(at_one)}\n".encode()) == b"NOTFOUND\n"
        assert w.request(f"GETAT dog {_ms(now)}\n".encode()) == b"VALUE two\n"
        assert _bgetat(w, "dog", _rfc3339(now)) == (b"two", v2)
