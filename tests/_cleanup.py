"""What a test run leaves behind: its data only when a test failed, its processes never.

Layer: tests. **Data.** A full run writes tens of GiB (servers' data directories, 1 GiB
objects, crash loops), and pytest keeps what its fixtures made until the run ends and
the last three runs' after that. Function-scoped ``tmp_path`` directories are removed by
pytest itself when their test passed (``tmp_path_retention_policy = "failed"`` in
pyproject.toml); a directory that outlives one test -- a module's or the session's
server -- is made through ``removed_after``, which removes it when its fixture ends,
unless a test failed meanwhile in this process: then it stays for whoever reads the
failure (the server's log next to it stays either way while the run lasts).

**Processes.** A run killed from outside (``timeout``, a CI job cancelled, Ctrl-C twice)
runs no fixture teardown, and the servers it started -- PostgreSQL, ``kvbox serve``, blob
nodes -- would run on, holding ports, memory and disk, until someone kills them by hand.
So they are started with ``preexec_fn=dies_with_us()``: the kernel sends the child
SIGKILL when the test process (its parent) dies, however it dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

#: prctl(2) option: the signal this process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG: Final = 1

#: Tests that failed so far in this process (tests/conftest.py's report hook counts).
failures = 0


def note_failure() -> None:
    global failures
    failures += 1


@contextmanager
def removed_after(path: Path) -> Iterator[Path]:
    """``path``, removed (the whole tree) when the block ends if no test failed in it."""
    before = failures
    try:
        yield path
    finally:
        if failures == before:
            shutil.rmtree(path, ignore_errors=True)


def dies_with_us() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child die with this
    process (module docstring); None where that cannot be had safely.

    The kernel ties the parent-death signal to the *thread* that forked the child, not
    the process: a child forked from a short-lived thread would be killed when that
    thread ends. So it is armed only for a child forked from the main thread (where
    pytest runs tests, under xdist too); elsewhere, and off Linux, the child is simply
    not guarded.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def arm() -> None:  # in the child, between fork and exec (after any setuid)
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the guard was set
            os.kill(os.getpid(), signal.SIGKILL)

    return arm
