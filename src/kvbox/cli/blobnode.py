"""``kvbox blobnode``: run one blob node of a kvbox cluster (``kvbox.cluster.node``).

Layer: cli. Rules: flags (each also ``KVBOX_<FLAG>``) are checked before anything is
opened, and every failure is one line on stderr with exit status 1; the PostgreSQL
password never appears in any of them (``PgUrl.redacted``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from kvbox.cli.serve import env_default


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
    ap.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"kvbox blobnode: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from kvbox.auth.cluster import load_secret
    from kvbox.cluster.node import NodeSettings, run_node
    from kvbox.core.pg import PgUrl
    from kvbox.errors import KvboxError
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
    except KvboxError as exc:
        return _fail(str(exc))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_node(settings, stop)

    try:
        asyncio.run(main())
    except (OSError, KvboxError) as exc:
        return _fail(str(exc))
    return 0
