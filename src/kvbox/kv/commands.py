"""The GW-KV door: one table of commands, each parsed event to a reply.

Layer: kv (async, over ``kvbox.core``). Rules:

* ``COMMANDS`` is the one table: per command its GW-KV words, the parser event
  (``kvbox.proto.gwkv``) they become, its ordering kind (``Kind``), its reply cost and
  its handlers. A request event without a row, a row without an event, or a parser word
  no row claims is an error when this module is imported, never a silent default. To
  add a command: the parser's word and event in ``proto/gwkv/``, the operation in
  ``kv/ops.py`` if it is new, then one row here.
* Handlers turn an event's fields into a call of ``kvbox.kv.ops.KvOps`` (plain
  arguments, plain results; a RESP door will share it) and render the result as
  GW-KV reply bytes. A ``quick`` handler answers without waiting or returns None (a
  cached GET, PING, a refused request): the server calls it inside ``data_received``
  with no task and no thread hop, which is the hot path. ``run`` is the full handler.
* No sockets and no transports: ``kvbox.server.gwkv`` (TCP) and ``kvbox.server.udp``
  feed events here and write what comes back.
"""

from __future__ import annotations

import asyncio
import enum
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from kvbox.core.model import ObjectVersion
from kvbox.core.store import MISS, Batch, Store
from kvbox.errors import ConditionFailed, KvboxError, gwkv_code
from kvbox.kv.ops import KvOps, Value
from kvbox.metrics import ServerCounters
from kvbox.proto import gwkv as p

#: A reply is bytes, or a header plus a stream of body bytes (large BGET values).
Reply = bytes | tuple[bytes, AsyncIterator[bytes]]


class Kind(enum.Enum):
    """How a request orders against its neighbours on one connection (the server's
    ``GwkvConnection._close_group``): reads in a row may run together, plain SETs in a
    row share a commit, and nothing crosses a write."""

    READ = "read"
    SETS = "sets"
    WRITE = "write"


QuickHandler = Callable[["KvCommands", Any], bytes | None]
Handler = Callable[["KvCommands", Any], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Command:
    """One row of ``COMMANDS``.

    ``cost`` is what the reply may weigh in 4 KiB units, against the connection's
    ``MAX_COST`` (``per_key``: that much per key of the request instead). ``quick``
    answers without waiting or returns None; ``run`` is the full handler. ``action`` is
    the S3 permission the request needs on each key it names (on the bucket for
    ``s3:ListBucket*``) when ``--kv-auth`` puts GW-KV under the bucket's access decision
    (docs/protocol.md §5); ``ROOT_ONLY``: only root may; None: anyone may.
    """

    words: tuple[bytes, ...]
    event: type
    kind: Kind
    cost: int
    #: None: ``quick`` always answers (PING, QUIT, a refused request).
    run: Handler | None
    quick: QuickHandler | None = None
    per_key: bool = False
    action: str | None = None


#: ``Command.action`` of a request no S3 permission covers (INFO: the server's figures).
ROOT_ONLY: Final = "kvbox:Root"
#: Actions decided on the bucket rather than on a key.
BUCKET_ACTIONS: Final = frozenset({"s3:ListBucket", "s3:ListBucketVersions"})


def _is_text(v: ObjectVersion) -> bool:
    """Whether GET may answer the value as text (docs/protocol.md §2: ASCII without
    NUL, LF or CR). ``isascii`` and a ``memchr`` per byte value take about 0.1 µs on
    1 KB; a regular expression over the same bytes took 2 µs, a third of a cached GET."""
    data = v.inline
    return (
        data is not None
        and len(data) <= p.MAX_TEXT_VALUE
        and data.isascii()
        and 0 not in data
        and 10 not in data
        and 13 not in data
    )


_NOTTEXT: Final = p.err("NOTTEXT", "value is binary or larger than 1024 bytes; use BGET")
_AUTH_NEEDS_TCP: Final = p.err("ARGS", "AUTH holds for a connection: use TCP")


# --- rendering ------------------------------------------------------------------------


def _text(v: ObjectVersion | None) -> bytes:
    if v is None or v.is_delete_marker:
        return p.notfound()
    if not _is_text(v):
        return _NOTTEXT
    assert v.inline is not None
    return p.value_text(v.inline)


def _version_id(v: ObjectVersion | None) -> bytes:
    if v is None or v.is_delete_marker:
        return p.notfound()
    return p.ok_version(v.version_id)


def _binary(found: Value | ObjectVersion | None) -> Reply:
    """A length-prefixed value: whole when inline, else a header and the streamed body."""
    if not isinstance(found, Value):
        return p.notfound()  # None or a delete marker
    v = found.version
    if found.inline is not None:
        return p.value_binary(found.inline, v.version_id)
    assert found.stream is not None
    return p.value_binary_header(v.size, v.version_id), _with_end(found.stream)


async def _with_end(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for piece in body:
        yield piece
    yield p.BODY_END


# --- handlers, in the order of docs/protocol.md §4 ------------------------------------


async def _set(c: KvCommands, ev: p.Set) -> Reply:
    return p.ok_version(await c.ops.set(ev.key, ev.value))


def _get_quick(c: KvCommands, ev: p.Get) -> bytes | None:
    v = c.peek(c.bucket, ev.key)
    return None if v is MISS else _text(v)


async def _get(c: KvCommands, ev: p.Get) -> Reply:
    return _text(await c.ops.get(ev.key))


async def _stats(c: KvCommands, ev: p.Stats) -> Reply:
    return p.ok(str(await c.ops.count()))


async def _delete(c: KvCommands, ev: p.Delete) -> Reply:
    return p.ok() if await c.ops.delete(ev.key) else p.notfound()


async def _cas(c: KvCommands, ev: p.Cas) -> Reply:
    return await _set_if(c, ev.key, ev.expected, ev.value)


async def _set_if(c: KvCommands, key: str, expected: str | None, value: bytes) -> bytes:
    try:
        return p.ok_version(await c.ops.set_if(key, expected, value))
    except ConditionFailed as exc:
        return p.conflict(exc.current)


async def _multiset(c: KvCommands, ev: p.MultiSet) -> Reply:
    return p.ok(*await c.ops.set_many(ev.pairs))


async def _multiget(c: KvCommands, ev: p.MultiGet) -> Reply:
    return p.multi_get([_text(v) for v in await c.ops.get_many(ev.keys)])


async def _bset(c: KvCommands, ev: p.BSet) -> Reply:
    assert ev.value is not None, "a streamed BSET goes through execute_stream"
    if ev.conditional:
        return await _set_if(c, ev.key, ev.expected, ev.value)
    return p.ok_version(await c.ops.set(ev.key, ev.value))


def _bget_quick(c: KvCommands, ev: p.BGet) -> bytes | None:
    v = c.peek(c.bucket, ev.key)
    if v is MISS or (v is not None and v.inline is None):
        return None  # unknown, or its bytes are in chunk files
    if v is None or v.is_delete_marker:
        return p.notfound()
    assert v.inline is not None
    return p.value_binary(v.inline, v.version_id)


async def _bget(c: KvCommands, ev: p.BGet) -> Reply:
    return _binary(await c.ops.read_newest(ev.key))


def _version_quick(c: KvCommands, ev: p.Version) -> bytes | None:
    v = c.peek(c.bucket, ev.key)
    return None if v is MISS else _version_id(v)


async def _version(c: KvCommands, ev: p.Version) -> Reply:
    return _version_id(await c.ops.get(ev.key))


async def _versions(c: KvCommands, ev: p.Versions) -> Reply:
    return p.versions_reply(
        (v.version_id, v.size, v.mtime_ns // 1_000_000, v.is_delete_marker)
        for v in await c.ops.versions(ev.key)
    )


async def _getv(c: KvCommands, ev: p.GetVersion) -> Reply:
    """A version by id (text, or ``binary``). A delete marker's id, or an id the key
    never had (or no longer has), is NOTFOUND."""
    if ev.binary:
        return _binary(await c.ops.read_version(ev.key, ev.version))
    return _text(await c.ops.version(ev.key, ev.version))


async def _getat(c: KvCommands, ev: p.GetAt) -> Reply:
    """The version that was the newest at ``ev.at_ns``. None or a delete marker then is
    NOTFOUND: the key had no value at that instant."""
    if ev.binary:
        return _binary(await c.ops.read_at(ev.key, ev.at_ns))
    return _text(await c.ops.at(ev.key, ev.at_ns))


def _ping(c: KvCommands, ev: p.Ping) -> bytes:
    return p.PONG


async def _info(c: KvCommands, ev: p.Info) -> Reply:
    return p.info(await c.ops.info())


def _quit(c: KvCommands, ev: p.Quit) -> bytes:
    return p.BYE


async def _auth(c: KvCommands, ev: p.Auth) -> Reply:
    """AUTH belongs to a connection (``server/gwkv.py`` answers it there); anywhere else
    -- a UDP datagram -- it cannot hold."""
    return _AUTH_NEEDS_TCP


def _refused(c: KvCommands, ev: p.BadRequest) -> bytes:
    c.counters.errors[ev.code] += 1
    return p.err(ev.code, ev.message)


# --- the table ------------------------------------------------------------------------

_READ, _SETS, _WRITE = Kind.READ, Kind.SETS, Kind.WRITE
_GET, _GETV, _PUT, _DEL = "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject"
_LIST, _LISTV = "s3:ListBucket", "s3:ListBucketVersions"
_C, _ROOT = Command, ROOT_ONLY

# Costs: 1 unit is a reply of up to about 4 KiB. A BGET (and a BGETV or BGETAT, or their
# text forms, which share the event type) may carry a 64 KiB inline value (16 units); a
# VERSIONS reply lists up to 1,000 versions (64); a MULTIGET costs one per key.
# fmt: off
COMMANDS: Final[tuple[Command, ...]] = (
    # words, event, ordering kind, reply cost, handler, quick handler, per key, S3 action
    _C((b"SET",),             p.Set,        _SETS,  1,  _set,      None,           False, _PUT),
    _C((b"GET",),             p.Get,        _READ,  1,  _get,      _get_quick,     False, _GET),
    _C((b"STATS",),           p.Stats,      _READ,  1,  _stats,    None,           False, _LIST),
    _C((b"DELETE",),          p.Delete,     _WRITE, 1,  _delete,   None,           False, _DEL),
    _C((b"CAS",),             p.Cas,        _WRITE, 1,  _cas,      None,           False, _PUT),
    _C((b"MULTISET",),        p.MultiSet,   _WRITE, 1,  _multiset, None,           False, _PUT),
    _C((b"MULTIGET",),        p.MultiGet,   _READ,  1,  _multiget, None,           True,  _GET),
    _C((b"BSET", b"BCAS"),    p.BSet,       _WRITE, 1,  _bset,     None,           False, _PUT),
    _C((b"BGET",),            p.BGet,       _READ,  16, _bget,     _bget_quick,    False, _GET),
    _C((b"VERSION",),         p.Version,    _READ,  1,  _version,  _version_quick, False, _GET),
    _C((b"VERSIONS",),        p.Versions,   _READ,  64, _versions, None,           False, _LISTV),
    _C((b"GETV", b"BGETV"),   p.GetVersion, _READ,  16, _getv,     None,           False, _GETV),
    _C((b"GETAT", b"BGETAT"), p.GetAt,      _READ,  16, _getat,    None,           False, _GETV),
    _C((b"PING",),            p.Ping,       _READ,  1,  None,      _ping,          False, None),
    _C((b"INFO",),            p.Info,       _READ,  1,  _info,     None,           False, _ROOT),
    _C((b"QUIT",),            p.Quit,       _READ,  1,  None,      _quit,          False, None),
    # A barrier: the requests after it run as the principal it names.
    _C((b"AUTH",),            p.Auth,       _WRITE, 1,  _auth,     None,           False, None),
    # Not a command: what the parser answers for a request it refused.
    _C((),                    p.BadRequest, _READ,  1,  None,      _refused,       False, None),
)
# fmt: on

#: Events that carry a streamed BSET's payload: the connection hands them to the BSET's
#: body (``KvCommands.execute_stream``), they are not requests of their own.
PAYLOAD_EVENTS: Final = frozenset({p.BodyChunk, p.BodyEnd})


def _by_event(rows: Sequence[Command]) -> Mapping[type, Command]:
    """The table by event type, checked against the parser (see the module docstring)."""
    by_event: dict[type, Command] = {}
    for row in rows:
        if row.event in by_event:
            raise ValueError(f"two rows for {row.event.__name__}")
        if row.run is None and row.quick is None:
            raise ValueError(f"{row.event.__name__} has no handler")
        by_event[row.event] = row
    events = set(typing.get_args(p.RequestEvent))
    if missing := events - PAYLOAD_EVENTS - set(by_event):
        raise ValueError(f"request events without a row: {sorted(e.__name__ for e in missing)}")
    if unknown := set(by_event) - events:
        raise ValueError(f"rows for no request event: {sorted(e.__name__ for e in unknown)}")
    words = [w for row in rows for w in row.words]
    if len(words) != len(set(words)) or set(words) != p.COMMAND_WORDS:
        raise ValueError(f"rows' words {sorted(words)} != the parser's {sorted(p.COMMAND_WORDS)}")
    return MappingProxyType(by_event)


#: ``COMMANDS`` by event type: what the server looks up per request.
BY_EVENT: Final = _by_event(COMMANDS)


class KvCommands:
    """The GW-KV door over one bucket: events in, reply bytes out (``COMMANDS``)."""

    def __init__(self, store: Store, bucket: str, counters: ServerCounters | None = None) -> None:
        self.store = store
        self.bucket = bucket
        self.counters = counters or ServerCounters()
        self.ops = KvOps(store, bucket, self.counters)
        #: ``store.peek``, bound once: quick handlers call it per request.
        self.peek = store.peek

    # --- the hot path -----------------------------------------------------------------

    def immediate(self, ev: p.RequestEvent) -> bytes | None:
        """The reply if it needs no waiting, else None (then call ``execute``)."""
        quick = BY_EVENT[type(ev)].quick
        return None if quick is None else quick(self, ev)

    # --- everything else --------------------------------------------------------------

    async def execute(self, ev: p.RequestEvent) -> Reply:
        t0 = time.perf_counter()
        try:
            row = BY_EVENT[type(ev)]
            if row.quick is not None:
                reply = row.quick(self, ev)
                if reply is not None:
                    return reply
            assert row.run is not None, f"{row.words}: a quick-only command did not answer"
            return await row.run(self, ev)
        except KvboxError as exc:
            return self.error(exc)
        finally:
            self.counters.latency.observe(time.perf_counter() - t0)

    def error(self, exc: KvboxError) -> bytes:
        """``ERR <code> <message>`` for ``exc`` (``kvbox.errors.WIRE``), counted."""
        code = gwkv_code(exc)
        self.counters.errors[code] += 1
        return p.err(code, str(exc) or type(exc).__name__)

    async def execute_stream(self, ev: p.BSet, body: AsyncIterator[bytes]) -> Reply:
        """A large BSET/BCAS whose payload arrives as ``body``."""
        try:
            version = await self.ops.set_stream(
                ev.key, body, conditional=ev.conditional, expected=ev.expected
            )
        except ConditionFailed as exc:
            return p.conflict(exc.current)
        except KvboxError as exc:
            return self.error(exc)
        return p.ok_version(version)

    def set_batch(
        self,
        events: Sequence[p.Set],
        on_replies: Callable[[bytes, BaseException | None], None],
        *,
        previous: Batch | None = None,
        after: asyncio.Future[Any] | None = None,
    ) -> Batch:
        """Plain SETs from one read, handed over together (one fsync for all): once they
        are durable, ``on_replies`` gets their joined replies, and the failure to log
        when the whole batch failed for a reason that is no ``KvboxError``. ``previous``
        and ``after`` as in ``KvOps.set_batch``."""
        started = time.perf_counter()
        batch = self.ops.set_batch(events, previous=previous, after=after)  # Sets are pairs
        n = len(events)

        def done(results: asyncio.Future[list[str | KvboxError]]) -> None:
            self.counters.latency.observe(time.perf_counter() - started, n)
            if results.cancelled():
                on_replies(p.err("INTERNAL", "cancelled") * n, None)
                return
            exc = results.exception()
            if isinstance(exc, KvboxError):
                on_replies(self.error(exc) * n, None)
            elif exc is not None:
                on_replies(p.err("STORAGE", "write failed") * n, exc)
            else:
                ok = p.ok_version
                replies = [ok(r) if isinstance(r, str) else self.error(r) for r in results.result()]
                on_replies(b"".join(replies), None)

        batch.done.add_done_callback(done)
        return batch


__all__ = [
    "BY_EVENT",
    "COMMANDS",
    "PAYLOAD_EVENTS",
    "Batch",
    "Command",
    "Kind",
    "KvCommands",
    "Reply",
]
