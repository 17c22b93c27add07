"""The website endpoint: buckets served as static websites, anonymously, over plain HTTP.

Layer: server (aiohttp). Rules: what a request means is decided by the pure
``kvbox.s3.website`` (plan, folder redirect, error rules and documents, HTML error
pages); this module looks things up in the ``Store`` between those steps and streams
the bytes. It is its own aiohttp application, separate from the S3 API, because S3's
website endpoints are separate hosts with different rules: no signatures, GET and HEAD
only, index documents, redirects, and errors as HTML rather than XML.

* The bucket comes from the Host header (port dropped, lowercased): with a web domain,
  ``<bucket>.<web-domain>``; otherwise the whole host names the bucket, the way a CNAME
  equal to the bucket name works with S3. Only when the host is an IP address or
  ``localhost`` (nothing else could name a bucket) does the first path segment name
  the bucket instead (``http://127.0.0.1:8080/<bucket>/<key>``); redirects then keep the
  ``/<bucket>`` prefix so they lead back to the same site.
* Requests are anonymous. An object is served only if ``can_read(bucket, key, version)``
  says so, else it is a 403 AccessDenied (which the error document and error routing
  rules see, as on S3). A missing key is a 404, unless ``can_list(bucket)`` is given and
  says the public may not list the bucket: then S3 answers 403, so that anonymous users
  cannot probe which keys exist. Without ``can_list`` a missing key is always 404.
* Objects are served as GetObject serves them (``kvbox.s3door.handlers.object``'s read
  conditions and range parsing): Content-Type, Content-Length, ETag, Last-Modified,
  stored headers and user metadata; Range (206, 416), If-None-Match / If-Modified-Since
  (304), If-Match / If-Unmodified-Since (412). Bodies stream through
  ``Store.open_read``, one chunk in memory at a time; the first chunk is read (and
  checked) before the status line goes out, so an object deleted meanwhile is still an
  honest 404 and a damaged first chunk an honest 500; damage found later cuts the
  connection.
* A request that carries Origin gets the bucket's CORS headers (``kvbox.s3.cors``),
  as S3 applies a bucket's CORS configuration on its website endpoint too.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web

from kvbox.config import SERVER
from kvbox.core.model import ObjectVersion
from kvbox.core.store import Store
from kvbox.errors import DataDamaged, InvalidArgument, NotFound, wire
from kvbox.s3 import cors
from kvbox.s3 import website as site
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import WebsiteConfiguration, quote_etag
from kvbox.s3door.handlers.common import TAG, http_date, metadata_headers
from kvbox.s3door.handlers.object import check_read_conditions, parse_range
from kvbox.server.accesslog import AccessLog, address_of
from kvbox.server.httpdoor import raw_response

log = logging.getLogger("kvbox.web")


@dataclass(frozen=True, slots=True)
class Visitor:
    """What the access decision may know of an anonymous website visitor: the same
    request facts the S3 port gives it (``aws:SourceIp``, ``aws:SecureTransport``,
    ``aws:UserAgent``, ``aws:Referer``), so a policy decides alike on both ports."""

    remote: str = ""
    secure: bool = False
    user_agent: str | None = None
    referer: str | None = None

    @classmethod
    def of(cls, request: web.Request) -> Visitor:
        return cls(
            request.remote or "",
            request.secure,
            request.headers.get("User-Agent"),
            request.headers.get("Referer"),
        )


#: May this visitor read this object? (visitor, bucket, key, the version to be served).
CanRead = Callable[[Visitor, str, str, ObjectVersion], Awaitable[bool]]
#: May this visitor list the bucket (learn that a key does not exist)?
CanList = Callable[[Visitor, str], Awaitable[bool]]

ALLOWED_METHODS = "GET, HEAD"
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Target:
    """Which bucket a request is for, the key path asked for, and the bucket's root path
    on this host ("" when the host names the bucket, "/<bucket>" in path style)."""

    bucket: str
    path: str
    base: str = ""


def _hostname(host: str) -> str:
    """The Host header without its port, lowercased, IPv6 brackets removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def target_of(host: str, raw_path: str, web_domain: str | None) -> Target | None:
    """The bucket and key path of a request (see the module docstring); None when a
    path-style request names no bucket.

    >>> target_of("blog.web.example:8080", "/a%20b", "web.example")
    Target(bucket='blog', path='a b', base='')
    >>> target_of("www.example.com", "/", None)
    Target(bucket='www.example.com', path='', base='')
    >>> target_of("127.0.0.1:8080", "/blog/docs/", None)
    Target(bucket='blog', path='docs/', base='/blog')
    """
    name = _hostname(host)
    path = raw_path.partition("?")[0]
    if web_domain:
        domain = web_domain.lower().strip(".")
        if name.endswith("." + domain) and len(name) > len(domain) + 1:
            return Target(name[: -len(domain) - 1], unquote(path[1:]))
    if not _is_ip_or_localhost(name):
        return Target(name, unquote(path[1:]))
    bucket, _, rest = path[1:].partition("/")
    if not bucket:
        return None
    bucket = unquote(bucket)
    return Target(bucket, unquote(rest), "/" + bucket)


def _new_request_id() -> str:
    return os.urandom(8).hex().upper()


def _host_id() -> str:
    return base64.b64encode(os.urandom(24)).decode("ascii")


def _object_headers(v: ObjectVersion) -> dict[str, str]:
    h = {
        "Content-Type": v.content_type,
        "ETag": quote_etag(v.etag),
        "Last-Modified": http_date(v.mtime_ns),
        "Accept-Ranges": "bytes",
    }
    shown = {k: val for k, val in v.attrs.items() if not k.startswith(TAG)}
    shown.pop(site.REDIRECT_ATTR, None)
    h.update(metadata_headers(shown))
    return h


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close a byte stream early: ``Store.iter_bytes`` unpins its chunks when closed."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class _Gone(Exception):
    """The object vanished between its lookup and the read of its first chunk."""


class Website:
    """Answers website-endpoint requests over one ``Store`` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        web_domain: str | None,
        can_read: CanRead,
        can_list: CanList | None = None,
    ) -> None:
        self.store = store
        self.web_domain = web_domain
        self.can_read = can_read
        self.can_list = can_list

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = _new_request_id()
        extra: dict[str, str] = {"x-amz-request-id": request_id, "Server": SERVER}
        try:
            resp = await self._handle(request, request_id, extra)
        except DataDamaged:  # reported and logged by the Store, once per object
            err = site.WebError(500, "InternalError", wire(DataDamaged).s3_message or "")
            resp = self._error(request, err, request_id)
        except Exception:
            log.exception("website %s %s failed", request.method, request.raw_path)
            err = site.WebError(500, "InternalError", "We encountered an internal error.")
            resp = self._error(request, err, request_id)
        # Streamed responses were prepared with ``extra`` already; the rest get it here.
        if not resp.prepared:
            for k, v in extra.items():
                resp.headers.setdefault(k, v)
        return resp

    async def _handle(
        self, request: web.Request, request_id: str, extra: dict[str, str]
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            err = site.WebError(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                [("Method", request.method), ("ResourceType", "OBJECT")],
            )
            resp = self._error(request, err, request_id)
            resp.headers["Allow"] = ALLOWED_METHODS
            return resp
        target = target_of(request.host, request.raw_path, self.web_domain)
        if target is None:
            return self._no_bucket(request, "", request_id)
        bucket = await self.store.get_bucket(target.bucket)
        if bucket is None:
            return self._no_bucket(request, target.bucket, request_id)
        origin = request.headers.get("Origin")
        extra.update(cors.actual_headers(cors.config_of(bucket.attrs), origin, request.method))
        config = site.config_of(bucket.attrs)
        if config is None:
            err = site.WebError(
                404,
                "NoSuchWebsiteConfiguration",
                "The specified bucket does not have a website configuration",
                [("BucketName", target.bucket)],
            )
            return self._error(request, err, request_id)
        return await self._serve(request, target, config, request_id, extra)

    async def _serve(
        self,
        request: web.Request,
        target: Target,
        config: WebsiteConfiguration,
        request_id: str,
        extra: dict[str, str],
    ) -> web.StreamResponse:
        step = site.plan(config, target.path)
        if isinstance(step, site.Redirect):
            return self._redirect(request, step, target)
        v, status = await self._lookup(request, target.bucket, step.key)
        if v is None and step.folder_index is not None:
            index, _ = await self._lookup(request, target.bucket, step.folder_index)
            if index is not None:
                return self._redirect(request, site.folder_redirect(step), target)
        if v is None:
            return await self._failed(request, target, config, step, status, request_id, extra)
        location = site.website_redirect(v.attrs)
        if location is not None:
            return self._moved(location, target)
        try:
            return await self._object(request, v, extra)
        except _Gone:
            return await self._failed(request, target, config, step, 404, request_id, extra)
        except S3Error as exc:  # 412 or 416 from the read conditions and range
            err = site.WebError(exc.status, exc.code, exc.message)
            resp = self._error(request, err, request_id)
            resp.headers.update(exc.headers)
            return resp

    async def _lookup(
        self, request: web.Request, bucket: str, key: str
    ) -> tuple[ObjectVersion | None, int]:
        """(the live, readable object, 200) or (None, 404 missing | 403 not readable)."""
        try:
            v = await self.store.head(bucket, key)
        except (InvalidArgument, NotFound):
            v = None  # an impossible key (too long...), a bucket deleted meanwhile
        if v is None or v.is_delete_marker:
            if self.can_list is not None and not await self.can_list(Visitor.of(request), bucket):
                return None, 403
            return None, 404
        if not await self.can_read(Visitor.of(request), bucket, key, v):
            return None, 403
        return v, 200

    async def _failed(
        self,
        request: web.Request,
        target: Target,
        config: WebsiteConfiguration,
        step: site.Fetch,
        status: int,
        request_id: str,
        extra: dict[str, str],
    ) -> web.StreamResponse:
        err = self._lookup_error(status, step.key)
        then = site.on_error(config, step.path, status)
        if isinstance(then, site.Redirect):
            return self._redirect(request, then, target)
        if then is None:
            return self._error(request, err, request_id)
        doc, doc_status = await self._lookup(request, target.bucket, then.key)
        if doc is not None:
            location = site.website_redirect(doc.attrs)
            if location is not None:
                return self._moved(location, target)
            try:
                # the document is the body; the error is still told in the headers
                doc_extra = {**extra, **err.headers()}
                return await self._object(request, doc, doc_extra, status=then.status)
            except _Gone:
                doc_status = 404
        doc_err = self._lookup_error(doc_status, then.key)
        return self._error(request, err, request_id, doc_err)

    @staticmethod
    def _lookup_error(status: int, key: str) -> site.WebError:
        if status == 403:
            return site.WebError(403, "AccessDenied", "Access Denied")
        return site.WebError(404, "NoSuchKey", "The specified key does not exist.", [("Key", key)])

    async def _object(
        self,
        request: web.Request,
        v: ObjectVersion,
        extra: Mapping[str, str],
        *,
        status: int | None = None,
    ) -> web.StreamResponse:
        """Serve ``v``: with conditions and Range, or, for an error document (``status``
        given), whole and unconditionally with that status."""
        headers = _object_headers(v)
        first, last = 0, v.size - 1
        code = 200
        if status is not None:
            code = status
        else:
            cond = check_read_conditions(v, request.headers)
            if cond == 412:
                raise S3Error("PreconditionFailed")
            if cond == 304:
                keep = {k: headers[k] for k in ("ETag", "Last-Modified")}
                return web.Response(status=304, headers={**keep, **extra})
            rng = request.headers.get("Range")
            span = parse_range(rng, v.size) if rng is not None else None
            if span is not None:
                first, last = span
                code = 206
                headers["Content-Range"] = f"bytes {first}-{last}/{v.size}"
        length = last - first + 1 if v.size else 0
        headers.update(extra)
        if request.method == "HEAD":
            resp = web.Response(status=code, headers=headers)
            resp.headers["Content-Length"] = str(length)
            return resp
        try:
            stream = await self.store.open_read(v, first, last)
        except NotFound:
            raise _Gone() from None
        head = await anext(stream, b"")
        out = web.StreamResponse(status=code, headers=headers)
        out.content_length = length
        try:
            await out.prepare(request)
            if head:
                await out.write(head)
            async for piece in stream:
                await out.write(piece)
            await out.write_eof()
        except ConnectionResetError:  # the client went away: nothing to report
            log.debug("website client left during %s/%s", v.bucket, v.key)
        except DataDamaged:  # reported by the Store; the status line is out: cut
            if request.transport is not None:
                request.transport.close()
        except Exception:
            # The status line is out: cut the connection so the client sees a short body.
            log.exception("website stream of %s/%s failed", v.bucket, v.key)
            if request.transport is not None:
                request.transport.close()
        finally:
            await _close(stream)
        return out

    def _redirect(
        self, request: web.Request, r: site.Redirect, target: Target
    ) -> web.StreamResponse:
        location = r.location(request.scheme, request.host, target.base)
        return web.Response(status=r.status, headers={"Location": location})

    @staticmethod
    def _moved(location: str, target: Target) -> web.StreamResponse:
        """301 to an object's x-amz-website-redirect-location (site-relative ones keep
        the path-style prefix)."""
        if location.startswith("/"):
            location = target.base + location
        return web.Response(status=301, headers={"Location": location})

    def _no_bucket(self, request: web.Request, name: str, request_id: str) -> web.StreamResponse:
        err = site.WebError(
            404, "NoSuchBucket", "The specified bucket does not exist", [("BucketName", name)]
        )
        return self._error(request, err, request_id)

    @staticmethod
    def _error(
        request: web.Request,
        err: site.WebError,
        request_id: str,
        document_error: site.WebError | None = None,
    ) -> web.StreamResponse:
        headers = {"Content-Type": _HTML, **err.headers()}
        body = site.error_page(
            err, request_id=request_id, host_id=_host_id(), document_error=document_error
        )
        if request.method == "HEAD":
            resp = web.Response(status=err.status, headers=headers)
            resp.headers["Content-Length"] = str(len(body))
            return resp
        return web.Response(status=err.status, headers=headers, body=body)


#: The governor's refusals on the website port, as S3's website endpoint words errors:
#: an HTML page with the code, plus the x-amz-error-* headers.
_ANSWERS: Final[dict[str, site.WebError]] = {
    "busy": site.WebError(503, "SlowDown", "Please reduce your request rate."),
    "address": site.WebError(503, "SlowDown", "Please reduce your request rate."),
    "header_bytes": site.WebError(
        400,
        "RequestHeaderSectionTooLarge",
        "Your request header section exceeds the maximum allowed size.",
    ),
    "header_fields": site.WebError(
        400, "RequestHeaderSectionTooLarge", "Your request has too many header fields."
    ),
    "header_timeout": site.WebError(
        400,
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to within the "
        "timeout period.",
    ),
}


def web_answer(kind: str, remote: str) -> bytes:
    """The website port's form of ``kvbox.server.governor``'s answers."""
    err = _ANSWERS[kind]
    body = site.error_page(err, request_id=_new_request_id(), host_id=_host_id())
    return raw_response(err.status, body, _HTML, err.headers())


def build_web_app(
    store: Store,
    *,
    web_domain: str | None,
    can_read: CanRead,
    can_list: CanList | None = None,
    access_log: AccessLog | None = None,
    middlewares: Sequence[Any] = (),
) -> web.Application:
    """The website endpoint as an aiohttp app (every path, every method: non-GET/HEAD
    requests get S3's 405 page). ``kvbox serve`` runs it under the governor
    (``HttpDoor.middleware`` in ``middlewares``, ``runner.server`` as the protocol);
    tests may start it like any app: ``web.AppRunner(app)``, ``setup()``, a ``web.TCPSite``."""
    website = Website(store, web_domain=web_domain, can_read=can_read, can_list=can_list)
    chain = list(middlewares)
    if access_log is not None:
        chain.append(_access_middleware(access_log, web_domain))
    app = web.Application(middlewares=chain)
    app.router.add_route("*", "/{tail:.*}", website.handle)
    return app


def _access_middleware(access_log: AccessLog, web_domain: str | None) -> Any:
    """One access line per website request: the bucket and key it was for, its status,
    body bytes out (as far as known when the handler returns) and duration."""

    @web.middleware
    async def log_request(request: web.Request, handler: Any) -> web.StreamResponse:
        t0 = time.perf_counter()
        status, sent, request_id = "500", 0, "-"
        try:
            resp: web.StreamResponse = await handler(request)
            status = str(resp.status)
            request_id = resp.headers.get("x-amz-request-id", "-")
            if request.method != "HEAD":
                sent = resp.body_length if resp.prepared else resp.content_length or 0
            return resp
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        finally:
            found = target_of(request.host, request.raw_path.partition("?")[0], web_domain)
            where = f"{found.bucket}/{found.path.lstrip('/')}" if found else request.path
            access_log.request(
                "web",
                address_of(request.transport),
                None,
                request.method,
                where,
                status,
                request.content_length or 0,
                sent,
                time.perf_counter() - t0,
                request_id,
            )

    return log_request
