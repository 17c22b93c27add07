"""Buckets: the Store's table of them, and every change of their settings.

Layer: core. Rules:

* Buckets are served from memory once known (``get``): this process is the only writer
  of its data directory (``datadir.lock_data_dir``) and every bucket change goes through
  this class, so the copy is never stale. With metadata shared by several gateways
  (PostgreSQL) the others' changes arrive through ``refresh``
  (``kvbox.core.meta.postgres.changes``).
* What a change may do is decided in the metadata transaction (``kvbox.core.meta.rules``:
  object lock forbids suspending versioning, lock needs versioning, a bucket must be
  empty to go); here is what the process adds: the journal is drained around a change
  that alters where writes go (versioning) or removes a bucket, and the read cache
  forgets a removed bucket's keys.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from kvbox.core import lock
from kvbox.core.meta import MetaStore
from kvbox.core.model import EMPTY_ATTRS, Bucket, BucketStats, Versioning
from kvbox.core.store.cache import ReadCache
from kvbox.core.store.chunks import Chunks
from kvbox.core.store.route import Route
from kvbox.errors import InvalidArgument, NoSuchBucket


class Buckets:
    """The bucket table and bucket operations (module docstring)."""

    def __init__(
        self,
        meta: MetaStore,
        route: Route,
        cache: ReadCache,
        chunks: Chunks,
        *,
        cache_mode: bool,
    ) -> None:
        self.meta = meta
        self._route = route
        self._cache = cache
        self._chunks = chunks
        self._cache_mode = cache_mode
        #: Every bucket known, by name: read on every request.
        self.by_name: dict[str, Bucket] = {}

    async def load(self) -> None:
        for b in await self.meta.list_buckets():
            self.by_name[b.name] = b

    def __call__(self, name: str) -> Bucket:
        """The bucket, which must exist (else ``NoSuchBucket``)."""
        b = self.by_name.get(name)
        if b is None:
            raise NoSuchBucket(name)
        return b

    async def miss(self, name: str) -> Bucket:
        """A bucket not in ``by_name``: one another gateway made a moment ago, before
        its notification arrived (``refresh``), is read from the MetaStore; else
        ``NoSuchBucket``. Callers look in ``by_name`` first (``by_name.get(name) or
        await miss(name)``), so the hit, every request on one node, costs no coroutine."""
        b = await self.meta.get_bucket(name)
        if b is None:
            raise NoSuchBucket(name)
        self.by_name[name] = b
        return b

    async def get(self, name: str) -> Bucket | None:
        """The bucket with its settings; None if there is none. The access check reads
        it on every request that is not root's."""
        b = self.by_name.get(name)
        if b is not None:
            return b
        b = await self.meta.get_bucket(name)
        if b is not None:
            self.by_name[name] = b
        return b

    async def refresh(self, names: Sequence[str] | None = None) -> None:
        """Another process changed these buckets (None: any bucket) in a MetaStore this
        one shares: re-read their settings, forget the gone ones and their cached keys.
        ``by_name`` is changed in place: the Store reads it directly."""
        if names is None:
            fresh = {b.name: b for b in await self.meta.list_buckets()}
            for name in set(self.by_name) - set(fresh):
                self._cache.drop_bucket(name)
            self.by_name.clear()
            self.by_name.update(fresh)
            return
        for name in names:
            b = await self.meta.get_bucket(name)
            if b is None:
                self.by_name.pop(name, None)
            else:
                self.by_name[name] = b
            self._cache.drop_bucket(name)

    async def ensure(
        self, name: str, *, owner: str = "root", versioning: Versioning = Versioning.OFF
    ) -> Bucket:
        bucket = await self.meta.get_bucket(name)
        if bucket is None:
            bucket = Bucket(name, owner, time.time_ns(), versioning)
            if not await self.meta.create_bucket(bucket):
                bucket = await self.meta.get_bucket(name)
                assert bucket is not None
        if versioning is not Versioning.OFF and bucket.versioning is not versioning:
            async with self._route.exclusive():
                await self.meta.set_versioning(name, versioning)
                bucket = await self.meta.get_bucket(name)
                assert bucket is not None
                self.by_name[name] = bucket
        self.by_name[name] = bucket
        return bucket

    async def create(
        self,
        name: str,
        *,
        owner: str,
        versioning: Versioning = Versioning.OFF,
        attrs: Mapping[str, str] = EMPTY_ATTRS,
        object_lock: bool = False,
    ) -> bool:
        """False if the name is taken (by anyone: S3 bucket names are global).

        ``object_lock``: the bucket is created with object lock on, and so with
        versioning enabled for good (``kvbox.core.lock``).
        """
        if object_lock:
            self._check_lock_possible()
            versioning = Versioning.ENABLED
            attrs = {**attrs, lock.CONFIG_ATTR: lock.LockConfig().to_attr()}
        bucket = Bucket(name, owner, time.time_ns(), versioning, attrs)
        created = await self.meta.create_bucket(bucket)
        if created:
            self.by_name[name] = bucket
        return created

    async def delete(self, name: str) -> bool:
        """Delete a bucket without versions, and its unfinished multipart uploads with it;
        raises ``BucketNotEmpty``. False if there was no such bucket.

        The read cache forgets the bucket's keys: a key looked up while the bucket
        existed is cached as absent, and must answer NoSuchBucket now, not NoSuchKey
        (nor, should the name be created again, anything of the old bucket's).
        """
        async with self._route.exclusive():
            freed = await self.meta.delete_bucket(name)
            self.by_name.pop(name, None)
            self._cache.drop_bucket(name)
        if freed:
            self._chunks.collect_later(freed)
        return freed is not None

    async def set_attrs(self, name: str, changes: Mapping[str, str | None]) -> Bucket:
        """Change bucket settings (policy, ACL, CORS, website...); None removes one."""
        b = await self.meta.set_bucket_attrs(name, changes)
        self.by_name[name] = b
        return b

    async def set_versioning(self, name: str, state: Versioning) -> None:
        """Raises ``InvalidBucketState`` for anything but ENABLED in a bucket with object
        lock (``lock.check_versioning``, in the metadata transaction)."""
        # The new state is in ``by_name`` before journaled writes may start again.
        async with self._route.exclusive():
            await self.meta.set_versioning(name, state)
            b = await self.meta.get_bucket(name)
            if b is not None:
                self.by_name[name] = b

    async def set_lock_config(self, name: str, config: lock.LockConfig) -> Bucket:
        """Turn object lock on (for good) and set its default retention. The bucket's
        versioning must be ENABLED (S3: else ``InvalidBucketState``, decided in the
        metadata transaction: ``lock.check_config_change``); from then on it cannot be
        suspended (``set_versioning``)."""
        self._check_lock_possible()
        self.by_name.get(name) or await self.miss(name)
        return await self.set_attrs(name, {lock.CONFIG_ATTR: config.to_attr()})

    def _check_lock_possible(self) -> None:
        if self._cache_mode:
            # Cache mode evicts keys to stay under --max-memory: it could never keep a
            # promise not to remove a version.
            raise InvalidArgument("object lock is not available in cache mode (--max-memory)")

    async def stats(self, name: str) -> BucketStats:
        self.by_name.get(name) or await self.miss(name)
        await self._route.settle()
        return await self.meta.stats(name)
