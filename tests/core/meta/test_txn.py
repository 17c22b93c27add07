"""The rules over a transaction whose reads may need an asynchronous load first.

Layer: tests/core/meta. Rules: ``kvbox.core.meta.txn.run_loading`` is how a backend with
asynchronous I/O (PostgreSQL on asyncpg) runs the shared rules: a read it has no rows
for raises ``NeedRows``, the run is undone, the rows are loaded, and the run starts
again. Here the memory store's own transaction plays that backend: it "knows" a key
only after a load, so every first touch of a key costs a rerun, also in the middle of
an ``AtomicOp`` whose first key was already written. The outcome must be exactly what
the same calls do on a plain memory store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from functools import partial
from typing import Any, cast

from kvbox.core.meta import rules
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.meta.txn import MetaTxn, NeedRows, UndoLog, run_loading
from kvbox.core.model import (
    AtomicOp,
    Bucket,
    ChunkRef,
    Condition,
    CondKind,
    DeleteOp,
    ObjectVersion,
    PurgeOp,
    PutOp,
    Versioning,
    WriteOp,
    WriteResult,
)

CHUNK = ChunkRef(hashlib.sha256(b"c").hexdigest(), 5)


class _Lazy:
    """The memory store's transaction, knowing a key only once it was loaded."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.loaded: set[tuple[str, str]] = set()
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def key(self, bucket: str, key: str) -> Any:
        if (bucket, key) not in self.loaded:

            async def load() -> None:
                await asyncio.sleep(0)  # a real round trip would be here
                self.loaded.add((bucket, key))
                self.loads += 1

            raise NeedRows(load)
        return self._inner.key(bucket, key)

    def isolated(self, fn: Any, op: WriteOp) -> Any:
        return fn(self, op)


def _v(bucket: str, key: str, vid: str, data: bytes = b"x", chunks: bool = False) -> ObjectVersion:
    return ObjectVersion(
        bucket,
        key,
        vid,
        CHUNK.size if chunks else len(data),
        hashlib.md5(data).hexdigest(),
        1,
        inline=None if chunks else data,
        chunks=(CHUNK,) if chunks else (),
    )


def _calls() -> list[list[WriteOp]]:
    marker = ObjectVersion("ver", "a", "M1", mtime_ns=5)
    return [
        [PutOp(_v("off", "a", "V1", chunks=True)), PutOp(_v("ver", "a", "V2"))],
        [PutOp(_v("ver", "a", "V3")), DeleteOp("ver", "a", None, marker)],
        # The first sub-op is written before the second key needs a load: the rerun
        # must not find it written twice.
        [AtomicOp((PutOp(_v("off", "b", "V4")), PutOp(_v("ver", "b", "V5", chunks=True))))],
        [PutOp(_v("off", "a", "V6"), Condition(CondKind.IF_VERSION, "V1"))],
        [DeleteOp("ver", "a", "V2"), PurgeOp("ver", "b"), PutOp(_v("ver", "c", "V7"))],
        [AtomicOp((PutOp(_v("off", "c", "V8")), DeleteOp("ver", "c", "V7")))],
    ]


def _unseq(v: ObjectVersion | None) -> ObjectVersion | None:
    """A version without its seq: a rerun leaves gaps in the numbering, no more."""
    return None if v is None else dataclasses.replace(v, seq=0)


def _plain(r: WriteResult) -> WriteResult:
    return dataclasses.replace(
        r,
        written=tuple(dataclasses.replace(v, seq=0) for v in r.written),
        removed=tuple(dataclasses.replace(v, seq=0) for v in r.removed),
        current=_unseq(r.current),
    )


async def _state(store: MemoryMetaStore) -> object:
    out: dict[str, object] = {"refs": await store.chunk_refs()}
    for b in ("off", "ver"):
        versions = [_unseq(v) for v in await store.list_bucket_versions(b)]
        listed = [v.key for v in await store.list_objects(b)]
        out[b] = (versions, listed, await store.stats(b))
    return out


async def _new_store() -> MemoryMetaStore:
    store = MemoryMetaStore()
    await store.create_bucket(Bucket("off"))
    await store.create_bucket(Bucket("ver"))
    await store.set_versioning("ver", Versioning.ENABLED)
    return store


async def test_reruns_after_loads_decide_as_a_single_run_would() -> None:
    plain, lazy_store = await _new_store(), await _new_store()
    lazy = _Lazy(lazy_store._t)
    txn = cast(MetaTxn[Any], lazy)
    for ops in _calls():
        want = await plain.commit(ops)
        got = await run_loading(txn, partial(rules.commit, ops=ops))
        assert [_plain(r) for r in got] == [_plain(r) for r in want], ops
    assert lazy.loads == len(lazy.loaded) >= 5, "every key should have cost one load"
    assert await _state(lazy_store) == await _state(plain)


async def test_an_error_keeps_what_the_other_ops_did() -> None:
    """A commit's op error is raised after the other ops were applied: the driver must
    keep them (and still rerun for loads before the error)."""
    plain, lazy_store = await _new_store(), await _new_store()
    txn = cast(MetaTxn[Any], _Lazy(lazy_store._t))
    ops: list[WriteOp] = [PutOp(_v("missing", "k", "V1")), PutOp(_v("off", "k", "V2"))]
    for store_run in (plain.commit(ops), run_loading(txn, lambda t: rules.commit(t, ops))):
        try:
            await store_run
        except Exception as exc:
            assert type(exc).__name__ == "NoSuchBucket"
        else:
            raise AssertionError("the missing bucket was not reported")
    assert await _state(lazy_store) == await _state(plain)
    assert [v.key for v in await lazy_store.list_objects("off")] == ["k"]


class _Counter(UndoLog):
    """The smallest overlay: one number, each change logged with its undo."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def add(self, k: int) -> None:
        self.n += k
        self._log(lambda: setattr(self, "n", self.n - k))

    def logging(self) -> bool:
        return self._undo is not None


def test_undo_log_savepoints_nest_and_roll_back_newest_first() -> None:
    c = _Counter()
    c.add(1)  # no savepoint open: nothing is logged, nothing can be undone
    assert not c.logging()
    outer = c.savepoint()
    c.add(10)
    inner = c.savepoint()
    c.add(100)
    c.rollback_to(inner)  # only the inner savepoint's change goes
    assert c.n == 11
    inner = c.savepoint()
    c.add(1000)
    c.release(inner)  # kept, and still undoable by the outer savepoint
    assert c.n == 1011 and c.logging()
    c.rollback_to(outer)
    assert c.n == 1
    assert not c.logging() and c._open == 0  # the log goes with the outermost savepoint
    kept = c.savepoint()
    c.add(5)
    c.release(kept)
    assert c.n == 6 and not c.logging()
