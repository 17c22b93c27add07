"""``update_holding_gil``: the same digest as one ``update``, whatever the size.

Layer: tests/core. (Whether the GIL is kept is a performance property; the benchmark in
docs/benchmarks.md shows it. Here: that the bytes hashed are exactly the bytes given.)
"""

from __future__ import annotations

import hashlib
import os

import pytest

from kvbox.core.store import update_holding_gil
from kvbox.s3.checksums import Algorithm, new_checksum

SIZES = [0, 1, 2046, 2047, 2048, 4095, 4096, 10_000, 65_535, 65_536, 65_537, 300_000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["md5", "sha256"])
def test_hashlib_digest_is_unchanged(size: int, name: str) -> None:
    data = os.urandom(size)
    h = hashlib.new(name)
    update_holding_gil(h, data)
    assert h.digest() == hashlib.new(name, data).digest()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("alg", [Algorithm.CRC32, Algorithm.CRC32C, Algorithm.SHA1])
def test_s3_checksum_is_unchanged(size: int, alg: Algorithm) -> None:
    data = os.urandom(size)
    pieces, whole = new_checksum(alg), new_checksum(alg)
    update_holding_gil(pieces, data)
    whole.update(data)
    assert pieces.b64digest() == whole.b64digest()
