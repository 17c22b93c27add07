"""kvbox.s3.checksums: catalogue check values, bitwise reference CRCs, botocore as oracle."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable

import pytest
from botocore import httpchecksum  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.s3.checksums import (
    MULTIPART_TYPES,
    Algorithm,
    ChecksumType,
    algorithm_for_header,
    checksum_for_header,
    composite_checksum,
    compute,
    decode_checksum,
    full_object_checksum,
    multipart_etag,
    new_checksum,
    parse_algorithm,
)
from kvbox.s3.errors import S3Error

CHECK = b"123456789"  # the CRC catalogue's check input


def _reflected_crc(poly: int, width: int) -> Callable[[bytes], int]:
    """A bit-at-a-time reflected CRC (init and xorout all ones): slow, obviously right."""
    mask = (1 << width) - 1

    def crc(data: bytes) -> int:
        value = mask
        for byte in data:
            value ^= byte
            for _ in range(8):
                value = (value >> 1) ^ poly if value & 1 else value >> 1
        return value ^ mask

    return crc


# reversed polynomials: CRC-32 0x04C11DB7, CRC-32C 0x1EDC6F41, CRC-64/NVME 0xAD93D23594C93659
REFERENCE: dict[Algorithm, Callable[[bytes], int]] = {
    Algorithm.CRC32: _reflected_crc(0xEDB88320, 32),
    Algorithm.CRC32C: _reflected_crc(0x82F63B78, 32),
    Algorithm.CRC64NVME: _reflected_crc(0x9A6C9329AC4BC9B5, 64),
}


def b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


@pytest.mark.parametrize(
    ("alg", "value"),
    [
        (Algorithm.CRC32, 0xCBF43926),
        (Algorithm.CRC32C, 0xE3069283),
        (Algorithm.CRC64NVME, 0xAE8B14860A799888),
    ],
)
def test_crc_catalogue_check_values(alg: Algorithm, value: int) -> None:
    assert compute(alg, CHECK) == b64(value, alg.digest_size)
    assert REFERENCE[alg](CHECK) == value  # the reference itself is right


@pytest.mark.parametrize(
    ("alg", "hexdigest"),
    [
        (Algorithm.CRC32, "00000000"),
        (Algorithm.CRC64NVME, "0000000000000000"),
        (Algorithm.SHA256, hashlib.sha256().hexdigest()),
        (Algorithm.MD5, "d41d8cd98f00b204e9800998ecf8427e"),
        (Algorithm.XXHASH64, "ef46db3751d8e999"),
        (Algorithm.XXHASH3, "2d06800538d394c2"),
        (Algorithm.XXHASH128, "99aa06d3014798d86001c324468d497f"),
    ],
)
def test_empty_input(alg: Algorithm, hexdigest: str) -> None:
    c = new_checksum(alg)
    assert c.digest().hex() == hexdigest
    assert c.b64digest() == base64.b64encode(bytes.fromhex(hexdigest)).decode()
    assert c.algorithm is alg
    assert len(c.digest()) == alg.digest_size


#: botocore's own classes: what boto3 puts in x-amz-checksum-* for a body.
BOTOCORE = {
    Algorithm.CRC32: httpchecksum.Crc32Checksum,
    Algorithm.CRC32C: httpchecksum.CrtCrc32cChecksum,
    Algorithm.CRC64NVME: httpchecksum.CrtCrc64NvmeChecksum,
    Algorithm.SHA1: httpchecksum.Sha1Checksum,
    Algorithm.SHA256: httpchecksum.Sha256Checksum,
    Algorithm.SHA512: httpchecksum.Sha512Checksum,
    Algorithm.XXHASH64: httpchecksum.CrtXxhash64Checksum,
    Algorithm.XXHASH3: httpchecksum.CrtXxhash3Checksum,
    Algorithm.XXHASH128: httpchecksum.CrtXxhash128Checksum,
}


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(list(Algorithm)),
    st.binary(max_size=3000),
    st.lists(st.integers(0, 3000), max_size=4),
)
def test_incremental_equals_botocore_and_reference(
    alg: Algorithm, data: bytes, cuts: list[int]
) -> None:
    c = new_checksum(alg)
    start = 0
    for cut in sorted(cuts):
        c.update(data[start:cut])
        start = max(start, cut)
    c.update(memoryview(data)[start:])
    if alg is Algorithm.MD5:
        expected = base64.b64encode(hashlib.md5(data).digest()).decode()
    else:
        expected = BOTOCORE[alg]().handle(data)
    assert c.b64digest() == expected
    assert c.b64digest() == expected  # reading twice is fine
    if alg in REFERENCE:
        assert c.digest() == REFERENCE[alg](data).to_bytes(alg.digest_size, "big")


def test_large_body_in_chunks() -> None:
    data = bytes(range(256)) * 40_000  # ~10 MiB
    for alg in (Algorithm.CRC32, Algorithm.CRC32C, Algorithm.CRC64NVME, Algorithm.SHA256):
        c = new_checksum(alg)
        for i in range(0, len(data), 1 << 20):
            c.update(data[i : i + (1 << 20)])
        assert c.b64digest() == BOTOCORE[alg]().handle(data)


def test_xxhash_refuses_update_after_digest() -> None:
    c = new_checksum(Algorithm.XXHASH64)
    c.update(b"a")
    c.digest()
    with pytest.raises(ValueError):
        c.update(b"b")


def test_names_and_headers() -> None:
    assert parse_algorithm("crc32c") is Algorithm.CRC32C
    assert parse_algorithm("SHA256") is Algorithm.SHA256
    with pytest.raises(S3Error) as info:
        parse_algorithm("crc16")
    assert info.value.code == "InvalidRequest"
    assert Algorithm.CRC64NVME.header == "x-amz-checksum-crc64nvme"
    assert Algorithm.CRC64NVME.element == "ChecksumCRC64NVME"
    assert algorithm_for_header("X-Amz-Checksum-Crc32") is Algorithm.CRC32
    for other in ("x-amz-checksum-type", "x-amz-checksum-algorithm", "content-md5", "x"):
        assert algorithm_for_header(other) is None
    assert checksum_for_header("x-amz-checksum-sha1").algorithm is Algorithm.SHA1
    with pytest.raises(S3Error):
        checksum_for_header("x-amz-checksum-mode")
    assert new_checksum("CRC32").algorithm is Algorithm.CRC32


def test_decode_checksum() -> None:
    assert decode_checksum(Algorithm.CRC32, "AAAAAQ==") == b"\0\0\0\1"
    for bad in ("AAAA", "AAAAAAAA", "not base64!", "AAAAAQ", "é"):
        with pytest.raises(S3Error) as info:
            decode_checksum(Algorithm.CRC32, bad)
        assert info.value.code == "InvalidRequest"
        assert "x-amz-checksum-crc32" in info.value.message


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([Algorithm.CRC32, Algorithm.CRC32C, Algorithm.CRC64NVME]),
    st.lists(st.binary(max_size=2000), min_size=1, max_size=6),
)
def test_full_object_checksum_equals_crc_of_whole(alg: Algorithm, parts: list[bytes]) -> None:
    pieces = [(compute(alg, p), len(p)) for p in parts]
    assert full_object_checksum(alg, pieces) == compute(alg, b"".join(parts))


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([a for a in Algorithm if ChecksumType.COMPOSITE in MULTIPART_TYPES[a]]),
    st.lists(st.binary(max_size=500), min_size=1, max_size=6),
)
def test_composite_checksum_definition(alg: Algorithm, parts: list[bytes]) -> None:
    raw = b"".join(base64.b64decode(compute(alg, p)) for p in parts)
    assert composite_checksum(alg, [compute(alg, p) for p in parts]) == (
        f"{compute(alg, raw)}-{len(parts)}"
    )


def test_composite_known_value() -> None:
    # CRC32 of the two 4-byte part CRCs, written out by hand with zlib
    a, b = zlib.crc32(b"hello "), zlib.crc32(b"world")
    outer = zlib.crc32(a.to_bytes(4, "big") + b.to_bytes(4, "big"))
    assert composite_checksum(Algorithm.CRC32, [b64(a, 4), b64(b, 4)]) == f"{b64(outer, 4)}-2"


def test_multipart_errors() -> None:
    with pytest.raises(ValueError):
        composite_checksum(Algorithm.CRC32, [])
    with pytest.raises(ValueError):
        full_object_checksum(Algorithm.CRC32, [])
    with pytest.raises(S3Error) as info:
        full_object_checksum(Algorithm.SHA256, [(compute("sha256", b""), 0)])
    assert info.value.code == "InvalidRequest"
    with pytest.raises(S3Error):
        composite_checksum(Algorithm.CRC32, ["AAAA"])
    assert MULTIPART_TYPES[Algorithm.CRC64NVME] == (ChecksumType.FULL_OBJECT,)


def test_multipart_etag() -> None:
    parts = [b"a" * 10, b"b" * 7, b"c"]
    md5s = [hashlib.md5(p).hexdigest() for p in parts]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert multipart_etag(md5s) == f"{expected}-3"
    assert multipart_etag([f'"{m}"' for m in md5s]) == f"{expected}-3"
    assert multipart_etag([hashlib.md5(p).digest() for p in parts]) == f"{expected}-3"
    # a single part still gets the -1 suffix, and differs from the part's own ETag
    assert multipart_etag(md5s[:1]) != md5s[0]
    assert multipart_etag(md5s[:1]).endswith("-1")
    for bad in ([], ["xyz"], ["abcd"], [b"short"]):
        with pytest.raises(ValueError):
            multipart_etag(bad)
