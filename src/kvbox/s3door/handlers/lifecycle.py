"""Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration, and ``x-amz-expiration``.

Layer: s3 handlers. Rules: the configuration is checked as AWS checks it
(``kvbox.s3door.lifecycle``) before anything is stored, then kept in ``Bucket.attrs``
as the core's JSON (``kvbox.core.lifecycle.rules.ATTR``), which the background worker
reads; GET renders it back in the shape it was written. The body must carry
``Content-MD5`` or a checksum, as AWS requires. Objects a rule will expire answer
``x-amz-expiration`` on PUT, GET, HEAD, CopyObject and CompleteMultipartUpload.
"""

from __future__ import annotations

from kvbox.core.lifecycle import rules
from kvbox.core.model import Bucket, ObjectVersion
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3door.handlers.common import Context, read_small, require_integrity_check, xml_response
from kvbox.s3door.handlers.config import bucket_of
from kvbox.s3door.lifecycle import (
    TRANSITION_MINIMUM_SIZE,
    expiration_header,
    parse_lifecycle,
    render_lifecycle,
)
from kvbox.s3door.types import S3Request, S3Response

_CONFIG_BODY = 64 * 1024 * 8  # 1,000 rules with tag filters stay under it
MINIMUM_SIZE_HEADER = "x-amz-transition-default-minimum-object-size"


async def put_bucket_lifecycle(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    require_integrity_check(req)
    config = parse_lifecycle(await read_small(req, _CONFIG_BODY))
    await ctx.store.set_bucket_attrs(b.name, {rules.ATTR: config.to_attr()})
    return S3Response(200, {MINIMUM_SIZE_HEADER: TRANSITION_MINIMUM_SIZE})


async def get_bucket_lifecycle(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    config = rules.config_of(b)
    if config is None:
        raise S3Error(
            "NoSuchLifecycleConfiguration", resource=f"/{b.name}", extra={"BucketName": b.name}
        )
    resp = xml_response(render_lifecycle(config))
    resp.headers[MINIMUM_SIZE_HEADER] = TRANSITION_MINIMUM_SIZE
    return resp


async def delete_bucket_lifecycle(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    if rules.ATTR in b.attrs:
        await ctx.store.set_bucket_attrs(b.name, {rules.ATTR: None})
    return S3Response(204)


def expiration_headers(b: Bucket | None, v: ObjectVersion) -> dict[str, str]:
    """``x-amz-expiration`` for ``v`` as the current version of its key, when a rule of
    its bucket ``b`` will expire it (none otherwise)."""
    if b is None or rules.ATTR not in b.attrs:
        return {}
    config = rules.config_of(b)
    found = rules.expiration(config, v) if config is not None else None
    if found is None:
        return {}
    return {"x-amz-expiration": expiration_header(*found)}
