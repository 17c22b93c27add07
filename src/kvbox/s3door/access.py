"""The access check of every S3 request: gather the facts, ask ``kvbox.policy.decide``.

Layer: s3 door (async glue; the decision itself is pure, in ``kvbox.policy``). Rules:

* One question per (action, resource) a request needs: the operation's own action on
  its resource, the extra actions its headers imply (``x-amz-acl``, ``x-amz-tagging``),
  reading the copy source, and for DeleteObjects each key (``check_key``). All must be
  allowed; the first refusal is AccessDenied.
* Facts come from the request (principal, peer address, TLS, query parameters,
  headers), the bucket (owner, policy, ACL, Block Public Access; ``Store.get_bucket``
  serves them from memory) and, only when they can change the answer, the object: its
  canned ACL is read only when nothing else allowed an object read, and its tags only
  when the policy names ``s3:ExistingObjectTag``.
* Root with no bucket policy is the hot path of a single-user server: decided without
  building a query at all.
* A missing bucket is not an access question: the handler answers NoSuchBucket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from kvbox.core.meta.users import ROOT
from kvbox.core.model import Bucket, ObjectVersion
from kvbox.core.store import Store
from kvbox.policy import (
    NO_BLOCK,
    AccessQuery,
    ContextValue,
    DecidedBy,
    Decision,
    Policy,
    PublicAccessSettings,
    RequestContext,
    decide,
    parse_policy,
    request_context,
)
from kvbox.s3.errors import S3Error
from kvbox.s3.router import OBJECT_OPS, Endpoint, Op, bucket_arn, object_arn
from kvbox.s3.xml import PublicAccessBlockConfiguration, Tagging
from kvbox.s3door.explain import bucket_query
from kvbox.s3door.handlers.common import OBJECT_ACL, PAB, POLICY, TAG
from kvbox.s3door.types import S3Request

#: Object reads an object's own ACL can grant.
_OBJECT_READS = frozenset({"s3:GetObject", "s3:GetObjectVersion"})
#: Listing parameters that are condition keys of s3:ListBucket (and ListBucketVersions).
_LIST_PARAMS = ("prefix", "delimiter", "max-keys")
#: Parsed documents kept per bucket, keyed by their text so a change is never missed.
_CACHE_MAX = 1024


class AccessControl:
    """Decides S3 requests over one store; holds only caches of parsed documents."""

    def __init__(self, store: Store, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store = store
        self._now = now
        self._policies: dict[tuple[str, str], Policy] = {}
        #: Policies (by text) that name s3:ExistingObjectTag: only they need the tags.
        self._tag_policies: set[str] = set()
        self._pabs: dict[str, PublicAccessBlockConfiguration] = {}

    # --- documents ---------------------------------------------------------------------

    def policy_of(self, b: Bucket) -> Policy | None:
        text = b.attrs.get(POLICY)
        if text is None:
            return None
        k = (b.name, text)
        policy = self._policies.get(k)
        if policy is None:
            if len(self._policies) >= _CACHE_MAX:
                self._policies.clear()
                self._tag_policies.clear()
            # Stored policies were validated by PutBucketPolicy, so this cannot fail.
            policy = self._policies[k] = parse_policy(text, b.name)
            if "existingobjecttag" in text.lower():
                self._tag_policies.add(text)
        return policy

    def _needs_tags(self, b: Bucket) -> bool:
        text = b.attrs.get(POLICY)
        return text is not None and text in self._tag_policies

    def pab_of(self, b: Bucket) -> PublicAccessSettings:
        text = b.attrs.get(PAB)
        if text is None:
            return NO_BLOCK
        pab = self._pabs.get(text)
        if pab is None:
            if len(self._pabs) >= _CACHE_MAX:
                self._pabs.clear()
            pab = self._pabs[text] = PublicAccessBlockConfiguration.from_xml(text.encode())
        return pab

    def _query(
        self,
        b: Bucket,
        policy: Policy | None,
        principal: str | None,
        action: str,
        resource: str,
        context: RequestContext,
        object_acl: str | None = None,
    ) -> AccessQuery:
        """``explain.bucket_query`` (the one builder, so ``kvbox policy explain`` sees
        what a request sees) with this instance's cached policy and public access block."""
        return bucket_query(
            b,
            principal=principal,
            action=action,
            resource=resource,
            context=context,
            object_acl=object_acl,
            policy=policy,
            public_access_block=self.pab_of(b),
        )

    # --- requests ----------------------------------------------------------------------

    async def check(self, req: S3Request, ep: Endpoint) -> None:
        """Raise AccessDenied unless every action the request needs is allowed."""
        principal = req.principal
        if ep.op is Op.PREFLIGHT:
            return
        if ep.bucket is None or ep.op is Op.CREATE_BUCKET:
            # ListBuckets and CreateBucket: any signed principal (ListBuckets shows a
            # user only its own buckets); never anonymous.
            if principal is None:
                raise S3Error("AccessDenied")
            return
        b = await self.store.get_bucket(ep.bucket)
        if b is not None and ep.op is not Op.DELETE_OBJECTS:
            # DeleteObjects is decided key by key (``check_key``), on each object's ARN:
            # a grant on bucket/* is all AWS asks for.
            for action in ep.actions:
                await self._require(req, ep, b, action, ep.resource, ep.key, ep.version_id)
        cs = ep.copy_source
        if cs is not None:
            src = await self.store.get_bucket(cs.bucket)
            if src is not None:
                await self._require(req, ep, src, cs.action, cs.resource, cs.key, cs.version_id)
        if principal is None and b is None:
            # S3 answers a stranger AccessDenied rather than confirming a name is free.
            raise S3Error("AccessDenied")

    async def check_list(self, req: S3Request, ep: Endpoint) -> None:
        """AccessDenied unless the requester may list the bucket (S3's rule for telling a
        missing key apart from a forbidden one)."""
        assert ep.bucket is not None
        b = await self.store.get_bucket(ep.bucket)
        if b is not None:
            await self._require(req, ep, b, "s3:ListBucket", bucket_arn(b.name), None, None)

    async def check_key(self, req: S3Request, ep: Endpoint, key: str, action: str) -> None:
        """One entry of DeleteObjects (S3 checks each key on its own)."""
        assert ep.bucket is not None
        b = await self.store.get_bucket(ep.bucket)
        if b is not None:
            await self._require(req, ep, b, action, object_arn(b.name, key), key, None)

    async def allows(
        self,
        req: S3Request,
        ep: Endpoint,
        action: str,
        key: str | None,
        version_id: str | None = None,
        facts: Mapping[str, ContextValue] | None = None,
    ) -> bool:
        """Whether the requester may do ``action`` on ``key`` of ``ep``'s bucket (the
        bucket itself for None), with ``facts`` as further condition keys: for what a
        handler learns later than the routing (``s3:BypassGovernanceRetention`` when a
        request asks to bypass, a retention read from a body, lock headers to show)."""
        assert ep.bucket is not None
        b = await self.store.get_bucket(ep.bucket)
        if b is None:
            return False
        policy = self.policy_of(b)
        if req.principal == ROOT and policy is None:
            return True
        resource = object_arn(b.name, key) if key is not None else bucket_arn(b.name)
        d = await self.decide(req, ep, b, policy, action, resource, key, version_id, facts)
        return d.allowed

    async def _require(
        self,
        req: S3Request,
        ep: Endpoint,
        b: Bucket,
        action: str,
        resource: str,
        key: str | None,
        version_id: str | None,
    ) -> None:
        policy = self.policy_of(b)
        if req.principal == ROOT and policy is None:
            return
        d = await self.decide(req, ep, b, policy, action, resource, key, version_id)
        if not d.allowed:
            raise S3Error("AccessDenied", resource=f"/{b.name}/{key}" if key else f"/{b.name}")

    async def decide(
        self,
        req: S3Request,
        ep: Endpoint,
        b: Bucket,
        policy: Policy | None,
        action: str,
        resource: str,
        key: str | None,
        version_id: str | None,
        facts: Mapping[str, ContextValue] | None = None,
    ) -> Decision:
        extra = self._request_keys(req, ep, version_id)
        if facts:
            extra.update(facts)
        version: ObjectVersion | None = None
        if key is not None and policy is not None and self._needs_tags(b):
            version = await self._version(b.name, key, version_id)
            if version is not None:
                extra.update(_existing_tags(version))
        auth = req.auth
        context = request_context(
            req.principal,
            now=self._now(),
            source_ip=req.remote or None,
            secure_transport=req.secure,
            user_agent=req.header("user-agent"),
            referer=req.header("referer"),
            auth_type=None
            if auth is None
            else ("REST-QUERY-STRING" if auth.presigned else "REST-HEADER"),
            signature_version=None if auth is None else "AWS4-HMAC-SHA256",
            headers=_lock_headers(req),
            extra=extra,
        )
        query = self._query(b, policy, req.principal, action, resource, context)
        d = decide(query)
        if (
            not d.allowed
            # RestrictPublicBuckets cuts a public policy off, never an object's ACL
            and d.decided_by in (DecidedBy.DEFAULT_DENY, DecidedBy.PUBLIC_ACCESS_BLOCK)
            and action in _OBJECT_READS
            and key is not None
        ):
            # Only now is the object's own ACL worth a lookup.
            if version is None:
                version = await self._version(b.name, key, version_id)
            acl = version.attrs.get(OBJECT_ACL) if version is not None else None
            if acl is not None:
                d = decide(dataclasses.replace(query, object_acl=acl))
        return d

    async def _version(self, bucket: str, key: str, version_id: str | None) -> ObjectVersion | None:
        if version_id is not None:
            return await self.store.get_version(bucket, key, version_id)
        return await self.store.head(bucket, key)

    @staticmethod
    def _request_keys(
        req: S3Request, ep: Endpoint, version_id: str | None
    ) -> dict[str, ContextValue]:
        extra: dict[str, ContextValue] = {}
        if ep.op in (Op.LIST_OBJECTS, Op.LIST_OBJECTS_V2, Op.LIST_OBJECT_VERSIONS):
            for name in _LIST_PARAMS:
                value = req.param(name)
                if value is not None:
                    extra["s3:" + name] = value
        acl = req.header("x-amz-acl")
        if acl is not None:
            extra["s3:x-amz-acl"] = acl
        if version_id is not None:
            extra["s3:VersionId"] = version_id
        tagging = req.header("x-amz-tagging")
        if tagging is not None and ep.op in OBJECT_OPS:
            try:
                tags = Tagging.from_header(tagging).tags
            except S3Error:
                tags = ()  # the handler answers the malformed header
            for k, v in tags:
                extra["s3:RequestObjectTag/" + k] = v
            if tags:
                extra["s3:RequestObjectTagKeys"] = [k for k, _ in tags]
        return extra

    # --- the website endpoint ----------------------------------------------------------

    async def anonymous_can(
        self,
        bucket: str,
        action: str,
        key: str | None,
        version: ObjectVersion | None,
        source_ip: str = "",
        secure: bool = False,
        user_agent: str | None = None,
        referer: str | None = None,
    ) -> bool:
        """Whether an anonymous website visitor may do ``action`` (GetObject on ``key``'s
        ``version``, or ListBucket on the bucket): the decision the S3 port makes, from
        the same facts (the visitor's address, TLS, User-Agent, Referer; the served
        version's ACL and, when the policy names them, its tags)."""
        b = await self.store.get_bucket(bucket)
        if b is None:
            return False
        policy = self.policy_of(b)
        extra: dict[str, ContextValue] = {}
        if version is not None and policy is not None and self._needs_tags(b):
            extra = _existing_tags(version)
        resource = object_arn(bucket, key) if key is not None else bucket_arn(bucket)
        context = request_context(
            None,
            now=self._now(),
            source_ip=source_ip or None,
            secure_transport=secure,
            user_agent=user_agent,
            referer=referer,
            extra=extra,
        )
        object_acl = version.attrs.get(OBJECT_ACL) if version is not None else None
        return decide(self._query(b, policy, None, action, resource, context, object_acl)).allowed


#: Request headers that fill ``s3:object-lock-*`` condition keys (``kvbox.policy.context``).
_LOCK_HEADERS = (
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
)


def _lock_headers(req: S3Request) -> dict[str, str] | None:
    found = {h: v for h in _LOCK_HEADERS if (v := req.header(h)) is not None}
    return found or None


def _existing_tags(version: ObjectVersion) -> dict[str, ContextValue]:
    """The ``s3:ExistingObjectTag/<key>`` condition keys of a stored version."""
    return {
        "s3:ExistingObjectTag/" + name[len(TAG) :]: value
        for name, value in version.attrs.items()
        if name.startswith(TAG)
    }
