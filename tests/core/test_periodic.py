"""``kvbox.core.periodic.Periodic``: the schedule every background worker of the core runs
on (scrubber, free space, leftover sweep, lifecycle, the PostgreSQL listener).

Layer: tests/core. Real event loop, real timers of a few milliseconds; every wait is on an
event the work sets, bounded by a timeout, never a sleep that hopes.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from kvbox.core.periodic import Periodic

#: Bound on any wait for something that should happen within milliseconds.
SOON = 5.0


class Work:
    """A run that records itself; ``hold`` keeps a run going until released."""

    def __init__(self, fail: list[Exception] | None = None) -> None:
        self.runs = 0
        self.active = 0
        self.most_active = 0
        self.cancelled = 0
        self.fail = fail or []
        self.hold: asyncio.Event | None = None
        self.ran = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.ran.set()
        try:
            if self.hold is not None:
                await self.hold.wait()
            await asyncio.sleep(0.002)  # a run takes time: the next one must wait for it
            if self.fail:
                raise self.fail.pop(0)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def runs_reach(self, n: int) -> None:
        async with asyncio.timeout(SOON):
            while self.runs < n:
                self.ran.clear()
                await self.ran.wait()


async def test_runs_repeat_at_once_after_a_zero_delay_and_never_overlap() -> None:
    work = Work()
    p = Periodic("t-repeat", work, 0.001, delay=0)
    p.start()
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name() == "t-repeat"]
    try:
        await work.runs_reach(5)
    finally:
        await p.stop()
    assert work.most_active == 1
    assert not p.running and work.active == 0


async def test_the_first_run_waits_one_interval_by_default() -> None:
    work = Work()
    p = Periodic("t-wait", work, 3600)
    p.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert work.runs == 0
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "t-wait")
    await p.stop()  # cancels the wait at once
    assert task.done() and work.runs == 0


async def test_a_failure_goes_to_on_error_and_the_schedule_goes_on() -> None:
    boom, bad = RuntimeError("boom"), ValueError("bad")
    seen: list[Exception] = []
    work = Work(fail=[boom, bad])
    p = Periodic("t-fail", work, 0.001, delay=0, on_error=seen.append)
    p.start()
    try:
        await work.runs_reach(3)
    finally:
        await p.stop()
    assert seen == [boom, bad]


async def test_a_failure_is_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    work = Work(fail=[RuntimeError("boom")])
    p = Periodic("t-log", work, 0.001, delay=0)
    with caplog.at_level(logging.ERROR, logger="kvbox.periodic"):
        p.start()
        try:
            await work.runs_reach(2)
        finally:
            await p.stop()
    [rec] = [r for r in caplog.records if r.name == "kvbox.periodic"]
    assert rec.getMessage() == "t-log failed; it runs again in 0.001 s"
    assert rec.exc_info is not None and str(rec.exc_info[1]) == "boom"


async def test_stop_cancels_a_run_in_progress_and_waits_for_its_end() -> None:
    work = Work()
    work.hold = asyncio.Event()  # never set: the run would last forever
    p = Periodic("t-stop", work, 0.001, delay=0)
    p.start()
    await work.runs_reach(1)
    await p.stop()
    assert work.cancelled == 1 and work.active == 0
    await p.stop()  # a second stop is harmless


async def test_start_is_idempotent_restartable_and_off_at_zero_interval() -> None:
    work = Work()
    p = Periodic("t-twice", work, 0.001, delay=0)
    p.start()
    p.start()
    try:
        await work.runs_reach(3)
        assert sum(t.get_name() == "t-twice" for t in asyncio.all_tasks()) == 1
    finally:
        await p.stop()
    p.start()  # again after a stop
    try:
        await work.runs_reach(4)
    finally:
        await p.stop()
    off = Periodic("t-off", work, 0)
    off.start()
    assert not off.running
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "t-off"]
