"""``PgTxn``: the shared rules' ``MetaTxn`` over one PostgreSQL transaction.

Layer: core (storage of ``kvbox.core.meta.postgres``). The rules are synchronous and
asyncpg is not, so the transaction is an in-memory *overlay* (``kvbox.core.meta.txn``'s
contract, the way ``sqlite/txn.py`` does it with its own reasons):

* **Lock, load, decide, write.** Every row the rules read is first locked and loaded
  inside the transaction: a bucket row ``FOR KEY SHARE`` (``FOR UPDATE`` before the rules
  change the bucket), a key's ``heads`` row ``FOR UPDATE`` (the key's lock: all its
  versions hang off it), chunk rows, upload rows and users ``FOR UPDATE``. The writer
  (``writer.py``) loads what a batch's ops name up front; anything else a read method
  finds missing raises ``NeedRows``, and ``txn.run_loading`` rolls the job back, awaits
  the load and runs it again. Then the rules decide in memory, and ``flush`` writes the
  net changes with a few statements of whole arrays (``unnest``), whatever the number
  of ops. So a write decides on rows no other transaction can change until it commits:
  two gateways racing on one key get exactly the outcome of one gateway, in some order.
* **Races on rows that do not exist yet** (a key's first version, a bucket's or a
  user's name) are settled by the unique indexes: the second insert waits for the first
  transaction and then fails with a unique violation, and the writer runs the whole
  batch again, which now sees the winner's row (``kvbox.core.pg.retryable``).
* **seq** comes from the ``version_seq`` sequence, fetched after the locks of every key
  the transaction has loaded are held (a load drops numbers fetched before it), so a
  key's versions are numbered in commit order whichever gateway writes them.
* **Duplicate version ids** are caught at ``insert`` (the key's versions with that id
  are looked up first), never by an index at flush time, so an op fails before it has
  changed anything and no op needs ``isolated``.
* **Savepoints** are an undo log of the overlay's changes (``txn.UndoLog``, as in
  ``memory.py``).
* Reads that span rows no op names (is a bucket empty, a bucket's uploads, who owns
  buckets, which versions hold a chunk) combine a query of the rows the overlay has not
  loaded with the overlay's own view of the rows it has, so they are exact at any point
  of a batch without writing anything first.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from kvbox.core.meta import rules
from kvbox.core.meta.codec import chunk_counts, chunk_digests, enc_attrs
from kvbox.core.meta.postgres.rows import (
    BUCKET_COLS,
    KEY_COLS,
    PART_COLS,
    UPLOAD_COLS,
    V_VCOLS,
    VCOLS,
    VERSION_COLUMNS,
    VTYPES,
    Connection,
    Record,
    bucket_of,
    columns,
    key_of,
    part_of,
    part_row,
    unnest,
    upload_of,
    user_of,
    version_of,
    version_row,
)
from kvbox.core.meta.txn import MetaTxn, NeedRows, UndoLog
from kvbox.core.meta.users import AccessKey, User
from kvbox.core.model import (
    Bucket,
    ChunkRef,
    MultipartUpload,
    ObjectVersion,
    Part,
    VersionIdGenerator,
    WriteOp,
    WriteResult,
)
from kvbox.errors import StorageError

#: Version numbers fetched per round trip at least (the writer asks for what a batch's
#: ops can write; a rules run that needs more raises NeedRows for another block).
SEQ_BLOCK: Final = 64
#: Stripes of a bucket's counters (``bucket_counts``): a connection adds to one.
STRIPES: Final = 16
#: NOTIFY channel of metadata changes other gateways' caches must hear of.
CHANNEL: Final = "kvbox_changes"
#: Why a GW-KV journal cannot run over shared metadata (migration 0005): its LSNs are
#: one gateway's, and one row for all gateways would make a gateway skip its own records.
NO_JOURNAL: Final = (
    "a GW-KV journal cannot run over PostgreSQL metadata: with --meta writes are"
    " acknowledged after their COMMIT and no journal LSN is stored"
)
#: Largest NOTIFY payload PostgreSQL takes is 8000 bytes; beyond this, "everything".
_MAX_PAYLOAD: Final = 7000

_serials = itertools.count(1)

_VKEY = unnest(("int8", "text", "int8"))
_SQL_LOCK_HEADS = (
    "SELECT h.bucket, h.key, h.seq, h.is_dm FROM heads h"
    f" JOIN {unnest(('int8', 'text'))} AS w(bucket, key) ON h.bucket = w.bucket AND h.key = w.key"
    " ORDER BY h.bucket, h.key FOR UPDATE OF h"
)
_SQL_LOAD_VERSIONS = (
    f"SELECT {V_VCOLS} FROM versions v"
    f" JOIN {unnest(('int8', 'text', 'int8'))} AS w(bucket, key, seq)"
    " ON v.bucket = w.bucket AND v.key = w.key AND v.seq = w.seq"
    f" UNION ALL SELECT {V_VCOLS} FROM versions v"
    f" JOIN {unnest(('int8', 'text'), 4)} AS w(bucket, key)"
    " ON v.bucket = w.bucket AND v.key = w.key AND v.is_null"
    f" UNION ALL SELECT {V_VCOLS} FROM versions v"
    f" JOIN {unnest(('int8', 'text', 'text'), 6)} AS w(bucket, key, vid)"
    " ON v.bucket = w.bucket AND v.key = w.key AND v.version_id = w.vid AND NOT v.is_null"
)
_SQL_ALL_VERSIONS = f"SELECT {VCOLS} FROM versions WHERE bucket = $1 AND key = $2"
_SQL_LOCK_CHUNKS = (
    "SELECT chunk_id, size, refs FROM chunks WHERE chunk_id = ANY($1::bytea[])"
    " ORDER BY chunk_id FOR UPDATE"
)
_SQL_SEQS = "SELECT nextval('version_seq') FROM generate_series(1, $1)"

_SQL_DELETE_VERSIONS = (
    f"DELETE FROM versions v USING {_VKEY} AS d(bucket, key, seq)"
    " WHERE v.bucket = d.bucket AND v.key = d.key AND v.seq = d.seq"
)
_SQL_INSERT_VERSIONS = f"INSERT INTO versions ({VCOLS}) SELECT * FROM {unnest(VTYPES)}"
_SQL_UPDATE_VERSIONS = (
    "UPDATE versions v SET "
    + ", ".join(f"{c} = u.{c}" for c in VERSION_COLUMNS[3:])
    + f" FROM {unnest(VTYPES)} AS u({VCOLS})"
    " WHERE v.bucket = u.bucket AND v.key = u.key AND v.seq = u.seq"
)
_SQL_DELETE_HEADS = (
    f"DELETE FROM heads h USING {unnest(('int8', 'text'))} AS d(bucket, key)"
    " WHERE h.bucket = d.bucket AND h.key = d.key"
)
_SQL_INSERT_HEADS = (
    "INSERT INTO heads (bucket, key, seq, is_dm)"
    f" SELECT * FROM {unnest(('int8', 'text', 'int8', 'bool'))}"
)
_SQL_UPDATE_HEADS = (
    f"UPDATE heads h SET seq = u.seq, is_dm = u.is_dm"
    f" FROM {unnest(('int8', 'text', 'int8', 'bool'))} AS u(bucket, key, seq, is_dm)"
    " WHERE h.bucket = u.bucket AND h.key = u.key"
)
_SQL_COUNTS = (
    "INSERT INTO bucket_counts (bucket, stripe, objects, bytes)"
    f" SELECT b, $1, o, n FROM {unnest(('int8', 'int8', 'int8'), 2)} AS d(b, o, n)"
    " ON CONFLICT (bucket, stripe) DO UPDATE SET"
    " objects = bucket_counts.objects + excluded.objects,"
    " bytes = bucket_counts.bytes + excluded.bytes"
)
_SQL_REFS = (
    "INSERT INTO chunks (chunk_id, size, refs)"
    f" SELECT * FROM {unnest(('bytea', 'int8', 'int8'))}"
    " ON CONFLICT (chunk_id) DO UPDATE SET refs = chunks.refs + excluded.refs"
)
_SQL_DROP_CHUNKS = "DELETE FROM chunks WHERE chunk_id = ANY($1::bytea[]) AND refs <= 0"
_SQL_UPSERT_PARTS = (
    "INSERT INTO parts (upload_id, part_number, etag, size, chunks, mtime_ns, attrs)"
    f" SELECT * FROM {unnest(('text', 'int4', 'text', 'int8', 'bytea', 'int8', 'text'))}"
    " ON CONFLICT (upload_id, part_number) DO UPDATE SET etag = excluded.etag,"
    " size = excluded.size, chunks = excluded.chunks, mtime_ns = excluded.mtime_ns,"
    " attrs = excluded.attrs"
)
_SQL_DELETE_PARTS = (
    f"DELETE FROM parts p USING {unnest(('text', 'int4'))} AS d(u, n)"
    " WHERE p.upload_id = d.u AND p.part_number = d.n"
)

_Conn = Connection
_Action = Callable[[_Conn], Awaitable[None]]


class _ReplayedIds(VersionIdGenerator):
    """Version ids (for delete markers) that a rerun gets again: ``run_loading`` reruns
    a rules function after a load, and a marker given a new id each run would need a new
    duplicate check each run, for ever. Ids made here are new by construction (unique
    per process, random across them; the unique index is the last word), so ``insert``
    does not look them up."""

    def __init__(self, source: VersionIdGenerator) -> None:
        self._source = source
        self._made: list[str] = []
        self.issued: set[str] = set()
        self.pos = 0

    def new(self) -> str:
        if self.pos == len(self._made):
            vid = self._source.new()
            self._made.append(vid)
            self.issued.add(vid)
        vid = self._made[self.pos]
        self.pos += 1
        return vid

    def rewind(self, pos: int) -> None:
        self.pos = pos


class _Bucket:
    """A bucket row as the transaction holds it (None in ``PgTxn.buckets``: no such
    bucket). ``id`` is None until a new bucket's row is inserted at flush."""

    __slots__ = ("bucket", "deleted", "exclusive", "id", "other_head", "serial", "uploads_db")

    def __init__(self, bucket: Bucket, bid: int | None, exclusive: bool) -> None:
        self.bucket = bucket
        self.id = bid
        self.exclusive = exclusive
        self.deleted = False
        self.serial = next(_serials)
        #: Upload ids of the bucket in the database (loaded under the exclusive lock).
        self.uploads_db: set[str] | None = None
        #: (a key with a head row in the database that the overlay had not loaded, or
        #: None: none outside ``keys``; the keys the overlay had loaded then).
        self.other_head: tuple[str | None, frozenset[str]] | None = None


class _Key:
    """One key in the overlay (``KeyState``): its versions by ``seq`` as in the
    database (``db``) and as the transaction has them now (``cur``); ``full`` when
    ``cur`` holds every version of the key, else at least the newest and the null one
    and those looked up by id (``probed``)."""

    __slots__ = ("b", "cur", "db", "dirty", "full", "head0", "key", "newest", "null", "probed")

    def __init__(self, b: _Bucket, key: str) -> None:
        self.b = b
        self.key = key
        self.newest: ObjectVersion | None = None
        self.null: ObjectVersion | None = None
        self.cur: dict[int, ObjectVersion] = {}
        self.db: dict[int, ObjectVersion] = {}
        #: The head row as in the database: (seq, is a delete marker), or None.
        self.head0: tuple[int, bool] | None = None
        self.full = False
        self.probed: set[str] = set()
        self.dirty = False


def _row_key(row: tuple[Any, ...]) -> tuple[int, str]:
    """(bucket id, key): the order row locks are taken in."""
    return row[0], row[1]


def _head(k: _Key) -> tuple[int, bool] | None:
    v = k.newest
    return None if v is None else (v.seq, v.is_delete_marker)


class PgTxn(UndoLog):
    """The overlay of one transaction on ``conn`` (module docstring). A new instance
    per transaction: nothing in it outlives its COMMIT, because other gateways change
    the rows as soon as the locks are gone.

    Why one class of about 900 lines (over the project's 400-line aim): its three
    phases -- loading rows under their locks, the ``MetaTxn`` methods the rules call
    (each with its undo), and ``flush`` writing the net changes -- share every field of
    the overlay, and each method's undo and each flush statement must agree with the
    exact shape that loading gave a field. Split into mixins, a reader would follow one
    dict across three files; the sections below (``# --- ...``) are the cut instead, in
    the order a transaction runs them. ``SqliteTxn`` has the same shape for the same
    reason, smaller because SQLite reads need no locking prefetch.
    """

    def __init__(self, conn: _Conn, ids: VersionIdGenerator, stripe: int, origin: str) -> None:
        super().__init__()
        self.conn = conn
        self._ids = _ReplayedIds(ids)
        self.ids: VersionIdGenerator = self._ids
        self.stripe = stripe
        self.origin = origin
        self.isolating = False
        self.buckets: dict[str, _Bucket | None] = {}
        self.keys: dict[tuple[int, str], _Key] = {}
        self.seqs: list[int] = []
        self.seq_want = SEQ_BLOCK
        #: The list is empty because a key load dropped it, not because the block was
        #: too small: the next fetch takes the same number again, not twice as many.
        self.seqs_dropped = False
        #: Chunk reference counts: as loaded or last flushed, and as now; sizes.
        self.refs_db: dict[str, int] = {}
        self.refs: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.deltas: dict[_Bucket, list[int]] = {}
        self.uploads: dict[str, MultipartUpload | None] = {}
        self.upload_bucket: dict[str, _Bucket] = {}
        self.parts_db: dict[str, dict[int, Part]] = {}
        self.parts_cur: dict[str, dict[int, Part]] = {}
        self.users: dict[str, User | None] = {}
        self.akeys: dict[str, AccessKey | None] = {}
        self.owned_db: dict[str, set[str]] = {}
        self.scanned_versions: dict[frozenset[str], list[tuple[ObjectVersion, int]]] = {}
        self.scanned_uploads: dict[frozenset[str], set[str]] = {}
        #: Ordered changes of rare rows (buckets, uploads, users, keys), run first at flush.
        self.actions: list[_Action] = []
        self.dirty: list[_Key] = []
        #: What other gateways must hear (``CHANNEL``): bucket names, users/keys changed.
        self.changed_buckets: set[str] = set()
        self.changed_users = False

    def _need(self, load: Callable[[], Awaitable[None]]) -> NeedRows:
        return NeedRows(load)

    # --- loading (between runs: no savepoint is open) -----------------------------------

    async def load_buckets(self, names: Iterable[str], exclusive: bool = False) -> None:
        wanted = sorted(set(names))
        if not wanted:
            return
        lock = "FOR UPDATE" if exclusive else "FOR KEY SHARE"
        rows = await self.conn.fetch(
            f"SELECT {BUCKET_COLS} FROM buckets WHERE name = ANY($1::text[]) ORDER BY name {lock}",
            wanted,
        )
        found = {r[1]: r for r in rows}
        for name in wanted:
            held = self.buckets.get(name)
            r = found.get(name)
            if held is not None and held.id is not None and r is not None and r[0] == held.id:
                held.exclusive = held.exclusive or exclusive
                continue
            if held is not None and held.id is None:
                continue  # inserted by this transaction: ours alone
            self.buckets[name] = _Bucket(bucket_of(r), int(r[0]), exclusive) if r else None

    async def load_keys(
        self,
        pairs: Iterable[tuple[_Bucket, str]],
        probes: Sequence[tuple[str, str, str]] = (),
        chunks: Iterable[str] = (),
    ) -> None:
        """Lock and load keys (their head rows, newest and null versions), and the
        chunk rows those versions reference. ``probes`` (bucket, key, version id): look
        those ids up too, in the same statement (the version ids a batch's PUTs write,
        so that the duplicate check costs no round trip of its own). ``chunks``: lock
        these chunk rows too, in the same statement as the versions' (the chunks a
        batch's PUTs reference): chunk rows are locked in one order only within one
        statement, and two batches that each locked one chunk and then wanted the
        other's deadlock (which PostgreSQL breaks only after its deadlock_timeout)."""
        todo: dict[tuple[int, str], _Key] = {}
        for b, key in pairs:
            kk = (b.serial, key)
            if kk in self.keys or kk in todo:
                continue
            todo[kk] = _Key(b, key)
        if not todo:
            await self.load_chunks(chunks)
            return
        pb: list[int] = []
        pk: list[str] = []
        pv: list[str] = []
        for name, key, vid in probes:
            pbucket = self.buckets.get(name)
            k = todo.get((pbucket.serial, key)) if pbucket is not None else None
            if k is not None and k.b.id is not None:
                pb.append(k.b.id)
                pk.append(key)
                pv.append(vid)
                k.probed.add(vid)
        query = [k for k in todo.values() if k.b.id is not None]
        query.sort(key=lambda k: (k.b.id, k.key))
        if query:
            bids = [k.b.id for k in query]
            names = [k.key for k in query]
            heads = await self.conn.fetch(_SQL_LOCK_HEADS, bids, names)
            by = {(k.b.id, k.key): k for k in query}
            hb: list[int] = []
            hk: list[str] = []
            hs: list[int] = []
            for r in heads:
                k = by[(r[0], r[1])]
                k.head0 = (int(r[2]), bool(r[3]))
                hb.append(r[0])
                hk.append(r[1])
                hs.append(int(r[2]))
            rows = await self.conn.fetch(_SQL_LOAD_VERSIONS, hb, hk, hs, bids, names, pb, pk, pv)
            for r in rows:
                k = by[(r[0], r[1])]
                self._take(k, r)
            for k in query:
                if k.head0 is not None:
                    k.newest = k.cur.get(k.head0[0])
        self.keys.update(todo)
        self.seqs.clear()  # numbers fetched before these locks may be too small
        self.seqs_dropped = True
        loaded = (c.chunk_id for k in todo.values() for v in k.cur.values() for c in v.chunks)
        await self.load_chunks(itertools.chain(chunks, loaded))

    def _take(self, k: _Key, r: Record) -> ObjectVersion:
        """File a loaded ``versions`` row into its key; the key keeps one object per
        row (the rules compare versions by identity)."""
        seq = int(r[2])
        v = k.db.get(seq)
        if v is not None:
            return v
        v = version_of(r, k.b.bucket.name)
        k.db[seq] = v
        k.cur[seq] = v
        if v.is_null:
            k.null = v
        return v

    async def _probe(self, k: _Key, version_id: str) -> None:
        assert k.b.id is not None
        rows = await self.conn.fetch(
            _SQL_LOAD_VERSIONS, [], [], [], [], [], [k.b.id], [k.key], [version_id]
        )
        k.probed.add(version_id)
        await self._load_version_chunks([self._take(k, r) for r in rows])

    async def _load_all(self, k: _Key) -> None:
        if k.b.id is not None:
            rows = await self.conn.fetch(_SQL_ALL_VERSIONS, k.b.id, k.key)
            await self._load_version_chunks([self._take(k, r) for r in rows])
        k.full = True

    async def _load_version_chunks(self, versions: Iterable[ObjectVersion]) -> None:
        await self.load_chunks(c.chunk_id for v in versions for c in v.chunks)

    async def load_chunks(self, chunk_ids: Iterable[str]) -> None:
        wanted = sorted({c for c in chunk_ids if c not in self.refs})
        if not wanted:
            return
        rows = await self.conn.fetch(_SQL_LOCK_CHUNKS, [bytes.fromhex(c) for c in wanted])
        for c in wanted:
            self.refs[c] = self.refs_db[c] = 0
        for r in rows:
            cid = bytes(r[0]).hex()
            self.refs[cid] = self.refs_db[cid] = int(r[2])
            self.sizes[cid] = int(r[1])

    async def load_seqs(self) -> None:
        n = max(self.seq_want, SEQ_BLOCK)
        rows = await self.conn.fetch(_SQL_SEQS, n)
        self.seqs = sorted((int(r[0]) for r in rows), reverse=True)

    async def load_uploads(self, upload_ids: Iterable[str]) -> None:
        wanted = sorted({u for u in upload_ids if u not in self.uploads})
        if not wanted:
            return
        rows = await self.conn.fetch(
            f"SELECT {UPLOAD_COLS}, u.bucket FROM uploads u JOIN buckets b ON b.id = u.bucket"
            " WHERE u.upload_id = ANY($1::text[]) ORDER BY u.upload_id FOR UPDATE OF u",
            wanted,
        )
        for uid in wanted:
            self.uploads[uid] = None
        found: list[str] = []
        for r in rows:
            up = upload_of(r)
            self.uploads[up.upload_id] = up
            self.parts_db[up.upload_id] = {}
            self.parts_cur[up.upload_id] = {}
            found.append(up.upload_id)
            await self._bucket_for_upload(up.bucket, int(r[6]), up.upload_id)
        if found:
            parts = await self.conn.fetch(
                f"SELECT upload_id, {PART_COLS} FROM parts WHERE upload_id = ANY($1::text[])",
                found,
            )
            for r in parts:
                p = part_of(r[1:])
                self.parts_db[r[0]][p.part_number] = p
                self.parts_cur[r[0]][p.part_number] = p
            await self.load_chunks(
                c.chunk_id for uid in found for p in self.parts_db[uid].values() for c in p.chunks
            )

    async def _bucket_for_upload(self, name: str, bid: int, upload_id: str) -> None:
        b = self.buckets.get(name)
        if b is None or b.id != bid:
            await self.load_buckets([name])
            b = self.buckets.get(name)
        if b is not None and b.id == bid:
            self.upload_bucket[upload_id] = b

    async def _load_bucket_uploads(self, b: _Bucket) -> None:
        if b.id is None:
            b.uploads_db = set()
            return
        rows = await self.conn.fetch("SELECT upload_id FROM uploads WHERE bucket = $1", b.id)
        b.uploads_db = {r[0] for r in rows}
        await self.load_uploads(b.uploads_db)

    async def _load_other_head(self, b: _Bucket) -> None:
        loaded = frozenset(k.key for k in self.keys.values() if k.b is b)
        found = None
        if b.id is not None:
            found = await self.conn.fetchval(
                "SELECT key FROM heads WHERE bucket = $1 AND NOT (key = ANY($2::text[])) LIMIT 1",
                b.id,
                sorted(loaded),
            )
        b.other_head = (found, loaded)

    async def _load_owned(self, owner: str) -> None:
        rows = await self.conn.fetch("SELECT name FROM buckets WHERE owner = $1", owner)
        self.owned_db[owner] = {r[0] for r in rows}

    async def load_users(self, names: Iterable[str]) -> None:
        wanted = sorted({n for n in names if n not in self.users})
        rows = await self.conn.fetch(
            "SELECT name, created_ns, disabled FROM users WHERE name = ANY($1::text[])"
            " ORDER BY name FOR UPDATE",
            wanted,
        )
        for n in wanted:
            self.users[n] = None
        for r in rows:
            self.users[r[0]] = user_of(r)

    async def load_akeys(self, access_keys: Iterable[str]) -> None:
        wanted = sorted({k for k in access_keys if k not in self.akeys})
        rows = await self.conn.fetch(
            f"SELECT {KEY_COLS} FROM access_keys WHERE access_key = ANY($1::text[])"
            " ORDER BY access_key FOR UPDATE",
            wanted,
        )
        for k in wanted:
            self.akeys[k] = None
        for r in rows:
            self.akeys[r[0]] = key_of(r)

    async def _scan_versions(self, ids: frozenset[str]) -> None:
        wanted = {bytes.fromhex(c) for c in ids}
        rows = await self.conn.fetch(
            f"SELECT b.name, {V_VCOLS} FROM versions v JOIN buckets b ON b.id = v.bucket"
            " WHERE v.chunks IS NOT NULL"
        )
        found: list[tuple[ObjectVersion, int]] = []
        for r in rows:
            if not wanted.isdisjoint(chunk_digests(r[11])):
                found.append((version_of(r, r[0], 1), int(r[1])))
        await self.load_buckets({v.bucket for v, _ in found})
        pairs = []
        for v, bid in found:
            b = self.buckets.get(v.bucket)
            if b is not None and b.id == bid:
                pairs.append((b, v.key))
        await self.load_keys(pairs)
        self.scanned_versions[ids] = found

    async def _scan_uploads(self, ids: frozenset[str]) -> None:
        wanted = {bytes.fromhex(c) for c in ids}
        rows = await self.conn.fetch(
            "SELECT DISTINCT upload_id, chunks FROM parts WHERE chunks IS NOT NULL"
        )
        found = {r[0] for r in rows if not wanted.isdisjoint(chunk_digests(r[1]))}
        await self.load_uploads(found)
        self.scanned_uploads[ids] = found

    # --- buckets ------------------------------------------------------------------------

    def _b(self, name: str, exclusive: bool = False) -> _Bucket | None:
        if name not in self.buckets:
            raise self._need(lambda: self.load_buckets([name], exclusive))
        b = self.buckets[name]
        if exclusive and b is not None and not b.exclusive:
            raise self._need(lambda: self.load_buckets([name], True))
        return b

    def _held(self, name: str) -> _Bucket:
        b = self._b(name)
        assert b is not None, f"bucket {name} not held"
        return b

    def bucket(self, name: str) -> Bucket | None:
        b = self._b(name)
        return b.bucket if b is not None else None

    def insert_bucket(self, bucket: Bucket) -> None:
        name = bucket.name
        old = self.buckets.get(name)
        b = _Bucket(bucket, None, True)
        b.uploads_db = set()
        b.other_head = (None, frozenset())
        self.buckets[name] = b

        async def insert(conn: _Conn) -> None:
            b.id = await conn.fetchval(
                "INSERT INTO buckets (name, owner, created_ns, versioning, attrs)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                name,
                bucket.owner,
                bucket.created_ns,
                bucket.versioning.value,
                enc_attrs(bucket.attrs),
            )

        self._act(insert)
        self.changed_buckets.add(name)

        def undo() -> None:
            self.buckets[name] = old

        self._log(undo)

    def update_bucket(self, bucket: Bucket) -> None:
        b = self._b(bucket.name, exclusive=True)
        assert b is not None
        old = b.bucket
        b.bucket = bucket

        async def update(conn: _Conn) -> None:
            await conn.execute(
                "UPDATE buckets SET versioning = $2, attrs = $3 WHERE id = $1",
                b.id,
                bucket.versioning.value,
                enc_attrs(bucket.attrs),
            )

        self._act(update)
        self.changed_buckets.add(bucket.name)

        def undo() -> None:
            b.bucket = old

        self._log(undo)

    def delete_bucket(self, name: str) -> None:
        b = self._b(name, exclusive=True)
        assert b is not None
        self.buckets[name] = None
        b.deleted = True

        async def delete(conn: _Conn) -> None:
            await conn.execute("DELETE FROM buckets WHERE id = $1", b.id)
            await conn.execute("DELETE FROM bucket_counts WHERE bucket = $1", b.id)

        self._act(delete)
        self.changed_buckets.add(name)

        def undo() -> None:
            self.buckets[name] = b
            b.deleted = False

        self._log(undo)

    def bucket_has_versions(self, name: str) -> bool:
        b = self._b(name, exclusive=True)
        assert b is not None
        if any(k.newest is not None for k in self.keys.values() if k.b is b):
            return True
        seen = b.other_head
        if seen is not None:
            other, _loaded = seen
            if other is None:
                return False  # every key with a head row was loaded, and none has one now
            if (b.serial, other) not in self.keys:
                return True
        raise self._need(lambda: self._load_other_head(b))

    def bucket_uploads(self, name: str) -> list[str]:
        b = self._b(name, exclusive=True)
        assert b is not None
        if b.uploads_db is None:
            raise self._need(lambda: self._load_bucket_uploads(b))
        out = {u for u in b.uploads_db if self.uploads.get(u) is not None}
        out.update(
            uid
            for uid, up in self.uploads.items()
            if up is not None and self.upload_bucket.get(uid) is b
        )
        return sorted(out)

    def buckets_owned_by(self, owner: str) -> bool:
        if any(b is not None and b.bucket.owner == owner for b in self.buckets.values()):
            return True
        names = self.owned_db.get(owner)
        if names is None:
            raise self._need(lambda: self._load_owned(owner))
        return any(n not in self.buckets for n in names)

    # --- one key's versions -------------------------------------------------------------

    def key(self, bucket: str, key: str) -> _Key:
        b = self._held(bucket)
        k = self.keys.get((b.serial, key))
        if k is None:
            raise self._need(lambda: self.load_keys([(b, key)]))
        return k

    def version(self, k: _Key, version_id: str) -> ObjectVersion | None:
        for v in k.cur.values():
            if v.version_id == version_id and not v.is_null:
                return v
        if k.full or version_id in k.probed or k.b.id is None:
            return None
        raise self._need(lambda: self._probe(k, version_id))

    def newest_other(self, k: _Key, excluding: ObjectVersion) -> ObjectVersion | None:
        if not k.full:
            raise self._need(lambda: self._load_all(k))
        best: ObjectVersion | None = None
        for v in k.cur.values():
            if not v.is_null and v is not excluding and (best is None or v.seq > best.seq):
                best = v
        return best

    def versions(self, k: _Key) -> list[ObjectVersion]:
        if not k.full:
            raise self._need(lambda: self._load_all(k))
        return sorted(k.cur.values(), key=lambda v: v.seq, reverse=True)

    def next_seq(self) -> int:
        if not self.seqs:
            # Double only when a whole block was used up: a batch over many unloaded
            # keys empties the list once per key load, and doubling each time fetched
            # SEQ_BLOCK * 2**keys numbers (minutes for a few dozen keys).
            if not self.seqs_dropped:
                self.seq_want *= 2
            self.seqs_dropped = False
            raise self._need(self.load_seqs)
        seq = self.seqs.pop()
        # A rerun after NeedRows takes its numbers again: without this undo every rerun
        # burnt the numbers of the runs before it, the list ran dry again and again and
        # seq_want doubled each time (a batch over a few dozen unloaded keys then fetched
        # millions of numbers for minutes).
        self._log(lambda: self.seqs.append(seq))
        return seq

    def _dirty(self, k: _Key) -> None:
        if not k.dirty:
            k.dirty = True
            self.dirty.append(k)

    def insert(self, k: _Key, v: ObjectVersion) -> None:
        vid = v.version_id
        if not v.is_null and vid not in self._ids.issued and self.version(k, vid) is not None:
            raise rules.duplicate(vid)
        self._dirty(k)
        k.cur[v.seq] = v
        old_null = k.null
        if v.is_null:
            k.null = v

        def undo() -> None:
            del k.cur[v.seq]
            k.null = old_null

        self._log(undo)

    def replace(self, k: _Key, old: ObjectVersion, new: ObjectVersion) -> None:
        self._dirty(k)
        old_null, old_newest = k.null, k.newest
        del k.cur[old.seq]
        k.cur[new.seq] = new
        if k.null is old:
            k.null = new
        if k.newest is old:
            k.newest = new

        def undo() -> None:
            del k.cur[new.seq]
            k.cur[old.seq] = old
            k.null, k.newest = old_null, old_newest

        self._log(undo)

    def remove(self, k: _Key, v: ObjectVersion) -> None:
        self._dirty(k)
        del k.cur[v.seq]
        old_null = k.null
        if k.null is v:
            k.null = None

        def undo() -> None:
            k.cur[v.seq] = v
            k.null = old_null

        self._log(undo)

    def set_newest(self, k: _Key, after: ObjectVersion | None) -> None:
        self._dirty(k)
        before = k.newest
        k.newest = after

        def undo() -> None:
            k.newest = before

        self._log(undo)

    def count(self, k: _Key, objects: int, nbytes: int) -> None:
        d = self.deltas.get(k.b)
        if d is None:
            d = self.deltas[k.b] = [0, 0]
        d[0] += objects
        d[1] += nbytes

        def undo() -> None:
            d[0] -= objects
            d[1] -= nbytes

        self._log(undo)

    def check(self) -> None:
        return None  # ``insert`` checks at once

    def isolated(
        self, fn: Callable[[MetaTxn[_Key], WriteOp], WriteResult], op: WriteOp
    ) -> WriteResult:
        return fn(self, op)  # an op fails only before it changes anything

    # --- savepoints ---------------------------------------------------------------------

    def savepoint(self) -> object:
        """``UndoLog``'s, and a rollback to it also takes back the version ids handed
        out since (a rerun hands out the same ones)."""
        token = super().savepoint()
        ids = self._ids
        pos = ids.pos
        self._log(lambda: ids.rewind(pos))
        return token

    # --- chunk references ---------------------------------------------------------------

    def _counted(self, chunk_ids: Iterable[str]) -> None:
        missing = [c for c in chunk_ids if c not in self.refs]
        if missing:
            raise self._need(lambda: self.load_chunks(missing))

    def ref(self, chunks: Sequence[ChunkRef]) -> None:
        counts = chunk_counts(chunks)
        self._counted(counts)
        refs = self.refs
        for c in chunks:
            self.sizes.setdefault(c.chunk_id, c.size)
        for cid, n in counts.items():
            refs[cid] += n

        def undo() -> None:
            for cid, n in counts.items():
                refs[cid] -= n

        self._log(undo)

    def unref(self, chunks: Sequence[ChunkRef]) -> list[str]:
        counts = chunk_counts(chunks)
        self._counted(counts)
        refs = self.refs
        freed: list[str] = []
        for c in chunks:  # in order, as the memory store reports them
            cid = c.chunk_id
            refs[cid] -= 1
            if refs[cid] == 0:
                freed.append(cid)

        def undo() -> None:
            for cid, n in counts.items():
                refs[cid] += n

        self._log(undo)
        return freed

    def chunk_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        self._counted(chunk_ids)
        return {c: self.refs[c] for c in chunk_ids if self.refs[c] > 0}

    def versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        ids = frozenset(chunk_ids)
        found = self.scanned_versions.get(ids)
        if found is None:
            raise self._need(lambda: self._scan_versions(ids))
        out: list[ObjectVersion] = []
        for v, bid in found:  # rows the overlay never loaded are as the scan saw them
            b = self.buckets.get(v.bucket)
            k = self.keys.get((b.serial, v.key)) if b is not None and b.id == bid else None
            if k is None or v.seq not in k.db:
                out.append(v)
        for k in self.keys.values():  # the overlay's own rows, as they are now
            for v in k.cur.values():
                if any(c.chunk_id in ids for c in v.chunks):
                    out.append(v)
        return out

    def uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        ids = frozenset(chunk_ids)
        found = self.scanned_uploads.get(ids)
        if found is None:
            raise self._need(lambda: self._scan_uploads(ids))
        out = set()
        for uid, parts in self.parts_cur.items():
            if self.uploads.get(uid) is not None and any(
                c.chunk_id in ids for p in parts.values() for c in p.chunks
            ):
                out.add(uid)
        return sorted(out)

    # --- the journal ------------------------------------------------------------------

    def set_journal_lsn(self, lsn: int) -> None:
        raise StorageError(NO_JOURNAL)

    # --- multipart uploads --------------------------------------------------------------

    def upload(self, upload_id: str) -> MultipartUpload | None:
        if upload_id not in self.uploads:
            raise self._need(lambda: self.load_uploads([upload_id]))
        return self.uploads[upload_id]

    def insert_upload(self, upload: MultipartUpload) -> None:
        uid = upload.upload_id
        b = self._held(upload.bucket)
        self.uploads[uid] = upload
        self.upload_bucket[uid] = b
        self.parts_db[uid] = {}
        self.parts_cur[uid] = {}

        async def insert(conn: _Conn) -> None:
            await conn.execute(
                "INSERT INTO uploads (upload_id, bucket, key, initiated_ns, content_type, attrs)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                uid,
                b.id,
                upload.key,
                upload.initiated_ns,
                upload.content_type,
                enc_attrs(upload.attrs),
            )

        self._act(insert)

        def undo() -> None:
            self.uploads[uid] = None
            self.upload_bucket.pop(uid, None)

        self._log(undo)

    def parts(self, upload_id: str) -> dict[int, Part]:
        self.upload(upload_id)
        return self.parts_cur[upload_id]

    def put_part(self, upload_id: str, part: Part) -> None:
        parts = self.parts_cur[upload_id]
        n = part.part_number
        old = parts.get(n)
        parts[n] = part

        def undo() -> None:
            if old is None:
                del parts[n]
            else:
                parts[n] = old

        self._log(undo)

    def delete_upload(self, upload_id: str) -> None:
        old = self.uploads[upload_id]
        self.uploads[upload_id] = None

        async def delete(conn: _Conn) -> None:
            await conn.execute("DELETE FROM parts WHERE upload_id = $1", upload_id)
            await conn.execute("DELETE FROM uploads WHERE upload_id = $1", upload_id)

        self._act(delete)

        def undo() -> None:
            self.uploads[upload_id] = old

        self._log(undo)

    # --- users and access keys ----------------------------------------------------------

    def user(self, name: str) -> User | None:
        if name not in self.users:
            raise self._need(lambda: self.load_users([name]))
        return self.users[name]

    def put_user(self, user: User) -> None:
        old = self.users.get(user.name)
        self.users[user.name] = user

        async def put(conn: _Conn) -> None:
            await conn.execute(
                "INSERT INTO users (name, created_ns, disabled) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled",
                user.name,
                user.created_ns,
                user.disabled,
            )

        self._act(put, users=True)
        self._log(lambda: self.users.__setitem__(user.name, old))

    def delete_user(self, name: str) -> None:
        old = self.users.get(name)
        self.users[name] = None
        gone = {ak: k for ak, k in self.akeys.items() if k is not None and k.user == name}
        for ak in gone:
            self.akeys[ak] = None

        async def delete(conn: _Conn) -> None:
            await conn.execute('DELETE FROM access_keys WHERE "user" = $1', name)
            await conn.execute("DELETE FROM users WHERE name = $1", name)

        self._act(delete, users=True)

        def undo() -> None:
            self.users[name] = old
            self.akeys.update(gone)

        self._log(undo)

    def access_key(self, access_key: str) -> AccessKey | None:
        if access_key not in self.akeys:
            raise self._need(lambda: self.load_akeys([access_key]))
        return self.akeys[access_key]

    def put_key(self, key: AccessKey) -> None:
        old = self.akeys.get(key.access_key)
        self.akeys[key.access_key] = key

        async def put(conn: _Conn) -> None:
            await conn.execute(
                f"INSERT INTO access_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (access_key) DO UPDATE SET disabled = excluded.disabled",
                key.access_key,
                key.secret_key,
                key.user,
                key.created_ns,
                key.disabled,
            )

        self._act(put, users=True)
        self._log(lambda: self.akeys.__setitem__(key.access_key, old))

    def delete_key(self, access_key: str) -> None:
        old = self.akeys.get(access_key)
        self.akeys[access_key] = None

        async def delete(conn: _Conn) -> None:
            await conn.execute("DELETE FROM access_keys WHERE access_key = $1", access_key)

        self._act(delete, users=True)
        self._log(lambda: self.akeys.__setitem__(access_key, old))

    # --- writing ------------------------------------------------------------------------

    def _act(self, action: _Action, users: bool = False) -> None:
        self.actions.append(action)
        was = self.changed_users
        if users:
            self.changed_users = True

        def undo() -> None:
            self.actions.pop()
            self.changed_users = was

        self._log(undo)

    async def flush(self) -> None:
        """Write the overlay's net changes (module docstring), and tell the other
        gateways what their caches must forget (delivered at COMMIT)."""
        conn = self.conn
        for action in self.actions:
            await action(conn)
        self.actions.clear()
        await self._flush_parts()
        await self._flush_versions()
        await self._flush_counts()
        await self._flush_refs()
        await self._notify()

    async def _flush_parts(self) -> None:
        upserts: list[tuple[Any, ...]] = []
        deletes: list[tuple[str, int]] = []
        for uid, cur in self.parts_cur.items():
            if self.uploads.get(uid) is None:
                continue  # deleted (its action removed every part) or never there
            db = self.parts_db[uid]
            for n, p in cur.items():
                if db.get(n) is not p:
                    upserts.append(part_row(uid, p))
            deletes.extend((uid, n) for n in db if n not in cur)
            self.parts_db[uid] = dict(cur)
        if deletes:
            await self.conn.execute(_SQL_DELETE_PARTS, *columns(deletes, 2))
        if upserts:
            await self.conn.execute(_SQL_UPSERT_PARTS, *columns(upserts, 7))

    async def _flush_versions(self) -> None:
        deletes: list[tuple[int, str, int]] = []
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        head_del: list[tuple[int, str]] = []
        head_ins: list[tuple[int, str, int, bool]] = []
        head_upd: list[tuple[int, str, int, bool]] = []
        for k in self.dirty:
            k.dirty = False
            bid = k.b.id
            assert bid is not None, "a key of a bucket that was never inserted"
            cur, db = k.cur, k.db
            for seq in db:
                if seq not in cur:
                    deletes.append((bid, k.key, seq))
            for seq, v in cur.items():
                old = db.get(seq)
                if old is None:
                    inserts.append(version_row(bid, v))
                elif old is not v:
                    updates.append(version_row(bid, v))
            k.db = dict(cur)
            before, after = k.head0, _head(k)
            if before != after:
                if after is None:
                    head_del.append((bid, k.key))
                elif before is None:
                    head_ins.append((bid, k.key, after[0], after[1]))
                else:
                    head_upd.append((bid, k.key, after[0], after[1]))
                k.head0 = after
        self.dirty.clear()
        # Rows in key order, as ``_SQL_LOCK_HEADS`` locks them (Python's str order is
        # the C collation's): two batches inserting the same new keys wait for each
        # other in one order instead of deadlocking (a deadlock costs PostgreSQL's
        # deadlock_timeout, 1 s by default, before one of them reruns).
        for rows in (deletes, inserts, updates, head_del, head_ins, head_upd):
            rows.sort(key=_row_key)
        conn = self.conn
        width = len(VERSION_COLUMNS)
        if deletes:
            await conn.execute(_SQL_DELETE_VERSIONS, *columns(deletes, 3))
        if updates:
            await conn.execute(_SQL_UPDATE_VERSIONS, *columns(updates, width))
        if inserts:
            await conn.execute(_SQL_INSERT_VERSIONS, *columns(inserts, width))
        if head_del:
            await conn.execute(_SQL_DELETE_HEADS, *columns(head_del, 2))
        if head_upd:
            await conn.execute(_SQL_UPDATE_HEADS, *columns(head_upd, 4))
        if head_ins:
            await conn.execute(_SQL_INSERT_HEADS, *columns(head_ins, 4))

    async def _flush_counts(self) -> None:
        rows = [
            (b.id, d[0], d[1])
            for b, d in self.deltas.items()
            if (d[0] or d[1]) and not b.deleted and b.id is not None
        ]
        self.deltas.clear()
        if rows:
            rows.sort()  # rows locked in one order by every transaction: no deadlock
            await self.conn.execute(_SQL_COUNTS, self.stripe, *columns(rows, 3))

    async def _flush_refs(self) -> None:
        changed: list[tuple[bytes, int, int]] = []
        zero: list[bytes] = []
        for cid, n in self.refs.items():
            delta = n - self.refs_db[cid]
            if delta:
                raw = bytes.fromhex(cid)
                changed.append((raw, self.sizes.get(cid, 0), delta))
                if n <= 0:
                    zero.append(raw)
                self.refs_db[cid] = n
        if changed:
            changed.sort()  # as _SQL_LOCK_CHUNKS: one order of chunk rows for everyone
            await self.conn.execute(_SQL_REFS, *columns(changed, 3))
        if zero:
            await self.conn.execute(_SQL_DROP_CHUNKS, zero)

    async def _notify(self) -> None:
        if not self.changed_buckets and not self.changed_users:
            return
        payload = json.dumps(
            {"o": self.origin, "b": sorted(self.changed_buckets), "u": self.changed_users},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        if len(payload.encode()) > _MAX_PAYLOAD:
            payload = json.dumps({"o": self.origin, "all": True})
        self.changed_buckets.clear()
        self.changed_users = False
        await self.conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
