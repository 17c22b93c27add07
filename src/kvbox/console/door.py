"""The console's front door: the page, its assets, sign-in, and the console's JSON API.

Layer: console (async; no aiohttp: the HTTP layer hands in an ``S3Request`` -- the plain
request seam of ``kvbox.s3door.types`` -- and sends back the ``S3Response``, so
one adapter in ``kvbox.server.http`` serves the console on the HTTP port and on
``--console-port`` alike). Rules:

* **Where.** The console lives at ``/console/``. Behind a reverse proxy on a sub-path the
  public prefix comes from ``--console-base-path`` or, failing that, the request's
  ``X-Forwarded-Prefix``; every URL in the page is relative, so the prefix matters only
  for the cookie's ``Path`` and for redirects. A proxy that does not strip its prefix is
  served too (``<prefix>/console/...`` is accepted).
* **Who.** A browser proves who it is once, with an access key and secret that the S3
  door authenticates (``Gateway.principal_of``); from then on it holds only a session
  cookie (HttpOnly, SameSite=Strict, Secure when the connection or the proxy in front is
  TLS, scoped to the console's path) and a CSRF token it keeps in page memory.
* **What.** Everything a principal does goes through ``Gateway`` as that principal (see
  ``kvbox.console.gateway``); ``/api/s3/<path>`` is the S3 API itself, signed on the
  way. The few endpoints of the console's own (bucket statistics, presigned links, the
  public check, policy validation, the dashboard) first ask the S3 door as the principal
  whatever the API would ask (HeadBucket before statistics, HeadObject before a link),
  and only then read what the answer allows.
* **Cross-site defences.** Every state change (any method but GET and HEAD) needs the
  session's CSRF token in ``X-Kvbox-CSRF``; sign-in needs a JSON body (no HTML form can
  send one across sites without a CORS preflight, which is never granted). Any API
  request a browser marks ``Sec-Fetch-Site: cross-site`` or ``same-site`` is refused,
  so a sibling subdomain cannot even embed a private object. Every response carries a
  strict Content-Security-Policy (no inline script, no other host), ``X-Frame-Options:
  DENY``; S3 bodies passed through additionally carry ``sandbox``, so an HTML object
  opened from the console can never run as the console.
* **Failures** are JSON ``{"error": code, "message": text}`` with an HTTP status, except
  under ``/api/s3/``, where they are the S3 door's own XML errors, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

from defusedxml import ElementTree

from kvbox import __version__
from kvbox.auth import sigv4
from kvbox.config import DEFAULT_IDLE_SECONDS, DEFAULT_LIFETIME_SECONDS
from kvbox.console.gateway import REGION, Gateway
from kvbox.console.policy_lines import error_line
from kvbox.console.samples import INTERVAL, MetricsRing
from kvbox.console.session import (
    Session,
    SessionStore,
    SignInLimiter,
    same_token,
)
from kvbox.core.meta.users import ROOT
from kvbox.core.store import Store
from kvbox.errors import KvboxError
from kvbox.metrics import ServerCounters
from kvbox.policy import PolicyError, is_public, parse_policy
from kvbox.s3door.frontend import S3Frontend
from kvbox.s3door.handlers.common import read_small
from kvbox.s3door.types import S3Request, S3Response

log = logging.getLogger("kvbox.console")

#: Where the console is mounted on every port that serves it.
MOUNT: Final = "/console"
COOKIE: Final = "kvbox_console"
CSRF_HEADER: Final = "X-Kvbox-CSRF"
#: The page's policy: its own scripts, styles, images and media only; blob: frames for
#: the one preview the page builds itself (a PDF); nothing from any other host; never
#: framed.
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self'; connect-src 'self'; frame-src blob:; font-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: S3 bodies seen through the console: inert documents with an opaque origin.
SANDBOX_CSP: Final = "sandbox; default-src 'none'; frame-ancestors 'none'"
#: The object's stored Cache-Control, as relayed to the page (see ``ConsoleDoor._s3``).
OBJECT_CACHE_CONTROL: Final = "X-Kvbox-Object-Cache-Control"
_COMMON_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Request headers a browser may pass to S3 through ``/api/s3/``: the ones S3 operations
#: read, never the ones the console's signature owns.
_S3_REQUEST_HEADERS: Final = frozenset(
    {
        "content-type",
        "content-length",
        "content-md5",
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "user-agent",
        "referer",
        "x-kvbox-at",
    }
)
_SIGNATURE_HEADERS: Final = frozenset(
    {"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}
)
#: S3 answers that mean the session's key no longer works: the session ends.
_KEY_GONE: Final = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
_PREFIX_RE: Final = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")
#: Largest JSON body the console's own endpoints read (a 20 KB policy with room to spare).
_MAX_JSON: Final = 64 * 1024
#: Names one statistics request may ask about.
_MAX_STAT_NAMES: Final = 1000
#: Seconds the data directory's measured size is reused (walking it costs a stat per file).
_DISK_CACHE_SECONDS: Final = 30.0
#: Seconds between sweeps of expired sessions.
_SWEEP_SECONDS: Final = 60.0
#: Seconds a principal's dashboard totals are reused: they cost a HeadBucket per bucket,
#: and an open dashboard asks every few seconds.
_TOTALS_CACHE_SECONDS: Final = 15.0


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console is reached; all of it from ``kvbox serve`` flags."""

    base_path: str = ""  # a reverse proxy's public prefix ("" = none), no trailing slash
    idle: float = DEFAULT_IDLE_SECONDS
    lifetime: float = DEFAULT_LIFETIME_SECONDS
    s3_url: str | None = None  # the S3 endpoint as browsers reach it (None: derive)
    http_port: int = 0  # the S3 port, to derive s3_url when the console has its own port
    own_port: bool = False  # served on --console-port rather than the HTTP port
    tls: bool = False
    kv_bucket: str = "kv"
    data_dir: Path | None = None  # None: cache mode, nothing on disk
    web_port: int = 0  # the static-website endpoint (0: none), for its links
    web_domain: str | None = None


def normalize_base_path(value: str | None) -> str:
    """``--console-base-path``: "" or ``/a/b`` (leading slash, none trailing); raises
    ValueError on anything that is not a plain path."""
    text = (value or "").strip()
    if text in ("", "/"):
        return ""
    if text.startswith("//"):  # a network-path reference: another host, not a prefix
        raise ValueError(f"not a URL path prefix: {value!r} (e.g. /kvbox)")
    text = "/" + text.strip("/")
    if "//" in text or not _PREFIX_RE.fullmatch(text) or ".." in text.split("/"):
        raise ValueError(f"not a URL path prefix: {value!r} (e.g. /kvbox)")
    return text


@dataclass(slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets() -> dict[str, _Asset]:
    """Every file under ``static/``, read once: the console's page is a few hundred KB."""
    out: dict[str, _Asset] = {}
    root = resources.files("kvbox.console") / "static"

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
            else:
                body = child.read_bytes()
                ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
                if ctype.startswith("text/") or ctype.endswith(("javascript", "json")):
                    ctype += "; charset=utf-8"
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                out[name] = _Asset(body, ctype, etag)

    walk(root, "")
    return out


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> S3Response:
    h = {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})}
    return S3Response(status, h, json.dumps(payload).encode())


def _error(status: int, code: str, message: str, **extra: str) -> S3Response:
    return _json(status, {"error": code, "message": message}, extra)


class _Refused(Exception):
    """A console request refused before any S3 call: becomes ``_error``."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.code = code
        self.response = _error(status, code, message, **headers)


async def _read_json(req: S3Request) -> dict[str, Any]:
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise _Refused(415, "UnsupportedMediaType", "send the body as application/json")
    try:
        raw = await read_small(req, _MAX_JSON)
        doc = json.loads(raw)
    except (ValueError, KvboxError) as exc:
        raise _Refused(400, "BadRequest", f"the body is not a JSON object: {exc}") from None
    except Exception as exc:  # S3Error from read_small: too large
        raise _Refused(413, "TooLarge", str(exc) or "the body is too large") from None
    if not isinstance(doc, dict):
        raise _Refused(400, "BadRequest", "the body must be a JSON object")
    return doc


def _pop_header(headers: dict[str, str], name: str) -> str | None:
    """Remove ``name`` (any case) from a response's headers; its last value, if any."""
    found = None
    for k in [k for k in headers if k.lower() == name]:
        found = headers.pop(k)
    return found


def _xml_error(resp: S3Response) -> tuple[str, str]:
    """(code, message) of an S3 XML error response (("", "") if it has none)."""
    if not isinstance(resp.body, bytes) or not resp.body:
        return "", ""
    try:
        root = ElementTree.fromstring(resp.body)
    except Exception:
        return "", ""
    return root.findtext("Code") or "", root.findtext("Message") or ""


class ConsoleDoor:
    """Serves the console for one S3 door; see the module docstring."""

    def __init__(
        self,
        frontend: S3Frontend,
        store: Store,
        settings: ConsoleSettings,
        doors: Mapping[str, ServerCounters],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = Gateway(frontend)
        self.store = store
        self.settings = settings
        self.sessions = SessionStore(idle=settings.idle, lifetime=settings.lifetime)
        self.limiter = SignInLimiter()
        self.counters = ServerCounters()
        self.ring = MetricsRing({**doors, "console": self.counters})
        self._clock = clock
        self._wall = wall
        self._started_wall = wall()
        self._assets = _load_assets()
        self._disk: tuple[float, dict[str, int]] | None = None
        self._totals: dict[str, tuple[float, dict[str, int]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._api: dict[tuple[str, str], Callable[[S3Request, Session], Awaitable[S3Response]]]
        self._api = {
            ("GET", "stats"): self._stats,
            ("POST", "presign"): self._presign,
            ("GET", "public"): self._public,
            ("POST", "policy/validate"): self._validate_policy,
            ("GET", "dashboard"): self._dashboard,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling the doors' counters for the dashboard (once a loop runs)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample_loop(self) -> None:
        last_sweep = self._clock()
        while True:
            now = self._clock()
            self.ring.take(now)
            if now - last_sweep >= _SWEEP_SECONDS:
                self.sessions.sweep(now)
                last_sweep = now
            await asyncio.sleep(INTERVAL)

    # --- routing --------------------------------------------------------------------------

    def _mount_rest(self, raw_path: str) -> str | None:
        """The path below the mount ("" for the mount itself), or None if not the console's."""
        for mount in (MOUNT, self.settings.base_path + MOUNT if self.settings.base_path else ""):
            if mount and (raw_path == mount or raw_path.startswith(mount + "/")):
                return raw_path[len(mount) :]
        return None

    def claims(self, raw_path: str, headers: Mapping[str, str], raw_query: str) -> bool:
        """Whether a request on the shared HTTP port is the console's: under the mount and
        carrying no S3 credentials. So a signed request for a bucket named ``console``
        still reaches S3; only anonymous access to such a bucket is shadowed (use
        ``--console-port``, or ``--console off``, to give that path back to S3)."""
        if self._mount_rest(raw_path) is None:
            return False
        if "Authorization" in headers or "authorization" in headers:
            return False
        lowered = raw_query.lower()
        return "x-amz-credential=" not in lowered and "x-amz-signature=" not in lowered

    def prefix(self, req: S3Request) -> str:
        """The public path prefix of this request (a reverse proxy's), "" if none."""
        if self.settings.base_path:
            return self.settings.base_path
        try:
            return normalize_base_path(req.header("x-forwarded-prefix"))
        except ValueError:
            return ""

    def _secure(self, req: S3Request) -> bool:
        if req.secure:
            return True
        proto = (req.header("x-forwarded-proto") or "").split(",")[0].strip().lower()
        return proto == "https"

    async def handle(self, req: S3Request) -> S3Response:
        """Answer one console request (never raises, except cancellation)."""
        t0 = time.perf_counter()
        # Who asked, for the access log and the metrics: nobody until a session says so
        # (the request seam's default principal is root, which a console request is not).
        req.principal = None
        try:
            resp = await self._route(req)
        except _Refused as exc:
            req.error = exc.code
            resp = exc.response
        except Exception:
            log.exception("console %s %s failed", req.method, req.raw_path)
            req.error = "InternalError"
            resp = _error(500, "InternalError", "the console failed; see the server log")
        for name, value in _COMMON_HEADERS.items():
            resp.headers.setdefault(name, value)
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        c = self.counters
        c.requests += 1
        c.by_op[req.op or "Console"] += 1
        if resp.status >= 400:
            c.errors[req.error or str(resp.status)] += 1
        c.latency.observe(time.perf_counter() - t0)
        c.bytes_in += int(req.header("content-length") or 0)
        sent = len(resp.body) if isinstance(resp.body, bytes) else 0
        c.bytes_out += resp.content_length or sent
        return resp

    async def _route(self, req: S3Request) -> S3Response:
        rest = self._mount_rest(req.raw_path)
        if rest is None:
            if req.raw_path == "/" and self.settings.own_port:
                return self._redirect(req, "")
            return _error(404, "NotFound", "not a console path; the console is at /console/")
        if rest == "":
            return self._redirect(req, req.raw_query)
        if rest.startswith("/api/"):
            req.op = "Console"
            return await self._api_request(req, rest[len("/api/") :])
        if req.method not in ("GET", "HEAD"):
            return _error(405, "MethodNotAllowed", f"{req.method} is not allowed here")
        name = "index.html" if rest == "/" else rest[1:]
        asset = self._assets.get(name)
        if asset is None:
            return _error(404, "NotFound", f"no console asset {name!r}")
        return self._asset(req, asset)

    def _redirect(self, req: S3Request, query: str) -> S3Response:
        target = self.prefix(req) + MOUNT + "/" + (f"?{query}" if query else "")
        return S3Response(308, {"Location": target, "Cache-Control": "no-store"})

    def _asset(self, req: S3Request, asset: _Asset) -> S3Response:
        headers = {
            "Content-Type": asset.content_type,
            "ETag": asset.etag,
            # Revalidate every time: an upgraded server must never run yesterday's script.
            "Cache-Control": "no-cache",
        }
        if req.header("if-none-match") == asset.etag:
            return S3Response(304, headers)
        body = b"" if req.method == "HEAD" else asset.body
        return S3Response(200, headers, body, content_length=len(asset.body))

    # --- the API --------------------------------------------------------------------------

    async def _api_request(self, req: S3Request, path: str) -> S3Response:
        site = (req.header("sec-fetch-site") or "").lower()
        if site in ("cross-site", "same-site"):
            raise _Refused(403, "CrossSiteRequest", "the console API answers only its own pages")
        if path == "session":
            return await self._session_endpoint(req)
        session = self._session(req)
        if req.method not in ("GET", "HEAD"):
            token = req.header(CSRF_HEADER) or ""
            if not token or not same_token(token, session.csrf):
                raise _Refused(403, "BadCsrfToken", "missing or wrong CSRF token; reload the page")
        if path.startswith("s3/"):
            return await self._s3(req, session, "/" + path[len("s3/") :])
        handler = self._api.get((req.method, path))
        if handler is None:
            return _error(404, "NotFound", f"no console API {req.method} {path}")
        req.op = "Console:" + path
        return await handler(req, session)

    def _session_id(self, req: S3Request) -> str | None:
        raw = req.header("cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return morsel.value if morsel is not None else None

    def _session(self, req: S3Request) -> Session:
        sid = self._session_id(req)
        s = self.sessions.get(sid, self._clock()) if sid else None
        if s is None:
            raise _Refused(401, "NotSignedIn", "not signed in, or the session expired")
        req.principal = s.principal
        return s

    def _cookie(self, req: S3Request, value: str, *, clear: bool = False) -> str:
        parts = [
            f"{COOKIE}={value}",
            f"Path={self.prefix(req)}{MOUNT}/",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if self._secure(req):
            parts.append("Secure")
        if clear:
            parts.append("Max-Age=0")
        return "; ".join(parts)

    def _info(self, req: S3Request, s: Session) -> dict[str, Any]:
        now = self._clock()
        return {
            "signed_in": True,
            "principal": s.principal,
            "root": s.principal == ROOT,
            "access_key": s.access_key,
            "csrf": s.csrf,
            "kv_bucket": self.settings.kv_bucket,
            "s3_url": self.s3_url(req),
            "version": __version__,
            "idle_seconds": self.settings.idle,
            "expires_in": max(0.0, s.expires_at(self.settings.idle, self.settings.lifetime) - now),
            "website": self._website(req),
        }

    def _website(self, req: S3Request) -> dict[str, Any] | None:
        """Where buckets' websites are served (``--web-port``), for the settings page's
        link: ``BUCKET.<web domain>`` or, without one, the bucket name as the host."""
        if not self.settings.web_port:
            return None
        return {
            "port": self.settings.web_port,
            "domain": self.settings.web_domain,
            "scheme": "https" if self.settings.tls else "http",
        }

    async def _session_endpoint(self, req: S3Request) -> S3Response:
        req.op = "Console:session"
        if req.method == "GET":
            # Not signed in is an answer here, not an error: the page asks on every load.
            sid = self._session_id(req)
            s = self.sessions.get(sid, self._clock()) if sid else None
            if s is None:
                return _json(200, {"signed_in": False})
            req.principal = s.principal
            return _json(200, self._info(req, s))
        if req.method == "DELETE":
            s = self._session(req)
            if not same_token(req.header(CSRF_HEADER) or "", s.csrf):
                raise _Refused(403, "BadCsrfToken", "missing or wrong CSRF token; reload the page")
            self.sessions.drop(s.id)
            gone = {"Set-Cookie": self._cookie(req, "", clear=True)}
            return _json(200, {"signed_out": True}, gone)
        if req.method != "POST":
            return _error(405, "MethodNotAllowed", "GET, POST or DELETE")
        return await self._sign_in(req)

    async def _sign_in(self, req: S3Request) -> S3Response:
        doc = await _read_json(req)
        access_key = str(doc.get("access_key") or "").strip()
        secret_key = str(doc.get("secret_key") or "")
        if not access_key or not secret_key:
            raise _Refused(400, "BadRequest", "an access key and a secret key are both needed")
        if len(access_key) > 128 or len(secret_key) > 256:
            raise _Refused(400, "BadRequest", "that is not an access key and secret")
        now = self._clock()
        wait = self.limiter.retry_after(req.remote, access_key, now)
        if wait > 0:
            raise _Refused(
                429,
                "TooManyAttempts",
                f"too many failed sign-ins; try again in {int(wait) + 1} s",
                **{"Retry-After": str(int(wait) + 1)},
            )
        try:
            principal = await self.gateway.principal_of(access_key, secret_key, req.remote)
        except sigv4.AuthError as exc:
            self.limiter.failed(req.remote, access_key, now)
            log.info("console sign-in refused from %s: %s", req.remote, type(exc).__name__)
            raise _Refused(
                401,
                "SignInFailed",
                "the access key or secret key is wrong, or the key or its user is disabled",
            ) from None
        s = self.sessions.create(principal, access_key, secret_key, now)
        req.principal = principal
        log.info("console sign-in: %s from %s", principal, req.remote)
        return _json(200, self._info(req, s), {"Set-Cookie": self._cookie(req, s.id)})

    # --- S3 through the console -----------------------------------------------------------

    async def _call(
        self,
        req: S3Request,
        s: Session | None,
        method: str,
        raw_path: str,
        raw_query: str = "",
    ) -> tuple[S3Response, str]:
        """One bodiless S3 request as ``s``'s principal (anonymous when ``s`` is None):
        the door's response and its S3 error code ("" on success)."""
        signed = self.gateway.request(
            method,
            raw_path,
            raw_query,
            credentials=(s.access_key, s.secret_key) if s is not None else None,
            remote=req.remote,
            secure=self._secure(req),
        )
        return await self._checked(signed, s), signed.error

    async def _checked(self, signed: S3Request, s: Session | None) -> S3Response:
        resp = await self.gateway.call(signed)
        if s is not None and resp.status == 403 and signed.error in _KEY_GONE:
            # The key was disabled, deleted or rotated away since sign-in: the session
            # cannot act any more, so it ends (every session of that key does).
            self.sessions.drop_key(s.access_key)
            raise _Refused(401, "NotSignedIn", "your access key no longer works; sign in again")
        return resp

    async def _s3(self, req: S3Request, s: Session, raw_path: str) -> S3Response:
        headers = [
            (name, value)
            for name, value in req.headers.items()
            if (low := name.lower()) in _S3_REQUEST_HEADERS
            or (low.startswith("x-amz-") and low not in _SIGNATURE_HEADERS)
        ]
        signed = self.gateway.request(
            req.method,
            raw_path,
            req.raw_query,
            headers,
            req.body,
            credentials=(s.access_key, s.secret_key),
            remote=req.remote,
            secure=self._secure(req),
        )
        resp = await self._checked(signed, s)
        req.op, req.error, req.resource = signed.op, signed.error, signed.resource
        # The object's own Cache-Control is metadata the page shows and edits; the browser
        # must not cache what the console relays, so it travels under another name.
        stored = _pop_header(resp.headers, "cache-control")
        if stored is not None:
            resp.headers[OBJECT_CACHE_CONTROL] = stored
        resp.headers["Cache-Control"] = "private, no-store"
        _pop_header(resp.headers, "content-security-policy")
        resp.headers["Content-Security-Policy"] = SANDBOX_CSP
        return resp

    def s3_url(self, req: S3Request) -> str:
        """The S3 endpoint as this browser reaches it, for presigned and public links.

        ``--console-s3-url`` if given. On the HTTP port the S3 API shares the console's
        host, scheme and proxy prefix (a presigned URL survives a proxy that strips the
        prefix and keeps the Host, since what is signed is the path kvbox sees). On its
        own port, the console's host name with the HTTP port.
        """
        if self.settings.s3_url:
            return self.settings.s3_url.rstrip("/")
        host = req.header("x-forwarded-host") or req.header("host") or "127.0.0.1"
        host = host.split(",")[0].strip()
        scheme = "https" if self._secure(req) else "http"
        if not self.settings.own_port:
            return f"{scheme}://{host}{self.prefix(req)}"
        hostname = urlsplit(f"//{host}").hostname or "127.0.0.1"
        if ":" in hostname:
            hostname = f"[{hostname}]"
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{hostname}:{self.settings.http_port}"

    # --- the console's own endpoints ------------------------------------------------------

    async def _bucket_stats(self, req: S3Request, s: Session, name: str) -> dict[str, int] | None:
        """Object count and bytes of a bucket the principal may list (HeadBucket needs
        s3:ListBucket, as listing every key would); None if it may not."""
        head, _ = await self._call(req, s, "HEAD", "/" + quote(name, safe=""))
        if head.status != 200:
            return None
        try:
            st = await self.store.stats(name)
        except KvboxError:
            return None
        return {"objects": st.objects, "bytes": st.bytes}

    async def _stats(self, req: S3Request, s: Session) -> S3Response:
        names = [v for k, v in req.query if k == "bucket"][:_MAX_STAT_NAMES]
        out = {name: await self._bucket_stats(req, s, name) for name in names}
        return _json(200, {"buckets": out})

    async def _object_head(
        self, req: S3Request, s: Session | None, bucket: str, key: str, version: str | None
    ) -> tuple[S3Response, str]:
        path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/")
        query = f"versionId={quote(version, safe='')}" if version else ""
        return await self._call(req, s, "HEAD", path, query)

    @staticmethod
    def _object_args(doc: Mapping[str, Any]) -> tuple[str, str, str | None]:
        bucket, key, version = doc.get("bucket"), doc.get("key"), doc.get("version_id")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise _Refused(400, "BadRequest", "bucket and key are required")
        if version is not None and (not isinstance(version, str) or not version):
            raise _Refused(400, "BadRequest", "version_id must be a version id")
        return bucket, key, version

    @staticmethod
    def _refused_by_s3(status: int, code: str, what: str) -> S3Response:
        """The S3 door's refusal of a HEAD (which has no body) as a console error."""
        messages = {
            404: "no such bucket, object or version",
            403: "you may not read this object",
        }
        return _error(status, code or "Error", f"{what}: {messages.get(status, code)}")

    async def _presign(self, req: S3Request, s: Session) -> S3Response:
        """A presigned GET for an object the principal can read, valid ``expires`` seconds
        (1 s to 7 days, SigV4's range). Signed with the session's own key, so the link
        can do exactly what the principal can, and stops when the key does."""
        doc = await _read_json(req)
        bucket, key, version = self._object_args(doc)
        expires = doc.get("expires", 3600)
        if (
            not isinstance(expires, int)
            or isinstance(expires, bool)
            or not 1 <= expires <= sigv4.MAX_PRESIGNED_EXPIRES
        ):
            raise _Refused(
                400,
                "BadRequest",
                f"expires must be 1 to {sigv4.MAX_PRESIGNED_EXPIRES} seconds (7 days)",
            )
        head, code = await self._object_head(req, s, bucket, key, version)
        if head.status != 200:
            return self._refused_by_s3(head.status, code, "no link made")
        base = urlsplit(self.s3_url(req))
        # What is signed is the path kvbox will see; a reverse proxy's prefix (in the URL
        # only) is stripped by the proxy before kvbox checks the signature.
        path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")
        query = [("versionId", quote(version, safe=""))] if version else []
        url = sigv4.presign_url(
            "GET",
            base.scheme,
            base.netloc,
            path,
            query,
            access_key=s.access_key,
            secret_key=s.secret_key,
            now=datetime.now(UTC),
            expires=expires,
            region=REGION,
        )
        if base.path:
            origin = f"{base.scheme}://{base.netloc}"
            url = origin + base.path + url[len(origin) :]
        return _json(200, {"url": url, "expires": expires})

    async def _public(self, req: S3Request, s: Session) -> S3Response:
        """Whether an anonymous request from this browser's address could read the object
        -- asked of the S3 door itself, with no credentials, after the principal showed
        it may read the object."""
        bucket, key, version = self._object_args(
            {k: v for k, v in req.query if k in ("bucket", "key", "version_id")}
        )
        head, code = await self._object_head(req, s, bucket, key, version)
        if head.status != 200:
            return self._refused_by_s3(head.status, code, "cannot tell")
        anon, _ = await self._object_head(req, None, bucket, key, version)
        url = self.s3_url(req) + "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")
        if version:
            url += "?versionId=" + quote(version, safe="")
        return _json(200, {"public": anon.status == 200, "url": url})

    async def _validate_policy(self, req: S3Request, s: Session) -> S3Response:
        """The server's own policy validator (what PutBucketPolicy runs), with the line
        its message is about; nothing is stored."""
        doc = await _read_json(req)
        bucket, text = doc.get("bucket"), doc.get("policy")
        if not isinstance(bucket, str) or not bucket or not isinstance(text, str):
            raise _Refused(400, "BadRequest", "bucket and policy (text) are required")
        try:
            policy = parse_policy(text, bucket)
        except PolicyError as exc:
            message = str(exc)
            return _json(200, {"ok": False, "message": message, "line": error_line(text, message)})
        return _json(
            200, {"ok": True, "public": is_public(policy), "statements": len(policy.statements)}
        )

    async def _visible_buckets(self, req: S3Request, s: Session) -> list[str]:
        listing, _ = await self._call(req, s, "GET", "/")
        if listing.status != 200 or not isinstance(listing.body, bytes):
            return []
        root = ElementTree.fromstring(listing.body)
        ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
        return [el.text or "" for el in root.iter(f"{ns}Name")]

    def _disk_usage(self) -> dict[str, int] | None:
        data = self.settings.data_dir
        if data is None:
            return None
        now = self._clock()
        if self._disk is not None and now - self._disk[0] < _DISK_CACHE_SECONDS:
            return self._disk[1]
        used = 0
        for dirpath, _dirs, files in os.walk(data):
            for f in files:
                with contextlib.suppress(OSError):
                    used += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
        du = shutil.disk_usage(data)
        out = {"used": used, "free": du.free, "total": du.total}
        self._disk = (now, out)
        return out

    async def _stored_totals(self, req: S3Request, s: Session) -> dict[str, int]:
        """Objects and bytes over the buckets ``s`` may list, reused for a few seconds."""
        now = self._clock()
        hit = self._totals.get(s.access_key)
        if hit is not None and now - hit[0] < _TOTALS_CACHE_SECONDS:
            return hit[1]
        totals = {"objects": 0, "bytes": 0, "buckets": 0}
        for name in await self._visible_buckets(req, s):
            st = await self._bucket_stats(req, s, name)
            if st is not None:
                totals["buckets"] += 1
                totals["objects"] += st["objects"]
                totals["bytes"] += st["bytes"]
        if len(self._totals) > 1000:  # one entry per key that opened a dashboard lately
            self._totals.clear()
        self._totals[s.access_key] = (now, totals)
        return totals

    async def _dashboard(self, req: S3Request, s: Session) -> S3Response:
        """Charts from the ring; stored objects and bytes over the buckets this principal
        may list; the data directory's size and free space for root only (the API shows
        no one else anything of the host)."""
        out: dict[str, Any] = {
            "version": __version__,
            "started": self._started_wall,
            "uptime": self._wall() - self._started_wall,
            "now": self._wall(),
            "stored": await self._stored_totals(req, s),
            "metrics": self.ring.series(self._wall(), self._clock()),
        }
        if s.principal == ROOT:
            out["disk"] = await asyncio.to_thread(self._disk_usage)
            out["data_dir"] = str(self.settings.data_dir) if self.settings.data_dir else None
        return _json(200, out)
