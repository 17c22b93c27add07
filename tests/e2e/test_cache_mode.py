"""``--max-memory``: a fixed-size in-memory cache with least-recently-used eviction.

Layer: tests/e2e. Rules: five times the limit is written through a live server; the
stored bytes (INFO ``bytes``) must stay under the limit throughout, the keys never read
since they were written must be the ones evicted, and keys read recently must survive.
"""

from __future__ import annotations

import contextlib

from ._server import parse_ok_version
from .conftest import ServerFactory

LIMIT = 1 << 20
VALUE_SIZE = 1024
TOTAL_KEYS = 5 * LIMIT // VALUE_SIZE  # 5 MiB of distinct keys
HOT = [f"key{i}" for i in range(10)]  # written first, read all the time
BATCH = 100


def value_for(i: int) -> bytes:
    return (b"%08d" % i) * (VALUE_SIZE // 8)


def test_lru_eviction_keeps_bytes_under_limit(server_factory: ServerFactory) -> None:
    server = server_factory("--max-memory", "1MiB")
    with server.connect(timeout=30) as w:
        for start in range(0, TOTAL_KEYS, BATCH):
            keys = range(start, min(start + BATCH, TOTAL_KEYS))
            w.send(b"".join(b"SET key%d %s\n" % (i, value_for(i)) for i in keys))
            for _ in keys:
                parse_ok_version(w.readline())
            # touch the hot keys after every batch: they are never least recently used
            w.send(b"".join(f"GET {k}\n".encode() for k in HOT))
            for k in HOT:
                i = int(k[3:])
                assert w.readline() == b"VALUE " + value_for(i) + b"\n", f"hot {k} evicted"
            if start % (10 * BATCH) == 0:
                assert int(server.info()["bytes"]) <= LIMIT

        info = server.info()
        stored = int(info["bytes"])
        objects = int(info["objects"])
        assert stored <= LIMIT, f"cache holds {stored} bytes, limit {LIMIT}"
        # it is a cache, not an empty box: most of the budget is in use
        assert stored >= LIMIT // 2, f"cache holds only {stored} bytes"
        assert w.request(b"STATS\n") == b"OK %d\n" % objects
        assert objects < TOTAL_KEYS // 4

        # cold keys written early and never read again are gone
        for i in range(len(HOT), len(HOT) + 1000):
            assert w.request(b"GET key%d\n" % i) == b"NOTFOUND\n", f"key{i} not evicted"
        # the hot keys and the most recently written keys survive
        for k in HOT:
            assert w.request(f"GET {k}\n".encode()) == b"VALUE " + value_for(int(k[3:])) + b"\n"
        for i in range(TOTAL_KEYS - 200, TOTAL_KEYS):
            assert w.request(b"GET key%d\n" % i) == b"VALUE " + value_for(i) + b"\n"


def test_recently_read_key_outlives_recently_written(server_factory: ServerFactory) -> None:
    """Reading a key makes it young again: LRU, not FIFO."""
    server = server_factory("--max-memory", "1MiB")
    # What fits: a key costs its value, its name and its entry (900 bytes, the
    # ENTRY_COST of docs/protocol.md §7), about 1.9 KiB here.
    fits = LIMIT // (VALUE_SIZE + 900 + len("old000"))
    old, new = fits // 2, fits * 3 // 4  # 1.25 times what fits: a quarter must go
    with server.connect(timeout=30) as w:
        w.send(b"".join(b"SET old%d %s\n" % (i, value_for(i)) for i in range(old)))
        for _ in range(old):
            parse_ok_version(w.readline())
        assert w.request(b"GET old0\n") == b"VALUE " + value_for(0) + b"\n"
        w.send(b"".join(b"SET new%d %s\n" % (i, value_for(i)) for i in range(new)))
        for _ in range(new):
            parse_ok_version(w.readline())
        assert w.request(b"GET old0\n") == b"VALUE " + value_for(0) + b"\n"
        assert w.request(b"GET old1\n") == b"NOTFOUND\n"
        assert w.request(b"GET old%d\n" % (old - 1)) == b"VALUE " + value_for(old - 1) + b"\n"
        assert int(server.info()["bytes"]) <= LIMIT


def test_value_larger_than_cache(server_factory: ServerFactory) -> None:
    """A value bigger than the whole cache is refused, or at least never breaks the limit."""
    server = server_factory("--max-memory", "1MiB")
    with server.connect(timeout=30) as w:
        parse_ok_version(w.request(b"SET small x\n"))
        w.send(b"BSET huge %d\n" % (2 * LIMIT))
        # the server may refuse at the header and close: then the payload cannot go out
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            w.send(b"\x00" * (2 * LIMIT) + b"\n")
        reply = w.readline()
    if reply.startswith(b"ERR "):
        assert reply.startswith(b"ERR TOOLARGE"), reply
        assert server.oneshot(b"GET small\n") == b"VALUE x\n"
    else:
        parse_ok_version(reply)
    assert int(server.info()["bytes"]) <= LIMIT
    if server.oneshot(b"VERSION huge\n") != b"NOTFOUND\n":
        with server.connect(timeout=30) as w:
            got = w.bget("huge")
        assert got is not None and got[0] == b"\x00" * (2 * LIMIT)
