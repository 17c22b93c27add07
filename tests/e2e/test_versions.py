"""GW-KV over a versioned bucket: VERSIONS, GETV and BGETV, through raw sockets and the CLI."""

from __future__ import annotations

import os

from kvbox import Client

from ._server import parse_ok_version
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
