"""Verification: ``verify_request``, ``verify_presigned`` and ``authenticate``.

Layer: auth (pure). The rules are ``kvbox.auth.sigv4``'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from kvbox.auth.sigv4.base import (
    _Q_ALGORITHM,
    _Q_CONTENT_SHA256,
    _Q_CREDENTIAL,
    _Q_SIGNATURE,
    EMPTY_SHA256,
    MAX_SKEW,
    UNSIGNED_PAYLOAD,
    AuthResult,
    CredentialScope,
    SecretLookup,
    _as_utc,
    _signatures_equal,
    format_amz_date,
    parse_amz_date,
    payload_mode,
    signature,
    signing_key,
    string_to_sign,
)
from kvbox.auth.sigv4.canonical import (
    _canonical_request,
    _header_values,
)
from kvbox.auth.sigv4.parse import (
    _unquote,
    parse_authorization,
    parse_presigned_params,
)
from kvbox.errors import (
    AccessDenied,
    AuthError,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidAuthArgument,
    RequestExpired,
    RequestNotYetValid,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
    UnsupportedAuthMechanism,
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
