"""Composition root: Settings -> stores -> service -> front doors -> running server.

Layer: server. Rules: the only place that knows every concrete class; nothing else creates
stores, loops or listeners. Shutdown order is the reverse of start-up: stop accepting,
let requests in flight finish (within ``--shutdown-grace``), then close the stores so the
last group commit is flushed before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from typing import TYPE_CHECKING

import aiohttp.web_response
from aiohttp import web
from prometheus_client.registry import Collector

from kvbox.cluster.repair import Repairer
from kvbox.config import SERVER, Settings
from kvbox.console.door import ConsoleDoor
from kvbox.console.settings import ConsoleSettings
from kvbox.core.blob import BlobStore
from kvbox.core.journal import JOURNAL_DIR
from kvbox.core.leftovers import LeftoverSweeper
from kvbox.core.lifecycle.worker import LifecycleWorker
from kvbox.core.meta import MetaStore
from kvbox.core.model import ObjectVersion, Versioning
from kvbox.core.scrub import Scrubber
from kvbox.core.space import MinFree, Space
from kvbox.core.store import Store
from kvbox.credentials import CREDENTIALS_FILE, Credentials, load_root_credentials
from kvbox.errors import InvalidArgument, KvboxError
from kvbox.kv.commands import KvCommands
from kvbox.metrics import ServerCounters
from kvbox.s3door.access import AccessControl
from kvbox.s3door.frontend import S3Frontend
from kvbox.s3door.handlers.common import Context
from kvbox.server.accesslog import AccessLog
from kvbox.server.budget import WAIT_MAX, MemoryBudget, return_big_blocks
from kvbox.server.governor import Door, Governor, Limits, clamp_connections, fd_capacity
from kvbox.server.gwkv import GwkvServer
from kvbox.server.http import RefusalLogger, build_app, build_console_app, s3_answer
from kvbox.server.httpdoor import HttpDoor, Listener, aiohttp_limits, plain_answer
from kvbox.server.kvauth import KvAuth, Mode
from kvbox.server.lifecycle import LifecycleCollector
from kvbox.server.listeners import Listeners, bind_all
from kvbox.server.logs import configure_logging, open_access_log
from kvbox.server.storage import StorageCollector
from kvbox.server.udp import GwkvDatagram
from kvbox.server.web import Visitor, build_web_app, web_answer

if TYPE_CHECKING:  # imported where used: a single-node server never loads kvbox.cluster
    from kvbox.cluster.repair import Repairer

log = logging.getLogger("kvbox")


def announce(line: str) -> None:
    """Start-up facts go to stdout unformatted: people and tests read them."""
    print(f"kvbox: {line}", flush=True)


def build_stores(s: Settings) -> tuple[MetaStore, BlobStore, contextlib.ExitStack]:
    stack = contextlib.ExitStack()
    if s.blobs == "cluster" and (s.meta is None or s.max_memory is not None):
        raise InvalidArgument(
            "--blobs cluster needs --meta postgresql://... (the cluster's blob nodes and "
            "chunks are recorded there) and no --max-memory"
        )
    if s.max_memory is not None:
        from kvbox.core.blob.memory import MemoryBlobStore
        from kvbox.core.meta.memory import MemoryMetaStore

        return MemoryMetaStore(), MemoryBlobStore(), stack
    from kvbox.core.blob.localdir import LocalDirBlobStore
    from kvbox.core.datadir import lock_data_dir

    stack.enter_context(lock_data_dir(s.data, create=True))
    if s.meta is not None:
        from kvbox.core.meta.postgres import PostgresMetaStore

        return PostgresMetaStore(s.meta, migrate=s.migrate), _blob_store(s), stack
    from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore

    meta = SqliteMetaStore(s.data / META_FILE, synchronous=s.sync.upper())
    return meta, LocalDirBlobStore(s.data), stack


def _blob_store(s: Settings) -> BlobStore:
    """The chunks' home beside PostgreSQL metadata: the data directory, or blob nodes."""
    from kvbox.core.blob.localdir import LocalDirBlobStore

    if s.blobs != "cluster":
        return LocalDirBlobStore(s.data)
    from kvbox.auth.cluster import load_secret
    from kvbox.cluster.store import ClusterBlobStore
    from kvbox.core.pg import PgUrl

    assert s.meta is not None
    if s.cluster_secret_file is None:
        raise InvalidArgument("--blobs cluster needs --cluster-secret-file FILE")
    try:
        raw = s.cluster_secret_file.read_bytes()
    except OSError as exc:
        raise InvalidArgument(
            f"--cluster-secret-file {s.cluster_secret_file}: {exc.strerror or exc}"
        ) from None
    return ClusterBlobStore(
        PgUrl.parse(s.meta),
        load_secret(raw, str(s.cluster_secret_file)),
        replicas=s.replicas,
        write_quorum=s.write_quorum,
        gc_delay=s.cluster_gc_delay,
    )


def _shared_meta(meta: MetaStore) -> bool:
    """Whether other gateways write the same metadata (PostgreSQL): then nothing this
    process caches about objects may outlive a request, and bucket settings follow the
    others' changes (``Store.refresh_buckets``)."""
    from kvbox.core.meta.postgres import PostgresMetaStore

    return isinstance(meta, PostgresMetaStore)


def _meta_unreachable(meta: MetaStore) -> str | None:
    """Why the shared metadata database cannot be reached now, or None (also for the
    data directory's SQLite, which is there while the process is)."""
    from kvbox.core.meta.postgres import PostgresMetaStore

    return meta.unreachable if isinstance(meta, PostgresMetaStore) else None


async def run_server(s: Settings, stop: asyncio.Event, access_log: AccessLog | None = None) -> None:
    # Ports first: a start that cannot listen ends here, before it touches the data
    # directory or generates (and prints) root keys it could never serve with.
    console_port = s.console_port if s.console else 0
    listeners = bind_all(
        s.host, s.kv_port, s.http_port, s.web_port, console_port, kv_host=s.kv_host
    )
    try:
        tls = _tls_context(s)
        meta, blobs, stack = build_stores(s)
        with stack:
            # With metadata shared by several gateways, a read on any of them must see
            # a write the moment another acknowledged it: no read cache of versions, and
            # no journal (a GW-KV SET is acknowledged after its PostgreSQL COMMIT, the
            # group commit doing what the journal's fsync does on one node).
            shared = _shared_meta(meta)
            cache = s.max_memory * 2 if s.max_memory is not None else s.cache_size
            # Cache mode keeps nothing on disk: no reserve to watch.
            space = None if s.max_memory is not None else Space(s.data, MinFree.parse(s.min_free))
            store = Store(
                meta,
                blobs,
                cache_bytes=0 if shared else cache,
                max_memory=s.max_memory,
                journal_dir=None if s.max_memory is not None or shared else s.data / JOURNAL_DIR,
                space=space,
            )
            await store.open()
            if shared:
                from kvbox.core.meta.postgres import PostgresMetaStore

                assert isinstance(meta, PostgresMetaStore)
                announce(f"metadata in {meta.url.redacted}")
                meta.listen(store.refresh_buckets)
            sweeper = _leftover_sweeper(s, store)
            repairer = _repairer(s, store)
            try:
                await _serve_store(
                    s, store, stop, listeners, tls, access_log, _cluster_collectors(store, repairer)
                )
            finally:
                if repairer is not None:
                    await repairer.stop()
                if sweeper is not None:
                    await sweeper.stop()
                await store.close()
    finally:
        listeners.close()


def _repairer(s: Settings, store: Store) -> Repairer | None:
    """The cluster's background worker, on every gateway (one works at a time)."""
    from kvbox.cluster.repair import Repairer
    from kvbox.cluster.store import ClusterBlobStore

    if not isinstance(store.blobs, ClusterBlobStore):
        return None
    b = store.blobs
    quorum = "all" if b.write_quorum == b.replicas else str(b.write_quorum)
    announce(f"chunks on blob nodes: {b.replicas} replicas, write quorum {quorum}")
    repairer = Repairer(b, interval=s.repair_interval, recount_interval=s.cluster_recount_interval)
    repairer.start()
    return repairer


def _cluster_collectors(store: Store, repairer: Repairer | None) -> list[Collector]:
    from kvbox.cluster.store import ClusterBlobStore
    from kvbox.server.cluster import ClusterCollector

    if not isinstance(store.blobs, ClusterBlobStore):
        return []
    return [ClusterCollector(store.blobs, repairer)]


def _leftover_sweeper(s: Settings, store: Store) -> LeftoverSweeper | None:
    """The background removal of orphan chunks, for a data directory (cache mode keeps
    nothing a crash could leave)."""
    from kvbox.core.blob.localdir import LocalDirBlobStore

    if not isinstance(store.blobs, LocalDirBlobStore) or s.leftover_delay <= 0:
        return None
    sweeper = LeftoverSweeper(store, store.blobs, s.leftover_delay)
    sweeper.start()
    return sweeper


def _announce_credentials(s: Settings, creds: Credentials) -> None:
    if creds.source != "generated":
        announce(f"root access key {creds.access_key} (from the {creds.source})")
        return
    announce(f"root access key {creds.access_key}")
    if s.max_memory is not None:
        where = (
            "cache mode stores nothing: these keys last until the server stops; set "
            "KVBOX_ROOT_ACCESS_KEY and KVBOX_ROOT_SECRET_KEY to choose them"
        )
    else:
        where = f"saved in {s.data / CREDENTIALS_FILE}"
    if s.show_root_secret or s.max_memory is not None:
        announce(f"root secret key {creds.secret_key}  (shown once; {where})")
    else:
        announce(f"root secret key not shown (--show-root-secret off); {where}")


async def _serve_store(
    s: Settings,
    store: Store,
    stop: asyncio.Event,
    listeners: Listeners,
    tls: ssl.SSLContext | None,
    access_log: AccessLog | None,
    extra_collectors: list[Collector] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    creds = load_root_credentials(None if s.max_memory is not None else s.data, os.environ)
    _announce_credentials(s, creds)
    await store.ensure_bucket(
        s.kv_bucket, versioning=Versioning.ENABLED if s.kv_versioning else Versioning.OFF
    )
    lifecycle = LifecycleWorker(store, interval=s.lifecycle_interval)
    lifecycle.start()
    scrubber = Scrubber(store.meta, store.blobs, store.damage, s.scrub_interval)
    scrubber.start()
    limits = clamp_connections(limits_of(s), fd_capacity())
    governor = Governor(limits)
    counters = ServerCounters()
    commands = KvCommands(store, s.kv_bucket, counters)
    budget = MemoryBudget(s.max_inflight_bytes, wait=min(WAIT_MAX, limits.body_timeout / 2))
    # One S3 door serves every S3-speaking port, and GW-KV's AUTH and access decision.
    s3 = S3Frontend(
        Context(store, s.kv_bucket, region=s.region),
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        domain=s.domain,
        sigv2=s.sigv2,
        lifecycle=lifecycle,
        lifecycle_test_clock=s.lifecycle_test_clock,
    )
    kv_auth = _kv_auth_mode(s, listeners)
    kvauth = KvAuth(kv_auth, store, s.kv_bucket, s3.access, s3.key_secret)
    gw = GwkvServer(
        commands,
        max_value=s.max_value_size,
        access=access_log,
        governor=governor,
        budget=budget,
        kvauth=kvauth,
    )
    port = listeners.kv_port
    kv_udp = s.kv_udp == "on" or (s.kv_udp == "auto" and kv_auth == "off")
    if not kv_udp:
        for sock in listeners.take("kv_udp"):
            sock.close()
    servers: list[Listener] = []
    for sock in listeners.take("kv_tcp"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        servers.append(await loop.create_server(gw.protocol_factory, sock=sock, backlog=4096))
    udp_transports: list[asyncio.DatagramTransport] = []
    for sock in listeners.take("kv_udp"):
        transport, _ = await loop.create_datagram_endpoint(
            lambda: GwkvDatagram(commands, access_log, kvauth), sock=sock
        )
        udp_transports.append(transport)
    governor.start()
    shown = f"[{s.host}]" if ":" in s.host else s.host
    announce(f"data {'memory (cache mode, not durable)' if s.max_memory else s.data}")
    kv_host = s.kv_host or s.host
    kv_shown = f"[{kv_host}]" if ":" in kv_host else kv_host
    announce(f"gwkv tcp {kv_shown}:{port} (auth {kv_auth})")
    announce(f"gwkv udp {kv_shown}:{port}" if kv_udp else "gwkv udp off (--kv-udp)")

    ready = True
    http_servers: list[web.Server] = []  # the S3 port's and the console port's
    console: ConsoleDoor | None = None
    scheme = "https" if tls is not None else "http"
    serve_console = s.console and bool(s.http_port or s.console_port)
    s3_counters = ServerCounters()
    web_counters = ServerCounters()
    if serve_console and s3 is not None:
        console = ConsoleDoor(
            s3,
            store,
            ConsoleSettings(
                base_path=s.console_base_path,
                idle=s.console_idle_timeout,
                lifetime=s.console_session_lifetime,
                s3_url=s.console_s3_url,
                http_port=s.http_port,
                own_port=bool(s.console_port),
                tls=tls is not None,
                kv_bucket=s.kv_bucket,
                data_dir=None if s.max_memory is not None else s.data,
                web_port=listeners.web_port,
                web_domain=s.web_domain,
            ),
            {"gwkv": counters, "s3": s3_counters},
        )
        console.start()

    def not_ready() -> str | None:
        """Why a load balancer should send nothing here now (``/readyz``), or None."""
        if not ready:
            return "shutting down"
        if store.space is not None and store.space.full:
            return "disk full: free space is under --min-free"
        problem = _meta_unreachable(store.meta)
        if problem is not None:
            return f"metadata store unreachable: {problem}"
        return None

    if s.http_port:

        async def stored() -> tuple[int, int]:
            st = await store.stats(s.kv_bucket)
            return st.objects, st.bytes

        http_door = HttpDoor(
            governor, Door("s3", s3_counters, s3_answer(limits, access_log)), tls=tls
        )
        http = build_app(
            counters,
            stored,
            not_ready,
            s3,
            collectors=[
                LifecycleCollector(lifecycle.stats),
                StorageCollector(store.damage, store.space, scrubber.stats),
                *(extra_collectors or []),
            ],
            s3_counters=s3_counters,
            console=console,
            console_here=not s.console_port,
            access_log=access_log,
            doors=_doors(web_counters if s.web_port else None, console),
            track=http_door.track,
            server_kwargs=aiohttp_limits(limits),
            send_stall=limits.body_timeout,
            budget=budget,
        )
        http_door.server = http
        http_servers.append(http)
        served = await http_door.serve(listeners.take("http"))
        servers += served
        http_port = served[0].sockets[0].getsockname()[1]
        announce(f"{scheme} {shown}:{http_port} (S3 API, /healthz /readyz /metrics)")
        if console is not None and not s.console_port:
            announce(f"console {scheme}://{shown}:{http_port}/console/")
    if console is not None and s.console_port:
        console_door = HttpDoor(governor, Door("console", console.counters, plain_answer), tls=tls)
        console_http = build_console_app(
            console,
            access_log,
            track=console_door.track,
            server_kwargs=aiohttp_limits(limits),
            send_stall=limits.body_timeout,
            budget=budget,
            s3=s3,
        )
        console_door.server = console_http
        http_servers.append(console_http)
        served = await console_door.serve(listeners.take("console"))
        servers += served
        console_port = served[0].sockets[0].getsockname()[1]
        announce(f"console {scheme}://{shown}:{console_port}/console/")
    web_runner: web.AppRunner | None = None
    if s.web_port:
        access = s3.access if s3 is not None else AccessControl(store)

        async def can_read(who: Visitor, bucket: str, key: str, v: ObjectVersion) -> bool:
            return await access.anonymous_can(
                bucket, "s3:GetObject", key, v, who.remote, who.secure, who.user_agent, who.referer
            )

        async def can_list(who: Visitor, bucket: str) -> bool:
            return await access.anonymous_can(
                bucket, "s3:ListBucket", None, None, who.remote, who.secure, who.user_agent,
                who.referer,
            )  # fmt: skip

        web_door = HttpDoor(governor, Door("web", web_counters, web_answer), tls=tls)
        web_app = build_web_app(
            store,
            web_domain=s.web_domain,
            can_read=can_read,
            can_list=can_list,
            access_log=access_log,
            middlewares=[web_door.middleware],
        )
        web_runner = web.AppRunner(
            web_app,
            access_log=None,
            handle_signals=False,
            logger=RefusalLogger(access_log, "web"),
            **aiohttp_limits(limits),
        )
        await web_runner.setup()
        web_door.server = web_runner.server
        served = await web_door.serve(listeners.take("web"))
        servers += served
        web_port = served[0].sockets[0].getsockname()[1]
        announce(f"web {shown}:{web_port} (static websites)")
    # Everything allocated so far lives as long as the server: keep the collector off it,
    # and collect the young generation less often (a request allocates a handful of
    # objects; the default threshold of 700 made gc 7% of a SET's profile).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    announce("ready")

    await stop.wait()
    ready = False
    log.info("shutting down: finishing requests in flight (grace %.1fs)", s.shutdown_grace)
    for server in servers:
        server.close()
    for transport in udp_transports:
        transport.close()
    await gw.drain(s.shutdown_grace)
    for http in http_servers:
        http.pre_shutdown()
        await http.shutdown(s.shutdown_grace)
    if console is not None:
        await console.close()
    if web_runner is not None:
        await web_runner.cleanup()
    await lifecycle.stop()
    await scrubber.stop()
    governor.stop()
    await store.sweep_chunk_writers()
    log.info("stopped")


def _kv_auth_mode(s: Settings, listeners: Listeners) -> Mode:
    """``--kv-auth``, or its default: off while GW-KV listens on loopback only (the
    course's open protocol, where only this machine can reach it), required as soon as it
    listens on any other address."""
    if s.kv_auth is not None:
        return s.kv_auth
    addresses = [sock.getsockname()[0] for sock in listeners.kv_tcp]
    return "off" if all(_loopback(a) for a in addresses) else "required"


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _doors(web: ServerCounters | None, console: ConsoleDoor | None) -> dict[str, ServerCounters]:
    """The counters of the doors other than GW-KV and S3, for /metrics."""
    out = {}
    if web is not None:
        out["web"] = web
    if console is not None:
        out["console"] = console.counters
    return out


def limits_of(s: Settings) -> Limits:
    return Limits(
        max_connections=s.max_connections,
        max_connections_per_ip=s.max_connections_per_ip,
        header_timeout=s.header_timeout,
        body_timeout=s.body_timeout,
        idle_timeout=s.idle_timeout,
        max_header_bytes=s.max_header_bytes,
        max_headers=s.max_headers,
    )


def _tls_context(s: Settings) -> ssl.SSLContext | None:
    if s.tls_cert is None and s.tls_key is None:
        return None
    if s.tls_cert is None or s.tls_key is None:
        raise InvalidArgument("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(s.tls_cert, s.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load TLS certificate or key: {exc}") from exc
    return ctx


def serve(s: Settings) -> int:
    # aiohttp stamps its own answers (the 400 for a malformed request) with a module
    # constant naming itself; this process is kvbox, so it says so there too.
    aiohttp.web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
    handler = configure_logging(s.log_format, s.log_level)
    access_log = open_access_log(s.access_log, s.log_format, s.log_level, handler)
    return_big_blocks()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - platforms without uvloop
        runner = asyncio.Runner()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_server(s, stop, access_log)

    try:
        with runner:
            runner.run(main())
    except (OSError, KvboxError) as exc:
        print(f"kvbox serve: {exc}", file=sys.stderr)
        return 1
    finally:
        if access_log is not None:
            access_log.close()
    return 0
