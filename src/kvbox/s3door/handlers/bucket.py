"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation.

Layer: s3 handlers. Rules: a bucket belongs to the principal that created it (root or
a user); ListBuckets shows a user its own buckets and root all of them (access to other
buckets is checked by ``S3Frontend`` before a handler runs); name rules are
``kvbox.s3.names.check_bucket_name``; the GW-KV bucket can be read and written over S3
but never deleted, because GW-KV serves from it.
"""

from __future__ import annotations

import base64

from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import (
    BucketEntry,
    CreateBucketConfiguration,
    ListAllMyBucketsResult,
    Owner,
    render_location,
    timestamp_from_ns,
)
from kvbox.s3door.handlers.acl import new_bucket_attrs
from kvbox.s3door.handlers.common import ACL, Context, read_small, xml_response
from kvbox.s3door.objectlock import wants_lock
from kvbox.s3door.types import S3Request, S3Response

ROOT = "root"
#: AWS's oldest region: the empty LocationConstraint, and the one region where creating
#: a bucket you already own succeeds (200, resetting its ACL) instead of answering
#: BucketAlreadyOwnedByYou.
US_EAST_1 = "us-east-1"
_INCOMPATIBLE = (
    "The {} location constraint is incompatible for the region specific endpoint this "
    "request was sent to."
)


def check_location(region: str, constraint: str | None) -> None:
    """CreateBucket's LocationConstraint must be this server's region, as an AWS regional
    endpoint demands; us-east-1 is spelled by leaving it out.

    >>> check_location("us-east-1", None); check_location("eu-west-1", "eu-west-1")
    >>> try:
    ...     check_location("us-east-1", "eu-west-1")
    ... except S3Error as e:
    ...     print(e.code)
    IllegalLocationConstraintException
    """
    if not constraint:
        if region != US_EAST_1:
            raise S3Error("IllegalLocationConstraintException", _INCOMPATIBLE.format("unspecified"))
        return
    if constraint == US_EAST_1:
        raise S3Error("InvalidLocationConstraint")  # AWS: us-east-1 is never named
    if constraint != region and not (constraint == "EU" and region == "eu-west-1"):
        raise S3Error("IllegalLocationConstraintException", _INCOMPATIBLE.format(constraint))


#: ListBuckets' page limit (AWS's max-buckets range is 1..10000).
MAX_BUCKETS = 10_000


def _max_buckets(req: S3Request) -> int:
    raw = req.param("max-buckets")
    if raw is None:
        return MAX_BUCKETS
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_BUCKETS and len(raw) <= 5:
        return int(raw)
    raise S3Error(
        "InvalidArgument",
        f"Argument max-buckets must be an integer between 1 and {MAX_BUCKETS}",
        extra={"ArgumentName": "max-buckets", "ArgumentValue": raw},
    )


def _after(req: S3Request) -> str:
    """The bucket a ``continuation-token`` resumes after (the token is opaque to
    clients: the base64 of the last name returned)."""
    token = req.param("continuation-token")
    if token is None:
        return ""
    try:
        name = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        name = ""
    if not name:
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token", "ArgumentValue": token},
        )
    return name


async def list_buckets(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    """ListBuckets: the requester's buckets (root's: all) by name, with AWS's paging
    (``max-buckets``, ``continuation-token``), ``prefix`` and ``bucket-region`` filters."""
    who = req.principal
    if who is None:  # S3Frontend refuses anonymous ListBuckets first
        raise S3Error("AccessDenied")
    limit = _max_buckets(req)
    after = _after(req)
    prefix = req.param("prefix")
    region = req.param("bucket-region")
    buckets = await ctx.store.list_buckets()
    names = sorted(
        (
            b
            for b in buckets
            if (who == ROOT or b.owner == who)
            and b.name > after
            and (prefix is None or b.name.startswith(prefix))
            and (region is None or region == ctx.region)  # every bucket is in ctx.region
        ),
        key=lambda b: b.name,
    )
    page = names[:limit]
    entries = [BucketEntry(b.name, timestamp_from_ns(b.created_ns), ctx.region) for b in page]
    token = None
    if len(names) > limit:
        token = base64.urlsafe_b64encode(page[-1].name.encode("utf-8")).decode("ascii")
    result = ListAllMyBucketsResult(entries, Owner(who, who), token, prefix)
    return xml_response(result.to_xml())


async def create_bucket(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    if req.principal is None:  # S3Frontend refuses anonymous CreateBucket first
        raise S3Error("AccessDenied")
    conf = CreateBucketConfiguration.from_xml(await read_small(req, 64 * 1024))
    check_location(ctx.region, conf.location_constraint)
    attrs = await new_bucket_attrs(ctx, req, req.principal)
    object_lock = wants_lock(req.headers)  # x-amz-bucket-object-lock-enabled: true
    if not await ctx.store.create_bucket(
        ep.bucket, owner=req.principal, attrs=attrs, object_lock=object_lock
    ):
        existing = await ctx.store.get_bucket(ep.bucket)
        if existing is not None and existing.owner == req.principal and ctx.region == US_EAST_1:
            # AWS's us-east-1 answer to re-creating your own bucket: 200, and the ACL the
            # request names (private when it names none) replaces the bucket's.
            await ctx.store.set_bucket_attrs(ep.bucket, {ACL: attrs.get(ACL)})
            return S3Response(200, {"Location": f"/{ep.bucket}"})
        code = (
            "BucketAlreadyOwnedByYou"
            if existing is None or existing.owner == req.principal
            else "BucketAlreadyExists"
        )
        raise S3Error(code, resource=f"/{ep.bucket}", extra={"BucketName": ep.bucket})
    return S3Response(200, {"Location": f"/{ep.bucket}"})


async def _existing(ctx: Context, name: str) -> None:
    if await ctx.store.get_bucket(name) is None:
        raise S3Error("NoSuchBucket", resource=f"/{name}", extra={"BucketName": name})


async def head_bucket(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    await _existing(ctx, ep.bucket)
    return S3Response(200, {"x-amz-bucket-region": ctx.region})


async def delete_bucket(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    if ep.bucket == ctx.kv_bucket:
        await _existing(ctx, ep.bucket)
        raise S3Error(
            "InvalidBucketState",
            "The GW-KV bucket cannot be deleted while the server serves GW-KV",
            resource=f"/{ep.bucket}",
        )
    if not await ctx.store.delete_bucket(ep.bucket):
        raise S3Error("NoSuchBucket", resource=f"/{ep.bucket}", extra={"BucketName": ep.bucket})
    return S3Response(204)


async def get_bucket_location(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    await _existing(ctx, ep.bucket)
    return xml_response(render_location(ctx.region))
