"""The connection pool against a real PostgreSQL: what a release costs and what it
still cleans.

Layer: tests/core/pg. Rules: every test gets its own database of the session's server
(``pg_url``); what the server did is read from the server itself (``pg_stat_activity``
shows each backend's last statement), not from the driver.
"""

from __future__ import annotations

import asyncpg
import pytest

from kvbox.core.pg import PgUrl, connect, open_pool


async def _last_statement(url: PgUrl, application: str) -> str:
    probe = await connect(url, application="kvbox-test-probe")
    try:
        rows = await probe.fetch(
            "SELECT query FROM pg_stat_activity WHERE application_name = $1", application
        )
    finally:
        await probe.close()
    assert len(rows) == 1, rows
    return str(rows[0]["query"])


async def test_a_release_sends_nothing_to_the_server(pg_url: str) -> None:
    """A pooled read is one round trip: the backend's last statement is the read itself,
    not the reset query asyncpg sends by default on every release."""
    url = PgUrl.parse(pg_url)
    pool = await open_pool(url, min_size=1, max_size=1, application="kvbox-test-pool")
    try:
        for _ in range(3):
            assert await pool.fetchval("SELECT 41 + 1") == 42
        assert await _last_statement(url, "kvbox-test-pool") == "SELECT 41 + 1"
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(pg_url: str) -> None:
    url = PgUrl.parse(pg_url)
    pool = await open_pool(url, min_size=1, max_size=1, application="kvbox-test-pool")
    try:
        await pool.execute("CREATE TABLE public.t (v int)")  # no kvbox schema here
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO public.t VALUES (1)")
        async with pool.acquire() as conn:  # the same (only) connection, cleaned
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM public.t") == 0
            assert await conn.fetchval("SHOW search_path") == "kvbox"
    finally:
        await pool.close()


async def test_released_connections_stay_usable_after_a_failed_statement(pg_url: str) -> None:
    url = PgUrl.parse(pg_url)
    pool = await open_pool(url, min_size=1, max_size=1, application="kvbox-test-pool")
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.fetchval("SELECT 1 / 0")
        assert await pool.fetchval("SELECT 2") == 2
    finally:
        await pool.close()
