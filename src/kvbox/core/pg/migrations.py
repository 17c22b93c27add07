"""Versioned, forward-only schema migrations of kvbox's PostgreSQL database.

Layer: core. Rules:

* A migration is one file of this package's ``migrations/`` folder, ``NNNN_name.sql``,
  numbered 1, 2, 3... without gaps. It is never edited once released: a change is a new
  file with the next number. Every part of kvbox that keeps tables in PostgreSQL (the
  metadata store, the blob nodes' registry) adds its tables here, in the one sequence,
  so one number says what a database holds.
* ``migrate`` applies, in order, every migration above the database's version, each in
  its own transaction together with its row in ``kvbox.migrations``; so a crash or a
  failing statement leaves the database at the last whole version. A session-level
  advisory lock (``MIGRATION_LOCK``) makes concurrent runs (two gateways started with
  ``--migrate`` at once) take turns: the second finds nothing left to do.
* There are no down migrations. A database newer than this kvbox is refused (``check``
  and ``migrate`` both raise ``SchemaMismatch``): an older kvbox cannot know what a
  newer schema means.
* ``check`` is what every process that uses the database runs at start-up: the version
  must be exactly ``LATEST``, else it refuses to start with one line naming the
  command that fixes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

import asyncpg

from kvbox.core.pg.pool import SCHEMA
from kvbox.errors import SchemaMismatch

#: Key of the session advisory lock a migration run holds (an arbitrary constant:
#: "kvbx" "migr" in ASCII).
MIGRATION_LOCK: Final = 0x6B76_6278_6D69_6772

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _load() -> tuple[Migration, ...]:
    found: list[Migration] = []
    folder = resources.files("kvbox.core.pg") / "migrations"
    for entry in folder.iterdir():
        m = _FILE.fullmatch(entry.name)
        if m is not None:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    numbers = [mig.version for mig in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"kvbox.core.pg migrations must be numbered 1..n, found {numbers}")
    return tuple(found)


#: Every migration, in order.
MIGRATIONS: Final = _load()
#: The schema version this kvbox runs on.
LATEST: Final = MIGRATIONS[-1].version

_BOOKKEEPING = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


async def current_version(conn: asyncpg.Connection) -> int:
    """The database's schema version: 0 for a database kvbox never migrated."""
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{SCHEMA}.migrations")
    if exists is None:
        return 0
    found = await conn.fetchval(f"SELECT max(version) FROM {SCHEMA}.migrations")
    return int(found or 0)


async def migrate(conn: asyncpg.Connection, target: int | None = None) -> list[Migration]:
    """Apply every migration above the database's version up to ``target`` (default:
    ``LATEST``); returns those applied (empty: already there). Raises
    ``SchemaMismatch`` for a database newer than this kvbox."""
    goal = LATEST if target is None else target
    if not 0 <= goal <= LATEST:
        raise ValueError(f"no schema version {goal} (this kvbox knows 1..{LATEST})")
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        async with conn.transaction():
            await conn.execute(_BOOKKEEPING)
        version = await current_version(conn)
        if version > LATEST:
            raise SchemaMismatch(_newer(version))
        applied: list[Migration] = []
        for mig in MIGRATIONS:
            if version < mig.version <= goal:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path = {SCHEMA}")
                    await conn.execute(mig.sql)
                    await conn.execute(
                        f"INSERT INTO {SCHEMA}.migrations (version, name) VALUES ($1, $2)",
                        mig.version,
                        mig.name,
                    )
                applied.append(mig)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def check(conn: asyncpg.Connection, shown_url: str) -> None:
    """Refuse a database whose schema is not exactly ``LATEST`` (module docstring);
    ``shown_url`` is the redacted URL the message names."""
    version = await current_version(conn)
    if version == LATEST:
        return
    if version > LATEST:
        raise SchemaMismatch(_newer(version))
    have = "holds no kvbox schema" if version == 0 else f"has schema version {version}"
    raise SchemaMismatch(
        f"the metadata database {have}; this kvbox needs version {LATEST}: run "
        f"`kvbox migrate --meta {shown_url}` (or start with `kvbox serve --migrate`)"
    )


def _newer(version: int) -> str:
    return (
        f"the metadata database has schema version {version}, newer than this kvbox knows "
        f"({LATEST}): run the kvbox version that migrated it, or a newer one"
    )
