"""The journal's files: append-only segments under ``<data>/journal``, fsync'd per flush.

Layer: core. Rules:

* **One flush at a time**, on one worker thread: whatever was submitted while a flush
  was running becomes the next frame, so one ``write`` + ``fdatasync`` serves every small
  write of that interval (group commit), and the event loop never blocks on the disk.
* LSNs are handed out at ``submit`` time, in the loop's thread, so submission order is
  LSN order is file order, and frames follow each other without gaps.
* A submission's future resolves only after its frame was written and fsync'd.
* **A failed write or fsync breaks the journal for good** (until restart): every waiting
  and later submission fails with ``StorageError`` and the owner stops using it. After
  an fsync error the kernel may have dropped the dirty pages, so retrying could
  acknowledge bytes that are not on disk (the PostgreSQL "fsyncgate" lesson).
* Segments are named by their first LSN and rotated at ``segment_bytes``; a segment is
  deleted once every record in it is applied (``release``). A crash can tear only the
  last frame of the last segment; ``open`` cuts that tail off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from kvbox.core.datadir import fsync_dir
from kvbox.core.journal import codec
from kvbox.core.journal.codec import Record
from kvbox.core.space import full_error, is_full_error
from kvbox.errors import StorageError

log = logging.getLogger(__name__)

#: A segment is preallocated only with this many times its size free (``_start_segment``).
PREALLOCATE_ROOM: Final = 4


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


#: Directory of the journal inside a data directory.
JOURNAL_DIR: Final = "journal"
SEGMENT_SUFFIX: Final = ".kvj"
#: Rotate to a new segment past this size: small enough that an applied segment is
#: deleted soon, large enough that rotations (a file creation and a directory fsync)
#: are rare.
SEGMENT_BYTES: Final = 64 * 1024 * 1024


_Waiter = tuple["asyncio.Future[int]", int, Callable[[int], None]]


def _segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{SEGMENT_SUFFIX}"


class Journal:
    """Append-only, fsync'd log of small writes (see the module docstring)."""

    def __init__(self, path: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.path = path
        self.segment_bytes = segment_bytes
        #: First LSNs of the segments on disk, oldest first; the last one is appended to.
        #: The flush thread adds to it, ``release`` takes from its front.
        self._segments: list[int] = []
        self._segments_lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._next_lsn = 1
        #: Highest LSN known durable (its frame fsync'd), 0 for none yet.
        self.durable_lsn = 0
        self.broken: BaseException | None = None
        # Loop-side state of the next frame.
        self._pieces: list[bytes] = []
        self._count = 0
        self._first = 1
        self._waiters: list[_Waiter] = []
        self._flushing = False
        self._scheduled = False  # a flush will start at the end of this loop pass
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # --- opening and recovery -----------------------------------------------------------

    def open(self, applied_lsn: int) -> list[Record]:
        """Read the segments, cut a torn tail, and return the records after
        ``applied_lsn`` (which the caller must apply before anything else is written).

        Blocking (file I/O); call it before serving, or in a thread.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in self.path.iterdir() if p.name.endswith(SEGMENT_SUFFIX))
        firsts: list[int] = []
        for name in names:
            try:
                firsts.append(int(name.removesuffix(SEGMENT_SUFFIX)))
            except ValueError:
                raise StorageError(f"{self.path / name}: not a journal segment name") from None
        pending: list[Record] = []
        expect: int | None = None
        for i, first in enumerate(firsts):
            seg = self.path / _segment_name(first)
            # A gap is harmless only if everything in it was applied.
            if expect is not None and (first < expect or first - 1 > max(expect - 1, applied_lsn)):
                raise StorageError(
                    f"{seg}: journal segment starts at lsn {first}, expected {expect}: "
                    "a segment is missing"
                )
            data = seg.read_bytes()
            try:
                found = codec.scan(data, first)
            except codec.CorruptFrame as exc:
                raise StorageError(f"{seg}: {exc}") from None
            last = i == len(firsts) - 1
            if found.problem is not None and data.count(0, found.end) == len(data) - found.end:
                pass  # the zeros of a preallocated segment: a clean end
            elif found.problem is not None:
                if not last:
                    raise StorageError(
                        f"{seg}: {found.problem} at offset {found.end} in a segment that "
                        "is not the last: the journal is damaged"
                    )
                # A torn final frame: it was never acknowledged. Cut it off, durably,
                # so later frames don't land behind garbage.
                log.warning(
                    "journal: %s at offset %d of %s; cutting %d bytes of an unfinished write",
                    found.problem,
                    found.end,
                    seg.name,
                    len(data) - found.end,
                )
                with open(seg, "r+b") as f:
                    f.truncate(found.end)
                    f.flush()
                    os.fsync(f.fileno())
            expect = found.next_lsn if found.next_lsn is not None else first
            pending.extend(r for r in found.records if r.lsn > applied_lsn)
        self._segments = firsts
        self._next_lsn = max(expect or 1, applied_lsn + 1)
        self.durable_lsn = self._next_lsn - 1
        self._first = self._next_lsn
        # Appends always go to a fresh segment: never behind a cut tail, never into
        # an old segment's preallocated zeros.
        if self._segments and self._segments[-1] == self._next_lsn:
            self._segments.pop()  # it holds no record; it is started over
        self._start_segment(self._next_lsn)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kvbox-journal")
        return pending

    def _start_segment(self, first_lsn: int, min_size: int = 0) -> None:
        """Create (and preallocate) the segment that starts at ``first_lsn``.

        Preallocated, a segment's size never changes as frames land in it, so each
        ``fdatasync`` has no file size to journal: measured here, 0.18 ms p50 and
        0.20 ms p90 per 16 KiB frame, against 0.31 and 1.06 ms when appending.
        """
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        seg = self.path / _segment_name(first_lsn)
        fd = os.open(seg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            size = max(self.segment_bytes, min_size)
            # Only when space allows: on a nearly full disk a start-up that preallocated
            # a whole segment would take the room its own replay and deletes need.
            if _free(self.path) >= PREALLOCATE_ROOM * size:
                with contextlib.suppress(OSError):  # not every file system can; then append
                    os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
            fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        with self._segments_lock:
            self._segments.append(first_lsn)
        self._size = 0

    async def close(self) -> None:
        await self.wait_idle()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- appending (event-loop thread) --------------------------------------------------

    def submit(
        self, pieces: Sequence[bytes], count: int, on_durable: Callable[[int], None]
    ) -> asyncio.Future[int]:
        """Queue ``count`` records (their joined ``pieces``); the future gives the first
        record's LSN once they are durable, or raises ``StorageError``.

        ``on_durable(first_lsn)`` runs in the loop's thread as soon as the records are
        durable, before any future resolves and in LSN order across submissions: so
        whoever keeps state per record sees every durable record, in order, at once.
        """
        # The loop is looked up once: asyncio.get_running_loop() costs a getpid()
        # system call every time, and this runs for every batch of SETs.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        if self.broken is not None:
            fut.set_exception(StorageError(f"journal unusable: {self.broken}"))
            return fut
        first = self._next_lsn
        self._next_lsn = first + count
        self._pieces.extend(pieces)
        self._count += count
        self._waiters.append((fut, first, on_durable))
        if not self._flushing and not self._scheduled:
            # Not at once: at the end of this pass of the event loop, so that every
            # connection whose SETs this pass reads shares the first fsync too, not
            # just the next one (one request per connection gains most).
            self._scheduled = True
            loop.call_soon(self._start, loop)
        return fut

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._flushing:
            return
        if self._waiters:
            self._flush(loop)
        elif self._idle is not None:
            self._idle.set()
            self._idle = None

    @property
    def next_lsn(self) -> int:
        """The LSN the next submitted record will get."""
        return self._next_lsn

    @property
    def busy(self) -> bool:
        """Something submitted is not durable yet."""
        return self._flushing or self._scheduled

    async def wait_idle(self) -> None:
        """Until every submission so far has its answer."""
        while self._flushing or self._scheduled:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._pool is not None, "journal not open"
        pieces, count, first, waiters = self._pieces, self._count, self._first, self._waiters
        self._pieces, self._count, self._waiters = [], 0, []
        self._first = first + count
        self._flushing = True
        job = loop.run_in_executor(self._pool, self._write, first, count, pieces)
        job.add_done_callback(lambda j: self._flushed(loop, j, waiters, first + count - 1))

    def _flushed(
        self,
        loop: asyncio.AbstractEventLoop,
        job: asyncio.Future[None],
        waiters: list[_Waiter],
        last: int,
    ) -> None:
        exc = job.exception() if not job.cancelled() else StorageError("journal flush cancelled")
        if exc is None:
            self.durable_lsn = last
            for _, first, hook in waiters:
                try:
                    hook(first)
                except Exception:
                    log.exception("journal: on_durable hook failed")
            for fut, first, _ in waiters:
                if not fut.done():
                    fut.set_result(first)
        else:
            if self.broken is None:
                log.error("journal write failed; small writes bypass it from now on: %s", exc)
                self.broken = exc
            err: StorageError = (
                full_error("the journal could not be written")
                if is_full_error(exc)
                else StorageError(f"journal write failed: {exc}")
            )
            for fut, _, _ in waiters + self._waiters:
                if not fut.done():
                    fut.set_exception(err)
            self._pieces, self._count, self._waiters = [], 0, []
        self._flushing = False
        if self._waiters:
            self._flush(loop)
        elif self._idle is not None:
            self._idle.set()
            self._idle = None

    # --- the worker thread ------------------------------------------------------------

    def _write(self, first: int, count: int, pieces: list[bytes]) -> None:
        payload = b"".join(pieces)
        header = codec.frame_header(first, count, payload)
        total = len(header) + len(payload)
        if self._size and self._size + total > self.segment_bytes:
            self._start_segment(first, total)
        start = self._size
        try:
            done = os.writev(self._fd, [header, payload])
            while done < total:  # short writes: only on a full disk, in practice
                rest = (header + payload)[done:]
                n = os.write(self._fd, rest)
                if n <= 0:
                    raise OSError("journal: write made no progress")
                done += n
            os.fdatasync(self._fd)
        except BaseException:
            # Leave no half frame behind if we can; recovery would cut it anyway.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
                os.lseek(self._fd, start, os.SEEK_SET)
            raise
        self._size = start + total

    async def release(self, applied_lsn: int) -> None:
        """Delete the segments whose records are all applied (never the current one).

        Not on the flush thread: unlinking a written 64 MiB segment and syncing the
        directory took 14 ms here, and every SET waiting for the next flush would wait
        that long too.
        """
        if self._pool is None:
            return
        with self._segments_lock:
            segs = self._segments
            doomed: list[int] = []
            while len(segs) > 1 and segs[1] <= applied_lsn + 1:
                doomed.append(segs.pop(0))
        if doomed:
            await asyncio.to_thread(self._unlink, doomed)

    def _unlink(self, firsts: list[int]) -> None:
        for first in firsts:
            with contextlib.suppress(FileNotFoundError):
                (self.path / _segment_name(first)).unlink()
        fsync_dir(self.path)

    def segment_files(self) -> list[Path]:
        """The segment files now on disk, oldest first (for tools and tests)."""
        with self._segments_lock:
            return [self.path / _segment_name(f) for f in self._segments]
