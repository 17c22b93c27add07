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

The package follows the stages: ``base`` (constants, data types, stages 2-4, dates),
``canonical`` (stage 1), ``parse`` (the Authorization header, presigned parameters),
``verify`` (``verify_request``, ``verify_presigned``, ``authenticate``) and ``sign`` (for
our clients). Everything public is re-exported here.
"""

from __future__ import annotations

from kvbox.auth.sigv4.base import (
    ALGORITHM,
    EMPTY_SHA256,
    MAX_AUTHORIZATION_LENGTH,
    MAX_PRESIGNED_EXPIRES,
    MAX_SKEW,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    AuthorizationHeader,
    AuthResult,
    ChunkSigner,
    Credential,
    CredentialScope,
    PayloadMode,
    PresignedParams,
    SecretLookup,
    format_amz_date,
    parse_amz_date,
    payload_mode,
    signature,
    signing_key,
    string_to_sign,
)
from kvbox.auth.sigv4.canonical import (
    canonical_headers,
    canonical_query_string,
    canonical_request,
    canonical_uri,
    parse_query_string,
    uri_encode,
)
from kvbox.auth.sigv4.parse import (
    parse_authorization,
    parse_presigned_params,
)
from kvbox.auth.sigv4.sign import (
    presign_url,
    sign_request,
)
from kvbox.auth.sigv4.verify import (
    authenticate,
    verify_presigned,
    verify_request,
)
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
