"""``kvbox fsck``: check a stopped server's data directory, and optionally repair it.

Layer: cli. Rules: refuses to run while a server holds the data directory (the same
``flock`` the server takes); prints ``FsckReport.render()``; exit status 0 when nothing
is damaged (leftovers a crash may leave are notes, not damage: ``kvbox.core.fsck``) or
it was repaired, 1 when damage remains (a database too damaged to read through
included), 2 when it could not check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.datadir import lock_data_dir
from kvbox.core.fsck import FsckReport, fsck
from kvbox.core.journal import JOURNAL_DIR, open_journal
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.errors import DataDamaged, KvboxError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "fsck",
        help="check a stopped server's data directory",
        description="Find orphan and missing chunks and counters that drifted from the "
        "rows in a data directory; with --verify also corrupt chunks, damaged inline values "
        "and damaged database pages, each damaged bucket/key/version named. --repair "
        "deletes orphans, drops versions whose bytes are lost and corrects the counters.",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("KVBOX_DATA", "./kvbox-data")),
        help="data directory (default: $KVBOX_DATA or ./kvbox-data)",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="delete orphan chunks; drop versions whose chunks or inline value are lost or "
        "damaged (never one object lock protects); correct drifted counters",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="read everything: rehash every chunk, check every inline value's checksum and "
        "SQLite's integrity_check",
    )
    p.set_defaults(func=run)


async def _check(data: Path, repair: bool, verify: bool) -> FsckReport:
    meta = SqliteMetaStore(data / META_FILE)
    blobs = LocalDirBlobStore(data)
    await meta.open()
    try:
        # Writes acknowledged from the journal belong in the metadata before it is checked.
        before = await meta.journal_lsn()
        await (await open_journal(meta, data / JOURNAL_DIR)).close()
        journal_applied = await meta.journal_lsn() != before
        # Counted before ``open``, which deletes them, so the report can say they were there.
        temp_files = await asyncio.to_thread(blobs.temp_files)
        if repair:
            await blobs.open()
        try:
            report = await fsck(meta, blobs, repair=repair, verify=verify)
        finally:
            await blobs.close()
    finally:
        await meta.close()
    report.temp_files = [p.name for p in temp_files]
    report.journal_applied = journal_applied
    return report


def run(args: argparse.Namespace) -> int:
    data: Path = args.data
    try:
        with lock_data_dir(data):
            if not (data / META_FILE).is_file():
                print(
                    f"kvbox fsck: {data} holds no {META_FILE}: not a data directory",
                    file=sys.stderr,
                )
                return 2
            report = asyncio.run(_check(data, args.repair, args.verify))
    except DataDamaged as exc:  # the database is too broken to go through
        print(f"kvbox fsck: {exc}", file=sys.stderr)
        print(
            f"kvbox fsck: restore {META_FILE} from a backup, or rebuild it: "
            f"sqlite3 {META_FILE} .recover | sqlite3 recovered.sqlite3",
            file=sys.stderr,
        )
        return 1
    except KvboxError as exc:
        print(f"kvbox fsck: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1
