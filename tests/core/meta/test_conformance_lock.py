"""Object lock decided inside the metadata transaction, by every MetaStore.

Layer: tests/core/meta. Rules: the same ``factory``/``store`` fixtures as
``test_conformance`` (every MetaStore kind); everything goes straight to
``MetaStore.commit`` and the bucket calls, with no Store (and so no in-process mutex or
bucket cache) in front: what is refused here is refused for any writer of the database,
which is what several gateways sharing one PostgreSQL need. The contract is
``model.DeleteOp``, ``model.SetAttrsOp`` and ``kvbox.core.lock``.
"""

from __future__ import annotations

import pytest

from kvbox.core import lock
from kvbox.core.meta import MetaStore
from kvbox.core.model import DeleteOp, ObjectVersion, PutOp, SetAttrsOp, Versioning
from kvbox.errors import InvalidArgument, InvalidBucketState, ObjectLocked

from .test_conformance import Factory, bucket, factory, store, ver

__all__ = ["factory", "store"]  # fixtures, re-exported for pytest

NOW = 1_700_000_000_000_000_000  # ``ver``'s mtime
DAY = lock.NS_PER_DAY


async def _lock_bucket(store: MetaStore, default_days: int | None = None) -> str:
    b = await bucket(store, "locked", Versioning.ENABLED)
    default = (
        None if default_days is None else lock.DefaultRetention(lock.Mode.GOVERNANCE, default_days)
    )
    await store.set_bucket_attrs(b, {lock.CONFIG_ATTR: lock.LockConfig(default).to_attr()})
    return b


async def _put(store: MetaStore, b: str, key: str, attrs: dict[str, str]) -> ObjectVersion:
    v = ver(b, key)
    v = ObjectVersion(v.bucket, v.key, v.version_id, v.size, v.etag, v.mtime_ns, inline=v.inline,
                      attrs={**v.attrs, **attrs})  # fmt: skip
    [r] = await store.commit([PutOp(v)])
    (written,) = r.written
    return written


def _retained(mode: lock.Mode, until_ns: int, hold: bool | None = None) -> dict[str, str]:
    return lock.VersionLock(lock.Retention(mode, until_ns), hold).attrs()


async def test_a_locked_version_is_not_removed_by_any_writer(store: MetaStore) -> None:
    b = await _lock_bucket(store)
    gov = await _put(store, b, "k", _retained(lock.Mode.GOVERNANCE, NOW + DAY))
    comp = await _put(store, b, "k", _retained(lock.Mode.COMPLIANCE, NOW + DAY))
    for v in (gov, comp):
        with pytest.raises(ObjectLocked):
            await store.commit([DeleteOp(b, "k", v.version_id, now_ns=NOW)])
    with pytest.raises(ObjectLocked):  # COMPLIANCE: not even with the bypass
        await store.commit([DeleteOp(b, "k", comp.version_id, bypass_governance=True, now_ns=NOW)])
    assert [v.version_id for v in await store.list_versions(b, "k")] == [
        comp.version_id,
        gov.version_id,
    ]
    [r] = await store.commit([DeleteOp(b, "k", gov.version_id, bypass_governance=True, now_ns=NOW)])
    assert r.removed == (gov,)
    [r] = await store.commit([DeleteOp(b, "k", comp.version_id, now_ns=NOW + 2 * DAY)])
    assert [v.version_id for v in r.removed] == [comp.version_id], "the retention has passed"
    # Without a version id a delete only adds a marker, which object lock allows.
    held = await _put(store, b, "h", lock.VersionLock(None, True).attrs())
    [r] = await store.commit([DeleteOp(b, "h", None, ver(b, "h"), now_ns=NOW)])
    assert r.ok and not r.removed
    with pytest.raises(ObjectLocked):
        await store.commit([DeleteOp(b, "h", held.version_id, bypass_governance=True, now_ns=NOW)])


async def test_an_attrs_rewrite_keeps_the_stored_lock_and_a_lock_change_is_judged(
    store: MetaStore,
) -> None:
    b = await _lock_bucket(store)
    v = await _put(store, b, "k", _retained(lock.Mode.GOVERNANCE, NOW + DAY))
    # A tag/ACL rewrite that names no lock, or a forged one, keeps the stored entries.
    forged = {"tags": "a=b", **_retained(lock.Mode.GOVERNANCE, NOW + 1)}
    [r] = await store.commit([SetAttrsOp(b, "k", v.version_id, forged)])
    (w,) = r.written
    assert w.attrs["tags"] == "a=b"
    assert lock.VersionLock.of(w.attrs) == lock.VersionLock.of(v.attrs)
    shorter = lock.LockChange(lock.Retention(lock.Mode.GOVERNANCE, NOW + 10), now_ns=NOW)
    with pytest.raises(ObjectLocked):
        await store.commit([SetAttrsOp(b, "k", v.version_id, {}, shorter)])
    hold = lock.LockChange(legal_hold=True, now_ns=NOW)
    [r] = await store.commit([SetAttrsOp(b, "k", None, {}, hold)])
    (w,) = r.written
    assert w.attrs["tags"] == "a=b", "a lock change keeps the other attrs"
    assert lock.VersionLock.of(w.attrs).legal_hold is True
    plain = await bucket(store, "plain", Versioning.ENABLED)
    await _put(store, plain, "k", {})
    with pytest.raises(InvalidBucketState):
        await store.commit([SetAttrsOp(plain, "k", None, {}, hold)])
    with pytest.raises(InvalidArgument):
        await store.commit([SetAttrsOp(plain, "k", None, lock.VersionLock(None, True).attrs())])


async def test_new_versions_get_the_default_retention_from_the_stored_bucket(
    store: MetaStore,
) -> None:
    b = await _lock_bucket(store, default_days=1)
    v = await _put(store, b, "k", {})  # a writer that did not know of the default
    r = lock.VersionLock.of(v.attrs).retention
    assert r == lock.Retention(lock.Mode.GOVERNANCE, NOW + DAY)
    plain = await bucket(store, "plain")
    with pytest.raises(InvalidArgument):
        await _put(store, plain, "k", _retained(lock.Mode.GOVERNANCE, NOW + DAY))


async def test_versioning_and_lock_configuration_checked_against_the_stored_bucket(
    factory: Factory, store: MetaStore
) -> None:
    b = await _lock_bucket(store)
    with pytest.raises(InvalidBucketState):
        await store.set_versioning(b, Versioning.SUSPENDED)
    with pytest.raises(InvalidBucketState):
        await store.set_bucket_attrs(b, {lock.CONFIG_ATTR: None})
    plain = await bucket(store, "plain")
    with pytest.raises(InvalidBucketState):
        await store.set_bucket_attrs(plain, {lock.CONFIG_ATTR: lock.LockConfig().to_attr()})
    got = await store.get_bucket(b)
    assert got is not None and got.versioning is Versioning.ENABLED
    assert lock.config_of(await store.get_bucket(plain)) is None
