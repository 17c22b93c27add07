"""kvbox.core.integrity: damaged reads counted every time, logged once per object."""

from __future__ import annotations

import logging
import threading

import pytest

from kvbox.core.integrity import DamageLog
from kvbox.errors import DataDamaged


def _err(key: str, chunk: str = "c1", version: str = "v1") -> DataDamaged:
    return DataDamaged(
        f"chunk {chunk} bad", bucket="b", key=key, version_id=version, chunk_id=chunk
    )


def test_logged_once_per_object_counted_every_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "kvbox.integrity")
    d = DamageLog()
    for _ in range(5):
        d.report(_err("a"))
    d.report(_err("a", chunk="c2"))  # another chunk of the same version: same object
    d.report(_err("a", version="v2"))  # another version: another object
    d.report(DataDamaged("chunk x bad", chunk_id="x"))  # no version known: by chunk
    assert d.reads == 8 and d.objects == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("damaged: b/a version v1: chunk c1 bad; not served")


def test_memory_is_bounded_and_threads_are_safe() -> None:
    d = DamageLog(remember=10)

    def hammer(base: int) -> None:
        for i in range(200):
            d.report(_err(f"k{base}-{i % 20}"))

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.reads == 800
    assert len(d._seen) == 10  # the oldest are forgotten (and would be logged again)
