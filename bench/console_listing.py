#!/usr/bin/env python3
"""The console's object browser on a bucket of a million keys: what one page costs.

Reference tool, never shipped, not collected by pytest. The console never loads a bucket
whole: each screen is one ``ListObjectsV2`` page (up to 1,000 keys) fetched through the
console's relay, as the signed-in user, with the continuation token of the page before.
This loads ``--keys`` keys (default 1,000,000) into the ``kv`` bucket with GW-KV
``MULTISET`` (1,000 pairs a request), then signs into the console over plain HTTP and
times, for 1,000-key pages:

* ``first``    the first page, as the browser asks for it;
* ``next``     each of the following ``--pages`` pages, token after token;
* ``deep``     a page half-way through the bucket (``start-after``), to show a page's cost
               does not grow with its depth;
* ``direct``   the same first page straight from the S3 port, SigV4-signed, to show what
               the console's relay adds;
* ``stats``    the bucket's object count and bytes (what the buckets list shows).

    python bench/console_listing.py                  # starts its own kvbox serve
    python bench/console_listing.py --keys 200000 --pages 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path

from kvbox.auth.sigv4 import UNSIGNED_PAYLOAD, parse_query_string, sign_request

ACCESS, SECRET = "KVBENCHACCESSKEY0001", "bench-secret-not-a-real-one"


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    """Until the server's HTTP port answers (start-up is slower on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(kv_port: int, keys: int) -> float:
    """MULTISET ``keys`` keys, 1,000 per request, ten requests in flight; seconds taken."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", kv_port)) as sock:
        f = sock.makefile("rb")
        batches = range(0, keys, 1000)
        inflight = 0
        for start in batches:
            n = min(1000, keys - start)
            lines = "".join(f"key{i:07d} v{i}\n" for i in range(start, start + n))
            sock.sendall(f"MULTISET {n}\n{lines}".encode())
            inflight += 1
            if inflight == 10:
                assert f.readline().startswith(b"OK")
                inflight -= 1
        for _ in range(inflight):
            assert f.readline().startswith(b"OK")
    return time.perf_counter() - t0


class Console:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = json.dumps({"access_key": ACCESS, "secret_key": SECRET})
        self.conn.request(
            "POST", "/console/api/session", body, {"Content-Type": "application/json"}
        )
        resp = self.conn.getresponse()
        resp.read()
        jar: SimpleCookie = SimpleCookie()
        jar.load(resp.headers["Set-Cookie"])
        self.cookie = f"kvbox_console={jar['kvbox_console'].value}"

    def get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        self.conn.request("GET", "/console/api/" + path, headers={"Cookie": self.cookie})
        resp = self.conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body[:300]
        return (time.perf_counter() - t0) * 1000, body


def _token(body: bytes) -> str:
    text = body.decode()
    start = text.find("<NextContinuationToken>")
    if start < 0:
        return ""
    end = text.find("</NextContinuationToken>", start)
    return text[start + len("<NextContinuationToken>") : end]


def _direct(http_port: int) -> float:
    """Milliseconds of the first page straight from the S3 port, signed with SigV4 (the
    body read, not parsed: what the console's number includes too)."""
    query = "list-type=2&max-keys=1000"
    headers = [("host", f"127.0.0.1:{http_port}")]
    headers += sign_request(
        "GET",
        "/kv",
        parse_query_string(query),
        headers,
        UNSIGNED_PAYLOAD,
        access_key=ACCESS,
        secret_key=SECRET,
        now=datetime.now(UTC),
        region="us-east-1",
    )
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", "/kv?" + query, headers=dict(headers))
    resp = conn.getresponse()
    body = resp.read()
    ms = (time.perf_counter() - t0) * 1000
    conn.close()
    assert resp.status == 200, body[:300]
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=10)
    args = ap.parse_args()
    kv_port, http_port = _free(), _free()
    data = Path(tempfile.mkdtemp()) / "data"
    env = {**os.environ, "KVBOX_ROOT_ACCESS_KEY": ACCESS, "KVBOX_ROOT_SECRET_KEY": SECRET}
    argv = [sys.executable, "-m", "kvbox", "serve", "--data", str(data), "--kv-port",
            str(kv_port), "--http-port", str(http_port), "--access-log", "off"]  # fmt: skip
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(http_port)
        loaded = _load(kv_port, args.keys)
        print(f"loaded {args.keys:,} keys with MULTISET in {loaded:.1f} s")
        console = Console(http_port)
        page = "s3/kv?list-type=2&max-keys=1000"
        first, body = console.get(page)
        times = []
        token = _token(body)
        for _ in range(args.pages):
            ms, body = console.get(page + "&continuation-token=" + token)
            times.append(ms)
            token = _token(body)
        half = f"key{args.keys // 2:07d}"
        deep, _ = console.get(page + "&start-after=" + half)
        stats, body = console.get("stats?bucket=kv")
        direct = statistics.median(_direct(http_port) for _ in range(5))
        print(f"first page (1,000 keys) through the console: {first:.1f} ms")
        print(
            f"next {args.pages} pages: median {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms"
        )
        print(f"a page half-way through ({half}): {deep:.1f} ms")
        print(f"the same first page from the S3 port, SigV4-signed (median of 5): {direct:.1f} ms")
        print(f"bucket statistics: {stats:.1f} ms -> {json.loads(body)['buckets']['kv']}")
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
