"""Buckets (``core/store/buckets.py``): settings served from memory, deletion with its
uploads and chunks, and a deleted bucket forgotten by the read cache."""

from __future__ import annotations

import pytest

from kvbox.core.store import Store
from kvbox.errors import NoSuchBucket

from .conftest import pieces


async def test_bucket_attrs_are_served_from_memory_after_a_change(store: Store) -> None:
    await store.set_bucket_attrs("kv", {"policy": "{}"})
    b = await store.get_bucket("kv")
    assert b is not None and dict(b.attrs) == {"policy": "{}"}
    assert dict((await store.meta.get_bucket("kv")).attrs) == {"policy": "{}"}  # type: ignore[union-attr]


async def test_deleting_a_bucket_drops_its_uploads_and_their_chunk_files(store: Store) -> None:
    await store.ensure_bucket("pending")
    up = await store.create_multipart("pending", "k")
    part = await store.upload_part("pending", "k", up.upload_id, 1, pieces(b"p" * 9000, 1000))
    ids = {c.chunk_id for c in part.chunks}
    assert ids and all([await store.blobs.exists(c) for c in ids])
    assert await store.delete_bucket("pending")
    await store.sweep_chunk_writers()
    assert not any([await store.blobs.exists(c) for c in ids])
    assert await store.get_bucket("pending") is None
    with pytest.raises(NoSuchBucket):
        await store.list_uploads("pending")
    assert not await store.delete_bucket("pending")


async def test_a_deleted_bucket_forgets_keys_cached_as_absent(store: Store) -> None:
    await store.ensure_bucket("gone")
    assert await store.head("gone", "never") is None  # now cached as known absent
    assert store.peek("gone", "never") is None
    assert await store.delete_bucket("gone")
    with pytest.raises(NoSuchBucket):
        await store.head("gone", "never")
    await store.ensure_bucket("gone", owner="alice")  # the name again, someone else's
    assert await store.head("gone", "never") is None
