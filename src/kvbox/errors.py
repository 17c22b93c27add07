"""The one kvbox error tree, and the one table that maps it onto every wire.

Layer: base (imported by every layer; imports nothing from kvbox). Rules:

* Every error kvbox raises on purpose is a class of this tree, defined here, so the tree
  below is the whole of it. Lower layers (proto/, auth/, policy/, core/) raise these
  typed errors and know nothing of wire codes; ``kvbox.auth.sigv4``,
  ``kvbox.proto.awschunked``, ``kvbox.policy`` and ``kvbox.core.meta.users`` re-export
  the ones they raise, so callers keep importing them from there.
* How a class looks on each wire is one row of ``WIRE``: its GW-KV ``ERR`` word, its RESP
  prefix, its S3 code with that code's HTTP status, whether its message was written for
  clients, and the XML children its attributes fill. Front doors look errors up here and
  nowhere else; a class without its own row, a row whose S3 code is not in
  ``S3_CODES``, or a status that is not the code's, fails at import.
* ``S3_CODES`` is AWS's list of S3 error codes that kvbox answers, with AWS's statuses and
  default messages (the "Error responses" page of the S3 API reference,
  https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). The S3 door
  raises ``kvbox.s3.errors.S3Error`` with one of these codes for errors that exist only
  in S3 (``NoSuchBucketPolicy``, ``MalformedXML``...).

To add an error: a class below (and in the drawing), then one row in ``WIRE``; a new S3
code is one row in ``S3_CODES``. ``tests/test_errors.py`` checks both tables.

Why one module of about 800 lines rather than a package: the tree, AWS's codes and the
rows that join them are read together, and a file per table would put the one question
("what does a client see for this error?") in three places again. It grows by a line or
two per error, never by logic.

The tree (S3 code and status per class are in ``WIRE``)::

    KvboxError
    ├── ProtocolError            the peer broke a protocol's grammar (``code``: the GW-KV word)
    │   ├── AwsChunkedError      an aws-chunked body: discard all of it
    │   │   ├── IncompleteBody              ended early, bad CRLF
    │   │   │   └── DecodedLengthMismatch   != x-amz-decoded-content-length
    │   │   ├── ChunkSignatureMismatch      a chunk or trailer signature
    │   │   ├── InvalidChunkSize            a bad or oversized size line
    │   │   ├── MalformedTrailer
    │   │   └── TrailingData                bytes after the final chunk
    │   └── MalformedForm        a POST upload's form body (or its Content-Type)
    │       └── FormFieldsTooLarge          the fields before the file pass 20 KB
    ├── InvalidArgument          well-formed request, unacceptable argument
    │   ├── InvalidKey
    │   ├── ValueTooLarge
    │   ├── InvalidPart          multipart completion names a missing part or wrong ETag
    │   ├── InvalidPartOrder     ... lists parts out of ascending order
    │   ├── EntityTooSmall       ... has a part under 5 MiB that is not the last
    │   └── AclError             an ACL kvbox cannot keep (unknown canned name, damage)
    ├── PolicyError              a bucket policy kvbox refuses (the message says why)
    ├── AuthError                a request's credentials or signature
    │   ├── AccessDenied         no usable credentials, unsigned x-amz-* headers
    │   │   ├── RequestExpired            presigned, too old
    │   │   └── RequestNotYetValid        presigned, in the future
    │   ├── InvalidAccessKeyId
    │   ├── SignatureDoesNotMatch
    │   │   └── SigV2DoesNotMatch         ... of a SigV2 request (adds the bytes signed)
    │   ├── RequestTimeTooSkewed
    │   ├── AuthorizationHeaderMalformed
    │   ├── AuthorizationQueryParametersError
    │   ├── InvalidAuthArgument           S3's InvalidArgument, while authenticating
    │   ├── UnsupportedAuthMechanism      SigV2, SigV4a
    │   └── ContentSHA256Mismatch         the body does not hash to x-amz-content-sha256
    ├── NotFound
    │   ├── NoSuchBucket
    │   ├── NoSuchKey
    │   ├── NoSuchVersion
    │   ├── NoSuchUpload
    │   ├── NoSuchUser
    │   └── NoSuchAccessKey
    ├── Conflict
    │   ├── ConditionFailed      compare-and-set / If-Match lost (``current``)
    │   ├── BucketExists
    │   ├── BucketNotEmpty
    │   ├── InvalidBucketState   the bucket's settings forbid the change (object lock)
    │   ├── ObjectLocked         object lock protects the version (retention, legal hold)
    │   ├── UserExists
    │   └── UserOwnsBuckets
    ├── StorageError             the storage core failed (disk, database)
    │   ├── ChunkMissing
    │   ├── DataDamaged          stored bytes fail their check (a chunk, an inline value)
    │   ├── StorageFull          free space under the reserve (--min-free): writes refused
    │   ├── DataDirError         the data directory is missing, a file, not writable
    │   ├── SchemaMismatch       the metadata database's schema is older or newer than this kvbox
    │   ├── ClusterUnavailable   too few blob nodes answered (a write's quorum, every replica)
    │   └── MetaUnavailable      the metadata database (PostgreSQL) cannot be reached
    ├── ListenError              a port or address cannot be bound (at start-up)
    ├── Busy                     overloaded: too many connections or requests
    └── RemoteError              a client got an ERR reply from a server (.code, .message)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "S3_CODES",
    "WIRE",
    "AccessDenied",
    "AuthError",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "AwsChunkedError",
    "BucketExists",
    "BucketNotEmpty",
    "Busy",
    "ChunkMissing",
    "ChunkSignatureMismatch",
    "ClusterUnavailable",
    "ConditionFailed",
    "Conflict",
    "ContentSHA256Mismatch",
    "DataDamaged",
    "DataDirError",
    "DecodedLengthMismatch",
    "EntityTooSmall",
    "IncompleteBody",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidAuthArgument",
    "InvalidBucketState",
    "InvalidChunkSize",
    "InvalidKey",
    "InvalidPart",
    "InvalidPartOrder",
    "KvboxError",
    "ListenError",
    "MalformedTrailer",
    "MetaUnavailable",
    "NoSuchAccessKey",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NoSuchUser",
    "NoSuchVersion",
    "NotFound",
    "ObjectLocked",
    "PolicyError",
    "ProtocolError",
    "RemoteError",
    "RequestExpired",
    "RequestNotYetValid",
    "RequestTimeTooSkewed",
    "S3Code",
    "SchemaMismatch",
    "SigV2DoesNotMatch",
    "SignatureDoesNotMatch",
    "StorageError",
    "StorageFull",
    "TrailingData",
    "UnsupportedAuthMechanism",
    "UserExists",
    "UserOwnsBuckets",
    "ValueTooLarge",
    "Wire",
    "gwkv_code",
    "wire",
]


class KvboxError(Exception):
    """Base of every error kvbox raises on purpose."""


# --- protocol ---------------------------------------------------------------------------


class ProtocolError(KvboxError):
    """``code`` names the protocol's own error word when the parser already knows it
    (for GW-KV: LINETOOLONG, BADLENGTH, TIMEOUT, …)."""

    def __init__(self, message: str = "protocol error", code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AwsChunkedError(ProtocolError):
    """Base of every aws-chunked decoding failure (``kvbox.proto.awschunked``); the whole
    body must be discarded."""


class IncompleteBody(AwsChunkedError):
    pass


class DecodedLengthMismatch(IncompleteBody):
    def __init__(self, expected: int, received: int) -> None:
        super().__init__(f"decoded {received} bytes, x-amz-decoded-content-length says {expected}")
        self.expected = expected
        self.received = received


class ChunkSignatureMismatch(AwsChunkedError):
    pass


class InvalidChunkSize(AwsChunkedError):
    pass


class MalformedTrailer(AwsChunkedError):
    pass


class TrailingData(AwsChunkedError):
    pass


class MalformedForm(ProtocolError):
    """A POST upload's body is not well-formed multipart/form-data, or its Content-Type
    is not that (``kvbox.proto.formdata``)."""


class FormFieldsTooLarge(MalformedForm):
    """The fields before a POST upload's file pass 20 KB (AWS's limit)."""


# --- arguments --------------------------------------------------------------------------


class InvalidArgument(KvboxError):
    pass


class InvalidKey(InvalidArgument):
    pass


class ValueTooLarge(InvalidArgument):
    pass


class InvalidPart(InvalidArgument):
    pass


class InvalidPartOrder(InvalidArgument):
    pass


class EntityTooSmall(InvalidArgument):
    pass


class AclError(InvalidArgument):
    """An ACL kvbox cannot keep (``kvbox.policy.acl``): an unknown canned name, too many
    grants, a stored form that does not parse."""


class PolicyError(KvboxError):
    """A bucket policy kvbox refuses (``kvbox.policy``); the message says what is wrong
    and where, and S3 shows it."""


# --- authentication (kvbox.auth.sigv4) --------------------------------------------------


class AuthError(KvboxError):
    """Base of every authentication failure."""


class AccessDenied(AuthError):
    """No usable credentials, an unparsable date, or x-amz-* headers that were not signed."""

    def __init__(self, message: str = "Access Denied", *, headers_not_signed: Sequence[str] = ()):
        super().__init__(message)
        self.headers_not_signed = tuple(headers_not_signed)


class RequestExpired(AccessDenied):
    def __init__(self, expires_at: datetime, server_time: datetime) -> None:
        super().__init__("Request has expired")
        self.expires_at = expires_at
        self.server_time = server_time


class RequestNotYetValid(AccessDenied):
    def __init__(self, request_time: datetime, server_time: datetime) -> None:
        super().__init__("Request is not valid yet")
        self.request_time = request_time
        self.server_time = server_time


class InvalidAccessKeyId(AuthError):
    def __init__(self, access_key: str) -> None:
        super().__init__("The AWS Access Key Id you provided does not exist in our records.")
        self.access_key = access_key


class SignatureDoesNotMatch(AuthError):
    """Carries what S3 puts in its error body to help a client debug; none of it is secret."""

    def __init__(
        self,
        *,
        access_key: str,
        signature_provided: str,
        string_to_sign: str,
        canonical_request: str,
    ) -> None:
        super().__init__(
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method."
        )
        self.access_key = access_key
        self.signature_provided = signature_provided
        self.string_to_sign = string_to_sign
        self.canonical_request = canonical_request


class SigV2DoesNotMatch(SignatureDoesNotMatch):
    """A SigV2 signature that does not match (``kvbox.auth.sigv2``); AWS adds the bytes of
    the string it signed."""

    def __init__(self, *, access_key: str, signature_provided: str, string_to_sign: str) -> None:
        super().__init__(
            access_key=access_key,
            signature_provided=signature_provided,
            string_to_sign=string_to_sign,
            canonical_request="",
        )
        # Undecodable bytes from the wire arrive as surrogate escapes: give them back.
        try:
            raw = string_to_sign.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = string_to_sign.encode("utf-8", "replace")
        #: ``StringToSignBytes`` of AWS's error body: hex bytes separated by spaces.
        self.string_to_sign_bytes = " ".join(f"{b:02x}" for b in raw)


class RequestTimeTooSkewed(AuthError):
    def __init__(self, request_time: datetime, server_time: datetime, max_skew: timedelta) -> None:
        super().__init__(
            "The difference between the request time and the current time is too large."
        )
        self.request_time = request_time
        self.server_time = server_time
        self.max_skew = max_skew


class AuthorizationHeaderMalformed(AuthError):
    def __init__(self, message: str, *, region: str | None = None) -> None:
        super().__init__(f"The authorization header is malformed; {message}")
        #: The region the server expects, when the complaint is a wrong region.
        self.region = region


class AuthorizationQueryParametersError(AuthError):
    def __init__(self, message: str, *, region: str | None = None) -> None:
        super().__init__(message)
        self.region = region


class InvalidAuthArgument(AuthError):
    """S3's ``InvalidArgument`` raised while authenticating (named apart from kvbox's own)."""

    def __init__(self, message: str, *, argument_name: str = "", argument_value: str = "") -> None:
        super().__init__(message)
        self.argument_name = argument_name
        self.argument_value = argument_value


class UnsupportedAuthMechanism(AuthError):
    def __init__(self, mechanism: str) -> None:
        super().__init__(
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256."
        )
        self.mechanism = mechanism


class ContentSHA256Mismatch(AuthError):
    """The body does not hash to the signed x-amz-content-sha256; raised by the server."""

    def __init__(self, client_sha256: str, computed_sha256: str) -> None:
        super().__init__(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
        self.client_sha256 = client_sha256
        self.computed_sha256 = computed_sha256


# --- not found --------------------------------------------------------------------------


class NotFound(KvboxError):
    pass


class NoSuchBucket(NotFound):
    pass


class NoSuchKey(NotFound):
    pass


class NoSuchVersion(NotFound):
    pass


class NoSuchUpload(NotFound):
    pass


class NoSuchUser(NotFound):
    pass


class NoSuchAccessKey(NotFound):
    pass


# --- conflicts --------------------------------------------------------------------------


class Conflict(KvboxError):
    pass


class ConditionFailed(Conflict):
    def __init__(self, message: str = "condition failed", current: str | None = None) -> None:
        super().__init__(message)
        self.current = current


class BucketExists(Conflict):
    pass


class BucketNotEmpty(Conflict):
    pass


class InvalidBucketState(Conflict):
    """The change is not allowed in the bucket's current state (suspending versioning
    of a bucket with object lock, object lock on a bucket without versioning)."""


class ObjectLocked(Conflict):
    """Object lock forbids removing this version, or changing its retention this way
    (``kvbox.core.lock``)."""


class UserExists(Conflict):
    pass


class UserOwnsBuckets(Conflict):
    """A user cannot be deleted while buckets still belong to it (they would be orphans)."""


# --- the server itself ------------------------------------------------------------------


class StorageError(KvboxError):
    pass


class ChunkMissing(StorageError):
    pass


class DataDamaged(StorageError):
    """Stored bytes failed their check: a chunk no longer hashes to its content address,
    an inline value no longer matches the checksum stored with it, or a referenced chunk
    is gone. Raised instead of ever serving the bytes (``kvbox.core.integrity``).

    ``bucket``/``key``/``version_id`` name the damaged version once the Store knows it
    (empty where the detector -- the blob store -- only knows ``chunk_id``).
    """

    def __init__(
        self,
        detail: str,
        *,
        bucket: str = "",
        key: str = "",
        version_id: str = "",
        chunk_id: str = "",
    ) -> None:
        self.detail = detail
        self.bucket = bucket
        self.key = key
        self.version_id = version_id
        self.chunk_id = chunk_id
        where = f"{bucket}/{key} version {version_id}: " if key else ""
        super().__init__(f"damaged: {where}{detail}; not served")


class StorageFull(StorageError):
    """A write refused because the data directory's free space is under the reserve
    (``--min-free``); deletes still work (``kvbox.core.space``). The message says so
    in words a client can act on, with no path."""


class DataDirError(StorageError):
    """The data directory cannot be used: missing, not a directory, not writable. The
    message is one line that names the path and what is wrong with it."""


class SchemaMismatch(StorageError):
    """The metadata database's schema version is not the one this kvbox runs on: older
    (run ``kvbox migrate``) or newer (a newer kvbox migrated it). One line that names
    both versions and the command; it never holds a password."""


class ClusterUnavailable(StorageError):
    """Blob nodes did not answer well enough: a write reached fewer nodes than its
    quorum, or no replica of a chunk could be read. The data is not known to be lost;
    the same request may succeed once nodes are back (S3 answers 503, a client retries).
    """


class MetaUnavailable(StorageError):
    """The metadata database (``--meta postgresql://``) cannot be reached: connection
    refused or lost, the server shutting down or starting up, no answer in time. Nothing
    was acknowledged; the same request may succeed once it is back (S3 answers 503, so
    SDKs retry by themselves; GW-KV ``ERR STORAGE unavailable: ...`` keeps the
    connection). The message never holds the password."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"unavailable: the metadata store cannot be reached: {cause}; retry")
        #: Why, in one line (what ``/readyz`` shows).
        self.cause = cause


class ListenError(KvboxError):
    """A port or address the settings name cannot be bound (one line for the user)."""


class Busy(KvboxError):
    pass


class RemoteError(KvboxError):
    """An ``ERR <CODE> <message>`` reply, raised by ``kvbox.Client``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}".strip())
        self.code = code
        self.message = message


# --- S3's codes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Code:
    """One S3 error code as AWS answers it: its HTTP status and default message."""

    code: str
    status: int
    message: str


def _codes(rows: Iterable[tuple[str, int, str]]) -> Mapping[str, S3Code]:
    table: dict[str, S3Code] = {}
    for code, status, message in rows:
        if code in table:
            raise ValueError(f"duplicate S3 error code {code}")
        table[code] = S3Code(code, status, message)
    return MappingProxyType(table)


#: AWS's S3 error codes that kvbox answers, sorted; statuses and messages are AWS's.
# fmt: off
S3_CODES: Final[Mapping[str, S3Code]] = _codes([
    ("AccessControlListNotSupported", 400, "The bucket does not allow ACLs"),
    ("AccessDenied", 403, "Access Denied"),
    ("AccessForbidden", 403,
        "CORSResponse: This CORS request is not allowed. This is usually because the "
        "evaluation of Origin, request method / Access-Control-Request-Method or "
        "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."),
    ("AuthorizationHeaderMalformed", 400, "The authorization header you provided is invalid."),
    ("AuthorizationQueryParametersError", 400,
        "The query-string authentication parameters you provided are invalid."),
    ("BadDigest", 400,
        "The Content-MD5 or checksum value you specified did not match what we received."),
    ("BadRequest", 400, "Insufficient information. Origin request header needed."),
    ("BucketAlreadyExists", 409,
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again."),
    ("BucketAlreadyOwnedByYou", 409,
        "Your previous request to create the named bucket succeeded and you already own it."),
    ("BucketNotEmpty", 409, "The bucket you tried to delete is not empty"),
    ("ConditionalRequestConflict", 409,
        "A conflicting operation occurred. If using PutObject you can retry the request."),
    ("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size."),
    ("EntityTooSmall", 400,
        "Your proposed upload is smaller than the minimum allowed object size."),
    ("ExpiredToken", 400, "The provided token has expired."),
    ("IllegalLocationConstraintException", 400,
        "The specified location-constraint is not valid for this endpoint."),
    ("IllegalVersioningConfigurationException", 400,
        "The versioning configuration specified in the request is invalid."),
    ("IncompleteBody", 400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    ("IncorrectNumberOfFilesInPostRequest", 400, "POST requires exactly one file upload per request."),
    ("InternalError", 500, "We encountered an internal error. Please try again."),
    ("InvalidAccessKeyId", 403,
        "The AWS Access Key Id you provided does not exist in our records."),
    ("InvalidArgument", 400, "Invalid Argument"),
    ("InvalidBucketAclWithObjectOwnership", 400,
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"),
    ("InvalidBucketName", 400, "The specified bucket is not valid."),
    ("InvalidBucketState", 409, "The request is not valid with the current state of the bucket."),
    ("InvalidChunkSizeError", 400,
        "Only the last chunk is allowed to have a size less than 8192 bytes"),
    ("InvalidDigest", 400, "The Content-MD5 or checksum value you specified is not valid."),
    ("InvalidLocationConstraint", 400, "The specified location constraint is not valid."),
    ("InvalidObjectState", 403,
        "The operation is not valid for the object's storage class or state."),
    ("InvalidPart", 400,
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."),
    ("InvalidPartOrder", 400,
        "The list of parts was not in ascending order. The parts list must be specified in "
        "order by part number."),
    ("InvalidPolicyDocument", 400,
        "The content of the form does not meet the conditions specified in the policy document."),
    ("InvalidRange", 416, "The requested range is not satisfiable"),
    ("InvalidRedirectLocation", 400, "The website redirect location is not valid."),
    ("InvalidRequest", 400, "Invalid Request"),
    ("InvalidStorageClass", 400, "The storage class you specified is not valid"),
    ("InvalidTag", 400, "The tag provided was not a valid tag."),
    ("InvalidURI", 400, "Couldn't parse the specified URI."),
    ("KeyTooLongError", 400, "Your key is too long"),
    ("MalformedACLError", 400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema"),
    ("MalformedPOSTRequest", 400,
        "The body of your POST request is not well-formed multipart/form-data."),
    ("MalformedPolicy", 400, "Policies must be valid JSON and the first byte must be '{'"),
    ("MalformedTrailerError", 400,
        "The request contained trailing data that was not well-formed or did not conform to "
        "our published schema."),
    ("MalformedXML", 400,
        "The XML you provided was not well-formed or did not validate against our published "
        "schema"),
    ("MaxMessageLengthExceeded", 400, "Your request was too big."),
    ("MaxPostPreDataLengthExceededError", 400,
        "Your POST request fields preceding the upload file were too large."),
    ("MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."),
    ("MethodNotAllowed", 405, "The specified method is not allowed against this resource."),
    ("MissingContentLength", 411, "You must provide the Content-Length HTTP header."),
    ("MissingRequestBodyError", 400, "Request Body is empty"),
    ("MissingSecurityHeader", 400, "Your request is missing a required header."),
    ("NoSuchBucket", 404, "The specified bucket does not exist"),
    ("NoSuchBucketPolicy", 404, "The bucket policy does not exist"),
    ("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist"),
    ("NoSuchKey", 404, "The specified key does not exist."),
    ("NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist"),
    ("NoSuchObjectLockConfiguration", 404,
        "The specified object does not have a ObjectLock configuration"),
    ("NoSuchPublicAccessBlockConfiguration", 404,
        "The public access block configuration was not found"),
    ("NoSuchTagSet", 404, "The TagSet does not exist"),
    ("NoSuchUpload", 404,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may "
        "have been aborted or completed."),
    ("NoSuchVersion", 404, "The specified version does not exist."),
    ("NoSuchWebsiteConfiguration", 404,
        "The specified bucket does not have a website configuration"),
    ("NotImplemented", 501, "A header you provided implies functionality that is not implemented"),
    ("NotModified", 304, "Not Modified"),
    ("ObjectLockConfigurationNotFoundError", 404,
        "Object Lock configuration does not exist for this bucket"),
    ("OperationAborted", 409,
        "A conflicting conditional operation is currently in progress against this resource. "
        "Please try again."),
    ("OwnershipControlsNotFoundError", 404, "The bucket ownership controls were not found"),
    ("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"),
    ("RequestHeaderSectionTooLarge", 400,
        "Your request header section exceeds the maximum allowed size."),
    ("RequestTimeTooSkewed", 403,
        "The difference between the request time and the current time is too large."),
    ("RequestTimeout", 400,
        "Your socket connection to the server was not read from or written to within the "
        "timeout period."),
    ("ServiceUnavailable", 503, "Please reduce your request rate."),
    ("SignatureDoesNotMatch", 403,
        "The request signature we calculated does not match the signature you provided. Check "
        "your key and signing method."),
    ("SlowDown", 503, "Please reduce your request rate."),
    ("TooManyBuckets", 400, "You have attempted to create more buckets than allowed"),
    ("UnexpectedContent", 400, "This request does not support content"),
    ("UnresolvableGrantByEmailAddress", 400,
        "The email address you provided does not match any account on record."),
    ("XAmzContentSHA256Mismatch", 400,
        "The provided 'x-amz-content-sha256' header does not match what was computed."),
    # kvbox's own (AWS has no full disk to report): 507 Insufficient Storage, which
    # botocore's retry rules (standard and legacy) do not retry, unlike a 500 or 503.
    ("XKvboxStorageFull", 507,
        "The server's storage is full: writes are refused until space is freed. "
        "Deletes still work."),
])
# fmt: on


# --- the one table ----------------------------------------------------------------------


def _amz_time(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def _iso_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _millis(value: timedelta) -> str:
    return str(int(value.total_seconds() * 1000))


@dataclass(frozen=True, slots=True)
class Field:
    """One child element of S3's ``<Error>``, filled from an attribute of the error."""

    element: str
    attr: str
    render: Callable[[Any], str] = str


@dataclass(frozen=True, slots=True)
class Wire:
    """How one error class looks on every wire.

    ``public``: the exception's text was written for clients (argument and signature
    checks), so the S3 door shows it; otherwise S3 shows ``s3_message`` or the code's
    default message, so no path, SQL or traceback text reaches an S3 client. (GW-KV
    always sent the text.)
    """

    gwkv: str
    resp: str
    s3: str
    status: int
    public: bool = False
    fields: tuple[Field, ...] = ()
    #: S3's message when it is neither the exception's text nor the code's default (AWS
    #: words some refusals its own way under a shared code).
    s3_message: str | None = None

    def s3_fields(self, exc: BaseException) -> dict[str, str]:
        """The XML children AWS adds after ``<Message>`` for this error, in order."""
        values = ((f, getattr(exc, f.attr)) for f in self.fields)
        return {f.element: f.render(v) for f, v in values if v is not None}


#: The S3 children each of these errors carries, in AWS's order.
_SIGNATURE: Final = (
    Field("AWSAccessKeyId", "access_key"),
    Field("StringToSign", "string_to_sign"),
    Field("SignatureProvided", "signature_provided"),
    Field("CanonicalRequest", "canonical_request"),
)
_SKEW: Final = (
    Field("RequestTime", "request_time", _amz_time),
    Field("ServerTime", "server_time", _iso_time),
    Field("MaxAllowedSkewMilliseconds", "max_skew", _millis),
)
_EXPIRED: Final = (
    Field("Expires", "expires_at", _iso_time),
    Field("ServerTime", "server_time", _iso_time),
)
_KEY_ID: Final = (Field("AWSAccessKeyId", "access_key"),)
#: The region a request should have been signed for, when that was the mistake.
_REGION: Final = (Field("Region", "region"),)
_SIGV2: Final = (
    *_SIGNATURE[:3],
    Field("StringToSignBytes", "string_to_sign_bytes"),
)
#: AWS's message for a delete or retention change that object lock refuses (an
#: AccessDenied like any other, worded so the user knows which rule said no).
_OBJECT_LOCKED: Final = "Access Denied because object protected by object lock."

#: S3's message for a read refused because the stored bytes failed their check (the
#: server logs which chunk or value; the client learns it was not a transient fault).
_DAMAGED: Final = (
    "The object's stored data failed its integrity check, so it was not served. "
    "Retrying will not help until the object is rewritten or restored."
)

#: S3's message while the metadata database cannot be reached (the server logs where
#: and why; the client learns that a retry is the remedy, which the 503 already tells
#: SDKs).
_META_DOWN: Final = (
    "Service is unable to handle the request: its metadata store cannot be reached. Please retry."
)

#: Marks a row whose message is shown to S3 clients (``Wire.public``).
PUBLIC: Final = True

_Row = tuple[type[KvboxError], Wire]


def _row(
    cls: type[KvboxError],
    gwkv: str,
    s3: str,
    status: int,
    public: bool = False,
    *,
    resp: str = "ERR",
    fields: tuple[Field, ...] = (),
    s3_message: str | None = None,
) -> _Row:
    return cls, Wire(gwkv, resp, s3, status, public, fields, s3_message)


def _wire(*rows: _Row) -> Mapping[type[KvboxError], Wire]:
    """The table, checked: a mistake here fails at import, not on a client's request."""
    table: dict[type[KvboxError], Wire] = {}
    for cls, row in rows:
        if cls in table:
            raise ValueError(f"{cls.__name__} has two rows")
        code = S3_CODES.get(row.s3)
        if code is None:
            raise ValueError(f"{cls.__name__}: {row.s3} is not in S3_CODES")
        if code.status != row.status:
            raise ValueError(f"{cls.__name__}: {row.s3} is {code.status}, not {row.status}")
        table[cls] = row
    return MappingProxyType(table)


# The class column follows the tree above. GW-KV words are docs/protocol.md §3's; those a
# GW-KV request cannot cause (DENIED, NOBUCKET, PROTOCOL...) are there for other doors.
# One row per line, aligned so it reads as a table: wider than 100 columns on purpose.
# ruff: noqa: E501
# fmt: off
WIRE: Final[Mapping[type[KvboxError], Wire]] = _wire(
    #    class                              GW-KV       S3 code                              HTTP
    _row(KvboxError,                        "INTERNAL", "InternalError",                     500),
    _row(ProtocolError,                     "PROTOCOL", "InvalidRequest",                    400),
    _row(AwsChunkedError,                   "PROTOCOL", "IncompleteBody",                    400, PUBLIC),
    _row(IncompleteBody,                    "PROTOCOL", "IncompleteBody",                    400, PUBLIC),
    _row(DecodedLengthMismatch,             "PROTOCOL", "IncompleteBody",                    400, PUBLIC),
    _row(ChunkSignatureMismatch,            "PROTOCOL", "SignatureDoesNotMatch",             403, PUBLIC),
    _row(InvalidChunkSize,                  "PROTOCOL", "InvalidChunkSizeError",             400, PUBLIC),
    _row(MalformedTrailer,                  "PROTOCOL", "MalformedTrailerError",             400, PUBLIC),
    _row(TrailingData,                      "PROTOCOL", "IncompleteBody",                    400, PUBLIC),
    _row(MalformedForm,                     "PROTOCOL", "MalformedPOSTRequest",              400, PUBLIC),
    _row(FormFieldsTooLarge,                "PROTOCOL", "MaxPostPreDataLengthExceededError", 400, PUBLIC),
    _row(InvalidArgument,                   "ARGS",     "InvalidArgument",                   400, PUBLIC),
    _row(InvalidKey,                        "BADKEY",   "InvalidArgument",                   400, PUBLIC),
    _row(ValueTooLarge,                     "TOOLARGE", "EntityTooLarge",                    400),
    _row(InvalidPart,                       "ARGS",     "InvalidPart",                       400, PUBLIC),
    _row(InvalidPartOrder,                  "ARGS",     "InvalidPartOrder",                  400),
    _row(EntityTooSmall,                    "ARGS",     "EntityTooSmall",                    400),
    _row(AclError,                          "ARGS",     "InvalidArgument",                   400, PUBLIC),
    _row(PolicyError,                       "ARGS",     "MalformedPolicy",                   400, PUBLIC),
    _row(AuthError,                         "DENIED",   "AccessDenied",                      403, PUBLIC, resp="NOPERM"),
    _row(AccessDenied,                      "DENIED",   "AccessDenied",                      403, PUBLIC, resp="NOPERM"),
    _row(RequestExpired,                    "DENIED",   "AccessDenied",                      403, PUBLIC, resp="NOPERM", fields=_EXPIRED),
    _row(RequestNotYetValid,                "DENIED",   "AccessDenied",                      403, PUBLIC, resp="NOPERM"),
    _row(InvalidAccessKeyId,                "DENIED",   "InvalidAccessKeyId",                403, PUBLIC, resp="WRONGPASS", fields=_KEY_ID),
    _row(SignatureDoesNotMatch,             "DENIED",   "SignatureDoesNotMatch",             403, PUBLIC, resp="WRONGPASS", fields=_SIGNATURE),
    _row(SigV2DoesNotMatch,                 "DENIED",   "SignatureDoesNotMatch",             403, PUBLIC, resp="WRONGPASS", fields=_SIGV2),
    _row(RequestTimeTooSkewed,              "DENIED",   "RequestTimeTooSkewed",              403, PUBLIC, fields=_SKEW),
    _row(AuthorizationHeaderMalformed,      "DENIED",   "AuthorizationHeaderMalformed",      400, PUBLIC, fields=_REGION),
    _row(AuthorizationQueryParametersError, "DENIED",   "AuthorizationQueryParametersError", 400, PUBLIC, fields=_REGION),
    _row(InvalidAuthArgument,               "DENIED",   "InvalidArgument",                   400, PUBLIC),
    _row(UnsupportedAuthMechanism,          "DENIED",   "InvalidRequest",                    400, PUBLIC),
    _row(ContentSHA256Mismatch,             "DENIED",   "XAmzContentSHA256Mismatch",         400, PUBLIC),
    _row(NotFound,                          "NOTFOUND", "NoSuchKey",                         404),
    _row(NoSuchBucket,                      "NOBUCKET", "NoSuchBucket",                      404),
    _row(NoSuchKey,                         "NOTFOUND", "NoSuchKey",                         404),
    _row(NoSuchVersion,                     "NOTFOUND", "NoSuchVersion",                     404),
    _row(NoSuchUpload,                      "NOTFOUND", "NoSuchUpload",                      404),
    _row(NoSuchUser,                        "NOTFOUND", "NoSuchKey",                         404),
    _row(NoSuchAccessKey,                   "NOTFOUND", "NoSuchKey",                         404),
    _row(Conflict,                          "CONFLICT", "OperationAborted",                  409),
    _row(ConditionFailed,                   "CONFLICT", "PreconditionFailed",                412),
    # Ownership-neutral: the S3 handler, which knows who owns the bucket, raises
    # BucketAlreadyOwnedByYou itself.
    _row(BucketExists,                      "CONFLICT", "BucketAlreadyExists",               409),
    _row(BucketNotEmpty,                    "CONFLICT", "BucketNotEmpty",                    409),
    _row(InvalidBucketState,                "CONFLICT", "InvalidBucketState",                409, PUBLIC),
    _row(ObjectLocked,                      "CONFLICT", "AccessDenied",                      403, s3_message=_OBJECT_LOCKED),
    _row(UserExists,                        "CONFLICT", "OperationAborted",                  409),
    _row(UserOwnsBuckets,                   "CONFLICT", "OperationAborted",                  409),
    _row(StorageError,                      "STORAGE",  "InternalError",                     500),
    _row(ChunkMissing,                      "STORAGE",  "InternalError",                     500),
    _row(DataDamaged,                       "STORAGE",  "InternalError",                     500, s3_message=_DAMAGED),
    _row(StorageFull,                       "STORAGE",  "XKvboxStorageFull",                 507, PUBLIC),
    _row(DataDirError,                      "STORAGE",  "InternalError",                     500),
    _row(SchemaMismatch,                    "STORAGE",  "InternalError",                     500),
    _row(ClusterUnavailable,                "STORAGE",  "ServiceUnavailable",                503),
    _row(MetaUnavailable,                   "STORAGE",  "ServiceUnavailable",                503, s3_message=_META_DOWN),
    _row(ListenError,                       "INTERNAL", "InternalError",                     500),
    _row(Busy,                              "BUSY",     "SlowDown",                          503, resp="BUSY"),
    _row(RemoteError,                       "INTERNAL", "InternalError",                     500),
)
# fmt: on


def _tree(root: type[KvboxError]) -> list[type[KvboxError]]:
    out = [root]
    for sub in root.__subclasses__():
        out += _tree(sub)
    return out


if _unmapped := [c.__name__ for c in _tree(KvboxError) if c not in WIRE]:
    raise ValueError(f"errors without a row in WIRE: {_unmapped}")


def wire(exc: BaseException | type[BaseException]) -> Wire:
    """The row of ``exc`` (an error or its class): its own, else its nearest ancestor's.
    Anything that is not a ``KvboxError`` is a bug and answers as ``KvboxError`` does.

    >>> wire(NoSuchBucket("photos")).s3, wire(NoSuchBucket).status
    ('NoSuchBucket', 404)
    >>> wire(OSError("/data/x: disk full")).s3
    'InternalError'
    """
    cls = exc if isinstance(exc, type) else type(exc)
    for c in cls.__mro__:
        row = WIRE.get(c)
        if row is not None:
            return row
    return WIRE[KvboxError]


def gwkv_code(exc: BaseException) -> str:
    """The GW-KV ``ERR`` word for ``exc``: a ``ProtocolError``'s own word when its parser
    named one (LINETOOLONG, BADLENGTH, TIMEOUT...), else its row's.

    >>> gwkv_code(ProtocolError("line too long", "LINETOOLONG")), gwkv_code(InvalidKey())
    ('LINETOOLONG', 'BADKEY')
    """
    if isinstance(exc, ProtocolError) and exc.code:
        return exc.code
    return wire(exc).gwkv
