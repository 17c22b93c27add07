"""Static website hosting: what a website-endpoint request turns into, one step at a time.

Layer: s3 protocol (pure; no I/O). The web server (``kvbox.server.web``) drives these
steps and does the lookups in between::

    plan(config, path) -> Redirect                 # redirect-all, or a KeyPrefixEquals rule
                       |  Fetch(key, folder_index) # the object to serve
    key missing, folder_index exists -> folder_redirect(fetch)     # 302 to "path/"
    key missing (404) or not readable (403) -> on_error(config, path, status)
                       -> Redirect                 # an HttpErrorCodeReturnedEquals rule
                       |  ErrorDocument(key, status)  # serve it with the original status
                       |  None                     # S3's own HTML error page
    object found -> website_redirect(attrs) -> 301 to x-amz-website-redirect-location

Rules, as the S3 user guide describes website endpoints ("Configuring an index
document", "Configuring a custom error document", "Configuring redirects"):

* ``path`` is the request path, percent-decoded, without its leading ``/``: the key as
  asked. An empty path or one ending in ``/`` asks for a folder, served by its index
  document (``path + Suffix``). A path without the slash whose object does not exist,
  while ``path/Suffix`` does, is answered 302 with ``Location: /path/``.
* RedirectAllRequestsTo answers every request 301 to ``protocol://HostName/path``, the
  protocol defaulting to the request's.
* Routing rules are tried in order, the first match wins. A rule with no Condition, or
  with only KeyPrefixEquals, is applied *before* the object is looked up; a rule with
  HttpErrorCodeReturnedEquals only after the lookup failed with that status (and, if it
  also has KeyPrefixEquals, only for keys with that prefix: both must hold). Prefixes are
  matched against the requested key (before the index suffix is appended).
* A rule's Redirect: ReplaceKeyWith replaces the whole key, ReplaceKeyPrefixWith replaces
  the matched KeyPrefixEquals (an empty one when the rule has none); HostName and Protocol
  default to the request's; HttpRedirectCode defaults to 301.
* The error document is served for 4xx failures only, with the original status (a 403
  stays a 403); when it is itself missing or unreadable S3 answers its HTML error page,
  which then says so in a second section.
* Website endpoints answer errors as HTML, never XML (``error_page``), and also as
  ``x-amz-error-code`` / ``x-amz-error-message`` headers, which is all a HEAD gets;
  the headers come with a custom error document too.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote

from kvbox.s3.xml import RoutingRule, WebsiteConfiguration

#: Where an object's x-amz-website-redirect-location is kept in ``ObjectVersion.attrs``
#: (the ``h:`` family of stored headers, see ``kvbox.s3door.handlers.common``).
REDIRECT_ATTR = "h:x-amz-website-redirect-location"
#: Status of a Redirect whose rule names no HttpRedirectCode, and of RedirectAllRequestsTo.
DEFAULT_REDIRECT = 301
#: Status of the redirect from "folder" to "folder/".
FOLDER_REDIRECT = 302
#: Parsed website configurations kept, by XML text (see ``parse_website``).
PARSE_CACHE_SIZE = 256
#: Characters left as they are in a Location path: RFC 3986 pchar minus what S3 escapes.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_website(xml_text: str) -> WebsiteConfiguration:
    """A bucket's stored ``attrs["website"]`` as a configuration (memoised: immutable)."""
    return WebsiteConfiguration.from_xml(xml_text.encode("utf-8"))


def config_of(attrs: Mapping[str, str]) -> WebsiteConfiguration | None:
    """The website configuration kept in a bucket's attrs, or None when it has none."""
    text = attrs.get("website")
    return parse_website(text) if text else None


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer ``status`` with a Location built from ``key`` (see ``location``).

    ``host``/``protocol`` None mean "the request's". ``absolute`` False gives a
    host-relative Location (``/key``), as S3 sends for the folder redirect.
    """

    status: int
    key: str
    host: str | None = None
    protocol: str | None = None
    absolute: bool = True

    def location(self, request_protocol: str, request_host: str, base: str = "") -> str:
        """The Location header. ``base`` is the path that leads to the bucket's root on
        this host ("" when the host names the bucket, "/bucket" in path style); it does
        not apply when the redirect names another host.

        >>> Redirect(301, "new page.html").location("http", "site.example")
        'http://site.example/new%20page.html'
        >>> Redirect(302, "docs/", absolute=False).location("http", "127.0.0.1:80", "/b")
        '/b/docs/'
        >>> Redirect(301, "x", host="other.example", protocol="https").location("http", "h", "/b")
        'https://other.example/x'
        """
        if self.host is not None:
            base = ""
        path = f"{base}/{quote(self.key, safe=_PATH_SAFE)}"
        if not self.absolute:
            return path
        return f"{self.protocol or request_protocol}://{self.host or request_host}{path}"


@dataclass(frozen=True, slots=True)
class Fetch:
    """Serve the object ``key``; ``path`` is the key as requested (for error rules).

    ``folder_index`` is set for a path without a trailing slash: if ``key`` is missing
    but this object exists, the answer is ``folder_redirect`` instead of a 404.
    """

    key: str
    path: str
    folder_index: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorDocument:
    """Serve the object ``key`` as the body of a ``status`` response."""

    key: str
    status: int


def _redirect(rule: RoutingRule, key: str) -> Redirect:
    r = rule.redirect
    prefix = ""
    if rule.condition is not None and rule.condition.key_prefix_equals is not None:
        prefix = rule.condition.key_prefix_equals
    if r.replace_key_with is not None:
        target = r.replace_key_with
    elif r.replace_key_prefix_with is not None:
        target = r.replace_key_prefix_with + key[len(prefix) :]
    else:
        target = key
    status = int(r.http_redirect_code) if r.http_redirect_code else DEFAULT_REDIRECT
    return Redirect(status, target, r.host_name, r.protocol)


def _before_fetch(rule: RoutingRule, key: str) -> bool:
    c = rule.condition
    if c is None:
        return True
    if c.http_error_code_returned_equals is not None:
        return False
    return key.startswith(c.key_prefix_equals or "")


def _after_error(rule: RoutingRule, key: str, status: int) -> bool:
    c = rule.condition
    if c is None or c.http_error_code_returned_equals is None:
        return False  # applied before the fetch already, or never
    if c.http_error_code_returned_equals != str(status):
        return False
    return c.key_prefix_equals is None or key.startswith(c.key_prefix_equals)


def plan(config: WebsiteConfiguration, path: str) -> Fetch | Redirect:
    """The first step for a request of ``path`` (decoded, no leading slash).

    >>> cfg = WebsiteConfiguration(index_document="index.html")
    >>> plan(cfg, "docs/")
    Fetch(key='docs/index.html', path='docs/', folder_index=None)
    >>> plan(cfg, "docs")
    Fetch(key='docs', path='docs', folder_index='docs/index.html')
    """
    everything = config.redirect_all_requests_to
    if everything is not None:
        return Redirect(DEFAULT_REDIRECT, path, everything.host_name, everything.protocol)
    for rule in config.routing_rules:
        if _before_fetch(rule, path):
            return _redirect(rule, path)
    suffix = config.index_document
    assert suffix is not None, "a website configuration without redirect-all has an index"
    if path == "" or path.endswith("/"):
        return Fetch(path + suffix, path)
    return Fetch(path, path, f"{path}/{suffix}")


def folder_redirect(fetch: Fetch) -> Redirect:
    """The 302 from ``path`` to ``path/`` when only the folder's index document exists."""
    return Redirect(FOLDER_REDIRECT, fetch.path + "/", absolute=False)


def on_error(
    config: WebsiteConfiguration, path: str, status: int
) -> Redirect | ErrorDocument | None:
    """What to answer when the lookup of ``path`` failed with ``status`` (403 or 404).

    An error-code routing rule first, then the error document (4xx only), else None:
    S3's HTML error page.
    """
    for rule in config.routing_rules:
        if _after_error(rule, path, status):
            return _redirect(rule, path)
    if config.error_document is not None and 400 <= status < 500:
        return ErrorDocument(config.error_document, status)
    return None


def website_redirect(attrs: Mapping[str, str]) -> str | None:
    """The object's x-amz-website-redirect-location: the endpoint answers 301 to it."""
    return attrs.get(REDIRECT_ATTR) or None


# --- HTML error pages ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebError:
    """One error as a website endpoint reports it: code, message and detail lines."""

    status: int
    code: str
    message: str
    details: Sequence[tuple[str, str]] = ()

    def headers(self) -> dict[str, str]:
        """The x-amz-error-* headers S3 adds, so that even a HEAD learns the code.

        Detail values (a key may hold any character) are percent-encoded: a header
        value cannot carry a line break or non-ASCII text.
        """
        out = {"x-amz-error-code": self.code, "x-amz-error-message": self.message}
        for name, value in self.details:
            out[f"x-amz-error-detail-{name}"] = quote(value, safe=_PATH_SAFE)
        return out


def status_line(status: int) -> str:
    """``404 Not Found``: the title and heading of an HTML error page."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"{status} {phrase}"


def _items(err: WebError) -> list[str]:
    rows = [("Code", err.code), ("Message", err.message), *err.details]
    return [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in rows]


def error_page(
    err: WebError,
    *,
    request_id: str,
    host_id: str,
    document_error: WebError | None = None,
) -> bytes:
    """S3's HTML error page; ``document_error`` adds the section that tells why the
    custom error document could not be served either.

    >>> page = error_page(WebError(404, "NoSuchKey", "The specified key does not exist.",
    ...     [("Key", "a<b")]), request_id="R", host_id="H").decode()
    >>> "<title>404 Not Found</title>" in page, "<li>Key: a&lt;b</li>" in page
    (True, True)
    """
    title = html.escape(status_line(err.status))
    lines = [
        "<html>",
        f"<head><title>{title}</title></head>",
        "<body>",
        f"<h1>{title}</h1>",
        "<ul>",
        *_items(err),
        f"<li>RequestId: {html.escape(request_id)}</li>",
        f"<li>HostId: {html.escape(host_id)}</li>",
        "</ul>",
    ]
    if document_error is not None:
        lines += [
            "<h3>An Error Occurred While Attempting to Retrieve a Custom Error Document</h3>",
            "<ul>",
            *_items(document_error),
            "</ul>",
        ]
    lines += ["<hr/>", "</body>", "</html>", ""]
    return "\n".join(lines).encode("utf-8")
