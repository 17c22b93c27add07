"""Key-value operations over one bucket of the Store, with plain arguments and results.

Layer: kv (async, over ``kvbox.core``). Rules: nothing here knows a wire format. Each
operation takes keys, values and version ids and returns core models
(``ObjectVersion``), version ids, counts or a ``Value``, or raises a typed error of
``kvbox.errors`` (``ConditionFailed`` carries the current version); the GW-KV door
(``kvbox.kv.commands``) renders these as GW-KV replies, and a RESP door can render the
same results its own way. A delete marker is returned as it is: what "no live value"
looks like is each door's to say.

Reads of a value that may be streamed from chunk files (``read_newest``, ``read_at``,
``read_version``) read its first piece before returning, so a version removed by an
overwrite in between (a bucket without versioning keeps one version per key) is seen
before any reply starts: the newest value is looked up again, at most ``READ_TRIES``
times, then ``Busy``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kvbox import __version__
from kvbox.core.model import Condition, CondKind, ObjectVersion
from kvbox.core.store import Batch, Peeked, Store
from kvbox.errors import Busy, NoSuchKey
from kvbox.metrics import ServerCounters

#: VERSIONS lists at most this many versions, newest first (the reply stays bounded).
VERSIONS_LIMIT: Final = 1000
#: Lookups of a newest value that an overwrite removed before it could be read.
READ_TRIES: Final = 3


@dataclass(frozen=True, slots=True)
class Value:
    """A version's bytes: ``inline``, or ``stream`` (its first piece already read)."""

    version: ObjectVersion
    inline: bytes | None
    stream: AsyncIterator[bytes] | None


class KvOps:
    """The operations every key-value door shares, over ``store``'s ``bucket``."""

    def __init__(self, store: Store, bucket: str, counters: ServerCounters) -> None:
        self.store = store
        self.bucket = bucket
        self.counters = counters

    def peek(self, key: str) -> Peeked:
        """The newest version if the Store knows it without waiting, else ``MISS``."""
        return self.store.peek(self.bucket, key)

    async def get(self, key: str) -> ObjectVersion | None:
        return await self.store.head(self.bucket, key)

    async def get_many(self, keys: Sequence[str]) -> list[ObjectVersion | None]:
        return await self.store.head_many(self.bucket, keys)

    async def set(self, key: str, value: bytes) -> str:
        """Write ``value``; its new version id."""
        return (await self.store.put(self.bucket, key, value)).version_id

    async def set_if(self, key: str, expected: str | None, value: bytes) -> str:
        """Write only if the newest version is ``expected`` (None: only if there is no
        live value); raises ``ConditionFailed`` with the current version otherwise."""
        v = await self.store.put(self.bucket, key, value, condition=_condition(expected))
        return v.version_id

    async def set_stream(
        self, key: str, body: AsyncIterator[bytes], *, conditional: bool, expected: str | None
    ) -> str:
        """Write a value that arrives as ``body``; committed only if ``body`` ends."""
        cond = _condition(expected) if conditional else None
        v = await self.store.put_stream(self.bucket, key, body, condition=cond)
        return v.version_id

    async def set_many(self, pairs: Sequence[tuple[str, bytes]]) -> list[str]:
        """Write all pairs in one commit: all or none."""
        return [v.version_id for v in await self.store.put_many(self.bucket, pairs)]

    def set_batch(
        self,
        pairs: Sequence[tuple[str, bytes]],
        *,
        previous: Batch | None = None,
        after: asyncio.Future[Any] | None = None,
    ) -> Batch:
        """Independent writes sharing one fsync, handed over at once: ``Batch.done`` gives
        each pair's version id or its error. They take effect after ``after`` and after
        ``previous`` (this caller's previous batch); how is the Store's business."""
        return self.store.submit_batch(self.bucket, pairs, previous=previous, after=after)

    async def delete(self, key: str) -> bool:
        """Remove the key's live value; False if it had none. Of two deletes racing,
        only the one that removed something gets True."""
        # Metadata only: a damaged value must still be deletable.
        head = await self.store.head(self.bucket, key, verify=False)
        if head is None or head.is_delete_marker:
            return False
        result = await self.store.delete(self.bucket, key)
        return not result.not_found

    async def count(self) -> int:
        """How many keys have a live value."""
        return (await self.store.stats(self.bucket)).objects

    async def versions(self, key: str) -> list[ObjectVersion]:
        """The key's versions (delete markers included), newest first, at most
        ``VERSIONS_LIMIT``."""
        return await self.store.list_versions(self.bucket, key, limit=VERSIONS_LIMIT)

    async def version(self, key: str, version_id: str) -> ObjectVersion | None:
        return await self.store.get_version(self.bucket, key, version_id)

    async def at(self, key: str, at_ns: int) -> ObjectVersion | None:
        """The version that was the newest at ``at_ns`` (a time-travel read). Without
        versioning the bucket keeps only each key's newest version, so this can only
        answer "now" (the instant is at or after it) or None (before it)."""
        return await self.store.version_at(self.bucket, key, at_ns)

    async def read(self, v: ObjectVersion) -> Value | None:
        """``v``'s bytes; None if the version was removed before they could be read."""
        if v.inline is not None:
            return Value(v, v.inline, None)
        try:
            body = await self.store.open_read(v)  # a damaged first chunk raises here
        except NoSuchKey:
            return None
        return Value(v, None, body)

    async def read_newest(self, key: str) -> Value | ObjectVersion | None:
        """The newest value's bytes; a delete marker or None when there is no live
        value (see the module docstring for the retries)."""
        for _ in range(READ_TRIES):
            v = await self.store.head(self.bucket, key)
            if v is None or v.is_delete_marker:
                return v
            value = await self.read(v)
            if value is not None:
                return value
        raise Busy("value changing too fast to read; retry")

    async def read_at(self, key: str, at_ns: int) -> Value | ObjectVersion | None:
        """``read_newest`` as of the instant ``at_ns`` (``at``)."""
        for _ in range(READ_TRIES):
            v = await self.at(key, at_ns)
            if v is None or v.is_delete_marker:
                return v
            value = await self.read(v)
            if value is not None:
                return value
        raise Busy("value changing too fast to read; retry")

    async def read_version(self, key: str, version_id: str) -> Value | ObjectVersion | None:
        """One version's bytes. A delete marker's id, or an id the key never had (or no
        longer has, even if it went while being read), has none: the marker or None."""
        v = await self.version(key, version_id)
        if v is None or v.is_delete_marker:
            return v
        return await self.read(v)

    async def info(self) -> list[tuple[str, str]]:
        """What ``INFO`` reports: the server's identity, load and this bucket's size."""
        st = await self.store.stats(self.bucket)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        c = self.counters
        return [
            ("version", __version__),
            ("pid", str(os.getpid())),
            ("bucket", self.bucket),
            ("objects", str(st.objects)),
            ("bytes", str(st.bytes)),
            ("connections", str(c.connections)),
            ("connections_total", str(c.connections_total)),
            ("requests", str(c.requests)),
            ("uptime_s", f"{time.monotonic() - c.started:.3f}"),
            ("cpu_user_s", f"{ru.ru_utime:.6f}"),
            ("cpu_sys_s", f"{ru.ru_stime:.6f}"),
            ("max_rss_kb", str(ru.ru_maxrss)),
            ("max_memory", str(self.store.max_memory or 0)),
        ]


def _condition(expected: str | None) -> Condition:
    if expected is None:
        return Condition(CondKind.IF_ABSENT)
    return Condition(CondKind.IF_VERSION, expected)


__all__ = ["READ_TRIES", "VERSIONS_LIMIT", "KvOps", "Value"]
