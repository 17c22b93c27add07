"""The lifecycle worker over a real Store (both metadata backends), driven by its injected
clock: what a pass removes, what it leaves, and object lock winning over every rule."""

from __future__ import annotations

import time

import pytest

from kvbox.core import lock
from kvbox.core.lifecycle import rules
from kvbox.core.lifecycle.rules import Filter, FilterForm, LifecycleConfig, Rule
from kvbox.core.lifecycle.worker import LifecycleWorker
from kvbox.core.model import Versioning
from kvbox.core.store import Store

DAY = rules.NS_PER_DAY


class Clock:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store


async def configure(store: Store, bucket: str, *rs: Rule) -> None:
    await store.set_bucket_attrs(bucket, {rules.ATTR: LifecycleConfig(rs).to_attr()})


async def keys(store: Store, bucket: str) -> list[str]:
    return [v.key for v in await store.list_objects(bucket)]


async def test_unversioned_objects_expire_on_their_day_and_not_before(store: Store) -> None:
    await store.create_bucket("plain", owner="root")
    await configure(
        store, "plain", Rule("logs", filter=Filter(FilterForm.PREFIX, "logs/"), expiration_days=2)
    )
    await store.put("plain", "logs/a", b"1")
    await store.put("plain", "data/b", b"2")
    clock = Clock()
    w = LifecycleWorker(store, clock=clock)
    report = await w.run_pass()
    assert report.expired_current == 0 and await keys(store, "plain") == ["data/b", "logs/a"]
    clock.offset = 3 * DAY  # past the next midnight plus two days, whatever the hour
    report = await w.run_pass()
    assert report.expired_current == 1 and report.buckets == 1
    assert await keys(store, "plain") == ["data/b"]
    assert w.stats.by_rule == {"logs": 1} and w.stats.passes == 2


async def test_versioned_expiry_noncurrent_and_lone_markers(store: Store) -> None:
    await store.create_bucket("hist", owner="root", versioning=Versioning.ENABLED)
    await configure(
        store,
        "hist",
        Rule("cur", expiration_days=1),
        Rule("old", noncurrent_days=1),
        Rule("markers", expired_object_delete_marker=True),
    )
    await store.put("hist", "k", b"1")
    clock = Clock()
    w = LifecycleWorker(store, clock=clock)
    clock.offset = 2 * DAY
    r1 = await w.run_pass()  # the current version gets a delete marker
    assert r1.expired_current == 1
    versions = await store.list_versions("hist", "k")
    assert [v.is_delete_marker for v in versions] == [True, False]
    clock.offset = 4 * DAY  # a day after the marker: the old version goes...
    r2 = await w.run_pass()
    assert r2.expired_noncurrent == 1
    clock.offset = 5 * DAY  # ...and then the marker left alone
    r3 = await w.run_pass()
    assert r3.delete_markers_removed == 1
    assert await store.list_versions("hist", "k") == []


async def test_object_lock_wins_over_every_rule(store: Store) -> None:
    assert await store.create_bucket("locked", owner="root", object_lock=True)
    await configure(store, "locked", Rule("all", expiration_days=1, noncurrent_days=1))
    clock = Clock()
    w = LifecycleWorker(store, clock=clock)
    until = clock() + 10 * DAY
    retained = lock.VersionLock(lock.Retention(lock.Mode.COMPLIANCE, until)).attrs()
    v1 = await store.put("locked", "k", b"1", attrs=retained)
    held = await store.put("locked", "h", b"1", attrs=lock.VersionLock(legal_hold=True).attrs())
    clock.offset = 3 * DAY
    await w.run_pass()  # both current versions get delete markers: that is allowed
    clock.offset = 6 * DAY
    report = await w.run_pass()
    assert report.skipped_locked == 2 and report.expired_noncurrent == 0
    assert await store.get_version("locked", "k", v1.version_id) is not None
    clock.offset = 12 * DAY  # the retention is over: now it goes; the legal hold stays
    report = await w.run_pass()
    assert report.expired_noncurrent == 1 and report.skipped_locked == 1
    assert await store.get_version("locked", "k", v1.version_id) is None
    assert await store.get_version("locked", "h", held.version_id) is not None


async def test_a_version_written_after_the_listing_is_not_expired(store: Store) -> None:
    await store.create_bucket("plain", owner="root")
    await configure(store, "plain", Rule("all", expiration_days=1))
    old = await store.put("plain", "k", b"old")
    await store.put("plain", "k", b"new")  # lands between the listing and the delete
    w = LifecycleWorker(store)
    config = rules.config_of(await store.get_bucket("plain"))
    assert config is not None
    await w._apply("plain", config, [old], w.now_ns() + 5 * DAY)
    head = await store.head("plain", "k")
    assert head is not None and await store.read(head) == b"new"
    assert w.stats.expired_current == 0


async def test_passes_page_through_many_keys_and_versions(store: Store) -> None:
    await store.create_bucket("many", owner="root", versioning=Versioning.ENABLED)
    await configure(store, "many", Rule("keep2", noncurrent_days=1, newer_noncurrent=2))
    for k in range(7):
        for i in range(5):
            await store.put("many", f"k{k}", str(i).encode())
    clock = Clock()
    w = LifecycleWorker(store, clock=clock, page=3)  # every key spans pages
    clock.offset = 3 * DAY
    report = await w.run_pass()
    assert report.versions_scanned == 35 and report.expired_noncurrent == 7 * 2
    for k in range(7):
        assert len(await store.list_versions("many", f"k{k}")) == 3


async def test_incomplete_multipart_uploads_are_aborted(store: Store) -> None:
    await store.create_bucket("up", owner="root")
    await configure(
        store, "up", Rule("tmp", filter=Filter(FilterForm.PREFIX, "tmp/"), abort_days=1)
    )
    stale = await store.create_multipart("up", "tmp/a")
    kept = await store.create_multipart("up", "keep/b")
    clock = Clock()
    w = LifecycleWorker(store, clock=clock)
    assert (await w.run_pass()).uploads_aborted == 0
    clock.offset = 2 * DAY
    assert (await w.run_pass()).uploads_aborted == 1
    left = [u.upload_id for u in await store.list_uploads("up")]
    assert left == [kept.upload_id] and stale.upload_id not in left


async def test_disabled_rules_and_buckets_without_configuration_are_left_alone(
    store: Store,
) -> None:
    await store.create_bucket("off", owner="root")
    await configure(store, "off", Rule("x", enabled=False, expiration_days=1))
    await store.create_bucket("none", owner="root")
    await store.put("off", "a", b"1")
    await store.put("none", "a", b"1")
    clock = Clock()
    clock.offset = 100 * DAY
    report = await LifecycleWorker(store, clock=clock).run_pass()
    assert report.buckets == 0
    assert await keys(store, "off") == ["a"] and await keys(store, "none") == ["a"]
