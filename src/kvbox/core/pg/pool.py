"""Connections to PostgreSQL: one pool per process, and the one translation of errors.

Layer: core. Rules:

* Every kvbox connection runs in the ``kvbox`` schema (``SCHEMA``: ``search_path`` is
  set at connect time), so kvbox's tables never meet other tables of a shared
  database, and names ``application_name`` so ``pg_stat_activity`` shows who it is.
* ``open_pool`` fails with one line that names the redacted URL and the cause (server
  down, bad password, missing database) and never the password.
* **A pooled connection keeps no session state.** Whatever needs some -- ``LISTEN``
  (``meta/postgres/changes.py``), a session advisory lock (the repair worker, the
  migration runner) -- takes a connection of its own from ``connect``. So a connection
  going back to the pool needs no cleaning, and the pool is told not to: asyncpg's
  default reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is one
  more network round trip on every release, which made every metadata read two round
  trips instead of one (docs/benchmarks.md, "The cluster"). asyncpg still rolls back a
  transaction left open on release, without asking the server when none is.
* ``translate`` is where the driver's exceptions become kvbox errors; ``retryable``
  says which ones mean "another transaction won a race: run yours again"
  (serialization failure, deadlock, a unique index that a concurrent insert reached
  first), ``unreachable`` which ones mean "the database cannot be reached" (refused,
  lost, timed out, shutting down or starting up: ``MetaUnavailable``, a 503 clients
  retry). Nothing else in kvbox looks at SQLSTATEs.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from kvbox.core.pg.url import PgUrl
from kvbox.errors import KvboxError, MetaUnavailable, StorageError

#: The PostgreSQL schema (namespace) holding every kvbox table.
SCHEMA: Final = "kvbox"
#: Seconds to establish one connection before giving up (a server that is down or a
#: firewall that drops packets must not hang a start-up or a request for minutes).
CONNECT_TIMEOUT: Final = 10.0

#: SQLSTATEs that mean a concurrent transaction won a race; the loser runs again.
_RETRYABLE: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "23505",  # unique_violation: a concurrent insert of the same key got there first
    }
)


#: Everything asyncpg raises about the database or the connection (``InternalClientError``
#: included: a connection whose server died mid-operation raises it on next use).
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

#: SQLSTATEs (besides class 08, connection exceptions) that mean the server is not
#: there to answer: shutting down, crashed, starting up, out of connection slots.
_UNREACHABLE: Final = frozenset({"57P01", "57P02", "57P03", "53300"})


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing to undo (module docstring, "no session state")."""


def server_settings(application: str) -> dict[str, str]:
    return {"search_path": SCHEMA, "application_name": application}


async def open_pool(
    url: PgUrl, *, min_size: int = 1, max_size: int = 10, application: str = "kvbox"
) -> asyncpg.Pool:
    """A connected pool (``max_size`` connections at most), or ``StorageError``."""
    try:
        pool = await asyncpg.create_pool(
            url.dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            server_settings=server_settings(application),
            reset=_keep_session,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageError(
            f"cannot connect to PostgreSQL at {url.redacted}: {describe(url, exc)}"
        ) from None
    assert pool is not None
    return pool


async def connect(url: PgUrl, *, application: str = "kvbox") -> asyncpg.Connection:
    """One connection outside a pool (migrations, LISTEN), or ``StorageError``."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            url.dsn, timeout=CONNECT_TIMEOUT, server_settings=server_settings(application)
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageError(
            f"cannot connect to PostgreSQL at {url.redacted}: {describe(url, exc)}"
        ) from None
    return conn


def describe(url: PgUrl | None, exc: BaseException) -> str:
    """One line about ``exc``, without the password."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = f"no answer within {CONNECT_TIMEOUT:g} s"
    elif isinstance(exc, ConnectionRefusedError) or "Connect call failed" in text:
        text = "connection refused (is PostgreSQL running there?)"
    return url.scrub(text) if url is not None else text


def sqlstate(exc: BaseException) -> str | None:
    state: Any = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` means only that a concurrent transaction won (module docstring)."""
    return sqlstate(exc) in _RETRYABLE


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached right now (module
    docstring), as opposed to a statement it refused."""
    return any(_unreachable(e) or _lost(e) for e in _chain(exc))


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` says a connection that was open died (the server restarted or
    dropped it), rather than that none could be made: a fresh one may work at once."""
    return any(_lost(e) for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or while handling: a connection lost
    mid-transaction surfaces as the ROLLBACK's error, the loss itself behind it."""
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(out) < 8:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    state = sqlstate(exc)
    return state is not None and (state.startswith("08") or state in _UNREACHABLE)


def _lost(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return True
    if sqlstate(exc) in ("08003", "08006", "57P01", "57P02"):
        return True
    # asyncpg says so without a SQLSTATE when a pooled connection died under it: "is
    # closed", or a protocol left mid-operation by the loss ("cannot switch to state").
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def translate(exc: BaseException, url: PgUrl | None = None) -> BaseException:
    """The one place where the driver's exceptions become kvbox errors."""
    if isinstance(exc, KvboxError):
        return exc
    if unreachable(exc):
        return MetaUnavailable(describe(url, exc))
    if isinstance(exc, DRIVER_ERRORS):
        return StorageError(f"postgresql: {describe(url, exc)}")
    return exc
