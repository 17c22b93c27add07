"""``kvbox migrate-to-cluster``: move a single-node data directory into a cluster
(``kvbox.cluster.migrate``).

Layer: cli. Rules: one line per step on stdout, one line per failure on stderr (exit
1), never a password; the source directory is only read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from kvbox.cli.serve import env_default


def add_parser(sub: Any) -> None:
    ap: argparse.ArgumentParser = sub.add_parser(
        "migrate-to-cluster",
        help="copy a single-node data directory into a cluster (PostgreSQL + blob nodes)",
        description="Copy every bucket, version, delete marker, setting, multipart upload, "
        "user and access key of a stopped single-node server's data directory into an "
        "empty cluster: metadata into PostgreSQL (migrated with `kvbox migrate`), chunks "
        "onto the blob nodes registered there. Everything is read back and compared "
        "before it reports success; the data directory is not changed.",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(env_default("data", "kvbox-data")),
        help="the data directory to copy (default %(default)s)",
    )
    ap.add_argument(
        "--meta",
        required=env_default("meta", None) is None,
        default=env_default("meta", None),
        metavar="postgresql://USER:PASS@HOST:PORT/DB",
        help="the cluster's PostgreSQL database",
    )
    ap.add_argument(
        "--blobs",
        choices=["cluster"],
        required=True,
        help="where the chunks go: cluster (the blob nodes registered in --meta)",
    )
    ap.add_argument(
        "--cluster-secret-file",
        type=Path,
        required=env_default("cluster-secret-file", None) is None,
        default=env_default("cluster-secret-file", None),
        metavar="FILE",
        help="the cluster secret shared by gateways and blob nodes",
    )
    ap.add_argument(
        "--replicas", type=int, default=3, metavar="R", help="copies of each chunk (default 3)"
    )
    ap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kvbox.auth.cluster import load_secret
    from kvbox.cluster.migrate import migrate_to_cluster
    from kvbox.core.pg import PgUrl
    from kvbox.errors import KvboxError

    def say(line: str) -> None:
        print(f"kvbox: {line}", flush=True)

    try:
        url = PgUrl.parse(args.meta)
        try:
            raw = args.cluster_secret_file.read_bytes()
        except OSError as exc:
            raise SystemExit(
                f"kvbox migrate-to-cluster: --cluster-secret-file {args.cluster_secret_file}: "
                f"{exc.strerror}"
            ) from None
        secret = load_secret(raw, str(args.cluster_secret_file))
        r = asyncio.run(migrate_to_cluster(args.data, url, secret, replicas=args.replicas, say=say))
    except (KvboxError, OSError) as exc:
        print(f"kvbox migrate-to-cluster: {exc}", file=sys.stderr)
        return 1
    say(
        f"migrated {args.data} into {url.redacted}: {r.buckets} buckets, {r.versions} "
        f"versions, {r.chunks} chunks ({r.chunk_bytes} bytes), {r.uploads} uploads, "
        f"{r.users} users, {r.keys} keys; every one read back the same"
    )
    return 0
