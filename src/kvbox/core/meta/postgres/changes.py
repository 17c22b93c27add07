"""What other gateways changed, heard through PostgreSQL's LISTEN/NOTIFY.

Layer: core (storage of ``kvbox.core.meta.postgres``). Rules:

* A transaction that changes a bucket (its settings, policy, versioning, existence) or a
  user or key sends one NOTIFY on ``CHANNEL`` with what changed (``PgTxn._notify``);
  PostgreSQL delivers it at COMMIT, to every listening gateway, in commit order.
* ``ChangeListener`` holds one connection of its own, LISTENing, and hands each change
  that another gateway made to ``on_change``: bucket names (or None for "any bucket may
  have changed") and whether users or access keys changed. So a gateway's cached bucket
  settings and key lookups follow another gateway's change within the time a
  notification takes (milliseconds on a LAN; the bound that
  docs/ARCHITECTURE.md states, ``BOUND_SECONDS``, leaves room for a busy loop).
* Notifications sent while the connection was down are lost, so every (re)connect
  starts with ``on_change(None, True)``; a lost connection is retried every
  ``RETRY_SECONDS`` and, until it is back, the gateway serves what it knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import asyncpg

from kvbox.core.meta.postgres.txn import CHANNEL
from kvbox.core.periodic import Periodic
from kvbox.core.pg import PgUrl, connect
from kvbox.errors import StorageError

log = logging.getLogger("kvbox.meta")

#: Seconds between attempts to get the listening connection back.
RETRY_SECONDS: Final = 1.0
#: The bound on how long another gateway serves an old bucket setting after a change
#: committed, while PostgreSQL is reachable (docs/ARCHITECTURE.md, tested end to end).
BOUND_SECONDS: Final = 1.0

OnChange = Callable[[Sequence[str] | None, bool], Awaitable[None]]
_Change = tuple[Sequence[str] | None, bool]


class ChangeListener:
    """LISTEN on ``CHANNEL`` for a store whose own changes say ``origin`` (module
    docstring)."""

    def __init__(self, url: PgUrl, origin: str, on_change: OnChange) -> None:
        self.url = url
        self.origin = origin
        self.on_change = on_change
        #: One listening session per run, the next one ``RETRY_SECONDS`` after it ended.
        self._sessions = Periodic(
            "kvbox-meta-pg-listen", self._session, RETRY_SECONDS, delay=0, on_error=_failed
        )
        self._queue: asyncio.Queue[_Change] = asyncio.Queue()
        #: Set while the connection is up and LISTENing (tests wait for it).
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._sessions.start()

    async def stop(self) -> None:
        await self._sessions.stop()

    async def _session(self) -> None:
        """One connection: LISTEN, and deliver changes until the connection is lost."""
        try:
            conn = await connect(self.url, application="kvbox-listen")
        except StorageError as exc:
            log.warning("listening for other gateways' changes: %s", exc)
            return
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c, ev=lost: ev.set())
            await conn.add_listener(CHANNEL, self._heard)
            self.listening.set()
            self._queue.put_nowait((None, True))  # anything may have changed meanwhile
            await self._deliver(lost)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("listening for other gateways' changes: %s", exc)
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)

    async def _deliver(self, lost: asyncio.Event) -> None:
        """Hand changes to ``on_change`` until the connection is lost."""
        while not lost.is_set():
            got = asyncio.ensure_future(self._queue.get())
            gone = asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait({got, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if not got.done():
                    got.cancel()
            if got.done() and not got.cancelled():
                names, users = got.result()
                try:
                    await self.on_change(names, users)
                except Exception:
                    log.exception("applying another gateway's change")
                    await self.on_change(None, True)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            change = json.loads(str(payload))
        except ValueError:
            self._queue.put_nowait((None, True))
            return
        if change.get("o") == self.origin:
            return
        if change.get("all"):
            self._queue.put_nowait((None, True))
        elif change.get("b") or change.get("u"):
            self._queue.put_nowait((list(change.get("b") or ()), bool(change.get("u"))))


def _failed(exc: Exception) -> None:
    # A bug in a session: say it, and listen again (a gateway that stopped listening
    # would serve other gateways' old bucket settings for ever, silently).
    log.error("listening for other gateways' changes failed", exc_info=exc)
