"""Zero-copy sends of local file segments to an HTTP connection (S3 GetObject bodies).

Layer: server (asyncio and threads; knows nothing of S3). Rules:

* uvloop, kvbox's event loop, has no ``loop.sendfile`` (it raises NotImplementedError),
  and the loop cannot wait for a transport's socket to be writable while the transport
  owns it. So each send runs ``os.sendfile`` in a thread of its own, on a ``dup`` of the
  socket -- if the transport closes its descriptor meanwhile, the number cannot be
  reused under the thread and the bytes can only ever reach this connection -- and
  waits for writability with its own ``poll(2)``.
* The caller must have flushed everything the transport buffered (the response
  headers) and must not write to the transport until the send is over: the thread's
  bytes and the transport's would interleave.
* Bounded: at most ``MAX_THREADS`` sends at once (``socket_fd`` answers None beyond that
  and the caller streams the ordinary way), and a send with no progress for
  ``STALL_SECONDS`` -- a client that stopped reading -- fails with TimeoutError.
* Plain TCP only: a TLS transport encrypts in user space, so there is nothing to hand to
  the kernel (``socket_fd`` answers None).
* Every byte sent is checked first: the thread opens each segment through
  ``PinnedFiles.open``, which hashes its chunk against its address (``DataDamaged``
  ends the send), then hands the file to the kernel -- the check has just read it into
  the page cache, so sendfile does not read the disk again.
* ``files.release`` runs on the loop exactly once, when the thread no longer touches
  the files (or at once if no thread started): that is when their pins may go. A
  cancelled caller tells the thread to stop; it does within ``_POLL_MS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from aiohttp import web

from kvbox.core.store import FileSegment, PinnedFiles

#: Sends in flight at once; each holds a thread, mostly asleep in poll(2).
MAX_THREADS: Final = 8
#: A send that moves no byte for this long is abandoned (the caller closes the
#: connection); ``kvbox serve`` passes ``--body-timeout``, the same bound a request body
#: and every other reply get.
STALL_SECONDS: Final = 60.0
#: How long a waiting thread sleeps in poll(2) before it looks at its stop flag again.
_POLL_MS: Final = 500


def _send_segments(
    out: int,
    segments: Sequence[FileSegment],
    open_checked: Callable[[FileSegment], int],
    stop: threading.Event,
    stall: float,
) -> int:
    """Send every segment to socket ``out`` (non-blocking), each opened (and checked)
    by ``open_checked``; the bytes sent (worker thread). ``stall`` seconds without
    progress abandon the send."""
    poller = select.poll()
    poller.register(out, select.POLLOUT)
    total = 0
    for seg in segments:
        if stop.is_set():
            raise ConnectionAbortedError("sendfile stopped")
        fd = open_checked(seg)
        try:
            offset, left = seg.offset, seg.length
            last_progress = time.monotonic()
            while left > 0:
                if stop.is_set():
                    raise ConnectionAbortedError("sendfile stopped")
                try:
                    n = os.sendfile(out, fd, offset, left)
                except BlockingIOError:  # the socket buffer is full: wait below
                    n = -1
                if n == 0:  # end of file before the segment's end: a damaged chunk
                    raise OSError(f"{seg.path}: shorter than its stored size")
                if n > 0:
                    offset += n
                    left -= n
                    total += n
                    last_progress = time.monotonic()
                    continue
                if time.monotonic() - last_progress > stall:
                    raise TimeoutError(f"sendfile made no progress for {stall:g} s")
                poller.poll(_POLL_MS)
        finally:
            os.close(fd)
    return total


class Sendfile:
    """Sends ``FileSegment`` runs to connections; one per HTTP server. Counts for /metrics."""

    def __init__(self, max_threads: int = MAX_THREADS, stall: float = STALL_SECONDS) -> None:
        self.max_threads = max_threads
        #: Seconds without progress before a send is abandoned (``--body-timeout``).
        self.stall = stall
        self.active = 0
        #: Responses and bytes that went out through sendfile, for /metrics and tests.
        self.responses = 0
        self.bytes = 0

    def socket_fd(self, request: web.BaseRequest) -> int | None:
        """The connection's socket if a send may start now; None: stream instead."""
        transport = request.transport
        if transport is None or transport.is_closing() or self.active >= self.max_threads:
            return None
        if not hasattr(os, "sendfile") or transport.get_extra_info("sslcontext") is not None:
            return None
        sock = transport.get_extra_info("socket")
        try:
            fd = sock.fileno() if sock is not None else -1
        except OSError:
            return None
        return fd if isinstance(fd, int) and fd >= 0 else None

    async def send(self, sock_fd: int, files: PinnedFiles) -> int:
        """Send ``files`` to ``sock_fd``; the bytes sent. Raises what the send raised
        (OSError for a lost connection, TimeoutError for a stalled one, DataDamaged for
        a damaged chunk) and releases the files when the thread is done with them."""
        on_finish = files.release
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        stop = threading.Event()
        try:
            out = os.dup(sock_fd)
        except BaseException:
            on_finish()
            raise

        def finish(sent: int, error: BaseException | None) -> None:  # on the loop
            self.active -= 1
            on_finish()
            if done.done():  # the caller was cancelled
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(sent)

        def run() -> None:  # the thread
            sent, error = 0, None
            try:
                sent = _send_segments(out, files.segments, files.open, stop, self.stall)
            except BaseException as exc:
                error = exc
            finally:
                os.close(out)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody left to tell
                loop.call_soon_threadsafe(finish, sent, error)

        self.active += 1
        try:
            threading.Thread(target=run, name="kvbox-sendfile", daemon=True).start()
        except BaseException:
            self.active -= 1
            os.close(out)
            on_finish()
            raise
        try:
            sent = await done
        except asyncio.CancelledError:
            stop.set()
            raise
        self.responses += 1
        self.bytes += sent
        return sent
