"""Parsing what a client sent: the Authorization header and presigned-URL parameters.

Layer: auth (pure). The rules are ``kvbox.auth.sigv4``'s docstring.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from kvbox.auth.sigv4.base import (
    _HEADER_NAME_RE,
    _PRESIGNED_NAMES,
    _Q_ALGORITHM,
    _Q_CREDENTIAL,
    _Q_DATE,
    _Q_EXPIRES,
    _Q_SIGNATURE,
    _Q_SIGNED_HEADERS,
    _REENCODE_CACHE,
    _SCOPE_DATE_RE,
    _TERMINATOR,
    ALGORITHM,
    MAX_AUTHORIZATION_LENGTH,
    MAX_PRESIGNED_EXPIRES,
    AuthorizationHeader,
    Credential,
    CredentialScope,
    PresignedParams,
    parse_amz_date,
)
from kvbox.errors import (
    AuthError,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAuthArgument,
    UnsupportedAuthMechanism,
)

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
