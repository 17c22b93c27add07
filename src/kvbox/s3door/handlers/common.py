"""What every S3 handler shares: the attrs scheme, body readers, the handler context.

Layer: s3 door (async, over ``kvbox.core``; no aiohttp, no sockets). Rules:

* Handlers take and answer the seam types of ``kvbox.s3door.types`` (``S3Request``,
  ``S3Response``), never aiohttp's, so any HTTP layer can drive them.
* A body is read exactly once, through ``S3Request.body``. ``payload()`` wraps it with
  everything that decides whether the bytes may be kept: the signed
  x-amz-content-sha256, aws-chunked decoding (chunk signatures, trailers), Content-MD5
  and the flexible checksums. Each of these can only be judged at the end of the body,
  so ``payload()`` raises *after* the last byte and *before* the iterator finishes:
  ``Store.put_stream`` commits only when its source is exhausted, so a body that fails
  any check is never committed (its chunks become garbage the store collects).

How S3 object metadata is kept in ``ObjectVersion.attrs`` (string -> string)::

    meta:<name>          x-amz-meta-<name> (name lowercased, as S3 returns it)
    h:<header>           content-encoding, content-disposition, content-language,
                         cache-control, expires (stored as sent)
    tag:<key>            one object tag (value as given)
    checksum:<ALG>       the verified base64 flexible checksum, ALG as in
                         ``checksums.Algorithm`` (CRC32, CRC32C, CRC64NVME, SHA1, SHA256);
                         a multipart object's is derived from its parts' (``-N`` when
                         COMPOSITE)
    checksum-type        COMPOSITE or FULL_OBJECT for a multipart object's checksums
    checksum-algorithm   a multipart upload's declared algorithm (CreateMultipartUpload's
                         x-amz-checksum-algorithm; the upload's attrs only)
    parts                a multipart object's part sizes, run-length encoded
    part-sums:<ALG>      a multipart object's part checksums, comma-separated in part
                         order (GetObjectAttributes' ObjectParts)

    acl                  the object's ACL (``policy.acl.Acl.to_text``: a canned name or
                         JSON grants; absent: private to its owner)
    owner                the object's owner when it is not the bucket owner (a writer
                         who kept it, Object Ownership permitting)
    initiator            a multipart upload's initiator (uploads only)
    lock-mode, lock-until, lock-hold
                         the version's object lock (``kvbox.core.lock``: only the Store
                         changes them, whatever attrs a handler passes)

Content-Type is ``ObjectVersion.content_type``. The prefixes keep the families apart,
so a user metadata name can never collide with a header or a tag.

Bucket settings are kept in ``Bucket.attrs`` under ``POLICY`` (the policy JSON as sent),
``ACL`` (``Acl.to_text``; absent: private), ``OWNERSHIP`` (the Object Ownership setting;
absent: a bucket from before it existed, ObjectWriter), ``PAB`` (public access block
XML), ``CORS`` and ``WEBSITE`` (the configuration XML as sent), and the core's own
``object-lock`` (``kvbox.core.lock.CONFIG_ATTR``) and ``lifecycle``
(``kvbox.core.lifecycle.rules.ATTR``), both JSON the core reads.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from kvbox.auth.sigv4 import AuthResult, ContentSHA256Mismatch, PayloadMode
from kvbox.core.store import Store, update_holding_gil
from kvbox.policy.acl import ObjectOwnership
from kvbox.proto.awschunked import (
    AwsChunkedDecoder,
    Data,
    Trailer,
    parse_trailer_header,
)
from kvbox.s3.checksums import (
    Algorithm,
    Checksum,
    algorithm_for_header,
    decode_checksum,
    new_checksum,
    well_formed_checksum,
)
from kvbox.s3.errors import S3Error
from kvbox.s3door.types import Headers, S3Request, S3Response

META = "meta:"
HEADER = "h:"
TAG = "tag:"
CHECKSUM = "checksum:"
#: COMPOSITE or FULL_OBJECT: how the object's ``checksum:*`` values were computed
#: (a multipart upload's; a single PUT's checksums are always FULL_OBJECT).
CHECKSUM_TYPE = "checksum-type"
#: The algorithm a multipart upload declared (its parts must use it).
CHECKSUM_ALGORITHM = "checksum-algorithm"
#: A multipart object's part checksums of one algorithm: ``part-sums:CRC32`` -> "v1,v2".
PART_SUMS = "part-sums:"
#: An object's ACL in ``ObjectVersion.attrs`` (``kvbox.policy.acl.Acl.to_text``).
OBJECT_ACL = "acl"
#: An object's (or upload's) owner, when it is not the bucket owner.
OWNER = "owner"
#: A multipart upload's initiator.
INITIATOR = "initiator"
#: A multipart object's part sizes (``object.encode_part_sizes``), for partNumber reads.
PARTS = "parts"

# Bucket settings in ``Bucket.attrs``.
POLICY = "policy"
ACL = "acl"
PAB = "pab"
OWNERSHIP = "ownership"
CORS = "cors"
WEBSITE = "website"
#: The bucket's tags, as the Tagging XML PutBucketTagging stored.
BUCKET_TAGGING = "tagging"

#: Response headers stored verbatim from the PUT (and their response-* overrides).
STORED_HEADERS = (
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
)
#: S3's limit on user metadata: 2 KB for all x-amz-meta-* names and values together.
MAX_USER_METADATA = 2048
#: Bodies read whole (XML requests): the biggest XML body S3 takes, a DeleteObjects of
#: 1,000 long keys, stays under this.
MAX_SMALL_BODY = 4 * 1024 * 1024
#: The flexible checksums kvbox verifies and stores (what AWS SDKs send).
SUPPORTED_CHECKSUMS = frozenset(
    {Algorithm.CRC32, Algorithm.CRC32C, Algorithm.CRC64NVME, Algorithm.SHA1, Algorithm.SHA256}
)
#: Pieces of a streamed body larger than this are hashed in a worker thread, so a single
#: large read never holds the loop for more than about a millisecond.
_HASH_INLINE_MAX = 256 * 1024


def xml_response(body: bytes, status: int = 200) -> S3Response:
    return S3Response(status, {"Content-Type": "application/xml"}, body)


def http_date(ns: int) -> str:
    """RFC 7231 date of a core ``mtime_ns`` (whole seconds, GMT)."""
    return formatdate(ns / 1e9, usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    """An HTTP date header, or None when unparsable (S3 then ignores the condition)."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- attrs ---------------------------------------------------------------------------


def user_metadata(headers: Headers) -> dict[str, str]:
    """``x-amz-meta-*`` headers as attrs; MetadataTooLarge past S3's 2 KB."""
    out: dict[str, str] = {}
    total = 0
    for name, value in headers.items():
        low = name.lower()
        if low.startswith("x-amz-meta-"):
            short = low[len("x-amz-meta-") :]
            total += len(short.encode()) + len(value.encode())
            out[META + short] = value
    if total > MAX_USER_METADATA:
        raise S3Error("MetadataTooLarge", extra={"MaxSizeAllowed": str(MAX_USER_METADATA)})
    return out


def stored_headers(headers: Headers) -> dict[str, str]:
    """Content-Encoding and friends, minus the ``aws-chunked`` transfer coding.

    ``x-amz-website-redirect-location`` must be a path or an http(s) URL, as on AWS: the
    website endpoint answers it as a 301 Location, so ``javascript:`` and the like are
    refused (InvalidRedirectLocation) before they are stored.
    """
    out: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "x-amz-website-redirect-location" and not value.startswith(
            ("/", "http://", "https://")
        ):
            raise S3Error(
                "InvalidRedirectLocation",
                "The website redirect location must have a prefix of 'http://' or "
                "'https://' or '/'.",
            )
        if name == "content-encoding":
            codings = [c.strip() for c in value.split(",") if c.strip()]
            value = ", ".join(c for c in codings if c.lower() != "aws-chunked")
            if not value:
                continue
        out[HEADER + name] = value
    return out


def tags_of(attrs: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted((k[len(TAG) :], v) for k, v in attrs.items() if k.startswith(TAG))


def without(attrs: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if not k.startswith(prefix)}


def metadata_headers(attrs: Mapping[str, str]) -> dict[str, str]:
    """The response headers an object's attrs give (metadata, stored headers, tag count)."""
    out: dict[str, str] = {}
    tags = 0
    for k, v in attrs.items():
        if k.startswith(META):
            out["x-amz-meta-" + k[len(META) :]] = v
        elif k.startswith(HEADER):
            out[k[len(HEADER) :].title()] = v
        elif k.startswith(TAG):
            tags += 1
    if tags:
        out["x-amz-tagging-count"] = str(tags)
    return out


def checksum_headers(attrs: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in attrs.items():
        if k.startswith(CHECKSUM):
            out[Algorithm(k[len(CHECKSUM) :]).header] = v
    if out:
        out["x-amz-checksum-type"] = attrs.get(CHECKSUM_TYPE, "FULL_OBJECT")
    return out


# --- bodies --------------------------------------------------------------------------


async def _hash(h: Checksum | hashlib._Hash, data: bytes) -> None:
    if len(data) > _HASH_INLINE_MAX:
        await asyncio.to_thread(h.update, data)
    else:
        update_holding_gil(h, data)  # a small body: no GIL hand-off to the writer


@dataclass(slots=True)
class PayloadChecks:
    """What ``payload()`` verified, for the handler to store (filled in at the end)."""

    checksums: dict[Algorithm, str] = field(default_factory=dict)
    size: int = 0
    #: The algorithm this body must carry a checksum of (a header or a trailer): a
    #: multipart upload's declared algorithm, for its parts, as AWS demands.
    algorithm: Algorithm | None = None
    #: False where x-amz-checksum-* headers describe something else than the body
    #: (CompleteMultipartUpload: the whole object's checksum, checked by its handler).
    header_checksums: bool = True


def _expected_checksums(
    req: S3Request, trailers: tuple[str, ...], headers: bool = True
) -> tuple[dict[Algorithm, str | None], Algorithm | None]:
    """Checksums to compute: from x-amz-checksum-* headers (value known; unless
    ``headers`` is false), declared trailers (value comes at the end), or
    x-amz-sdk-checksum-algorithm (compute only)."""
    wanted: dict[Algorithm, str | None] = {}
    for name, value in req.headers.items() if headers else ():
        alg = algorithm_for_header(name)
        if alg is not None:
            _supported(alg)
            decode_checksum(alg, value.strip())  # InvalidRequest unless well-formed
            wanted[alg] = value.strip()
    trailer_alg: Algorithm | None = None
    for name in trailers:
        alg = algorithm_for_header(name)
        if alg is None:
            raise S3Error("InvalidRequest", f"Unsupported trailer {name}")
        _supported(alg)
        trailer_alg = alg
        wanted.setdefault(alg, None)
    sdk = req.header("x-amz-sdk-checksum-algorithm")
    if sdk:
        try:
            alg = Algorithm(sdk.strip().upper())
        except ValueError:
            raise S3Error("InvalidRequest", "Checksum algorithm provided is unsupported.") from None
        _supported(alg)
        wanted.setdefault(alg, None)
    if len([v for v in wanted.values() if v is not None]) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header")
    return wanted, trailer_alg


def _supported(alg: Algorithm) -> None:
    if alg not in SUPPORTED_CHECKSUMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {alg.value} is not supported")


def _content_md5(req: S3Request) -> bytes | None:
    value = req.header("content-md5")
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


def decoded_length(req: S3Request) -> int | None:
    value = req.header("x-amz-decoded-content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise S3Error("InvalidArgument", "x-amz-decoded-content-length is not a number")
    return int(value)


async def payload(req: S3Request, checks: PayloadChecks) -> AsyncIterator[bytes]:
    """The request body, decoded and verified; raises at the end if any check fails.

    See the module docstring: every failure is raised before the iterator ends, so a
    consumer that commits only on exhaustion never keeps a bad body.
    """
    auth = req.auth
    mode = auth.payload_mode if auth is not None else PayloadMode.UNSIGNED
    trailer_header = req.header("x-amz-trailer")
    trailers = parse_trailer_header(trailer_header) if trailer_header else ()
    wanted, trailer_alg = _expected_checksums(req, trailers, checks.header_checksums)
    if checks.algorithm is not None and checks.algorithm not in wanted:
        other = next(iter(wanted), None)
        raise S3Error(
            "InvalidRequest",
            "Checksum Type mismatch occurred, expected checksum Type: "
            f"{checks.algorithm.value.lower()}, actual checksum Type: "
            f"{other.value.lower() if other is not None else 'null'}",
        )
    sums = {alg: new_checksum(alg) for alg in wanted}
    md5_expected = _content_md5(req)
    md5 = hashlib.md5(usedforsecurity=False) if md5_expected is not None else None
    sha = None
    if auth is not None and auth.expected_sha256 is not None:
        sha = hashlib.sha256()
    got_trailers: dict[str, str] = {}

    async def consume(data: bytes) -> None:
        checks.size += len(data)
        for c in sums.values():
            await _hash(c, data)
        if md5 is not None:
            await _hash(md5, data)

    if mode.streaming:
        assert isinstance(auth, AuthResult)  # SigV2 never signs a streaming body
        decoder = AwsChunkedDecoder.for_request(
            auth, decoded_length=decoded_length(req), declared_trailers=trailers or None
        )
        async for raw in req.body:
            for ev in decoder.feed(raw):
                if isinstance(ev, Data):
                    await consume(ev.data)
                    yield ev.data
                elif isinstance(ev, Trailer):
                    got_trailers[ev.name] = ev.value
        for ev in decoder.finish():
            if isinstance(ev, Data):  # pragma: no cover - finish() emits no data today
                await consume(ev.data)
                yield ev.data
            elif isinstance(ev, Trailer):
                got_trailers[ev.name] = ev.value
    else:
        async for raw in req.body:
            if sha is not None:
                await _hash(sha, raw)
            await consume(raw)
            yield raw
        if sha is not None and isinstance(auth, AuthResult):
            computed = sha.hexdigest()
            if computed != auth.expected_sha256:
                raise ContentSHA256Mismatch(auth.payload_hash, computed)

    if md5 is not None and md5.digest() != md5_expected:
        raise S3Error("BadDigest")
    for alg, c in sums.items():
        expected = wanted[alg]
        if alg is trailer_alg:
            expected = got_trailers.get(alg.header)
            if expected is None:
                raise S3Error("InvalidRequest", f"Missing trailer {alg.header}")
            if not well_formed_checksum(alg, expected):  # AWS words the trailer case so
                raise S3Error(
                    "InvalidRequest", f"Value for {alg.header} trailing header is invalid."
                )
        actual = c.b64digest()
        if expected is not None and expected != actual:
            raise S3Error(
                "BadDigest", f"The {alg.value} you specified did not match the calculated checksum."
            )
        checks.checksums[alg] = actual


def has_integrity_check(req: S3Request) -> bool:
    """Whether the body comes with ``Content-MD5`` or a flexible checksum (a header, or
    a trailer it declares): what AWS insists on before it locks bytes away. ``payload``
    verifies whichever is sent."""
    if req.header("content-md5") is not None:
        return True
    if any(algorithm_for_header(name) is not None for name in req.headers):
        return True
    trailer = req.header("x-amz-trailer")
    return trailer is not None and any(
        algorithm_for_header(t) is not None for t in parse_trailer_header(trailer)
    )


def require_integrity_check(req: S3Request, operation: str | None = None) -> None:
    """AWS's InvalidRequest for a body without ``Content-MD5`` or a checksum. With
    ``operation`` (PutObject, UploadPart): the object-lock wording, as AWS says it for
    uploads that carry a retention or legal hold; else its "missing required header"
    for configuration bodies that always need one (object lock, lifecycle)."""
    if has_integrity_check(req):
        return
    if operation is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5")
    raise S3Error(
        "InvalidRequest",
        f"Content-MD5 OR x-amz-checksum- HTTP header is required for {operation} requests "
        "with Object Lock parameters",
    )


async def checksummed(
    source: AsyncIterator[bytes], algorithms: Iterable[Algorithm], out: dict[Algorithm, str]
) -> AsyncIterator[bytes]:
    """``source`` passed through, its checksums written to ``out`` once it is exhausted
    (a copy computes the checksums its request asks for on the bytes it copies)."""
    sums = {alg: new_checksum(alg) for alg in algorithms}
    async for piece in source:
        for c in sums.values():
            await _hash(c, piece)
        yield piece
    out.update((alg, c.b64digest()) for alg, c in sums.items())


async def read_small(
    req: S3Request, limit: int = MAX_SMALL_BODY, checks: PayloadChecks | None = None
) -> bytes:
    """A whole (XML) body, verified like any payload, refused past ``limit``."""
    buf = bytearray()
    async for piece in payload(req, checks or PayloadChecks()):
        buf += piece
        if len(buf) > limit:
            raise S3Error("MaxMessageLengthExceeded")
    return bytes(buf)


async def drain(req: S3Request) -> None:
    """Verify a body the operation ignores (a signed hash still has to match)."""
    async for _ in payload(req, PayloadChecks()):
        pass


@dataclass(frozen=True, slots=True)
class Context:
    """What handlers need besides the request: the store and a few server facts."""

    store: Store
    #: The GW-KV bucket: addressable over S3, never deletable (GW-KV serves from it).
    kv_bucket: str
    #: The region kvbox answers as (GetBucketLocation, x-amz-bucket-region).
    region: str = "us-east-1"
    #: The Object Ownership a bucket gets when CreateBucket names none: ACLs disabled,
    #: as on AWS since April 2023 (docs/s3-compat.md says why kvbox follows).
    default_ownership: ObjectOwnership = ObjectOwnership.BUCKET_OWNER_ENFORCED
    #: The whole access check of a request, ``(req, ep)``, for a handler that learns
    #: what to check only from the body (POST uploads); set by ``S3Frontend``
    #: (``AccessControl.check``), None: allow all.
    authorize: Callable[[S3Request, Any], Awaitable[None]] | None = None
    #: (principal, secret) of an access key, None if unknown or disabled: how a POST
    #: form's signature is checked; set by ``S3Frontend``.
    key_secret: Callable[[str], Awaitable[tuple[str, str] | None]] | None = None
    #: The clock (POST policy expirations); ``S3Frontend`` passes its own.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: The per-key access check of DeleteObjects, ``(req, ep, key, action)``; set by
    #: ``S3Frontend`` (``kvbox.s3door.access.AccessControl.check_key``), None: allow all.
    check_key: Callable[[S3Request, Any, str, str], Awaitable[None]] | None = None
    #: "May the requester do this too?" for what only the handler knows to ask:
    #: ``(req, ep, action, key, version_id, facts)`` (``AccessControl.allows``); None:
    #: allow all.
    allows: Callable[..., Awaitable[bool]] | None = None
