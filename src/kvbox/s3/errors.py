"""S3 error codes: the one table (code -> HTTP status, default message) and ``S3Error``.

Layer: s3 protocol (pure; no I/O). Rules:

* Every error an S3 client can see is a row of ``ERRORS``; raising an ``S3Error`` with a
  code that is not in the table is a programming error (``KeyError`` at construction),
  so a typo never reaches a client as an unknown code.
* The core's ``KvboxError`` tree is translated here, in one place
  (``from_kvbox_error``), looked up along the exception's MRO like ``GWKV_CODES``.
  Only 4xx rows whose core message is written for users keep that message; everything
  else gets the table's default, so no path, SQL or traceback text reaches a client.
* XML rendering of the ``<Error>`` body lives in ``kvbox.s3.xml.render_error``.

Codes, statuses and default messages follow AWS's "Error responses" page of the S3 API
reference (``https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from kvbox import errors as core
from kvbox.auth import sigv4
from kvbox.core.meta import users
from kvbox.policy.conditions import PolicyError
from kvbox.proto import awschunked


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One row of the table: what a client gets for ``code`` unless told more."""

    code: str
    status: int
    message: str


def _table(rows: Iterable[tuple[str, int, str]]) -> Mapping[str, ErrorSpec]:
    table: dict[str, ErrorSpec] = {}
    for code, status, message in rows:
        if code in table:  # pragma: no cover - guards the literal below
            raise ValueError(f"duplicate S3 error code {code}")
        table[code] = ErrorSpec(code, status, message)
    return MappingProxyType(table)


#: The one table. Sorted by code; statuses are AWS's.
ERRORS: Mapping[str, ErrorSpec] = _table(
    [
        ("AccessDenied", 403, "Access Denied"),
        (
            "AccessForbidden",
            403,
            "CORSResponse: This CORS request is not allowed. This is usually because the "
            "evaluation of Origin, request method / Access-Control-Request-Method or "
            "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
        (
            "AuthorizationHeaderMalformed",
            400,
            "The authorization header you provided is invalid.",
        ),
        (
            "AuthorizationQueryParametersError",
            400,
            "The query-string authentication parameters you provided are invalid.",
        ),
        (
            "BadDigest",
            400,
            "The Content-MD5 or checksum value you specified did not match what we received.",
        ),
        ("BadRequest", 400, "Insufficient information. Origin request header needed."),
        (
            "BucketAlreadyExists",
            409,
            "The requested bucket name is not available. The bucket namespace is shared by "
            "all users of the system. Please select a different name and try again.",
        ),
        (
            "BucketAlreadyOwnedByYou",
            409,
            "Your previous request to create the named bucket succeeded and you already own it.",
        ),
        ("BucketNotEmpty", 409, "The bucket you tried to delete is not empty"),
        (
            "ConditionalRequestConflict",
            409,
            "A conflicting operation occurred. If using PutObject you can retry the request.",
        ),
        ("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size."),
        (
            "EntityTooSmall",
            400,
            "Your proposed upload is smaller than the minimum allowed object size.",
        ),
        ("ExpiredToken", 400, "The provided token has expired."),
        (
            "IllegalLocationConstraintException",
            400,
            "The specified location-constraint is not valid for this endpoint.",
        ),
        (
            "IllegalVersioningConfigurationException",
            400,
            "The versioning configuration specified in the request is invalid.",
        ),
        (
            "IncompleteBody",
            400,
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        ),
        ("InternalError", 500, "We encountered an internal error. Please try again."),
        (
            "InvalidAccessKeyId",
            403,
            "The AWS Access Key Id you provided does not exist in our records.",
        ),
        ("InvalidArgument", 400, "Invalid Argument"),
        ("InvalidBucketName", 400, "The specified bucket is not valid."),
        (
            "InvalidBucketState",
            409,
            "The request is not valid with the current state of the bucket.",
        ),
        (
            "InvalidChunkSizeError",
            400,
            "Only the last chunk is allowed to have a size less than 8192 bytes",
        ),
        ("InvalidDigest", 400, "The Content-MD5 or checksum value you specified is not valid."),
        ("InvalidLocationConstraint", 400, "The specified location constraint is not valid."),
        (
            "InvalidObjectState",
            403,
            "The operation is not valid for the object's storage class or state.",
        ),
        (
            "InvalidPart",
            400,
            "One or more of the specified parts could not be found. The part may not have been "
            "uploaded, or the specified entity tag may not match the part's entity tag.",
        ),
        (
            "InvalidPartOrder",
            400,
            "The list of parts was not in ascending order. The parts list must be specified "
            "in order by part number.",
        ),
        ("InvalidRange", 416, "The requested range is not satisfiable"),
        ("InvalidRedirectLocation", 400, "The website redirect location is not valid."),
        ("InvalidRequest", 400, "Invalid Request"),
        ("InvalidStorageClass", 400, "The storage class you specified is not valid"),
        ("InvalidTag", 400, "The tag provided was not a valid tag."),
        ("InvalidURI", 400, "Couldn't parse the specified URI."),
        ("KeyTooLongError", 400, "Your key is too long"),
        (
            "MalformedACLError",
            400,
            "The XML you provided was not well-formed or did not validate against our "
            "published schema",
        ),
        ("MalformedPolicy", 400, "Policies must be valid JSON and the first byte must be '{'"),
        (
            "MalformedTrailerError",
            400,
            "The request contained trailing data that was not well-formed or did not "
            "conform to our published schema.",
        ),
        (
            "MalformedXML",
            400,
            "The XML you provided was not well-formed or did not validate against our "
            "published schema",
        ),
        ("MaxMessageLengthExceeded", 400, "Your request was too big."),
        (
            "MetadataTooLarge",
            400,
            "Your metadata headers exceed the maximum allowed metadata size.",
        ),
        ("MethodNotAllowed", 405, "The specified method is not allowed against this resource."),
        ("MissingContentLength", 411, "You must provide the Content-Length HTTP header."),
        ("MissingRequestBodyError", 400, "Request Body is empty"),
        ("MissingSecurityHeader", 400, "Your request is missing a required header."),
        ("NoSuchBucket", 404, "The specified bucket does not exist"),
        ("NoSuchBucketPolicy", 404, "The bucket policy does not exist"),
        ("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist"),
        ("NoSuchKey", 404, "The specified key does not exist."),
        ("NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist"),
        (
            "NoSuchPublicAccessBlockConfiguration",
            404,
            "The public access block configuration was not found",
        ),
        ("NoSuchTagSet", 404, "The TagSet does not exist"),
        (
            "NoSuchUpload",
            404,
            "The specified upload does not exist. The upload ID may be invalid, or the upload "
            "may have been aborted or completed.",
        ),
        ("NoSuchVersion", 404, "The specified version does not exist."),
        (
            "NoSuchWebsiteConfiguration",
            404,
            "The specified bucket does not have a website configuration",
        ),
        (
            "NotImplemented",
            501,
            "A header you provided implies functionality that is not implemented",
        ),
        ("NotModified", 304, "Not Modified"),
        (
            "OperationAborted",
            409,
            "A conflicting conditional operation is currently in progress against this "
            "resource. Please try again.",
        ),
        (
            "PreconditionFailed",
            412,
            "At least one of the pre-conditions you specified did not hold",
        ),
        (
            "RequestTimeTooSkewed",
            403,
            "The difference between the request time and the current time is too large.",
        ),
        (
            "RequestTimeout",
            400,
            "Your socket connection to the server was not read from or written to within "
            "the timeout period.",
        ),
        ("ServiceUnavailable", 503, "Please reduce your request rate."),
        (
            "SignatureDoesNotMatch",
            403,
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        ),
        ("SlowDown", 503, "Please reduce your request rate."),
        ("TooManyBuckets", 400, "You have attempted to create more buckets than allowed"),
        ("UnexpectedContent", 400, "This request does not support content"),
        (
            "XAmzContentSHA256Mismatch",
            400,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ),
    ]
)

#: Statuses whose responses carry no body at all (RFC 9110 §15.4.5 for 304).
BODYLESS_STATUSES = frozenset({304})


class S3Error(Exception):
    """An S3 error response: code, status, message, and the optional extra elements.

    ``resource`` becomes ``<Resource>``; ``extra`` holds the code-specific children AWS
    adds after ``<Message>`` (``Key``, ``BucketName``, ``UploadId``, ``Condition``,
    ``ArgumentName``...), in order. ``headers`` are response headers the error carries
    (``x-amz-delete-marker`` on a 404/405 for a delete marker, ``Allow`` on 405).

    >>> e = S3Error("NoSuchKey", resource="/b/k", extra={"Key": "k"})
    >>> (e.code, e.status, e.message)
    ('NoSuchKey', 404, 'The specified key does not exist.')
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        resource: str | None = None,
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        spec = ERRORS[code]
        self.code = code
        self.status = spec.status
        self.message = spec.message if message is None else message
        self.resource = resource
        self.extra: Mapping[str, str] = dict(extra or {})
        self.headers: Mapping[str, str] = dict(headers or {})
        super().__init__(f"{code}: {self.message}")

    @property
    def has_body(self) -> bool:
        """Whether the response carries an XML body (never for 304; HEAD is the caller's)."""
        return self.status not in BODYLESS_STATUSES

    def __repr__(self) -> str:
        return f"S3Error({self.code!r}, {self.message!r}, resource={self.resource!r})"


#: AWS's message for a delete or retention change that object lock refuses (an
#: AccessDenied like any other, worded so the user knows which rule said no).
OBJECT_LOCKED = "Access Denied because object protected by object lock."


@dataclass(frozen=True, slots=True)
class _CoreRow:
    code: str
    #: Keep the core exception's text as the message: only for errors whose text kvbox
    #: writes for users (argument checks), never for storage or internal failures.
    keep_message: bool = False
    #: A fixed message instead of the table's default (AWS words some refusals its own
    #: way under a shared code).
    message: str | None = None


def _tree(root: type[core.KvboxError]) -> list[type[core.KvboxError]]:
    out = [root]
    for sub in root.__subclasses__():
        out += _tree(sub)
    return out


def _own_codes(*roots: type[core.KvboxError]) -> dict[type[core.KvboxError], _CoreRow]:
    """Rows for error trees that carry their S3 code (``s3_code``) and a message written
    for clients: SigV4 failures and aws-chunked framing errors."""
    rows: dict[type[core.KvboxError], _CoreRow] = {}
    for root in roots:
        for cls in _tree(root):
            rows[cls] = _CoreRow(getattr(cls, "s3_code"), keep_message=True)  # noqa: B009
    return rows


#: kvbox core error -> S3 code. Looked up along the MRO, most specific first.
#: ``BucketExists`` maps to the ownership-neutral ``BucketAlreadyExists``: the handler,
#: which knows who owns the bucket, raises ``BucketAlreadyOwnedByYou`` itself.
CORE_TO_S3: Mapping[type[core.KvboxError], _CoreRow] = MappingProxyType(
    {
        core.ProtocolError: _CoreRow("InvalidRequest"),
        core.InvalidKey: _CoreRow("InvalidArgument", keep_message=True),
        core.ValueTooLarge: _CoreRow("EntityTooLarge"),
        core.InvalidPart: _CoreRow("InvalidPart", keep_message=True),
        core.InvalidPartOrder: _CoreRow("InvalidPartOrder"),
        core.EntityTooSmall: _CoreRow("EntityTooSmall"),
        core.InvalidArgument: _CoreRow("InvalidArgument", keep_message=True),
        core.NoSuchBucket: _CoreRow("NoSuchBucket"),
        core.NoSuchKey: _CoreRow("NoSuchKey"),
        core.NoSuchVersion: _CoreRow("NoSuchVersion"),
        core.NoSuchUpload: _CoreRow("NoSuchUpload"),
        core.NotFound: _CoreRow("NoSuchKey"),
        core.ConditionFailed: _CoreRow("PreconditionFailed"),
        core.BucketExists: _CoreRow("BucketAlreadyExists"),
        core.BucketNotEmpty: _CoreRow("BucketNotEmpty"),
        core.InvalidBucketState: _CoreRow("InvalidBucketState", keep_message=True),
        core.ObjectLocked: _CoreRow("AccessDenied", message=OBJECT_LOCKED),
        PolicyError: _CoreRow("MalformedPolicy", keep_message=True),
        users.UserExists: _CoreRow("OperationAborted"),
        users.UserOwnsBuckets: _CoreRow("OperationAborted"),
        users.NoSuchUser: _CoreRow("NoSuchKey"),
        users.NoSuchAccessKey: _CoreRow("NoSuchKey"),
        core.Conflict: _CoreRow("OperationAborted"),
        core.ChunkMissing: _CoreRow("InternalError"),
        core.StorageError: _CoreRow("InternalError"),
        core.Busy: _CoreRow("SlowDown"),
        core.RemoteError: _CoreRow("InternalError"),
        core.KvboxError: _CoreRow("InternalError"),
        **_own_codes(sigv4.AuthError, awschunked.AwsChunkedError),
    }
)


def from_kvbox_error(exc: BaseException, *, resource: str | None = None) -> S3Error:
    """The S3 error a front door answers for ``exc``; anything unknown is InternalError.

    >>> from_kvbox_error(core.NoSuchBucket("photos"), resource="/photos").code
    'NoSuchBucket'
    >>> from_kvbox_error(core.InvalidArgument("versioning cannot be turned off")).message
    'versioning cannot be turned off'
    >>> from_kvbox_error(OSError("/data/x: disk full")).message
    'We encountered an internal error. Please try again.'
    """
    if isinstance(exc, S3Error):
        return exc
    for cls in type(exc).__mro__:
        row = CORE_TO_S3.get(cls)
        if row is not None:
            text = str(exc)
            message = text if row.keep_message and text else row.message
            return S3Error(row.code, message, resource=resource)
    return S3Error("InternalError", resource=resource)
