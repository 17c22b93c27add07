"""A bounded write-and-read load through both gateways, every operation recorded.

Layer: tests/faults. Rules:

* **Real clients, as users run them.** S3 through boto3 with its default
  configuration but for retries (off: see ``_s3``) and path-style addressing; GW-KV
  through ``kvbox.Client`` (BSET of chunked values, BGET) and ``kvbox.AsyncClient``
  (16 SETs pipelined in one write). Each client alternates between the two gateways.
* **Every operation is recorded** in a ``history.History`` (the checker's module):
  what was asked (kind, door, gateway, bucket and key, the digest of the bytes written),
  when (``time.monotonic()`` at start and end, one clock for the whole test process),
  and how it ended: ``ok`` with its result (the version written, or the digest and
  version read); ``fail`` only when the answer promises nothing was written (a 4xx,
  a 503 -- fewer than W blob nodes --, a connection refused before anything was
  sent); ``unknown`` for everything unsure (a 500, ``ERR``, a timeout, a connection
  lost after sending): such a write may or may not have happened, and the checker
  allows both. Every value is random bytes, so a digest names one write.
* **Bounded in count and in time.** Each client stops after ``ops`` operations or at
  ``until`` (monotonic), whichever comes first, or when ``stop()`` is called; the
  threads are joined before ``stop()`` returns. Randomness is seeded per client, so a
  run's sequence of requests is the same every time (their timing is not).
* Reads during the load ask for the newest value of a key this client saw written
  (S3 GET, GW-KV BGET): the checker judges what they return (an older value after a
  newer one was acknowledged is a stale read; bytes nobody wrote -- corruption -- a
  phantom), and a failed read while a copy of every chunk is reachable is
  unavailability, which the tests assert never happened. (Reads of each version by
  its id come after the load: ``_final.read_back``.)
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from kvbox import AsyncClient, Client
from kvbox.proto.gwkv import ErrorReply, OkReply, Set

from ._cluster import S3_BUCKET, Cluster, Gateway
from .history import History, Kind, Outcome, digest

#: The value of objects that span chunks (8 MiB each): two chunks and a bit.
BIG = 8 * 1024 * 1024 + 300_000
#: Values above the inline limit (64 KiB), so they live on the blob nodes.
SMALL = (70_000, 160_000)
#: Seconds each client waits between its operations (also how fast it sees ``stop``):
#: a load that saturated two cores would starve the processes under test.
PACE = 0.02
#: GW-KV's bucket: a GW-KV key ``k`` is the S3 object ``kv/k``.
KV_BUCKET = "kv"


class Load:
    """The clients' threads and what they recorded (module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        seed: int,
        history: History,
        *,
        s3_clients: int = 2,
        kv_clients: int = 1,
        pipelined: int = 1,
        ops: int = 60,
        seconds: float = 30.0,
        big: int = 2,
        prefix: str = "",
    ) -> None:
        self.cluster = cluster
        self.seed = seed
        self.history = history
        self.ops = ops
        self.seconds = seconds
        self.until = 0.0
        self.big = big
        self.prefix = prefix or f"s{seed}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        workers: Sequence[tuple[str, Callable[[str, int], None]]] = (
            [("s3", self._s3)] * s3_clients
            + [("kv", self._kv)] * kv_clients
            + [("pipe", self._pipe)] * pipelined
        )
        #: Operations (a pipeline counts as one) each client has finished.
        self._done: dict[str, int] = {}
        for i, (name, fn) in enumerate(workers):
            self._done[f"{name}{i}"] = 0
            self._threads.append(threading.Thread(target=fn, args=(f"{name}{i}", i)))

    def __enter__(self) -> Load:
        self.until = time.monotonic() + self.seconds
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)
            assert not t.is_alive(), "a load client did not stop within 120 s"

    def wait(self, count: int, within: float = 90.0) -> None:
        """Block until every client did ``count`` more operations (a client that stopped
        by itself counts as done), so each phase of a scenario has every kind of
        operation in it; AssertionError after ``within`` seconds."""
        target = {c: n + count for c, n in self._done.items()}
        deadline = time.monotonic() + within
        while True:
            behind = [
                c
                for c, t in zip(self._done, self._threads, strict=True)
                if t.is_alive() and self._done[c] < target[c]
            ]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"load clients {behind} made no progress in {within} s")
            time.sleep(0.05)

    def _going(self, client: str, done: int) -> bool:
        self._done[client] = done
        return done < self.ops and time.monotonic() < self.until and not self._stop.is_set()

    def _gateway(self, i: int) -> Gateway:
        gws = self.cluster.gateways
        return gws[i % len(gws)]

    # --- S3 ----------------------------------------------------------------------------

    def _s3(self, client: str, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        # Retries off (everything else boto3's defaults): a retry would hide a failed
        # first answer, which is what "reads were served throughout" is about, and a
        # PUT retried after its first attempt landed writes the same bytes twice, which
        # the history could not tell apart (``total_max_attempts``: botocore's
        # ``max_attempts`` counts retries).
        s3s = {gw.name: gw.s3(retries={"total_max_attempts": 1}) for gw in self.cluster.gateways}
        mine: list[str] = []  # keys with an acknowledged write
        bigs = 0
        done = 0
        while self._going(client, done):
            gw = self._gateway(done + n)
            s3 = s3s[gw.name]
            if mine and rng.random() < 0.4:
                self._s3_get(client, gw, s3, rng.choice(mine))
            else:
                key = f"{self.prefix}/k{rng.randrange(12)}"
                if bigs < self.big and done >= 3 + 9 * bigs:
                    # Spread out (the 4th operation, then every 9th): one before a
                    # scenario's fault, the next ones while it lasts.
                    size, bigs = BIG, bigs + 1
                else:
                    size = rng.randrange(*SMALL)
                if self._s3_put(client, gw, s3, key, rng.randbytes(size)) is not None:
                    mine.append(key)
            done += 1
            self._stop.wait(PACE)

    def _s3_put(self, client: str, gw: Gateway, s3: Any, key: str, data: bytes) -> str | None:
        start = time.monotonic()
        version: str | None = None
        outcome: Outcome = "ok"
        result = ""
        try:
            version = str(s3.put_object(Bucket=S3_BUCKET, Key=key, Body=data)["VersionId"])
        except Exception as exc:
            outcome, result = _s3_outcome(exc), _text(exc)
        self.history.record(
            client=client, gateway=gw.name, door="s3", kind="put", bucket=S3_BUCKET, key=key,
            start=start, end=time.monotonic(), outcome=outcome, digest=digest(data),
            version=version, result=result,
        )  # fmt: skip
        return version

    def _s3_get(self, client: str, gw: Gateway, s3: Any, key: str) -> None:
        start = time.monotonic()
        value: str | None = None
        version: str | None = None
        outcome: Outcome = "ok"
        result = ""
        try:
            got = s3.get_object(Bucket=S3_BUCKET, Key=key)
            value, version = digest(got["Body"].read()), str(got["VersionId"])
        except s3.exceptions.NoSuchKey:
            pass  # "not found" is an answer: the checker judges it
        except Exception as exc:
            outcome, result = _s3_outcome(exc), _text(exc)
        self.history.record(
            client=client, gateway=gw.name, door="s3", kind="get", bucket=S3_BUCKET, key=key,
            start=start, end=time.monotonic(), outcome=outcome, digest=value,
            version=version, result=result,
        )  # fmt: skip

    # --- GW-KV -------------------------------------------------------------------------

    def _kv(self, client: str, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        conns: dict[str, Client] = {}
        mine: list[str] = []
        done = 0
        try:
            while self._going(client, done):
                gw = self._gateway(done + n)
                if mine and rng.random() < 0.4:
                    self._kv_op(client, gw, conns, "get", rng.choice(mine), None)
                else:
                    key = f"{self.prefix}b{rng.randrange(12)}"
                    data = rng.randbytes(rng.randrange(*SMALL))
                    if self._kv_op(client, gw, conns, "put", key, data) is not None:
                        mine.append(key)
                done += 1
                self._stop.wait(PACE)
        finally:
            for conn in conns.values():
                conn.close()

    def _kv_op(
        self,
        client: str,
        gw: Gateway,
        conns: dict[str, Client],
        kind: Kind,
        key: str,
        data: bytes | None,
    ) -> str | None:
        """BSET ``data`` (``put``) or BGET (``get``: the client's BGET names no
        version); the version written."""
        start = time.monotonic()
        value = None if data is None else digest(data)
        version: str | None = None
        outcome: Outcome = "ok"
        result = ""
        try:
            conn = conns.get(gw.name)
            if conn is None:
                conn = conns[gw.name] = Client(gw.host.ip, gw.kv_port, timeout=30)
            if kind == "put":
                assert data is not None
                version = conn.bset(key, data)
            else:
                got = conn.bget(key)
                value = None if got is None else digest(got)
        except Exception as exc:
            stale = conns.pop(gw.name, None)
            if stale is not None:
                stale.close()
            outcome = "fail" if isinstance(exc, ConnectionRefusedError) else "unknown"
            result = _text(exc)
        self.history.record(
            client=client, gateway=gw.name, door="kv", kind=kind, bucket=KV_BUCKET, key=key,
            start=start, end=time.monotonic(), outcome=outcome, digest=value,
            version=version, result=result,
        )  # fmt: skip
        return version if outcome == "ok" else None

    def _pipe(self, client: str, n: int) -> None:
        asyncio.run(self._pipe_loop(client, n))

    async def _pipe_loop(self, client: str, n: int) -> None:
        """16 SETs of small (inline) values in one write, through each gateway in turn:
        each reply stands alone (one SET's error does not stop the others)."""
        rng = random.Random(self.seed * 1000 + n)
        done = 0
        conns: dict[str, AsyncClient] = {}
        try:
            while self._going(client, done):
                gw = self._gateway(done + n)
                keys = [f"{self.prefix}p{rng.randrange(24)}" for _ in range(16)]
                values = [rng.randbytes(24).hex().encode() for _ in keys]
                start = time.monotonic()
                replies: list[Any] = []
                failure: tuple[Outcome, str] = ("ok", "")
                try:
                    conn = conns.get(gw.name)
                    if conn is None:
                        conn = conns[gw.name] = AsyncClient(gw.host.ip, gw.kv_port, timeout=30)
                    replies = await conn.pipeline(
                        [Set(k, v) for k, v in zip(keys, values, strict=True)]
                    )
                except Exception as exc:
                    stale = conns.pop(gw.name, None)
                    if stale is not None:
                        await stale.close()
                    refused = isinstance(exc, ConnectionRefusedError)
                    failure = ("fail" if refused else "unknown", _text(exc))
                end = time.monotonic()
                for i, (key, value) in enumerate(zip(keys, values, strict=True)):
                    outcome, result = failure
                    version = None
                    if replies and isinstance(replies[i], OkReply):
                        outcome, version = "ok", replies[i].words[0]
                    elif replies:
                        r = replies[i]
                        text = f"{r.code} {r.message}" if isinstance(r, ErrorReply) else repr(r)
                        outcome, result = "unknown", text
                    self.history.record(
                        client=client, gateway=gw.name, door="kv", kind="put",
                        bucket=KV_BUCKET, key=key, start=start, end=end, outcome=outcome,
                        digest=digest(value), version=version, result=result,
                    )  # fmt: skip
                done += 1
                await asyncio.sleep(PACE)
        finally:
            for conn in conns.values():
                await conn.close()


def _s3_outcome(exc: BaseException) -> Outcome:
    """``fail`` when the answer promises nothing was written (a 4xx, a 503: fewer than
    W blob nodes, refused before any commit) or nothing was sent; else ``unknown``."""
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return "fail"
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if 400 <= status < 500 or status == 503:
            return "fail"
    return "unknown"


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
