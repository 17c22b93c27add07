"""The one kvbox error tree, and the one table that maps it onto each protocol.

    KvboxError
    ├── ProtocolError            the peer sent something that breaks a protocol's grammar
    ├── InvalidArgument          well-formed request, unacceptable argument
    │   ├── InvalidKey
    │   ├── ValueTooLarge
    │   ├── InvalidPart          multipart completion names a missing part or wrong ETag
    │   ├── InvalidPartOrder     ... lists parts out of ascending order
    │   └── EntityTooSmall       ... has a part under 5 MiB that is not the last
    ├── NotFound
    │   ├── NoSuchBucket
    │   ├── NoSuchKey
    │   ├── NoSuchVersion
    │   └── NoSuchUpload
    ├── Conflict
    │   ├── ConditionFailed      compare-and-set / If-Match lost
    │   ├── BucketExists
    │   ├── BucketNotEmpty
    │   ├── InvalidBucketState   the bucket's settings forbid the change (object lock)
    │   └── ObjectLocked         object lock protects the version (retention, legal hold)
    ├── StorageError             the storage core failed (disk, database)
    │   └── ChunkMissing
    ├── Busy                     overloaded: too many connections or requests
    └── RemoteError              a client got an ERR reply from a server (.code, .message)

Front doors translate these, and only these, into wire errors through ``GWKV_CODES``
(and later the S3 table); nothing else may leak to a client.
"""

from __future__ import annotations


class KvboxError(Exception):
    """Base of every error kvbox raises on purpose."""


class ProtocolError(KvboxError):
    """``code`` names the protocol's own error word when the parser already knows it
    (for GW-KV: LINETOOLONG, BADLENGTH, TIMEOUT, …)."""

    def __init__(self, message: str = "protocol error", code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


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


class StorageError(KvboxError):
    pass


class ChunkMissing(StorageError):
    pass


class Busy(KvboxError):
    pass


class RemoteError(KvboxError):
    """An ``ERR <CODE> <message>`` reply, raised by ``kvbox.Client``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}".strip())
        self.code = code
        self.message = message


#: Error class -> GW-KV ``ERR <CODE>`` word. Looked up along the MRO, most specific first.
GWKV_CODES: dict[type[KvboxError], str] = {
    ProtocolError: "PROTOCOL",
    InvalidKey: "BADKEY",
    ValueTooLarge: "TOOLARGE",
    InvalidArgument: "ARGS",
    NoSuchBucket: "NOBUCKET",
    NotFound: "NOTFOUND",
    ConditionFailed: "CONFLICT",
    Conflict: "CONFLICT",
    ChunkMissing: "STORAGE",
    StorageError: "STORAGE",
    Busy: "BUSY",
    KvboxError: "INTERNAL",
}


def gwkv_code(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError) and exc.code:
        return exc.code
    for cls in type(exc).__mro__:
        code = GWKV_CODES.get(cls)
        if code is not None:
            return code
    return "INTERNAL"
