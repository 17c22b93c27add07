"""Every S3 XML body, in and out.

Layer: s3 protocol (pure; no I/O). Rules:

* Responses are frozen dataclasses with ``to_xml() -> bytes``; request bodies are
  dataclasses with ``from_xml(body) -> instance`` (and ``to_xml`` too, so tests can
  round-trip them). Element names, order and the S3 namespace
  (``http://s3.amazonaws.com/doc/2006-03-01/``) follow AWS's API reference; the
  golden tests in ``tests/s3/test_xml.py`` compare against its examples.
* Untrusted XML is parsed with ``defusedxml`` with DTDs forbidden: no entity
  expansion (billion laughs), no external entities, no DTD retrieval. Bodies are
  size-capped before parsing (``MAX_XML_BODY``, ``MAX_CONFIG_BODY``) and the shape is
  checked strictly: an unknown element, a missing required one, a bad number or
  boolean is ``MalformedXML``, as S3 validates against its schema. Element names are
  matched by local name, so bodies with or without the S3 namespace are accepted.
* Semantic limits that S3 checks while parsing are checked here too, with S3's codes:
  1,000 keys per Delete, 10,000 parts and ascending part numbers per
  CompleteMultipartUpload (``InvalidPartOrder``), tag-set rules (``InvalidTag``),
  CORS and website rules (``InvalidRequest`` / ``InvalidArgument``).
* Timestamps are aware ``datetime`` objects rendered as ``2009-10-12T17:50:30.000Z``;
  ETags are given bare and rendered quoted; with ``encoding_type="url"`` listings
  percent-encode keys, prefixes, delimiters and markers (``%20`` for space, ``%2B`` for
  plus, ``/`` kept), which both ``unquote`` and ``unquote_plus`` clients decode right.
* Characters XML 1.0 cannot carry (U+0001-U+0008 and friends) are written as S3 writes
  them, raw; that is what ``encoding-type=url`` exists for. CR is written ``&#13;`` so a
  key holding one comes back intact.
* Rendering writes strings directly rather than through ElementTree: a 1,000-key
  ListObjectsV2 page renders in a few milliseconds.

The bodies live in one module per family, as the handlers do: ``base`` (limits, the
builder, safe parsing, the ``<Error>`` body, ``Owner``), ``listing``, ``objects`` (copy,
DeleteObjects, tagging, GetObjectAttributes), ``multipart``, ``bucket`` (location,
versioning, CORS, website, CreateBucket) and ``access`` (ACLs, PolicyStatus, Block Public
Access). Everything public is re-exported here: import bodies from ``kvbox.s3.xml``, and
the builder and parsing helpers (``Builder``, ``document``, ``serialize``,
``parse_body``, ``children_of``...) from ``kvbox.s3.xml.base`` when a door module writes
a body of its own.
"""

from kvbox.s3.xml.access import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    PERMISSIONS,
    AccessControlPolicy,
    CannedAcl,
    Grant,
    OwnershipControls,
    PolicyStatus,
    PublicAccessBlockConfiguration,
)
from kvbox.s3.xml.base import (
    CORS_METHODS,
    EMPTY_CHECKSUMS,
    MAX_BUCKET_TAGS,
    MAX_CONFIG_BODY,
    MAX_CORS_RULES,
    MAX_DELETE_OBJECTS,
    MAX_OBJECT_TAGS,
    MAX_PARTS,
    MAX_ROUTING_RULES,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_XML_BODY,
    NS,
    XSI_NS,
    ErrorBody,
    Owner,
    format_timestamp,
    parse_timestamp,
    quote_etag,
    render_error,
    timestamp_from_ns,
    url_encode,
)
from kvbox.s3.xml.bucket import (
    CORSConfiguration,
    CORSRule,
    CreateBucketConfiguration,
    MfaDelete,
    RedirectAllRequestsTo,
    RoutingCondition,
    RoutingRedirect,
    RoutingRule,
    VersioningConfiguration,
    VersioningStatus,
    WebsiteConfiguration,
    render_location,
)
from kvbox.s3.xml.listing import (
    BucketEntry,
    DeleteMarkerEntry,
    ListAllMyBucketsResult,
    ListObjectsResult,
    ListObjectsV2Result,
    ListVersionsResult,
    ObjectEntry,
    VersionEntry,
)
from kvbox.s3.xml.multipart import (
    CompletedPart,
    CompleteMultipartUpload,
    CompleteMultipartUploadResult,
    InitiateMultipartUploadResult,
    ListMultipartUploadsResult,
    ListPartsResult,
    PartEntry,
    UploadEntry,
)
from kvbox.s3.xml.objects import (
    CopyObjectResult,
    CopyPartResult,
    Delete,
    DeletedEntry,
    DeleteErrorEntry,
    DeleteResult,
    GetObjectAttributesResponse,
    ObjectAttribute,
    ObjectIdentifier,
    ObjectPartAttributes,
    ObjectPartsAttributes,
    PostResponse,
    Tagging,
)

__all__ = [
    "ALL_USERS",
    "AUTHENTICATED_USERS",
    "CORS_METHODS",
    "EMPTY_CHECKSUMS",
    "MAX_BUCKET_TAGS",
    "MAX_CONFIG_BODY",
    "MAX_CORS_RULES",
    "MAX_DELETE_OBJECTS",
    "MAX_OBJECT_TAGS",
    "MAX_PARTS",
    "MAX_ROUTING_RULES",
    "MAX_TAG_KEY_CHARS",
    "MAX_TAG_VALUE_CHARS",
    "MAX_XML_BODY",
    "NS",
    "PERMISSIONS",
    "XSI_NS",
    "AccessControlPolicy",
    "BucketEntry",
    "CORSConfiguration",
    "CORSRule",
    "CannedAcl",
    "CompleteMultipartUpload",
    "CompleteMultipartUploadResult",
    "CompletedPart",
    "CopyObjectResult",
    "CopyPartResult",
    "CreateBucketConfiguration",
    "Delete",
    "DeleteErrorEntry",
    "DeleteMarkerEntry",
    "DeleteResult",
    "DeletedEntry",
    "ErrorBody",
    "GetObjectAttributesResponse",
    "Grant",
    "InitiateMultipartUploadResult",
    "ListAllMyBucketsResult",
    "ListMultipartUploadsResult",
    "ListObjectsResult",
    "ListObjectsV2Result",
    "ListPartsResult",
    "ListVersionsResult",
    "MfaDelete",
    "ObjectAttribute",
    "ObjectEntry",
    "ObjectIdentifier",
    "ObjectPartAttributes",
    "ObjectPartsAttributes",
    "Owner",
    "OwnershipControls",
    "PartEntry",
    "PolicyStatus",
    "PostResponse",
    "PublicAccessBlockConfiguration",
    "RedirectAllRequestsTo",
    "RoutingCondition",
    "RoutingRedirect",
    "RoutingRule",
    "Tagging",
    "UploadEntry",
    "VersionEntry",
    "VersioningConfiguration",
    "VersioningStatus",
    "WebsiteConfiguration",
    "format_timestamp",
    "parse_timestamp",
    "quote_etag",
    "render_error",
    "render_location",
    "timestamp_from_ns",
    "url_encode",
]
