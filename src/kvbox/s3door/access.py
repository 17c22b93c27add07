"""The access check of every S3 request: gather the facts, ask ``kvbox.policy.decide``.

Layer: s3 door (async glue; the decision itself is pure, in ``kvbox.policy``). Rules:

* One question per (action, resource) a request needs: the operation's own action on
  its resource, the extra actions its headers imply (``x-amz-acl``, ``x-amz-tagging``),
  reading the copy source, and for DeleteObjects each key (``check_key``). All must be
  allowed; the first refusal is AccessDenied.
* Facts come from the request (principal, peer address, TLS, query parameters,
  headers, the ``s3:x-amz-acl`` and ``s3:x-amz-grant-*`` keys), the bucket (owner,
  policy, ACL, Object Ownership, Block Public Access; ``Store.get_bucket`` serves them
  from memory) and, only when they can change the answer, the object: its ACL and owner
  for the actions its owner decides (``acl.OBJECT_SCOPED``) in a bucket with ACLs on,
  and its tags when the policy names ``s3:ExistingObjectTag``.
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
    Decision,
    Policy,
    PublicAccessSettings,
    RequestContext,
    decide,
    may_allow,
    parse_policy,
    request_context,
)
from kvbox.policy.access import PRIVATE
from kvbox.policy.acl import OBJECT_SCOPED
from kvbox.policy.context import RequestFacts, build_context
from kvbox.s3.errors import S3Error
from kvbox.s3.router import OBJECT_OPS, Endpoint, Op, bucket_arn, object_arn
from kvbox.s3.xml import MAX_BUCKET_TAGS, PublicAccessBlockConfiguration, Tagging
from kvbox.s3door.explain import bucket_query
from kvbox.s3door.handlers.common import BUCKET_TAGGING, OBJECT_ACL, OWNER, PAB, POLICY, TAG
from kvbox.s3door.handlers.config import owner_of
from kvbox.s3door.types import S3Request

#: Operations that create an object (their extra actions are on the new object).
NEW_OBJECT_OPS = frozenset(
    {Op.PUT_OBJECT, Op.POST_OBJECT, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD}
)
#: Parsed documents kept per bucket, keyed by their text so a change is never missed.
_CACHE_MAX = 1024


class AccessControl:
    """Decides S3 requests over one store; holds only caches of parsed documents."""

    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        region: str | None = None,
    ):
        self.store = store
        self._now = now
        #: The server's region (aws:RequestedRegion).
        self.region = region
        self._policies: dict[tuple[str, str], Policy] = {}
        #: Policies (by text) that name s3:ExistingObjectTag: only they need the tags.
        self._tag_policies: set[str] = set()
        self._pabs: dict[str, PublicAccessBlockConfiguration] = {}
        #: Parsed bucket tag sets, by their stored text.
        self._tags: dict[str, dict[str, str]] = {}

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

    def _needs_bucket_tags(self, b: Bucket) -> bool:
        """Whether the bucket's policy names aws:ResourceTag (only then are tags read)."""
        text = b.attrs.get(POLICY)
        return text is not None and "resourcetag" in text.lower()

    def _bucket_tags(self, b: Bucket) -> dict[str, str]:
        text = b.attrs.get(BUCKET_TAGGING)
        if text is None:
            return {}
        tags = self._tags.get(text)
        if tags is None:
            if len(self._tags) >= _CACHE_MAX:
                self._tags.clear()
            parsed = Tagging.from_xml(text.encode(), max_tags=MAX_BUCKET_TAGS).tags
            tags = self._tags[text] = dict(parsed)
        return tags

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
        object_owner: str | None = None,
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
            object_owner=object_owner,
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
        _expected_owner(req, "x-amz-expected-bucket-owner", b, _denied_resource(ep))
        if b is not None and ep.op is not Op.DELETE_OBJECTS:
            # DeleteObjects is decided key by key (``check_key``), on each object's ARN:
            # a grant on bucket/* is all AWS asks for.
            new = ep.op in NEW_OBJECT_OPS
            for i, action in enumerate(ep.actions):
                # The ACL and tags a write sets are on the object it creates, which is
                # its writer's (Object Ownership permitting): decided as such.
                await self._require(
                    req, ep, b, action, ep.resource, ep.key, ep.version_id, new and i > 0
                )
        elif b is not None and principal is None and not self._public_may_delete(b):
            # ...but a stranger whom nothing could let delete is refused whole, before
            # its body is read: exactly what a bucket that does not exist answers.
            raise S3Error("AccessDenied", resource=_denied_resource(ep))
        cs = ep.copy_source
        if cs is not None:
            src = await self.store.get_bucket(cs.bucket)
            _expected_owner(req, "x-amz-source-expected-bucket-owner", src, f"/{cs.bucket}")
            if src is not None:
                await self._require(req, ep, src, cs.action, cs.resource, cs.key, cs.version_id)
        if principal is None and b is None:
            # S3 answers a stranger AccessDenied rather than confirming a name is free,
            # word for word as it would answer for a bucket that exists.
            raise S3Error("AccessDenied", resource=_denied_resource(ep))

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
        new_object: bool = False,
    ) -> None:
        policy = self.policy_of(b)
        if req.principal == ROOT and policy is None:
            return
        d = await self.decide(
            req, ep, b, policy, action, resource, key, version_id, new_object=new_object
        )
        if not d.allowed:
            raise S3Error("AccessDenied", resource=f"/{b.name}/{key}" if key else f"/{b.name}")

    def _public_may_delete(self, b: Bucket) -> bool:
        """Whether an anonymous request could be let delete anything in ``b``: a policy
        statement that could allow it, or an ACL (or ownership) that lets everyone write.
        """
        policy = self.policy_of(b)
        if policy is not None and may_allow(policy, None, _DELETES):
            return True
        context = request_context(None, now=self._now())
        for action in _DELETES:
            query = self._query(b, None, None, action, object_arn(b.name, "*"), context)
            if decide(query).allowed:
                return True
        return False

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
        new_object: bool = False,
    ) -> Decision:
        """``facts``: further condition keys a handler knows; ``new_object``: the action
        is on the object this request creates, which belongs to its writer (where the
        bucket's Object Ownership lets writers own)."""
        extra: dict[str, ContextValue] = dict(facts or {})
        version: ObjectVersion | None = None
        looked = False
        if key is not None and policy is not None and self._needs_tags(b):
            version, looked = await self._version(b.name, key, version_id), True
            if version is not None:
                extra.update(_existing_tags(version))
        tags = self._bucket_tags(b) if policy is not None and self._needs_bucket_tags(b) else {}
        context = build_context(self.facts(req, ep, version_id, extra, bucket_tags=tags))
        query = self._query(b, policy, req.principal, action, resource, context)
        if new_object:
            if req.principal is not None:
                query = dataclasses.replace(query, object_owner=req.principal)
            return decide(query)
        query = await self._object_facts(query, b, action, key, version_id, version, looked)
        return decide(query)

    async def _object_facts(
        self,
        query: AccessQuery,
        b: Bucket,
        action: str,
        key: str | None,
        version_id: str | None,
        version: ObjectVersion | None,
        looked: bool,
    ) -> AccessQuery:
        """``query`` with the object's ACL and owner when they can matter."""
        if key is not None and query.acls_enabled and action.lower() in OBJECT_SCOPED:
            # With ACLs on, the object may belong to someone other than the bucket owner
            # and its own ACL may grant this: both live on the version, read only now.
            if not looked:
                version = await self._version(b.name, key, version_id)
            if version is not None and not version.is_delete_marker:
                query = dataclasses.replace(
                    query,
                    object_acl=version.attrs.get(OBJECT_ACL, PRIVATE),
                    object_owner=version.attrs.get(OWNER),
                )
        return query

    # --- GW-KV -------------------------------------------------------------------------

    def trusts(self, principal: str | None, b: Bucket | None) -> bool:
        """Whether ``principal`` may do anything in ``b`` without asking: root while no
        policy could deny it (the S3 door's own fast path, ``_require``). The GW-KV
        door's fast paths (cached reads, journaled SETs) stay open to such a connection.
        The bucket's owner is not trusted so: with ACLs on, a key another user wrote
        can be that user's (Object Ownership), and is decided as S3 decides it."""
        return b is not None and principal == ROOT and self.policy_of(b) is None

    async def kv_allows(
        self, principal: str | None, bucket: str, action: str, key: str | None, source_ip: str
    ) -> bool:
        """The decision the S3 port makes, for a GW-KV request: ``principal`` (None:
        anonymous) doing ``action`` on ``key`` of ``bucket`` (on the bucket when ``key``
        is None) from ``source_ip``, over plain TCP (``aws:SecureTransport`` false)."""
        b = await self.store.get_bucket(bucket)
        if b is None:
            return False
        if self.trusts(principal, b):
            return True
        policy = self.policy_of(b)
        extra: dict[str, ContextValue] = {}
        version: ObjectVersion | None = None
        looked = False
        if key is not None and policy is not None and self._needs_tags(b):
            version, looked = await self._version(b.name, key, None), True
            if version is not None:
                extra.update(_existing_tags(version))
        context = request_context(
            principal,
            now=self._now(),
            source_ip=source_ip or None,
            secure_transport=False,
            extra=extra,
        )
        resource = object_arn(bucket, key) if key is not None else bucket_arn(bucket)
        query = self._query(b, policy, principal, action, resource, context)
        query = await self._object_facts(query, b, action, key, None, version, looked)
        return decide(query).allowed

    async def _version(self, bucket: str, key: str, version_id: str | None) -> ObjectVersion | None:
        # Its ACL and owner only: a damaged value must not stop a decision (a delete).
        if version_id is not None:
            return await self.store.get_version(bucket, key, version_id, verify=False)
        return await self.store.head(bucket, key, verify=False)

    def facts(
        self,
        req: S3Request,
        ep: Endpoint,
        version_id: str | None,
        extra: RequestContext | None = None,
        *,
        bucket_tags: Mapping[str, str] | None = None,
    ) -> RequestFacts:
        """What the access decision knows of a request: every condition key's value
        comes from these facts through ``kvbox.policy.context.KEY_SOURCES``."""
        auth = req.auth
        auth_type = signature_version = None
        if auth is not None:
            auth_type = "REST-QUERY-STRING" if auth.presigned else "REST-HEADER"
            signature_version = auth.signature_version
        elif req.form_signature is not None:  # a signed POST upload's form
            auth_type, signature_version = "POST", req.form_signature
        params: dict[str, str] = {}
        for name, value in req.query:
            params.setdefault(name, value)  # S3 reads the first of a repeated parameter
        tags: tuple[tuple[str, str], ...] = ()
        tagging = req.header("x-amz-tagging")
        if tagging is not None and ep.op in OBJECT_OPS:
            try:
                tags = Tagging.from_header(tagging).tags
            except S3Error:
                tags = ()  # the handler answers the malformed header
        return RequestFacts(
            req.principal,
            ep.op.value,
            now=self._now(),
            region=self.region,
            source_ip=req.remote or None,
            secure=req.secure,
            tls_version=req.tls_version,
            auth_type=auth_type,
            signature_version=signature_version,
            signed_at=None if auth is None else auth.request_time,
            headers=req.headers,
            params=params,
            version_id=version_id,
            request_tags=tags,
            bucket_tags=dict(bucket_tags or {}),
            extra=dict(extra or {}),
        )

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
        object_acl = object_owner = None
        if version is not None and not version.is_delete_marker:
            object_acl = version.attrs.get(OBJECT_ACL, PRIVATE)
            object_owner = version.attrs.get(OWNER)
        query = self._query(b, policy, None, action, resource, context, object_acl, object_owner)
        return decide(query).allowed


def _expected_owner(req: S3Request, header: str, b: Bucket | None, resource: str) -> None:
    """``x-amz-expected-bucket-owner`` (and ``x-amz-source-expected-bucket-owner`` for a
    copy's source): the client's assertion of who owns the bucket, checked on every
    operation AWS checks it on (all but ListBuckets and CreateBucket). The owner is the
    ID kvbox shows as the bucket's ``Owner`` (GetBucketAcl, listings); a mismatch is
    403 AccessDenied, for root too, naming ``resource`` -- the request's own, as every
    other AccessDenied does, so that a stranger's refusal reads the same whether the
    bucket exists. A missing bucket is the handler's NoSuchBucket."""
    expected = req.header(header)
    if expected is None or b is None:
        return
    if expected.strip() != owner_of(b).id:
        raise S3Error("AccessDenied", resource=resource)


#: What DeleteObjects asks of each key (``check_key``).
_DELETES = ("s3:DeleteObject", "s3:DeleteObjectVersion")


def _denied_resource(ep: Endpoint) -> str:
    """The ``<Resource>`` of AccessDenied for ``ep``, the same whether the bucket exists."""
    assert ep.bucket is not None
    return f"/{ep.bucket}/{ep.key}" if ep.key else f"/{ep.bucket}"


def _existing_tags(version: ObjectVersion) -> dict[str, ContextValue]:
    """The ``s3:ExistingObjectTag/<key>`` condition keys of a stored version."""
    return {
        "s3:ExistingObjectTag/" + name[len(TAG) :]: value
        for name, value in version.attrs.items()
        if name.startswith(TAG)
    }
