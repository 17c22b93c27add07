"""AWS Signature Version 2 for S3 (legacy): string to sign, signature, verification.

Layer: auth. Rules: pure functions over plain types, like ``kvbox.auth.sigv4``: no I/O,
no clock (``now`` is an argument), secrets come from ``lookup_secret``; signatures are
compared in constant time and never logged.

Why kvbox speaks it at all: boto3's ``generate_presigned_url`` and ``aws s3 presign``
(AWS CLI v1) still sign with SigV2 unless told otherwise, and AWS S3 still accepts it,
so a first-time user's presigned URL must work. It is legacy: the body is not signed
(only Content-MD5 can protect it), a signature covers no region, and a presigned URL
may live for any time. ``kvbox serve --sigv2 off`` refuses it.

The three forms, from AWS's "Signing and authenticating REST requests":

* ``Authorization: AWS <access key>:<base64 HMAC-SHA1>``;
* a presigned URL with ``AWSAccessKeyId``, ``Expires`` (seconds since the epoch) and
  ``Signature`` in the query;
* a browser POST form, whose signature is the HMAC of the base64 policy document
  (``form_signature``; the form itself is parsed elsewhere).

The string to sign::

    VERB \\n Content-MD5 \\n Content-Type \\n Date \\n CanonicalizedAmzHeaders CanonicalizedResource

* **Date** is the ``Date`` header, or the empty string when ``x-amz-date`` is present
  (which then appears among the amz headers, as AWS documents). botocore's signer
  (``HmacV1Auth``) always puts its ``Date`` there, even beside an ``x-amz-date``; a
  request whose AWS-form signature fails is therefore tried once more with the ``Date``
  value in that slot. For a presigned URL the slot holds ``Expires``.
* **CanonicalizedAmzHeaders**: every ``x-amz-*`` header, name lower-cased, sorted, the
  values of a repeated name joined by ``,``, each value trimmed and unfolded, one
  ``name:value\\n`` each. In a presigned URL, ``x-amz-*`` query parameters count as
  headers too (botocore moves them there), and so do ``content-type`` and
  ``content-md5`` for their positional lines when the header itself is absent.
* **CanonicalizedResource**: ``/bucket`` for a virtual-hosted request, then the path
  exactly as it was sent, then the signed sub-resources: ``SUBRESOURCES`` present in
  the query, sorted by name, a value URL-decoded and kept with ``=`` when the query had
  one. Which sub-resources are signed is a convention between client and server, so
  ``SUBRESOURCES`` is botocore's list (a superset of AWS's documented list and of
  s3cmd's); a client that signs another one does not match.

Errors are the ones SigV4 raises (``kvbox.auth.sigv4``), with AWS's SigV2 messages, and
``SigV2DoesNotMatch`` (defined with the rest of the tree in ``kvbox.errors``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import ClassVar, Final
from urllib.parse import unquote

from kvbox.auth.sigv4 import (
    MAX_AUTHORIZATION_LENGTH,
    MAX_SKEW,
    AccessDenied,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    PayloadMode,
    RequestExpired,
    RequestTimeTooSkewed,
    SecretLookup,
    parse_amz_date,
)
from kvbox.errors import SigV2DoesNotMatch

__all__ = [
    "ALGORITHM",
    "SUBRESOURCES",
    "SigV2DoesNotMatch",
    "SigV2Result",
    "authorization_header",
    "canonical_amz_headers",
    "canonical_resource",
    "form_signature",
    "is_presigned",
    "is_sigv2_header",
    "parse_authorization",
    "signature",
    "string_to_sign",
    "verify_form",
    "verify_presigned",
    "verify_request",
]

#: What ``s3:signatureversion`` holds for a SigV2 request, and the Authorization scheme.
ALGORITHM: Final = "AWS"

#: Query parameters that belong to the canonical resource (botocore's ``QSAOfInterest``;
#: AWS's documented list and s3cmd's are subsets).
SUBRESOURCES: Final = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)

# Presigned-URL parameter names (case-sensitive, as AWS documents them).
_Q_ACCESS_KEY: Final = "AWSAccessKeyId"
_Q_SIGNATURE: Final = "Signature"
_Q_EXPIRES: Final = "Expires"
_QUERY_AUTH: Final = (_Q_ACCESS_KEY, _Q_SIGNATURE, _Q_EXPIRES)
#: Headers a presigned URL may carry in its query instead (botocore's HmacV1QueryAuth).
_POSITIONAL: Final = ("content-md5", "content-type")
#: Longest ``Expires`` we read: 12 digits is past the year 33000.
_MAX_EXPIRES_DIGITS: Final = 12
#: Folding whitespace inside a header value (RFC 7230 obs-fold), unfolded to one space.
_FOLD_RE: Final = re.compile(r"\s*[\r\n]+\s*")


@dataclass(frozen=True, slots=True)
class SigV2Result:
    """Who signed a verified SigV2 request.

    It answers the few questions the S3 layer asks of any ``AuthResult``: SigV2 never
    signs the body, so the payload is ``UNSIGNED`` (Content-MD5 still protects it).
    """

    access_key: str
    signature: str
    presigned: bool = False
    #: The request's Date / x-amz-date (header form); None for a URL or a form.
    request_time: datetime | None = None
    #: When a presigned URL stops working; None for header-signed requests.
    expires_at: datetime | None = None
    #: ``(name, value)`` of the x-amz-* and content-type/-md5 query parameters a
    #: presigned URL signed in place of headers the request itself does not carry
    #: (botocore moves them there); the S3 layer applies them as request headers.
    query_headers: tuple[tuple[str, str], ...] = ()

    payload_mode: ClassVar[PayloadMode] = PayloadMode.UNSIGNED
    expected_sha256: ClassVar[None] = None
    signature_version: ClassVar[str] = ALGORITHM


def _utf8(text: str) -> bytes:
    # Undecodable bytes from the wire arrive as surrogate escapes: give them back.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


# --- the string to sign --------------------------------------------------------------


def signature(secret_key: str, string_to_sign: str) -> str:
    """Base64 of HMAC-SHA1 over ``string_to_sign`` under ``secret_key``."""
    digest = hmac.digest(_utf8(secret_key), _utf8(string_to_sign), hashlib.sha1)
    return base64.b64encode(digest).decode("ascii")


def _split_query(raw_query: str) -> list[tuple[str, str | None]]:
    """Raw ``(name, value)`` pairs; the value is None when the piece had no ``=``."""
    pairs: list[tuple[str, str | None]] = []
    for piece in raw_query.split("&"):
        if piece:
            name, sep, value = piece.partition("=")
            pairs.append((name, value if sep else None))
    return pairs


def canonical_resource(
    raw_path: str, raw_query: str = "", *, bucket: str | None = None, bucket_slash: bool = True
) -> str:
    """The CanonicalizedResource of a request (raw path and query as received).

    ``bucket`` is the bucket of a virtual-hosted request, which the path lacks. A bucket
    itself is ``/bucket/`` whichever addressing the request used (botocore signs a
    path-style ``/bucket`` so); ``bucket_slash=False`` keeps such a path as sent.

    >>> canonical_resource("/photos/a%20b.jpg", "versionId=3%2F4&x=1&acl")
    '/photos/a%20b.jpg?acl&versionId=3/4'
    >>> canonical_resource("/", "", bucket="photos"), canonical_resource("/photos", "acl")
    ('/photos/', '/photos/?acl')
    """
    raw_path = raw_path or "/"
    if bucket_slash and not bucket and _is_bucket_root(raw_path):
        raw_path += "/"
    resource = (f"/{bucket}" if bucket else "") + raw_path
    signed = [(name, value) for name, value in _split_query(raw_query) if name in SUBRESOURCES]
    if not signed:
        return resource
    signed.sort(key=lambda pair: pair[0])  # stable: repeats keep their order
    parts = (name if value is None else f"{name}={unquote(value)}" for name, value in signed)
    return resource + "?" + "&".join(parts)


def _is_bucket_root(raw_path: str) -> bool:
    """``/bucket``: a path-style bucket without its trailing slash."""
    return len(raw_path) > 1 and "/" not in raw_path[1:]


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.strip().lower(), []).append(value)
    return out


def _clean(value: str) -> str:
    return _FOLD_RE.sub(" ", value.strip())


def canonical_amz_headers(headers: Iterable[tuple[str, str]]) -> str:
    """``name:value\\n`` for each x-amz-* header, sorted; repeated names joined by ``,``.

    >>> canonical_amz_headers([("X-Amz-Meta-B", " 2 "), ("x-amz-meta-a", "1"),
    ...                        ("X-AMZ-META-B", "3"), ("Content-Type", "text/plain")])
    'x-amz-meta-a:1\\nx-amz-meta-b:2,3\\n'
    """
    values = _header_map(headers)
    return "".join(
        f"{name}:{','.join(_clean(v) for v in values[name])}\n"
        for name in sorted(values)
        if name.startswith("x-amz-")
    )


def string_to_sign(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    *,
    date: str,
    bucket: str | None = None,
    bucket_slash: bool = True,
) -> str:
    """The SigV2 StringToSign; ``date`` is what stands on the Date line (see the module
    docstring: the Date header, the empty string beside x-amz-date, or Expires).

    ``headers`` must include every header that is signed: for a presigned URL, the
    x-amz-* and content-type/-md5 query parameters as well (``verify_presigned`` does
    that).
    """
    headers = list(headers)
    values = _header_map(headers)
    md5 = ",".join(v.strip() for v in values.get("content-md5", ()))
    ctype = ",".join(v.strip() for v in values.get("content-type", ()))
    return (
        f"{method.upper()}\n{md5}\n{ctype}\n{date}\n"
        f"{canonical_amz_headers(headers)}"
        f"{canonical_resource(raw_path, raw_query, bucket=bucket, bucket_slash=bucket_slash)}"
    )


# --- the Authorization header --------------------------------------------------------


def is_sigv2_header(value: str) -> bool:
    """Whether an Authorization header uses the SigV2 scheme (``AWS AK:sig``)."""
    return value.lstrip().startswith(ALGORITHM + " ")


def parse_authorization(value: str) -> tuple[str, str]:
    """``AWS <access key>:<signature>`` -> (access key, signature).

    >>> parse_authorization("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=")
    ('AKIAIOSFODNN7EXAMPLE', 'frJIUN8DYpKDtOLCwo//yllqDzg=')
    """
    if len(value) > MAX_AUTHORIZATION_LENGTH:
        raise _bad_header(value[:64])
    scheme, _, credentials = value.strip().partition(" ")
    access_key, sep, provided = credentials.strip().rpartition(":")
    if scheme != ALGORITHM or not sep or not access_key or not provided:
        raise _bad_header(value)
    return access_key, provided


def _bad_header(value: str) -> InvalidAuthArgument:
    return InvalidAuthArgument(
        "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
        argument_name="Authorization",
        argument_value=value,
    )


def authorization_header(access_key: str, provided_signature: str) -> str:
    return f"{ALGORITHM} {access_key}:{provided_signature}"


def _parse_date(value: str) -> datetime | None:
    value = value.strip()
    try:
        return parse_amz_date(value)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _lookup(lookup_secret: SecretLookup, access_key: str) -> str:
    secret = lookup_secret(access_key)
    if secret is None:
        raise InvalidAccessKeyId(access_key)
    return secret


def _equal(expected: str, provided: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("ascii", "replace"))


def verify_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: SecretLookup,
    now: datetime,
    *,
    bucket: str | None = None,
    max_skew: timedelta = MAX_SKEW,
) -> SigV2Result:
    """Verify a request signed with ``Authorization: AWS AK:sig``.

    Checks, in order: the header's syntax, a usable Date or x-amz-date within
    ``max_skew`` of ``now``, the access key, the signature.
    """
    values = _header_map(headers)
    auth = values.get("authorization", [])
    if len(auth) != 1:
        raise _bad_header(",".join(auth))
    access_key, provided = parse_authorization(auth[0])
    amz_date = values.get("x-amz-date")
    http_date = values.get("date")
    stamp = amz_date[-1] if amz_date else http_date[-1] if http_date else None
    moment = _parse_date(stamp) if stamp is not None else None
    if moment is None:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    server_time = now.astimezone(UTC)
    if abs(server_time - moment) > max_skew:
        raise RequestTimeTooSkewed(moment, server_time, max_skew)
    secret = _lookup(lookup_secret, access_key)
    date_lines = ["" if amz_date else ",".join(v.strip() for v in http_date or ())]
    if amz_date and http_date:  # botocore signs its Date even beside x-amz-date
        date_lines.append(http_date[-1].strip())
    _check(
        secret,
        access_key,
        provided,
        (
            string_to_sign(
                method, raw_path, raw_query, headers, date=d, bucket=bucket, bucket_slash=s
            )
            for s in _slash_forms(raw_path, bucket)
            for d in date_lines
        ),
    )
    return SigV2Result(access_key, provided, request_time=moment)


def _slash_forms(raw_path: str, bucket: str | None) -> tuple[bool, ...]:
    """A path-style bucket is tried as ``/bucket/`` (AWS's form), then as it was sent."""
    return (True, False) if not bucket and _is_bucket_root(raw_path) else (True,)


def _check(secret: str, access_key: str, provided: str, candidates: Iterator[str]) -> None:
    """Accept ``provided`` if it signs one of ``candidates`` (tried lazily, in order: the
    first is AWS's form, the one a mismatch reports)."""
    first: str | None = None
    for sts in candidates:
        if _equal(signature(secret, sts), provided):
            return
        first = sts if first is None else first
    assert first is not None
    raise SigV2DoesNotMatch(
        access_key=access_key, signature_provided=provided, string_to_sign=first
    )


# --- presigned URLs ------------------------------------------------------------------


def is_presigned(raw_query: str) -> bool:
    """Whether a query carries SigV2 query-string authentication (any of its names)."""
    if "AWSAccessKeyId" not in raw_query and "Signature" not in raw_query:
        return False  # the usual request: no split needed
    names = {unquote(name) for name, _ in _split_query(raw_query)}
    return not names.isdisjoint((_Q_ACCESS_KEY, _Q_SIGNATURE))


def verify_presigned(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: SecretLookup,
    now: datetime,
    *,
    bucket: str | None = None,
) -> SigV2Result:
    """Verify a SigV2 presigned URL (``AWSAccessKeyId``, ``Expires``, ``Signature``).

    Checks, in order: all three parameters present once, ``Expires`` a number of
    seconds, the access key, expiry, the signature.
    """
    found: dict[str, str] = {}
    query_headers: list[tuple[str, str]] = []
    present = {name.strip().lower() for name, _ in headers}
    for raw_name, raw_value in _split_query(raw_query):
        name = unquote(raw_name)
        value = unquote(raw_value or "")
        if name in _QUERY_AUTH:
            if name in found:
                raise InvalidAuthArgument(
                    f"{name} must appear only once", argument_name=name, argument_value=value
                )
            found[name] = value
        lower = name.lower()
        if (lower.startswith("x-amz-") or lower in _POSITIONAL) and lower not in present:
            query_headers.append((lower, value))
    if len(found) != len(_QUERY_AUTH):
        raise AccessDenied(
            "Query-string authentication requires the Signature, Expires and "
            "AWSAccessKeyId parameters"
        )
    expires = found[_Q_EXPIRES]
    if not (expires.isascii() and expires.isdigit() and len(expires) <= _MAX_EXPIRES_DIGITS):
        raise AccessDenied(f"Invalid date (should be seconds since epoch): {expires}")
    access_key, provided = found[_Q_ACCESS_KEY], found[_Q_SIGNATURE]
    secret = _lookup(lookup_secret, access_key)
    expires_at = datetime.fromtimestamp(int(expires), UTC)
    server_time = now.astimezone(UTC)
    if server_time > expires_at:
        raise RequestExpired(expires_at, server_time)
    signed = [*headers, *query_headers]
    _check(
        secret,
        access_key,
        provided,
        (
            string_to_sign(
                method, raw_path, raw_query, signed, date=expires, bucket=bucket, bucket_slash=s
            )
            for s in _slash_forms(raw_path, bucket)
        ),
    )
    return SigV2Result(
        access_key, provided, True, expires_at=expires_at, query_headers=tuple(query_headers)
    )


# --- POST forms ----------------------------------------------------------------------


def form_signature(secret_key: str, policy_b64: str) -> str:
    """The ``signature`` field of a SigV2 POST form: the HMAC of the base64 policy."""
    return signature(secret_key, policy_b64)


def verify_form(
    access_key: str, policy_b64: str, provided: str, lookup_secret: SecretLookup
) -> SigV2Result:
    """Verify a SigV2 POST form's ``AWSAccessKeyId``/``policy``/``signature`` fields.

    The policy's expiration and conditions are the caller's to check; this only says
    the policy document was signed by the owner of ``access_key``.
    """
    secret = _lookup(lookup_secret, access_key)
    if not _equal(form_signature(secret, policy_b64), provided):
        raise SigV2DoesNotMatch(
            access_key=access_key, signature_provided=provided, string_to_sign=policy_b64
        )
    return SigV2Result(access_key, provided)
