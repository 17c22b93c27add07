"""S3 request routing: (method, raw path, query, headers) -> ``Endpoint``.

Layer: s3 protocol (pure; no I/O, no clock). Rules:

* ``route`` is a pure function, like garage's ``src/api/s3/router.rs``: it decides which
  S3 operation a request is, its bucket and key, and the IAM action(s) and ARN resource
  a policy check needs. It reads no body and touches no store.
* Addressing: virtual-host style when the Host header is ``<bucket>.<domain>`` (the
  ``--domain`` setting), path style (``/<bucket>/<key>``) otherwise.
* What a bucket or key may be, and how a path component is decoded, is
  ``kvbox.s3.names``'s: this module only applies it.
* An operation this router knows but kvbox does not serve raises ``RouteError``
  (``NotImplemented``, 501); a method that makes no sense for the resource raises
  ``MethodNotAllowed`` (405). Unknown query parameters are ignored, as S3 does.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import parse_qsl

from multidict import CIMultiDict, CIMultiDictProxy

from kvbox.s3.names import RouteError as RouteError  # what ``route`` raises
from kvbox.s3.names import addressable_bucket, check_bucket_name, check_key, decode_component

_CASE_INSENSITIVE = (CIMultiDict, CIMultiDictProxy)

#: Part numbers S3 accepts (UploadPart, GetObject?partNumber).
MIN_PART_NUMBER = 1
MAX_PART_NUMBER = 10_000


class Op(enum.StrEnum):
    """Every S3 operation the router recognises; the value is AWS's operation name."""

    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    HEAD_BUCKET = "HeadBucket"
    DELETE_BUCKET = "DeleteBucket"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    # objects
    PUT_OBJECT = "PutObject"
    POST_OBJECT = "PostObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    DELETE_OBJECT = "DeleteObject"
    DELETE_OBJECTS = "DeleteObjects"
    COPY_OBJECT = "CopyObject"
    PUT_OBJECT_TAGGING = "PutObjectTagging"
    GET_OBJECT_TAGGING = "GetObjectTagging"
    DELETE_OBJECT_TAGGING = "DeleteObjectTagging"
    GET_OBJECT_ACL = "GetObjectAcl"
    PUT_OBJECT_ACL = "PutObjectAcl"
    # listing
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    # multipart
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    # bucket configuration
    PUT_BUCKET_VERSIONING = "PutBucketVersioning"
    GET_BUCKET_VERSIONING = "GetBucketVersioning"
    PUT_BUCKET_POLICY = "PutBucketPolicy"
    GET_BUCKET_POLICY = "GetBucketPolicy"
    DELETE_BUCKET_POLICY = "DeleteBucketPolicy"
    GET_BUCKET_POLICY_STATUS = "GetBucketPolicyStatus"
    PUT_PUBLIC_ACCESS_BLOCK = "PutPublicAccessBlock"
    GET_PUBLIC_ACCESS_BLOCK = "GetPublicAccessBlock"
    DELETE_PUBLIC_ACCESS_BLOCK = "DeletePublicAccessBlock"
    GET_BUCKET_ACL = "GetBucketAcl"
    PUT_BUCKET_ACL = "PutBucketAcl"
    PUT_BUCKET_WEBSITE = "PutBucketWebsite"
    GET_BUCKET_WEBSITE = "GetBucketWebsite"
    DELETE_BUCKET_WEBSITE = "DeleteBucketWebsite"
    PUT_BUCKET_CORS = "PutBucketCors"
    GET_BUCKET_CORS = "GetBucketCors"
    DELETE_BUCKET_CORS = "DeleteBucketCors"
    PUT_BUCKET_OWNERSHIP_CONTROLS = "PutBucketOwnershipControls"
    GET_BUCKET_OWNERSHIP_CONTROLS = "GetBucketOwnershipControls"
    DELETE_BUCKET_OWNERSHIP_CONTROLS = "DeleteBucketOwnershipControls"
    PREFLIGHT = "PreflightRequest"
    GET_BUCKET_LIFECYCLE = "GetBucketLifecycleConfiguration"
    PUT_BUCKET_LIFECYCLE = "PutBucketLifecycleConfiguration"
    DELETE_BUCKET_LIFECYCLE = "DeleteBucketLifecycle"
    # object lock
    PUT_OBJECT_LOCK_CONFIGURATION = "PutObjectLockConfiguration"
    GET_OBJECT_LOCK_CONFIGURATION = "GetObjectLockConfiguration"
    PUT_OBJECT_RETENTION = "PutObjectRetention"
    GET_OBJECT_RETENTION = "GetObjectRetention"
    PUT_OBJECT_LEGAL_HOLD = "PutObjectLegalHold"
    GET_OBJECT_LEGAL_HOLD = "GetObjectLegalHold"
    PUT_BUCKET_TAGGING = "PutBucketTagging"
    GET_BUCKET_TAGGING = "GetBucketTagging"
    DELETE_BUCKET_TAGGING = "DeleteBucketTagging"
    GET_OBJECT_ATTRIBUTES = "GetObjectAttributes"


#: Op -> (IAM action, IAM action when a versionId is given). From AWS's "Actions,
#: resources, and condition keys for Amazon S3" and "Required permissions for Amazon S3
#: API operations". ``None``: no authorization (a CORS preflight is anonymous).
ACTIONS: Mapping[Op, tuple[str | None, str | None]] = MappingProxyType(
    {
        Op.LIST_BUCKETS: ("s3:ListAllMyBuckets", None),
        Op.CREATE_BUCKET: ("s3:CreateBucket", None),
        Op.HEAD_BUCKET: ("s3:ListBucket", None),
        Op.DELETE_BUCKET: ("s3:DeleteBucket", None),
        Op.GET_BUCKET_LOCATION: ("s3:GetBucketLocation", None),
        Op.PUT_OBJECT: ("s3:PutObject", None),
        # the key comes from the form: decided by the handler once it has read it
        Op.POST_OBJECT: ("s3:PutObject", None),
        Op.GET_OBJECT: ("s3:GetObject", "s3:GetObjectVersion"),
        Op.HEAD_OBJECT: ("s3:GetObject", "s3:GetObjectVersion"),
        Op.DELETE_OBJECT: ("s3:DeleteObject", "s3:DeleteObjectVersion"),
        # checked per key by the handler, with ``delete_action(version_id)``
        Op.DELETE_OBJECTS: ("s3:DeleteObject", None),
        Op.COPY_OBJECT: ("s3:PutObject", None),
        Op.PUT_OBJECT_TAGGING: ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
        Op.GET_OBJECT_TAGGING: ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
        Op.DELETE_OBJECT_TAGGING: ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
        Op.GET_OBJECT_ACL: ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
        # and s3:GetObject / s3:GetObjectVersion too (``Endpoint.extra_actions``)
        Op.GET_OBJECT_ATTRIBUTES: ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
        Op.PUT_OBJECT_ACL: ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
        Op.LIST_OBJECTS: ("s3:ListBucket", None),
        Op.LIST_OBJECTS_V2: ("s3:ListBucket", None),
        Op.LIST_OBJECT_VERSIONS: ("s3:ListBucketVersions", None),
        Op.CREATE_MULTIPART_UPLOAD: ("s3:PutObject", None),
        Op.UPLOAD_PART: ("s3:PutObject", None),
        Op.UPLOAD_PART_COPY: ("s3:PutObject", None),
        Op.COMPLETE_MULTIPART_UPLOAD: ("s3:PutObject", None),
        Op.ABORT_MULTIPART_UPLOAD: ("s3:AbortMultipartUpload", None),
        Op.LIST_PARTS: ("s3:ListMultipartUploadParts", None),
        Op.LIST_MULTIPART_UPLOADS: ("s3:ListBucketMultipartUploads", None),
        Op.PUT_BUCKET_VERSIONING: ("s3:PutBucketVersioning", None),
        Op.GET_BUCKET_VERSIONING: ("s3:GetBucketVersioning", None),
        Op.PUT_BUCKET_POLICY: ("s3:PutBucketPolicy", None),
        Op.GET_BUCKET_POLICY: ("s3:GetBucketPolicy", None),
        Op.DELETE_BUCKET_POLICY: ("s3:DeleteBucketPolicy", None),
        Op.GET_BUCKET_POLICY_STATUS: ("s3:GetBucketPolicyStatus", None),
        Op.PUT_PUBLIC_ACCESS_BLOCK: ("s3:PutBucketPublicAccessBlock", None),
        Op.GET_PUBLIC_ACCESS_BLOCK: ("s3:GetBucketPublicAccessBlock", None),
        Op.DELETE_PUBLIC_ACCESS_BLOCK: ("s3:PutBucketPublicAccessBlock", None),
        Op.GET_BUCKET_ACL: ("s3:GetBucketAcl", None),
        Op.PUT_BUCKET_ACL: ("s3:PutBucketAcl", None),
        Op.PUT_BUCKET_WEBSITE: ("s3:PutBucketWebsite", None),
        Op.GET_BUCKET_WEBSITE: ("s3:GetBucketWebsite", None),
        Op.DELETE_BUCKET_WEBSITE: ("s3:DeleteBucketWebsite", None),
        Op.PUT_BUCKET_CORS: ("s3:PutBucketCORS", None),
        Op.GET_BUCKET_CORS: ("s3:GetBucketCORS", None),
        Op.DELETE_BUCKET_CORS: ("s3:PutBucketCORS", None),
        Op.PUT_BUCKET_OWNERSHIP_CONTROLS: ("s3:PutBucketOwnershipControls", None),
        Op.GET_BUCKET_OWNERSHIP_CONTROLS: ("s3:GetBucketOwnershipControls", None),
        Op.DELETE_BUCKET_OWNERSHIP_CONTROLS: ("s3:PutBucketOwnershipControls", None),
        Op.PREFLIGHT: (None, None),
        Op.PUT_BUCKET_TAGGING: ("s3:PutBucketTagging", None),
        Op.GET_BUCKET_TAGGING: ("s3:GetBucketTagging", None),
        Op.DELETE_BUCKET_TAGGING: ("s3:PutBucketTagging", None),
        Op.GET_BUCKET_LIFECYCLE: ("s3:GetLifecycleConfiguration", None),
        Op.PUT_BUCKET_LIFECYCLE: ("s3:PutLifecycleConfiguration", None),
        Op.DELETE_BUCKET_LIFECYCLE: ("s3:PutLifecycleConfiguration", None),
        Op.PUT_OBJECT_LOCK_CONFIGURATION: ("s3:PutBucketObjectLockConfiguration", None),
        Op.GET_OBJECT_LOCK_CONFIGURATION: ("s3:GetBucketObjectLockConfiguration", None),
        Op.PUT_OBJECT_RETENTION: ("s3:PutObjectRetention", None),
        Op.GET_OBJECT_RETENTION: ("s3:GetObjectRetention", None),
        Op.PUT_OBJECT_LEGAL_HOLD: ("s3:PutObjectLegalHold", None),
        Op.GET_OBJECT_LEGAL_HOLD: ("s3:GetObjectLegalHold", None),
    }
)

#: Operations whose resource is an object (``arn:aws:s3:::bucket/key``).
OBJECT_OPS = frozenset(
    {
        Op.PUT_OBJECT,
        Op.POST_OBJECT,
        Op.GET_OBJECT,
        Op.HEAD_OBJECT,
        Op.DELETE_OBJECT,
        Op.COPY_OBJECT,
        Op.PUT_OBJECT_TAGGING,
        Op.GET_OBJECT_TAGGING,
        Op.DELETE_OBJECT_TAGGING,
        Op.PUT_OBJECT_RETENTION,
        Op.GET_OBJECT_RETENTION,
        Op.PUT_OBJECT_LEGAL_HOLD,
        Op.GET_OBJECT_LEGAL_HOLD,
        Op.GET_OBJECT_ACL,
        Op.PUT_OBJECT_ACL,
        Op.GET_OBJECT_ATTRIBUTES,
        Op.CREATE_MULTIPART_UPLOAD,
        Op.UPLOAD_PART,
        Op.UPLOAD_PART_COPY,
        Op.COMPLETE_MULTIPART_UPLOAD,
        Op.ABORT_MULTIPART_UPLOAD,
        Op.LIST_PARTS,
    }
)

#: Ops that write an object and so also need s3:PutObjectTagging / s3:PutObjectAcl when
#: the request sets tags or an ACL in headers (AWS's rule for PutObject and CopyObject).
_OBJECT_WRITES = frozenset({Op.PUT_OBJECT, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD})
_ACL_HEADERS = (
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write",
    "x-amz-grant-write-acp",
)

ARN_PREFIX = "arn:aws:s3:::"


def bucket_arn(bucket: str) -> str:
    """The ARN of a bucket, as policies name it.

    >>> bucket_arn("photos")
    'arn:aws:s3:::photos'
    """
    return ARN_PREFIX + bucket


def object_arn(bucket: str, key: str) -> str:
    """The ARN of an object, as policies name it (the key is not encoded).

    >>> object_arn("photos", "2024/cat.png")
    'arn:aws:s3:::photos/2024/cat.png'
    """
    return f"{ARN_PREFIX}{bucket}/{key}"


def delete_action(version_id: str | None) -> str:
    """The action DeleteObjects needs for one entry of its list."""
    return "s3:DeleteObject" if version_id is None else "s3:DeleteObjectVersion"


@dataclass(frozen=True, slots=True)
class CopySource:
    """The object named by ``x-amz-copy-source`` (decoded)."""

    bucket: str
    key: str
    version_id: str | None = None

    @property
    def action(self) -> str:
        """What the requester needs on the source: reading it (that version)."""
        return "s3:GetObject" if self.version_id is None else "s3:GetObjectVersion"

    @property
    def resource(self) -> str:
        return object_arn(self.bucket, self.key)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One routed S3 request.

    ``action`` is the IAM action a policy check needs (None for a CORS preflight);
    ``extra_actions`` are the further ones headers imply (``x-amz-tagging`` on a write
    needs ``s3:PutObjectTagging``, ``x-amz-acl`` needs ``s3:PutObjectAcl``). For
    DeleteObjects, each listed key is checked by the handler with ``delete_action``
    against ``object_arn``; for copies, ``copy_source.action`` on the source too.
    """

    op: Op
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    upload_id: str | None = None
    part_number: int | None = None
    copy_source: CopySource | None = None
    virtual_host: bool = False
    extra_actions: tuple[str, ...] = ()

    @property
    def action(self) -> str | None:
        plain, versioned = ACTIONS[self.op]
        if self.version_id is not None and versioned is not None:
            return versioned
        return plain

    @property
    def actions(self) -> tuple[str, ...]:
        """Every action the request needs, the operation's own first."""
        action = self.action
        return ((action,) if action is not None else ()) + self.extra_actions

    @property
    def resource(self) -> str:
        """The ARN a policy's Resource is matched against (``*`` for ListBuckets)."""
        if self.bucket is None:
            return "*"
        if self.op in OBJECT_OPS or (self.op is Op.PREFLIGHT and self.key):
            return object_arn(self.bucket, self.key or "")
        return bucket_arn(self.bucket)


# --- headers and query ---------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None or isinstance(headers, _CASE_INSENSITIVE):
        # The server's multidicts already ignore case: an absent header needs no scan
        # (the router asks for a dozen absent ones on every request).
        return value
    for k, v in headers.items():  # a plain dict from a test or another caller
        if k.lower() == name:
            return v
    return None


def _host(headers: Mapping[str, str]) -> str:
    host = (_header(headers, "host") or "").strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".")


def _params(query: Iterable[tuple[str, str]]) -> dict[str, str]:
    """First value of each parameter: S3 ignores repeats of a parameter it reads once."""
    out: dict[str, str] = {}
    for k, v in query:
        out.setdefault(k, v)
    return out


def _version_id(params: Mapping[str, str]) -> str | None:
    v = params.get("versionId")
    if v is None:
        return None
    if v == "":
        raise RouteError(
            "InvalidArgument",
            "Version id cannot be the empty string",
            extra={"ArgumentName": "versionId", "ArgumentValue": ""},
        )
    return v


def parse_part_number(value: str) -> int:
    """A partNumber parameter as S3 reads it: an integer in 1..10000.

    >>> parse_part_number("7")
    7
    """
    if value.isascii() and value.isdigit() and len(value) <= 5:
        n = int(value)
        if MIN_PART_NUMBER <= n <= MAX_PART_NUMBER:
            return n
    raise RouteError(
        "InvalidArgument",
        "Part number must be an integer between 1 and 10000, inclusive",
        extra={"ArgumentName": "partNumber", "ArgumentValue": value},
    )


def parse_copy_source(value: str) -> CopySource:
    """Decode ``x-amz-copy-source``: ``[/]bucket/key[?versionId=id]``, URL-encoded.

    >>> parse_copy_source("/src/a%20b%3Fc?versionId=v1")
    CopySource(bucket='src', key='a b?c', version_id='v1')
    """
    if value.startswith("arn:"):
        raise RouteError("NotImplemented", "Copying from an access point is not supported")
    path, _, qs = value.partition("?")
    path = path.removeprefix("/")
    bucket_raw, sep, key_raw = path.partition("/")
    bad = RouteError(
        "InvalidArgument",
        "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        extra={"ArgumentName": "x-amz-copy-source", "ArgumentValue": value},
    )
    if not sep or not bucket_raw or not key_raw:
        raise bad
    try:
        bucket = decode_component(bucket_raw)
        key = decode_component(key_raw)
    except RouteError:
        raise bad from None
    if not addressable_bucket(bucket):
        raise RouteError("InvalidBucketName", extra={"BucketName": bucket})
    check_key(key)
    version_id: str | None = None
    if qs:
        params = _params(parse_qsl(qs, keep_blank_values=True))
        if "versionId" in params:
            version_id = _version_id(params)
    return CopySource(bucket, key, version_id)


# --- routing -------------------------------------------------------------------------

#: Bucket subresources kvbox recognises but does not serve: NotImplemented (501).
_UNSERVED_BUCKET = (
    "abac",
    "accelerate",
    "analytics",
    "default-storage-class",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "logging",
    "metadataAnnotationTable",
    "metadataConfiguration",
    "metadataInventoryTable",
    "metadataJournalTable",
    "metadataTable",
    "metrics",
    "notification",
    "replication",
    "requestPayment",
    "session",
)
#: Object subresources kvbox recognises but does not serve.
_UNSERVED_OBJECT = (
    "annotation",
    "encryption",
    "part",
    "renameObject",
    "restore",
    "select",
    "torrent",
)

#: Object subresources that only have a GET and a PUT (no DELETE: S3 has none).
_GET_PUT_OBJECT = ("retention", "legal-hold")
#: Bucket subresources that only have a GET and a PUT.
_GET_PUT_BUCKET = ("object-lock",)
#: Headers that set a retention on a new object (PutObject, CopyObject, multipart).
_RETENTION_HEADERS = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")

_BUCKET_GET = (
    ("uploads", Op.LIST_MULTIPART_UPLOADS),
    ("versions", Op.LIST_OBJECT_VERSIONS),
    ("location", Op.GET_BUCKET_LOCATION),
    ("versioning", Op.GET_BUCKET_VERSIONING),
    ("policyStatus", Op.GET_BUCKET_POLICY_STATUS),
    ("policy", Op.GET_BUCKET_POLICY),
    ("publicAccessBlock", Op.GET_PUBLIC_ACCESS_BLOCK),
    ("acl", Op.GET_BUCKET_ACL),
    ("website", Op.GET_BUCKET_WEBSITE),
    ("cors", Op.GET_BUCKET_CORS),
    ("ownershipControls", Op.GET_BUCKET_OWNERSHIP_CONTROLS),
    ("tagging", Op.GET_BUCKET_TAGGING),
    ("lifecycle", Op.GET_BUCKET_LIFECYCLE),
    ("object-lock", Op.GET_OBJECT_LOCK_CONFIGURATION),
)
_BUCKET_PUT = (
    ("versioning", Op.PUT_BUCKET_VERSIONING),
    ("policy", Op.PUT_BUCKET_POLICY),
    ("publicAccessBlock", Op.PUT_PUBLIC_ACCESS_BLOCK),
    ("acl", Op.PUT_BUCKET_ACL),
    ("website", Op.PUT_BUCKET_WEBSITE),
    ("cors", Op.PUT_BUCKET_CORS),
    ("ownershipControls", Op.PUT_BUCKET_OWNERSHIP_CONTROLS),
    ("tagging", Op.PUT_BUCKET_TAGGING),
    ("lifecycle", Op.PUT_BUCKET_LIFECYCLE),
    ("object-lock", Op.PUT_OBJECT_LOCK_CONFIGURATION),
)
_BUCKET_DELETE = (
    ("policy", Op.DELETE_BUCKET_POLICY),
    ("publicAccessBlock", Op.DELETE_PUBLIC_ACCESS_BLOCK),
    ("website", Op.DELETE_BUCKET_WEBSITE),
    ("cors", Op.DELETE_BUCKET_CORS),
    ("ownershipControls", Op.DELETE_BUCKET_OWNERSHIP_CONTROLS),
    ("tagging", Op.DELETE_BUCKET_TAGGING),
    ("lifecycle", Op.DELETE_BUCKET_LIFECYCLE),
)


def write_actions(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The actions a write's headers add to ``s3:PutObject`` (AWS's rule for PutObject,
    CopyObject, CreateMultipartUpload and POST uploads): setting tags, an ACL, a
    retention or a legal hold on the new object.

    >>> write_actions({"x-amz-acl": "private", "x-amz-tagging": "a=b"})
    ('s3:PutObjectTagging', 's3:PutObjectAcl')
    """
    extra: tuple[str, ...] = ()
    if _header(headers, "x-amz-tagging") is not None:
        extra += ("s3:PutObjectTagging",)
    if any(_header(headers, h) is not None for h in _ACL_HEADERS):
        extra += ("s3:PutObjectAcl",)
    if any(_header(headers, h) is not None for h in _RETENTION_HEADERS):
        extra += ("s3:PutObjectRetention",)
    if _header(headers, "x-amz-object-lock-legal-hold") is not None:
        extra += ("s3:PutObjectLegalHold",)
    return extra


def _method_not_allowed(method: str, resource_type: str, allow: str) -> RouteError:
    return RouteError(
        "MethodNotAllowed",
        extra={"Method": method, "ResourceType": resource_type},
        headers={"Allow": allow},
    )


def _not_implemented(name: str) -> RouteError:
    return RouteError("NotImplemented", f"The {name} subresource is not implemented by kvbox")


def _split(path: str, host: str, domain: str | None) -> tuple[str | None, str, bool]:
    """(raw bucket or None, raw key, virtual-host?) from the raw path and Host."""
    if not path.startswith("/"):
        raise RouteError("InvalidURI")
    if domain:
        d = domain.lower().rstrip(".")
        if host.endswith("." + d) and len(host) > len(d) + 1:
            return host[: -len(d) - 1], path[1:], True
    bucket, _, key = path[1:].partition("/")
    return (bucket or None), key, False


def route(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    *,
    domain: str | None,
) -> Endpoint:
    """The S3 operation a request is.

    ``path`` is the raw (still percent-encoded) path without the query; ``query`` the
    decoded (name, value) pairs; ``headers`` a case-insensitive mapping; ``domain`` the
    virtual-host base domain (None: path style only).

    >>> e = route("GET", "/photos/2024/cat%2B1.png", [], {"host": "localhost"}, domain=None)
    >>> (e.op, e.bucket, e.key, e.action)
    (<Op.GET_OBJECT: 'GetObject'>, 'photos', '2024/cat+1.png', 's3:GetObject')
    >>> e.resource
    'arn:aws:s3:::photos/2024/cat+1.png'
    >>> route("GET", "/", [("list-type", "2")], {"host": "photos.s3.local:9000"},
    ...       domain="s3.local").op
    <Op.LIST_OBJECTS_V2: 'ListObjectsV2'>
    """
    method = method.upper()
    params = _params(query)
    bucket_raw, key_raw, vhost = _split(path, _host(headers), domain)

    if bucket_raw is None:
        if method == "GET":
            return Endpoint(Op.LIST_BUCKETS)
        raise _method_not_allowed(method, "SERVICE", "GET")

    bucket = decode_component(bucket_raw)
    if not addressable_bucket(bucket):
        raise RouteError("InvalidBucketName", resource=bucket, extra={"BucketName": bucket})
    key = decode_component(key_raw)
    if key:
        check_key(key)
        ep = _object_op(method, bucket, key, params, headers, vhost)
    else:
        ep = _bucket_op(method, bucket, params, headers, vhost)
    check_headers(ep, headers)
    return ep


#: Server-side encryption headers: kvbox does not encrypt objects at rest, so a request
#: asking for it (or presenting an SSE-C key) is refused rather than stored in clear.
_SSE_HEADERS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key-md5",
)
#: The one storage class kvbox has.
STORAGE_CLASS = "STANDARD"
_STORAGE_CLASS_OPS = frozenset({Op.PUT_OBJECT, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD})


def check_headers(ep: Endpoint, headers: Mapping[str, str]) -> None:
    """Refuse headers that ask for something kvbox does not do, instead of ignoring
    them: server-side encryption (NotImplemented), a storage class other than STANDARD
    (InvalidStorageClass), appends (``x-amz-write-offset-bytes``, NotImplemented), S3
    Object Lambda's ``x-amz-request-route`` (NotImplemented).

    >>> check_headers(Endpoint(Op.PUT_OBJECT, "b", "k"), {"x-amz-storage-class": "STANDARD"})
    >>> try:
    ...     check_headers(Endpoint(Op.PUT_OBJECT, "b", "k"), {"x-amz-storage-class": "GLACIER"})
    ... except RouteError as e:
    ...     print(e.code)
    InvalidStorageClass
    """
    if ep.op is Op.PREFLIGHT:
        return
    if _header(headers, "x-amz-request-route") is not None:
        # WriteGetObjectResponse (S3 Object Lambda), a POST that must not be taken for
        # a browser upload.
        raise RouteError("NotImplemented", "S3 Object Lambda is not supported by kvbox")
    for name in _SSE_HEADERS:
        if _header(headers, name) is not None:
            raise RouteError(
                "NotImplemented",
                f"kvbox does not encrypt objects at rest: the {name} header is not supported",
            )
    if _header(headers, "x-amz-write-offset-bytes") is not None:
        raise RouteError("NotImplemented", "Appending to an object is not supported by kvbox")
    storage_class = _header(headers, "x-amz-storage-class")
    if (
        storage_class is not None
        and ep.op in _STORAGE_CLASS_OPS
        and storage_class.strip() != STORAGE_CLASS
    ):
        # AWS's answer, as POST Object's field gives it too
        raise RouteError(
            "InvalidStorageClass", extra={"StorageClassRequested": storage_class.strip()}
        )


def _bucket_op(
    method: str,
    bucket: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    vhost: bool,
) -> Endpoint:
    def ep(op: Op, extra: tuple[str, ...] = ()) -> Endpoint:
        return Endpoint(op, bucket, virtual_host=vhost, extra_actions=extra)

    for name in _UNSERVED_BUCKET:
        if name in params and method in ("GET", "PUT", "DELETE", "POST"):
            raise _not_implemented(name)
    for name in _GET_PUT_BUCKET:
        if name in params and method in ("DELETE", "POST", "HEAD"):
            # Never fall through to DeleteBucket: object lock cannot be turned off.
            raise _method_not_allowed(method, "BUCKET", "GET, PUT")
    if method == "GET":
        for name, op in _BUCKET_GET:
            if name in params:
                return ep(op)
        list_type = params.get("list-type")
        if list_type is None:
            return ep(Op.LIST_OBJECTS)
        if list_type == "2":
            return ep(Op.LIST_OBJECTS_V2)
        raise RouteError(
            "InvalidArgument",
            "Invalid List Type specified in Request",
            extra={"ArgumentName": "list-type", "ArgumentValue": list_type},
        )
    if method == "HEAD":
        return ep(Op.HEAD_BUCKET)
    if method == "PUT":
        for name, op in _BUCKET_PUT:
            if name in params:
                return ep(op)
        check_bucket_name(bucket)
        extra: tuple[str, ...] = ()
        if any(_header(headers, h) is not None for h in _ACL_HEADERS):
            extra += ("s3:PutBucketAcl",)
        if _header(headers, "x-amz-object-ownership") is not None:
            extra += ("s3:PutBucketOwnershipControls",)
        return ep(Op.CREATE_BUCKET, extra)
    if method == "DELETE":
        for name, op in _BUCKET_DELETE:
            if name in params:
                return ep(op)
        return ep(Op.DELETE_BUCKET)
    if method == "POST":
        if "delete" in params:
            return ep(Op.DELETE_OBJECTS)
        # A browser's form upload: its key and signer are in the body (handlers.post).
        return ep(Op.POST_OBJECT)
    if method == "OPTIONS":
        return ep(Op.PREFLIGHT)
    raise _method_not_allowed(method, "BUCKET", "GET, HEAD, PUT, DELETE, POST, OPTIONS")


def _object_op(
    method: str,
    bucket: str,
    key: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    vhost: bool,
) -> Endpoint:
    def ep(
        op: Op,
        *,
        version_id: str | None = None,
        upload_id: str | None = None,
        part_number: int | None = None,
        copy_source: CopySource | None = None,
    ) -> Endpoint:
        extra = write_actions(headers) if op in _OBJECT_WRITES else ()
        return Endpoint(
            op,
            bucket,
            key,
            version_id=version_id,
            upload_id=upload_id,
            part_number=part_number,
            copy_source=copy_source,
            virtual_host=vhost,
            extra_actions=extra,
        )

    for name in _UNSERVED_OBJECT:
        if name in params and method in ("GET", "PUT", "POST"):
            raise _not_implemented(name)
    for name in _GET_PUT_OBJECT:
        if name in params and method not in ("GET", "PUT", "OPTIONS"):
            # Never fall through to DeleteObject: a DELETE ?legal-hold is no delete.
            raise _method_not_allowed(method, "OBJECT", "GET, PUT")
    if "annotation" in params and method == "DELETE":  # DeleteObjectAnnotation, not the object
        raise _not_implemented("annotation")
    upload_id = params.get("uploadId")
    part_raw = params.get("partNumber")

    if method in ("GET", "HEAD"):
        if method == "GET" and upload_id is not None:
            return ep(Op.LIST_PARTS, upload_id=upload_id)
        if method == "GET" and "tagging" in params:
            return ep(Op.GET_OBJECT_TAGGING, version_id=_version_id(params))
        if method == "GET" and "acl" in params:
            return ep(Op.GET_OBJECT_ACL, version_id=_version_id(params))
        if method == "GET" and "retention" in params:
            return ep(Op.GET_OBJECT_RETENTION, version_id=_version_id(params))
        if method == "GET" and "legal-hold" in params:
            return ep(Op.GET_OBJECT_LEGAL_HOLD, version_id=_version_id(params))
        if method == "GET" and "attributes" in params:
            # AWS asks for the read permission as well as the attributes one.
            version_id = _version_id(params)
            read = "s3:GetObject" if version_id is None else "s3:GetObjectVersion"
            return dataclasses.replace(
                ep(Op.GET_OBJECT_ATTRIBUTES, version_id=version_id), extra_actions=(read,)
            )
        part = parse_part_number(part_raw) if part_raw is not None else None
        op = Op.GET_OBJECT if method == "GET" else Op.HEAD_OBJECT
        return ep(op, version_id=_version_id(params), part_number=part)
    if method == "PUT":
        copy_header = _header(headers, "x-amz-copy-source")
        copy_source = parse_copy_source(copy_header) if copy_header is not None else None
        if upload_id is not None or part_raw is not None:
            if upload_id is None or part_raw is None:
                missing = "uploadId" if upload_id is None else "partNumber"
                raise RouteError("InvalidRequest", f"An UploadPart request must carry {missing}")
            part = parse_part_number(part_raw)
            op = Op.UPLOAD_PART if copy_source is None else Op.UPLOAD_PART_COPY
            return ep(op, upload_id=upload_id, part_number=part, copy_source=copy_source)
        if "tagging" in params:
            return ep(Op.PUT_OBJECT_TAGGING, version_id=_version_id(params))
        if "acl" in params:
            return ep(Op.PUT_OBJECT_ACL, version_id=_version_id(params))
        if "retention" in params:
            return ep(Op.PUT_OBJECT_RETENTION, version_id=_version_id(params))
        if "legal-hold" in params:
            return ep(Op.PUT_OBJECT_LEGAL_HOLD, version_id=_version_id(params))
        if copy_source is not None:
            return ep(Op.COPY_OBJECT, copy_source=copy_source)
        return ep(Op.PUT_OBJECT)
    if method == "DELETE":
        if upload_id is not None:
            return ep(Op.ABORT_MULTIPART_UPLOAD, upload_id=upload_id)
        if "tagging" in params:
            return ep(Op.DELETE_OBJECT_TAGGING, version_id=_version_id(params))
        return ep(Op.DELETE_OBJECT, version_id=_version_id(params))
    if method == "POST":
        if "uploads" in params:
            return ep(Op.CREATE_MULTIPART_UPLOAD)
        if upload_id is not None:
            return ep(Op.COMPLETE_MULTIPART_UPLOAD, upload_id=upload_id)
        raise _method_not_allowed(method, "OBJECT", "GET, HEAD, PUT, DELETE, OPTIONS")
    if method == "OPTIONS":
        return ep(Op.PREFLIGHT)
    raise _method_not_allowed(method, "OBJECT", "GET, HEAD, PUT, DELETE, POST, OPTIONS")
