"""Tiny valid PNG images, built in code, for the S3 lab tests.

Layer: tests/e2e. Rules: no binary fixtures in the repository and nothing downloaded:
each image is assembled here from its chunks (PNG spec, ISO/IEC 15948: signature, IHDR,
IDAT holding zlib-compressed scanlines, IEND; every chunk carries a CRC-32 of its type
and data), so a test can compare exact bytes and any image viewer can open what the
server sent back. The two images differ in size and colour, so their bytes, lengths
and ETags all differ.
"""

from __future__ import annotations

import struct
import zlib

#: The eight bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One chunk: length, type, data, CRC-32 over type and data."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``width`` x ``height`` 8-bit RGB image of one colour.

    Each scanline is filter byte 0 (None) followed by the raw pixels, as the spec's
    filter method 0 requires.
    """
    if not (0 < width <= 1024 and 0 < height <= 1024):
        raise ValueError("keep test images small")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # depth 8, RGB
    row = b"\x00" + bytes(rgb) * width
    idat = zlib.compress(row * height, 9)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR; AssertionError if ``data`` is not a PNG."""
    assert data[:8] == PNG_SIGNATURE, f"not a PNG: {data[:16]!r}"
    assert data[12:16] == b"IHDR", f"first chunk is not IHDR: {data[12:16]!r}"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


#: The lab's first upload: a 16 x 16 red square.
RED_PNG = solid_png(16, 16, (220, 30, 30))
#: The lab's second upload: a 24 x 12 blue rectangle.
BLUE_PNG = solid_png(24, 12, (30, 60, 220))
