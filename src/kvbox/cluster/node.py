"""A blob node (``kvbox blobnode``): content-addressed chunks served over HTTP.

Layer: cluster. Rules:

* The bytes live in one ``LocalDirBlobStore`` under ``--data`` (the same fsync'd,
  content-addressed files as a single-node kvbox, so one home for chunk files): a PUT is
  answered only after the file and its directory entry are fsync'd, and every GET,
  ranged or not, checks the whole chunk against its address first.
* The chunk API (``client.PREFIX`` = ``/v1/chunks``)::

      PUT    /v1/chunks/<id>                      body = the chunk; 201 once fsync'd
      GET    /v1/chunks/<id>[?offset=O&length=L]  the chunk or a range of it
      HEAD   /v1/chunks/<id>                      X-Kvbox-Chunk-Size, or 404
      DELETE /v1/chunks/<id>[?older-than=S]       204 (also when already gone); with
                                                  older-than, 409 if written since
      POST   /v1/chunks/<id>?verify               {"present", "sound", "size"}
      GET    /v1/chunks[?after=<id>&limit=N]      {"chunks": [ids in order]}
      GET    /healthz                             unauthenticated liveness
      GET    /metrics                             unauthenticated, Prometheus text

  Errors are JSON ``{"error": word, "message": text}`` with word ``bad_request``
  (400), ``denied`` (403), ``missing`` (404), ``digest_mismatch`` (422: a PUT's bytes
  do not hash to its id; nothing is stored), ``young`` (409: a conditional delete
  found the chunk written less than S seconds ago), ``damaged`` (500: the stored bytes fail
  their check; nothing is served), ``full`` (507).
* Every request except ``/healthz`` and ``/metrics`` (which tell nothing about any
  chunk's content: counts, bytes, free space) must carry the cluster secret's signature
  (``kvbox.auth.cluster``), once: a replayed request is refused. A chunk id is never
  used as a path until it is 64 lowercase hex digits; a PUT's signed body digest must
  be its id, and its bytes must hash to it.
* The port's connections are governed by whoever calls ``run_node`` (its ``listen``):
  ``kvbox blobnode`` puts them under kvbox's connection governor (header, body and idle
  timeouts, connection caps, counted in /metrics) as ``kvbox serve`` does its ports;
  this package cannot import ``kvbox.server`` (which imports it), so the wiring lives
  in ``kvbox.cli.blobnode``. Without a ``listen``, aiohttp's own runner serves.
* The node registers in PostgreSQL at start and heartbeats every
  ``catalog.HEARTBEAT_INTERVAL`` seconds with its chunk count, bytes and free space.
  A database outage does not stop it serving chunks: beats resume when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kvbox.auth import cluster as auth
from kvbox.cluster.catalog import HEARTBEAT_INTERVAL, Catalog
from kvbox.cluster.client import PREFIX
from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.datadir import lock_data_dir
from kvbox.core.pg import PgUrl
from kvbox.errors import (
    AccessDenied,
    ChunkMissing,
    DataDamaged,
    InvalidArgument,
    KvboxError,
    ListenError,
    StorageFull,
)

log = logging.getLogger("kvbox.blobnode")

#: The file under ``--data`` holding this node's id (made at first start, kept forever:
#: the node's address may change, its identity and the chunks it holds do not).
NODE_ID_FILE: Final = "node-id"
#: Largest PUT body: a chunk is at most 8 MiB (``kvbox.core.store.CHUNK_SIZE``).
MAX_CHUNK: Final = 16 * 1024 * 1024
#: Most ids one list page returns.
MAX_LIST: Final = 10_000

_CHUNK_ID = re.compile(r"[0-9a-f]{64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Serve an application on (host, port) until the returned coroutine function is
#: awaited (it stops listening and closes the connections); ``OSError`` if the port
#: cannot be bound. May add middlewares to the application (it is not frozen yet).
Listen = Callable[[web.Application, str, int], Awaitable[Callable[[], Awaitable[None]]]]


def node_id(data: Path) -> str:
    """This node's id, made and fsync'd on first start (``NODE_ID_FILE``)."""
    path = data / NODE_ID_FILE
    try:
        found = path.read_text().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    made = "bn-" + secrets.token_hex(6)
    tmp = data / (NODE_ID_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(made + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return made


def _error(status: int, word: str, message: str) -> web.Response:
    return web.json_response({"error": word, "message": message}, status=status)


@dataclass(slots=True)
class _Usage:
    """Chunk count and bytes held, for the heartbeat (an estimate between scans)."""

    chunks: int = 0
    bytes: int = 0


@dataclass(slots=True)
class NodeCounters:
    """What the node's /metrics shows (``NodeCollector``)."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    received_bytes: int = 0
    sent_bytes: int = 0
    refused: int = 0
    damaged: int = 0


class NodeCollector(Collector):
    def __init__(self, node: BlobNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        c = self.node.counters
        requests = CounterMetricFamily(
            "kvbox_blobnode_requests",
            "Chunk API requests answered, by method and HTTP status.",
            labels=["method", "status"],
        )
        for (method, status), n in sorted(c.requests.items()):
            requests.add_metric([method, str(status)], n)
        yield requests
        yield CounterMetricFamily(
            "kvbox_blobnode_refused_requests",
            "Requests refused for their signature, time or nonce (a wrong cluster secret, "
            "a skewed clock, a replay): alert when it grows.",
            value=c.refused,
        )
        yield CounterMetricFamily(
            "kvbox_blobnode_damaged_reads",
            "Reads refused because a chunk file no longer hashes to its id: any increase "
            "means a damaged disk (the gateways repair the copy from another node).",
            value=c.damaged,
        )
        yield CounterMetricFamily(
            "kvbox_blobnode_received_bytes", "Chunk bytes received.", value=c.received_bytes
        )
        yield CounterMetricFamily(
            "kvbox_blobnode_sent_bytes", "Chunk bytes sent.", value=c.sent_bytes
        )
        yield GaugeMetricFamily(
            "kvbox_blobnode_chunks", "Chunk files held.", value=self.node.usage.chunks
        )
        yield GaugeMetricFamily(
            "kvbox_blobnode_bytes", "Bytes of chunk files held.", value=self.node.usage.bytes
        )
        yield GaugeMetricFamily(
            "kvbox_blobnode_free_bytes",
            "Free space of the file system holding --data.",
            value=self.node.free_bytes(),
        )


class BlobNode:
    """One node's HTTP API over its store (module docstring)."""

    def __init__(
        self, store: LocalDirBlobStore, secret: bytes, collectors: Sequence[Collector] = ()
    ) -> None:
        self.store = store
        self._secret = secret
        self._guard = auth.ReplayGuard()
        self.usage = _Usage()
        #: One lock per chunk id being written or conditionally deleted, so that a
        #: delete's "older than" check and its unlink see no write land in between.
        self._busy: dict[str, asyncio.Lock] = {}
        self.counters = NodeCounters()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(NodeCollector(self))
        for collector in collectors:  # the listener's (connections, timeouts, refusals)
            self._registry.register(collector)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CHUNK, middlewares=[self._auth])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get(PREFIX, self._list)
        app.router.add_put(PREFIX + "/{id}", self._put)
        app.router.add_get(PREFIX + "/{id}", self._get, allow_head=False)
        app.router.add_head(PREFIX + "/{id}", self._head)
        app.router.add_delete(PREFIX + "/{id}", self._delete)
        app.router.add_post(PREFIX + "/{id}", self._verify)
        return app

    async def scan(self) -> None:
        """Count the chunks held (at start; the heartbeat then keeps a running count)."""

        def count() -> _Usage:
            usage = _Usage()
            for top in self.store._fanout_dirs(self.store.chunks_dir):
                for cid in self.store._chunks_under(top):
                    with contextlib.suppress(FileNotFoundError):
                        usage.bytes += os.stat(self.store.path_of(cid)).st_size
                        usage.chunks += 1
            return usage

        self.usage = await asyncio.to_thread(count)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.store.root).free

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/healthz", "/metrics"):
            return await handler(request)
        resp = await self._signed(request, handler)
        c = self.counters
        c.requests[(request.method, resp.status)] += 1
        if resp.status == 403:
            c.refused += 1
        if request.method == "PUT" and resp.status == 201:
            c.received_bytes += request.content_length or 0
        if request.method == "GET" and resp.status == 200:
            c.sent_bytes += resp.content_length or 0
        return resp

    async def _signed(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        now = time.time()
        try:
            verified = auth.verify(
                self._secret, request.method, request.raw_path, request.headers, now
            )
            self._guard.accept(verified, now)
        except AccessDenied as exc:
            log.warning(
                "refused %s %s from %s: %s", request.method, request.path, request.remote, exc
            )
            return _error(403, "denied", str(exc))
        request["digest"] = verified.body_sha256
        try:
            return await handler(request)
        except ChunkMissing:
            return _error(404, "missing", "no such chunk on this node")
        except DataDamaged as exc:
            log.error("%s", exc)
            self.counters.damaged += 1
            return _error(500, "damaged", str(exc))
        except StorageFull as exc:
            return _error(507, "full", str(exc))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return _error(507, "full", "no space left on this blob node")
            raise

    @staticmethod
    def _chunk_id(request: web.Request) -> str:
        cid = request.match_info["id"]
        if _CHUNK_ID.fullmatch(cid) is None:
            raise web.HTTPBadRequest(
                text=json.dumps(
                    {"error": "bad_request", "message": "a chunk id is 64 lowercase hex digits"}
                ),
                content_type="application/json",
            )
        return cid

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(generate_latest, self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _put(self, request: web.Request) -> web.StreamResponse:
        cid = self._chunk_id(request)
        if request["digest"] != cid:
            return _error(400, "bad_request", "a chunk PUT must sign its id as the body digest")
        existed = await self.store.exists(cid)
        w = self.store.writer()
        try:
            async for piece in request.content.iter_chunked(1 << 20):
                await w.write(piece)
            if w.digest() != cid:
                await w.abort()
                return _error(422, "digest_mismatch", "the bytes do not hash to the chunk id")
            async with self._lock(cid):
                ref = await w.commit()
        except BaseException:
            await w.abort()
            raise
        if not existed:
            self.usage.chunks += 1
            self.usage.bytes += ref.size
        return web.json_response({"size": ref.size}, status=201)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        cid = self._chunk_id(request)
        try:
            offset = int(request.query.get("offset", "0"))
            length = int(request.query.get("length", "-1"))
        except ValueError:
            return _error(400, "bad_request", "offset and length are integers")
        if offset < 0 or length < -1:
            return _error(400, "bad_request", f"bad range: offset {offset}, length {length}")
        data = await self.store.read(cid, offset, length)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _head(self, request: web.Request) -> web.StreamResponse:
        cid = self._chunk_id(request)
        path = self.store.path_of(cid)
        try:
            size = (await asyncio.to_thread(os.stat, path)).st_size
        except FileNotFoundError:
            return web.Response(status=404)
        return web.Response(status=200, headers={"X-Kvbox-Chunk-Size": str(size)})

    @contextlib.asynccontextmanager
    async def _lock(self, cid: str) -> AsyncIterator[None]:
        lock = self._busy.setdefault(cid, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._busy.get(cid) is lock:
                del self._busy[cid]

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        cid = self._chunk_id(request)
        path = self.store.path_of(cid)
        try:
            older = float(request.query["older-than"]) if "older-than" in request.query else None
        except ValueError:
            return _error(400, "bad_request", "older-than is a number of seconds")
        async with self._lock(cid):
            try:
                st = await asyncio.to_thread(os.stat, path)
            except FileNotFoundError:
                return web.Response(status=204)
            if older is not None and time.time() - st.st_mtime < older:
                return _error(409, "young", f"chunk written less than {older:g} s ago: kept")
            await self.store.delete(cid)
        size = st.st_size
        self.usage.chunks = max(0, self.usage.chunks - 1)
        self.usage.bytes = max(0, self.usage.bytes - size)
        return web.Response(status=204)

    async def _verify(self, request: web.Request) -> web.StreamResponse:
        cid = self._chunk_id(request)
        if "verify" not in request.query:
            return _error(400, "bad_request", "POST on a chunk takes ?verify")
        path = self.store.path_of(cid)
        try:
            size = (await asyncio.to_thread(os.stat, path)).st_size
        except FileNotFoundError:
            return web.json_response({"present": False, "sound": False, "size": 0})
        sound = await self.store.verify(cid)
        return web.json_response({"present": True, "sound": sound, "size": size})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        after = request.query.get("after", "")
        try:
            limit = min(MAX_LIST, max(1, int(request.query.get("limit", "1000"))))
        except ValueError:
            return _error(400, "bad_request", "limit is an integer")
        found: list[str] = []
        async for cid in self.store.list_chunks():
            if cid > after:
                found.append(cid)
                if len(found) >= limit:
                    break
        return web.json_response({"chunks": found})


async def heartbeat(node: BlobNode, catalog: Catalog, nid: str, stop: asyncio.Event) -> None:
    """Beat until ``stop``; a failed beat is logged once per outage, not fatal."""
    failing = False
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL)
        if stop.is_set():
            return
        try:
            free = await asyncio.to_thread(node.free_bytes)
            await catalog.heartbeat(nid, node.usage.chunks, node.usage.bytes, free)
        except KvboxError as exc:
            if not failing:
                log.warning("heartbeat failed (still serving chunks): %s", exc)
            failing = True
            continue
        if failing:
            log.warning("heartbeat resumed")
        failing = False


def split_address(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port), or ``InvalidArgument``."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"{flag} {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    data: Path
    listen: str
    advertise: str
    meta: PgUrl
    secret: bytes


async def _aiohttp_listen(
    app: web.Application, host: str, port: int
) -> Callable[[], Awaitable[None]]:
    """``Listen`` with aiohttp's runner alone (no governor: tests of this package)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner.cleanup


async def run_node(
    s: NodeSettings,
    stop: asyncio.Event,
    *,
    listen: Listen = _aiohttp_listen,
    collectors: Sequence[Collector] = (),
) -> None:
    """Serve until ``stop``: lock the data directory, register, listen, heartbeat.
    ``collectors`` join the node's /metrics (``listen``'s connection figures)."""
    host, port = split_address(s.listen, "--listen")
    split_address(s.advertise, "--advertise")
    with lock_data_dir(s.data, create=True):
        store = LocalDirBlobStore(s.data)
        await store.open()
        nid = await asyncio.to_thread(node_id, s.data)
        node = BlobNode(store, s.secret, collectors)
        await node.scan()
        catalog = await Catalog.connect(s.meta, application=f"kvbox-blobnode {nid}", max_size=2)
        try:
            try:
                close = await listen(node.app(), host, port)
            except OSError as exc:
                raise ListenError(f"--listen {s.listen}: {exc.strerror or exc}") from None
            try:
                free = await asyncio.to_thread(node.free_bytes)
                await catalog.register(nid, s.advertise, node.usage.chunks, node.usage.bytes, free)
                print(
                    f"kvbox: blobnode {nid} serving {node.usage.chunks} chunks on {s.listen}, "
                    f"advertised as {s.advertise}, registered in {s.meta.redacted}",
                    flush=True,
                )
                await heartbeat(node, catalog, nid, stop)
            finally:
                await close()
        finally:
            await catalog.close()
