"""CORS on the S3 API: the OPTIONS preflight handler and the headers of actual requests.

Layer: s3 handlers (async, over ``kvbox.core``). Rules: what S3 answers is decided by
the pure ``kvbox.s3.cors``; this module only reads the bucket's stored configuration
(``Bucket.attrs["cors"]``, the CORSConfiguration XML as PUT) and shapes the response.

* ``preflight`` serves ``Op.PREFLIGHT`` (OPTIONS on a bucket or an object). A browser
  sends preflights without credentials, so the front door must dispatch this op without
  authenticating; its failures are S3 XML errors like any other (400 BadRequest, 403
  AccessForbidden). A preflight for a bucket that does not exist is answered as one for
  a bucket without a CORS configuration (403 "CORS is not enabled for this bucket"):
  preflights are anonymous, and an anonymous client learns nothing of which buckets
  exist (AWS says "Bucket not found" here, which tells them).
* ``cors_headers`` is what the front door adds to every other response of a request
  that carries an Origin (errors included: a browser needs them to read a 404 too).
"""

from __future__ import annotations

from kvbox.s3 import cors
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import CORSConfiguration
from kvbox.s3door.handlers.common import Context
from kvbox.s3door.types import S3Request, S3Response


async def _config(ctx: Context, bucket: str | None) -> CORSConfiguration | None:
    """The bucket's CORS configuration; None when it has none or does not exist (the
    two answer alike)."""
    if bucket is None:
        return None
    b = await ctx.store.get_bucket(bucket)
    return None if b is None else cors.config_of(b.attrs)


async def preflight(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    """OPTIONS: 200 with the matching rule's CORS headers, else S3's 400/403 error."""
    origin = req.header("origin")
    method = req.header("access-control-request-method")
    bad = cors.bad_preflight(origin, method)
    if bad is not None:
        raise bad
    assert method is not None
    resource_type = "OBJECT" if ep.key else "BUCKET"
    config = await _config(ctx, ep.bucket)
    result = cors.preflight(
        config,
        origin,
        method,
        req.header("access-control-request-headers"),
        resource_type=resource_type,
    )
    if result.error is not None:
        raise result.error
    return S3Response(200, dict(result.headers))


async def cors_headers(ctx: Context, req: S3Request, bucket: str | None) -> dict[str, str]:
    """CORS headers for a non-OPTIONS response to ``req`` on ``bucket``; {} if none apply.

    Costs nothing without an Origin header; otherwise one bucket lookup (the parsed
    configuration itself is memoised by ``kvbox.s3.cors.parse_cors``).
    """
    origin = req.header("origin")
    if not origin or bucket is None:
        return {}
    config = await _config(ctx, bucket)
    return cors.actual_headers(
        config,
        origin,
        req.method,
        requested_method=req.header("access-control-request-method"),
    )
