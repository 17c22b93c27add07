"""``kvbox admin``: manage S3 users and their access keys.

Layer: cli. Rules: two ways in, one implementation (``kvbox.s3door.admin.run_command``):
``--data DIR`` opens a stopped server's data directory under its lock (and refuses,
pointing at ``--server``, while a server holds it); ``--server URL`` POSTs the command
to a running server's ``/_kvbox/admin``, signed with SigV4 by the root credentials from
``KVBOX_ROOT_ACCESS_KEY`` and ``KVBOX_ROOT_SECRET_KEY``. A new secret key is printed
once, on the command that made it. Exit status: 0 done, 1 refused, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from kvbox.cli._remote import RemoteError, post_json
from kvbox.core.datadir import lock_data_dir
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.errors import KvboxError
from kvbox.s3door.admin import ADMIN_PATH, VERBS, run_command


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "admin",
        help="manage S3 users and access keys",
        description="Add, list, disable, enable and delete users and their access keys, "
        "in a stopped server's data directory (--data) or on a running server (--server).",
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
    p.add_argument("noun", choices=sorted(VERBS), help="user or key")
    p.add_argument("verb", help="user: add|list|disable|enable|delete; key: the same and rotate")
    p.add_argument(
        "target",
        nargs="?",
        default="",
        help="user name (user *, key add, key list) or access key (other key commands)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    noun, verb, target = args.noun, args.verb, args.target
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
