"""The data directory's lock (one kvbox process at a time owns a data directory), and
the one file-system rule every writer in it shares (``fsync_dir``).

Layer: core. Rules: the server holds an exclusive ``flock`` on ``<data>/LOCK`` for its
whole life, and offline tools (``kvbox fsck``) take the same lock, so a repair can never
delete chunks a running server is about to reference. ``flock`` locks die with their
process, so a crashed server never leaves a stale lock behind; the pid written into the
file only makes the error message useful.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from kvbox.errors import DataDirError as DataDirError  # defined in the one tree
from kvbox.errors import StorageError

LOCK_FILE: Final = "LOCK"
#: Entries a server writes to; each that exists must be writable, or start-up stops
#: with one line instead of failing on its first write (``_check_writable``).
_WRITTEN: Final = ("meta.sqlite3", "meta.sqlite3-wal", "meta.sqlite3-shm", "journal", "chunks")


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable: a file created, renamed or deleted in it is
    only certain to stay so (or gone) after this, whatever its own fsync did."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DataDirLock:
    """An acquired lock on one data directory; ``release`` (or leaving the ``with``
    block of ``lock_data_dir``) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def acquire_data_dir(path: Path, *, create: bool = False) -> DataDirLock:
    """Take the lock or raise ``StorageError`` saying who holds it (``DataDirError`` when
    the directory itself is unusable)."""
    path = Path(path)
    if create:
        _make(path)
    elif path.exists() and not path.is_dir():
        raise DataDirError(f"data directory {path} is a file, not a directory")
    elif not path.is_dir():
        raise DataDirError(f"{path}: no such data directory")
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DataDirError(_unwritable(path, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StorageError(
            f"data directory {path} is in use by another kvbox process (pid {holder}); "
            "stop it first"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        _check_writable(path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise DataDirError(_unwritable(path, exc)) from None
    except BaseException:
        os.close(fd)
        raise
    return DataDirLock(lock_path, fd)


def _make(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # exist_ok covers directories only: something else is there
        raise DataDirError(f"data directory {path} is a file, not a directory") from None
    except NotADirectoryError:
        raise DataDirError(
            f"cannot create data directory {path}: a part of that path is a file"
        ) from None
    except OSError as exc:
        raise DataDirError(f"cannot create data directory {path}: {exc.strerror}") from None


def _unwritable(path: Path, exc: OSError) -> str:
    return f"data directory {path} is not writable: {exc.strerror}"


def _check_writable(path: Path) -> None:
    """Raise ``PermissionError`` unless the directory and the entries a server writes
    to are writable by this process (``os.access`` also reports a read-only mount)."""
    for entry in (path, *(path / name for name in _WRITTEN)):
        if entry.exists() and not os.access(entry, os.W_OK | (os.X_OK if entry.is_dir() else 0)):
            where = "" if entry == path else f" ({entry.name})"
            raise PermissionError(errno.EACCES, f"Permission denied{where}")


@contextlib.contextmanager
def lock_data_dir(path: Path, *, create: bool = False) -> Iterator[DataDirLock]:
    """``with lock_data_dir(data): ...`` holds the data directory for the block."""
    lock = acquire_data_dir(path, create=create)
    try:
        yield lock
    finally:
        lock.release()
