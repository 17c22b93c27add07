"""Clients that race on a few keys through both gateways, and the final state read back.

Layer: tests/faults (the gateway/PostgreSQL scenarios). Rules:

* **Races, not volume.** Every client works on a handful of keys, so the history is
  full of overwrites, reads of the newest value right after another gateway's write,
  and conditional writes that conflict: the situations the checker's rules
  (``history.py``) judge. Each operation is one request (boto3 with retries off, raw
  GW-KV lines), so the history holds exactly what each request did: a retry inside
  boto3 could write a value twice or turn a landed If-Match write into a 412.
* **The clients**: S3 PUT/GET-newest on versioned keys, and PUT/DELETE/GET-newest in a
  bucket without versioning; GW-KV SET, BSET (values above
  the 64 KiB inline limit, so on the blob nodes) and BGET-newest; a counter incremented
  by CAS over GW-KV and by If-Match over S3 on ONE key (``kv/<prefix>-ctr``), so the
  two doors' conditional writes race each other; MULTISETs of three keys (one group).
  Each alternates between the gateways, paced, seeded, bounded in count and time.
* **Outcomes**: ``ok`` for an answer of success; ``fail`` only for an answer that
  promises nothing was written (CAS ``CONFLICT``, S3 412/409, a refused connection:
  nothing sent); everything else a write meets (5xx, ``ERR``, a timeout, a connection
  lost after sending) is ``unknown``: the checker allows it to have landed or not.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError  # type: ignore[import-untyped]

from e2e._server import Wire

from ._cluster import Cluster, Gateway
from .history import ABSENT, History, Op, Outcome, digest

#: The S3 bucket of the races (versioning on); GW-KV's keys live in bucket ``kv``
#: (versioned too: the cluster's gateways run with ``--kv-versioning true``).
BUCKET = "races"
#: A bucket without versioning (overwrites and deletes replace; nothing is kept).
PLAIN = "plainraces"
KV = "kv"
VERSIONED = frozenset({BUCKET, KV})
#: Seconds between one client's operations: the load must leave the two cores to the
#: processes under test (and a paced client notices ``stop`` quickly).
PACE = 0.01
#: Seconds a client waits after an operation that failed (a gateway down, PostgreSQL
#: gone): the outage is felt, the count of operations is not spent on it.
BACKOFF = 0.1
#: A value that lives on the blob nodes (over the 64 KiB inline limit).
LARGE = 70_000


def s3_client(gw: Gateway) -> Any:
    """boto3 against one gateway with retries off: one call, one request.

    ``total_max_attempts``, not ``max_attempts``: botocore's client-config
    ``max_attempts`` counts RETRIES (1 means one retry), and a retried PUT whose first
    attempt landed before its connection broke comes back as the retry's error -- a
    "refused" write the checker then finds in the final state."""
    return gw.s3(
        retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=20
    )


def s3_write_outcome(exc: BaseException) -> Outcome:
    """What a failed S3 write tells: nothing written (412, 409, 4xx, refused) or unsure."""
    if isinstance(exc, EndpointConnectionError):
        return "fail"  # the connection was refused: nothing was sent
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
        return "fail" if 400 <= status < 500 else "unknown"
    return "unknown"


def kv_write_outcome(reply: bytes) -> Outcome:
    if reply.startswith(b"OK"):
        return "ok"
    return "fail" if reply.startswith(b"CONFLICT") else "unknown"


def _ask(line: bytes) -> Callable[[Wire], bytes]:
    """One request line (with its payload) and its one-line reply."""
    return lambda w: w.request(line)


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class Races:
    """The racing clients of one scenario (module docstring); a context manager that
    starts them and stops them (joined) on exit."""

    def __init__(
        self,
        cluster: Cluster,
        history: History,
        prefix: str,
        *,
        seed: int,
        ops: int = 2000,
        seconds: float = 60.0,
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.prefix = prefix
        self.seed = seed
        self.ops = ops
        self.until = time.monotonic() + seconds
        self._stop = threading.Event()
        self._last_ok: dict[str, bool] = {}
        workers: list[tuple[str, Callable[[str, random.Random], None]]] = [
            ("s3a", self._s3_rw),
            ("s3b", self._s3_rw),
            ("s3p", self._s3_plain),
            ("kva", self._kv_rw),
            ("casv", self._kv_cas),
            ("cass", self._s3_cas),
            ("mset", self._multiset),
        ]
        self._threads = [
            threading.Thread(
                target=fn, args=(name, random.Random(f"{seed}-{name}")), name=name, daemon=True
            )
            for name, fn in workers
        ]

    def __enter__(self) -> Races:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive(), f"race client {t.name} did not stop within 60 s"

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def acked_since(self, since: float, gateway: str | None = None) -> set[str]:
        """The doors ("s3", "kv") through which a write started after ``since`` was
        acknowledged (by ``gateway`` if named)."""
        return {
            op.door
            for op in self.history.ops
            if op.is_write
            and op.acked
            and op.start >= since
            and (gateway is None or op.gateway == gateway)
        }

    def serves(self, since: float, gateway: str) -> bool:
        """Whether ``gateway`` acknowledged writes started after ``since`` over both doors."""
        return self.acked_since(since, gateway) == {"s3", "kv"}

    def _record(self, **fields: Any) -> Op:
        op = self.history.record(**fields)
        lost_race = op.kind == "cas" and op.outcome == "fail"  # a CONFLICT / 412 answer
        self._last_ok[op.client] = op.outcome == "ok" or lost_race
        return op

    def _pause(self, name: str, pace: float = PACE) -> None:
        """Wait before the client's next operation: longer after a failure, so a
        gateway that is down does not use up the client's count in refused connects."""
        self._stop.wait(pace if self._last_ok.get(name, True) else BACKOFF)

    def _going(self, n: int) -> bool:
        return n < self.ops and time.monotonic() < self.until and not self._stop.is_set()

    def _gateway(self, n: int) -> Gateway:
        gws = self.cluster.gateways
        return gws[n % len(gws)]

    # --- S3 ----------------------------------------------------------------------------

    def _s3_rw(self, name: str, rng: random.Random) -> None:
        clients: dict[str, Any] = {}
        n = 0
        while self._going(n):
            gw = self._gateway(n)
            s3 = clients.get(gw.name) or clients.setdefault(gw.name, s3_client(gw))
            key = f"{self.prefix}/o{rng.randrange(4)}"
            if rng.random() < 0.5:
                data = f"{name}-{n} ".encode() + rng.randbytes(rng.choice((300, LARGE)))
                self._s3_put(name, gw, s3, key, data)
            else:
                self._s3_get(name, gw, s3, BUCKET, key)
            n += 1
            self._pause(name)

    def _s3_plain(self, name: str, rng: random.Random) -> None:
        """PUT, DELETE and GET-newest in a bucket WITHOUT versioning: a key holds one
        value or none, so the checker's rules for overwrites and deletes are judged."""
        clients: dict[str, Any] = {}
        n = 0
        while self._going(n):
            gw = self._gateway(n + 1)
            s3 = clients.get(gw.name) or clients.setdefault(gw.name, s3_client(gw))
            key = f"{self.prefix}/p{rng.randrange(3)}"
            pick = rng.random()
            if pick < 0.4:
                data = f"{name}-{n} ".encode() + rng.randbytes(rng.choice((200, LARGE)))
                self._s3_write(name, gw, s3, PLAIN, key, data)
            elif pick < 0.6:
                self._s3_write(name, gw, s3, PLAIN, key, None)
            else:
                self._s3_get(name, gw, s3, PLAIN, key)
            n += 1
            self._pause(name)

    def _s3_put(self, name: str, gw: Gateway, s3: Any, key: str, data: bytes) -> None:
        self._s3_write(name, gw, s3, BUCKET, key, data)

    def _s3_write(
        self, name: str, gw: Gateway, s3: Any, bucket: str, key: str, data: bytes | None
    ) -> None:
        """PutObject of ``data``, or DeleteObject when it is None, recorded."""
        start = time.monotonic()
        common: dict[str, Any] = dict(
            client=name, gateway=gw.name, door="s3", bucket=bucket, key=key,
            kind="put" if data is not None else "delete",
            digest=None if data is None else digest(data),
        )  # fmt: skip
        try:
            if data is None:
                r = s3.delete_object(Bucket=bucket, Key=key)
            else:
                r = s3.put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:
            self._record(
                start=start, end=time.monotonic(), outcome=s3_write_outcome(exc),
                result=_text(exc), **common,
            )  # fmt: skip
            return
        self._record(
            start=start, end=time.monotonic(), outcome="ok", version=r.get("VersionId"),
            **common,
        )  # fmt: skip

    def _s3_get(self, name: str, gw: Gateway, s3: Any, bucket: str, key: str) -> None:
        """GET the newest version (not found is an answer too)."""
        start = time.monotonic()
        common: dict[str, Any] = dict(
            client=name, gateway=gw.name, door="s3", kind="get", bucket=bucket, key=key
        )
        try:
            r = s3.get_object(Bucket=bucket, Key=key)
            body = r["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            outcome: Outcome = "ok" if code == "NoSuchKey" else "fail"
            self._record(
                start=start, end=time.monotonic(), outcome=outcome, result=str(code), **common
            )
            return
        except Exception as exc:
            self._record(
                start=start, end=time.monotonic(), outcome="fail", result=_text(exc), **common
            )
            return
        version = r.get("VersionId")
        self._record(
            start=start, end=time.monotonic(), outcome="ok", digest=digest(body),
            version=version, **common,
        )  # fmt: skip

    def _s3_cas(self, name: str, rng: random.Random) -> None:
        """Increment the shared counter over S3: GET it, PUT n+1 If-Match its ETag
        (If-None-Match: * while it does not exist)."""
        clients: dict[str, Any] = {}
        key = f"{self.prefix}ctr"
        n = 0
        while self._going(n):
            gw = self._gateway(n + 1)
            s3 = clients.get(gw.name) or clients.setdefault(gw.name, s3_client(gw))
            start = time.monotonic()
            try:
                got = s3.get_object(Bucket=KV, Key=key)
                body, etag = got["Body"].read(), str(got["ETag"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
                    n += 1
                    self._pause(name)
                    continue
                self._record_read(name, gw, "s3", key, start, None, None)
                cond, count, expected = {"IfNoneMatch": "*"}, 1, ABSENT
            except Exception:
                n += 1
                self._pause(name)
                continue
            else:
                version = got.get("VersionId")
                self._record_read(name, gw, "s3", key, start, body, version)
                cond, count, expected = {"IfMatch": etag}, int(body.split()[0]) + 1, digest(body)
            value = f"{count} {name} {n}".encode()
            common: dict[str, Any] = dict(
                client=name, gateway=gw.name, door="s3", kind="cas", bucket=KV, key=key,
                digest=digest(value), expected=expected, count=count,
            )  # fmt: skip
            start = time.monotonic()
            try:
                r = s3.put_object(Bucket=KV, Key=key, Body=value, **cond)
            except Exception as exc:
                self._record(
                    start=start, end=time.monotonic(), outcome=s3_write_outcome(exc),
                    result=_text(exc), **common,
                )  # fmt: skip
            else:
                self._record(
                    start=start, end=time.monotonic(), outcome="ok",
                    version=r.get("VersionId"), **common,
                )  # fmt: skip
            n += 1
            self._pause(name, PACE * rng.random())

    # --- GW-KV -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _wires(self) -> Iterator[dict[str, Wire]]:
        wires: dict[str, Wire] = {}
        try:
            yield wires
        finally:
            for w in wires.values():
                w.close()

    def _wire(self, wires: dict[str, Wire], gw: Gateway) -> Wire:
        w = wires.get(gw.name)
        if w is None:
            w = wires[gw.name] = Wire.connect(gw.host.ip, gw.kv_port, timeout=20)
        return w

    def _kv_call(
        self, wires: dict[str, Wire], gw: Gateway, send: Callable[[Wire], bytes]
    ) -> tuple[bytes | None, str, bool]:
        """Run one exchange; (reply, error text, whether anything was sent)."""
        try:
            w = self._wire(wires, gw)
        except OSError as exc:
            return None, _text(exc), False
        try:
            return send(w), "", True
        except (OSError, EOFError, AssertionError) as exc:
            wires.pop(gw.name, None)
            w.close()
            return None, _text(exc), True

    def _kv_rw(self, name: str, rng: random.Random) -> None:
        with self._wires() as wires:
            n = 0
            while self._going(n):
                gw = self._gateway(n)
                key = f"{self.prefix}k{rng.randrange(4)}"
                if rng.random() < 0.5:
                    if rng.random() < 0.3:
                        value = f"{name}-{n} ".encode() + rng.randbytes(LARGE)
                        line = b"BSET %s %d\n%s\n" % (key.encode(), len(value), value)
                    else:
                        value = f"{name}-{n}-{rng.randbytes(8).hex()}".encode()
                        line = b"SET %s %s\n" % (key.encode(), value)
                    start = time.monotonic()
                    reply, err, sent = self._kv_call(wires, gw, _ask(line))
                    self._record_kv_write(
                        name, gw, "put", key, value, start, reply, err, sent, None, None
                    )
                else:
                    self._kv_get(name, gw, wires, key)
                n += 1
                self._pause(name)

    def _kv_get(
        self, name: str, gw: Gateway, wires: dict[str, Wire], key: str
    ) -> tuple[bool, tuple[bytes, str] | None]:
        """BGET the newest value: (answered, (value, version) or None for not found)."""
        start = time.monotonic()
        got: tuple[bytes, str] | None = None

        def bget(w: Wire) -> bytes:
            nonlocal got
            got = w.bget(key)
            return b"OK"

        reply, err, _sent = self._kv_call(wires, gw, bget)
        if reply is None:
            self._record(
                client=name, gateway=gw.name, door="kv", kind="get", bucket=KV, key=key,
                start=start, end=time.monotonic(), outcome="fail", result=err,
            )  # fmt: skip
            return False, None
        if got is None:
            self._record_read(name, gw, "kv", key, start, None, None)
        else:
            self._record_read(name, gw, "kv", key, start, got[0], got[1])
        return True, got

    def _record_read(
        self,
        name: str,
        gw: Gateway,
        door: str,
        key: str,
        start: float,
        body: bytes | None,
        version: str | None,
    ) -> None:
        self._record(
            client=name, gateway=gw.name, door="s3" if door == "s3" else "kv", kind="get",
            bucket=KV, key=key, start=start, end=time.monotonic(), outcome="ok",
            digest=None if body is None else digest(body), version=version,
        )  # fmt: skip

    def _record_kv_write(
        self,
        name: str,
        gw: Gateway,
        kind: str,
        key: str,
        value: bytes,
        start: float,
        reply: bytes | None,
        err: str,
        sent: bool,
        expected: str | None,
        count: int | None,
        group: str | None = None,
        version: str | None = None,
    ) -> None:
        if reply is None:
            outcome: Outcome = "unknown" if sent else "fail"
        else:
            outcome = kv_write_outcome(reply)
            if outcome == "ok" and version is None:
                version = reply.split()[1].decode()
        self._record(
            client=name, gateway=gw.name, door="kv", kind="cas" if kind == "cas" else "put",
            bucket=KV, key=key, start=start, end=time.monotonic(), outcome=outcome,
            digest=digest(value), version=version if outcome == "ok" else None,
            expected=expected, count=count, group=group,
            result=err or (reply or b"").decode(errors="replace").strip(),
        )  # fmt: skip

    def _kv_cas(self, name: str, rng: random.Random) -> None:
        """Increment the shared counter over GW-KV: BGET it, CAS n+1 on its version."""
        key = f"{self.prefix}ctr"
        with self._wires() as wires:
            n = 0
            while self._going(n):
                gw = self._gateway(n)
                answered, got = self._kv_get(name, gw, wires, key)
                if not answered:
                    n += 1
                    self._pause(name)
                    continue
                if got is None:
                    count, token, expected = 1, "-", ABSENT
                else:
                    count, token, expected = int(got[0].split()[0]) + 1, got[1], digest(got[0])
                value = f"{count} {name} {n}".encode()
                line = b"CAS %s %s %s\n" % (key.encode(), token.encode(), value)
                start = time.monotonic()
                reply, err, sent = self._kv_call(wires, gw, _ask(line))
                self._record_kv_write(
                    name, gw, "cas", key, value, start, reply, err, sent, expected, count
                )
                n += 1
                self._pause(name, PACE * rng.random())

    def _multiset(self, name: str, rng: random.Random) -> None:
        """MULTISET of the same three keys: all three land or none (one transaction)."""
        keys = [f"{self.prefix}m{i}" for i in range(3)]
        with self._wires() as wires:
            n = 0
            while self._going(n):
                gw = self._gateway(n)
                values = [f"{name}-{n}-{i}-{rng.randbytes(6).hex()}".encode() for i in range(3)]
                body = b"".join(
                    b"%s %s\n" % (k.encode(), v) for k, v in zip(keys, values, strict=True)
                )
                line = b"MULTISET 3\n" + body
                start = time.monotonic()
                reply, err, sent = self._kv_call(wires, gw, _ask(line))
                versions: list[str | None] = [None] * 3
                if reply is not None and reply.startswith(b"OK "):
                    versions = [v.decode() for v in reply.split()[1:]]
                for k, v, ver in zip(keys, values, versions, strict=True):
                    self._record_kv_write(
                        name, gw, "put", k, v, start, reply, err, sent, None, None,
                        group=f"{name}-{n}", version=ver,
                    )  # fmt: skip
                n += 1
                self._pause(name)


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.1)
