"""PostgreSQL plumbing shared by every part of kvbox that keeps state there.

Layer: core. The metadata store (``kvbox.core.meta.postgres``) and the blob nodes'
registry use it alike:

* ``url`` -- ``PgUrl``: a ``postgresql://`` URL whose password never shows;
* ``pool`` -- ``open_pool``/``connect`` (search_path ``kvbox``, one-line errors without
  the password), ``translate`` (driver errors -> kvbox errors), ``retryable`` (a
  lost race: run the transaction again), ``unreachable`` (the server is not there)
  and ``lost`` (an open connection died: a fresh one may work);
* ``migrations`` -- the one numbered sequence of schema migrations (``migrate``,
  ``check``, ``LATEST``); a new table is a new ``migrations/NNNN_name.sql``.
"""

from __future__ import annotations

from kvbox.core.pg import migrations
from kvbox.core.pg.pool import (
    DRIVER_ERRORS,
    SCHEMA,
    connect,
    lost,
    open_pool,
    retryable,
    translate,
    unreachable,
)
from kvbox.core.pg.url import PgUrl, is_postgres_url

__all__ = [
    "DRIVER_ERRORS",
    "SCHEMA",
    "PgUrl",
    "connect",
    "is_postgres_url",
    "lost",
    "migrations",
    "open_pool",
    "retryable",
    "translate",
    "unreachable",
]
