"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.store import Store


@pytest.fixture(params=["sqlite", "memory"])
async def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open Store with no bucket, over each metadata backend in turn."""
    if request.param == "sqlite":
        s = Store(SqliteMetaStore(tmp_path / META_FILE), LocalDirBlobStore(tmp_path))
    else:
        s = Store(MemoryMetaStore(), MemoryBlobStore())
    await s.open()
    yield s
    await s.close()
