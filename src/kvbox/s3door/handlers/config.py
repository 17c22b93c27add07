"""Bucket settings: versioning, policy, policy status, public access block, website and
CORS configurations (ACLs and Object Ownership: ``handlers.acl``).

Layer: s3 handlers. Rules:

* Each setting is one entry of ``Bucket.attrs`` (names in ``common``: ``POLICY``,
  ``PAB``, ``CORS``, ``WEBSITE``), written through
  ``Store.set_bucket_attrs`` so it is durable before the 200 and every later request's
  access decision sees it.
* A document is validated by parsing it before it is stored. A policy is stored as
  sent (GetBucketPolicy returns it byte for byte, as AWS does); XML configurations are
  stored re-rendered, in UTF-8. Readers parse them again, through small caches.
* Public-access-block rules are enforced where AWS enforces them: BlockPublicPolicy
  refuses a public policy at PutBucketPolicy, BlockPublicAcls refuses a public ACL at
  every request that sets one (``handlers.acl.check_public``).
"""

from __future__ import annotations

from collections.abc import Callable

from kvbox.core.model import Bucket, Versioning
from kvbox.policy import MAX_POLICY_BYTES, is_public, parse_policy
from kvbox.policy.context import check_supported
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint
from kvbox.s3.xml import (
    MAX_BUCKET_TAGS,
    CORSConfiguration,
    Owner,
    PolicyStatus,
    PublicAccessBlockConfiguration,
    Tagging,
    VersioningConfiguration,
    VersioningStatus,
    WebsiteConfiguration,
)
from kvbox.s3door.handlers.common import (
    BUCKET_TAGGING,
    CORS,
    PAB,
    POLICY,
    WEBSITE,
    Context,
    read_small,
    xml_response,
)
from kvbox.s3door.types import S3Request, S3Response

_CONFIG_BODY = 64 * 1024


async def bucket_of(ctx: Context, ep: Endpoint) -> Bucket:
    assert ep.bucket is not None
    b = await ctx.store.get_bucket(ep.bucket)
    if b is None:
        raise S3Error("NoSuchBucket", resource=f"/{ep.bucket}", extra={"BucketName": ep.bucket})
    return b


def public_access_block(b: Bucket) -> PublicAccessBlockConfiguration | None:
    text = b.attrs.get(PAB)
    return PublicAccessBlockConfiguration.from_xml(text.encode()) if text else None


def owner_of(b: Bucket) -> Owner:
    return Owner(b.owner, b.owner)


# --- versioning ----------------------------------------------------------------------


async def get_bucket_versioning(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    status = {
        Versioning.OFF: None,
        Versioning.ENABLED: VersioningStatus.ENABLED,
        Versioning.SUSPENDED: VersioningStatus.SUSPENDED,
    }[b.versioning]
    return xml_response(VersioningConfiguration(status).to_xml())


async def put_bucket_versioning(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    conf = VersioningConfiguration.from_xml(await read_small(req, _CONFIG_BODY))
    if conf.mfa_delete is not None and conf.mfa_delete.value == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not supported by kvbox")
    if conf.status is None:
        raise S3Error("MalformedXML")
    state = Versioning.ENABLED if conf.status is VersioningStatus.ENABLED else Versioning.SUSPENDED
    await ctx.store.set_versioning(b.name, state)
    return S3Response(200)


# --- policy --------------------------------------------------------------------------


async def put_bucket_policy(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    # parse_policy checks the size, the UTF-8, the JSON and the language; its
    # PolicyError is MalformedPolicy with its message (its row of ``kvbox.errors.WIRE``).
    policy = parse_policy(await read_small(req, MAX_POLICY_BYTES + 1), b.name)
    check_supported(policy)  # a key kvbox can never fill is refused by name
    pab = public_access_block(b)
    if pab is not None and pab.block_public_policy and is_public(policy):
        raise S3Error("AccessDenied", "Access Denied: the bucket blocks public policies")
    await ctx.store.set_bucket_attrs(b.name, {POLICY: policy.text})
    return S3Response(204)


async def get_bucket_policy(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    text = b.attrs.get(POLICY)
    if text is None:
        raise S3Error("NoSuchBucketPolicy", resource=f"/{b.name}", extra={"BucketName": b.name})
    return S3Response(200, {"Content-Type": "application/json"}, text.encode("utf-8"))


async def delete_bucket_policy(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _delete_setting(ctx, ep, POLICY)


async def get_bucket_policy_status(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    text = b.attrs.get(POLICY)
    if text is None:
        raise S3Error("NoSuchBucketPolicy", resource=f"/{b.name}", extra={"BucketName": b.name})
    return xml_response(PolicyStatus(is_public(parse_policy(text, b.name))).to_xml())


# --- public access block -------------------------------------------------------------


async def put_public_access_block(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    conf = PublicAccessBlockConfiguration.from_xml(await read_small(req, _CONFIG_BODY))
    await ctx.store.set_bucket_attrs(b.name, {PAB: conf.to_xml().decode()})
    return S3Response(200)


async def get_public_access_block(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    pab = public_access_block(b)
    if pab is None:
        raise S3Error(
            "NoSuchPublicAccessBlockConfiguration",
            resource=f"/{b.name}",
            extra={"BucketName": b.name},
        )
    return xml_response(pab.to_xml())


async def delete_public_access_block(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _delete_setting(ctx, ep, PAB)


# --- website and CORS ----------------------------------------------------------------


async def _put_document(
    ctx: Context, req: S3Request, ep: Endpoint, attr: str, normalise: Callable[[bytes], bytes]
) -> S3Response:
    """Store a configuration document as ``normalise`` re-renders it after parsing: one
    UTF-8 form whatever encoding the client declared, and nothing unparsed kept."""
    b = await bucket_of(ctx, ep)
    body = await read_small(req, _CONFIG_BODY)
    await ctx.store.set_bucket_attrs(b.name, {attr: normalise(body).decode("utf-8")})
    return S3Response(200)


async def _get_document(
    ctx: Context, ep: Endpoint, attr: str, missing: str, render: Callable[[bytes], bytes]
) -> S3Response:
    b = await bucket_of(ctx, ep)
    text = b.attrs.get(attr)
    if text is None:
        raise S3Error(missing, resource=f"/{b.name}", extra={"BucketName": b.name})
    return xml_response(render(text.encode()))


async def _delete_setting(ctx: Context, ep: Endpoint, attr: str) -> S3Response:
    b = await bucket_of(ctx, ep)
    await ctx.store.set_bucket_attrs(b.name, {attr: None})
    return S3Response(204)


async def put_bucket_website(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _put_document(
        ctx, req, ep, WEBSITE, lambda body: WebsiteConfiguration.from_xml(body).to_xml()
    )


async def get_bucket_website(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _get_document(
        ctx,
        ep,
        WEBSITE,
        "NoSuchWebsiteConfiguration",
        lambda body: WebsiteConfiguration.from_xml(body).to_xml(),
    )


async def delete_bucket_website(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _delete_setting(ctx, ep, WEBSITE)


async def put_bucket_cors(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _put_document(
        ctx, req, ep, CORS, lambda body: CORSConfiguration.from_xml(body).to_xml()
    )


async def get_bucket_cors(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _get_document(
        ctx,
        ep,
        CORS,
        "NoSuchCORSConfiguration",
        lambda body: CORSConfiguration.from_xml(body).to_xml(),
    )


async def delete_bucket_cors(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _delete_setting(ctx, ep, CORS)


# --- tagging -------------------------------------------------------------------------


async def put_bucket_tagging(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    """The whole tag set at once (AWS replaces it), at most 50 tags, 204 as on AWS."""
    b = await bucket_of(ctx, ep)
    tags = Tagging.from_xml(await read_small(req, _CONFIG_BODY), max_tags=MAX_BUCKET_TAGS)
    await ctx.store.set_bucket_attrs(b.name, {BUCKET_TAGGING: tags.to_xml().decode("utf-8")})
    return S3Response(204)


async def get_bucket_tagging(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    return await _get_document(
        ctx,
        ep,
        BUCKET_TAGGING,
        "NoSuchTagSet",
        lambda body: Tagging.from_xml(body, max_tags=MAX_BUCKET_TAGS).to_xml(),
    )


async def delete_bucket_tagging(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    b = await bucket_of(ctx, ep)
    await ctx.store.set_bucket_attrs(b.name, {BUCKET_TAGGING: None})
    return S3Response(204)
