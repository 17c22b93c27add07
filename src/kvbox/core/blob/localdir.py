"""BlobStore in a local directory: one fsync'd file per content-addressed chunk.

Layer: core. Rules:

* Layout: ``<root>/chunks/ab/cd/<sha256 hex>`` (two levels of 256 fan-out keep every
  directory small); writes stream into ``<root>/chunks/tmp/<random>`` while hashing, and
  ``commit`` fsyncs the file, renames it onto its content address and fsyncs the
  directory entries it created, so after a crash a chunk id either names complete bytes
  or nothing. ``open`` deletes what a crash left in ``tmp/``.
* A chunk id is validated (64 lowercase hex digits) before it becomes a path, so nothing
  from a client or a damaged database can point outside the store.
* Every blocking file call runs in a worker thread (``asyncio.to_thread``): the event
  loop never waits on the disk.
* Every read checks the whole chunk before it returns any byte of it (``DataDamaged``
  otherwise), and so does ``check_file`` before a sendfile sends one; a write of the
  same bytes replaces a damaged file (``install``). The check is the chunk's CRC32C
  against the one its writer stored in the file's extended attribute ``user.kvbox.crc32c``
  (about 17 GB/s here against SHA-256's 0.4-1.5: docs/benchmarks.md, "Verified reads"),
  and the SHA-256 of its address only when they differ or the attribute is missing
  (files written before it existed, a file system without user xattrs): the address is
  the truth, the CRC a fast way to know nothing changed since the write. A sound file
  whose attribute was missing or wrong gets it (re)written. ``verify`` (fsck, the
  scrubber) always hashes the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from kvbox.core.datadir import fsync_dir
from kvbox.core.model import Bucket, ChunkRef
from kvbox.core.space import full_error, is_full_error
from kvbox.errors import ChunkMissing, DataDamaged, InvalidArgument, StorageError

CHUNKS_DIR: Final = "chunks"
TMP_DIR: Final = "tmp"

#: Bytes per read while hashing or copying: large enough to amortise a syscall, small
#: enough not to matter in memory.
_BLOCK: Final = 1 << 20

#: The extended attribute holding a chunk file's CRC32C (4 bytes, big-endian).
CRC_XATTR: Final = "user.kvbox.crc32c"

_CHUNK_ID = re.compile(r"[0-9a-f]{64}")
_FANOUT = re.compile(r"[0-9a-f]{2}")
#: errno values that mean "this file system keeps no user xattrs".
_NO_XATTRS: Final = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})


def _scan_fd(fd: int, sha: bool) -> tuple[int, str]:
    """CRC32C (and with ``sha``, SHA-256 hex; else "") of a whole open file, read with
    ``pread`` into one reused buffer, so the caller's file offset -- sendfile's too --
    stays where it was."""
    h = hashlib.sha256() if sha else None
    crc = 0
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        crc = _crt.crc32c(view[:n], crc)
        if h is not None:
            h.update(view[:n])
        offset += n
    return crc, h.hexdigest() if h is not None else ""


def _if_full(exc: OSError) -> None:
    """A full disk as kvbox's own answer (``StorageFull``); other errors go on as they are."""
    if is_full_error(exc):
        raise full_error("a chunk could not be written") from exc


def _damaged(chunk_id: str, how: str = "") -> DataDamaged:
    return DataDamaged(f"chunk {chunk_id} does not hash to its address{how}", chunk_id=chunk_id)


class LocalDirChunkWriter:
    """Streams one chunk into a temp file; see ``ChunkWriter``."""

    def __init__(self, store: LocalDirBlobStore) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        self._crc = 0
        self._size = 0
        self._fd: int | None = None
        self._tmp: Path | None = None
        self._done = False

    async def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError("chunk writer already committed or aborted")
        if data:
            try:
                await asyncio.to_thread(self._write_sync, data)
            except OSError as exc:
                _if_full(exc)
                raise

    async def commit(self) -> ChunkRef:
        if self._done:
            raise StorageError("chunk writer already committed or aborted")
        self._done = True
        try:
            return await asyncio.to_thread(self._commit_sync)
        except BaseException as exc:
            await asyncio.to_thread(self._discard_sync)
            if isinstance(exc, OSError):
                _if_full(exc)
            raise

    async def abort(self) -> None:
        self._done = True
        if self._fd is not None or self._tmp is not None:
            await asyncio.to_thread(self._discard_sync)

    def digest(self) -> str:
        """SHA-256 hex of the bytes written so far: a receiver told the chunk id in
        advance (a blob node, ``kvbox.cluster.node``) checks it before ``commit``
        puts the bytes under any address."""
        return self._hash.hexdigest()

    # worker-thread side

    def _write_sync(self, data: bytes) -> None:
        if self._fd is None:
            self._open_tmp()
        assert self._fd is not None
        self._hash.update(data)
        self._crc = _crt.crc32c(data, self._crc)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def _open_tmp(self) -> None:
        self._tmp = self._store.tmp_dir / secrets.token_hex(16)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def _commit_sync(self) -> ChunkRef:
        if self._fd is None:  # an empty chunk: still a real (empty) file
            self._open_tmp()
        assert self._fd is not None and self._tmp is not None
        self._store.set_crc(self._fd, self._crc)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        ref = ChunkRef(self._hash.hexdigest(), self._size)
        self._store.install(self._tmp, ref)
        self._tmp = None
        return ref

    def _discard_sync(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


class LocalDirBlobStore:
    """``BlobStore`` under ``<root>/chunks``; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.chunks_dir = self.root / CHUNKS_DIR
        self.tmp_dir = self.chunks_dir / TMP_DIR
        #: False once the file system refused a user xattr: every check hashes then.
        self.xattrs = True

    # --- the CRC32C beside each chunk (module docstring) ------------------------------

    def set_crc(self, fd: int, crc: int) -> None:
        """Store ``crc`` with the open chunk file ``fd`` (best effort: without it reads
        hash the address instead)."""
        if not self.xattrs:
            return
        try:
            os.setxattr(fd, CRC_XATTR, crc.to_bytes(4, "big"))
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                self.xattrs = False
            # anything else (a full disk for the attribute block): this file goes without

    def _stored_crc(self, fd: int) -> int | None:
        if not self.xattrs:
            return None
        try:
            raw = os.getxattr(fd, CRC_XATTR)
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                self.xattrs = False
            return None
        return int.from_bytes(raw, "big") if len(raw) == 4 else None

    def _check_data(self, fd: int, data: bytes, chunk_id: str) -> None:
        """``data`` (all of the file ``fd``) is chunk ``chunk_id``, else DataDamaged."""
        stored = self._stored_crc(fd)
        if stored is not None and _crt.crc32c(data) == stored:
            return
        if hashlib.sha256(data).hexdigest() != chunk_id:
            raise _damaged(chunk_id)
        self.set_crc(fd, _crt.crc32c(data))  # sound: give it its (right) checksum

    def check_file(self, fd: int, chunk_id: str) -> None:
        stored = self._stored_crc(fd)
        if stored is not None and _scan_fd(fd, sha=False)[0] == stored:
            return
        crc, digest = _scan_fd(fd, sha=True)
        if digest != chunk_id:
            raise _damaged(chunk_id, " (before sendfile)")
        self.set_crc(fd, crc)

    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # writes a crash interrupted
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                leftover.unlink()

    async def close(self) -> None:
        return None

    def temp_files(self) -> list[Path]:
        """Files in ``tmp/``: chunks being written, or (with no writer running) what a
        crash left there. Blocking: call it from a worker thread."""
        try:
            return sorted(p for p in self.tmp_dir.iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    def path_of(self, chunk_id: str) -> Path:
        """Where ``chunk_id`` lives; raises InvalidArgument for anything but a content
        address, so no caller can turn an id into a path outside the store."""
        if _CHUNK_ID.fullmatch(chunk_id) is None:
            raise InvalidArgument(f"bad chunk id {chunk_id!r}")
        return self.chunks_dir / chunk_id[:2] / chunk_id[2:4] / chunk_id

    def install(self, tmp: Path, ref: ChunkRef) -> None:
        """Move a complete, fsync'd temp file onto its content address (worker thread).

        A file already at the address is replaced, not kept: it holds the same bytes if
        it is sound, and if it is damaged (even with its size intact) this write is what
        heals it. The rename is atomic, so a reader or sender holding the old file keeps
        reading the old inode, and the temp file was fsync'd already: only the directory
        entry is new work, as for any new chunk.
        """
        dest = self.path_of(ref.chunk_id)
        created: list[Path] = []
        for d in (dest.parent.parent, dest.parent):
            try:
                d.mkdir()
                created.append(d)
            except FileExistsError:
                pass
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        for d in created:  # the new directory entries themselves
            fsync_dir(d.parent)

    def writer(self, bucket: Bucket | None = None) -> LocalDirChunkWriter:
        return LocalDirChunkWriter(self)  # one copy, whatever the bucket

    async def put(self, data: bytes) -> ChunkRef:
        w = self.writer()
        try:
            return await asyncio.to_thread(self._put_sync, w, data)
        except OSError as exc:
            _if_full(exc)
            raise

    @staticmethod
    def _put_sync(w: LocalDirChunkWriter, data: bytes) -> ChunkRef:
        """The whole put in one worker-thread hop: small chunks cost one context switch."""
        try:
            if data:
                w._write_sync(data)
            w._done = True
            return w._commit_sync()
        except BaseException:
            w._discard_sync()
            raise

    async def read(self, chunk_id: str, offset: int = 0, length: int = -1) -> bytes:
        if offset < 0 or length < -1:
            raise InvalidArgument(f"bad range: offset {offset}, length {length}")
        try:
            path = self.path_of(chunk_id)
        except InvalidArgument:
            raise ChunkMissing(chunk_id) from None
        return await asyncio.to_thread(self._read_sync, path, chunk_id, offset, length)

    def _read_sync(self, path: Path, chunk_id: str, offset: int, length: int) -> bytes:
        """The whole chunk, checked, then the range asked for: a chunk is at most a few
        MiB, and its checksum and address cover all of it."""
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
                self._check_data(f.fileno(), data, chunk_id)
        except FileNotFoundError:
            raise ChunkMissing(chunk_id) from None
        if offset == 0 and length < 0:
            return data
        return data[offset:] if length < 0 else data[offset : offset + length]

    async def exists(self, chunk_id: str) -> bool:
        try:
            path = self.path_of(chunk_id)
        except InvalidArgument:
            return False
        return await asyncio.to_thread(path.is_file)

    async def delete(self, chunk_id: str) -> None:
        try:
            path = self.path_of(chunk_id)
        except InvalidArgument:
            return
        await asyncio.to_thread(self._unlink_sync, path)

    @staticmethod
    def _unlink_sync(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    async def list_chunks(self) -> AsyncIterator[str]:
        tops = await asyncio.to_thread(self._fanout_dirs, self.chunks_dir)
        for top in tops:
            for chunk_id in await asyncio.to_thread(self._chunks_under, top):
                yield chunk_id

    @staticmethod
    def _fanout_dirs(parent: Path) -> list[Path]:
        try:
            entries = list(os.scandir(parent))
        except FileNotFoundError:
            return []
        return sorted(Path(e.path) for e in entries if _FANOUT.fullmatch(e.name) and e.is_dir())

    @classmethod
    def _chunks_under(cls, top: Path) -> list[str]:
        """Chunk files below one first-level directory, only where their name says."""
        found: list[str] = []
        for mid in cls._fanout_dirs(top):
            prefix = top.name + mid.name
            with os.scandir(mid) as it:
                found.extend(
                    e.name
                    for e in it
                    if _CHUNK_ID.fullmatch(e.name) and e.name.startswith(prefix) and e.is_file()
                )
        found.sort()
        return found

    def chunks_older_than(self, seconds: float) -> list[str]:
        """Ids of the chunk files last written more than ``seconds`` ago (the leftover
        sweep's candidates, ``kvbox.core.leftovers``). Blocking: call from a thread. A
        file that vanishes meanwhile is skipped."""
        cutoff = time.time() - seconds
        found: list[str] = []
        for top in self._fanout_dirs(self.chunks_dir):
            for chunk_id in self._chunks_under(top):
                try:
                    if os.stat(self.path_of(chunk_id)).st_mtime < cutoff:
                        found.append(chunk_id)
                except FileNotFoundError:
                    continue
        return found

    async def verify(self, chunk_id: str) -> bool:
        try:
            path = self.path_of(chunk_id)
        except InvalidArgument:
            return False
        return await asyncio.to_thread(self._verify_sync, path, chunk_id)

    def _verify_sync(self, path: Path, chunk_id: str) -> bool:
        """The address itself, always (fsck, the scrubber): a sound file also gets its
        checksum attribute back if it was lost."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            crc, digest = _scan_fd(fd, sha=True)
            if digest != chunk_id:
                return False
            if self._stored_crc(fd) != crc:
                self.set_crc(fd, crc)
            return True
        finally:
            os.close(fd)

    def local_path(self, chunk_id: str) -> Path | None:
        try:
            return self.path_of(chunk_id)
        except InvalidArgument:
            return None
