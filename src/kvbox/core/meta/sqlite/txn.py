"""``SqliteTxn``: the ``MetaTxn`` of the SQLite store, an overlay in front of bulk SQL.

Layer: core (storage of ``kvbox.core.meta.sqlite``; only the writer thread touches it).
Rules:

* **Overlay, then bulk SQL.** The rules (``kvbox.core.meta.rules``) decide every op
  against an in-memory overlay that knows, for each key a batch writes, its newest and
  its null version (loaded a thousand keys per query up front, ``prefetch``, or still
  there from an earlier batch). The overlay records only the *net* change per row and
  per key; at the end of the batch (or before a read that must see it) it is written
  with a handful of multi-row statements, whatever the number of ops (``flush``). Each
  statement releases the GIL once, for a long stretch, instead of once per row.
* **Rows change in place.** Replacing a null version (every write in an unversioned
  bucket) rewrites that row under the same row id, and no index covers what such a
  write changes, so it touches one B-tree. A versioned write appends a row and moves
  the key's entry in the small ``live`` table, never touching the old row.
* **A cache of hot keys.** The key maps outlive the transaction (after COMMIT they hold
  exactly the committed rows), so hot keys need no query at all: they are the young
  generation of a two-generation cache, ``old_newest``/``old_nulls`` the old one, from
  which a key moves back when used. A key is changed only once it is in the young
  generation; a key in neither reads correctly from the database; a rollback drops both
  generations (a rollback to a savepoint, the keys used since).
* **Failure isolation** (the writer, ``writer.py``, drives it): in *fast* mode a failure
  that is not a ``KvboxError`` (a duplicate version id caught by a unique index, a disk
  error) raises ``Retry`` and the batch is replayed in *safe* mode, where every op and
  every job runs under a savepoint and is flushed at once, so only the failing one is
  lost.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any, Final, TypeVar

from kvbox.core.meta import rules
from kvbox.core.meta.codec import chunk_digests
from kvbox.core.meta.sqlite.rows import PlainRows
from kvbox.core.meta.sqlite.schema import (
    COLS,
    COLUMNS,
    ID,
    INLINE,
    IS_NULL,
    KEY,
    NCOLS,
    SEQ,
    VCOLS,
    Row,
    heads_sql,
    row_of,
    translate,
    version_of,
)
from kvbox.core.meta.txn import MetaTxn
from kvbox.core.model import (
    Bucket,
    ObjectVersion,
    VersionIdGenerator,
    WriteOp,
    WriteResult,
)
from kvbox.errors import KvboxError

T = TypeVar("T")

#: Keys whose newest and null rows the writer keeps in memory between batches (in two
#: generations of up to half this each), and a rough bound on the inline bytes they
#: hold: hot keys then need no prefetch query at all.
ROW_CACHE_KEYS: Final = 65536
ROW_CACHE_BYTES: Final = 32 * 1024 * 1024
#: Keys per prefetch query: well under SQLite's JSON and statement limits.
_PREFETCH_CHUNK: Final = 1000

# Writer reads (parameter 1 is the bucket id). The last column tells a newest row (1)
# from a null version that is not the newest (0).
_SQL_KEY_STATE = (
    heads_sql("h.bucket = ?1 AND h.key = ?2", ", 1")
    + f" UNION ALL SELECT {COLS}, 0 FROM versions WHERE bucket = ?1 AND key = ?2 AND is_null = 1"
)
_SQL_PREFETCH = (
    "WITH j AS MATERIALIZED (SELECT value FROM json_each(?2)) "
    + heads_sql("h.bucket = ?1 AND h.key IN (SELECT value FROM j)", ", 1")
    + f" UNION ALL SELECT {VCOLS}, 0 FROM versions AS v"
    " WHERE v.bucket = ?1 AND v.key IN (SELECT value FROM j) AND v.is_null = 1"
)
_SQL_BY_ID = (
    f"SELECT {COLS} FROM versions"
    " WHERE bucket = ?1 AND key = ?2 AND version_id = ?3 AND is_null = 0"
)
_SQL_PREVIOUS = (
    f"SELECT {COLS} FROM versions WHERE bucket = ?1 AND key = ?2 AND is_null = 0"
    " AND id != ?3 ORDER BY seq DESC LIMIT 1"
)
_SQL_ALL_NON_NULL = (
    f"SELECT {COLS} FROM versions WHERE bucket = ?1 AND key = ?2 AND is_null = 0 ORDER BY seq DESC"
)
_SQL_ANY = "SELECT 1 FROM live WHERE bucket = ?1 UNION ALL SELECT 1 FROM markers WHERE bucket = ?1"

# Writer changes: each is ONE statement for the whole batch (or one per power-of-two
# chunk of rows), because every statement releases and re-takes the GIL, and with the
# event loop busy each re-take waits for a thread switch: per-row statements
# (executemany) would spend more time waiting than working.
_SQL_DELETE = "DELETE FROM versions WHERE id IN (SELECT value FROM json_each(?))"
_SQL_UNHEAD = {
    table: f"DELETE FROM {table} WHERE bucket = ? AND key IN (SELECT value FROM json_each(?))"
    for table in ("live", "markers")
}
#: Rows per multi-row statement: 15 parameters a row stays under SQLite's 32766.
_CHUNK_MAX: Final = 1024
_CHUNK_SIZES: Final = tuple(1 << i for i in range(_CHUNK_MAX.bit_length() - 1, -1, -1))


def _upsert_sql(rows: int) -> str:
    """Insert new rows and rewrite the content of existing ones (a null version
    replaced in place) in one statement; ``is_null``, ``bucket`` and ``key`` never
    change, so the partial indexes on them are not touched by a rewrite."""
    one = "(" + ", ".join("?" * NCOLS) + ")"
    sets = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[SEQ:])
    return (
        f"INSERT INTO versions ({COLS}) VALUES {', '.join([one] * rows)}"
        f" ON CONFLICT (id) DO UPDATE SET {sets}"
    )


def _head_sql(table: str, rows: int) -> str:
    values = ", ".join(["(?, ?, ?)"] * rows)
    return (
        f"INSERT INTO {table} (bucket, key, id) VALUES {values}"
        " ON CONFLICT (bucket, key) DO UPDATE SET id = excluded.id"
    )


_SQL_UPSERT: Final = {n: _upsert_sql(n) for n in _CHUNK_SIZES}
_SQL_HEAD_SET: Final = {
    table: {n: _head_sql(table, n) for n in _CHUNK_SIZES} for table in ("live", "markers")
}

_Key = tuple[int, str]
#: A key's newest version as ``live``/``markers`` have it: (row id, is a marker).
_Head = tuple[int, bool] | None


class _KeyState:
    """One key in the overlay (``KeyState``): its newest and null versions with their
    row ids (0: none), as committed plus what the current transaction changed; and, once
    the transaction touched it, its head as in the database (``head0``)."""

    __slots__ = ("bid", "head0", "key", "newest", "null", "null_rid", "rid", "touched")

    def __init__(self, bid: int, key: str) -> None:
        self.bid = bid
        self.key = key
        self.newest: ObjectVersion | None = None
        self.rid = 0
        self.null: ObjectVersion | None = None
        self.null_rid = 0
        self.touched = False
        self.head0: _Head = None

    def head(self) -> _Head:
        v = self.newest
        return None if v is None else (self.rid, v.is_delete_marker)


def _chunked(c: sqlite3.Cursor, sqls: Mapping[int, str], rows: Sequence[Sequence[Any]]) -> None:
    """Run a multi-row statement over ``rows`` in power-of-two chunks (a few statement
    shapes, each prepared once)."""
    i, n = 0, len(rows)
    for size in _CHUNK_SIZES:
        while n - i >= size:
            c.execute(sqls[size], list(chain.from_iterable(rows[i : i + size])))
            i += size


class Retry(Exception):
    """An op failed after it had changed something: replay the batch with savepoints."""


class Lost(Exception):
    """SQLite rolled the whole transaction back by itself: the batch is lost, whole.

    On SQLITE_FULL (a full disk) or SQLITE_IOERR SQLite may undo the entire transaction
    rather than the failing statement. Carrying on would be wrong twice over: a
    savepoint of the lost transaction no longer exists, and the next statement runs in
    autocommit, so the jobs after the failure would each commit on their own while the
    counter deltas of jobs already rolled back were still added -- the cause of a
    bucket's object and byte counters drifting from its rows after a disk-full episode
    (``STATS`` 62,914 objects against 63,017 live rows). Every entry point that needs the
    transaction checks it is still there and raises this instead; the writer then fails
    every job of the batch and reloads its state from the database.
    """

    def __init__(self, cause: BaseException | None) -> None:
        #: What the batch's callers are told (``StorageFull`` for a full disk).
        self.error = translate(cause) if cause is not None else None
        super().__init__(str(self.error) if cause is not None else "transaction lost")


class _Savepoint:
    __slots__ = ("deltas", "keys", "name", "next_id", "seq")

    def __init__(self, name: str, seq: int, next_id: int, deltas: dict[int, list[int]]) -> None:
        self.name = name
        self.seq = seq
        self.next_id = next_id
        self.deltas = deltas
        #: Keys used since: their cached rows may hold what the rollback undoes.
        self.keys: set[_Key] = set()


class SqliteTxn(PlainRows):
    """The writer thread's ``MetaTxn`` over one connection (module docstring).

    Until ``flush`` writes them, ``orig``/``cur`` map each changed row id to the version
    as in the database (None: new) and as it is now (None: removed), and ``touched``
    lists the keys whose newest version may have changed (with their head as in the
    database).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.c = conn.cursor()
        self.ids = VersionIdGenerator()
        self.seq = self.saved_seq = 0
        #: Journal LSN applied, as in the transaction and as committed (``state``).
        self.journal = self.saved_journal = 0
        self.next_id = 1
        self.buckets: dict[str, Bucket] = {}
        self.bids: dict[str, int] = {}
        self.names: dict[int, str] = {}
        #: The cache of hot keys: young and old generation (module docstring).
        self.states: dict[_Key, _KeyState] = {}
        self.old_states: dict[_Key, _KeyState] = {}
        #: Inline bytes that rows brought into the young generation (an estimate).
        self.young_bytes = 0
        self.orig: dict[int, ObjectVersion | None] = {}
        self.cur: dict[int, ObjectVersion | None] = {}
        #: Keys whose newest version may have changed since the last flush.
        self.touched: list[_KeyState] = []
        #: Row ids of versions read by query in this transaction, by ``seq`` (unique).
        self.found: dict[int, int] = {}
        #: bucket id -> [objects delta, bytes delta] of the transaction so far.
        self.deltas: dict[int, list[int]] = {}
        #: Non-null version ids inserted since the last flush (a clash shows there).
        self.unchecked: list[str] = []
        self.savepoints: list[_Savepoint] = []
        self.safe = False
        #: Ops go through ``isolated`` in safe mode only (the fast mode replays instead).
        self.isolating = False
        self.reload()

    # --- the transaction ----------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the state from the database (at open and after a rollback)."""
        c = self.c
        seq, journal = c.execute("SELECT seq, journal FROM state").fetchone()
        self.seq = self.saved_seq = int(seq)
        self.journal = self.saved_journal = int(journal)
        self.next_id = int(c.execute("SELECT coalesce(max(id), 0) FROM versions").fetchone()[0]) + 1
        self._load_buckets()
        self._drop_cache()
        self.forget()

    def begin(self, safe: bool) -> None:
        self.forget()
        self._age()
        self.safe = self.isolating = safe
        self.c.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Write what is left and COMMIT (one fsync of the WAL)."""
        self.flush_or_retry()
        self._still_open(None)
        deltas = [(d[0], d[1], bid) for bid, d in self.deltas.items() if d[0] or d[1]]
        self.deltas.clear()
        if deltas:
            self.c.executemany(
                "UPDATE buckets SET objects = objects + ?, bytes = bytes + ? WHERE id = ?", deltas
            )
        if self.seq != self.saved_seq or self.journal != self.saved_journal:
            self.c.execute("UPDATE state SET seq = ?, journal = ?", (self.seq, self.journal))
        self.c.execute("COMMIT")
        self.saved_seq = self.seq
        self.saved_journal = self.journal
        self.forget()

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.reload()

    def forget(self) -> None:
        """Drop the pending row and head changes, the counter deltas, the savepoints."""
        self.orig.clear()
        self.cur.clear()
        self._untouch()
        self.deltas.clear()
        self.found.clear()
        self.unchecked.clear()
        self.savepoints.clear()

    def _untouch(self) -> None:
        for ks in self.touched:
            ks.touched = False
        self.touched.clear()

    def _drop_cache(self) -> None:
        self.states.clear()
        self.old_states.clear()
        self.young_bytes = 0

    def _age(self) -> None:
        """Between transactions: a full young generation becomes the old one."""
        if len(self.states) < ROW_CACHE_KEYS // 2 and self.young_bytes < ROW_CACHE_BYTES // 2:
            return
        self.old_states = self.states
        self.states = {}
        self.young_bytes = 0

    def guarded(self, fn: Callable[[MetaTxn[Any]], T]) -> T:
        """Run one job of the batch (module docstring: failure isolation)."""
        if not self.safe:
            try:
                return fn(self)
            except (KvboxError, Retry):
                raise
            except Exception as exc:
                raise Retry from exc
        token = self.savepoint()
        try:
            result = fn(self)
            self.flush()
        except KvboxError:
            # A commit's op error: the other ops stay (rules.commit raises it last);
            # any other job changed nothing before raising it.
            self.release(token)
            raise
        except BaseException as exc:
            self.rollback_to(token, exc)
            raise translate(exc) from exc
        self.release(token)
        return result

    def isolated(
        self, fn: Callable[[MetaTxn[_KeyState], WriteOp], WriteResult], op: WriteOp
    ) -> WriteResult:
        if not self.safe:
            return fn(self, op)  # ``guarded`` turns other failures into a replay
        token = self.savepoint()
        try:
            r = fn(self, op)
            self.flush()
        except BaseException as exc:
            self.rollback_to(token, exc)
            raise translate(exc) from exc
        self.release(token)
        return r

    # --- loading keys -------------------------------------------------------------------

    def prefetch(self, keys: Sequence[tuple[str, str]]) -> None:
        """Bring the newest and null rows of ``keys`` into the young generation: from the
        old one, else a thousand keys per query (one index probe each, without a Python
        round trip per op)."""
        bids, states, old = self.bids, self.states, self.old_states
        misses: dict[int, list[str]] = {}
        for name, key in keys:
            bid = bids.get(name)
            if bid is None:
                continue  # the op will raise NoSuchBucket
            kk = (bid, key)
            if kk in states:
                continue
            ks = old.pop(kk, None)
            if ks is None:
                states[kk] = _KeyState(bid, key)
                misses.setdefault(bid, []).append(key)
            else:
                states[kk] = ks
        for bid, wanted in misses.items():
            for i in range(0, len(wanted), _PREFETCH_CHUNK):
                part = json.dumps(wanted[i : i + _PREFETCH_CHUNK], ensure_ascii=False)
                self._take(bid, self.c.execute(_SQL_PREFETCH, (bid, part)).fetchall())

    def _take(self, bid: int, tagged: list[Row]) -> None:
        """File rows of ``_SQL_KEY_STATE``/``_SQL_PREFETCH`` (a version plus a last
        column, 1 for a newest row) into their keys' states. A null version that is also
        the newest becomes ONE object in both places (the rules compare by identity)."""
        states = self.states
        name = self.names[bid]
        for tagged_row in tagged:
            row = tagged_row[:NCOLS]
            ks = states[(bid, row[KEY])]
            rid = row[ID]
            if tagged_row[NCOLS]:
                if ks.null is not None and ks.null_rid == rid:
                    ks.newest = ks.null
                else:
                    ks.newest = version_of(row, name)
                ks.rid = rid
                if row[IS_NULL]:
                    ks.null, ks.null_rid = ks.newest, rid
            else:
                if ks.newest is not None and ks.rid == rid:
                    ks.null = ks.newest
                else:
                    ks.null = version_of(row, name)
                ks.null_rid = rid
            if row[INLINE] is not None:
                self.young_bytes += len(row[INLINE])

    def _lookup(self, kk: _Key) -> _KeyState:
        """The state of a key not in the young generation (which then has it)."""
        ks = self.old_states.pop(kk, None)
        if ks is None:
            ks = self.states[kk] = _KeyState(*kk)
            self._take(kk[0], self.c.execute(_SQL_KEY_STATE, kk).fetchall())
        else:
            self.states[kk] = ks
        return ks

    def _known(self, ks: _KeyState, row: Row) -> ObjectVersion:
        """The object for a queried row: the one the key's state holds if it holds that
        row (identity matters to the rules), else a new one remembered by its seq."""
        rid = row[ID]
        if ks.newest is not None and ks.rid == rid:
            return ks.newest
        if ks.null is not None and ks.null_rid == rid:
            return ks.null
        v = version_of(row, self.names[ks.bid])
        self.found[v.seq] = rid
        return v

    def _rid(self, ks: _KeyState, v: ObjectVersion) -> int:
        if v is ks.newest:
            return ks.rid
        if v is ks.null:
            return ks.null_rid
        return self.found[v.seq]

    def _touch(self, ks: _KeyState) -> None:
        """The key's newest version may change: remember its head as in the database."""
        if not ks.touched:
            ks.touched = True
            ks.head0 = ks.head()
            self.touched.append(ks)

    # --- the overlay's way to the database ----------------------------------------------

    def flush(self) -> None:
        """Write the overlay's net changes: removed rows, then head entries that went
        away, then new and rewritten rows, then new head entries; in that order no
        unique index ever sees two null versions of one key."""
        c = self.c
        cur, orig = self.cur, self.orig
        self.unchecked.clear()
        rows: list[Row] = []
        if cur:
            deletes: list[int] = []
            bids = self.bids
            for rid, v in cur.items():
                if v is None:
                    if orig[rid] is not None:
                        deletes.append(rid)
                elif v is not orig[rid]:
                    rows.append(row_of(rid, bids[v.bucket], v))  # new, or new content
            cur.clear()
            orig.clear()
            if deletes:
                c.execute(_SQL_DELETE, (json.dumps(deletes),))
        gone: dict[tuple[str, int], list[str]] = {}
        came: dict[str, list[tuple[int, str, int]]] = {"live": [], "markers": []}
        if self.touched:
            for ks in self.touched:
                ks.touched = False
                before, after = ks.head0, ks.head()
                if after == before:
                    continue
                if before is not None and (after is None or after[1] != before[1]):
                    table = "markers" if before[1] else "live"
                    gone.setdefault((table, ks.bid), []).append(ks.key)
                if after is not None:
                    came["markers" if after[1] else "live"].append((ks.bid, ks.key, after[0]))
            self.touched.clear()
        for (table, bid), keys in gone.items():
            c.execute(_SQL_UNHEAD[table], (bid, json.dumps(keys, ensure_ascii=False)))
        if rows:
            _chunked(c, _SQL_UPSERT, rows)
        for table, entries in came.items():
            if entries:
                _chunked(c, _SQL_HEAD_SET[table], entries)

    def flush_or_retry(self) -> None:
        """Flush changes of earlier ops: in fast mode, a failure here (a duplicate
        version id, say) cannot be pinned on one op, so the batch is replayed."""
        if self.safe:
            self.flush()
            return
        try:
            self.flush()
        except Exception as exc:
            raise Retry from exc

    # --- savepoints ---------------------------------------------------------------------

    def _still_open(self, cause: BaseException | None) -> None:
        """Raise ``Lost`` if SQLite ended the transaction by itself: a SAVEPOINT, an
        UPDATE or a COMMIT would otherwise run in autocommit (``Lost``)."""
        if not self.conn.in_transaction:
            raise Lost(cause) from cause

    def savepoint(self) -> object:
        self.flush_or_retry()  # the savepoint then covers exactly what follows
        self._still_open(None)
        sp = _Savepoint(
            f"sp{len(self.savepoints)}",
            self.seq,
            self.next_id,
            {b: list(d) for b, d in self.deltas.items()},
        )
        self.c.execute(f"SAVEPOINT {sp.name}")
        self.savepoints.append(sp)
        return len(self.savepoints)

    def rollback_to(self, token: object, cause: BaseException | None = None) -> None:
        self._still_open(cause)  # no savepoint is left to roll back to
        sp = self.savepoints[-1]
        assert token == len(self.savepoints)
        self.c.execute(f"ROLLBACK TO {sp.name}")
        self.c.execute(f"RELEASE {sp.name}")
        self.savepoints.pop()
        # Everything was flushed when the savepoint was taken, so what the overlay holds
        # beyond it is exactly what the rollback undid: drop it, and the keys used since.
        self.orig.clear()
        self.cur.clear()
        self._untouch()
        self.unchecked.clear()
        for kk in sp.keys:
            self.states.pop(kk, None)
            self.old_states.pop(kk, None)
        for outer in self.savepoints:
            outer.keys |= sp.keys
        self.seq, self.next_id, self.deltas = sp.seq, sp.next_id, sp.deltas
        self._load_buckets()  # a bucket change since is undone too

    def release(self, token: object) -> None:
        self._still_open(None)
        sp = self.savepoints.pop()
        assert token == len(self.savepoints) + 1
        self.c.execute(f"RELEASE {sp.name}")
        if self.savepoints:
            self.savepoints[-1].keys |= sp.keys

    def check(self) -> None:
        """Inside a savepoint only: a failing flush is undone by its rollback."""
        vids = list(self.unchecked)
        try:
            self.flush()
        except sqlite3.IntegrityError as exc:
            if len(vids) == 1:
                raise rules.duplicate(vids[0]) from exc
            raise translate(exc) from exc

    def bucket_has_versions(self, name: str) -> bool:
        self.flush_or_retry()
        return self.c.execute(_SQL_ANY, (self.bids[name],)).fetchone() is not None

    # --- one key's versions -------------------------------------------------------------

    def key(self, bucket: str, key: str) -> _KeyState:
        kk = (self.bids[bucket], key)
        ks = self.states.get(kk)
        if ks is None:
            ks = self._lookup(kk)
        if self.savepoints:
            self.savepoints[-1].keys.add(kk)
        return ks

    def version(self, k: _KeyState, version_id: str) -> ObjectVersion | None:
        self.flush_or_retry()  # the database must hold this key's rows as they are now
        row = self.c.execute(_SQL_BY_ID, (k.bid, k.key, version_id)).fetchone()
        return None if row is None else self._known(k, row)

    def newest_other(self, k: _KeyState, excluding: ObjectVersion) -> ObjectVersion | None:
        rid = self._rid(k, excluding)
        self.flush_or_retry()
        row = self.c.execute(_SQL_PREVIOUS, (k.bid, k.key, rid)).fetchone()
        return None if row is None else self._known(k, row)

    def versions(self, k: _KeyState) -> list[ObjectVersion]:
        self.flush_or_retry()
        rows = self.c.execute(_SQL_ALL_NON_NULL, (k.bid, k.key)).fetchall()
        out = [self._known(k, r) for r in rows]
        if k.null is not None:
            out.append(k.null)
            out.sort(key=lambda v: v.seq, reverse=True)
        return out

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def insert(self, k: _KeyState, v: ObjectVersion) -> None:
        if not k.touched:
            self._touch(k)
        rid = self.next_id
        self.next_id = rid + 1
        self.orig[rid] = None
        self.cur[rid] = v
        self.found[v.seq] = rid
        if v.is_null:
            k.null, k.null_rid = v, rid
        else:
            self.unchecked.append(v.version_id)  # the unique index checks it at flush
        if v.inline is not None:
            self.young_bytes += len(v.inline)

    def replace(self, k: _KeyState, old: ObjectVersion, new: ObjectVersion) -> None:
        if not k.touched:
            self._touch(k)
        rid = self._rid(k, old)
        if rid not in self.orig:
            self.orig[rid] = old
        self.cur[rid] = new
        held = False
        if k.null is old:
            k.null = new
            held = True
        if k.newest is old:
            k.newest = new
            held = True
        if not held:
            self.found[new.seq] = rid
        if new.inline is not None:
            self.young_bytes += len(new.inline)

    def remove(self, k: _KeyState, v: ObjectVersion) -> None:
        self._touch(k)
        rid = self._rid(k, v)
        if rid not in self.orig:
            self.orig[rid] = v
        self.cur[rid] = None
        if k.null is v:
            k.null, k.null_rid = None, 0

    def set_newest(self, k: _KeyState, after: ObjectVersion | None) -> None:
        if not k.touched:
            self._touch(k)
        if after is None:
            k.rid = 0
        elif after is not k.newest:
            k.rid = k.null_rid if after is k.null else self.found[after.seq]
        k.newest = after

    def count(self, k: _KeyState, objects: int, nbytes: int) -> None:
        d = self.deltas.get(k.bid)
        if d is None:
            self.deltas[k.bid] = [objects, nbytes]
        else:
            d[0] += objects
            d[1] += nbytes

    # --- chunk references ---------------------------------------------------------------

    def versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        wanted = {bytes.fromhex(c) for c in chunk_ids}
        self.flush_or_retry()
        scan = self.conn.cursor()
        try:
            rows = [
                row
                for row in scan.execute(f"SELECT {COLS} FROM versions WHERE chunks IS NOT NULL")
                if not wanted.isdisjoint(chunk_digests(row[11]))
            ]
        finally:
            scan.close()
        out: list[ObjectVersion] = []
        for row in rows:
            v = version_of(row, self.names[row[1]])
            self.found[v.seq] = row[ID]
            out.append(v)
        return out

    def set_journal_lsn(self, lsn: int) -> None:
        if lsn > self.journal:
            self.journal = lsn  # a rollback re-reads it; a replay sets it again
