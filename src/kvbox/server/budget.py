"""The memory that bodies in flight may hold, shared by every door (``--max-inflight-bytes``).

Layer: server (asyncio). Rules:

* A request or reply body that passes through memory -- an upload streamed into
  ``Store.put_stream``, a body read whole, a download read a chunk at a time -- holds a
  *share* of one budget for as long as it is in flight, sized by what it can hold at
  most (``min(its length, what one stream holds)``: ``Store.stream_memory`` plus a piece
  being read for an upload, one chunk for a download). Bodies that go out with sendfile
  hold nothing.
* Shares are granted first come, first served: a body that does not fit waits (its
  socket is not read meanwhile, so TCP holds the client back), at most ``wait`` seconds;
  then it is refused -- S3 answers 503 SlowDown, which every SDK retries with backoff,
  GW-KV ``ERR BUSY``.
* A share bigger than the whole budget is capped to it (it then waits for the budget to
  be empty), so no single body is refused for its size alone.

With this, what concurrent bodies cost is at most ``limit``, whatever the load (16
concurrent 40 MB PUTs took kvbox from 60 to 414 MB before, issue 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from collections import deque
from collections.abc import Callable
from typing import Final

#: Longest a body waits for its share before it is refused. Long enough to ride out a
#: burst (a share frees as fast as a chunk is written, ~50 ms), short enough that an
#: SDK's own timeout (60 s in botocore) never fires first and its retry can back off.
WAIT_MAX: Final = 10.0
#: Bytes a streamed upload holds beside the store's buffers (``Store.stream_memory``):
#: the piece being read (aiohttp hands the S3 door up to 1 MiB at a time) and the
#: socket's read buffer.
READ_SLACK: Final = 1 << 20
#: How often a waiting body looks whether its client is still there.
_LOOK: Final = 0.5


class Share:
    """One body's part of the budget; ``MemoryBudget.release`` gives it back (once)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class MemoryBudget:
    """Bytes in flight, granted first come, first served, up to ``limit``."""

    def __init__(self, limit: int, wait: float = WAIT_MAX) -> None:
        self.limit = limit
        self.wait = wait
        self.used = 0
        #: For /metrics: the most ever held at once, bodies that had to wait, and bodies
        #: refused after waiting ``wait`` seconds.
        self.peak = 0
        self.waited = 0
        self.refused = 0
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_take(self, share: Share, n: int) -> bool:
        """Take ``n`` bytes for ``share`` now if they fit and nobody waits before us."""
        n = min(n, self.limit)
        if self._queue or self.used + n > self.limit:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        share.n += n
        return True

    async def take(
        self,
        share: Share,
        n: int,
        wait: float | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> bool:
        """Take ``n`` bytes for ``share``, waiting up to ``wait`` (default: the budget's)
        seconds behind earlier bodies; False if refused, or if ``gone()`` says the client
        went away meanwhile (looked at every ``_LOOK`` seconds)."""
        if n <= 0 or self.try_take(share, n):
            return True
        n = min(n, self.limit)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (n, fut)
        self._queue.append(entry)
        self.waited += 1
        deadline = loop.time() + (self.wait if wait is None else wait)
        try:
            while not fut.done():
                left = deadline - loop.time()
                if left <= 0 or (gone is not None and gone()):
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, _LOOK)):
                        await asyncio.shield(fut)
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.used -= n  # granted, but the taker is gone: give it straight back
                self._wake()
            else:
                fut.cancel()
                self._drop(entry)
            raise
        if fut.done():
            share.n += n  # _wake counted it in ``used`` when it granted it
            return True
        fut.cancel()
        self._drop(entry)
        if gone is None or not gone():
            self.refused += 1
        return False

    def release(self, share: Share) -> None:
        """Give ``share``'s bytes back (a second call is harmless)."""
        n, share.n = share.n, 0
        if n:
            self.used -= n
            self._wake()

    def _drop(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(entry)
        self._wake()  # the head may have changed

    def _wake(self) -> None:
        """Grant waiting bodies, in order, while the head of the queue fits."""
        q = self._queue
        while q:
            n, fut = q[0]
            if fut.done():  # timed out or cancelled meanwhile
                q.popleft()
                continue
            if self.used + n > self.limit:
                return
            q.popleft()
            self.used += n
            self.peak = max(self.peak, self.used)
            fut.set_result(None)


#: glibc's ``mallopt`` parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD: Final = -3
#: Allocations at least this big get their own mapping, returned to the system on free.
MMAP_THRESHOLD: Final = 1 << 20


def return_big_blocks() -> bool:
    """Make the C allocator give large blocks (chunks, pieces of bodies) back on free.

    glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so
    after the first few 8 MiB chunks every later one comes from a heap arena -- one per
    worker thread -- and freed chunks stay resident there: 16 concurrent GETs under a
    96 MiB budget peaked 200 MB above the server's base. A fixed threshold (what
    ``MALLOC_MMAP_THRESHOLD_`` sets; an operator's own setting is left alone) keeps RSS
    where the budget says. True if it was set.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD)))
