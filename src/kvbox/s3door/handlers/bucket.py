"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation.

Layer: s3 handlers. Rules: a bucket belongs to the principal that created it (root or
a user); ListBuckets shows a user its own buckets and root all of them (access to other
buckets is checked by ``S3Frontend`` before a handler runs); name rules are the
router's (``check_bucket_name``); the GW-KV bucket can be read and written over S3 but
never deleted, because GW-KV serves from it.
"""

from __future__ import annotations

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


async def list_buckets(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    buckets = await ctx.store.list_buckets()
    who = req.principal
    if who is None:  # S3Frontend refuses anonymous ListBuckets first
        raise S3Error("AccessDenied")
    entries = [
        BucketEntry(b.name, timestamp_from_ns(b.created_ns))
        for b in sorted(buckets, key=lambda b: b.name)
        if who == ROOT or b.owner == who
    ]
    return xml_response(ListAllMyBucketsResult(entries, Owner(who, who)).to_xml())


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
