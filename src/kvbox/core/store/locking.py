"""The Store's side of object lock: new versions' retention, and one mutex per key.

Layer: core. The rule itself (may this version be removed, may its lock change) is
``kvbox.core.lock``'s alone; here is only what the Store needs to apply it: the attrs a
new version gets in a bucket with object lock (``locked_attrs``), and ``KeyMutexes``, which
makes a lock decision and the write it allows one step for a key, so that a delete cannot
check a version, then a retention be set on it, then the delete remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from kvbox.core import lock
from kvbox.core.model import Bucket
from kvbox.errors import InvalidArgument


def locked_attrs(bucket: Bucket, attrs: Mapping[str, str], now_ns: int) -> Mapping[str, str]:
    """A new version's attrs in ``bucket``: lock entries are refused without object lock,
    and the default retention is added where the write named no retention."""
    config = lock.config_of(bucket)
    if config is None:
        if attrs and lock.has_lock_attrs(attrs):
            raise InvalidArgument("object lock settings in a bucket without object lock")
        return attrs
    given = lock.VersionLock.of(attrs)
    wanted = config.new_version_lock(given, now_ns)
    if wanted == given:
        return attrs
    return {**attrs, **wanted.attrs()}


class _KeyMutex:
    """A key's mutex and how many tasks hold or await it (the entry goes at zero)."""

    __slots__ = ("mutex", "users")

    def __init__(self) -> None:
        self.mutex = asyncio.Lock()
        self.users = 0


class KeyMutexes:
    """One mutex per key of a bucket with object lock, held while its versions are
    removed or their attrs rewritten. Entries live only while held or awaited."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], _KeyMutex] = {}

    @contextlib.asynccontextmanager
    async def hold(self, bucket: str, key: str) -> AsyncIterator[None]:
        k = (bucket, key)
        entry = self._locks.get(k)
        if entry is None:
            entry = self._locks[k] = _KeyMutex()
        entry.users += 1
        try:
            async with entry.mutex:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[k]
