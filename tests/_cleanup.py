"""What a test run leaves behind: its data only when a test failed.

Layer: tests. **Data.** A full run writes tens of GiB (servers' data directories, 1 GiB
objects, crash loops), and pytest keeps what its fixtures made until the run ends and
the last three runs' after that. Function-scoped ``tmp_path`` directories are removed by
pytest itself when their test passed (``tmp_path_retention_policy = "failed"`` in
pyproject.toml); a directory that outlives one test -- a module's or the session's
server -- is made through ``removed_after``, which removes it when its fixture ends,
unless a test failed meanwhile in this process: then it stays for whoever reads the
failure (the server's log next to it stays either way while the run lasts).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
