"""The migration runner against a real PostgreSQL: versions, concurrency, refusals.

Layer: tests/core/pg. Rules: every test gets its own database of the session's server
(``pg_url``: empty); the runner is driven through its public functions and, where the
command line is the interface, through ``kvbox migrate``.
"""

from __future__ import annotations

import asyncio
import sys

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


@pytest.mark.parametrize("start", range(1, migrations.LATEST))
async def test_a_database_at_every_earlier_version_is_migrated_with_its_data(
    pg_url: str, start: int
) -> None:
    """Rows written at an older schema survive `kvbox migrate` and serve afterwards."""
    from kvbox.core.meta.postgres import PostgresMetaStore
    from kvbox.core.model import ObjectVersion, PutOp

    url = PgUrl.parse(pg_url)
    conn = await connect(url)
    try:
        await migrations.migrate(conn, start)
        assert await migrations.current_version(conn) == start
        bid = await conn.fetchval(
            "INSERT INTO buckets (name, owner, created_ns, versioning)"
            " VALUES ('old', 'root', 1, 'off') RETURNING id"
        )
        seq = await conn.fetchval("SELECT nextval('version_seq')")
        await conn.execute(
            "INSERT INTO versions (bucket, key, seq, version_id, is_null, is_dm, size, etag,"
            " mtime_ns, inline) VALUES ($1, 'k', $2, 'V1', true, false, 3, 'e', 5, 'abc')",
            bid,
            seq,
        )
        await conn.execute(
            "INSERT INTO heads (bucket, key, seq, is_dm) VALUES ($1, 'k', $2, false)", bid, seq
        )
        with pytest.raises(SchemaMismatch, match="kvbox migrate --meta"):
            await PostgresMetaStore(url).open()
    finally:
        await conn.close()
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kvbox", "migrate", "--meta", pg_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await done.communicate()
    assert done.returncode == 0, out
    assert f"schema version {start} -> {migrations.LATEST}".encode() in out
    store = PostgresMetaStore(url)
    await store.open()
    try:
        old = await store.head("old", "k")
        assert old is not None and (old.inline, old.version_id, old.is_null) == (b"abc", "V1", True)
        [r] = await store.commit(
            [PutOp(ObjectVersion("old", "k", "V2", 3, "e2", 6, inline=b"new"))]
        )
        assert r.ok and r.removed[0].version_id == "V1"
        new = await store.head("old", "k")
        assert new is not None and new.inline == b"new" and new.seq > old.seq
    finally:
        await store.close()
