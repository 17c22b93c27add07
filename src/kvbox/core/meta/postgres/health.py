"""Whether the metadata database answers: what ``/readyz`` tells a load balancer.

Layer: core (storage of ``kvbox.core.meta.postgres``). Rules:

* A gateway that cannot reach PostgreSQL can serve nothing (every read and write needs
  it), so it should leave the load balancer's rotation (Kubernetes takes a pod whose
  readiness probe fails out of its Service) while it stays alive (its liveness,
  ``/healthz``, is not this: restarting it would not bring the database back).
* ``Health`` probes every ``PROBE_SECONDS`` with ``SELECT 1`` on a pooled connection,
  the wait for a connection included, bounded by ``PROBE_TIMEOUT``: a database that is
  down, restarting, partitioned away or out of connection slots is "unreachable" within
  about that long, and reachable again at the first probe that answers.
* A request that met ``MetaUnavailable`` marks it unreachable at once (``down``), so
  ``/readyz`` does not lag behind the first client who found out; the next probe that
  answers marks it up again.
* ``problem`` is one line (the cause, never the password), or None while reachable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import asyncpg

from kvbox.core.periodic import Periodic
from kvbox.core.pg import PgUrl, translate
from kvbox.errors import MetaUnavailable

log = logging.getLogger("kvbox.meta")

#: Seconds between probes: a load balancer's probe (Kubernetes: every 10 s by default)
#: sees a change within about one of these after it happened.
PROBE_SECONDS: Final = 1.0
#: Seconds a probe may take, a pooled connection's wait included, before the database
#: counts as unreachable (a healthy server answers ``SELECT 1`` in well under 10 ms; a
#: pool whose every connection is busy for this long is no better for a new request).
PROBE_TIMEOUT: Final = 2.0


class Health:
    """Reachability of one store's database (module docstring)."""

    def __init__(self, pool: asyncpg.Pool, url: PgUrl) -> None:
        self.pool = pool
        self.url = url
        #: Why the database is not reachable (one line), or None.
        self.problem: str | None = None
        self._schedule = Periodic("kvbox-meta-pg-health", self._check, PROBE_SECONDS, delay=0)

    def start(self) -> None:
        self._schedule.start()

    async def stop(self) -> None:
        await self._schedule.stop()

    def down(self, exc: MetaUnavailable) -> None:
        """A request found the database unreachable."""
        if self.problem is None:
            log.warning("metadata store unreachable: %s", exc.cause)
        self.problem = exc.cause

    async def probe(self) -> str | None:
        """One probe: None if the database answered, else why not."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except TimeoutError:
            return f"no answer within {PROBE_TIMEOUT:g} s"
        except Exception as exc:  # whatever it is, the probe says so, never raises
            err = translate(exc, self.url)
            return err.cause if isinstance(err, MetaUnavailable) else str(err)
        return None

    async def _check(self) -> None:
        problem = await self.probe()
        if problem is None and self.problem is not None:
            log.warning("metadata store reachable again")
        elif problem is not None and self.problem is None:
            log.warning("metadata store unreachable: %s", problem)
        self.problem = problem
