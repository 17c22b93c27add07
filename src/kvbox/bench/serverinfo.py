"""Blocking side-channel requests the benchmark runner makes outside the measured phase.

Layer: bench (I/O, blocking). Rules: used only before and after the measurement, never in
the hot loop; short timeouts everywhere so a dead server fails the run instead of hanging
it. These paths use the client library (``kvbox.Client``), which checks every reply
strictly; only the hot loop uses pre-encoded bytes. ``INFO`` (docs/protocol.md §4) gives
the server's CPU time and request count, from which the runner reports server CPU per
request; ``populate`` writes every benchmark key once so GETs measure hits, using
``MULTISET`` so even a server without group commit fills thousands of keys in a few
transactions (values over the text limit go as pipelined ``BSET``s instead).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from kvbox.bench.workload import Workload, encode_set, key_name, make_value
from kvbox.client import Client
from kvbox.errors import KvboxError
from kvbox.proto.gwkv import MAX_MULTI

#: Pairs per MULTISET when populating: under the protocol's 1,000, and a request of at
#: most ~0.5 MB with 1 KB values.
POPULATE_CHUNK = min(500, MAX_MULTI)
#: Requests in flight per batch when populating with BSET (values over the text limit).
POPULATE_PIPELINE = 16


class ServerError(Exception):
    """The server could not be reached or answered something unexpected."""


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """The server's accumulated CPU time and request count at one moment."""

    cpu_user_s: float
    cpu_sys_s: float
    requests: int

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


class _LineConn:
    """A blocking connection that reads replies line by line."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ServerError(f"cannot connect to {host}:{port}: {exc}") from exc
        self._file = self._sock.makefile("rb")

    def __enter__(self) -> _LineConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        self._sock.close()

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def line(self) -> bytes:
        try:
            raw = self._file.readline(1 << 20)
        except OSError as exc:
            raise ServerError(f"reading a reply failed: {exc}") from exc
        if not raw.endswith(b"\n"):
            raise ServerError("the server closed the connection mid-reply")
        return raw[:-1].rstrip(b"\r")


def fetch_info(host: str, port: int, timeout: float = 5.0) -> dict[str, str]:
    """The server's ``INFO`` lines as a name -> value mapping."""
    try:
        with Client(host, port, timeout=timeout) as kv:
            return kv.info()
    except (OSError, KvboxError) as exc:
        raise ServerError(f"INFO from {host}:{port} failed: {exc}") from exc


def cpu_snapshot(info: dict[str, str]) -> CpuSnapshot | None:
    """The CPU figures from an INFO mapping, or None if the server does not report them."""
    try:
        return CpuSnapshot(
            cpu_user_s=float(info["cpu_user_s"]),
            cpu_sys_s=float(info["cpu_sys_s"]),
            requests=int(info["requests"]),
        )
    except (KeyError, ValueError):
        return None


def populate(host: str, port: int, workload: Workload, seed: int, timeout: float = 60.0) -> int:
    """Write every key of the workload once; returns how many keys were written."""
    value = make_value(workload.value_size, seed)
    keys = [key_name(workload.key_prefix, i) for i in range(workload.keys)]
    if workload.binary:
        _populate_binary(host, port, keys, value, timeout)
        return len(keys)
    try:
        with Client(host, port, timeout=timeout) as kv:
            for start in range(0, len(keys), POPULATE_CHUNK):
                chunk = keys[start : start + POPULATE_CHUNK]
                kv.mset([(k.decode("ascii"), value) for k in chunk])
    except (OSError, KvboxError) as exc:
        raise ServerError(f"MULTISET to {host}:{port} failed: {exc}") from exc
    return len(keys)


def _populate_binary(host: str, port: int, keys: list[bytes], value: bytes, timeout: float) -> None:
    # Pipelined: one durable BSET at a time would take a disk flush per key.
    with _LineConn(host, port, timeout) as conn:
        for start in range(0, len(keys), POPULATE_PIPELINE):
            chunk = keys[start : start + POPULATE_PIPELINE]
            conn.send(b"".join(encode_set(k, value) for k in chunk))
            for _ in chunk:
                reply = conn.line()
                if not reply.startswith(b"OK "):
                    raise ServerError(f"BSET failed: {reply[:200]!r}")
