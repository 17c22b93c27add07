"""Which driver errors mean "PostgreSQL cannot be reached" (a 503 clients retry) and
which "an open connection died" (a fresh one may work at once).

Layer: tests/core/pg. Rules: the exceptions are asyncpg's own classes, built as asyncpg
raises them (a connection lost mid-transaction surfaces as the ROLLBACK's error, the
loss behind it as ``__context__``); what a real outage raises is checked end to end in
tests/e2e/test_cluster_meta.py and tests/faults.
"""

from __future__ import annotations

import asyncpg

from kvbox.core.pg import lost, translate, unreachable
from kvbox.errors import MetaUnavailable, StorageError


def _raised_while_handling(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception:
            raise outer  # noqa: B904 -- asyncpg's __aexit__ does exactly this
    except Exception as exc:
        return exc


def test_a_protocol_left_mid_operation_by_a_dead_server_is_a_lost_connection() -> None:
    stuck = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    assert unreachable(stuck) and lost(stuck)
    assert isinstance(translate(stuck), MetaUnavailable)


def test_the_loss_behind_a_rollback_error_is_found() -> None:
    gone = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    masked = _raised_while_handling(asyncpg.InterfaceError("cannot rollback"), gone)
    assert unreachable(masked) and lost(masked)
    assert isinstance(translate(masked), MetaUnavailable)


def test_refusals_are_unreachable_but_no_lost_connection() -> None:
    for exc in (ConnectionRefusedError(111, "Connect call failed"), TimeoutError()):
        assert unreachable(exc) and not lost(exc)
    starting = asyncpg.CannotConnectNowError("the database system is starting up")
    assert unreachable(starting) and not lost(starting)


def test_a_statement_the_database_refused_is_neither() -> None:
    dup = asyncpg.UniqueViolationError("duplicate key value")
    assert not unreachable(dup) and not lost(dup)
    err = translate(dup)
    assert isinstance(err, StorageError) and not isinstance(err, MetaUnavailable)
