"""The memtable: journaled writes that are durable but not yet in the MetaStore.

Layer: core (no I/O, no asyncio). Rules: an entry enters when its journal frame is
durable (``JournalWrites`` adds it from ``Journal.submit``'s hook, in LSN order, so the
table always holds the newest record of every key up to ``Journal.durable_lsn``); while
the applier commits a frozen table (``freeze``) single-key reads still find it in
``frozen``; a key's entry is replaced only by a later record of the same key.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeAlias

from kvbox.core.model import EMPTY_ATTRS, ObjectVersion

#: The memtable's bounds: past ``MEM_SOFT`` bytes the applier starts at once instead of
#: at its next interval; past ``MEM_HARD`` journaled writes wait for it (backpressure).
MEM_SOFT: Final = 32 * 1024 * 1024
MEM_HARD: Final = 128 * 1024 * 1024
#: The applier also starts once this many bytes were journaled since it last took the
#: table: it bounds the journal to read after a crash (a few seconds of replay).
JOURNAL_SOFT: Final = 256 * 1024 * 1024
#: Memtable bytes counted per entry besides its value.
ENTRY_OVERHEAD: Final = 200

Key: TypeAlias = tuple[str, str]
#: A journaled write not yet applied to the MetaStore (a memtable entry): its LSN,
#: version id, mtime, bytes and their CRC-32C (as its journal record has it). A plain
#: tuple of atomic values: the cheapest thing to build, and the garbage collector stops
#: tracking it, which matters at 100,000 a second.
Pending: TypeAlias = tuple[int, str, int, bytes, int]
LSN: Final = 0
VID: Final = 1
MTIME: Final = 2
DATA: Final = 3
CRC: Final = 4


def to_version(
    bucket: str, key: str, version_id: str, mtime_ns: int, value: bytes, crc: int | None
) -> ObjectVersion:
    """The version a journaled write stands for: a null version with its bytes inline
    (and their checksum, from the write: None only for a pre-checksum journal record)."""
    return ObjectVersion(
        bucket,
        key,
        version_id,
        len(value),
        hashlib.md5(value, usedforsecurity=False).hexdigest(),
        mtime_ns,
        False,
        True,
        value,
        (),
        "application/octet-stream",
        EMPTY_ATTRS,
        0,
        crc,
    )


class Memtable:
    """Pending entries by key: ``live`` takes new ones, ``frozen`` is being applied."""

    __slots__ = ("bytes", "counted", "frozen", "journaled", "live", "versions")

    def __init__(self) -> None:
        self.live: dict[Key, Pending] = {}
        self.frozen: dict[Key, Pending] = {}
        #: Versions built (with their MD5) for entries that were read.
        self.versions: dict[Key, ObjectVersion] = {}
        #: An upper bound of ``live``'s bytes (a key written again replaced its entry).
        self.bytes = 0
        #: ``bytes`` as of its last exact count (``recount``).
        self.counted = 0
        #: Bytes journaled since the applier last took the table.
        self.journaled = 0

    @property
    def pending(self) -> bool:
        """Acknowledged writes that are not in the MetaStore yet."""
        return bool(self.live or self.frozen)

    def add(self, entries: list[tuple[Key, Pending]], nbytes: int) -> bool:
        """Take durable entries (in LSN order); True when the applier should start now."""
        self.live.update(entries)  # one C loop; the entries carry their LSNs
        # An upper bound: a key written again replaced its older entry. Counted exactly
        # only when the bound says the table may be getting big.
        self.bytes += nbytes + len(entries) * ENTRY_OVERHEAD
        self.journaled += nbytes
        if self.bytes >= MEM_SOFT:
            self.recount(MEM_SOFT)
        return self.bytes >= MEM_SOFT or self.journaled >= JOURNAL_SOFT

    def full(self) -> bool:
        """Past ``MEM_HARD``: journaled writes must wait for the applier."""
        if self.bytes >= MEM_HARD:
            self.recount(MEM_HARD)
        return self.bytes >= MEM_HARD

    def recount(self, limit: int = 0) -> None:
        """Count the bytes exactly (a pass, about 50 ns an entry), but for a ``limit``
        only once a quarter of it was added since the last count: near a limit, counting
        at every batch would cost a pass per batch."""
        if limit and self.bytes - self.counted < limit // 4:
            return
        live = self.live
        self.bytes = sum([len(e[DATA]) for e in live.values()]) + len(live) * ENTRY_OVERHEAD
        self.counted = self.bytes

    def get(self, k: Key) -> ObjectVersion | None:
        """The newest pending version of ``k``, or None if the table has none."""
        e = self.live.get(k) or self.frozen.get(k)
        if e is None:
            return None
        v = self.versions.get(k)
        if v is None or v.version_id != e[VID]:
            v = self.versions[k] = self.version(k, e)
        return v

    def version(self, k: Key, e: Pending) -> ObjectVersion:
        v = self.versions.get(k)
        if v is None or v.version_id != e[VID]:
            v = to_version(k[0], k[1], e[VID], e[MTIME], e[DATA], e[CRC])
        return v

    def freeze(self) -> dict[Key, Pending]:
        """Hand the live entries to the applier; new ones start a fresh table."""
        frozen = self.frozen = self.live
        self.live = {}
        self.bytes = self.counted = self.journaled = 0
        return frozen

    def thaw(self, frozen: dict[Key, Pending]) -> None:
        """An apply failed as a whole: its entries go back, under any newer ones."""
        live = self.live
        for k, e in frozen.items():
            if k not in live:
                live[k] = e
        self.recount()

    def applied(self) -> None:
        """The frozen entries are in the MetaStore (or given up): forget them."""
        self.frozen = {}
        if self.versions:
            live = self.live
            self.versions = {k: v for k, v in self.versions.items() if k in live}
