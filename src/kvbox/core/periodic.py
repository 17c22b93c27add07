"""``Periodic``: one background task that runs a piece of work again and again.

Layer: core (asyncio only; knows nothing of what it runs). The storage core keeps several
workers that wake up on a schedule -- the scrubber, the free-space measurement, the
leftover sweep, lifecycle passes, the PostgreSQL listener's reconnects -- and each used to
write its own start/stop/loop. They differed only in what they run, how long they wait,
and what a failure means, so those are the arguments here. Rules:

* **Runs never overlap.** The wait is counted from the end of one run to the start of
  the next (``interval``), so a run that takes longer than the interval delays the next
  one instead of piling up behind it.
* **The first run** comes ``delay`` seconds after ``start`` (default: one ``interval``,
  so a restart loop does not run a heavy pass at every start; 0: at once).
* **A failure never ends the schedule.** An ``Exception`` from a run goes to ``on_error``
  (default: logged with its traceback on ``kvbox.periodic``) and the next run comes on
  time: a worker that died silently would leave the server running without the work
  (orphans never removed, free space never measured again) and nothing would say so.
* **``stop`` cancels** a run in progress or the wait, and returns once the task has ended:
  what the work holds is released by its own ``finally`` blocks before ``stop`` returns.
* ``interval <= 0`` means "never": ``start`` does nothing (``--scrub-interval 0`` and the
  like turn a worker off without a second switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("kvbox.periodic")


class Periodic:
    """Runs ``work`` every ``interval`` seconds in one task named ``name`` (module
    docstring)."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        interval: float,
        *,
        delay: float | None = None,
        on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.delay = interval if delay is None else delay
        self._work = work
        self._on_error = on_error if on_error is not None else self._log_error
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the task was started and not stopped."""
        return self._task is not None

    def start(self) -> None:
        """Start the schedule on the running event loop (again after ``stop``); nothing
        if it runs already or ``interval <= 0``."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the wait or the run in progress and wait until the task has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        wait = self.delay
        while True:
            await asyncio.sleep(wait)
            wait = self.interval
            try:
                await self._work()
            except Exception as exc:  # the schedule outlives any failure
                self._on_error(exc)

    def _log_error(self, exc: Exception) -> None:
        log.error("%s failed; it runs again in %g s", self.name, self.interval, exc_info=exc)
