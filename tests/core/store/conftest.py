"""Fixtures of the Store's tests: ``store`` over each metadata backend."""

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
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = Store(
            SqliteMetaStore(tmp_path / META_FILE),
            LocalDirBlobStore(tmp_path),
            inline_max=1024,
            chunk_size=4096,
        )
    else:
        s = Store(MemoryMetaStore(), MemoryBlobStore(), inline_max=1024, chunk_size=4096)
    await s.open()
    await s.ensure_bucket("kv")
    yield s
    await s.close()


async def pieces(data: bytes, piece: int) -> AsyncIterator[bytes]:
    """``data`` as an async source of ``piece``-byte pieces (a request body)."""
    for i in range(0, len(data), piece):
        yield data[i : i + piece]
