"""``tests/_cleanup.py``: shared test data removed unless a test failed, and servers that
die with the test process that started them (a run killed by ``timeout`` leaves none).

Layer: tests. Real processes: a middle process starts a child the way the helpers start
servers, then is killed with SIGKILL (no teardown runs); the child must go too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import _cleanup
from _cleanup import dies_with_us, removed_after

TESTS = Path(__file__).resolve().parent


def test_shared_data_goes_after_a_pass_and_stays_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with removed_after(tmp_path / "passed") as p:
        p.mkdir()
        (p / "data").write_bytes(b"x")
    assert not p.exists()
    monkeypatch.setattr(_cleanup, "failures", _cleanup.failures)  # restored after
    with removed_after(tmp_path / "failed") as p:
        p.mkdir()
        _cleanup.note_failure()  # what tests/conftest.py's hook does for a failed test
    assert p.is_dir()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"  # a zombie is dead, not yet reaped
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_server_dies_with_the_test_process_that_started_it() -> None:
    middle = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import subprocess, sys, time
                from _cleanup import dies_with_us
                child = subprocess.Popen(["sleep", "300"], preexec_fn=dies_with_us())
                print(child.pid, flush=True)
                time.sleep(300)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    with middle:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        assert _alive(child)
        middle.kill()  # SIGKILL: no finally, no atexit, no fixture teardown
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, f"pid {child} outlived its parent"
        time.sleep(0.02)
    assert dies_with_us() is not None  # armed here: pytest runs tests on the main thread
