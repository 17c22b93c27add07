"""ACLs and Object Ownership: Get/PutBucketAcl, Put/Get/DeleteBucketOwnershipControls, the
ACL and owner a write gives a new object (Get/PutObjectAcl live with the objects).

Layer: s3 handlers. Rules (the meaning of grants and owners is ``kvbox.policy.acl``; the
wire forms ``kvbox.s3.acl``):

* A bucket keeps its Object Ownership setting in ``Bucket.attrs[OWNERSHIP]``; a bucket
  without one behaves as ``ObjectWriter`` (AWS's pre-2023 buckets) and
  GetBucketOwnershipControls answers OwnershipControlsNotFoundError for it. A new bucket
  gets ``Context.default_ownership`` (``BucketOwnerEnforced``, AWS's default since April
  2023) unless CreateBucket names one with ``x-amz-object-ownership``.
* An ACL is stored in the resource's attrs (``ACL`` on the bucket, ``OBJECT_ACL`` on a
  version) in ``Acl.to_text`` form, and not at all when it is the owner's private one.
  An object that does not belong to the bucket owner carries its owner in ``OWNER``; a
  multipart upload carries its initiator in ``INITIATOR`` and the owner-to-be in
  ``OWNER``. Listings read owners from there.
* ``BucketOwnerEnforced``: every ACL write other than "bucket owner full control" is
  AccessControlListNotSupported, ACL reads show the bucket owner's full control, and the
  bucket owner owns every object (``OWNER`` is never written). ACLs stored before
  ACLs were disabled are kept, unused, and count again if they are re-enabled.
* BlockPublicAcls refuses a public ACL (a grant to AllUsers or AuthenticatedUsers) at
  every request that sets one (AccessDenied); canonical user ids must name an existing
  principal (InvalidArgument), as AWS answers for an unknown id.
* A write by root (the account itself, acting for the bucket owner) or an anonymous one
  (let in by a bucket policy or a public-read-write ACL) belongs to the bucket owner:
  only a kvbox user other than the bucket owner can be an object writer who keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping

from kvbox.core.meta.users import ROOT
from kvbox.core.model import Bucket
from kvbox.policy.acl import (
    Acl,
    ObjectOwnership,
    object_owner,
    private,
)
from kvbox.s3 import acl as wire
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import AccessControlPolicy, OwnershipControls
from kvbox.s3door.explain import ownership_of
from kvbox.s3door.handlers.common import (
    ACL,
    INITIATOR,
    OBJECT_ACL,
    OWNER,
    OWNERSHIP,
    Context,
    read_small,
    xml_response,
)
from kvbox.s3door.handlers.config import bucket_of, public_access_block
from kvbox.s3door.types import S3Request, S3Response

_ACL_BODY = 64 * 1024


# --- reading the stored settings -----------------------------------------------------


def bucket_acl(b: Bucket) -> Acl:
    return wire.stored_acl(b.attrs.get(ACL), b.owner)


def owner_of_version(b: Bucket, attrs: Mapping[str, str]) -> str:
    """Who owns a stored object version (or an upload): its writer when ACLs were on and
    the writer kept it, else the bucket owner."""
    if ownership_of(b) is ObjectOwnership.BUCKET_OWNER_ENFORCED:
        return b.owner
    return attrs.get(OWNER, b.owner)


def version_acl(b: Bucket, attrs: Mapping[str, str]) -> Acl:
    """The ACL a GetObjectAcl shows for a version (full control to the bucket owner when
    ACLs are disabled)."""
    if ownership_of(b) is ObjectOwnership.BUCKET_OWNER_ENFORCED:
        return private(b.owner)
    return wire.stored_acl(attrs.get(OBJECT_ACL), owner_of_version(b, attrs), b.owner)


# --- checks every ACL write goes through ---------------------------------------------


def check_public(b: Bucket, acl: Acl) -> None:
    """BlockPublicAcls: a request that sets a public ACL is refused (AWS: 403)."""
    pab = public_access_block(b)
    if pab is not None and pab.block_public_acls and acl.is_public:
        raise S3Error("AccessDenied", "Access Denied: the bucket blocks public ACLs")


async def check_users(ctx: Context, acl: Acl) -> None:
    """Every canonical user an ACL names must exist (AWS: InvalidArgument, "Invalid id")."""
    for user in sorted(wire.users_named(acl)):
        if user != ROOT and await ctx.store.meta.get_user(user) is None:
            raise S3Error(
                "InvalidArgument",
                "Invalid id",
                extra={"ArgumentName": "CanonicalUser/ID", "ArgumentValue": user},
            )


async def acl_from_request(
    ctx: Context, req: S3Request, owner: str, bucket_owner: str | None
) -> Acl:
    """The ACL a Put*Acl sets: its headers, or its ``AccessControlPolicy`` body."""
    acl = wire.requested_acl(req.headers, owner, bucket_owner, ctx.region)
    body = await read_small(req, _ACL_BODY)
    if acl is not None:
        if body.strip():
            raise S3Error("UnexpectedContent")
        return acl
    if not body.strip():
        raise S3Error("MalformedACLError")
    return wire.acl_from_document(AccessControlPolicy.from_xml(body), owner, ctx.region)


async def write_acl_attrs(
    ctx: Context, req: S3Request, bucket: str, *, upload: bool = False
) -> dict[str, str]:
    """The ACL and owner attrs a write (PutObject, CopyObject, CreateMultipartUpload)
    gives its new object, from the request's ACL headers and the bucket's Object
    Ownership; refuses what the bucket refuses. ``upload``: also record the initiator."""
    account = req.principal is None or req.principal == ROOT
    if account and not upload and not any(req.header(h) is not None for h in wire.ACL_HEADERS):
        return {}  # the hot path: root's (or a stranger's) plain PUT, the bucket owner's
    b = await ctx.store.get_bucket(bucket)
    if b is None:
        raise S3Error("NoSuchBucket", resource=f"/{bucket}", extra={"BucketName": bucket})
    writer = b.owner if account else req.principal
    assert writer is not None
    ownership = ownership_of(b)
    acl = wire.requested_acl(req.headers, writer, b.owner, ctx.region)
    out: dict[str, str] = {INITIATOR: writer} if upload else {}
    if ownership is ObjectOwnership.BUCKET_OWNER_ENFORCED:
        if acl is not None:
            wire.check_enforced(acl, ownership, b.owner)
        return out
    if acl is not None:
        check_public(b, acl)
        await check_users(ctx, acl)
    owner = object_owner(ownership, writer, b.owner, acl)
    if owner != writer:
        acl = None  # the bucket owner took the object: its full control is the ACL
    if owner != b.owner:
        out[OWNER] = owner
    if acl is not None and acl != private(owner):
        out[OBJECT_ACL] = acl.to_text(b.owner)
    return out


# --- bucket ACL ----------------------------------------------------------------------


async def get_bucket_acl(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    if ownership_of(b) is ObjectOwnership.BUCKET_OWNER_ENFORCED:
        acl = private(b.owner)
    else:
        acl = bucket_acl(b)
    return xml_response(wire.document_of(acl).to_xml())


async def put_bucket_acl(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    acl = await acl_from_request(ctx, req, b.owner, None)
    wire.check_enforced(acl, ownership_of(b), b.owner)
    check_public(b, acl)
    await check_users(ctx, acl)
    value = None if acl == private(b.owner) else acl.to_text()
    await ctx.store.set_bucket_attrs(b.name, {ACL: value})
    return S3Response(200)


# --- ownership controls --------------------------------------------------------------


async def put_bucket_ownership_controls(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    conf = OwnershipControls.from_xml(await read_small(req, _ACL_BODY))
    ownership = ObjectOwnership(conf.object_ownership)
    if ownership is ObjectOwnership.BUCKET_OWNER_ENFORCED and not bucket_acl(
        b
    ).only_full_control_to(b.owner):
        raise S3Error("InvalidBucketAclWithObjectOwnership")
    await ctx.store.set_bucket_attrs(b.name, {OWNERSHIP: ownership.value})
    return S3Response(200)


async def get_bucket_ownership_controls(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    value = b.attrs.get(OWNERSHIP)
    if value is None:
        raise S3Error(
            "OwnershipControlsNotFoundError", resource=f"/{b.name}", extra={"BucketName": b.name}
        )
    return xml_response(OwnershipControls(value).to_xml())


async def delete_bucket_ownership_controls(
    ctx: Context, req: S3Request, ep: Endpoint
) -> S3Response:
    b = await bucket_of(ctx, ep)
    await ctx.store.set_bucket_attrs(b.name, {OWNERSHIP: None})
    return S3Response(204)


# --- CreateBucket --------------------------------------------------------------------


async def new_bucket_attrs(ctx: Context, req: S3Request, owner: str) -> dict[str, str]:
    """The ACL and Object Ownership attrs CreateBucket gives a new bucket."""
    header = req.header("x-amz-object-ownership")
    ownership = ctx.default_ownership if header is None else wire.parse_ownership(header)
    acl = wire.requested_acl(req.headers, owner, None, ctx.region)
    attrs = {OWNERSHIP: ownership.value}
    if acl is not None:
        if ownership is ObjectOwnership.BUCKET_OWNER_ENFORCED and not acl.only_full_control_to(
            owner
        ):
            raise S3Error("InvalidBucketAclWithObjectOwnership")
        await check_users(ctx, acl)
        if acl != private(owner):
            attrs[ACL] = acl.to_text()
    return attrs
