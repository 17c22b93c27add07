"""Constants, the small data types and stages 2-4 (string to sign, signing key,
signature), with the dates they use.

Layer: auth (pure). The rules are ``kvbox.auth.sigv4``'s docstring.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final

from kvbox.errors import (
    InvalidAuthArgument,
)

# --- constants ------------------------------------------------------------------------

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_CHUNK_ALGORITHM: Final = "AWS4-HMAC-SHA256-PAYLOAD"
_TRAILER_ALGORITHM: Final = "AWS4-HMAC-SHA256-TRAILER"
_TERMINATOR: Final = "aws4_request"

UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER: Final = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#: SHA-256 of the empty string: the payload hash of a bodiless request.
EMPTY_SHA256: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#: S3 refuses header-signed requests whose timestamp is further than this from its clock
#: (AWS's documented 15 minutes; the error is RequestTimeTooSkewed).
MAX_SKEW: Final = timedelta(minutes=15)
#: A presigned URL lives at most seven days: the signing key is derived from the date,
#: and AWS caps X-Amz-Expires at 604800 seconds.
MAX_PRESIGNED_EXPIRES: Final = 604_800
#: Longest Authorization header we parse. A request with many signed x-amz-meta-*
#: headers has a long SignedHeaders list, but S3 caps all request headers at 8 KiB;
#: twice that leaves room and keeps the split cheap on hostile input.
MAX_AUTHORIZATION_LENGTH: Final = 16_384

#: Headers our signer never signs: hop-by-hop headers a proxy may rewrite, and the ones
#: botocore also leaves out (its SIGNED_HEADERS_BLACKLIST), so our clients and boto3
#: produce the same signatures.
_UNSIGNABLE: Final = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

_AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE: Final = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE_RE: Final = re.compile(r"\d{8}")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: Text SigV4's URI-encode leaves as it is (and that decoding leaves as it is): such a
#: path or query component is its own canonical form, with no decode/encode round trip.
_UNRESERVED_RE: Final = re.compile(r"[A-Za-z0-9\-._~]*")
_UNRESERVED_PATH_RE: Final = re.compile(r"[A-Za-z0-9\-._~/]*")
#: Distinct encoded components remembered by ``_reencode``: what one client's presigned
#: URLs repeat (credential, date, bucket) fits many times over.
_REENCODE_CACHE: Final = 1024

# Presigned-URL query parameter names (case-sensitive, as AWS documents them).
_Q_ALGORITHM: Final = "X-Amz-Algorithm"
_Q_CREDENTIAL: Final = "X-Amz-Credential"
_Q_DATE: Final = "X-Amz-Date"
_Q_EXPIRES: Final = "X-Amz-Expires"
_Q_SIGNED_HEADERS: Final = "X-Amz-SignedHeaders"
_Q_SIGNATURE: Final = "X-Amz-Signature"
_Q_CONTENT_SHA256: Final = "X-Amz-Content-Sha256"
_PRESIGNED_REQUIRED: Final = (
    _Q_ALGORITHM,
    _Q_CREDENTIAL,
    _Q_DATE,
    _Q_EXPIRES,
    _Q_SIGNED_HEADERS,
    _Q_SIGNATURE,
)
_PRESIGNED_NAMES: Final = frozenset(_PRESIGNED_REQUIRED)

#: Looks up the secret of an access key; None for an unknown (or disabled) key.
SecretLookup = Callable[[str], str | None]


# --- small data types -----------------------------------------------------------------


class PayloadMode(enum.Enum):
    """How the body is protected, from the x-amz-content-sha256 value."""

    SHA256 = "sha256"  # a hex digest: the server hashes the body and compares
    UNSIGNED = "unsigned"  # UNSIGNED-PAYLOAD: the body is not covered
    STREAMING_SIGNED = "streaming-signed"  # aws-chunked, every chunk signed
    STREAMING_SIGNED_TRAILER = "streaming-signed-trailer"  # ... plus signed trailers
    STREAMING_UNSIGNED_TRAILER = "streaming-unsigned-trailer"  # aws-chunked, checksum trailer

    @property
    def streaming(self) -> bool:
        """True for the aws-chunked forms, whose body kvbox.proto.awschunked decodes."""
        return self in _STREAMING_MODES


_STREAMING_MODES: Final = frozenset(
    {
        PayloadMode.STREAMING_SIGNED,
        PayloadMode.STREAMING_SIGNED_TRAILER,
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
    }
)
_PAYLOAD_MODES: Final = {
    UNSIGNED_PAYLOAD: PayloadMode.UNSIGNED,
    STREAMING_SIGNED: PayloadMode.STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER: PayloadMode.STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER: PayloadMode.STREAMING_UNSIGNED_TRAILER,
}


def payload_mode(value: str) -> PayloadMode:
    """Classify an x-amz-content-sha256 value; anything unknown is S3's InvalidArgument."""
    mode = _PAYLOAD_MODES.get(value)
    if mode is not None:
        return mode
    if _HEX64_RE.fullmatch(value):
        return PayloadMode.SHA256
    raise InvalidAuthArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER "
        "or a valid sha256 value.",
        argument_name="x-amz-content-sha256",
        argument_value=value,
    )


@dataclass(frozen=True, slots=True)
class CredentialScope:
    """``date/region/service/aws4_request``: what a signing key is valid for."""

    date: str  # YYYYMMDD
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{_TERMINATOR}"


@dataclass(frozen=True, slots=True)
class Credential:
    access_key: str
    scope: CredentialScope


@dataclass(frozen=True, slots=True)
class AuthorizationHeader:
    """A parsed ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True, slots=True)
class PresignedParams:
    """The X-Amz-* query parameters of a presigned URL, decoded."""

    credential: Credential
    amz_date: str
    request_time: datetime
    expires: int
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True, slots=True)
class ChunkSigner:
    """Computes the chained signatures of aws-chunked bodies (chunks and trailers).

    Chunk n is signed over the signature of chunk n-1 (the seed signature of the request
    for chunk 1), so reordering, dropping or splicing chunks breaks the chain.
    """

    signing_key: bytes = field(repr=False)
    amz_date: str
    scope: str

    def chunk_signature(self, previous_signature: str, chunk_sha256: str) -> str:
        """Signature of one chunk whose data hashes (hex) to ``chunk_sha256``."""
        sts = (
            f"{_CHUNK_ALGORITHM}\n{self.amz_date}\n{self.scope}\n"
            f"{previous_signature}\n{EMPTY_SHA256}\n{chunk_sha256}"
        )
        return signature(self.signing_key, sts)

    def trailer_signature(
        self, previous_signature: str, trailers: Iterable[tuple[str, str]]
    ) -> str:
        """Signature of the trailer block: each trailer as ``name:value\\n``, in wire order."""
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        digest = hashlib.sha256(_utf8(canonical)).hexdigest()
        sts = f"{_TRAILER_ALGORITHM}\n{self.amz_date}\n{self.scope}\n{previous_signature}\n{digest}"
        return signature(self.signing_key, sts)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who signed a verified request, and what the body layer needs to finish the job."""

    access_key: str
    scope: CredentialScope
    amz_date: str
    request_time: datetime
    signed_headers: tuple[str, ...]
    #: The request's signature; for aws-chunked bodies the seed of the chunk chain.
    signature: str
    #: The value that stood in the canonical request's payload line.
    payload_hash: str
    payload_mode: PayloadMode
    presigned: bool
    #: When a presigned URL stops working; None for header-signed requests.
    expires_at: datetime | None
    signing_key: bytes = field(repr=False)
    #: What ``s3:signatureversion`` holds for these requests.
    signature_version: ClassVar[str] = ALGORITHM

    @property
    def expected_sha256(self) -> str | None:
        """The hex SHA-256 the body must have, when the client signed one."""
        return self.payload_hash if self.payload_mode is PayloadMode.SHA256 else None

    def chunk_signer(self) -> ChunkSigner:
        return ChunkSigner(self.signing_key, self.amz_date, str(self.scope))


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of text from the wire, which may carry undecodable bytes.

    An HTTP server hands over undecodable bytes as surrogate escapes; turning them back
    into the original bytes is what the client hashed. Lone surrogates that no decoder
    produces (only a hostile caller could pass them) become ``?``: the signature then
    fails to match instead of the request crashing.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


# --- stages 2-4: string to sign, key, signature ---------------------------------------


def string_to_sign(amz_date: str, scope: CredentialScope | str, canonical: str) -> str:
    """Stage 2: what the signing key signs."""
    digest = hashlib.sha256(_utf8(canonical)).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _hmac(key: bytes, message: str) -> bytes:
    # hmac.digest is the one-shot C path: no HMAC object, a third of hmac.new's cost.
    return hmac.digest(key, _utf8(message), "sha256")


@functools.lru_cache(maxsize=1024)
def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """Stage 3. Cached: a key is valid for a whole day and costs four HMACs to derive.

    The cache holds secrets in process memory only (where ``lookup_secret`` already put
    them); nothing here writes them anywhere.
    """
    k_date = _hmac(_utf8(f"AWS4{secret_key}"), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, _TERMINATOR)


def signature(key: bytes, sts: str) -> str:
    """Stage 4: lowercase hex HMAC-SHA256."""
    return _hmac(key, sts).hex()


def _signatures_equal(expected: str, provided: str) -> bool:
    # compare_digest on str refuses non-ASCII; a hostile signature may contain anything.
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("ascii", errors="replace"))


# --- dates ----------------------------------------------------------------------------


def format_amz_date(moment: datetime) -> str:
    """``20130524T000000Z`` for an aware datetime."""
    return _as_utc(moment).strftime(_AMZ_DATE_FORMAT)


@functools.lru_cache(maxsize=256)
def parse_amz_date(value: str) -> datetime:
    """Parse ``YYYYMMDDTHHMMSSZ``; ValueError if it is not exactly that."""
    if not _AMZ_DATE_RE.fullmatch(value):
        raise ValueError(f"not an ISO 8601 basic timestamp: {value!r}")
    # By hand rather than strptime (a tenth of the cost, on every request); datetime()
    # refuses an impossible month, day or time with ValueError all the same.
    return datetime(
        int(value[0:4]),
        int(value[4:6]),
        int(value[6:8]),
        int(value[9:11]),
        int(value[11:13]),
        int(value[13:15]),
        tzinfo=UTC,
    )


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return moment.astimezone(UTC)
