"""``MetaTxn``: what a metadata backend implements so that the shared rules can run on it.

Layer: core. This is the seam between *what a write means* (``kvbox.core.meta.rules``:
versioning, null versions, delete markers, conditions, multipart completion, chunk
reference counting, users) and *how it is stored* (a backend: ``memory``, ``sqlite``,
and PostgreSQL later). The rules call only these methods; a backend implements only
these methods plus its reads (``MetaStore``'s read half) and how it runs a transaction.

Contract (``tests/core/meta/test_conformance*.py`` runs every backend through it):

* **One transaction.** Everything a rules function does through one ``MetaTxn`` commits
  or rolls back as one, and no other writer changes what it read meanwhile: SQLite has
  one writer thread; the memory store runs a rules function to completion without an
  await; PostgreSQL must lock what it reads (``SELECT ... FOR UPDATE`` of the key's rows,
  the bucket row for a bucket change).
* **Reads see the transaction's own writes**, at once.
* **Synchronous.** The rules never await. A backend whose I/O is asynchronous
  (asyncpg) loads up front what the ops will read (``rules.keys_of`` names the keys of a
  commit) and, for anything it did not load, raises ``NeedRows`` from the read method;
  ``run_loading`` then rolls back to a savepoint taken before the rules function began,
  awaits the load (which fills the backend's cache) and runs the function again. A run
  decides only from what it read, so the rerun decides afresh on complete data and
  nothing of the first run remains (tests/core/meta/test_txn.py).
* **Failures.** The rules raise a ``KvboxError`` only before they change anything
  (checks come first), except where they hold a savepoint (``AtomicOp``, multipart
  completion) and roll it back themselves. A duplicate version id among a key's
  non-null versions may be reported by ``insert`` at once or later, at the latest at
  the next ``check`` (a unique index does it); the backend then undoes the op, so its
  failure is its own.
* **seq.** ``next_seq`` gives a number larger than the ``seq`` of every committed
  version of any key this transaction has read: versions are ordered by it. (SQLite and
  memory keep a counter; PostgreSQL takes it from a sequence *after* the key's row
  locks are held, so that two gateways writing one key get them in commit order.)
* A key is a ``KeyState`` the rules hold while they decide about it; versions are
  handed out as ``ObjectVersion`` (with ``seq`` set) and handed back unchanged:
  ``remove`` and ``replace`` receive exactly an object the transaction gave out (or
  wrote) for that key, so a backend may find its row by identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

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
from kvbox.errors import KvboxError


class NeedRows(Exception):
    """Not an error: raised by an asynchronous backend's read that its cache cannot
    answer; awaiting ``load()`` fetches the rows (and keeps them for the rerun). See
    ``run_loading``."""

    def __init__(self, load: Callable[[], Awaitable[None]]) -> None:
        super().__init__("rows needed")
        self.load = load


class KeyState(Protocol):
    """One key as a transaction holds it: what ``MetaTxn.key`` returns and the key's
    methods take back. Its two versions follow the transaction's own writes."""

    @property
    def newest(self) -> ObjectVersion | None:
        """The key's newest version (a delete marker, maybe), or None."""
        ...

    @property
    def null(self) -> ObjectVersion | None:
        """The key's null version (the same object as ``newest`` when that is it)."""
        ...


K = TypeVar("K", bound=KeyState)


class MetaTxn(Protocol[K]):
    """One metadata transaction, as the shared rules see it (module docstring); ``K`` is
    the backend's ``KeyState``."""

    #: Version ids for delete markers the caller did not give one.
    ids: VersionIdGenerator

    # --- buckets ------------------------------------------------------------------------

    def bucket(self, name: str) -> Bucket | None:
        """The bucket with its settings, or None."""
        ...

    def insert_bucket(self, bucket: Bucket) -> None:
        """Store a new bucket (the rules checked that the name is free)."""
        ...

    def update_bucket(self, bucket: Bucket) -> None:
        """Store new settings (``versioning``, ``attrs``) of an existing bucket."""
        ...

    def delete_bucket(self, name: str) -> None:
        """Remove the bucket row (the rules removed its uploads and checked it empty)."""
        ...

    def bucket_has_versions(self, name: str) -> bool:
        """Whether any key of the bucket has a version (delete markers included)."""
        ...

    def bucket_uploads(self, name: str) -> list[str]:
        """Upload ids of the bucket's multipart uploads in progress."""
        ...

    def buckets_owned_by(self, owner: str) -> bool:
        """Whether any bucket belongs to ``owner``."""
        ...

    # --- one key's versions ------------------------------------------------------------

    def key(self, bucket: str, key: str) -> K:
        """The key, to read and write (``bucket`` exists)."""
        ...

    def version(self, k: K, version_id: str) -> ObjectVersion | None:
        """The key's non-null version with this id, or None."""
        ...

    def newest_other(self, k: K, excluding: ObjectVersion) -> ObjectVersion | None:
        """The newest non-null version of the key other than ``excluding``, or None."""
        ...

    def versions(self, k: K) -> list[ObjectVersion]:
        """Every version of the key, newest first."""
        ...

    def next_seq(self) -> int:
        """The ``seq`` of the next version written (module docstring)."""
        ...

    def insert(self, k: K, v: ObjectVersion) -> None:
        """A new version (with its ``seq``): a non-null one, or the key's first null one.
        May report a duplicate non-null version id (module docstring)."""
        ...

    def replace(self, k: K, old: ObjectVersion, new: ObjectVersion) -> None:
        """``new`` takes ``old``'s place: the key's null version rewritten by a new null
        version (a new ``seq``), or one version's attrs rewritten (same id and ``seq``).
        If ``old`` was the newest, ``new`` now is."""
        ...

    def remove(self, k: K, v: ObjectVersion) -> None:
        """Remove a version for good (moving ``newest`` is ``set_newest``'s)."""
        ...

    def set_newest(self, k: K, after: ObjectVersion | None) -> None:
        """The key's newest version is now ``after``, a version the transaction holds:
        listings and ``head`` follow the newest version."""
        ...

    def count(self, k: K, objects: int, nbytes: int) -> None:
        """Add to the counters of the key's bucket (``MetaStore.stats``)."""
        ...

    def check(self) -> None:
        """Raise now any failure ``insert`` deferred (a duplicate version id)."""
        ...

    #: Whether ops of a commit must go through ``isolated`` (else they run plainly).
    isolating: bool

    def isolated(
        self, fn: Callable[[MetaTxn[K], WriteOp], WriteResult], op: WriteOp
    ) -> WriteResult:
        """Run one op of a commit, ``fn(self, op)``, so that its failure is its own: a
        backend that can fail after an op changed something undoes that op and raises a
        ``KvboxError``; one that cannot just returns ``fn(self, op)``."""
        ...

    # --- savepoints (AtomicOp, multipart completion) ------------------------------------

    def savepoint(self) -> object:
        """Mark the transaction's state; returns a token for the two below."""
        ...

    def rollback_to(self, token: object) -> None:
        """Undo everything since ``savepoint`` (the token is released)."""
        ...

    def release(self, token: object) -> None:
        """Keep everything since ``savepoint``."""
        ...

    # --- chunk references ---------------------------------------------------------------

    def ref(self, chunks: Sequence[ChunkRef]) -> None:
        """One more reference to each chunk (a chunk listed twice gets two)."""
        ...

    def unref(self, chunks: Sequence[ChunkRef]) -> list[str]:
        """One reference less to each; returns the chunks that reached zero (and are
        forgotten)."""
        ...

    def chunk_counts(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        """Reference counts of those chunks that have any."""
        ...

    def versions_with_chunks(self, chunk_ids: Sequence[str]) -> list[ObjectVersion]:
        """Every version that references one of ``chunk_ids`` (fsck repairs)."""
        ...

    def uploads_with_chunks(self, chunk_ids: Sequence[str]) -> list[str]:
        """Upload ids of uploads with a part that references one of ``chunk_ids``."""
        ...

    # --- the journal ------------------------------------------------------------------

    def set_journal_lsn(self, lsn: int) -> None:
        """Store ``lsn`` as applied, if it is higher than the one stored."""
        ...

    # --- multipart uploads --------------------------------------------------------------

    def upload(self, upload_id: str) -> MultipartUpload | None: ...

    def insert_upload(self, upload: MultipartUpload) -> None:
        """A new upload (its bucket exists; a duplicate id may fail like ``insert``)."""
        ...

    def parts(self, upload_id: str) -> dict[int, Part]:
        """The upload's parts by number."""
        ...

    def put_part(self, upload_id: str, part: Part) -> None:
        """Store ``part``, replacing a part of the same number."""
        ...

    def delete_upload(self, upload_id: str) -> None:
        """Remove the upload and its parts (their references are the rules' business)."""
        ...

    # --- users and access keys ----------------------------------------------------------

    def user(self, name: str) -> User | None: ...

    def put_user(self, user: User) -> None:
        """Store a new user or a change of one."""
        ...

    def delete_user(self, name: str) -> None:
        """Remove the user and every key of it."""
        ...

    def access_key(self, access_key: str) -> AccessKey | None: ...

    def put_key(self, key: AccessKey) -> None:
        """Store a new access key or a change of one."""
        ...

    def delete_key(self, access_key: str) -> None: ...


class UndoLog:
    """Savepoints for a ``MetaTxn`` whose state is Python objects (the memory store's
    dicts, PostgreSQL's overlay of loaded rows): a base class giving ``savepoint``,
    ``rollback_to`` and ``release``.

    Each primitive change logs, through ``_log``, a function that takes it back;
    ``rollback_to`` runs them newest first down to the savepoint. The log is kept only
    while a savepoint is open (``_log`` is a no-op otherwise), so a transaction that
    never needs one -- the memory store's plain ops, a PostgreSQL batch whose loads all
    came up front -- pays one ``is None`` test per change and allocates nothing. A
    savepoint's token is the log's length when it was taken; nested savepoints share
    the one log, and the log goes when the outermost one is released.
    """

    def __init__(self) -> None:
        #: Undo actions since the oldest open savepoint (None: none is open), and how
        #: many savepoints are open.
        self._undo: list[Callable[[], object]] | None = None
        self._open = 0

    def _log(self, undo: Callable[[], object]) -> None:
        """Remember how to take back the change just made (while a savepoint is open)."""
        if self._undo is not None:
            self._undo.append(undo)

    def savepoint(self) -> object:
        if self._undo is None:
            self._undo = []
        self._open += 1
        return len(self._undo)

    def rollback_to(self, token: object) -> None:
        assert self._undo is not None and isinstance(token, int)
        undo = self._undo
        while len(undo) > token:
            undo.pop()()
        self.release(token)

    def release(self, token: object) -> None:
        self._open -= 1
        if not self._open:
            self._undo = None  # the outermost savepoint: nothing to keep a log for


T = TypeVar("T")


async def run_loading(txn: MetaTxn[Any], fn: Callable[[MetaTxn[Any]], T]) -> T:
    """Run the rules function ``fn`` on a transaction whose reads may raise ``NeedRows``:
    each time one does, undo what the run did, await the load and run it again. (A
    backend with synchronous reads just calls ``fn(txn)``.)"""
    while True:
        token = txn.savepoint()
        try:
            result = fn(txn)
        except NeedRows as need:
            txn.rollback_to(token)
            await need.load()
            continue
        except KvboxError:
            # The rules changed nothing, or (a commit's op error, raised last) what they
            # changed stands.
            txn.release(token)
            raise
        except BaseException:
            txn.rollback_to(token)
            raise
        txn.release(token)
        return result
