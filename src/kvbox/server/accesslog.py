"""The access log: one line per request, for every front door.

Layer: server. Rules:

* **What a door calls.** HTTP doors (S3, the website, the console) call
  ``AccessLog.request(...)`` once per answered request. The GW-KV doors, whose requests
  cost a few microseconds each, append a raw record ``(Peer, event, reply, t0, t1)``
  through ``AccessLog.gwkv`` (a length check and a ``deque.append``): the event and reply objects
  they already hold, and two ``time.perf_counter`` readings. A run of pipelined SETs that
  shares one reply slot is one record (a list of events, their joined replies).
* **Where the work happens.** Nothing is formatted or written on the event loop. A writer
  thread wakes every ``FLUSH_INTERVAL`` seconds, drains the deque, formats every line
  (plain or JSON, ``--log-format``) and writes them with one call under the logging
  handler's lock, so access lines and other log lines never interleave mid-line.
* **Bounded.** The deque holds at most ``MAX_PENDING`` records: if the output cannot keep
  up (a blocked stdout), further records are dropped rather than the server's memory
  growing; their lines are counted (/metrics ``kvbox_access_log_dropped_lines_total``)
  and the first drop is said once on the ordinary log.
* **Nothing lost at shutdown.** ``close`` stops the writer and writes what is pending.
* **Secrets never appear.** A line holds the principal (user name, "root" or "-"), never
  an access key id, a secret, a signature or a credential-bearing query: HTTP doors pass
  the path without its query string, and ``safe_query`` names only the query parameters
  that are not credentials. A GW-KV ``AUTH`` request is logged as its command word alone.

Plain line (fields separated by one space; a missing one is ``-``)::

    2026-12-06T03:01:02.123Z INFO kvbox.access: gwkv 127.0.0.1:41234 - GET kv/apple
    VALUE 10 12 31 c1f3-17        (one line)

    time, door, remote address, principal, operation, bucket/key (URL-escaped), status
    (GW-KV: the reply word, ``ERR:<CODE>`` for errors; HTTP: the status, ``403:AccessDenied``
    for S3 errors), bytes in, bytes out, duration in microseconds, request id.

GW-KV byte counts are the request and reply as the protocol spells them (a CR before a
newline is not counted); HTTP byte counts are bodies. GW-KV has no request ids on the wire:
its id is the connection's id and the request's number on it, in order of completion.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, itemgetter
from typing import Any, Final
from urllib.parse import quote

from kvbox.proto import gwkv as p

log = logging.getLogger("kvbox.access")

#: Seconds between two drains of the writer thread: lines appear at most this late. Short
#: because a pending GW-KV record holds its replies (a GET's whole value) until drained:
#: at 0.05 s the values held at full speed stay a few megabytes, not fifty.
FLUSH_INTERVAL: Final = 0.05
#: Records held at most; past this new ones are dropped and counted (see the module
#: docstring). A record is one request or one batch of them: about four seconds of
#: pipelined GETs at full speed, so only a sink that stalls ever reaches it.
MAX_PENDING: Final = 65_536
#: A MULTIGET's keys are listed up to this many characters.
_KEYS_SHOWN: Final = 200

#: Query parameters that carry credentials or signatures (SigV4 and SigV2 presigned URLs,
#: POST policies): never written, whatever their case.
_SECRET_PARAMS: Final = frozenset(
    {
        "x-amz-credential",
        "x-amz-signature",
        "x-amz-security-token",
        "awsaccesskeyid",
        "signature",
        "x-amz-algorithm",
        "x-amz-signedheaders",
    }
)

_conn_ids = itertools.count(1)


def safe_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The names of a request's query parameters, without values and without the ones
    that carry credentials (``?uploads``, ``?versionId``, never ``X-Amz-Signature``)."""
    names = [name for name, _ in pairs if name.lower() not in _SECRET_PARAMS]
    return "&".join(names)


def address_of(transport: Any) -> str:
    """``ip:port`` of a connection's client (``[ip]:port`` for IPv6), "-" if unknown."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not peer:
        return "-"
    return join_address(peer[0], peer[1])


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class Peer:
    """One GW-KV client as its lines name it: door, address, principal, connection id.

    ``seq`` is advanced by the writer thread only (the request numbers of the ids).
    A connection that authenticates swaps in a new Peer, so earlier lines keep the
    principal they were served under.
    """

    door: str
    remote: str
    bucket: str
    principal: str = "-"
    conn_id: str = field(default_factory=lambda: f"c{next(_conn_ids):x}")
    seq: int = 0


class AccessLog:
    """The access log of one server (see the module docstring)."""

    def __init__(
        self,
        write: Callable[[str], None],
        fmt: str = "plain",
        *,
        lock: threading.RLock | threading.Lock | None = None,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        self._write = write
        self._lock = lock
        self._json = fmt == "json"
        self._interval = interval
        self._q: deque[tuple[Any, ...]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ms = -1
        self._last_ts = ""
        #: Lines not written because the buffer was full (/metrics
        #: ``kvbox_access_log_dropped_lines_total``); bumped by the event loop only.
        self.dropped = 0
        self._warned = False

    # --- doors ------------------------------------------------------------------------

    def gwkv(self, rec: tuple[Any, ...]) -> None:
        """The GW-KV doors' hot path: ``gwkv((peer, event, reply, t0, t1))``, one record
        per request or per batch (``event`` and ``reply`` lists). A length check and an
        append: everything else waits for the writer thread."""
        q = self._q
        if len(q) < MAX_PENDING:
            q.append(rec)
        else:
            self._drop(len(rec[1]) if type(rec[1]) is list else 1)

    def _drop(self, lines: int) -> None:
        self.dropped += lines
        if not self._warned:  # said once; the count goes on in /metrics
            self._warned = True
            logging.getLogger("kvbox").warning(
                "access log: %d records wait to be written; further lines are dropped "
                "while the log output does not keep up (is stdout read?), counted in "
                "/metrics as kvbox_access_log_dropped_lines_total",
                MAX_PENDING,
            )

    def request(
        self,
        door: str,
        remote: str,
        principal: str | None,
        op: str,
        target: str,
        status: str,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        request_id: str,
    ) -> None:
        """One answered request of an HTTP door. ``target`` is ``bucket/key`` (or a path
        without its query string); ``status`` the HTTP status, ``403:AccessDenied`` style
        for S3 errors. Cheap: one tuple into the deque."""
        if len(self._q) >= MAX_PENDING:
            self._drop(1)
            return
        self._q.append(
            (
                None,
                time.time(),
                door,
                remote or "-",
                principal or "-",
                op or "-",
                target or "-",
                status,
                bytes_in,
                bytes_out,
                seconds,
                request_id or "-",
            )
        )

    # --- the writer thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kvbox-access-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is pending and stop the writer (at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.drain()
            except Exception:  # a formatting bug must not end the access log
                logging.getLogger("kvbox").exception("access log: writing lines failed")

    def drain(self) -> int:
        """Format and write every pending record; how many lines were written."""
        q = self._q
        n = len(q)
        if not n:
            return 0
        offset = time.time() - time.perf_counter()  # GW-KV records carry perf_counter
        lines: list[str] = []
        popleft = q.popleft
        gwkv = self._gwkv_lines
        plain = self._http_line
        for _ in range(n):
            rec = popleft()
            if rec[0] is None:
                lines.append(plain(rec))
            else:
                gwkv(rec, offset, lines)
        text = "".join(lines)
        if self._lock is not None:
            with self._lock:
                self._write(text)
        else:
            self._write(text)
        return len(lines)

    # --- formatting -------------------------------------------------------------------

    def _ts(self, wall: float) -> str:
        ms = int(wall * 1000)
        if ms != self._last_ms:
            secs, frac = divmod(ms, 1000)
            self._last_ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:03d}Z"
            self._last_ms = ms
        return self._last_ts

    def _line(
        self,
        wall: float,
        door: str,
        remote: str,
        principal: str,
        op: str,
        target: str,
        status: str,
        bytes_in: int | None,
        bytes_out: int,
        micros: int,
        request_id: str,
    ) -> str:
        if self._json:
            return (
                json.dumps(
                    {
                        "ts": self._ts(wall),
                        "level": "info",
                        "logger": "kvbox.access",
                        "door": door,
                        "remote": remote,
                        "principal": principal,
                        "op": op,
                        "target": target,
                        "status": status,
                        "bytes_in": bytes_in,
                        "bytes_out": bytes_out,
                        "duration_us": micros,
                        "request_id": request_id,
                    }
                )
                + "\n"
            )
        return (
            f"{self._ts(wall)} INFO kvbox.access: {door} {remote} {principal} {op} "
            f"{_escape(target)} {status} {'-' if bytes_in is None else bytes_in} {bytes_out} "
            f"{micros} {request_id}\n"
        )

    def _http_line(self, rec: tuple[Any, ...]) -> str:
        _, wall, door, remote, principal, op, target, status, bin_, bout, secs, rid = rec
        return self._line(
            wall, door, remote, principal, op, target, status, bin_, bout, int(secs * 1e6), rid
        )

    def _gwkv_lines(self, rec: tuple[Any, ...], offset: float, out: list[str]) -> None:
        """The lines of one GW-KV record. Three shapes: one request and its reply; a run
        of SETs (a list of events) and their joined one-line replies; a batch of requests
        answered on the spot (two lists). Plain GETs and SETs take a fast path: one
        f-string each, no calls -- at 250,000 GETs a second every call here counts."""
        peer, ev, reply, t0, t1 = rec
        micros = int((t1 - t0) * 1e6)
        wall = t1 + offset
        if type(ev) is not list:
            out.append(self._gwkv_line(peer, ev, reply, wall, micros))
            return
        replies = reply if type(reply) is list else reply.split(b"\n")[: len(ev)]
        ts = self._ts(wall)
        if self._json:
            head = (
                f'{{"ts":"{ts}","level":"info","logger":"kvbox.access","door":"{peer.door}",'
                f'"remote":"{peer.remote}","principal":"{peer.principal}","op":"'
            )
            tail = f'"duration_us":{micros},"request_id":"{peer.conn_id}-'
            sep = '","target":"'
        else:
            head = f"{ts} INFO kvbox.access: {peer.door} {peer.remote} {peer.principal} "
            tail = f" {micros} {peer.conn_id}-"
            sep = " "
        bucket = peer.bucket
        seq = peer.seq
        n = len(ev)
        kinds = set(map(type, ev))
        if (
            len(kinds) == 1
            and len(replies) == n
            and (p.Get in kinds or p.Set in kinds)
            and b"" not in replies
            and set(map(_first, replies)) <= _WORD_OF.keys()
        ):
            # All GETs or all SETs, none refused: sizes by C-level ``map``, then one
            # f-string per line in a comprehension: measured 0.52 against 0.86 us a
            # line for ``template % row`` (the format string is parsed for every ``%``).
            if p.Get in kinds:
                prefix = f"{head}GET{sep}{bucket}/"
                ins: Iterable[int] = map(add, map(len, map(_first, ev)), repeat(5))
                outs: Iterable[int] = map(len, replies)
            else:
                prefix = f"{head}SET{sep}{bucket}/"
                ins = map(add, map(len, map(_first, ev)), map(len, map(_second, ev)))
                ins = map(add, ins, repeat(6))
                outs = map(len, replies)
                if type(reply) is not list:  # a run's replies lost their "\n" to split
                    outs = map(add, outs, repeat(1))
            word_of = _WORD_OF
            seqs = range(seq + 1, seq + n + 1)
            if self._json:
                rows = [
                    f'{prefix}{e[0]}","status":"{word_of[r[0]]}","bytes_in":{i},'
                    f'"bytes_out":{o},{tail}{q}"}}\n'
                    for e, r, i, o, q in zip(ev, replies, ins, outs, seqs, strict=True)
                ]
            else:
                rows = [
                    f"{prefix}{e[0]} {word_of[r[0]]} {i} {o}{tail}{q}\n"
                    for e, r, i, o, q in zip(ev, replies, ins, outs, seqs, strict=True)
                ]
            out.append("".join(rows))
            peer.seq = seq + n
            return
        get, set_ = p.Get, p.Set
        for one, r in zip(ev, replies, strict=False):
            t = type(one)
            word = _FIRST.get(r[0]) if r else None
            if word is None or (t is not get and t is not set_):
                peer.seq = seq
                line = self._gwkv_line(
                    peer, one, r if type(reply) is list else r + b"\n", wall, micros
                )
                seq = peer.seq
                out.append(line)
                continue
            seq += 1
            key = one[0]
            if t is get:
                sizes = (5 + len(key), len(r))
                op = "GET"
            else:
                sizes = (6 + len(key) + len(one[1]), len(r) + 1)  # a run's lines lost "\n"
                op = "SET"
            if self._json:
                out.append(
                    f'{head}{op}","target":"{bucket}/{key}","status":"{word}",'
                    f'"bytes_in":{sizes[0]},"bytes_out":{sizes[1]},{tail}{seq}"}}\n'
                )
            else:
                out.append(f"{head}{op} {bucket}/{key} {word} {sizes[0]} {sizes[1]}{tail}{seq}\n")
        peer.seq = seq

    def _gwkv_line(self, peer: Peer, ev: Any, reply: Any, wall: float, micros: int) -> str:
        peer.seq += 1
        t = type(ev)
        op = _OPS.get(t) or t.__name__.upper()
        target = _target(peer.bucket, ev)
        if type(reply) is tuple:  # a streamed value: (header, body)
            header = reply[0]
            status, bytes_out = _status(header), len(header) + _streamed_length(header) + 1
        elif reply is None:
            status, bytes_out = "-", 0
        else:
            status, bytes_out = _status(reply), len(reply)
        if t is p.BadRequest:
            status = f"ERR:{ev.code}"
        return self._line(
            wall,
            peer.door,
            peer.remote,
            peer.principal,
            op,
            target,
            status,
            _bytes_in(ev),
            bytes_out,
            micros,
            f"{peer.conn_id}-{peer.seq}",
        )


def _escape(target: str) -> str:
    """A target as one plain-format field: spaces, controls and non-ASCII URL-escaped."""
    if target.isascii() and target.isprintable() and " " not in target and "%" not in target:
        return target
    return quote(target, safe="/!$&'()*+,;=:@-._~")


#: GW-KV operation names by event type (the rest: the type's name in capitals).
_OPS: Final[dict[type, str]] = {
    p.Set: "SET",
    p.Get: "GET",
    p.MultiGet: "MULTIGET",
    p.MultiSet: "MULTISET",
    p.BGet: "BGET",
    p.GetVersion: "GETV",
    p.GetAt: "GETAT",
    p.BadRequest: "-",
}
#: Requests whose arguments are never shown (they may carry credentials).
_NO_TARGET: Final = frozenset({"Auth", "Hello"})
#: The status word of a reply by its first byte, where the first byte decides it (an
#: ERR reply also needs its code: ``_status``).
_FIRST: Final[dict[int, str]] = {ord("O"): "OK", ord("V"): "VALUE", ord("N"): "NOTFOUND"}
_WORD_OF: Final[dict[int, str]] = {**_FIRST, ord("C"): "CONFLICT"}
_first = itemgetter(0)
_second = itemgetter(1)
#: Replies whose status word is the whole reply.
_WORDS: Final[dict[bytes, str]] = {b"NOTFOUND\n": "NOTFOUND"}


def _status(reply: bytes) -> str:
    word = _WORDS.get(reply)
    if word is not None:
        return word
    end = reply.find(b"\n", 0, 80)
    head = reply[: end if end >= 0 else 80]
    first, _, rest = head.partition(b" ")
    if first == b"ERR":
        code = rest.partition(b" ")[0]
        return "ERR:" + code.decode("ascii", "replace")
    return first.decode("ascii", "replace") or "-"


def _streamed_length(header: bytes) -> int:
    parts = header.split(b" ")
    try:
        return int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0


def _target(bucket: str, ev: Any) -> str:
    if type(ev).__name__ in _NO_TARGET:
        return "-"
    key = getattr(ev, "key", None)
    if isinstance(key, str):
        return f"{bucket}/{key}"
    keys = getattr(ev, "keys", None)
    if keys is None and isinstance(ev, p.MultiSet):
        keys = [k for k, _ in ev.pairs]
    if not keys:
        return "-"
    shown = ",".join(keys)
    if len(shown) > _KEYS_SHOWN:
        shown = f"{shown[:_KEYS_SHOWN]}...({len(keys)} keys)"
    return f"{bucket}/{shown}"


def _bytes_in(ev: Any) -> int | None:
    """The request's size as the protocol spells it (see the module docstring); None
    for a refused request, whose size the parser does not keep."""
    t = type(ev)
    if t is p.BadRequest:
        return None
    if t is p.Set:
        return 6 + len(ev.key) + len(ev.value)
    if t is p.Get:
        return 5 + len(ev.key)
    if t is p.BSet:
        length: int = ev.length
        return 7 + len(ev.key) + len(str(length)) + length + 1
    if t is p.MultiGet:
        return 9 + sum(len(k) + 1 for k in ev.keys)
    if t is p.MultiSet:
        return 9 + sum(len(k) + len(v) + 2 for k, v in ev.pairs)
    size = len(_OPS.get(t) or t.__name__) + 1
    if type(ev).__name__ in _NO_TARGET:
        return size
    for name in ("key", "expected", "version", "value"):
        part = getattr(ev, name, None)
        if isinstance(part, str | bytes):
            size += len(part) + 1
    return size
