"""The reserve of free space (``kvbox.core.space``) on the real file system under a test
directory: parsing ``--min-free``, the decision, the reserve file.

Layer: tests/core. A real full disk is tests/e2e/test_full_disk.py's; here the reserve
is set above or below what the file system has free, which decides the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvbox.core.space import RESERVE_FILE, MinFree, Space
from kvbox.errors import StorageFull


def test_min_free_parses_bytes_and_percentages() -> None:
    assert MinFree.parse("5%") == MinFree(percent=5.0)
    assert MinFree.parse(" 0.5 % ") == MinFree(percent=0.5)
    assert MinFree.parse("64MiB") == MinFree(nbytes=64 * 1024 * 1024)
    assert MinFree.parse("0") == MinFree()
    assert MinFree(percent=10).of(1000) == 100 and MinFree(nbytes=7).of(1000) == 7
    for bad in ("abc", "100%", "-1", "5 percent"):
        with pytest.raises(ValueError):
            MinFree.parse(bad)


def _full(space: Space) -> bool:
    return space.full


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_writes_refused_under_the_reserve_and_resumed_above_it(tmp_path: Path) -> None:
    space = Space(tmp_path, MinFree(nbytes=_free(tmp_path) * 2))  # more than there is
    space.open()
    assert space.full and space.episodes == 1
    assert not (tmp_path / RESERVE_FILE).exists()  # no room to keep one
    with pytest.raises(StorageFull, match=r"^full: .*deletes still work$"):
        space.check(10)
    assert space.refused == 1
    space.min_free = MinFree(nbytes=1024 * 1024)  # space "came back"
    space.measure()
    assert not _full(space)
    space.check(10)  # accepted, from the headroom, without measuring
    with pytest.raises(StorageFull):
        space.check(_free(tmp_path))  # one write that would cross the reserve
    assert _full(space) and space.episodes == 2


def test_the_reserve_file_is_kept_and_given_up(tmp_path: Path) -> None:
    space = Space(tmp_path, MinFree(nbytes=1024 * 1024))
    space.open()
    assert (tmp_path / RESERVE_FILE).stat().st_size > 0
    reserve = space.reserve
    assert space.release_reserve() and not (tmp_path / RESERVE_FILE).exists()
    assert not space.release_reserve()  # once
    space.measure()
    assert space.reserve > reserve  # its room is not for writes until it is made again
    space._refresh()
    assert (tmp_path / RESERVE_FILE).exists() and space.reserve == reserve


def test_no_reserve_means_never_full(tmp_path: Path) -> None:
    space = Space(tmp_path, MinFree())
    space.open()
    space.check(1 << 40)
    assert not space.full and not (tmp_path / RESERVE_FILE).exists()
