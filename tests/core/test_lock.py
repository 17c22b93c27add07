"""Object lock: the pure rule (``kvbox.core.lock``) and the Store's removal paths over it.

Every way the Store can remove a version or change its lock is driven here against both
metadata backends; the S3 and GW-KV doors are tested end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvbox.core import lock
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.lock import (
    DefaultRetention,
    LockConfig,
    Mode,
    Retention,
    VersionLock,
    check_change,
    removal_refusal,
)
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.model import ObjectVersion, Versioning
from kvbox.core.store import Store
from kvbox.errors import InvalidArgument, InvalidBucketState, ObjectLocked

NOW = 1_700_000_000 * 10**9
DAY = lock.NS_PER_DAY


def _version(lk: VersionLock, *, marker: bool = False) -> ObjectVersion:
    return ObjectVersion("b", "k", "v1", is_delete_marker=marker, attrs=lk.attrs())


# --- the pure rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lk", "bypass", "refused"),
    [
        (VersionLock(), False, False),
        (VersionLock(Retention(Mode.GOVERNANCE, NOW + DAY)), False, True),
        (VersionLock(Retention(Mode.GOVERNANCE, NOW + DAY)), True, False),
        (VersionLock(Retention(Mode.COMPLIANCE, NOW + DAY)), False, True),
        (VersionLock(Retention(Mode.COMPLIANCE, NOW + DAY)), True, True),
        (VersionLock(Retention(Mode.COMPLIANCE, NOW)), False, False),  # ends now: over
        (VersionLock(Retention(Mode.COMPLIANCE, NOW - 1)), False, False),
        (VersionLock(legal_hold=True), True, True),  # a legal hold is never bypassed
        (VersionLock(legal_hold=False), False, False),  # set, then lifted
        (VersionLock(Retention(Mode.GOVERNANCE, NOW - DAY), legal_hold=True), True, True),
    ],
)
def test_removal_rule(lk: VersionLock, bypass: bool, refused: bool) -> None:
    why = removal_refusal(_version(lk), NOW, bypass_governance=bypass)
    assert (why is not None) is refused


def test_delete_markers_are_never_protected() -> None:
    lk = VersionLock(Retention(Mode.COMPLIANCE, NOW + DAY), legal_hold=True)
    assert removal_refusal(_version(lk, marker=True), NOW, bypass_governance=False) is None


GOV = Retention(Mode.GOVERNANCE, NOW + 10 * DAY)
COMP = Retention(Mode.COMPLIANCE, NOW + 10 * DAY)


@pytest.mark.parametrize(
    ("old", "new", "bypass", "allowed"),
    [
        (None, GOV, False, True),
        (None, COMP, False, True),
        (GOV, Retention(Mode.GOVERNANCE, GOV.until_ns + DAY), False, True),  # extend
        (GOV, GOV, False, True),  # the same again
        (GOV, Retention(Mode.GOVERNANCE, GOV.until_ns - DAY), False, False),  # shorten
        (GOV, Retention(Mode.GOVERNANCE, GOV.until_ns - DAY), True, True),
        (GOV, None, False, False),  # remove
        (GOV, None, True, True),
        (GOV, Retention(Mode.COMPLIANCE, GOV.until_ns), False, False),  # change the mode
        (GOV, Retention(Mode.COMPLIANCE, GOV.until_ns), True, True),
        (COMP, Retention(Mode.COMPLIANCE, COMP.until_ns + DAY), False, True),
        (COMP, Retention(Mode.COMPLIANCE, COMP.until_ns - DAY), True, False),
        (COMP, Retention(Mode.GOVERNANCE, COMP.until_ns + DAY), True, False),
        (COMP, None, True, False),
        (Retention(Mode.COMPLIANCE, NOW - 1), GOV, False, True),  # an expired one is none
    ],
)
def test_change_rule(
    old: Retention | None, new: Retention | None, bypass: bool, allowed: bool
) -> None:
    current = VersionLock(old)
    if allowed:
        check_change(current, new, NOW, bypass_governance=bypass)
    else:
        with pytest.raises(ObjectLocked):
            check_change(current, new, NOW, bypass_governance=bypass)


def test_a_retention_must_end_in_the_future() -> None:
    with pytest.raises(InvalidArgument, match="future"):
        check_change(VersionLock(), Retention(Mode.GOVERNANCE, NOW), NOW, bypass_governance=True)


@given(
    mode=st.sampled_from(Mode),
    until=st.integers(min_value=0, max_value=2**62),
    hold=st.one_of(st.none(), st.booleans()),
)
def test_version_lock_attrs_round_trip(mode: Mode, until: int, hold: bool | None) -> None:
    lk = VersionLock(Retention(mode, until), hold)
    assert VersionLock.of(lk.attrs()) == lk
    assert VersionLock.of({}) == VersionLock()


@given(
    mode=st.sampled_from(Mode),
    days=st.one_of(st.none(), st.integers(min_value=1, max_value=lock.MAX_DEFAULT_DAYS)),
    years=st.integers(min_value=1, max_value=lock.MAX_DEFAULT_YEARS),
)
def test_lock_config_round_trips_through_bucket_attrs(
    mode: Mode, days: int | None, years: int
) -> None:
    default = DefaultRetention(mode, days=days) if days else DefaultRetention(mode, years=years)
    for config in (LockConfig(), LockConfig(default)):
        assert lock._parse_config(config.to_attr()) == config


@pytest.mark.parametrize(
    ("days", "years"), [(0, None), (-1, None), (None, 0), (1, 1), (None, None)]
)
def test_default_retention_is_one_positive_period(days: int | None, years: int | None) -> None:
    with pytest.raises(InvalidArgument):
        DefaultRetention(Mode.GOVERNANCE, days, years)


def test_default_retention_counts_days_and_365_day_years() -> None:
    assert DefaultRetention(Mode.GOVERNANCE, days=3).until(NOW) == NOW + 3 * DAY
    assert DefaultRetention(Mode.COMPLIANCE, years=2).until(NOW) == NOW + 730 * DAY


def test_a_write_naming_its_own_retention_keeps_it() -> None:
    config = LockConfig(DefaultRetention(Mode.COMPLIANCE, days=1))
    own = VersionLock(Retention(Mode.GOVERNANCE, NOW + 5 * DAY))
    assert config.new_version_lock(own, NOW) == own
    held = config.new_version_lock(VersionLock(legal_hold=True), NOW)
    assert held == VersionLock(Retention(Mode.COMPLIANCE, NOW + DAY), legal_hold=True)
    assert LockConfig().new_version_lock(VersionLock(), NOW) == VersionLock()


# --- the Store's paths ---------------------------------------------------------------


@pytest.fixture
async def store(empty_store: Store) -> Store:
    assert await empty_store.create_bucket("locked", owner="root", object_lock=True)
    return empty_store


async def test_a_bucket_created_with_object_lock_is_versioned_for_good(store: Store) -> None:
    b = await store.get_bucket("locked")
    assert b is not None and b.versioning is Versioning.ENABLED
    assert lock.config_of(b) == LockConfig()
    for state in (Versioning.SUSPENDED, Versioning.OFF):
        with pytest.raises(InvalidBucketState):
            await store.set_versioning("locked", state)
    await store.set_versioning("locked", Versioning.ENABLED)  # a no-op is fine


async def test_object_lock_on_an_existing_bucket_needs_versioning(store: Store) -> None:
    await store.create_bucket("plain", owner="root")
    config = LockConfig(DefaultRetention(Mode.GOVERNANCE, days=1))
    with pytest.raises(InvalidBucketState):
        await store.set_lock_config("plain", config)
    await store.set_versioning("plain", Versioning.SUSPENDED)
    with pytest.raises(InvalidBucketState):
        await store.set_lock_config("plain", config)
    await store.set_versioning("plain", Versioning.ENABLED)
    b = await store.set_lock_config("plain", config)
    assert lock.config_of(b) == config


async def test_protected_versions_are_not_deleted(store: Store) -> None:
    held = await store.put("locked", "k", b"1", attrs=VersionLock(legal_hold=True).attrs())
    gov_lock = VersionLock(Retention(Mode.GOVERNANCE, NOW + DAY))
    gov = await store.put("locked", "g", b"2", attrs=gov_lock.attrs())
    for v in (held, gov):
        with pytest.raises(ObjectLocked):
            await store.delete("locked", v.key, v.version_id, now_ns=NOW)
        assert await store.get_version("locked", v.key, v.version_id) is not None
    with pytest.raises(ObjectLocked):  # a bypass does nothing for a legal hold
        await store.delete("locked", "k", held.version_id, bypass_governance=True, now_ns=NOW)
    r = await store.delete("locked", "g", gov.version_id, bypass_governance=True, now_ns=NOW)
    assert [v.version_id for v in r.removed] == [gov.version_id]
    # Once the retention has passed the version goes like any other.
    again = await store.put("locked", "g", b"3", attrs=gov_lock.attrs())
    r = await store.delete("locked", "g", again.version_id, now_ns=NOW + 2 * DAY)
    assert [v.version_id for v in r.removed] == [again.version_id]


async def test_a_delete_without_version_only_adds_a_marker(store: Store) -> None:
    v = await store.put("locked", "k", b"1", attrs=VersionLock(legal_hold=True).attrs())
    r = await store.delete("locked", "k")
    assert r.written[0].is_delete_marker and not r.removed
    assert await store.get_version("locked", "k", v.version_id) is not None
    # ... and the marker itself can be removed: markers are never protected.
    await store.delete("locked", "k", r.written[0].version_id)
    head = await store.head("locked", "k")
    assert head is not None and head.version_id == v.version_id


async def test_an_overwrite_is_a_new_version(store: Store) -> None:
    v1 = await store.put("locked", "k", b"1", attrs=VersionLock(legal_hold=True).attrs())
    v2 = await store.put("locked", "k", b"2")
    assert [v.version_id for v in await store.list_versions("locked", "k")] == [
        v2.version_id,
        v1.version_id,
    ]
    batch = await store.put_batch("locked", [("k", b"3")])
    assert isinstance(batch[0], str)
    assert len(await store.list_versions("locked", "k")) == 3


async def test_default_retention_reaches_every_new_version(store: Store) -> None:
    await store.set_lock_config("locked", LockConfig(DefaultRetention(Mode.COMPLIANCE, days=1)))
    put = await store.put("locked", "a", b"x")
    batch = await store.put_batch("locked", [("b", b"y")])
    many = await store.put_many("locked", [("c", b"z")])
    for key in ("a", "b", "c"):
        head = await store.head("locked", key)
        assert head is not None
        got = VersionLock.of(head.attrs).retention
        assert got is not None and got.mode is Mode.COMPLIANCE
        assert abs(got.until_ns - (head.mtime_ns + DAY)) < 10**9
    assert put and batch and many
    own = VersionLock(Retention(Mode.GOVERNANCE, NOW + 400 * DAY))
    v = await store.put("locked", "d", b"w", attrs=own.attrs())
    assert VersionLock.of(v.attrs) == own


async def test_lock_settings_only_in_a_bucket_with_object_lock(store: Store) -> None:
    await store.create_bucket("plain", owner="root", versioning=Versioning.ENABLED)
    with pytest.raises(InvalidArgument):
        await store.put("plain", "k", b"1", attrs=VersionLock(legal_hold=True).attrs())
    v = await store.put("plain", "k", b"1")
    with pytest.raises(InvalidBucketState):
        await store.set_object_lock("plain", "k", v.version_id, legal_hold=True)
    with pytest.raises(InvalidArgument):
        await store.set_attrs("plain", "k", None, {"lock-hold": "ON"})


async def test_attrs_changes_carry_the_lock_over(store: Store) -> None:
    lk = VersionLock(Retention(Mode.COMPLIANCE, NOW + 30 * DAY), legal_hold=True)
    v = await store.put("locked", "k", b"1", attrs={"tag:a": "1", **lk.attrs()})
    # A tagging change that "forgets" the lock, or tries to forge another one, keeps it.
    new = await store.set_attrs("locked", "k", v.version_id, {"tag:b": "2"})
    assert new is not None and VersionLock.of(new.attrs) == lk and new.attrs["tag:b"] == "2"
    forged = VersionLock(Retention(Mode.GOVERNANCE, NOW + DAY)).attrs()
    new = await store.set_attrs("locked", "k", None, forged)
    assert new is not None and VersionLock.of(new.attrs) == lk


async def test_set_object_lock_follows_the_change_rule(store: Store) -> None:
    v = await store.put("locked", "k", b"1")
    gov = Retention(Mode.GOVERNANCE, NOW + 10 * DAY)
    new = await store.set_object_lock("locked", "k", v.version_id, retention=gov, now_ns=NOW)
    assert new is not None and VersionLock.of(new.attrs).retention == gov
    shorter = Retention(Mode.GOVERNANCE, NOW + DAY)
    with pytest.raises(ObjectLocked):
        await store.set_object_lock("locked", "k", None, retention=shorter, now_ns=NOW)
    new = await store.set_object_lock(
        "locked", "k", None, retention=shorter, bypass_governance=True, now_ns=NOW
    )
    assert new is not None and VersionLock.of(new.attrs).retention == shorter
    new = await store.set_object_lock("locked", "k", None, legal_hold=True, now_ns=NOW)
    assert new is not None and VersionLock.of(new.attrs) == VersionLock(shorter, True)
    new = await store.set_object_lock(
        "locked", "k", None, retention=None, bypass_governance=True, now_ns=NOW
    )
    assert new is not None and VersionLock.of(new.attrs) == VersionLock(None, True)
    assert await store.set_object_lock("locked", "missing", None, legal_hold=True) is None


async def test_a_delete_racing_a_new_retention_never_removes_a_locked_version(
    store: Store,
) -> None:
    """The lock decision and the removal are one step per key: whichever of a delete and a
    retention change comes first, a version that ends up locked is still there."""
    for i in range(20):
        v = await store.put("locked", f"k{i}", b"x")
        retention = Retention(Mode.COMPLIANCE, NOW + DAY)
        results = await asyncio.gather(
            store.set_object_lock("locked", f"k{i}", v.version_id, retention=retention, now_ns=NOW),
            store.delete("locked", f"k{i}", v.version_id, now_ns=NOW),
            return_exceptions=True,
        )
        locked, deleted = results
        still = await store.get_version("locked", f"k{i}", v.version_id)
        if isinstance(deleted, ObjectLocked):
            assert still is not None and isinstance(locked, ObjectVersion)
        else:
            assert still is None and locked is None  # deleted first: nothing left to lock


async def test_cache_mode_refuses_object_lock() -> None:
    s = Store(MemoryMetaStore(), MemoryBlobStore(), max_memory=1 << 20)
    await s.open()
    try:
        with pytest.raises(InvalidArgument, match="cache mode"):
            await s.create_bucket("locked", owner="root", object_lock=True)
    finally:
        await s.close()
