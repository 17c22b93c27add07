"""Every console action is an S3 request, signed as the signed-in principal and sent
through the S3 door's own pipeline.

Layer: console (async, over the S3 door ``kvbox.s3door.frontend.S3Frontend``; no aiohttp).
Rules:

* **The console grants nothing the API would not.** It has no storage access of its own
  for anything a principal does: each action becomes an ``S3Request`` with a SigV4
  ``Authorization`` header made here with the session's access key and secret, and goes
  through ``S3Frontend.handle`` -- the same route, authentication (so a disabled or
  deleted key stops working within the door's key cache time), access decision, handler
  and error table as a request from boto3. The admin API (``/_kvbox/admin``) and the
  policy explainer are reached the same way, so "root only" is the door's rule too.
* Signing server-side, rather than handing the browser the secret, keeps the secret out of
  the browser entirely; signing and then verifying in one process costs two HMAC chains
  per request (microseconds), a price worth the guarantee that no second, privileged path
  exists.
* The payload is ``UNSIGNED-PAYLOAD`` (the browser's body streams straight through, as
  S3 allows for any client); integrity comes from Content-MD5 and the flexible checksums
  the browser may send, which the door verifies as always.
* The Host of these requests is ``[::1]``: an IPv6 literal can never be a virtual-host
  bucket name (``--domain``), so every console request is path style whatever the
  server's domain is.
* The peer address and TLS flag of the browser's connection are the request's, so
  ``aws:SourceIp`` and ``aws:SecureTransport`` conditions judge the person, not the
  console.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from kvbox.auth import sigv4
from kvbox.s3door.frontend import S3Frontend, new_request_id
from kvbox.s3door.types import S3Request, S3Response

#: The Host header of every request the console makes (see the module docstring).
CONSOLE_HOST: Final = "[::1]"
#: The region the console signs for; kvbox accepts any region in a signature's scope.
REGION: Final = "us-east-1"


async def _no_body() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for piece in nothing:  # an empty async generator
        yield piece


class Gateway:
    """Makes S3 requests as a principal, through one S3 door."""

    def __init__(self, frontend: S3Frontend) -> None:
        self.frontend = frontend

    def request(
        self,
        method: str,
        raw_path: str,
        raw_query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        body: AsyncIterator[bytes] | None = None,
        *,
        credentials: tuple[str, str] | None,
        remote: str = "",
        secure: bool = False,
    ) -> S3Request:
        """The ``S3Request`` for one call, signed with ``credentials`` (access key,
        secret), or anonymous when they are None. ``raw_path`` and ``raw_query`` are
        percent-encoded exactly as they will be verified."""
        hdrs: list[tuple[str, str]] = [("host", CONSOLE_HOST), *headers]
        if credentials is not None:
            access_key, secret_key = credentials
            hdrs += sigv4.sign_request(
                method,
                raw_path,
                sigv4.parse_query_string(raw_query),
                hdrs,
                sigv4.UNSIGNED_PAYLOAD,
                access_key=access_key,
                secret_key=secret_key,
                now=datetime.now(UTC),
                region=REGION,
            )
        return S3Request(
            method=method,
            raw_path=raw_path,
            raw_query=raw_query,
            query=parse_qsl(raw_query, keep_blank_values=True),
            headers=CIMultiDict(hdrs),
            body=body if body is not None else _no_body(),
            request_id=new_request_id(),
            remote=remote,
            secure=secure,
        )

    async def call(self, req: S3Request) -> S3Response:
        """Send one request through the door; never raises (the door answers errors)."""
        return await self.frontend.handle(req)

    async def principal_of(self, access_key: str, secret_key: str, remote: str) -> str:
        """Who these credentials are, as the door authenticates them; raises the door's
        authentication error (an ``AuthError`` with its S3 code) when they are wrong.

        A signed ``GET /`` (ListBuckets) is authenticated exactly as any S3 request;
        only authentication runs, so signing in needs no permission at all.
        """
        req = self.request("GET", "/", credentials=(access_key, secret_key), remote=remote)
        await self.frontend.authenticate(req)
        if req.principal is None:  # pragma: no cover - a signed request has a principal
            raise ValueError("the request was not signed")
        return req.principal
