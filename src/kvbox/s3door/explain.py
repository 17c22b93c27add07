"""The server side of ``kvbox policy explain``: one access decision, with its reasons.

Layer: s3 door (async, over ``kvbox.core.store.Store``; the decision itself is the pure
``kvbox.policy.access.decide``). Rules:

* ``bucket_query`` builds the ``AccessQuery`` for a request to an existing bucket from
  the bucket's settings (``Bucket.attrs``: ``policy`` JSON text, ``acl`` its ACL,
  ``ownership`` its Object Ownership, ``pab`` PublicAccessBlockConfiguration XML). The
  front door and ``explain`` both use it, so an explanation is the decision a real
  request would get.
* ``explain`` answers ``POST /_kvbox/policy/explain`` (root only; the front door checks
  that): a JSON body ``{"principal": "alice" | "root" | "anonymous" | null, "action":
  "s3:GetObject", "resource": "arn:aws:s3:::b/k", "context": {key: value | [values]},
  "version_id": optional}``. For an object resource the object ACL is read from the
  named version, else the newest one (a delete marker or no object: no object ACL).
  Context keys kvbox would fill for a real request (time, principal type, user name)
  are filled unless the body gives them.
* Every failure is a JSON answer ``{"error": message}``, never an exception, so the
  CLI reports it the same way whatever went wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from kvbox.core.model import Bucket
from kvbox.core.store import Store
from kvbox.errors import KvboxError
from kvbox.policy.access import (
    NO_BLOCK,
    PRIVATE,
    AccessQuery,
    PublicAccessSettings,
    explain_query,
    request_context,
)
from kvbox.policy.acl import LEGACY_OWNERSHIP, ObjectOwnership
from kvbox.policy.conditions import ContextValue, PolicyError, RequestContext
from kvbox.policy.language import S3_ARN_PREFIX, Policy, parse_policy
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import PublicAccessBlockConfiguration
from kvbox.s3door.handlers.common import ACL, OBJECT_ACL, OWNER, OWNERSHIP, PAB, POLICY

#: The reserved path (``_`` cannot start a bucket name, so no S3 request means it).
EXPLAIN_PATH: Final = "/_kvbox/policy/explain"

_ANONYMOUS: Final = "anonymous"


def bucket_policy(bucket: Bucket) -> Policy | None:
    """The bucket's parsed policy (None without one); the stored text was validated on
    PUT, so a PolicyError here means the stored settings were damaged."""
    text = bucket.attrs.get(POLICY)
    return None if text is None else parse_policy(text, bucket.name)


def pab_of(bucket: Bucket) -> PublicAccessSettings:
    xml = bucket.attrs.get(PAB)
    if xml is None:
        return NO_BLOCK
    return PublicAccessBlockConfiguration.from_xml(xml.encode("utf-8"))


def bucket_query(
    bucket: Bucket,
    *,
    principal: str | None,
    action: str,
    resource: str,
    context: RequestContext,
    object_acl: str | None = None,
    object_owner: str | None = None,
    policy: Policy | None = None,
    public_access_block: PublicAccessSettings | None = None,
) -> AccessQuery:
    """The decision's input for a request to ``bucket``. Pass ``policy`` and
    ``public_access_block`` when they are already parsed (``s3.access.AccessControl``
    caches them per document); else they are parsed here."""
    return AccessQuery(
        principal=principal,
        action=action,
        resource=resource,
        bucket=bucket.name,
        bucket_owner=bucket.owner,
        policy=policy if policy is not None else bucket_policy(bucket),
        bucket_acl=bucket.attrs.get(ACL, PRIVATE),
        object_acl=object_acl,
        public_access_block=(
            public_access_block if public_access_block is not None else pab_of(bucket)
        ),
        context=context,
        ownership=ownership_of(bucket),
        object_owner=object_owner,
    )


def ownership_of(bucket: Bucket) -> ObjectOwnership:
    """The bucket's Object Ownership (a bucket from before the setting: ObjectWriter)."""
    value = bucket.attrs.get(OWNERSHIP)
    return LEGACY_OWNERSHIP if value is None else ObjectOwnership(value)


def _split_arn(resource: str) -> tuple[str, str | None]:
    if not resource.startswith(S3_ARN_PREFIX):
        raise ValueError(f"resource must be arn:aws:s3:::<bucket>[/<key>], not {resource!r}")
    bucket, sep, key = resource[len(S3_ARN_PREFIX) :].partition("/")
    if not bucket:
        raise ValueError(f"resource {resource!r} names no bucket")
    return bucket, (key if sep else None)


def _context(raw: Any) -> dict[str, ContextValue]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("context must be an object of {key: value or [values]}")
    out: dict[str, ContextValue] = {}
    for k, v in raw.items():
        if isinstance(v, str):
            out[str(k)] = v
        elif isinstance(v, Sequence) and all(isinstance(x, str) for x in v):
            out[str(k)] = [str(x) for x in v]
        else:
            raise ValueError(f"context value of {k!r} must be a string or a list of strings")
    return out


def parse_principal(raw: Any) -> str | None:
    """``"anonymous"`` or null is an anonymous request; anything else is a name."""
    if raw is None or raw == _ANONYMOUS:
        return None
    if not isinstance(raw, str) or not raw:
        raise ValueError("principal must be a user name, root, anonymous or null")
    return raw


async def explain(store: Store, request: Mapping[str, Any]) -> dict[str, Any]:
    """The decision for the request described by ``request``, as JSON-ready data."""
    try:
        principal = parse_principal(request.get("principal"))
        action = request.get("action")
        resource = request.get("resource")
        if not isinstance(action, str) or not action:
            raise ValueError("action is required, e.g. s3:GetObject")
        if not isinstance(resource, str) or not resource:
            raise ValueError("resource is required, e.g. arn:aws:s3:::bucket/key")
        version_id = request.get("version_id")
        if version_id is not None and not isinstance(version_id, str):
            raise ValueError("version_id must be a string")
        given = _context(request.get("context"))
        name, key = _split_arn(resource)
    except ValueError as exc:
        return {"error": str(exc)}
    bucket = await store.get_bucket(name)
    if bucket is None:
        return {"error": f"no such bucket: {name}"}
    object_acl: str | None = None
    object_owner: str | None = None
    try:
        if key is not None:
            if version_id is not None:
                version = await store.get_version(name, key, version_id, verify=False)
            else:
                version = await store.head(name, key, verify=False)
            if version is not None and not version.is_delete_marker:
                object_acl = version.attrs.get(OBJECT_ACL, PRIVATE)
                object_owner = version.attrs.get(OWNER)
        context = request_context(principal, now=datetime.now(UTC), extra=given)
        query = bucket_query(
            bucket,
            principal=principal,
            action=action,
            resource=resource,
            context=context,
            object_acl=object_acl,
            object_owner=object_owner,
        )
    except PolicyError as exc:
        return {"error": f"the stored bucket policy does not parse: {exc}"}
    except S3Error as exc:
        return {"error": f"the stored bucket settings do not parse: {exc.message}"}
    except KvboxError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return explain_query(query)
