"""``kvbox admin``: manage S3 users and their access keys, and the blob cluster.

Layer: cli. Rules: two ways in, one implementation (``kvbox.s3door.admin.run_command``):
``--data DIR`` opens a stopped server's data directory under its lock (and refuses,
pointing at ``--server``, while a server holds it); ``--server URL`` POSTs the command
to a running server's ``/_kvbox/admin``, signed with SigV4 by the root credentials from
``KVBOX_ROOT_ACCESS_KEY`` and ``KVBOX_ROOT_SECRET_KEY``. A new secret key is printed
once, on the command that made it. ``kvbox admin cluster status|drain|remove --meta URL``
and ``kvbox admin bucket replicas BUCKET N|default --meta URL`` work on the cluster's
PostgreSQL database directly (``kvbox.cluster.admin``). Exit status: 0 done, 1 refused,
2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvbox.cli._remote import RemoteError, post_json
from kvbox.core.datadir import lock_data_dir
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.errors import KvboxError
from kvbox.s3door.admin import ADMIN_PATH, VERBS, run_command

if TYPE_CHECKING:
    from kvbox.cluster.catalog import Catalog
    from kvbox.core.pg import PgUrl


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "admin",
        help="manage S3 users and access keys, and the blob cluster",
        description="Add, list, disable, enable and delete users and their access keys, "
        "in a stopped server's data directory (--data) or on a running server (--server). "
        "`kvbox admin cluster status|drain NODE|remove NODE --meta postgresql://...` shows "
        "and changes the blob cluster; `kvbox admin bucket replicas BUCKET N|default --meta "
        "postgresql://...` sets how many copies of a bucket's chunks the cluster keeps.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data directory of a stopped server (default: $KVBOX_DATA or ./kvbox-data)",
    )
    where.add_argument(
        "--server",
        metavar="URL",
        help="a running server's HTTP endpoint, e.g. http://127.0.0.1:9000 (root "
        "credentials from KVBOX_ROOT_ACCESS_KEY and KVBOX_ROOT_SECRET_KEY)",
    )
    p.add_argument("--region", default="us-east-1", help="SigV4 region (default: us-east-1)")
    p.add_argument(
        "--meta",
        default=os.environ.get("KVBOX_META"),
        metavar="postgresql://USER:PASS@HOST:PORT/DB",
        help="admin cluster: the cluster's PostgreSQL database (default: $KVBOX_META)",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=os.environ.get("KVBOX_REPLICAS", "3"),
        metavar="R",
        help="admin cluster status, admin bucket replicas: the gateways' --replicas, R "
        "for buckets without their own (default: $KVBOX_REPLICAS, as kvbox serve reads it, "
        "else 3)",
    )
    p.add_argument(
        "noun", choices=sorted([*VERBS, "cluster", "bucket"]), help="user, key, cluster or bucket"
    )
    p.add_argument(
        "verb",
        help="user: add|list|disable|enable|delete; key: the same and rotate; "
        "cluster: status|drain|remove; bucket: replicas",
    )
    p.add_argument(
        "target",
        nargs="?",
        default="",
        help="user name (user *, key add, key list), access key (other key commands), "
        "blob node id or address (cluster drain|remove) or bucket (bucket replicas)",
    )
    p.add_argument(
        "value",
        nargs="?",
        default="",
        help="bucket replicas: the bucket's R (1..16), or `default` for the gateways' R",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    noun, verb, target = args.noun, args.verb, args.target
    if noun == "cluster":
        return _cluster(args.meta, verb, target, args.replicas)
    if noun == "bucket":
        return _bucket(args.meta, verb, target, args.value, args.replicas)
    if verb not in VERBS[noun]:
        print(f"kvbox admin: unknown command: {noun} {verb}", file=sys.stderr)
        return 2
    if not target and not (noun == "user" and verb == "list"):
        print(f"kvbox admin: {noun} {verb} needs a name", file=sys.stderr)
        return 2
    if args.server:
        status, lines = _remote(args.server, args.region, noun, verb, target)
    else:
        data = args.data or Path(os.environ.get("KVBOX_DATA", "./kvbox-data"))
        status, lines = _local(data, noun, verb, target)
    for line in lines:
        print(line, file=sys.stdout if status == 0 else sys.stderr)
    return status


def _local(data: Path, noun: str, verb: str, target: str) -> tuple[int, list[str]]:
    try:
        with lock_data_dir(data):
            return asyncio.run(_on_store(data, noun, verb, target))
    except KvboxError as exc:
        hint = " (against a running server, use --server URL)" if "in use" in str(exc) else ""
        return 2, [f"kvbox admin: {exc}{hint}"]


async def _on_store(data: Path, noun: str, verb: str, target: str) -> tuple[int, list[str]]:
    meta = SqliteMetaStore(data / META_FILE)
    await meta.open()
    try:
        return await run_command(meta, noun, verb, target)
    finally:
        await meta.close()


def _remote(server: str, region: str, noun: str, verb: str, target: str) -> tuple[int, list[str]]:
    command = {"noun": noun, "verb": verb, "target": target}
    try:
        answer = post_json(server, ADMIN_PATH, command, region=region)
        return int(answer["status"]), [str(line) for line in answer["lines"]]
    except RemoteError as exc:
        return 2, [f"kvbox admin: {exc}"]
    except (KeyError, TypeError, ValueError):
        return 2, ["kvbox admin: the server's answer is not an admin reply"]


CLUSTER_VERBS = ("status", "drain", "remove")


def _bucket(meta: str | None, verb: str, bucket: str, value: str, default: int) -> int:
    from kvbox.cluster import admin

    if verb != "replicas":
        print(f"kvbox admin: unknown command: bucket {verb}", file=sys.stderr)
        return 2
    if not meta:
        print("kvbox admin: bucket replicas needs --meta postgresql://...", file=sys.stderr)
        return 2
    if not bucket or not ((value.isascii() and value.isdigit()) or value == "default"):
        print("kvbox admin: usage: bucket replicas BUCKET N|default", file=sys.stderr)
        return 2
    replicas = None if value == "default" else int(value)

    async def go(url: PgUrl, catalog: Catalog) -> list[str]:
        return await admin.set_bucket_replicas(url, catalog, bucket, replicas, default)

    return _on_catalog(meta, go)


def _on_catalog(meta: str, go: Callable[[PgUrl, Catalog], Awaitable[list[str]]]) -> int:
    """Run ``go`` on the cluster's catalog and print its lines: exit status 0, 1 when
    refused (a bad argument, nothing by that name), 2 when it could not run."""
    from kvbox.cluster.catalog import Catalog
    from kvbox.core.pg import PgUrl
    from kvbox.errors import InvalidArgument, NotFound

    async def run() -> list[str]:
        url = PgUrl.parse(meta)
        catalog = await Catalog.connect(url, application="kvbox-admin", max_size=1)
        try:
            return await go(url, catalog)
        finally:
            await catalog.close()

    try:
        lines = asyncio.run(run())
    except (InvalidArgument, NotFound) as exc:
        print(f"kvbox admin: {exc}", file=sys.stderr)
        return 1
    except KvboxError as exc:
        print(f"kvbox admin: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _cluster(meta: str | None, verb: str, node: str, replicas: int) -> int:
    from kvbox.cluster import admin

    if verb not in CLUSTER_VERBS:
        print(f"kvbox admin: unknown command: cluster {verb}", file=sys.stderr)
        return 2
    if not meta:
        print("kvbox admin: cluster commands need --meta postgresql://...", file=sys.stderr)
        return 2
    if verb != "status" and not node:
        print(f"kvbox admin: cluster {verb} needs a node id or address", file=sys.stderr)
        return 2

    async def go(url: PgUrl, catalog: Catalog) -> list[str]:
        if verb == "status":
            return await admin.status_lines(catalog, replicas)
        if verb == "drain":
            n = await admin.drain(catalog, node)
            return [
                f"blob node {n.node_id} ({n.address}) is draining: the repair "
                "worker moves its chunks to other nodes"
            ]
        n, dropped = await admin.remove(catalog, node)
        return [
            f"blob node {n.node_id} ({n.address}) removed; {dropped} of its copies "
            "forgotten (the repair worker makes new ones elsewhere)"
        ]

    return _on_catalog(meta, go)
