"""``kvbox migrate --meta URL``: bring a PostgreSQL metadata database to this kvbox's schema.

Layer: cli. Rules: the migrations are ``kvbox.core.pg.migrations`` (numbered,
forward-only, each in its own transaction, concurrent runs take turns); this command
only runs them and says, in one line each, what it applied and where the database is
now. The URL is shown redacted, never with its password. Exit 0 when the database is
at ``LATEST``, 1 when it cannot be (unreachable, newer than this kvbox, a failing
migration: the database stays at its last whole version).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from kvbox.cli.serve import env_default


def add_parser(sub: Any) -> None:
    ap: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="apply the PostgreSQL metadata schema migrations (for kvbox serve --meta)",
        description="Apply every schema migration the metadata database lacks, in order, "
        "each in its own transaction. Safe to run again, and from several places at once.",
    )
    ap.add_argument(
        "--meta",
        default=env_default("meta", None),
        metavar="URL",
        required=env_default("meta", None) is None,
        help="the database, postgresql://USER:PASS@HOST:PORT/DB (env KVBOX_META)",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 0 if the schema is this kvbox's, else 1 and say why",
    )
    ap.set_defaults(func=run)


async def _run(text: str, check_only: bool) -> str:
    from kvbox.core.pg import PgUrl, connect, migrations

    url = PgUrl.parse(text)
    conn = await connect(url, application="kvbox-migrate")
    try:
        if check_only:
            await migrations.check(conn, url.redacted)
            return f"{url.redacted}: schema version {migrations.LATEST}, as this kvbox needs"
        before = await migrations.current_version(conn)
        applied = await migrations.migrate(conn)
    finally:
        await conn.close()
    for mig in applied:
        print(f"kvbox migrate: applied {mig.version:04d}_{mig.name}", flush=True)
    if not applied:
        return f"{url.redacted}: already at schema version {migrations.LATEST}"
    return f"{url.redacted}: schema version {before} -> {migrations.LATEST}"


def run(args: argparse.Namespace) -> int:
    from kvbox.core.pg import PgUrl
    from kvbox.core.pg.pool import translate
    from kvbox.errors import KvboxError

    try:
        line = asyncio.run(_run(args.meta, args.check))
    except KvboxError as exc:
        print(f"kvbox migrate: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a failing migration: the database keeps its last version
        try:
            url: PgUrl | None = PgUrl.parse(args.meta)
        except KvboxError:
            url = None
        print(f"kvbox migrate: {translate(exc, url)}", file=sys.stderr)
        return 1
    print(f"kvbox migrate: {line}", flush=True)
    return 0
