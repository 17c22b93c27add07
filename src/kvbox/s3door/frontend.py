"""The S3 front door: route, authenticate, authorize, dispatch, turn failures into S3 XML.

Layer: s3 door (async, over ``kvbox.core``; knows no aiohttp: ``kvbox.server.http``
adapts requests to ``kvbox.s3door.types.S3Request`` and writes the ``S3Response``
back). Rules:

* Order per request: route (pure, ``kvbox.s3.router``), authenticate (pure,
  ``kvbox.auth.sigv4``; the clock is read here and passed in), authorize
  (``kvbox.s3door.access``: the owner, root, bucket policies, canned ACLs and Block
  Public Access, decided by the pure ``kvbox.policy``), then the handler. A request
  with no credentials at all is anonymous: only a policy or a public ACL lets it in.
* Identities: the root key (from ``kvbox.credentials``) and the users' keys in the
  MetaStore. A user key's lookup is cached for ``KEY_CACHE_SECONDS``, so a disabled key
  stops working within that time; at once on this server, and within the bound of
  ``kvbox.core.meta.postgres.changes`` on the others that share its metadata
  (``Store.identity_epoch``). The principal ("root", the user name, or None for
  anonymous) goes on the request.
* ``/_kvbox/admin/...`` is not S3: ``kvbox.s3door.admin`` answers it, for root only.
* Every failure leaves as S3's XML ``<Error>``: an ``S3Error`` as is, any ``KvboxError``
  by its row of ``kvbox.errors.WIRE`` (``kvbox.s3.errors.from_kvbox_error``), and
  anything else as InternalError, logged with its traceback here and never shown to
  the client.
* Every response carries ``x-amz-request-id`` and ``x-amz-id-2``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from multidict import CIMultiDict

from kvbox.auth.mechanism import Verified, authenticate
from kvbox.auth.sigv2 import SigV2Result
from kvbox.config import SERVER
from kvbox.core.lifecycle.worker import LifecycleWorker
from kvbox.core.meta.users import ROOT
from kvbox.errors import DataDamaged, KvboxError
from kvbox.s3.errors import S3Error, from_kvbox_error
from kvbox.s3.router import Endpoint, Op, route
from kvbox.s3.xml import render_error
from kvbox.s3door import admin, explain
from kvbox.s3door.access import AccessControl
from kvbox.s3door.explain import EXPLAIN_PATH
from kvbox.s3door.handlers import (
    acl,
    attributes,
    bucket,
    config,
    lifecycle,
    listing,
    lock,
    multipart,
    post,
)
from kvbox.s3door.handlers import cors as cors_handlers
from kvbox.s3door.handlers import object as obj
from kvbox.s3door.handlers.common import Context, read_small
from kvbox.s3door.lifecycle_admin import LIFECYCLE_PATH, lifecycle_command
from kvbox.s3door.types import S3Request, S3Response

log = logging.getLogger("kvbox.s3")

#: How long a user key's lookup (found or not) is trusted before asking the store again.
KEY_CACHE_SECONDS = 5.0

Handler = Callable[[Context, S3Request, Endpoint], Awaitable[S3Response]]

HANDLERS: dict[Op, Handler] = {
    Op.PREFLIGHT: cors_handlers.preflight,
    Op.LIST_BUCKETS: bucket.list_buckets,
    Op.CREATE_BUCKET: bucket.create_bucket,
    Op.HEAD_BUCKET: bucket.head_bucket,
    Op.DELETE_BUCKET: bucket.delete_bucket,
    Op.GET_BUCKET_LOCATION: bucket.get_bucket_location,
    Op.PUT_OBJECT: obj.put_object,
    Op.POST_OBJECT: post.post_object,
    Op.GET_OBJECT: obj.get_object,
    Op.HEAD_OBJECT: obj.head_object,
    Op.DELETE_OBJECT: obj.delete_object,
    Op.DELETE_OBJECTS: obj.delete_objects,
    Op.COPY_OBJECT: obj.copy_object,
    Op.PUT_OBJECT_TAGGING: obj.put_object_tagging,
    Op.GET_OBJECT_TAGGING: obj.get_object_tagging,
    Op.DELETE_OBJECT_TAGGING: obj.delete_object_tagging,
    Op.LIST_OBJECTS: listing.list_objects,
    Op.LIST_OBJECTS_V2: listing.list_objects_v2,
    Op.LIST_OBJECT_VERSIONS: listing.list_object_versions,
    Op.GET_OBJECT_ACL: obj.get_object_acl,
    Op.GET_OBJECT_ATTRIBUTES: attributes.get_object_attributes,
    Op.PUT_BUCKET_TAGGING: config.put_bucket_tagging,
    Op.GET_BUCKET_TAGGING: config.get_bucket_tagging,
    Op.DELETE_BUCKET_TAGGING: config.delete_bucket_tagging,
    Op.PUT_OBJECT_ACL: obj.put_object_acl,
    Op.PUT_BUCKET_VERSIONING: config.put_bucket_versioning,
    Op.GET_BUCKET_VERSIONING: config.get_bucket_versioning,
    Op.PUT_BUCKET_POLICY: config.put_bucket_policy,
    Op.GET_BUCKET_POLICY: config.get_bucket_policy,
    Op.DELETE_BUCKET_POLICY: config.delete_bucket_policy,
    Op.GET_BUCKET_POLICY_STATUS: config.get_bucket_policy_status,
    Op.PUT_PUBLIC_ACCESS_BLOCK: config.put_public_access_block,
    Op.GET_PUBLIC_ACCESS_BLOCK: config.get_public_access_block,
    Op.DELETE_PUBLIC_ACCESS_BLOCK: config.delete_public_access_block,
    Op.GET_BUCKET_ACL: acl.get_bucket_acl,
    Op.PUT_BUCKET_ACL: acl.put_bucket_acl,
    Op.PUT_BUCKET_OWNERSHIP_CONTROLS: acl.put_bucket_ownership_controls,
    Op.GET_BUCKET_OWNERSHIP_CONTROLS: acl.get_bucket_ownership_controls,
    Op.DELETE_BUCKET_OWNERSHIP_CONTROLS: acl.delete_bucket_ownership_controls,
    Op.PUT_BUCKET_WEBSITE: config.put_bucket_website,
    Op.GET_BUCKET_WEBSITE: config.get_bucket_website,
    Op.DELETE_BUCKET_WEBSITE: config.delete_bucket_website,
    Op.PUT_BUCKET_CORS: config.put_bucket_cors,
    Op.GET_BUCKET_CORS: config.get_bucket_cors,
    Op.DELETE_BUCKET_CORS: config.delete_bucket_cors,
    Op.CREATE_MULTIPART_UPLOAD: multipart.create_multipart_upload,
    Op.UPLOAD_PART: multipart.upload_part,
    Op.UPLOAD_PART_COPY: multipart.upload_part_copy,
    Op.COMPLETE_MULTIPART_UPLOAD: multipart.complete_multipart_upload,
    Op.ABORT_MULTIPART_UPLOAD: multipart.abort_multipart_upload,
    Op.LIST_PARTS: multipart.list_parts,
    Op.LIST_MULTIPART_UPLOADS: multipart.list_multipart_uploads,
    Op.PUT_BUCKET_LIFECYCLE: lifecycle.put_bucket_lifecycle,
    Op.GET_BUCKET_LIFECYCLE: lifecycle.get_bucket_lifecycle,
    Op.DELETE_BUCKET_LIFECYCLE: lifecycle.delete_bucket_lifecycle,
    Op.PUT_OBJECT_LOCK_CONFIGURATION: lock.put_object_lock_configuration,
    Op.GET_OBJECT_LOCK_CONFIGURATION: lock.get_object_lock_configuration,
    Op.PUT_OBJECT_RETENTION: lock.put_object_retention,
    Op.GET_OBJECT_RETENTION: lock.get_object_retention,
    Op.PUT_OBJECT_LEGAL_HOLD: lock.put_object_legal_hold,
    Op.GET_OBJECT_LEGAL_HOLD: lock.get_object_legal_hold,
}


#: Request ids need to be unique, not secret: a PRNG seeded from the OS at start-up.
#: ``os.urandom`` per request made a syscall that also released the GIL, so every
#: request handed the loop's thread over to the metadata writer twice.
_IDS: Final = random.Random()


def new_request_id() -> str:
    """16 upper-case hex digits, the shape of AWS's x-amz-request-id."""
    return f"{_IDS.getrandbits(64):016X}"


def host_id() -> str:
    return base64.b64encode(_IDS.randbytes(24)).decode("ascii")


def translate(exc: BaseException, resource: str | None = None) -> S3Error:
    """The S3 error a client sees for ``exc`` (see the module docstring)."""
    return from_kvbox_error(exc, resource=resource)


class S3Frontend:
    """Answers S3 requests over one ``Store`` for the root credentials."""

    def __init__(
        self,
        ctx: Context,
        *,
        access_key: str,
        secret_key: str,
        domain: str | None = None,
        sigv2: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        lifecycle: LifecycleWorker | None = None,
        lifecycle_test_clock: bool = False,
    ) -> None:
        self.access = AccessControl(ctx.store, now, region=ctx.region)
        self.ctx = dataclasses.replace(
            ctx,
            check_key=self.access.check_key,
            allows=self.access.allows,
            authorize=self.access.check,
            key_secret=self.key_secret,
            now=now,
        )
        self.lifecycle = lifecycle
        self.lifecycle_test_clock = lifecycle_test_clock
        self._access_key = access_key
        self._secret_key = secret_key
        self.domain = domain
        #: Whether SigV2 (legacy) signatures are accepted (``kvbox serve --sigv2``).
        self.sigv2 = sigv2
        self._now = now
        self._keys: dict[str, tuple[float, tuple[str, str] | None]] = {}
        self._keys_epoch = 0

    def _cached(self, access_key: str) -> tuple[str, str] | None:
        """(principal, secret) of ``access_key``; raises ``_NeedLookup`` when the cache
        has no fresh answer, so the caller can ask the store and try again."""
        if access_key == self._access_key:
            return ROOT, self._secret_key
        epoch = self.ctx.store.identity_epoch
        if epoch != self._keys_epoch:  # another gateway changed a user or key
            self._keys.clear()
            self._keys_epoch = epoch
        hit = self._keys.get(access_key)
        if hit is None or hit[0] < time.monotonic():
            raise _NeedLookup(access_key)
        return hit[1]

    def _lookup_secret(self, access_key: str) -> str | None:
        found = self._cached(access_key)
        return found[1] if found is not None else None

    async def _fetch_key(self, access_key: str) -> None:
        if len(self._keys) > 10_000:  # bound the cache against random key ids
            self._keys.clear()
        found = await self.ctx.store.meta.lookup_key(access_key)
        self._keys[access_key] = (time.monotonic() + KEY_CACHE_SECONDS, found)

    async def key_secret(self, access_key: str) -> tuple[str, str] | None:
        """(principal, secret) of ``access_key`` through the same cache as signed
        requests (a POST form's signature is checked by its handler; GW-KV's AUTH asks here too,
        so a key disabled with ``kvbox admin`` stops working on every door alike)."""
        try:
            return self._cached(access_key)
        except _NeedLookup:
            await self._fetch_key(access_key)
            return self._cached(access_key)

    async def authenticate(self, req: S3Request, ep: Endpoint | None = None) -> Verified | None:
        """Verify the signature and set ``req.principal`` (None when unsigned).

        SigV4 scopes must name this server's region (``Context.region``): AWS answers a
        request signed for another region AuthorizationHeaderMalformed naming the right
        one, and so does kvbox. ``ep`` gives SigV2 the bucket of a virtual-hosted request.
        """
        bucket = ep.bucket if ep is not None and ep.virtual_host else None
        for _ in range(2):
            try:
                result = authenticate(
                    req.method,
                    req.raw_path,
                    req.raw_query,
                    list(req.headers.items()),
                    self._lookup_secret,
                    self._now(),
                    region=self.ctx.region,
                    sigv2_enabled=self.sigv2,
                    bucket=bucket,
                )
            except _NeedLookup as need:
                await self._fetch_key(need.access_key)
                continue
            if result is None:
                # No credentials at all: an anonymous request, which only a bucket
                # policy or a public ACL can let through (``AccessControl``).
                req.principal = None
                return None
            found = self._cached(result.access_key)
            assert found is not None
            req.principal = found[0]
            return result
        raise S3Error("InternalError")  # the cache was just filled: unreachable

    def _signed_query_headers(self, req: S3Request, ep: Endpoint) -> Endpoint:
        """A SigV2 presigned URL carries the x-amz-* and Content-Type/-MD5 headers it
        signed in its query (botocore puts them there); they apply as the request's own
        headers, as on AWS, and the request is routed again, so that the actions they
        imply (``x-amz-acl`` needs s3:PutObjectAcl) are checked too."""
        auth = req.auth
        if not isinstance(auth, SigV2Result) or not auth.query_headers:
            return ep
        headers = CIMultiDict(req.headers)
        for name, value in auth.query_headers:
            if name not in headers:
                headers.add(name, value)
        req.headers = headers
        return route(req.method, req.raw_path, req.query, req.headers, domain=self.domain)

    async def handle(self, req: S3Request) -> S3Response:
        """Answer one request; never raises (except cancellation)."""
        resource = req.raw_path
        cors_bucket: str | None = None
        try:
            if req.raw_path == admin.ADMIN_PATH:
                req.op = "Admin"
                resp = await self._admin(req)
            elif req.raw_path == EXPLAIN_PATH:
                req.op = "PolicyExplain"
                resp = await self._explain(req)
            elif req.raw_path == LIFECYCLE_PATH:
                req.op = "Lifecycle"
                resp = await self._lifecycle(req)
            else:
                ep = route(req.method, req.raw_path, req.query, req.headers, domain=self.domain)
                req.op = ep.op.value
                resource = req.resource = _resource(ep)
                cors_bucket = ep.bucket
                if ep.op is not Op.PREFLIGHT:  # browsers send preflights unsigned
                    req.auth = await self.authenticate(req, ep)
                    ep = self._signed_query_headers(req, ep)
                    ep = await self._pin_instant(req, ep)
                    if ep.op is not Op.POST_OBJECT:  # its form says who and what: the
                        await self._check_access(req, ep)  # handler checks (handlers.post)
                try:
                    resp = await self._dispatch(req, ep)
                except S3Error as exc:
                    if (
                        exc.code == "NoSuchKey"
                        and ep.op in _READS
                        and "x-amz-delete-marker" not in exc.headers
                    ):
                        # AWS answers 404 for a key that never existed only to those who
                        # may list the bucket; anyone else learns nothing about which
                        # keys exist: 403. A delete marker is a 404 for every reader.
                        await self.access.check_list(req, ep)
                    raise
        except Exception as exc:
            err = translate(exc, resource)
            req.error = err.code
            # Damage is the Store's to log, once per object (kvbox.core.integrity).
            if err.code == "InternalError" and not isinstance(exc, S3Error | DataDamaged):
                log.exception("S3 %s %s failed (request %s)", req.method, resource, req.request_id)
            elif isinstance(exc, KvboxError | S3Error):
                log.debug("S3 %s %s: %s", req.method, resource, err.code)
            resp = self.error_response(err, req)
            _forget_frames(exc)
        if cors_bucket is not None and req.op != Op.PREFLIGHT.value:
            # Error responses too: a page can read a 404 only through these headers.
            try:
                resp.headers.update(await cors_handlers.cors_headers(self.ctx, req, cors_bucket))
            except Exception:  # a broken CORS document must not break the response
                log.exception("CORS headers for %s failed", cors_bucket)
        self._stamp(resp, req)
        return resp

    async def _check_access(self, req: S3Request, ep: Endpoint) -> None:
        """``AccessControl.check``, and S3's one rule for a read of a missing key.

        A GET/HEAD of a key that does not exist answers 404 to whoever may list the
        bucket and 403 to anyone else -- however the listing right was granted. A read
        the access check refused may have been refused only because there was no object
        (and so no object ACL) to grant it: if the key is indeed missing and the reader
        may list the bucket, the answer is NoSuchKey, as when a policy grants the read.
        """
        try:
            await self.access.check(req, ep)
        except S3Error as exc:
            if exc.code != "AccessDenied" or not await self._missing_but_listable(req, ep):
                raise
            raise S3Error(
                "NoSuchKey", resource=_resource(ep), extra={"Key": ep.key or ""}
            ) from None

    async def _missing_but_listable(self, req: S3Request, ep: Endpoint) -> bool:
        if ep.op not in _READS or ep.version_id is not None or ep.bucket is None or not ep.key:
            return False
        store = self.ctx.store
        if await store.get_bucket(ep.bucket) is None or await store.head(ep.bucket, ep.key):
            return False
        try:
            await self.access.check_list(req, ep)
        except S3Error:
            return False
        return True

    async def _admin(self, req: S3Request) -> S3Response:
        """``POST /_kvbox/admin``: one ``kvbox admin`` command, for root only."""
        if req.method != "POST":
            raise S3Error("MethodNotAllowed", resource=admin.ADMIN_PATH)
        req.auth = await self.authenticate(req)
        if req.principal != ROOT:
            raise S3Error("AccessDenied", resource=admin.ADMIN_PATH)
        try:
            cmd = json.loads(await read_small(req, 64 * 1024))
            noun, verb, target = (str(cmd[k]) for k in ("noun", "verb", "target"))
        except (ValueError, KeyError, TypeError):
            raise S3Error("MalformedXML", "expected a JSON admin command") from None
        status, lines = await admin.run_command(self.ctx.store.meta, noun, verb, target)
        if status == 0:
            self._keys.clear()  # a changed key or user counts at once on this server
        body = json.dumps({"status": status, "lines": lines}).encode()
        return S3Response(200, {"Content-Type": "application/json"}, body)

    async def _pin_instant(self, req: S3Request, ep: Endpoint) -> Endpoint:
        """A time-travel read (``x-kvbox-at``) names the version that was newest then:
        resolve it *before* the access check, so the check sees what will be served. A
        version that is no longer the newest is a noncurrent version, which needs
        ``s3:GetObjectVersion`` exactly like ``?versionId=`` (and its own ACL and tags).
        """
        if ep.op not in _READS or ep.version_id is not None or ep.bucket is None:
            return ep
        value = req.param(obj.AT_PARAM) or req.header(obj.AT_PARAM)
        if value is None or ep.key is None:
            return ep
        at = obj.parse_instant(value)
        if await self.ctx.store.get_bucket(ep.bucket) is None:
            return ep  # the handler answers NoSuchBucket
        then = await self.ctx.store.version_at(ep.bucket, ep.key, at)
        if then is None or then.is_delete_marker:
            return ep  # nothing then: the handler answers NoSuchKey
        now = await self.ctx.store.head(ep.bucket, ep.key, verify=False)  # its id only
        if now is not None and now.version_id == then.version_id:
            return ep
        return dataclasses.replace(ep, version_id=then.s3_version_id)

    async def _explain(self, req: S3Request) -> S3Response:
        """``POST /_kvbox/policy/explain``: ``kvbox policy explain --server``, root only."""
        if req.method != "POST":
            raise S3Error("MethodNotAllowed", resource=EXPLAIN_PATH)
        req.auth = await self.authenticate(req)
        if req.principal != ROOT:
            raise S3Error("AccessDenied", resource=EXPLAIN_PATH)
        try:
            query = json.loads(await read_small(req, 64 * 1024))
            if not isinstance(query, dict):
                raise ValueError("not an object")
            answer = await explain.explain(self.ctx.store, query)
        except (ValueError, KeyError, TypeError) as exc:
            raise S3Error("InvalidArgument", f"bad explain request: {exc}") from None
        body = json.dumps(answer).encode()
        return S3Response(200, {"Content-Type": "application/json"}, body)

    async def _lifecycle(self, req: S3Request) -> S3Response:
        """``POST /_kvbox/lifecycle`` (``kvbox.s3door.lifecycle_admin``), root only."""
        if req.method != "POST":
            raise S3Error("MethodNotAllowed", resource=LIFECYCLE_PATH)
        req.auth = await self.authenticate(req)
        if req.principal != ROOT or self.lifecycle is None:
            raise S3Error("AccessDenied", resource=LIFECYCLE_PATH)
        try:
            doc = json.loads(await read_small(req, 64 * 1024))
        except ValueError:
            raise S3Error("InvalidArgument", "expected a JSON object") from None
        answer = await lifecycle_command(self.lifecycle, doc, test_clock=self.lifecycle_test_clock)
        return S3Response(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())

    async def _dispatch(self, req: S3Request, ep: Endpoint) -> S3Response:
        handler = HANDLERS.get(ep.op)
        if handler is not None:
            return await handler(self.ctx, req, ep)
        raise S3Error("NotImplemented", f"{ep.op.value} is not implemented yet")

    def error_response(self, err: S3Error, req: S3Request) -> S3Response:
        headers = dict(err.headers)
        body = b""
        if err.has_body and req.method != "HEAD":
            body = render_error(err, request_id=req.request_id)
            headers["Content-Type"] = "application/xml"
        return S3Response(err.status, headers, body)

    @staticmethod
    def _stamp(resp: S3Response, req: S3Request) -> None:
        resp.headers["x-amz-request-id"] = req.request_id
        resp.headers["x-amz-id-2"] = host_id()
        resp.headers.setdefault("Server", SERVER)


#: Reads whose NoSuchKey depends on s3:ListBucket.
_READS = frozenset({Op.GET_OBJECT, Op.HEAD_OBJECT, Op.GET_OBJECT_ATTRIBUTES})


class _NeedLookup(Exception):
    """Raised through ``authenticate`` when a user key is not cached yet."""

    def __init__(self, access_key: str) -> None:
        super().__init__(access_key)
        self.access_key = access_key


def _forget_frames(exc: BaseException) -> None:
    """Drop the locals of every finished frame an error passed through.

    The error is kept by a local of ``handle`` (``err``), whose frame is in the error's
    own traceback: a cycle, which holds every frame below it with its locals -- for an
    upload cut off mid-body, ``Store.put_stream``'s chunk buffer of up to 8 MiB -- until
    the cyclic collector runs, and kvbox runs it rarely (``server/app.py``). A client that
    vanished must not leave megabytes behind it (issue 10: 40 cut uploads held ~270 MB),
    so the frames are cleared here, causes and contexts included; ``handle``'s own frame
    is still running and is skipped.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        traceback.clear_frames(cur.__traceback__)
        cur = cur.__cause__ or cur.__context__


def _resource(ep: Endpoint) -> str:
    if ep.bucket is None:
        return "/"
    return f"/{ep.bucket}/{ep.key}" if ep.key else f"/{ep.bucket}"
