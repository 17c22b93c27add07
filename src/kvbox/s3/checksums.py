"""S3 flexible checksums and the multipart ETag.

Layer: s3 protocol (pure; no I/O). Rules:

* A checksum on the wire is the base64 of the digest's bytes; for the CRCs that is the
  CRC's integer in big-endian (``CRC32("") -> "AAAAAA=="``), as botocore sends it.
* CRC32 uses the stdlib (zlib); CRC32C, CRC64NVME and the XXHASH family use ``awscrt``
  (AWS's own C runtime, ~12 GB/s for CRC64NVME here; a pure-Python table-driven CRC64
  runs at ~11 MB/s, far too slow for multi-GiB bodies). SHA and MD5 use hashlib.
* A multipart object's checksum is either COMPOSITE (the checksum of the concatenated
  binary part checksums, then ``-N``) or FULL_OBJECT (the CRC of the whole object,
  combined from the part CRCs without reading the bytes again). CRC64NVME supports only
  FULL_OBJECT, the SHAs only COMPOSITE, CRC32/CRC32C both, as on AWS.

>>> c = new_checksum("crc32"); c.update(b"hello"); c.b64digest()
'NhCmhg=='
>>> multipart_etag(["5d41402abc4b2a76b9719d911017c592"])
'62109206880d38a4010a98e11243924a-1'
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from kvbox.s3.errors import S3Error

#: Prefix of the request/response headers that carry a checksum.
HEADER_PREFIX = "x-amz-checksum-"


class Algorithm(enum.StrEnum):
    """S3's ``ChecksumAlgorithm`` values (the service model's enum, in its spelling)."""

    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"
    MD5 = "MD5"
    XXHASH64 = "XXHASH64"
    XXHASH3 = "XXHASH3"
    XXHASH128 = "XXHASH128"

    @property
    def header(self) -> str:
        """``x-amz-checksum-crc32`` etc."""
        return HEADER_PREFIX + self.value.lower()

    @property
    def element(self) -> str:
        """The XML element / response field: ``ChecksumCRC32`` etc."""
        return "Checksum" + self.value

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZES[self]


class ChecksumType(enum.StrEnum):
    COMPOSITE = "COMPOSITE"
    FULL_OBJECT = "FULL_OBJECT"


_DIGEST_SIZES: dict[Algorithm, int] = {
    Algorithm.CRC32: 4,
    Algorithm.CRC32C: 4,
    Algorithm.CRC64NVME: 8,
    Algorithm.SHA1: 20,
    Algorithm.SHA256: 32,
    Algorithm.SHA512: 64,
    Algorithm.MD5: 16,
    Algorithm.XXHASH64: 8,
    Algorithm.XXHASH3: 8,
    Algorithm.XXHASH128: 16,
}

#: Which multipart checksum types each algorithm allows; the first is the default.
MULTIPART_TYPES: dict[Algorithm, tuple[ChecksumType, ...]] = {
    Algorithm.CRC32: (ChecksumType.COMPOSITE, ChecksumType.FULL_OBJECT),
    Algorithm.CRC32C: (ChecksumType.COMPOSITE, ChecksumType.FULL_OBJECT),
    Algorithm.CRC64NVME: (ChecksumType.FULL_OBJECT,),
    Algorithm.SHA1: (ChecksumType.COMPOSITE,),
    Algorithm.SHA256: (ChecksumType.COMPOSITE,),
    Algorithm.SHA512: (ChecksumType.COMPOSITE,),
    Algorithm.MD5: (ChecksumType.COMPOSITE,),
    Algorithm.XXHASH64: (ChecksumType.COMPOSITE,),
    Algorithm.XXHASH3: (ChecksumType.COMPOSITE,),
    Algorithm.XXHASH128: (ChecksumType.COMPOSITE,),
}


class Checksum(Protocol):
    """An incremental checksum: feed bytes, read the digest (any number of times)."""

    @property
    def algorithm(self) -> Algorithm: ...

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def digest(self) -> bytes: ...

    def b64digest(self) -> str: ...


class _Crc:
    """A CRC kept as its integer, plus the byte count (needed to combine CRCs)."""

    __slots__ = ("_fn", "_value", "algorithm", "length")

    def __init__(
        self, algorithm: Algorithm, fn: Callable[[bytes | bytearray | memoryview, int], int]
    ) -> None:
        self.algorithm = algorithm
        self._fn = fn
        self._value = 0
        self.length = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._fn(data, self._value)
        self.length += len(data)

    @property
    def value(self) -> int:
        return self._value

    def digest(self) -> bytes:
        return self._value.to_bytes(self.algorithm.digest_size, "big")

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _Hashlib:
    __slots__ = ("_h", "algorithm")

    def __init__(self, algorithm: Algorithm, name: str) -> None:
        self.algorithm = algorithm
        self._h = hashlib.new(name)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()

    def b64digest(self) -> str:
        return base64.b64encode(self._h.digest()).decode("ascii")


class _XXHash:
    """awscrt's XXHash finalizes once, so the digest is cached after the first read."""

    __slots__ = ("_done", "_h", "algorithm")

    def __init__(self, algorithm: Algorithm, factory: Callable[[], object]) -> None:
        self.algorithm = algorithm
        self._h = factory()
        self._done: bytes | None = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._done is not None:
            raise ValueError("checksum already finalized")
        # awscrt's XXHash takes only read-only ``bytes``, not views or bytearrays
        self._h.update(data if isinstance(data, bytes) else bytes(data))  # type: ignore[attr-defined]

    def digest(self) -> bytes:
        if self._done is None:
            self._done = bytes(self._h.finalize())  # type: ignore[attr-defined]
        return self._done

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def _zlib_crc32(data: bytes | bytearray | memoryview, prev: int) -> int:
    return zlib.crc32(data, prev) & 0xFFFFFFFF


def _crt_crc32c(data: bytes | bytearray | memoryview, prev: int) -> int:
    return int(_crt.crc32c(data, prev))


def _crt_crc64nvme(data: bytes | bytearray | memoryview, prev: int) -> int:
    return int(_crt.crc64nvme(data, prev))


_COMBINE: dict[Algorithm, Callable[[int, int, int], int]] = {
    Algorithm.CRC32: lambda a, b, n: int(_crt.combine_crc32(a, b, n)),
    Algorithm.CRC32C: lambda a, b, n: int(_crt.combine_crc32c(a, b, n)),
    Algorithm.CRC64NVME: lambda a, b, n: int(_crt.combine_crc64nvme(a, b, n)),
}


def parse_algorithm(name: str) -> Algorithm:
    """An algorithm from its name in any case (``"crc32c"``, ``"CRC32C"``).

    An unknown name is the client's error: InvalidRequest, as AWS answers an unknown
    ``x-amz-sdk-checksum-algorithm``.

    >>> parse_algorithm("crc64nvme")
    <Algorithm.CRC64NVME: 'CRC64NVME'>
    """
    try:
        return Algorithm(name.upper())
    except ValueError:
        raise S3Error(
            "InvalidRequest",
            f"Checksum algorithm provided is unsupported: {name!r}",
        ) from None


def algorithm_for_header(header: str) -> Algorithm | None:
    """The algorithm a ``x-amz-checksum-*`` header names; None for any other header.

    >>> algorithm_for_header("X-Amz-Checksum-SHA256")
    <Algorithm.SHA256: 'SHA256'>
    >>> algorithm_for_header("x-amz-checksum-type") is None
    True
    """
    h = header.lower()
    if not h.startswith(HEADER_PREFIX):
        return None
    try:
        return Algorithm(h[len(HEADER_PREFIX) :].upper())
    except ValueError:
        return None


def new_checksum(algorithm: Algorithm | str) -> Checksum:
    """A fresh incremental checksum for ``algorithm`` (an ``Algorithm`` or its name)."""
    alg = algorithm if isinstance(algorithm, Algorithm) else parse_algorithm(algorithm)
    if alg is Algorithm.CRC32:
        return _Crc(alg, _zlib_crc32)
    if alg is Algorithm.CRC32C:
        return _Crc(alg, _crt_crc32c)
    if alg is Algorithm.CRC64NVME:
        return _Crc(alg, _crt_crc64nvme)
    if alg is Algorithm.XXHASH64:
        return _XXHash(alg, _crt.XXHash.new_xxhash64)
    if alg is Algorithm.XXHASH3:
        return _XXHash(alg, _crt.XXHash.new_xxhash3_64)
    if alg is Algorithm.XXHASH128:
        return _XXHash(alg, _crt.XXHash.new_xxhash3_128)
    return _Hashlib(alg, alg.value.lower())


def checksum_for_header(header: str) -> Checksum:
    """A fresh checksum for the algorithm a ``x-amz-checksum-*`` header names."""
    alg = algorithm_for_header(header)
    if alg is None:
        raise S3Error("InvalidRequest", f"{header} is not a checksum header")
    return new_checksum(alg)


def compute(algorithm: Algorithm | str, data: bytes) -> str:
    """The base64 checksum of ``data`` in one call.

    >>> compute("sha256", b"")
    '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='
    """
    c = new_checksum(algorithm)
    c.update(data)
    return c.b64digest()


def decode_checksum(algorithm: Algorithm, value: str) -> bytes:
    """The digest bytes of a base64 checksum a client sent, checked for shape.

    A value that is not base64 of exactly the algorithm's digest size is InvalidRequest
    (AWS: "Value for x-amz-checksum-crc32 header is invalid.").
    """
    raw = _digest_bytes(algorithm, value)
    if raw is None:
        raise S3Error("InvalidRequest", f"Value for {algorithm.header} header is invalid.")
    return raw


def well_formed_checksum(algorithm: Algorithm, value: str) -> bool:
    """Whether ``value`` is base64 of exactly ``algorithm``'s digest size.

    >>> [well_formed_checksum(Algorithm.CRC32, v) for v in ("AAAAAA==", "x", "AAAAAAAA")]
    [True, False, False]
    """
    return _digest_bytes(algorithm, value) is not None


def _digest_bytes(algorithm: Algorithm, value: str) -> bytes | None:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return raw if len(raw) == algorithm.digest_size else None


def composite_checksum(algorithm: Algorithm, part_checksums: Sequence[str]) -> str:
    """The COMPOSITE checksum of a multipart object from its parts' base64 checksums.

    It is the checksum of the concatenated binary part checksums, then ``-<parts>``.

    >>> part = compute("crc32", b"hello")
    >>> composite_checksum(Algorithm.CRC32, [part])
    'FKTmaw==-1'
    """
    if not part_checksums:
        raise ValueError("a multipart object has at least one part")
    outer = new_checksum(algorithm)
    for value in part_checksums:
        outer.update(decode_checksum(algorithm, value))
    return f"{outer.b64digest()}-{len(part_checksums)}"


def full_object_checksum(algorithm: Algorithm, parts: Iterable[tuple[str, int]]) -> str:
    """The FULL_OBJECT CRC of a multipart object from its parts' (base64 CRC, size).

    Equal to the CRC of the whole object's bytes, computed without reading them again.

    >>> a, b = compute("crc64nvme", b"hello "), compute("crc64nvme", b"world")
    >>> full_object_checksum(Algorithm.CRC64NVME, [(a, 6), (b, 5)]) == compute(
    ...     "crc64nvme", b"hello world")
    True
    """
    combine = _COMBINE.get(algorithm)
    if combine is None:
        raise S3Error(
            "InvalidRequest",
            f"The FULL_OBJECT checksum type is not supported for {algorithm.value}",
        )
    crc = 0
    first = True
    for value, size in parts:
        part = int.from_bytes(decode_checksum(algorithm, value), "big")
        crc = part if first else combine(crc, part, size)
        first = False
    if first:
        raise ValueError("a multipart object has at least one part")
    return base64.b64encode(crc.to_bytes(algorithm.digest_size, "big")).decode("ascii")


def multipart_etag(part_md5s: Sequence[str | bytes]) -> str:
    """The ETag AWS gives a multipart object: md5 of the concatenated part md5s, ``-N``.

    Parts are given as their hex ETags (quotes allowed) or raw 16-byte digests. The
    result has no quotes: the XML and header layers add them.

    >>> multipart_etag(['"5d41402abc4b2a76b9719d911017c592"', "7d793037a0760186574b0282f2f435e7"])
    '065947336a2f2a95ba8899f3675c3be6-2'
    """
    if not part_md5s:
        raise ValueError("a multipart object has at least one part")
    h = hashlib.md5(usedforsecurity=False)
    for part in part_md5s:
        if isinstance(part, bytes):
            raw = part
        else:
            try:
                raw = bytes.fromhex(part.strip('"'))
            except ValueError:
                raw = b""
        if len(raw) != 16:
            raise ValueError(f"not an MD5 ETag: {part!r}")
        h.update(raw)
    return f"{h.hexdigest()}-{len(part_md5s)}"
