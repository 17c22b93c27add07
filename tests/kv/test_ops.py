"""kvbox.kv.ops: the key-value operations, with plain arguments and plain results."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.model import ObjectVersion
from kvbox.core.store import MISS, Store
from kvbox.errors import ConditionFailed
from kvbox.kv.ops import KvOps, Value
from kvbox.metrics import ServerCounters


@pytest.fixture
async def ops() -> AsyncIterator[KvOps]:
    store = Store(MemoryMetaStore(), MemoryBlobStore())
    await store.open()
    await store.ensure_bucket("kv")
    yield KvOps(store, "kv", ServerCounters())
    await store.close()


async def test_writes_answer_version_ids(ops: KvOps) -> None:
    first = await ops.set("a", b"1")
    got = await ops.get("a")
    assert isinstance(got, ObjectVersion) and got.version_id == first and got.inline == b"1"
    assert ops.peek("a") is not MISS
    second = await ops.set_if("a", first, b"2")
    with pytest.raises(ConditionFailed) as lost:
        await ops.set_if("a", first, b"3")
    assert lost.value.current == second
    with pytest.raises(ConditionFailed):
        await ops.set_if("a", None, b"4")  # only if absent: it is not
    assert len(await ops.set_many([("b", b"x"), ("c", b"y")])) == 2
    assert await ops.count() == 3


async def test_delete_says_whether_it_removed_something(ops: KvOps) -> None:
    await ops.set("a", b"1")
    assert await ops.delete("a") is True
    assert await ops.delete("a") is False
    gone = await ops.get("a")
    assert gone is None or gone.is_delete_marker


async def test_reads_give_bytes_inline_or_streamed(ops: KvOps) -> None:
    assert await ops.read_newest("missing") is None
    await ops.set("small", b"tiny")
    small = await ops.read_newest("small")
    assert isinstance(small, Value) and small.inline == b"tiny" and small.stream is None
    big = bytes(range(256)) * 1024  # 256 KiB: stored in chunks, not inline
    version = await ops.set("big", big)
    found = await ops.read_newest("big")
    assert isinstance(found, Value) and found.inline is None and found.stream is not None
    assert found.version.version_id == version
    assert b"".join([piece async for piece in found.stream]) == big
    by_id = await ops.read_version("big", version)
    assert isinstance(by_id, Value) and by_id.version.size == len(big)
    assert by_id.stream is not None
    await by_id.stream.aclose()  # type: ignore[attr-defined]


async def test_versions_and_info_are_plain_data(ops: KvOps) -> None:
    await ops.set("a", b"1")
    assert [v.size for v in await ops.versions("a")] == [1]
    info = dict(await ops.info())
    assert info["bucket"] == "kv" and info["objects"] == "1"
