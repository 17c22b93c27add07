"""GW-KV commands beyond the basic three, against a live server: DELETE (racing clients
included), CAS, MULTI*, B*, VERSION, PING, QUIT, INFO.

Layer: tests/e2e. Rules: raw sockets, exact replies per docs/protocol.md §4; every
refused request is followed by a check that nothing changed and the connection is in step.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

from ._gwkv import err_code
from ._server import KvboxServer, Wire, parse_ok_version


def assert_in_step(w: Wire) -> None:
    assert w.request(b"PING\n") == b"OK PONG\n"


def test_delete(server: KvboxServer) -> None:
    with server.connect() as w:
        parse_ok_version(w.request(b"SET a 1\n"))
        parse_ok_version(w.request(b"SET b 2\n"))
        assert w.request(b"STATS\n") == b"OK 2\n"
        assert w.request(b"DELETE a\n") == b"OK\n"
        assert w.request(b"DELETE a\n") == b"NOTFOUND\n"
        assert w.request(b"GET a\n") == b"NOTFOUND\n"
        assert w.request(b"BGET a\n") == b"NOTFOUND\n"
        assert w.request(b"VERSION a\n") == b"NOTFOUND\n"
        assert w.request(b"STATS\n") == b"OK 1\n"
        assert w.request(b"DELETE never\n") == b"NOTFOUND\n"
        assert w.request(b"GET b\n") == b"VALUE 2\n"
        # a deleted key can be written again
        parse_ok_version(w.request(b"SET a again\n"))
        assert w.request(b"GET a\n") == b"VALUE again\n"


def test_cas(server: KvboxServer) -> None:
    with server.connect() as w:
        v1 = parse_ok_version(w.request(b"CAS k - first value\n"))
        assert w.request(b"GET k\n") == b"VALUE first value\n"
        # '-' means "only if absent": the key exists now, so it conflicts with v1
        assert w.request(b"CAS k - second\n") == f"CONFLICT {v1}\n".encode()
        v2 = parse_ok_version(w.request(f"CAS k {v1} second value\n".encode()))
        assert v2 != v1
        # a stale expected version conflicts and reports the current one
        assert w.request(f"CAS k {v1} third\n".encode()) == f"CONFLICT {v2}\n".encode()
        assert w.request(b"GET k\n") == b"VALUE second value\n"
        assert w.request(b"VERSION k\n") == f"OK {v2}\n".encode()
        # after a delete, a CAS on any version conflicts with "-" (no current version)
        assert w.request(b"DELETE k\n") == b"OK\n"
        assert w.request(f"CAS k {v2} fourth\n".encode()) == b"CONFLICT -\n"
        assert w.request(b"GET k\n") == b"NOTFOUND\n"
        v3 = parse_ok_version(w.request(b"CAS k - \n"))
        assert w.request(b"GET k\n") == b"VALUE \n"
        assert w.request(b"VERSION k\n") == f"OK {v3}\n".encode()
        # a well-formed but never-issued version id conflicts too
        assert w.request(b"CAS k 00000000000000000000000000 x\n") == f"CONFLICT {v3}\n".encode()
        assert err_code(w.request(b"CAS k notaversion x\n")) == "ARGS"
        assert err_code(w.request(b"CAS k -\n")) == "ARGS"
        assert w.request(b"GET k\n") == b"VALUE \n"


def test_multiset_and_multiget(server: KvboxServer) -> None:
    with server.connect() as w:
        w.send(b"MULTISET 3\nm1 one\nm2 two with spaces\nm3 \n")
        reply = w.readline()
        m = re.fullmatch(rb"OK ((?:[0-9A-HJKMNP-TV-Z]{26} ?){3})\n", reply)
        assert m, reply
        versions = m.group(1).decode().split()
        assert len(set(versions)) == 3
        assert w.request(b"VERSION m2\n") == f"OK {versions[1]}\n".encode()
        w.send(b"MULTIGET m3 nope m1 m2 m1\n")
        assert w.readline() == b"OK 5\n"
        assert [w.readline() for _ in range(5)] == [
            b"VALUE \n",
            b"NOTFOUND\n",
            b"VALUE one\n",
            b"VALUE two with spaces\n",
            b"VALUE one\n",
        ]
        assert w.request(b"STATS\n") == b"OK 3\n"
        assert err_code(w.request(b"MULTIGET\n")) == "ARGS"
        assert err_code(w.request(b"MULTIGET ok bad-key\n")) == "BADKEY"
        assert_in_step(w)


def test_multiset_is_all_or_nothing(server: KvboxServer) -> None:
    with server.connect() as w:
        parse_ok_version(w.request(b"SET keep old\n"))
        bad_batches = [
            (b"MULTISET 3\nx1 a\nbad-key b\nx3 c\n", "BADKEY"),
            (b"MULTISET 3\nx1 a\nx2 b\nx3 " + b"v" * 1025 + b"\n", "TOOLARGE"),
            (b"MULTISET 2\nx1 a\nx2\n", "ARGS"),
            (b"MULTISET 2\nkeep new\nx2 a\x00b\n", "BADVALUE"),
        ]
        for batch, code in bad_batches:
            w.send(batch)
            assert err_code(w.readline()) == code, batch[:60]
            # the server read all n lines: the next request is parsed as a request
            assert_in_step(w)
        for k in (b"x1", b"x2", b"x3"):
            assert w.request(b"GET " + k + b"\n") == b"NOTFOUND\n"
        assert w.request(b"GET keep\n") == b"VALUE old\n"
        assert w.request(b"STATS\n") == b"OK 1\n"


def test_binary_values(server: KvboxServer) -> None:
    value = bytes(range(256)) + b"\n\x00\r\n\x00" + b"END"
    with server.connect() as w:
        version = parse_ok_version(w.bset("bin", value))
        assert w.bget("bin") == (value, version)
        assert err_code(w.request(b"GET bin\n")) == "NOTTEXT"
        w.send(b"MULTIGET bin\n")
        assert w.readline() == b"OK 1\n"
        assert err_code(w.readline()) == "NOTTEXT"
        # empty and single-newline payloads
        v0 = parse_ok_version(w.request(b"BSET zero 0\n\n"))
        assert w.bget("zero") == (b"", v0)
        vnl = parse_ok_version(w.bset("nl", b"\n"))
        assert w.bget("nl") == (b"\n", vnl)
        # a text value set with SET reads back through BGET, and an ASCII BSET through GET
        vt = parse_ok_version(w.request(b"SET txt plain text\n"))
        assert w.bget("txt") == (b"plain text", vt)
        parse_ok_version(w.bset("asc", b"ascii only"))
        assert w.request(b"GET asc\n") == b"VALUE ascii only\n"
        # a text-looking value over 1,024 bytes is not text for GET
        parse_ok_version(w.bset("long", b"a" * 2000))
        assert err_code(w.request(b"GET long\n")) == "NOTTEXT"
        assert w.bget("long") is not None
        assert w.bget("missing") is None
        assert w.request(b"STATS\n") == b"OK 6\n"


def test_binary_value_pipelined_with_text(server: KvboxServer) -> None:
    payload = b"GET x\nSET y z\n"  # looks like requests, must be stored as bytes
    with server.connect() as w:
        w.send(b"BSET p %d\n" % len(payload) + payload + b"\nBGET p\nGET y\n")
        version = parse_ok_version(w.readline())
        assert w.read_bget_reply() == (payload, version)
        assert w.readline() == b"NOTFOUND\n"


def test_bcas(server: KvboxServer) -> None:
    with server.connect() as w:
        v1 = parse_ok_version(w.request(b"BCAS b - 3\n\x00\n\x01\n"))
        assert w.bget("b") == (b"\x00\n\x01", v1)
        # a conflicting BCAS still consumes its payload
        assert w.request(b"BCAS b - 4\nPING\n") == f"CONFLICT {v1}\n".encode()
        assert_in_step(w)
        v2 = parse_ok_version(w.request(f"BCAS b {v1} 2\nok\n".encode()))
        assert w.request(f"BCAS b {v1} 2\nno\n".encode()) == f"CONFLICT {v2}\n".encode()
        assert w.bget("b") == (b"ok", v2)


def test_version_ping_quit(server: KvboxServer) -> None:
    with server.connect() as w:
        assert w.request(b"VERSION none\n") == b"NOTFOUND\n"
        v = parse_ok_version(w.request(b"SET k v\n"))
        assert w.request(b"VERSION k\n") == f"OK {v}\n".encode()
        assert w.request(b"PING\n") == b"OK PONG\n"
        assert w.request(b"ping\n") == b"OK PONG\n"
        w.send(b"QUIT\nPING\n")
        assert w.read_to_close() == b"OK BYE\n"


def test_info(server: KvboxServer) -> None:
    server.oneshot(b"SET a 12345\n")
    server.oneshot(b"SET b 123\n")
    info = server.info()
    required = ("objects", "bytes", "connections", "uptime_s", "cpu_user_s", "cpu_sys_s")
    for name in (*required, "requests", "version"):
        assert name in info, f"INFO lacks {name}: {info}"
    assert info["objects"] == "2"
    assert int(info["bytes"]) == 8
    assert int(info["connections"]) >= 1
    assert float(info["uptime_s"]) >= 0
    assert float(info["cpu_user_s"]) + float(info["cpu_sys_s"]) > 0
    assert int(info["requests"]) >= 2
    assert info["version"]
    first = int(info["requests"])
    assert int(server.info()["requests"]) > first


def test_version_ids_change_on_every_write(server: KvboxServer) -> None:
    seen: list[str] = []
    with server.connect() as w:
        for i in range(5):
            seen.append(parse_ok_version(w.request(b"SET k v%d\n" % i)))
        for i in range(3):
            seen.append(parse_ok_version(w.bset("k", b"\x00%d" % i)))
        seen.append(parse_ok_version(w.request(f"CAS k {seen[-1]} c\n".encode())))
        w.send(b"MULTISET 2\nk m\nother o\n")
        reply = w.readline()
        assert reply.startswith(b"OK "), reply
        seen.extend(reply.decode().split()[1:])
        parse_ok_version(w.request(b"SET k same\n"))
        same = parse_ok_version(w.request(b"SET k same\n"))
        seen.append(same)
        assert len(seen) == len(set(seen)) == 12
        assert w.request(b"VERSION k\n") == f"OK {same}\n".encode()


# --- DELETE raced by several clients -------------------------------------------------------


def test_racing_deletes_exactly_one_ok(server: KvboxServer) -> None:
    """Three clients DELETE the same key at once, 30 times. Whatever the interleaving,
    exactly one of them removed the key and may say OK; the others get NOTFOUND (before
    the fix both racers that passed the existence check said OK). The assertion holds
    for every interleaving; the race itself is hit most rounds but not all."""
    clients = [server.connect() for _ in range(3)]
    try:
        for i in range(30):
            key = b"d%d" % i
            parse_ok_version(clients[0].request(b"SET " + key + b" x\n"))
            barrier = threading.Barrier(len(clients))

            def delete(w: Wire, key: bytes = key, barrier: threading.Barrier = barrier) -> bytes:
                barrier.wait(5)
                return w.request(b"DELETE " + key + b"\n")

            with ThreadPoolExecutor(max_workers=len(clients)) as pool:
                replies = sorted(pool.map(delete, clients))
            assert replies == [b"NOTFOUND\n", b"NOTFOUND\n", b"OK\n"], f"round {i}: {replies}"
    finally:
        for w in clients:
            w.close()
