"""The migration runner against a real PostgreSQL: versions, concurrency, refusals.

Layer: tests/core/pg. Rules: every test gets its own database of the session's server
(``pg_url``: empty); the runner is driven through its public functions and, where the
command line is the interface, through ``kvbox migrate``.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kvbox.core.pg import PgUrl, connect, migrations
from kvbox.errors import SchemaMismatch


async def test_an_empty_database_is_migrated_to_the_latest_version_once(pg_url: str) -> None:
    url = PgUrl.parse(pg_url)
    conn = await connect(url)
    try:
        assert await migrations.current_version(conn) == 0
        with pytest.raises(SchemaMismatch, match=r"holds no kvbox schema.*kvbox migrate --meta"):
            await migrations.check(conn, url.redacted)
        applied = await migrations.migrate(conn)
        assert [m.version for m in applied] == list(range(1, migrations.LATEST + 1))
        assert await migrations.current_version(conn) == migrations.LATEST
        await migrations.check(conn, url.redacted)
        assert await migrations.migrate(conn) == []  # nothing left: forward-only, idempotent
        rows = await conn.fetch("SELECT version, name FROM kvbox.migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in migrations.MIGRATIONS
        ]
    finally:
        await conn.close()


async def test_concurrent_runs_take_turns(pg_url: str) -> None:
    """Two gateways started with --migrate at once: one applies, the other finds it done."""
    url = PgUrl.parse(pg_url)
    a, b = await connect(url), await connect(url)
    try:
        done = await asyncio.gather(migrations.migrate(a), migrations.migrate(b))
        assert sorted(len(d) for d in done) == [0, migrations.LATEST]
        assert await migrations.current_version(a) == migrations.LATEST
    finally:
        await a.close()
        await b.close()


async def test_a_newer_schema_is_refused_by_check_and_by_migrate(pg_url: str) -> None:
    url = PgUrl.parse(pg_url)
    conn = await connect(url)
    try:
        await migrations.migrate(conn)
        newer = migrations.LATEST + 1
        await conn.execute(
            "INSERT INTO kvbox.migrations (version, name) VALUES ($1, 'from_the_future')", newer
        )
        for attempt in (migrations.check(conn, url.redacted), migrations.migrate(conn)):
            with pytest.raises(SchemaMismatch, match=f"version {newer}, newer than this kvbox"):
                await attempt
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_the_last_whole_version(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each migration commits with its bookkeeping row, or not at all."""
    url = PgUrl.parse(pg_url)
    broken = migrations.Migration(migrations.LATEST + 1, "broken", "CREATE TABLE x (); SELECT 1/0;")
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST", broken.version)
    conn = await connect(url)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrations.migrate(conn)
        assert await migrations.current_version(conn) == broken.version - 1
        assert await conn.fetchval("SELECT to_regclass('kvbox.x')") is None
    finally:
        await conn.close()
