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
  way. The console's few endpoints of its own are ``kvbox.console.endpoints``; they too
  ask the S3 door, as the principal, before they show anything.
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

import hashlib
import logging
import mimetypes
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

from kvbox import __version__
from kvbox.auth import sigv4
from kvbox.console.endpoints import ConsoleApi
from kvbox.console.gateway import Gateway
from kvbox.console.replies import Refused, error_reply, json_reply, pop_header, read_json
from kvbox.console.samples import INTERVAL, MetricsRing
from kvbox.console.session import Session, SessionStore, SignInLimiter, same_token
from kvbox.console.settings import ConsoleSettings, normalize_base_path
from kvbox.core.meta.users import ROOT
from kvbox.core.periodic import Periodic
from kvbox.core.store import Store
from kvbox.metrics import ServerCounters
from kvbox.s3door.frontend import S3Frontend
from kvbox.s3door.types import S3Request, S3Response

log = logging.getLogger("kvbox.console")

#: Where the console is mounted on every port that serves it.
MOUNT: Final = "/console"
COOKIE: Final = "kvbox_console"
CSRF_HEADER: Final = "X-Kvbox-CSRF"
#: Marks a request a page's timer made rather than a person (see ``_session``).
BACKGROUND_HEADER: Final = "X-Kvbox-Background"
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
#: Seconds between sweeps of expired sessions.
_SWEEP_SECONDS: Final = 60.0


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
        self._assets = _load_assets()
        self._last_sweep = 0.0
        self._sampler = Periodic("kvbox-console-samples", self._sample, INTERVAL, delay=0)
        self.api = ConsoleApi(
            self._call, self.s3_url, store, settings, self.ring, clock=clock, wall=wall
        )
        self._api = self.api.routes()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling the doors' counters for the dashboard (once a loop runs)."""
        if not self._sampler.running:
            self._last_sweep = self._clock()
            self._sampler.start()

    async def close(self) -> None:
        await self._sampler.stop()

    async def _sample(self) -> None:
        now = self._clock()
        self.ring.take(now)
        if now - self._last_sweep >= _SWEEP_SECONDS:
            self.sessions.sweep(now)
            self._last_sweep = now

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
        except Refused as exc:
            req.error = exc.code
            resp = exc.response
        except Exception:
            log.exception("console %s %s failed", req.method, req.raw_path)
            req.error = "InternalError"
            resp = error_reply(500, "InternalError", "the console failed; see the server log")
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
            return error_reply(404, "NotFound", "not a console path; the console is at /console/")
        if rest == "":
            return self._redirect(req, req.raw_query)
        if rest.startswith("/api/"):
            req.op = "Console"
            return await self._api_request(req, rest[len("/api/") :])
        if req.method not in ("GET", "HEAD"):
            return error_reply(405, "MethodNotAllowed", f"{req.method} is not allowed here")
        name = "index.html" if rest == "/" else rest[1:]
        asset = self._assets.get(name)
        if asset is None:
            return error_reply(404, "NotFound", f"no console asset {name!r}")
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
            raise Refused(403, "CrossSiteRequest", "the console API answers only its own pages")
        if path == "session":
            return await self._session_endpoint(req)
        session = self._session(req)
        if req.method not in ("GET", "HEAD"):
            token = req.header(CSRF_HEADER) or ""
            if not token or not same_token(token, session.csrf):
                raise Refused(403, "BadCsrfToken", "missing or wrong CSRF token; reload the page")
        if path.startswith("s3/"):
            return await self._s3(req, session, "/" + path[len("s3/") :])
        handler = self._api.get((req.method, path))
        if handler is None:
            return error_reply(404, "NotFound", f"no console API {req.method} {path}")
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
        # A page's timer marks its requests (the dashboard's refresh): they keep no session
        # alive, so the idle limit measures the person, not the open tab.
        touch = req.header(BACKGROUND_HEADER) is None
        s = self.sessions.get(sid, self._clock(), touch=touch) if sid else None
        if s is None:
            raise Refused(401, "NotSignedIn", "not signed in, or the session expired")
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
                return json_reply(200, {"signed_in": False})
            req.principal = s.principal
            return json_reply(200, self._info(req, s))
        if req.method == "DELETE":
            s = self._session(req)
            if not same_token(req.header(CSRF_HEADER) or "", s.csrf):
                raise Refused(403, "BadCsrfToken", "missing or wrong CSRF token; reload the page")
            self.sessions.drop(s.id)
            gone = {"Set-Cookie": self._cookie(req, "", clear=True)}
            return json_reply(200, {"signed_out": True}, gone)
        if req.method != "POST":
            return error_reply(405, "MethodNotAllowed", "GET, POST or DELETE")
        return await self._sign_in(req)

    async def _sign_in(self, req: S3Request) -> S3Response:
        doc = await read_json(req)
        access_key = str(doc.get("access_key") or "").strip()
        secret_key = str(doc.get("secret_key") or "")
        if not access_key or not secret_key:
            raise Refused(400, "BadRequest", "an access key and a secret key are both needed")
        if len(access_key) > 128 or len(secret_key) > 256:
            raise Refused(400, "BadRequest", "that is not an access key and secret")
        now = self._clock()
        wait = self.limiter.retry_after(req.remote, access_key, now)
        if wait > 0:
            raise Refused(
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
            raise Refused(
                401,
                "SignInFailed",
                "the access key or secret key is wrong, or the key or its user is disabled",
            ) from None
        s = self.sessions.create(principal, access_key, secret_key, now)
        req.principal = principal
        log.info("console sign-in: %s from %s", principal, req.remote)
        return json_reply(200, self._info(req, s), {"Set-Cookie": self._cookie(req, s.id)})

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
            raise Refused(401, "NotSignedIn", "your access key no longer works; sign in again")
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
        stored = pop_header(resp.headers, "cache-control")
        if stored is not None:
            resp.headers[OBJECT_CACHE_CONTROL] = stored
        resp.headers["Cache-Control"] = "private, no-store"
        pop_header(resp.headers, "content-security-policy")
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
