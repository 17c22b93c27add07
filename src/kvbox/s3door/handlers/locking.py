"""The lock part of every S3 write, read and delete, shared by the handlers.

Layer: s3 handlers. Rules:

* A bypass of governance mode is granted when the request asks for it
  (``x-amz-bypass-governance-retention: true``) *and* the requester holds
  ``s3:BypassGovernanceRetention`` on the object (owner and root by identity unless a
  policy denies it); the permission is asked only when the bypass is requested, so a
  plain delete costs nothing more. What the bypass then allows is ``kvbox.core.lock``'s.
* PutObject, CopyObject and CreateMultipartUpload take a lock from their headers; in a
  bucket without object lock that is AWS's InvalidRequest "Bucket is missing Object Lock
  Configuration". An upload that will be locked (its headers, or the bucket's default
  retention) must carry ``Content-MD5`` or a checksum.
* GetObject/HeadObject show a version's lock only to those allowed to read it
  (``s3:GetObjectRetention``, ``s3:GetObjectLegalHold``), as AWS does.
"""

from __future__ import annotations

import time

from kvbox.core import lock
from kvbox.core.lock import VersionLock
from kvbox.core.model import Bucket, ObjectVersion
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3door.handlers.common import Context
from kvbox.s3door.objectlock import (
    HOLD_HEADER,
    MODE_HEADER,
    UNTIL_HEADER,
    lock_from_headers,
    lock_headers,
    wants_bypass,
)
from kvbox.s3door.types import S3Request

BYPASS_ACTION = "s3:BypassGovernanceRetention"


def missing_configuration() -> S3Error:
    return S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")


def locked_bucket(b: Bucket) -> lock.LockConfig:
    """The bucket's object lock configuration; InvalidRequest when it has none."""
    config = lock.config_of(b)
    if config is None:
        raise missing_configuration()
    return config


async def may_bypass(ctx: Context, req: S3Request, ep: Endpoint, key: str) -> bool:
    """The request asks to bypass governance mode and its principal may."""
    if not wants_bypass(req.headers):
        return False
    if ctx.allows is None:
        return True
    return bool(await ctx.allows(req, ep, BYPASS_ACTION, key, None, None))


def write_lock_attrs(b: Bucket | None, req: S3Request, bucket: str) -> dict[str, str]:
    """The lock entries a new object's attrs get from PutObject / CopyObject /
    CreateMultipartUpload headers (the bucket's default retention is the Store's to
    add): InvalidRequest in a bucket without object lock, InvalidArgument for bad ones.
    ``b`` is the bucket as ``Store.get_bucket`` has it (None: there is none)."""
    h = req.headers
    if not (MODE_HEADER in h or UNTIL_HEADER in h or HOLD_HEADER in h):
        return {}  # the usual write: no clock read, no parsing
    asked = lock_from_headers(h, time.time_ns())
    if asked is None:
        return {}
    if b is None:
        raise S3Error("NoSuchBucket", resource=f"/{bucket}", extra={"BucketName": bucket})
    locked_bucket(b)
    return asked.attrs()


def needs_integrity_check(b: Bucket | None, req: S3Request) -> bool:
    """Whether an upload into ``b`` gets a lock: its own lock headers, or the bucket's
    default retention (AWS then wants Content-MD5 or a checksum)."""
    h = req.headers  # three ``in`` tests: this runs on every PutObject
    if MODE_HEADER in h or UNTIL_HEADER in h or HOLD_HEADER in h:
        return True
    if b is None or not b.attrs:
        return False
    config = lock.config_of(b)
    return config is not None and config.default is not None


async def read_headers(
    ctx: Context, req: S3Request, ep: Endpoint, v: ObjectVersion
) -> dict[str, str]:
    """The ``x-amz-object-lock-*`` headers a GET/HEAD of ``v`` shows this requester."""
    if not v.attrs or not lock.has_lock_attrs(v.attrs):
        return {}
    lk = VersionLock.of(v.attrs)
    out = lock_headers(lk)
    if ctx.allows is None:
        return out
    vid = None if v.is_null else v.version_id
    if lk.retention is not None and not await ctx.allows(
        req, ep, "s3:GetObjectRetention", v.key, vid, None
    ):
        out.pop(MODE_HEADER, None)
        out.pop(UNTIL_HEADER, None)
    if lk.legal_hold is not None and not await ctx.allows(
        req, ep, "s3:GetObjectLegalHold", v.key, vid, None
    ):
        out.pop(HOLD_HEADER, None)
    return out
