"""kvbox.server.budget: shares granted in order, waits bounded, nothing lost on the way.

Layer: tests/server (in process; the doors' use of it is driven in tests/e2e/test_memory.py).
"""

from __future__ import annotations

import asyncio

import pytest

from kvbox.server.budget import MemoryBudget, Share


async def test_shares_fit_then_wait_in_order() -> None:
    b = MemoryBudget(100, wait=5)
    first, second, third = Share(), Share(), Share()
    assert await b.take(first, 60)
    t2 = asyncio.create_task(b.take(second, 50))
    await asyncio.sleep(0.01)
    # A small body may not jump the queue even though it would fit.
    assert not b.try_take(third, 10)
    t3 = asyncio.create_task(b.take(third, 10))
    await asyncio.sleep(0.01)
    assert not t2.done() and not t3.done()
    b.release(first)
    assert await t2 and await t3
    assert (b.used, second.n, third.n, b.peak, b.waited) == (60, 50, 10, 60, 2)
    b.release(second)
    b.release(second)  # twice is harmless
    b.release(third)
    assert b.used == 0


async def test_a_share_bigger_than_the_budget_is_capped() -> None:
    b = MemoryBudget(100, wait=5)
    big = Share()
    assert await b.take(big, 10_000)
    assert big.n == 100 and b.used == 100
    b.release(big)
    assert b.used == 0


async def test_wait_is_bounded_and_refusal_is_counted() -> None:
    b = MemoryBudget(100, wait=0.2)
    held, late = Share(), Share()
    assert await b.take(held, 100)
    assert not await b.take(late, 1)
    assert (late.n, b.refused, b.used) == (0, 1, 100)
    b.release(held)
    assert await b.take(late, 1)


async def test_a_client_that_went_away_stops_waiting_and_is_not_a_refusal() -> None:
    b = MemoryBudget(100, wait=30)
    held, waiting = Share(), Share()
    assert await b.take(held, 100)
    gone = False
    task = asyncio.create_task(b.take(waiting, 50, gone=lambda: gone))
    await asyncio.sleep(0.05)
    gone = True
    assert not await asyncio.wait_for(task, 2)
    assert b.refused == 0 and waiting.n == 0
    b.release(held)
    assert b.used == 0


async def test_cancelled_waiter_gives_back_what_it_was_granted() -> None:
    b = MemoryBudget(100, wait=5)
    held, waiting, after = Share(), Share(), Share()
    assert await b.take(held, 100)
    task = asyncio.create_task(b.take(waiting, 80))
    await asyncio.sleep(0.01)
    b.release(held)  # grants the waiter...
    task.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waiting.n == 0 and b.used == 0
    assert await b.take(after, 100)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    b = MemoryBudget(100, wait=5)
    held, a, c = Share(), Share(), Share()
    assert await b.take(held, 90)
    ta = asyncio.create_task(b.take(a, 50))
    tc = asyncio.create_task(b.take(c, 5))
    await asyncio.sleep(0.01)
    ta.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ta
    assert await asyncio.wait_for(tc, 1)  # the head is gone: the next one fits now
    assert b.used == 95
