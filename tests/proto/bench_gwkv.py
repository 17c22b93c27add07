"""Micro-benchmark of the GW-KV request parser (not a test: pytest does not collect it).

Run: ``python tests/proto/bench_gwkv.py``. Feeds pipelined requests in 64 KiB pieces, the
way a server read loop does, and prints the parser's cost per request. It belongs with
the benchmarks; it lives here only until benchmarks/ has a home for codec benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kvbox.proto import gwkv

PIECE = 64 * 1024


def _pieces(stream: bytes) -> list[bytes]:
    return [stream[i : i + PIECE] for i in range(0, len(stream), PIECE)]


def _parse_all(pieces: list[bytes]) -> int:
    parser = gwkv.RequestParser()
    count = 0
    feed = parser.feed
    next_event = parser.next_event
    for piece in pieces:
        feed(piece)
        while next_event() is not None:
            count += 1
    return count


def _bench(name: str, make: Callable[[int], bytes], n: int) -> None:
    pieces = _pieces(b"".join(make(i) for i in range(n)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        count = _parse_all(pieces)
        best = min(best, time.perf_counter() - start)
    assert count == n, (count, n)
    print(f"{name:<24} {best / n * 1e6:6.3f} us/request  ({n / best:,.0f} requests/s)")


def _replies(n: int) -> None:
    stream = b"".join(gwkv.ok_version("01JDZ7W6G5R8Q4X0C2N9M1T3KA") for _ in range(n))
    start = time.perf_counter()
    parser = gwkv.ReplyParser()
    parser.expect_many([gwkv.Expect.LINE] * n)
    count = 0
    for piece in _pieces(stream):
        parser.feed(piece)
        while parser.next_reply() is not None:
            count += 1
    elapsed = time.perf_counter() - start
    assert count == n
    print(f"{'reply OK <version>':<24} {elapsed / n * 1e6:6.3f} us/reply")


def main() -> None:
    value = b"v" * 1000
    n = 100_000
    _bench("SET k<i> <1000 B>", lambda i: b"SET k%d %s\n" % (i, value), n)
    _bench("SET k<i> <10 B>", lambda i: b"SET k%d 0123456789\n" % i, n)
    _bench("GET k<i>", lambda i: b"GET k%d\n" % i, n)
    _bench("get k<i> (lowercase)", lambda i: b"get k%d\r\n" % i, n)
    _bench(
        "MULTIGET 10 keys",
        lambda i: b"MULTIGET" + b"".join(b" k%d" % j for j in range(10)) + b"\n",
        n // 10,
    )
    _bench("BSET 100 B", lambda i: b"BSET k%d 100\n%s\n" % (i, value[:100]), n)
    _replies(n)


if __name__ == "__main__":
    main()
