"""Object lock operations, and the lock part of every write, read and delete.

Layer: s3 handlers. Rules:

* What a lock forbids is decided in one place, ``kvbox.core.lock``, through the Store
  (``Store.delete``, ``Store.set_object_lock``); these handlers only translate S3's
  forms (``kvbox.s3door.objectlock``) and gather who may bypass governance mode.
* Who may bypass governance mode, what lock a new object's headers ask for and which
  lock headers a reader sees are ``locking``'s, shared with the object and multipart
  handlers.
* Operations on a bucket without object lock answer AWS's InvalidRequest "Bucket is
  missing Object Lock Configuration" -- after the access check, so a stranger learns
  nothing about the bucket's settings.
* Bodies that set a lock must come with ``Content-MD5`` or a checksum
  (``require_integrity_check``), as AWS demands.
"""

from __future__ import annotations

import time

from kvbox.core import lock
from kvbox.core.lock import VersionLock
from kvbox.core.model import ObjectVersion
from kvbox.policy import ContextValue
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3door.handlers.common import (
    Context,
    read_small,
    require_integrity_check,
    xml_response,
)
from kvbox.s3door.handlers.config import bucket_of
from kvbox.s3door.handlers.locking import locked_bucket, may_bypass
from kvbox.s3door.handlers.object import resolve_version
from kvbox.s3door.objectlock import (
    LegalHoldBody,
    ObjectLockConfiguration,
    RetentionBody,
    render_date,
)
from kvbox.s3door.types import S3Request, S3Response

_CONFIG_BODY = 64 * 1024


# --- the bucket's configuration ------------------------------------------------------


async def put_object_lock_configuration(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    require_integrity_check(req)
    conf = ObjectLockConfiguration.from_xml(await read_small(req, _CONFIG_BODY))
    await ctx.store.set_lock_config(b.name, conf.config)
    return S3Response(200)


async def get_object_lock_configuration(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    config = lock.config_of(b)
    if config is None:
        raise S3Error(
            "ObjectLockConfigurationNotFoundError",
            resource=f"/{b.name}",
            extra={"BucketName": b.name},
        )
    return xml_response(ObjectLockConfiguration.of(config).to_xml())


# --- one version -------------------------------------------------------------------------


async def _version(ctx: Context, req: S3Request, ep: Endpoint) -> ObjectVersion:
    """The version a retention / legal-hold request names, in a bucket with object lock."""
    locked_bucket(await bucket_of(ctx, ep))
    return await resolve_version(ctx, ep, req, verify=False)  # metadata only


def _gone(ep: Endpoint) -> S3Error:
    if ep.version_id is not None:
        return S3Error(
            "NoSuchVersion",
            resource=f"/{ep.bucket}/{ep.key}",
            extra={"Key": ep.key or "", "VersionId": ep.version_id},
        )
    return S3Error("NoSuchKey", resource=f"/{ep.bucket}/{ep.key}", extra={"Key": ep.key or ""})


def _version_header(v: ObjectVersion) -> dict[str, str]:
    return {} if v.is_null else {"x-amz-version-id": v.version_id}


async def put_object_retention(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None
    v = await _version(ctx, req, ep)
    require_integrity_check(req)
    body = RetentionBody.from_xml(await read_small(req, _CONFIG_BODY))
    r = body.retention
    if r is not None and ctx.allows is not None:
        # The retention is known only now: decide s3:PutObjectRetention again with the
        # s3:object-lock-* keys a policy may test (a cap on retention days, a mode).
        days = max(0, (r.until_ns - time.time_ns()) // lock.NS_PER_DAY)
        facts: dict[str, ContextValue] = {
            "s3:object-lock-mode": r.mode.value,
            "s3:object-lock-retain-until-date": render_date(r.until_ns),
            "s3:object-lock-remaining-retention-days": str(days),
        }
        vid = None if v.is_null else v.version_id
        if not await ctx.allows(req, ep, "s3:PutObjectRetention", ep.key, vid, facts):
            raise S3Error("AccessDenied", resource=f"/{ep.bucket}/{ep.key}")
    bypass = await may_bypass(ctx, req, ep, ep.key)
    new = await ctx.store.set_object_lock(
        ep.bucket, ep.key, v.version_id, retention=r, bypass_governance=bypass
    )
    if new is None:
        raise _gone(ep)
    return S3Response(200, _version_header(new))


async def get_object_retention(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    v = await _version(ctx, req, ep)
    r = VersionLock.of(v.attrs).retention
    if r is None:
        raise S3Error("NoSuchObjectLockConfiguration", resource=f"/{ep.bucket}/{ep.key}")
    resp = xml_response(RetentionBody(r).to_xml())
    resp.headers.update(_version_header(v))
    return resp


async def put_object_legal_hold(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None and ep.key is not None
    v = await _version(ctx, req, ep)
    require_integrity_check(req)
    body = LegalHoldBody.from_xml(await read_small(req, _CONFIG_BODY))
    new = await ctx.store.set_object_lock(ep.bucket, ep.key, v.version_id, legal_hold=body.on)
    if new is None:
        raise _gone(ep)
    return S3Response(200, _version_header(new))


async def get_object_legal_hold(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    v = await _version(ctx, req, ep)
    hold = VersionLock.of(v.attrs).legal_hold
    if hold is None:
        raise S3Error("NoSuchObjectLockConfiguration", resource=f"/{ep.bucket}/{ep.key}")
    resp = xml_response(LegalHoldBody(hold).to_xml())
    resp.headers.update(_version_header(v))
    return resp
