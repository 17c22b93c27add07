"""The write-ahead journal: small writes made durable by one append, applied later.

Layer: core. Why it exists: a pipelined SET used to be acknowledged only after the
metadata writer had rewritten its row inside an fsync'd SQLite transaction, and that
writer (Python deciding each op, then SQLite's page writes) capped durable SETs at about
30,000/s. Now a plain small write into a bucket without versioning is acknowledged once
its record is in an fsync'd journal frame (``log.Journal``); it is kept in memory
(the memtable), where reads find it, and the memtable is applied to the MetaStore in
the background, in one commit per interval that also stores the journal LSN it covers
(``MetaStore.commit(journal_lsn=...)``). A key overwritten many times in an interval is
applied once.

One home per piece: ``codec`` (frames and records, pure), ``log`` (segment files, the
flush thread), ``memtable`` (acknowledged writes not yet applied), ``writes`` (submission,
the applier and the barrier direct writes wait on), ``replay`` (recovery: records after
the MetaStore's ``journal_lsn()`` are applied before anything else runs; a torn last
frame was never acknowledged and is cut).
"""

from __future__ import annotations

from kvbox.core.journal.codec import Record
from kvbox.core.journal.log import JOURNAL_DIR, Journal
from kvbox.core.journal.memtable import Memtable, to_version
from kvbox.core.journal.replay import apply_records, open_journal
from kvbox.core.journal.writes import JournalWrites

__all__ = [
    "JOURNAL_DIR",
    "Journal",
    "JournalWrites",
    "Memtable",
    "Record",
    "apply_records",
    "open_journal",
    "to_version",
]
