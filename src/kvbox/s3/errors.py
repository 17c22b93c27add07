"""``S3Error``: an error as S3 shows it, and the translation of kvbox's errors into it.

Layer: s3 protocol (pure; no I/O). Rules:

* The codes, their statuses and default messages are ``kvbox.errors.S3_CODES``; how
  each kvbox error class looks in S3 (code, whether its message is shown, the XML
  children its attributes fill) is its row of ``kvbox.errors.WIRE``. This module only
  applies those two tables: there is no S3 code anywhere else but in the S3 door's own
  ``raise S3Error("<code>")`` for errors that exist only in S3.
* Raising an ``S3Error`` with a code that is not in ``S3_CODES`` is a programming error
  (``KeyError`` at construction), so a typo never reaches a client as an unknown code.
* Anything that is not a ``KvboxError`` (or an ``S3Error``) is a bug: it becomes
  InternalError with the default message, so no path, SQL or traceback reaches a client.
* XML rendering of the ``<Error>`` body lives in ``kvbox.s3.xml.render_error``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kvbox.errors import S3_CODES, KvboxError, wire

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
        spec = S3_CODES[code]
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


def from_kvbox_error(exc: BaseException, *, resource: str | None = None) -> S3Error:
    """The S3 error a front door answers for ``exc``, by its row of ``kvbox.errors.WIRE``.

    >>> from kvbox import errors
    >>> from_kvbox_error(errors.NoSuchBucket("photos"), resource="/photos").code
    'NoSuchBucket'
    >>> from_kvbox_error(errors.InvalidArgument("versioning cannot be turned off")).message
    'versioning cannot be turned off'
    >>> from_kvbox_error(OSError("/data/x: disk full")).message
    'We encountered an internal error. Please try again.'
    """
    if isinstance(exc, S3Error):
        return exc
    if not isinstance(exc, KvboxError):
        return S3Error("InternalError", resource=resource)
    row = wire(exc)
    text = str(exc)
    message = text if row.public and text else row.s3_message
    return S3Error(row.s3, message, resource=resource, extra=row.s3_fields(exc))
