"""The Store's background chunk work (``core/store/chunks.Background``): a failure is
said once, at once, in the log -- never asyncio's "Task exception was never retrieved".

Found with PostgreSQL killed under load (tests/faults/test_gateway_faults.py): the
collection of a failed write's chunks met the metadata store down.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from kvbox.core.store.chunks import Background
from kvbox.errors import MetaUnavailable


async def test_a_failure_of_background_work_is_logged_once_and_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def meets_the_database_down() -> None:
        raise MetaUnavailable("connection refused")

    async def has_a_bug() -> None:
        raise ZeroDivisionError

    background = Background()
    with caplog.at_level(logging.WARNING):
        background.spawn(meets_the_database_down())
        background.spawn(has_a_bug())
        await background.drain()
        await asyncio.sleep(0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "never retrieved" not in caplog.text
