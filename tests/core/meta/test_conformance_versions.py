"""Conformance of the bucket-settings, in-place attrs and version-listing methods.

Layer: tests/core/meta. Rules: the same ``factory``/``store`` fixtures as
``test_conformance`` (every MetaStore kind); the contract is the docstrings of
``MetaStore.set_bucket_attrs``, ``MetaStore.list_bucket_versions`` and
``model.SetAttrsOp``.
"""

from __future__ import annotations

import random

import pytest

from kvbox.core.meta import MetaStore
from kvbox.core.model import (
    AtomicOp,
    MultipartUpload,
    ObjectVersion,
    Part,
    PutOp,
    SetAttrsOp,
    Versioning,
)
from kvbox.errors import NoSuchBucket

from .test_conformance import Factory, bucket, chunk, delete, factory, put, store, ver

__all__ = ["factory", "store"]  # fixtures, re-exported for pytest


async def test_bucket_attrs_set_merge_remove_and_survive_reopen(
    factory: Factory, store: MetaStore
) -> None:
    b = await bucket(store)
    got = await store.set_bucket_attrs(b, {"policy": '{"Version":"2012-10-17"}', "acl": "private"})
    assert dict(got.attrs) == {"policy": '{"Version":"2012-10-17"}', "acl": "private"}
    got = await store.set_bucket_attrs(b, {"acl": "public-read", "policy": None, "gone": None})
    assert dict(got.attrs) == {"acl": "public-read"}
    again = await store.get_bucket(b)
    assert again is not None and dict(again.attrs) == {"acl": "public-read"}
    assert again.versioning is Versioning.OFF and again.created_ns == 123
    with pytest.raises(NoSuchBucket):
        await store.set_bucket_attrs("missing", {"acl": "private"})
    reopened = await factory.reopen(store)
    kept = await reopened.get_bucket(b)
    assert kept is not None and dict(kept.attrs) == {"acl": "public-read"}


@pytest.mark.parametrize("state", [Versioning.OFF, Versioning.ENABLED])
async def test_set_attrs_in_place_keeps_version_and_seq(
    store: MetaStore, state: Versioning
) -> None:
    b = await bucket(store, state=state)
    first = (await put(store, b, "k", b"one")).written[0]
    second = (await put(store, b, "k", b"two")).written[0]
    [r] = await store.commit([SetAttrsOp(b, "k", None, {"tag:color": "red"})])
    assert r.ok and not r.not_found
    (updated,) = r.written
    assert (updated.version_id, updated.seq, updated.etag, updated.mtime_ns) == (
        second.version_id,
        second.seq,
        second.etag,
        second.mtime_ns,
    )
    assert dict(updated.attrs) == {"tag:color": "red"}
    head = await store.head(b, "k")
    assert head is not None and dict(head.attrs) == {"tag:color": "red"}
    assert head.inline == b"two" and head.seq == second.seq
    if state is Versioning.ENABLED:
        # an older version by id; the newest keeps its own attrs
        [r] = await store.commit([SetAttrsOp(b, "k", first.version_id, {"acl": "public-read"})])
        assert r.written[0].version_id == first.version_id
        old = await store.get_version(b, "k", first.version_id)
        assert old is not None and dict(old.attrs) == {"acl": "public-read"}
        assert len(await store.list_versions(b, "k")) == 2
        head = await store.head(b, "k")
        assert head is not None and dict(head.attrs) == {"tag:color": "red"}


async def test_set_attrs_missing_and_marker_are_not_found(store: MetaStore) -> None:
    b = await bucket(store, state=Versioning.ENABLED)
    [r] = await store.commit([SetAttrsOp(b, "nokey", None, {"a": "b"})])
    assert r.not_found and not r.written
    await put(store, b, "k")
    marker = (await delete(store, b, "k")).written[0]
    [r] = await store.commit([SetAttrsOp(b, "k", None, {"a": "b"})])
    assert r.not_found
    [r] = await store.commit([SetAttrsOp(b, "k", marker.version_id, {"a": "b"})])
    assert r.not_found
    [r] = await store.commit([SetAttrsOp(b, "k", "0" * 26, {"a": "b"})])
    assert r.not_found


async def test_set_attrs_then_put_in_same_commit(store: MetaStore) -> None:
    b = await bucket(store)
    await put(store, b, "k", b"one")
    results = await store.commit(
        [SetAttrsOp(b, "k", None, {"t": "1"}), PutOp(ver(b, "k", b"two")), AtomicOp(())]
    )
    assert results[0].ok and results[1].ok
    head = await store.head(b, "k")
    assert head is not None and head.inline == b"two"
    assert dict(head.attrs) == {"x-amz-meta-color": "blue"}


async def _all_pages(store: MetaStore, b: str, prefix: str, page: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    key_marker = vid_marker = ""
    for _ in range(10_000):
        got = await store.list_bucket_versions(b, prefix, key_marker, vid_marker, page)
        out.extend((v.key, v.s3_version_id) for v in got)
        if len(got) < page:
            return out
        key_marker, vid_marker = got[-1].key, got[-1].s3_version_id
    raise AssertionError("pagination did not end")


async def test_list_bucket_versions_order_markers_and_pages(store: MetaStore) -> None:
    b = await bucket(store)
    await put(store, b, "a/null-only")  # written while versioning was off: a null version
    await put(store, b, "b")
    await store.set_versioning(b, Versioning.ENABLED)
    rng = random.Random(7)
    expected: dict[str, list[str]] = {"a/null-only": ["null"], "b": ["null"]}
    keys = ["b", "c", "a/x", "é", "a/y", "zz", "b/"]
    for _ in range(120):
        key = rng.choice(keys)
        if rng.random() < 0.2 and key in expected:
            m = (await delete(store, b, key)).written[0]
            expected[key].insert(0, m.version_id)
        else:
            v = (await put(store, b, key)).written[0]
            expected.setdefault(key, []).insert(0, v.version_id)
    # a version removed for good disappears from the listing
    gone = expected["c"].pop(1)
    await delete(store, b, "c", gone)
    full = [(k, vid) for k in sorted(expected, key=lambda s: s.encode()) for vid in expected[k]]
    for page in (1, 3, 7, 1000):
        assert await _all_pages(store, b, "", page) == full
    want_a = [kv for kv in full if kv[0].startswith("a/")]
    assert await _all_pages(store, b, "a/", 2) == want_a
    # IsLatest is the first of each key; delete markers are listed as such
    listed = await store.list_bucket_versions(b, "", "", "", 1000)
    latest: dict[str, ObjectVersion] = {}
    for v in listed:
        latest.setdefault(v.key, v)
        head = await store.head(b, v.key)
        assert head is not None
    for key, v in latest.items():
        head = await store.head(b, key)
        assert head is not None and head.version_id == v.version_id
    # markers: after a key with no version marker skips the key; a gone marker too
    after_b = await store.list_bucket_versions(b, "", "b", "", 1000)
    assert after_b[0].key == "b/"
    assert await store.list_bucket_versions(b, "", "b", "0" * 26, 1000) == after_b
    second = expected["b"][1]
    mid = await store.list_bucket_versions(b, "", "b", second, 1000)
    assert [v.s3_version_id for v in mid if v.key == "b"] == expected["b"][2:]
    assert await store.list_bucket_versions("missing", "", "", "", 10) == []


async def test_drop_uploads_with_chunks(store: MetaStore) -> None:
    b = await bucket(store)
    bad, good = chunk("lost"), chunk("fine")
    for upload_id, ref in (("u1", bad), ("u2", good), ("u3", bad)):
        await store.create_upload(MultipartUpload(b, "k", upload_id))
        await store.put_part(upload_id, Part(1, "e" * 32, ref.size, (ref,)))
    assert await store.drop_uploads_with_chunks([bad.chunk_id]) == ["u1", "u3"]
    assert await store.get_upload("u1") is None and await store.get_upload("u3") is None
    assert await store.get_upload("u2") is not None
    assert (await store.chunk_refs()).get(bad.chunk_id, 0) == 0
    assert await store.drop_uploads_with_chunks([bad.chunk_id]) == []
