"""``kvbox blobnode``: run one blob node of a kvbox cluster (``kvbox.cluster.node``).

Layer: cli. Rules: flags (each also ``KVBOX_<FLAG>``) are checked before anything is
opened, and every failure is one line on stderr with exit status 1; the PostgreSQL
password never appears in any of them (``PgUrl.redacted``).

The node's port is put under kvbox's connection governor here (``_governed_listen``),
the composition root of this program: ``kvbox.cluster`` may not import
``kvbox.server``, which imports it. The limits (``NODE_LIMITS``) suit a node's only
clients, gateways: a few connections each (``NodeClient`` pools at most 16 per node),
request heads sent whole at once, idle connections that the gateway drops first
(``client.KEEPALIVE`` is below ``--idle-timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kvbox.cli.serve import env_default
from kvbox.metrics import ServerCounters
from kvbox.server.governor import Limits

if TYPE_CHECKING:
    from aiohttp import web

    from kvbox.cluster.node import Listen

#: A node's connection limits by default (flags of the same names as ``kvbox serve``):
#: thousands of connections for dozens of gateways (clamped to the descriptors), no
#: per-address cap by default (every client is a gateway, and one host may run
#: several), 10 s for a request head a gateway writes in one go, 30 s of a stalled
#: chunk body either way (a chunk is at most 8 MiB), and 120 s idle: well above a
#: gateway's own keep-alive (``kvbox.cluster.client.KEEPALIVE``, 15 s).
NODE_LIMITS: Final = Limits(
    max_connections=4096,
    max_connections_per_ip=0,
    header_timeout=10.0,
    body_timeout=30.0,
    idle_timeout=120.0,
)


def add_parser(sub: Any) -> None:
    ap: argparse.ArgumentParser = sub.add_parser(
        "blobnode",
        help="run a blob node: chunks of a kvbox cluster, over HTTP",
        description="Store content-addressed chunks for the gateways of a kvbox cluster "
        "(kvbox serve --blobs cluster). The node registers and heartbeats in the cluster's "
        "PostgreSQL database; gateways find it there. Every flag can also be set as "
        "KVBOX_<FLAG>.",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=env_default("data", None),
        required=env_default("data", None) is None,
        help="directory holding this node's chunks and id (created if missing)",
    )
    ap.add_argument(
        "--listen",
        default=env_default("listen", "127.0.0.1:9100"),
        metavar="HOST:PORT",
        help="address to serve the chunk API on (default %(default)s)",
    )
    ap.add_argument(
        "--advertise",
        default=env_default("advertise", None),
        metavar="HOST:PORT",
        help="address gateways should connect to (default: --listen; required when "
        "listening on 0.0.0.0 or ::)",
    )
    ap.add_argument(
        "--meta",
        default=env_default("meta", None),
        required=env_default("meta", None) is None,
        metavar="postgresql://USER:PASS@HOST:PORT/DB",
        help="the cluster's PostgreSQL database (its schema made by `kvbox migrate`)",
    )
    ap.add_argument(
        "--cluster-secret-file",
        type=Path,
        default=env_default("cluster-secret-file", None),
        required=env_default("cluster-secret-file", None) is None,
        metavar="FILE",
        help="file holding the secret shared by every gateway and blob node (at least "
        "16 bytes), which signs their requests to each other",
    )
    for flag, kind, metavar, text in _LIMIT_FLAGS:
        ap.add_argument(
            f"--{flag}",
            type=kind,
            default=env_default(flag, getattr(NODE_LIMITS, flag.replace("-", "_"))),
            metavar=metavar,
            help=text + " (default %(default)s)",
        )
    ap.set_defaults(func=run)


#: The limit flags: name (a ``Limits`` field with "-" for "_"), type, metavar, help.
_LIMIT_FLAGS: Final[tuple[tuple[str, type[int] | type[float], str, str], ...]] = (
    (
        "max-connections", int, "N",
        "connections open at once (at the limit the longest-idle one is closed, else the "
        "new one refused); capped by the file descriptor limit",
    ),
    (
        "max-connections-per-ip", int, "N",
        "connections open at once from one address (IPv6: one /64); 0: no limit",
    ),
    (
        "header-timeout", float, "S",
        "a request head must arrive whole within this long of its first byte",
    ),
    (
        "body-timeout", float, "S",
        "a chunk body, request or reply, that makes no progress this long is cut off",
    ),
    (
        "idle-timeout", float, "S",
        "close a connection with no request in progress after this long; keep it above "
        "the gateways' 15 s keep-alive",
    ),
)  # fmt: skip


def _limits(args: argparse.Namespace) -> Limits:
    from kvbox.errors import InvalidArgument

    for flag in ("max_connections", "header_timeout", "body_timeout", "idle_timeout"):
        if not float(getattr(args, flag)) > 0:
            raise InvalidArgument(f"--{flag.replace('_', '-')} must be positive")
    if args.max_connections_per_ip < 0:
        raise InvalidArgument("--max-connections-per-ip must be 0 (no limit) or more")
    return Limits(
        max_connections=int(args.max_connections),
        max_connections_per_ip=int(args.max_connections_per_ip),
        header_timeout=float(args.header_timeout),
        body_timeout=float(args.body_timeout),
        idle_timeout=float(args.idle_timeout),
    )


#: The governor's refusals in the chunk API's own form (``kvbox.cluster.node``: JSON
#: ``{"error": word, "message": text}``).
_ANSWERS: Final = {
    "busy": (503, "busy", "too many connections to this blob node; try again shortly"),
    "address": (503, "busy", "too many connections from your address; try again shortly"),
    "header_bytes": (431, "bad_request", "the request head is too large"),
    "header_fields": (431, "bad_request", "the request has too many header fields"),
    "header_timeout": (408, "timeout", "the request head did not arrive in time"),
}


def _answer(kind: str, remote: str) -> bytes:
    from kvbox.server.httpdoor import raw_response

    status, word, message = _ANSWERS[kind]
    body = json.dumps({"error": word, "message": message}).encode()
    return raw_response(status, body, "application/json")


def _governed_listen(limits: Limits, counters: ServerCounters) -> Listen:
    """``kvbox.cluster.node.Listen`` with the port under a connection governor, as
    ``kvbox serve`` governs its own (``server/app.py``'s web port)."""
    from aiohttp import web

    from kvbox.server.governor import Door, Governor, clamp_connections, fd_capacity
    from kvbox.server.httpdoor import HttpDoor, aiohttp_limits

    async def listen(app: web.Application, host: str, port: int) -> Callable[[], Awaitable[None]]:
        lim = clamp_connections(limits, fd_capacity())
        governor = Governor(lim)
        door = HttpDoor(governor, Door("blobnode", counters, _answer))
        app.middlewares.insert(0, door.middleware)  # first: the phase covers every handler
        runner = web.AppRunner(app, handle_signals=False, access_log=None, **aiohttp_limits(lim))
        await runner.setup()
        door.server = runner.server
        try:
            listener = await door.listen(host, port)
        except BaseException:
            await runner.cleanup()
            raise
        governor.start()

        async def close() -> None:
            listener.close()
            governor.stop()
            await runner.cleanup()

        return close

    return listen


def _fail(message: str) -> int:
    print(f"kvbox blobnode: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from kvbox.auth.cluster import load_secret
    from kvbox.cluster.node import NodeSettings, run_node
    from kvbox.core.pg import PgUrl
    from kvbox.errors import KvboxError
    from kvbox.server.doors import ConnectionsCollector
    from kvbox.server.logs import configure_logging

    configure_logging("plain", "info")
    try:
        meta = PgUrl.parse(args.meta)
        advertise = args.advertise or args.listen
        host = advertise.rpartition(":")[0].strip("[]")
        if host in ("0.0.0.0", "::", ""):
            return _fail("--advertise HOST:PORT is required when --listen is a wildcard address")
        try:
            raw = args.cluster_secret_file.read_bytes()
        except OSError as exc:
            return _fail(f"--cluster-secret-file {args.cluster_secret_file}: {exc.strerror}")
        secret = load_secret(raw, str(args.cluster_secret_file))
        settings = NodeSettings(Path(args.data), args.listen, advertise, meta, secret)
        limits = _limits(args)
    except KvboxError as exc:
        return _fail(str(exc))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        counters = ServerCounters()
        await run_node(
            settings,
            stop,
            listen=_governed_listen(limits, counters),
            collectors=[ConnectionsCollector({"blobnode": counters})],
        )

    try:
        asyncio.run(main())
    except (OSError, KvboxError) as exc:
        return _fail(str(exc))
    return 0
