"""Signing, for our own clients, the tests and the console.

Layer: auth (pure). The rules are ``kvbox.auth.sigv4``'s docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kvbox.auth.sigv4.base import (
    _Q_ALGORITHM,
    _Q_CREDENTIAL,
    _Q_DATE,
    _Q_EXPIRES,
    _Q_SIGNATURE,
    _Q_SIGNED_HEADERS,
    _UNSIGNABLE,
    ALGORITHM,
    MAX_PRESIGNED_EXPIRES,
    UNSIGNED_PAYLOAD,
    CredentialScope,
    format_amz_date,
    payload_mode,
    signature,
    signing_key,
    string_to_sign,
)
from kvbox.auth.sigv4.canonical import (
    canonical_request,
    uri_encode,
)
from kvbox.errors import (
    InvalidAuthArgument,
)

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
