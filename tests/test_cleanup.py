"""``tests/_cleanup.py``: shared test data removed unless a test failed."""

from __future__ import annotations

from pathlib import Path

import pytest

import _cleanup
from _cleanup import removed_after

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
