"""Recovery: the records a crash left in the journal, applied before anything else runs.

Layer: core. Rules: records after the MetaStore's ``journal_lsn()`` are applied, in LSN
order, each commit storing the LSN it covers, so a crash during the replay resumes from
there; a torn last frame was never acknowledged and is cut (``log.Journal.open``).
``kvbox fsck`` runs the same replay before it checks anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from kvbox.core.journal.codec import Record
from kvbox.core.journal.log import Journal
from kvbox.core.journal.memtable import to_version
from kvbox.core.meta import MetaStore
from kvbox.core.model import PutOp
from kvbox.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

#: Ops per MetaStore commit when replaying a long journal at start-up.
REPLAY_BATCH: Final = 20_000


async def apply_records(meta: MetaStore, records: Iterable[Record]) -> int:
    """Apply journal records (in LSN order) to ``meta``; returns the last LSN applied.

    Only each key's last record matters (every journaled write replaces its key's null
    version), so the others are skipped. Keys go in the order of their last records, and
    each commit stores the LSN of its last record: a record at or below it is applied,
    or replaced by a later one still to come, so a crash during the replay resumes
    correctly from there.
    """
    last: dict[tuple[str, str], Record] = {}
    top = 0
    for r in records:
        last[(r.bucket, r.key)] = r
        top = max(top, r.lsn)
    if not last:
        return top
    ordered = sorted(last.values(), key=lambda r: r.lsn)
    for i in range(0, len(ordered), REPLAY_BATCH):
        part = ordered[i : i + REPLAY_BATCH]
        # Records skipped as replaced sit between these LSNs; once the last part is in,
        # everything up to ``top`` is.
        upto = top if i + REPLAY_BATCH >= len(ordered) else part[-1].lsn
        ops = [
            PutOp(to_version(r.bucket, r.key, r.version_id, r.mtime_ns, r.value, r.crc))
            for r in part
        ]
        try:
            await meta.commit(ops, journal_lsn=upto)
        except (NotFound, InvalidArgument) as exc:  # one op failed, the rest is in
            log.error("journal replay: %s (the other records were applied)", exc)
    return top


async def open_journal(meta: MetaStore, path: Path) -> Journal:
    """Open the journal in ``path`` (``<data>/journal``) and apply what a crash left
    in it: after this, the MetaStore holds every acknowledged write. The caller owns
    (and closes) the result."""
    journal = Journal(path)
    applied = await meta.journal_lsn()
    pending = await asyncio.to_thread(journal.open, applied)
    if pending:
        log.info("journal: applying %d records left by an unclean stop", len(pending))
        await apply_records(meta, pending)
    await journal.release(journal.durable_lsn)
    return journal
