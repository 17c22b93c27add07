"""The data directory's free space, and the reserve below which new writes are refused.

Layer: core (``os.statvfs`` and one small file; the Store asks it before every write
that adds bytes). Rules:

* **A reserve, not a cliff.** Below ``--min-free`` (bytes, or a percentage of the file
  system) new writes -- PUTs, parts, copies, SETs, BSETs -- are refused at once with
  ``StorageFull`` (S3 507 ``XKvboxStorageFull``, GW-KV ``ERR STORAGE full``), while
  everything that frees space or only reads keeps working: deletes, lifecycle expiry,
  the journal's replay at start-up, STATS, GETs. The reserve is what those need: SQLite
  commits a delete by appending to its WAL, and a full disk would refuse even that.
* **A last reserve of its own** (``RESERVE_FILE``, ``RESERVE_FILE_BYTES``): if something
  else fills the disk to the last byte (another process, a file copied in by hand),
  the reserve above is gone too. So the directory also keeps a small preallocated file,
  deleted the moment a delete or the start-up replay meets a full disk
  (``release_reserve``), and made again once the space is back.
* **Cheap on the hot path.** ``check(n)`` is one subtraction from the headroom the last
  ``statvfs`` measured; a background refresh (every ``REFRESH`` seconds) and any write
  that would use up the headroom measure again. While full, a refused write measures at
  most every ``FULL_RESTAT`` seconds, so refusals answer at once and writes resume by
  themselves within that long of space coming back.
* **One WARNING per episode** (entering full) and one INFO when it ends, never one line
  per refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kvbox.config import parse_size
from kvbox.core.periodic import Periodic
from kvbox.errors import StorageFull

log = logging.getLogger("kvbox.space")

#: Seconds between background measurements of the free space.
REFRESH: Final = 1.0
#: While full, seconds between measurements a refused write may trigger.
FULL_RESTAT: Final = 0.05
#: Free bytes above the reserve needed to end an episode (at most the reserve itself).
HYSTERESIS: Final = 4 * 1024 * 1024
#: Bytes a write is charged beyond its payload (metadata row, journal framing).
OVERHEAD: Final = 512
#: The last-resort file (module docstring): enough for SQLite to commit deletes and
#: apply a journal's records on a disk that is otherwise full to the last byte.
RESERVE_FILE: Final = "space-reserve"
RESERVE_FILE_BYTES: Final = 8 * 1024 * 1024
#: The default ``--min-free``.
DEFAULT_MIN_FREE: Final = "1%"

#: errno values that mean "no space left" (a quota counts too).
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def is_full_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the operating system saying the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def full_error(detail: str | None = None) -> StorageFull:
    """The refusal a client sees: what happened and what still works, no path.
    ``detail``: the operating system said the disk is full while writing it."""
    if detail is None:
        why = "the server's free disk space is below its reserve"
    else:
        why = f"the disk is full ({detail})"
    return StorageFull(
        f"full: {why}; new writes are refused until space is freed, deletes still work"
    )


@dataclass(frozen=True, slots=True)
class MinFree:
    """``--min-free``: a number of bytes, or a percentage of the file system's size."""

    nbytes: int = 0
    percent: float = 0.0

    @classmethod
    def parse(cls, text: str) -> MinFree:
        """``"5%"``, ``"512MiB"``, ``"0"`` (no reserve); ValueError otherwise."""
        m = _PERCENT.fullmatch(text)
        if m is not None:
            pct = float(m.group(1))
            if pct >= 100:
                raise ValueError(f"--min-free {text!r}: a percentage under 100")
            return cls(percent=pct)
        return cls(nbytes=parse_size(text.strip()))

    def of(self, total: int) -> int:
        """The reserve in bytes on a file system of ``total`` bytes."""
        return int(total * self.percent / 100) if self.percent else self.nbytes

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent else str(self.nbytes)


class Space:
    """Free space of one data directory against its reserve (module docstring)."""

    def __init__(self, path: Path, min_free: MinFree, *, reserve_file: bool = True) -> None:
        self.path = Path(path)
        self.min_free = min_free
        self._reserve_path = (
            self.path / RESERVE_FILE
            if reserve_file and (min_free.nbytes or min_free.percent)
            else None
        )
        #: The reserve file was given up and not made again yet: its room is not free
        #: for writes (else the first writes would take it), so the reserve grows by it.
        self._released = False
        #: As last measured: bytes free to unprivileged users, the file system's size,
        #: and the reserve in bytes.
        self.free = 0
        self.total = 0
        self.reserve = 0
        #: True while free space is under the reserve: new writes are refused.
        self.full = False
        #: Episodes of full (entering it) and writes refused, since start.
        self.episodes = 0
        self.refused = 0
        self._headroom = 0
        self._measured = 0.0
        self._periodic = Periodic(
            "kvbox-space", lambda: asyncio.to_thread(self._refresh), REFRESH, on_error=self._failed
        )

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Measure, and on a full disk give up the reserve file at once: the start-up
        (the journal's replay into SQLite) needs its room before anything else."""
        self.measure()
        if self.full:
            self.release_reserve()
        else:
            self._ensure_reserve_file()

    def start(self) -> None:
        """Measure in the background from now on (on the running event loop)."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, OSError):  # the directory vanished, a dead mount: say so
            log.warning("could not measure free space of %s: %s", self.path, exc)
        else:
            log.error("measuring free space of %s failed", self.path, exc_info=exc)

    def _refresh(self) -> None:
        self.measure()
        if not self.full and self._ensure_reserve_file():
            self.measure()  # made again: the reserve is back to --min-free alone

    # --- the check ----------------------------------------------------------------------

    def check(self, nbytes: int = 0) -> None:
        """Raise ``StorageFull`` if a write of about ``nbytes`` may not go ahead now: one
        that would take free space under the reserve, or any while an episode lasts."""
        cost = nbytes + OVERHEAD
        if self._headroom >= cost and not self.full:
            self._headroom -= cost
            return
        now = time.monotonic()
        if not self.full or now - self._measured >= FULL_RESTAT:
            self.measure()
        if not self.full and self._headroom < cost and self.reserve > 0:
            self._begin()  # this write would cross the reserve: the episode starts now
        if self.full:
            self.refused += 1
            raise full_error()
        self._headroom -= cost

    def measure(self) -> None:
        """``statvfs`` now; start or end an episode. Once one started it lasts until
        ``HYSTERESIS`` bytes above the reserve are free, so that writes do not flap in
        and out of it a few kilobytes at a time."""
        st = os.statvfs(self.path)
        self.total = st.f_blocks * st.f_frsize
        self.free = st.f_bavail * st.f_frsize
        self.reserve = self.min_free.of(self.total) + (RESERVE_FILE_BYTES if self._released else 0)
        self._headroom = self.free - self.reserve
        self._measured = time.monotonic()
        if self.reserve <= 0:
            full = False
        elif self.full:
            full = self.free < self.reserve + min(HYSTERESIS, self.reserve)
        else:
            full = self.free < self.reserve
        if full and not self.full:
            self._begin()
        elif self.full and not full:
            self.full = False
            log.info(
                "storage no longer full: %s has %s free (reserve %s): writes accepted again",
                self.path,
                _human(self.free),
                _human(self.reserve),
            )

    def _begin(self) -> None:
        self.full = True
        self.episodes += 1
        log.warning(
            "storage full: %s has %s free, at the reserve of %s (--min-free %s): new "
            "writes are refused until space is freed; deletes still work",
            self.path,
            _human(self.free),
            _human(self.reserve),
            self.min_free,
        )

    # --- the reserve file ---------------------------------------------------------------

    def release_reserve(self) -> bool:
        """Delete the reserve file to let a delete or the replay commit; False if there
        was none (already released, or never made)."""
        if self._reserve_path is None:
            return False
        try:
            os.unlink(self._reserve_path)
        except FileNotFoundError:
            return False
        self._released = True
        log.warning(
            "storage full to the last byte: released the %s reserve file so that deletes "
            "can commit",
            _human(RESERVE_FILE_BYTES),
        )
        return True

    def _ensure_reserve_file(self) -> bool:
        """Make the reserve file if it is missing and there is room; whether it was
        released before and is back now."""
        p = self._reserve_path
        was_released = self._released
        if p is None or self.free < self.reserve + 2 * RESERVE_FILE_BYTES:
            return False
        with contextlib.suppress(OSError):
            if p.exists() and p.stat().st_blocks * 512 >= RESERVE_FILE_BYTES:
                self._released = False
                return was_released
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, RESERVE_FILE_BYTES)
                except OSError:  # a file system without fallocate: real zeros
                    os.ftruncate(fd, 0)
                    os.write(fd, bytes(RESERVE_FILE_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._released = False
        return was_released and not self._released


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(x) < 1024:
            return f"{x:.0f} B" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"
