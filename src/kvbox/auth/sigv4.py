"""AWS Signature Version 4 for S3: canonical forms, signing, and verification.

Layer: auth. Rules: pure functions over plain types. No I/O, no logging, no clock: the
current time is always the ``now`` argument and secrets come from the ``lookup_secret``
callable, so the same code serves the S3 server, our own clients and the tests. A
secret or a signing key never appears in an exception message or a ``repr``; signatures
are compared with ``hmac.compare_digest``.

The four stages, each a public function so tests can check them one by one against
AWS's published examples (tests/vectors/sigv4_s3_examples.json):

1. ``canonical_request``: method, canonical URI, canonical query string, canonical
   headers, signed headers and the payload hash, joined by newlines.
2. ``string_to_sign``: algorithm, timestamp, credential scope, SHA-256 of (1).
3. ``signing_key``: HMAC chain over the date, region, service and ``aws4_request``.
4. ``signature``: HMAC-SHA256 of (2) under (3), lowercase hex.

S3's canonical URI rule differs from other services: the path is not normalized (no
dot-segment removal, no slash merging) and is encoded once. We decode the received raw
path segment by segment and re-encode each segment with the SigV4 rule (everything but
``A-Z a-z 0-9 - _ . ~`` becomes ``%XX``), keeping the literal ``/`` separators as they
came. A compliant client's wire path already has that form, so this is the identity for
it; a client that left ``$`` or ``:`` unencoded on the wire still matches, and an
encoded ``%2F`` inside a key stays ``%2F``.

The streaming payload forms (``STREAMING-*``) only set the payload hash here; the
chunk and trailer signatures are checked by ``kvbox.proto.awschunked`` with the
``ChunkSigner`` that a successful ``AuthResult`` hands out.

Errors are the ``AuthError`` branch of ``kvbox.errors`` (re-exported here); how each
looks on the wire (S3 code, status, the XML fields it fills) is its row in
``kvbox.errors.WIRE``. ``ContentSHA256Mismatch`` is raised by the server once the body's
hash is known.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import quote, unquote, unquote_to_bytes

from kvbox.errors import (
    AccessDenied,
    AuthError,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ContentSHA256Mismatch,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    RequestExpired,
    RequestNotYetValid,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
    UnsupportedAuthMechanism,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_AUTHORIZATION_LENGTH",
    "MAX_PRESIGNED_EXPIRES",
    "MAX_SKEW",
    "STREAMING_SIGNED",
    "STREAMING_SIGNED_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED_PAYLOAD",
    "AccessDenied",
    "AuthError",
    "AuthResult",
    "AuthorizationHeader",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "ChunkSigner",
    "ContentSHA256Mismatch",
    "Credential",
    "CredentialScope",
    "InvalidAccessKeyId",
    "InvalidAuthArgument",
    "PayloadMode",
    "PresignedParams",
    "RequestExpired",
    "RequestNotYetValid",
    "RequestTimeTooSkewed",
    "SecretLookup",
    "SignatureDoesNotMatch",
    "UnsupportedAuthMechanism",
    "authenticate",
    "canonical_headers",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "format_amz_date",
    "parse_amz_date",
    "parse_authorization",
    "parse_presigned_params",
    "parse_query_string",
    "payload_mode",
    "presign_url",
    "sign_request",
    "signature",
    "signing_key",
    "string_to_sign",
    "uri_encode",
    "verify_presigned",
    "verify_request",
]

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


# --- stage 1: canonical request -------------------------------------------------------


def uri_encode(value: str | bytes, *, keep_slash: bool = False) -> str:
    """SigV4's URI-encode: every byte but ``A-Za-z0-9-_.~`` (and ``/`` if asked) as ``%XX``."""
    return quote(value, safe="/" if keep_slash else "")


def _canonical_component(raw: str) -> str:
    """``uri_encode(unquote(raw))`` of one raw path segment, query key or query value.

    Every request goes through this a dozen times, so the common cases skip urllib:
    unreserved-only text is already canonical, and anything else is cached.
    """
    if _UNRESERVED_RE.fullmatch(raw) is not None:
        return raw
    return _reencode(raw)


@functools.lru_cache(maxsize=_REENCODE_CACHE)
def _reencode(raw: str) -> str:
    return uri_encode(unquote_to_bytes(_utf8(raw)))


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a raw (as received, percent-encoded) request path, S3 rule.

    >>> canonical_uri("/test$file.text")
    '/test%24file.text'
    >>> canonical_uri("/bucket/a%2Fb//c d")
    '/bucket/a%2Fb//c%20d'
    """
    if not raw_path:
        return "/"
    if _UNRESERVED_PATH_RE.fullmatch(raw_path) is not None:
        return raw_path
    return "/".join(_canonical_component(seg) for seg in raw_path.split("/"))


def parse_query_string(raw_query: str) -> list[tuple[str, str]]:
    """Split a raw query string into raw ``(key, value)`` pairs; nothing is decoded.

    ``?acl`` gives ``[("acl", "")]``; empty pieces (``a&&b``) are dropped.
    """
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            pairs.append((key, value))
    return pairs


def canonical_query_string(query: Iterable[tuple[str, str]]) -> str:
    """Decode each raw pair, re-encode it strictly, sort by key then value, join.

    A literal ``+`` stays a ``+`` (encoded ``%2B``): SigV4 clients encode spaces as
    ``%20``, and S3 does not read ``+`` as a space when checking signatures.
    """
    encoded = sorted(
        (_canonical_component(key), _canonical_component(value)) for key, value in query
    )
    return "&".join(f"{key}={value}" for key, value in encoded)


def _trim_all(value: str) -> str:
    # SigV4's Trimall: no leading or trailing whitespace, runs of whitespace as one space.
    # str.split() is botocore's rule too, so tabs and folded line breaks collapse alike.
    return " ".join(value.split())


def _header_values(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.strip().lower(), []).append(value)
    return values


def canonical_headers(headers: Iterable[tuple[str, str]], signed_headers: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header, sorted; repeated headers joined by ``,``.

    A signed header that is missing from the request canonicalizes with an empty value,
    so the signature simply fails to match.
    """
    return _canonical_headers(_header_values(headers), sorted(set(signed_headers)))


def _canonical_headers(values: dict[str, list[str]], names: Iterable[str]) -> str:
    """``canonical_headers`` over ``_header_values``, for sorted, distinct ``names``."""
    return "".join(
        f"{name}:{','.join(_trim_all(v) for v in values.get(name, ()))}\n" for name in names
    )


def canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """Stage 1. ``query`` and ``raw_path`` are raw (as on the wire), headers as received."""
    return _canonical_request(
        method, raw_path, query, _header_values(headers), signed_headers, payload_hash
    )


def _canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    values: dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """``canonical_request`` with the headers already grouped by ``_header_values``
    (verification groups them once for every check)."""
    names = sorted(set(signed_headers))
    return "\n".join(
        (
            method,
            canonical_uri(raw_path),
            canonical_query_string(query),
            _canonical_headers(values, names),
            ";".join(names),
            payload_hash,
        )
    )


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


# --- parsing --------------------------------------------------------------------------


# The parsers below are cached: a client sends the same credential, signed-header list
# and (within a second, or for a whole presigned URL batch) date on request after
# request, and the results are immutable. Errors are raised, never cached.


@functools.lru_cache(maxsize=_REENCODE_CACHE)
def _parse_credential(value: str, error: Callable[[str], AuthError]) -> Credential:
    parts = value.split("/")
    if len(parts) != 5 or not parts[0]:
        raise error(
            "the Credential is mal-formed; expecting "
            f'"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/{_TERMINATOR}".'
        )
    access_key, date, region, service, terminator = parts
    if not _SCOPE_DATE_RE.fullmatch(date):
        raise error(
            f'incorrect date format "{date}". '
            'This date in the credential must be in the format "yyyyMMdd".'
        )
    if not region:
        raise error("the region in the credential is empty.")
    if terminator != _TERMINATOR:
        raise error(f'incorrect terminal "{terminator}". This endpoint uses "{_TERMINATOR}".')
    return Credential(access_key, CredentialScope(date, region, service))


@functools.lru_cache(maxsize=_REENCODE_CACHE)
def _parse_signed_headers(value: str, error: Callable[[str], AuthError]) -> tuple[str, ...]:
    names = value.split(";")
    if not all(_HEADER_NAME_RE.fullmatch(name) for name in names):
        raise error("the SignedHeaders list is mal-formed.")
    return tuple(names)


def _malformed(message: str) -> AuthError:
    return AuthorizationHeaderMalformed(message)


def _query_error(message: str) -> AuthError:
    return AuthorizationQueryParametersError(message)


def parse_authorization(value: str) -> AuthorizationHeader:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

    The separators may be ``,`` or ``, ``; the three parts may come in any order, each
    exactly once. SigV2 (``AWS AK:sig``) and SigV4a are refused as unsupported.
    """
    if len(value) > MAX_AUTHORIZATION_LENGTH:
        raise AuthorizationHeaderMalformed("the header is too long.")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        if algorithm == "AWS" or algorithm.startswith("AWS4-"):
            raise UnsupportedAuthMechanism(algorithm)
        raise InvalidAuthArgument(
            "Unsupported Authorization Type",
            argument_name="Authorization",
            argument_value=algorithm,
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            raise AuthorizationHeaderMalformed(f'the component "{part.strip()}" is mal-formed.')
        fields[key] = val.strip()
    for key in ("Credential", "SignedHeaders", "Signature"):
        if key not in fields:
            raise AuthorizationHeaderMalformed(f"the {key} component is missing.")
    if len(fields) != 3:
        raise AuthorizationHeaderMalformed("it has unknown components.")
    return AuthorizationHeader(
        credential=_parse_credential(fields["Credential"], _malformed),
        signed_headers=_parse_signed_headers(fields["SignedHeaders"], _malformed),
        signature=fields["Signature"],
    )


def _unquote(raw: str) -> str:
    """``unquote``, without its call when there is nothing to decode (the usual case)."""
    return unquote(raw) if "%" in raw else raw


def parse_presigned_params(query: Iterable[tuple[str, str]]) -> PresignedParams:
    """Decode and validate the X-Amz-* parameters of a presigned URL (raw pairs in)."""
    found: dict[str, str] = {}
    for raw_key, raw_value in query:
        key = _unquote(raw_key)
        if key in _PRESIGNED_NAMES:
            if key in found:
                raise AuthorizationQueryParametersError(f"{key} must appear only once.")
            found[key] = _unquote(raw_value)
    if len(found) != len(_PRESIGNED_NAMES):  # each present at most once, so: all there
        raise AuthorizationQueryParametersError(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    algorithm = found[_Q_ALGORITHM]
    if algorithm != ALGORITHM:
        raise AuthorizationQueryParametersError(
            f'X-Amz-Algorithm only supports "{ALGORITHM}", not "{algorithm}".'
        )
    amz_date = found[_Q_DATE]
    try:
        request_time = parse_amz_date(amz_date)
    except ValueError:
        raise AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        ) from None
    raw_expires = found[_Q_EXPIRES]
    digits = raw_expires.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 12:
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number")
    expires = int(raw_expires)
    # AWS's answers: a negative lifetime is malformed, longer than a week too; zero
    # seconds parses, and the URL has expired by the time anyone uses it (verify_presigned).
    if expires < 0:
        raise AuthorizationQueryParametersError("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise AuthorizationQueryParametersError(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            f"X-Amz-Expires must be less than {MAX_PRESIGNED_EXPIRES} seconds"
        )
    return PresignedParams(
        credential=_parse_credential(found[_Q_CREDENTIAL], _query_error),
        amz_date=amz_date,
        request_time=request_time,
        expires=expires,
        signed_headers=_parse_signed_headers(found[_Q_SIGNED_HEADERS], _query_error),
        signature=found[_Q_SIGNATURE],
    )


# --- verification ---------------------------------------------------------------------


def _check_scope(
    scope: CredentialScope,
    amz_date: str,
    region: str | None,
    service: str,
    error: Callable[..., AuthError],
) -> None:
    if scope.date != amz_date[:8]:
        raise error("Invalid credential date. Date is not the same as X-Amz-Date.")
    if region is not None and scope.region != region:
        raise error(f"the region '{scope.region}' is wrong; expecting '{region}'", region=region)
    if scope.service != service:
        raise error(f"Credential should be scoped to correct service: '{service}'.")


def _check_signed(names: Iterable[str], signed: Sequence[str], require_signed_amz: bool) -> None:
    """``names``: the request's header names, stripped and lowercased."""
    if "host" not in signed:
        raise AccessDenied("Host header must be signed", headers_not_signed=("host",))
    if require_signed_amz:
        signed_set = set(signed)
        unsigned = sorted(
            {name for name in names if name.startswith("x-amz-") and name not in signed_set}
        )
        if unsigned:
            raise AccessDenied(
                "There were headers present in the request which were not signed",
                headers_not_signed=unsigned,
            )


def _lookup(lookup_secret: SecretLookup, access_key: str) -> str:
    secret = lookup_secret(access_key)
    if secret is None:
        raise InvalidAccessKeyId(access_key)
    return secret


def _request_time(values: dict[str, list[str]]) -> tuple[str, datetime]:
    """The signed timestamp: x-amz-date, else the HTTP Date header (as botocore allows)."""
    amz = values.get("x-amz-date")
    if amz:
        try:
            return amz[-1].strip(), parse_amz_date(amz[-1].strip())
        except ValueError:
            pass
    else:
        date = values.get("date")
        if date:
            try:
                moment = parsedate_to_datetime(date[-1])
                # "-0000" (botocore's formatdate) parses naive; RFC 5322 reads it as UTC.
                moment = _as_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
            except (TypeError, ValueError, IndexError):
                pass
            else:
                return format_amz_date(moment), moment
    raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")


def _verify_signature(
    *,
    access_key: str,
    provided: str,
    key: bytes,
    amz_date: str,
    scope: CredentialScope,
    canonical: str,
) -> None:
    sts = string_to_sign(amz_date, scope, canonical)
    if not _signatures_equal(signature(key, sts), provided):
        raise SignatureDoesNotMatch(
            access_key=access_key,
            signature_provided=provided,
            string_to_sign=sts,
            canonical_request=canonical,
        )


def verify_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    payload_hash: str | None,
    lookup_secret: SecretLookup,
    now: datetime,
    *,
    region: str | None = None,
    service: str = "s3",
    max_skew: timedelta = MAX_SKEW,
    require_signed_amz_headers: bool = True,
) -> AuthResult:
    """Verify a request signed with the ``Authorization`` header.

    ``path`` and ``query`` are raw (as received); ``payload_hash`` is the
    x-amz-content-sha256 value, or None to read it from ``headers``. A request without
    that header is taken to have an empty body (EMPTY_SHA256), which the server's body
    check then enforces. ``region`` None accepts any region in the credential scope.

    Checks, in order: header syntax, payload-hash syntax, date and clock skew, scope,
    signed-header rules, the access key, the signature.
    """
    values = _header_values(headers)
    auth_values = values.get("authorization")
    if not auth_values:
        raise AccessDenied("Request has no Authorization header")
    if len(auth_values) > 1:
        raise AuthorizationHeaderMalformed("more than one Authorization header.")
    auth = parse_authorization(auth_values[0])
    if payload_hash is None:
        sent = values.get("x-amz-content-sha256")
        payload_hash = sent[-1].strip() if sent else EMPTY_SHA256
    mode = payload_mode(payload_hash)
    amz_date, request_time = _request_time(values)
    server_time = _as_utc(now)
    if abs(server_time - request_time) > max_skew:
        raise RequestTimeTooSkewed(request_time, server_time, max_skew)
    scope = auth.credential.scope
    _check_scope(scope, amz_date, region, service, AuthorizationHeaderMalformed)
    _check_signed(values, auth.signed_headers, require_signed_amz_headers)
    access_key = auth.credential.access_key
    key = signing_key(_lookup(lookup_secret, access_key), scope.date, scope.region, scope.service)
    canonical = _canonical_request(method, path, query, values, auth.signed_headers, payload_hash)
    _verify_signature(
        access_key=access_key,
        provided=auth.signature,
        key=key,
        amz_date=amz_date,
        scope=scope,
        canonical=canonical,
    )
    return AuthResult(
        access_key=access_key,
        scope=scope,
        amz_date=amz_date,
        request_time=request_time,
        signed_headers=tuple(sorted(set(auth.signed_headers))),
        signature=auth.signature,
        payload_hash=payload_hash,
        payload_mode=mode,
        presigned=False,
        expires_at=None,
        signing_key=key,
    )


def verify_presigned(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    lookup_secret: SecretLookup,
    now: datetime,
    *,
    region: str | None = None,
    service: str = "s3",
    max_skew: timedelta = MAX_SKEW,
    require_signed_amz_headers: bool = True,
) -> AuthResult:
    """Verify a presigned URL (query-string authentication).

    The payload line is ``UNSIGNED-PAYLOAD`` unless the URL carries
    X-Amz-Content-Sha256 or the client signed an x-amz-content-sha256 header; streaming
    forms are refused, since a presigned request has no seed to chain chunks from.
    """
    params = parse_presigned_params(query)
    server_time = _as_utc(now)
    expires_at = params.request_time + timedelta(seconds=params.expires)
    scope = params.credential.scope
    _check_scope(scope, params.amz_date, region, service, AuthorizationQueryParametersError)
    values = _header_values(headers)
    _check_signed(values, params.signed_headers, require_signed_amz_headers)
    access_key = params.credential.access_key
    secret = _lookup(lookup_secret, access_key)
    if server_time > expires_at or params.expires == 0:
        raise RequestExpired(expires_at, server_time)
    if params.request_time - server_time > max_skew:
        raise RequestNotYetValid(params.request_time, server_time)
    payload_hash = UNSIGNED_PAYLOAD
    in_query: list[str] = []
    signed_query: list[tuple[str, str]] = []
    for k, v in query:  # one pass: the payload hash parameter, and what is signed
        name = _unquote(k)
        if name == _Q_CONTENT_SHA256:
            in_query.append(v)
        if name != _Q_SIGNATURE:
            signed_query.append((k, v))
    header_hash = values.get("x-amz-content-sha256")
    if in_query:
        payload_hash = unquote(in_query[-1])
    elif header_hash and "x-amz-content-sha256" in params.signed_headers:
        payload_hash = header_hash[-1].strip()
    mode = payload_mode(payload_hash)
    if mode.streaming:
        raise InvalidAuthArgument(
            "Streaming payloads cannot be used with presigned URLs",
            argument_name="x-amz-content-sha256",
            argument_value=payload_hash,
        )
    key = signing_key(secret, scope.date, scope.region, scope.service)
    canonical = _canonical_request(
        method, path, signed_query, values, params.signed_headers, payload_hash
    )
    _verify_signature(
        access_key=access_key,
        provided=params.signature,
        key=key,
        amz_date=params.amz_date,
        scope=scope,
        canonical=canonical,
    )
    return AuthResult(
        access_key=access_key,
        scope=scope,
        amz_date=params.amz_date,
        request_time=params.request_time,
        signed_headers=tuple(sorted(set(params.signed_headers))),
        signature=params.signature,
        payload_hash=payload_hash,
        payload_mode=mode,
        presigned=True,
        expires_at=expires_at,
        signing_key=key,
    )


def authenticate(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    lookup_secret: SecretLookup,
    now: datetime,
    *,
    region: str | None = None,
    service: str = "s3",
    max_skew: timedelta = MAX_SKEW,
    require_signed_amz_headers: bool = True,
) -> AuthResult | None:
    """Pick the mechanism a request uses and verify it; None for an anonymous request.

    The server decides what an anonymous request may do (by default: nothing, so
    AccessDenied). A request that carries both an Authorization header and presigned
    parameters is S3's InvalidArgument.
    """
    has_header = any(name.strip().lower() == "authorization" for name, _ in headers)
    raw_keys = {_unquote(key) for key, _ in query}
    has_query = not raw_keys.isdisjoint((_Q_ALGORITHM, _Q_CREDENTIAL, _Q_SIGNATURE))
    if not has_header and {"AWSAccessKeyId", "Signature"} <= raw_keys:
        raise UnsupportedAuthMechanism("AWS (query string)")
    if has_header and has_query:
        raise InvalidAuthArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            argument_name="Authorization",
        )
    if has_header:
        return verify_request(
            method,
            path,
            query,
            headers,
            None,
            lookup_secret,
            now,
            region=region,
            service=service,
            max_skew=max_skew,
            require_signed_amz_headers=require_signed_amz_headers,
        )
    if has_query:
        return verify_presigned(
            method,
            path,
            query,
            headers,
            lookup_secret,
            now,
            region=region,
            service=service,
            max_skew=max_skew,
            require_signed_amz_headers=require_signed_amz_headers,
        )
    return None


# --- signing (our own clients, tests, the console) ------------------------------------


def sign_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    payload_hash: str,
    *,
    access_key: str,
    secret_key: str,
    now: datetime,
    region: str,
    service: str = "s3",
) -> list[tuple[str, str]]:
    """Sign a request; returns the headers to add (x-amz-date, x-amz-content-sha256, Authorization).

    ``path`` and ``query`` must be exactly what will be sent (already percent-encoded,
    e.g. with ``uri_encode(key, keep_slash=True)``). Every given header is signed except
    hop-by-hop ones; ``headers`` must include ``host``.
    """
    try:
        payload_mode(payload_hash)  # refuse what the server would refuse, before sending
    except InvalidAuthArgument:
        raise ValueError(f"not an x-amz-content-sha256 value: {payload_hash!r}") from None
    amz_date = format_amz_date(now)
    added = [("x-amz-date", amz_date), ("x-amz-content-sha256", payload_hash)]
    kept = [
        (name, value)
        for name, value in headers
        if name.strip().lower() not in ("x-amz-date", "x-amz-content-sha256", "authorization")
    ]
    all_headers = [*kept, *added]
    names = sorted({n.strip().lower() for n, _ in all_headers} - _UNSIGNABLE)
    if "host" not in names:
        raise ValueError("sign_request needs a host header")
    scope = CredentialScope(amz_date[:8], region, service)
    canonical = canonical_request(method, path, query, all_headers, names, payload_hash)
    key = signing_key(secret_key, scope.date, region, service)
    sig = signature(key, string_to_sign(amz_date, scope, canonical))
    authorization = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return [*added, ("Authorization", authorization)]


def presign_url(
    method: str,
    scheme: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    *,
    access_key: str,
    secret_key: str,
    now: datetime,
    expires: int,
    region: str,
    service: str = "s3",
) -> str:
    """A presigned URL for ``method`` on ``scheme://host/path?query`` (path and query raw).

    Only ``host`` is signed, so any client (curl, a browser) can use the URL as is.
    """
    if not 1 <= expires <= MAX_PRESIGNED_EXPIRES:
        raise ValueError(f"expires must be 1..{MAX_PRESIGNED_EXPIRES} seconds")
    amz_date = format_amz_date(now)
    scope = CredentialScope(amz_date[:8], region, service)
    auth_params = [
        (_Q_ALGORITHM, ALGORITHM),
        (_Q_CREDENTIAL, uri_encode(f"{access_key}/{scope}")),
        (_Q_DATE, amz_date),
        (_Q_EXPIRES, str(expires)),
        (_Q_SIGNED_HEADERS, "host"),
    ]
    signed_query = [*query, *auth_params]
    canonical = canonical_request(
        method, path, signed_query, [("host", host)], ["host"], UNSIGNED_PAYLOAD
    )
    key = signing_key(secret_key, scope.date, region, service)
    sig = signature(key, string_to_sign(amz_date, scope, canonical))
    query_string = "&".join(f"{k}={v}" for k, v in [*signed_query, (_Q_SIGNATURE, sig)])
    return f"{scheme}://{host}{path or '/'}?{query_string}"
