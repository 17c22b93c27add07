#!/usr/bin/env python3
"""A bare uvloop GW-KV server: the ceiling for any Python asyncio server on this machine.

Reference only, never shipped: an in-memory dict, no validation, no durability, no limits.
It speaks just enough GW-KV (SET, GET, MULTISET, PING, INFO) for ``kvbox bench`` to drive it
in both shapes, so the benchmark can be calibrated: whatever kvbox does per request costs
what kvbox measures minus what this measures. INFO reports the same CPU and request
counters as kvbox, so ``kvbox bench`` prints server CPU per request for it too.

    python bench/bare_server.py --port 7171
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from typing import cast

import uvloop

VERSION = b"01BENCHBARESERVER000000000"  # a fixed 26-character version id


class _State:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.requests = 0
        self.started = time.monotonic()


class _Conn(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buf = b""
        self.multiset_left = 0
        self.multiset_n = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buf = self.buf + data if self.buf else data
        lines = buf.split(b"\n")
        self.buf = lines.pop()
        out = []
        st = self.state
        for line in lines:
            if self.multiset_left:
                key, _, value = line.partition(b" ")
                st.data[key] = value
                self.multiset_left -= 1
                if not self.multiset_left:
                    out.append(b"OK " + b" ".join([VERSION] * self.multiset_n) + b"\n")
                continue
            st.requests += 1
            cmd, _, rest = line.partition(b" ")
            cmd = cmd.upper()
            if cmd == b"SET":
                key, _, value = rest.partition(b" ")
                st.data[key] = value
                out.append(b"OK " + VERSION + b"\n")
            elif cmd == b"GET":
                found = st.data.get(rest)
                out.append(b"NOTFOUND\n" if found is None else b"VALUE " + found + b"\n")
            elif cmd == b"MULTISET":
                self.multiset_left = self.multiset_n = int(rest)
            elif cmd == b"PING":
                out.append(b"OK PONG\n")
            elif cmd == b"INFO":
                ru = resource.getrusage(resource.RUSAGE_SELF)
                fields = {
                    "objects": len(st.data),
                    "requests": st.requests,
                    "cpu_user_s": f"{ru.ru_utime:.6f}",
                    "cpu_sys_s": f"{ru.ru_stime:.6f}",
                    "uptime_s": f"{time.monotonic() - st.started:.3f}",
                    "version": "bare",
                }
                out.append(b"OK %d\n" % len(fields))
                out.extend(f"{k} {v}\n".encode() for k, v in fields.items())
            else:
                out.append(b"ERR UNKNOWN bare server\n")
        if out:
            self.transport.write(b"".join(out))


async def _main(host: str, port: int) -> None:
    state = _State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(state), host, port, backlog=4096)
    print(f"bare server: gwkv tcp {host}:{port} pid {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7171)
    args = ap.parse_args()
    uvloop.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
