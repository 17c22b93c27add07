"""Unit-level regression tests for the first review's bugs, over the real in-process code.

Layer: tests/core. Rules: the real ``Store``, ``KvCommands`` and ``GwkvConnection`` over
the in-memory (or SQLite) stores, stepped deterministically on the test's own event loop,
for the races an end-to-end test can only hit by luck (tests/e2e/test_gwkv_connection.py has
their socket-level twins). The only stand-in is ``_Transport``, a minimal asyncio
transport that records what the connection writes; nothing of kvbox is mocked. Where a bug
was about cost (cache eviction), the tests count operations, never time them.
"""

from __future__ import annotations

import asyncio
import gc
import re
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.store import Store
from kvbox.errors import NoSuchKey
from kvbox.kv.commands import KvCommands
from kvbox.proto import gwkv as p
from kvbox.server.gwkv import GwkvConnection, GwkvServer

_OK_VERSION = rb"OK ([0-9A-HJKMNP-TV-Z]{26})\n"


async def _memory_store(**kwargs: Any) -> Store:
    store = Store(MemoryMetaStore(), MemoryBlobStore(), **kwargs)
    await store.open()
    await store.ensure_bucket("kv")
    return store


async def _steps(n: int) -> None:
    """Let the loop run ``n`` rounds of ready callbacks."""
    for _ in range(n):
        await asyncio.sleep(0)


async def _until(pred: Any, max_steps: int = 2000) -> None:
    for _ in range(max_steps):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


class _Transport:
    """Just enough of an ``asyncio.Transport`` for ``GwkvConnection``: it records the
    bytes written and, like a real transport, reports the close to the protocol."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False
        self.eof_written = False
        self.protocol: GwkvConnection | None = None

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _connect(store: Store, **server_kwargs: Any) -> tuple[GwkvConnection, _Transport]:
    server = GwkvServer(KvCommands(store, "kv"), **server_kwargs)
    conn = server.protocol_factory()
    transport = _Transport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


# --- R13: SET batches of one connection never overtake each other ----------------------------


@pytest.mark.parametrize("delay", range(8))
async def test_set_batches_split_across_reads_commit_in_order(delay: int) -> None:
    """``GET miss`` + ``SET k first`` arrive in one read, ``SET k second`` + ``GET k`` in
    the next, ``delay`` loop steps after the GET's reply is out. The first SET batch waits
    behind the GET; before the fix a second batch arriving after the GET finished but
    before the first batch resumed started at once and committed first, so ``k`` ended as
    ``first`` although the client's last SET was ``second``. Every delay must give the
    request order."""
    store = await _memory_store()
    conn, t = _connect(store)
    conn.data_received(b"GET miss\nSET k first\n")
    await _until(lambda: t.out.startswith(b"NOTFOUND\n"))
    await _steps(delay)
    conn.data_received(b"SET k second\nGET k\n")
    await _until(lambda: t.out.count(b"\n") >= 4)
    m = re.fullmatch(b"NOTFOUND\n" + _OK_VERSION + _OK_VERSION + b"VALUE second\n", bytes(t.out))
    assert m, bytes(t.out)
    head = await store.head("kv", "k")
    assert head is not None and head.inline == b"second"
    assert head.version_id == m.group(2).decode(), "the newest version is the second SET's"
    conn.connection_lost(None)
    await store.close()


# --- R3: a client that goes away mid-upload ----------------------------------------------------


def _live_put_stream_frames() -> list[types.FrameType]:
    """Frames of ``Store.put_stream`` calls still alive (e.g. held by a traceback)."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, types.FrameType) and o.f_code.co_qualname == "Store.put_stream"
    ]


@pytest.mark.parametrize("how", ["eof", "lost"])
async def test_upload_cut_short_ends_its_write_and_frees_its_buffer(how: str) -> None:
    """A streamed BSET (over 1 MiB) whose client half-closes (``eof``) or vanishes
    (``lost``) after part of the payload: the store write must end with an error at once,
    nothing is stored, a half-closed client gets one ``ERR`` line and the close, and the
    bytes buffered for the value are freed by reference counting. The server tunes the
    cyclic GC to run rarely (server/app.py), so a buffer kept alive by an exception's
    traceback cycle would stay for minutes: the check runs with the GC disabled."""
    store = await _memory_store()
    conn, t = _connect(store)
    gc.collect()
    gc.disable()
    try:
        conn.data_received(b"BSET big 3000000\n")
        for _ in range(20):
            conn.data_received(b"x" * 65536)
        await _steps(20)
        if how == "eof":
            keep_open = conn.eof_received()
            assert keep_open, "the transport must stay open for the reply"
        else:
            t.closing = True
            conn.connection_lost(ConnectionResetError())
        await _until(lambda: t.closing, max_steps=200)
        await _steps(20)
        assert not [f for f in asyncio.all_tasks() if f is not asyncio.current_task()], (
            "a task of the cut-short upload is still waiting"
        )
        assert not _live_put_stream_frames(), "the upload's buffer is kept alive by a cycle"
    finally:
        gc.enable()
    if how == "eof":
        lines = bytes(t.out).splitlines(keepends=True)
        assert len(lines) == 1 and lines[0].startswith(b"ERR "), lines
    assert await store.head("kv", "big") is None
    await store.close()


# --- R4: readers pin the chunks of the version they read ---------------------------------------


async def test_reader_keeps_overwritten_and_deleted_chunks_until_done() -> None:
    """A read of a chunked version pins its chunks: an overwrite (and then a delete) that
    frees them while the reader is mid-value must not let the collector remove them; once
    the reader is done they are collected."""
    store = await _memory_store(inline_max=1024, chunk_size=4096)
    blobs = store.blobs
    assert isinstance(blobs, MemoryBlobStore)
    old = bytes(range(256)) * 48  # 3 chunks
    new = bytes(reversed(range(256))) * 48
    await store.put("kv", "k", old)
    head_old = await store.head("kv", "k")
    assert head_old is not None and len(head_old.chunks) == 3
    reader_old = store.iter_bytes(head_old)
    got_old = [await anext(reader_old)]
    await store.put("kv", "k", new)
    head_new = await store.head("kv", "k")
    assert head_new is not None
    reader_new = store.iter_bytes(head_new)
    got_new = [await anext(reader_new)]
    await store.delete("kv", "k")
    await _steps(50)  # the collector gets every chance to run
    await asyncio.sleep(0.05)
    got_old += [piece async for piece in reader_old]
    got_new += [piece async for piece in reader_new]
    assert b"".join(got_old) == old
    assert b"".join(got_new) == new

    async def chunks_left() -> list[str]:
        return [c async for c in blobs.list_chunks()]

    for _ in range(100):
        if not await chunks_left():
            break
        await asyncio.sleep(0.01)
    assert not await chunks_left(), "pins released, so the freed chunks are collected"
    await store.close()


async def test_reading_a_version_removed_before_the_read_starts_raises() -> None:
    """The other side of pinning: a version whose chunks are already gone can't be pinned;
    the read says so (``NoSuchKey``) instead of returning a truncated value."""
    store = await _memory_store(inline_max=1024, chunk_size=4096)
    await store.put("kv", "k", b"a" * 10_000)
    stale = await store.head("kv", "k")
    assert stale is not None
    await store.put("kv", "k", b"b" * 10_000)
    for _ in range(100):
        if not [
            c async for c in store.blobs.list_chunks() if c in {x.chunk_id for x in stale.chunks}
        ]:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(NoSuchKey):
        async for _ in store.iter_bytes(stale):
            pass
    await store.close()


# --- DELETE raced by two requests ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "memory"])
async def kv(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KvCommands]:
    if request.param == "sqlite":
        store = Store(SqliteMetaStore(tmp_path / META_FILE), LocalDirBlobStore(tmp_path))
    else:
        store = Store(MemoryMetaStore(), MemoryBlobStore())
    await store.open()
    await store.ensure_bucket("kv")
    yield KvCommands(store, "kv")
    await store.close()


async def test_racing_deletes_exactly_one_ok(kv: KvCommands) -> None:
    """Two DELETEs of one key started together: both see the key (it is cached), both ask
    the store to delete it. Only the one that removed something may say OK. Over SQLite
    the commit is a thread hop, so the two interleave exactly that way every time."""
    for i in range(5):
        reply = await kv.execute(p.Set(f"k{i}", b"v"))
        assert isinstance(reply, bytes) and reply.startswith(b"OK ")
        replies = await asyncio.gather(kv.execute(p.Delete(f"k{i}")), kv.execute(p.Delete(f"k{i}")))
        assert sorted(replies) == [p.notfound(), p.ok()], replies
        assert await kv.execute(p.Get(f"k{i}")) == p.notfound()
