"""The seam between an HTTP server and the S3 door: plain request and response types.

Layer: s3 door (the types only: no I/O, no asyncio, no aiohttp). Rules:

* ``kvbox.server.http`` (aiohttp's low-level server) turns each HTTP request into an
  ``S3Request`` -- plain strings, a case-insensitive header mapping, the body as an
  async iterator of raw bytes -- and writes back the ``S3Response`` the door answers.
  Nothing else crosses: the door never sees aiohttp, so any HTTP layer can drive it and
  the transport stays in ``server/`` (httpx's ``handle_request`` cut-off, hypercorn's
  event types).
* A body is read exactly once, through ``S3Request.body`` (the door's
  ``handlers.common.payload`` wraps it with every check that decides whether it may be
  kept).
* ``FileBody`` lets a GET answer with pinned chunk files, which the HTTP layer sends
  with ``sendfile`` when it can (``kvbox.server.sendfile``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy

from kvbox.auth.mechanism import Verified
from kvbox.core.store import PinnedFiles

__all__ = ["FileBody", "Headers", "S3Request", "S3Response"]

Headers = CIMultiDictProxy[str] | CIMultiDict[str]


@dataclass(slots=True)
class S3Request:
    """One HTTP request as the S3 layer sees it.

    ``raw_path`` and ``raw_query`` are exactly as received (still percent-encoded: the
    signature covers them); ``query`` is the decoded (name, value) list the router reads.
    """

    method: str
    raw_path: str
    raw_query: str
    query: list[tuple[str, str]]
    headers: Headers
    body: AsyncIterator[bytes]
    request_id: str
    #: The verified signature (SigV4 or SigV2), set by ``S3Frontend`` once checked.
    auth: Verified | None = None
    #: Who signed the request: "root", a user name, or None for an anonymous request
    #: (set by ``S3Frontend`` after authentication).
    principal: str | None = "root"
    #: The peer's IP address (``aws:SourceIp``) and whether it came over TLS.
    remote: str = ""
    secure: bool = False
    #: How a POST upload's form was signed (``s3:signatureversion``: ``AWS4-HMAC-SHA256``
    #: or ``AWS``); None for every other request and for an anonymous form.
    form_signature: str | None = None
    #: The TLS version of a secure connection, as s3:TlsVersion spells it (``1.3``).
    tls_version: str | None = None
    #: Filled in by ``S3Frontend.handle`` for metrics and the access log: the S3
    #: operation, the error code, and the ``/bucket/key`` the request is about.
    op: str = ""
    error: str = ""
    resource: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None


@dataclass(slots=True)
class FileBody:
    """A body that is pinned local files (``kvbox.core.store.PinnedFiles``) or, the
    same bytes read the ordinary way, ``stream``.

    The HTTP layer sends the files with sendfile when the connection allows (plain TCP),
    opening each segment through ``files.open``, which checks its chunk first; otherwise
    it releases the pins and sends ``stream``. Either way it calls ``files.release``
    exactly once it is done with the files (a ``FileBody`` that is never sent must be
    released by whoever drops it).
    """

    files: PinnedFiles
    stream: AsyncIterator[bytes]


@dataclass(slots=True)
class S3Response:
    """What a handler answers: status, headers and a body (bytes, a byte stream, files).

    A streamed body must come with ``content_length`` so the client knows the size
    up front (S3 never answers a GET with chunked encoding).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | AsyncIterator[bytes] | FileBody = b""
    content_length: int | None = None
