"""Which signature a request carries (SigV4, SigV2 or none), verified.

Layer: auth (pure; the clock and the secrets are arguments, as in ``sigv4``/``sigv2``).
Rules, as AWS tells the mechanisms apart:

* ``Authorization: AWS AK:sig`` is SigV2; any other Authorization header is SigV4's
  business (``sigv4`` refuses SigV4a and unknown schemes).
* ``AWSAccessKeyId``/``Signature`` query parameters are a SigV2 presigned URL,
  ``X-Amz-Algorithm``/``X-Amz-Credential``/``X-Amz-Signature`` a SigV4 one.
* More than one mechanism at once is S3's InvalidArgument ("Only one auth mechanism
  allowed"); none at all is an anonymous request (None).
* SigV2 can be switched off (``kvbox serve --sigv2 off``): it then answers as
  ``sigv4`` always did, InvalidRequest "Please use AWS4-HMAC-SHA256".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeAlias
from urllib.parse import unquote

from kvbox.auth import sigv2, sigv4
from kvbox.auth.sigv2 import SigV2Result
from kvbox.auth.sigv4 import (
    MAX_SKEW,
    AuthResult,
    InvalidAuthArgument,
    SecretLookup,
    UnsupportedAuthMechanism,
)

__all__ = ["Verified", "authenticate"]

#: A verified request: who signed it and what the body layer needs.
Verified: TypeAlias = AuthResult | SigV2Result

_ONE_MECHANISM = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
    "Signature query string parameter or the Authorization header should be specified"
)


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: SecretLookup,
    now: datetime,
    *,
    region: str | None = None,
    sigv2_enabled: bool = True,
    bucket: str | None = None,
    max_skew: timedelta = MAX_SKEW,
) -> Verified | None:
    """Verify whichever mechanism the request uses; None for an anonymous request.

    ``raw_path``/``raw_query`` are as received; ``region`` the one SigV4 scopes must
    name (None: any); ``bucket`` the bucket of a virtual-hosted request, which SigV2's
    canonical resource names and the path lacks.
    """
    authorization = [v for n, v in headers if n.strip().lower() == "authorization"]
    v2_query = sigv2.is_presigned(raw_query)
    v2_header = bool(authorization) and sigv2.is_sigv2_header(authorization[0])
    if v2_header or (v2_query and not authorization):
        if not sigv2_enabled:
            raise UnsupportedAuthMechanism("AWS (query string)" if v2_query else "AWS")
        if v2_header and v2_query:
            raise InvalidAuthArgument(_ONE_MECHANISM, argument_name="Authorization")
        query = sigv4.parse_query_string(raw_query)
        if any(unquote(k) in ("X-Amz-Algorithm", "X-Amz-Signature") for k, _ in query):
            raise InvalidAuthArgument(_ONE_MECHANISM, argument_name="Signature")
        if v2_header:
            return sigv2.verify_request(
                method, raw_path, raw_query, headers, lookup_secret, now, bucket=bucket,
                max_skew=max_skew,
            )  # fmt: skip
        return sigv2.verify_presigned(
            method, raw_path, raw_query, headers, lookup_secret, now, bucket=bucket
        )
    if authorization and v2_query:
        raise InvalidAuthArgument(_ONE_MECHANISM, argument_name="Authorization")
    return sigv4.authenticate(
        method,
        raw_path,
        sigv4.parse_query_string(raw_query),
        headers,
        lookup_secret,
        now,
        region=region,
        max_skew=max_skew,
    )
