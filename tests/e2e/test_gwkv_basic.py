"""The course's Basic GW-KV protocol against a live server, byte for byte.

Layer: tests/e2e. Rules: raw sockets only, replies compared as exact bytes against
docs/protocol.md; the basic mode is one request per connection, then close.
"""

from __future__ import annotations

import re
import signal

from ._server import KvboxServer, Wire, parse_ok_version


def test_one_request_per_connection(server: KvboxServer) -> None:
    assert server.oneshot(b"GET apple\n") == b"NOTFOUND\n"
    assert server.oneshot(b"STATS\n") == b"OK 0\n"
    version = parse_ok_version(server.oneshot(b"SET apple red\n"))
    assert server.oneshot(b"GET apple\n") == b"VALUE red\n"
    assert server.oneshot(b"STATS\n") == b"OK 1\n"
    assert server.oneshot(b"VERSION apple\n") == f"OK {version}\n".encode()
    server.oneshot(b"SET pear green\n")
    assert server.oneshot(b"STATS\n") == b"OK 2\n"


def test_reply_then_server_waits_for_client_close(server: KvboxServer) -> None:
    """A client that reads its reply before closing (no half-close) gets it too."""
    with server.connect() as w:
        parse_ok_version(w.request(b"SET k1 v1\n"))
    with server.connect() as w:
        assert w.request(b"GET k1\n") == b"VALUE v1\n"


def test_overwrite_returns_newest(server: KvboxServer) -> None:
    v1 = parse_ok_version(server.oneshot(b"SET k old\n"))
    v2 = parse_ok_version(server.oneshot(b"SET k new\n"))
    assert v1 != v2
    assert server.oneshot(b"GET k\n") == b"VALUE new\n"
    assert server.oneshot(b"STATS\n") == b"OK 1\n"


def test_key_length_limit(server: KvboxServer) -> None:
    k64 = b"K" * 32 + b"7" * 32
    k65 = k64 + b"x"
    parse_ok_version(server.oneshot(b"SET " + k64 + b" v64\n"))
    assert server.oneshot(b"GET " + k64 + b"\n") == b"VALUE v64\n"
    reply = server.oneshot(b"SET " + k65 + b" v65\n")
    assert re.fullmatch(rb"ERR BADKEY [^\n]*\n", reply), reply
    reply = server.oneshot(b"GET " + k65 + b"\n")
    assert re.fullmatch(rb"ERR BADKEY [^\n]*\n", reply), reply
    assert server.oneshot(b"STATS\n") == b"OK 1\n"


def test_keys_are_case_sensitive(server: KvboxServer) -> None:
    server.oneshot(b"SET Apple upper\n")
    assert server.oneshot(b"GET apple\n") == b"NOTFOUND\n"
    assert server.oneshot(b"GET Apple\n") == b"VALUE upper\n"


def test_value_size_limit_and_store_unchanged(server: KvboxServer) -> None:
    v1024 = bytes(0x21 + i % 94 for i in range(1024))
    version = parse_ok_version(server.oneshot(b"SET big " + v1024 + b"\n"))
    assert server.oneshot(b"GET big\n") == b"VALUE " + v1024 + b"\n"
    reply = server.oneshot(b"SET big " + v1024 + b"X\n")
    assert re.fullmatch(rb"ERR TOOLARGE [^\n]*\n", reply), reply
    reply = server.oneshot(b"SET other " + v1024 + b"X\n")
    assert re.fullmatch(rb"ERR TOOLARGE [^\n]*\n", reply), reply
    assert server.oneshot(b"GET big\n") == b"VALUE " + v1024 + b"\n"
    assert server.oneshot(b"VERSION big\n") == f"OK {version}\n".encode()
    assert server.oneshot(b"GET other\n") == b"NOTFOUND\n"
    assert server.oneshot(b"STATS\n") == b"OK 1\n"


def test_empty_value(server: KvboxServer) -> None:
    parse_ok_version(server.oneshot(b"SET empty \n"))
    assert server.oneshot(b"GET empty\n") == b"VALUE \n"
    assert server.oneshot(b"STATS\n") == b"OK 1\n"
    reply = server.oneshot(b"SET nospace\n")
    assert re.fullmatch(rb"ERR ARGS [^\n]*\n", reply), reply
    assert server.oneshot(b"GET nospace\n") == b"NOTFOUND\n"


def test_spaces_inside_values_are_kept(server: KvboxServer) -> None:
    value = b"  two leading, three   inside and trailing  "
    server.oneshot(b"SET spaced " + value + b"\n")
    assert server.oneshot(b"GET spaced\n") == b"VALUE " + value + b"\n"


def test_all_printable_ascii_value(server: KvboxServer) -> None:
    value = bytes(range(0x20, 0x7F)) + b"\t\x01\x7f"
    server.oneshot(b"SET ascii " + value + b"\n")
    assert server.oneshot(b"GET ascii\n") == b"VALUE " + value + b"\n"


def test_command_words_are_case_insensitive(server: KvboxServer) -> None:
    parse_ok_version(server.oneshot(b"set k1 lower\n"))
    parse_ok_version(server.oneshot(b"Set k2 mixed\n"))
    assert server.oneshot(b"get k1\n") == b"VALUE lower\n"
    assert server.oneshot(b"gEt k2\n") == b"VALUE mixed\n"
    assert server.oneshot(b"stats\n") == b"OK 2\n"
    assert server.oneshot(b"sTaTs\n") == b"OK 2\n"


def test_crlf_line_endings(server: KvboxServer) -> None:
    parse_ok_version(server.oneshot(b"SET crlf value with spaces\r\n"))
    assert server.oneshot(b"GET crlf\r\n") == b"VALUE value with spaces\n"
    assert server.oneshot(b"STATS\r\n") == b"OK 1\n"


def test_pipelined_requests_in_one_write(server: KvboxServer) -> None:
    n = 500
    batch = b"".join(b"SET p%d value%d\n" % (i, i) for i in range(n))
    batch += b"".join(b"GET p%d\n" % i for i in range(n))
    batch += b"GET missing\nSTATS\n"
    with server.connect() as w:
        w.send(batch)
        versions = [parse_ok_version(w.readline()) for _ in range(n)]
        assert len(set(versions)) == n
        for i in range(n):
            assert w.readline() == b"VALUE value%d\n" % i
        assert w.readline() == b"NOTFOUND\n"
        assert w.readline() == b"OK %d\n" % n


def test_pipelined_then_half_close(server: KvboxServer) -> None:
    """Like ``printf '...' | nc -q1``: every request before EOF is answered, in order."""
    out = server.oneshot(b"GET pear\nSET bad-key x\nSET apple red\nMULTIGET apple pear\n")
    lines = out.split(b"\n")
    assert lines[0] == b"NOTFOUND"
    assert lines[1].startswith(b"ERR BADKEY ")
    parse_ok_version(lines[2] + b"\n")
    assert lines[3:] == [b"OK 2", b"VALUE red", b"NOTFOUND", b""]


def test_data_survives_clean_restart(server: KvboxServer) -> None:
    expected = {f"key{i}": f"value {i} " * (i % 7) for i in range(50)}
    versions = {}
    with server.connect() as w:
        for k, v in expected.items():
            versions[k] = parse_ok_version(w.request(f"SET {k} {v}\n".encode()))
    server.restart(signal.SIGTERM)
    server.restart(signal.SIGINT)
    assert server.exit_codes == [0, 0]
    assert server.oneshot(b"STATS\n") == b"OK 50\n"
    with server.connect() as w:
        for k, v in expected.items():
            assert w.request(f"GET {k}\n".encode()) == f"VALUE {v}\n".encode()
            assert w.request(f"VERSION {k}\n".encode()) == f"OK {versions[k]}\n".encode()


def test_sigterm_with_open_idle_connection_exits_zero(server: KvboxServer) -> None:
    """A connected but idle client must not keep a graceful shutdown from finishing."""
    with server.connect() as w:
        assert w.request(b"PING\n") == b"OK PONG\n"
        assert server.terminate() == 0
        assert w.closed_by_peer(5.0)


def test_many_sequential_connections(server: KvboxServer) -> None:
    for i in range(200):
        assert server.oneshot(b"SET c%d %d\n" % (i % 10, i)).startswith(b"OK ")
    assert server.oneshot(b"STATS\n") == b"OK 10\n"
    with Wire.connect(server.host, server.port) as w:
        assert w.request(b"GET c9\n") == b"VALUE 199\n"
