"""kvbox.server.web over a real in-memory Store, through aiohttp's test server.

Every request goes over a real loopback socket to ``build_web_app``; the store is the
real ``Store`` over the memory MetaStore/BlobStore (small chunks, so bodies span several
chunks and ranges cross their borders). ``can_read`` is a plain function of the key.
"""

from __future__ import annotations

import doctest
import hashlib
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.model import ObjectVersion, Versioning
from kvbox.core.store import Store
from kvbox.s3.website import REDIRECT_ATTR
from kvbox.s3.xml import (
    CORSConfiguration,
    CORSRule,
    RedirectAllRequestsTo,
    RoutingCondition,
    RoutingRedirect,
    RoutingRule,
    WebsiteConfiguration,
)
from kvbox.server import web as web_module
from kvbox.server.web import Target, Visitor, build_web_app, target_of

Client = TestClient[web.Request, web.Application]

DOMAIN = "web.test"
SITE = f"site.{DOMAIN}"
BIG = bytes(range(256)) * 40  # 10,240 bytes: three 4 KiB chunks

WEBSITE = WebsiteConfiguration(
    index_document="index.html",
    error_document="error.html",
    routing_rules=(
        RoutingRule(
            RoutingRedirect(replace_key_prefix_with="documents/"), RoutingCondition("docs/")
        ),
        RoutingRule(
            RoutingRedirect(host_name="archive.example", http_redirect_code="307"),
            RoutingCondition("gone/", "404"),
        ),
    ),
)


def test_doctests() -> None:
    assert doctest.testmod(web_module).failed == 0


# (host, raw path, web domain, target)
TARGETS: list[tuple[str, str, str | None, Target | None]] = [
    ("site.web.test", "/", "web.test", Target("site", "")),
    ("site.web.test:8080", "/a/b.html?x=1", "web.test", Target("site", "a/b.html")),
    ("SITE.Web.Test.", "/A", "web.test", Target("site", "A")),
    ("a.b.web.test", "/", "web.test", Target("a.b", "")),
    ("web.test", "/x", "web.test", Target("web.test", "x")),  # the bare domain: a CNAME
    ("www.example.com", "/x%2Fy%20z", "web.test", Target("www.example.com", "x/y z")),
    ("www.example.com:80", "/", None, Target("www.example.com", "")),
    ("127.0.0.1:8080", "/blog/a/b", None, Target("blog", "a/b", "/blog")),
    ("127.0.0.1", "/blog", None, Target("blog", "", "/blog")),
    ("127.0.0.1", "/", None, None),
    ("localhost:80", "/blog/", "web.test", Target("blog", "", "/blog")),
    ("[::1]:8080", "/b/k", None, Target("b", "k", "/b")),
    ("[::1]", "/b/k", None, Target("b", "k", "/b")),
    ("blog.localhost", "/k", None, Target("blog.localhost", "k")),
    ("blog.localhost", "/k", "localhost", Target("blog", "k")),
]


@pytest.mark.parametrize(("host", "path", "domain", "expected"), TARGETS)
def test_target_of(host: str, path: str, domain: str | None, expected: Target | None) -> None:
    assert target_of(host, path, domain) == expected


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = Store(MemoryMetaStore(), MemoryBlobStore(), inline_max=1024, chunk_size=4096)
    await s.open()
    await s.create_bucket("site", owner="root")
    await s.set_bucket_attrs("site", {"website": WEBSITE.to_xml().decode()})
    put = s.put
    await put("site", "index.html", b"<h1>home</h1>", content_type="text/html")
    await put("site", "error.html", b"<h1>oops</h1>", content_type="text/html")
    await put("site", "about/index.html", b"about us", content_type="text/html")
    await put("site", "big.bin", BIG, attrs={"h:cache-control": "max-age=60", "meta:a": "1"})
    await put("site", "private/secret.txt", b"secret")
    await put("site", "moved.html", b"", attrs={REDIRECT_ATTR: "/index.html"})
    await put("site", "away.html", b"", attrs={REDIRECT_ATTR: "https://elsewhere.example/x"})
    await put("site", "empty.txt", b"")
    await s.create_bucket("plain", owner="root")
    await s.create_bucket("www.example.com", owner="root")
    await s.set_bucket_attrs(
        "www.example.com", {"website": WebsiteConfiguration("home.html").to_xml().decode()}
    )
    await put("www.example.com", "home.html", b"cname home")
    yield s
    await s.close()


async def _can_read(visitor: Visitor, bucket: str, key: str, version: ObjectVersion) -> bool:
    return not key.startswith("private/")


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    app = build_web_app(store, web_domain=DOMAIN, can_read=_can_read)
    async with TestClient(TestServer(app)) as c:
        yield c


async def get(
    c: Client, path: str, host: str = SITE, method: str = "GET", **headers: str
) -> tuple[ClientResponse, bytes]:
    resp = await c.request(method, path, headers={"Host": host, **headers}, allow_redirects=False)
    body = await resp.read()
    return resp, body


async def test_index_document_at_root(client: Client, store: Store) -> None:
    resp, body = await get(client, "/")
    assert resp.status == 200 and body == b"<h1>home</h1>"
    v = await store.head("site", "index.html")
    assert v is not None
    assert resp.headers["Content-Type"] == "text/html"
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert resp.headers["Last-Modified"] == formatdate(v.mtime_ns / 1e9, usegmt=True)
    assert resp.headers["x-amz-request-id"]
    resp, body = await get(client, "/index.html")
    assert body == b"<h1>home</h1>"


async def test_folder_index_and_folder_redirect(client: Client) -> None:
    resp, body = await get(client, "/about/")
    assert (resp.status, body) == (200, b"about us")
    resp, body = await get(client, "/about")
    assert resp.status == 302 and resp.headers["Location"] == "/about/"


async def test_missing_key_serves_error_document_with_404(
    client: Client,
) -> None:
    resp, body = await get(client, "/nope.html")
    assert resp.status == 404 and body == b"<h1>oops</h1>"
    assert resp.headers["Content-Type"] == "text/html"
    assert resp.headers["x-amz-error-code"] == "NoSuchKey"
    assert resp.headers["x-amz-error-detail-Key"] == "nope.html"
    resp, body = await get(client, "/nofolder/")
    assert resp.status == 404 and body == b"<h1>oops</h1>"


async def test_private_object_is_403_with_error_document(
    client: Client,
) -> None:
    resp, body = await get(client, "/private/secret.txt")
    assert resp.status == 403 and body == b"<h1>oops</h1>"
    assert b"secret" not in body


async def test_routing_rules(client: Client) -> None:
    resp, _ = await get(client, "/docs/a/b.html")
    assert resp.status == 301
    assert resp.headers["Location"] == f"http://{SITE}/documents/a/b.html"
    resp, _ = await get(client, "/gone/old.html")
    assert resp.status == 307
    assert resp.headers["Location"] == "http://archive.example/gone/old.html"


async def test_website_redirect_location(client: Client) -> None:
    resp, _ = await get(client, "/moved.html")
    assert resp.status == 301 and resp.headers["Location"] == "/index.html"
    resp, _ = await get(client, "/away.html")
    assert resp.status == 301 and resp.headers["Location"] == "https://elsewhere.example/x"
    resp, _ = await get(client, "/site/moved.html", host="127.0.0.1")
    assert resp.status == 301 and resp.headers["Location"] == "/site/index.html"


async def test_head(client: Client) -> None:
    resp, body = await get(client, "/big.bin", method="HEAD")
    assert resp.status == 200 and body == b""
    assert resp.headers["Content-Length"] == str(len(BIG))
    assert resp.headers["Cache-Control"] == "max-age=60"
    assert resp.headers["x-amz-meta-a"] == "1"
    assert resp.headers["Accept-Ranges"] == "bytes"
    resp, body = await get(client, "/nope", method="HEAD")
    assert resp.status == 404 and body == b""
    resp, body = await get(client, "/x", host="nosuch.web.test", method="HEAD")
    assert resp.status == 404 and body == b""
    assert resp.headers["x-amz-error-code"] == "NoSuchBucket"


async def test_big_object_streams_whole(client: Client) -> None:
    resp, body = await get(client, "/big.bin")
    assert resp.status == 200 and body == BIG


# (Range header, status, first, last)
RANGES: list[tuple[str, int, int, int]] = [
    ("bytes=0-9", 206, 0, 9),
    ("bytes=4090-4100", 206, 4090, 4100),  # across a chunk border
    ("bytes=4096-", 206, 4096, len(BIG) - 1),
    ("bytes=-100", 206, len(BIG) - 100, len(BIG) - 1),
    ("bytes=10000-99999", 206, 10000, len(BIG) - 1),
    ("bytes=5-2", 200, 0, len(BIG) - 1),  # invalid: ignored, as S3 does
    ("items=0-1", 200, 0, len(BIG) - 1),
]


@pytest.mark.parametrize(("rng", "status", "first", "last"), RANGES)
async def test_range(client: Client, rng: str, status: int, first: int, last: int) -> None:
    resp, body = await get(client, "/big.bin", Range=rng)
    assert resp.status == status
    assert body == BIG[first : last + 1]
    assert resp.headers["Content-Length"] == str(last - first + 1)
    if status == 206:
        assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(BIG)}"
    resp, body = await get(client, "/big.bin", method="HEAD", Range=rng)
    assert resp.status == status and resp.headers["Content-Length"] == str(last - first + 1)


async def test_unsatisfiable_range(client: Client) -> None:
    resp, body = await get(client, "/big.bin", Range="bytes=20000-")
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(BIG)}"
    assert resp.headers["Content-Type"].startswith("text/html")
    assert b"InvalidRange" in body
    resp, _ = await get(client, "/empty.txt", Range="bytes=0-")
    assert resp.status == 416


async def test_conditionals(client: Client, store: Store) -> None:
    v = await store.head("site", "big.bin")
    assert v is not None
    etag = f'"{v.etag}"'
    resp, body = await get(client, "/big.bin", **{"If-None-Match": etag})
    assert resp.status == 304 and body == b"" and resp.headers["ETag"] == etag
    resp, body = await get(client, "/big.bin", **{"If-None-Match": '"other"'})
    assert resp.status == 200 and body == BIG
    later = formatdate(v.mtime_ns / 1e9 + 60, usegmt=True)
    earlier = formatdate(v.mtime_ns / 1e9 - 3600, usegmt=True)
    resp, _ = await get(client, "/big.bin", **{"If-Modified-Since": later})
    assert resp.status == 304
    resp, _ = await get(client, "/big.bin", **{"If-Modified-Since": earlier})
    assert resp.status == 200
    resp, body = await get(client, "/big.bin", **{"If-Match": '"other"'})
    assert resp.status == 412 and b"PreconditionFailed" in body


async def test_empty_object(client: Client) -> None:
    resp, body = await get(client, "/empty.txt")
    assert resp.status == 200 and body == b"" and resp.headers["Content-Length"] == "0"


async def test_methods_other_than_get_and_head(client: Client) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        resp, body = await get(client, "/index.html", method=method)
        assert resp.status == 405, method
        assert resp.headers["Allow"] == "GET, HEAD"
        assert resp.headers["x-amz-error-code"] == "MethodNotAllowed"
        assert b"<li>Method: " + method.encode() + b"</li>" in body


async def test_bucket_errors(client: Client) -> None:
    resp, body = await get(client, "/", host="nosuch.web.test")
    assert resp.status == 404 and resp.headers["Content-Type"].startswith("text/html")
    assert b"<li>Code: NoSuchBucket</li>" in body and b"<li>BucketName: nosuch</li>" in body
    resp, body = await get(client, "/", host="plain.web.test")
    assert resp.status == 404
    assert b"<li>Code: NoSuchWebsiteConfiguration</li>" in body
    resp, body = await get(client, "/", host="127.0.0.1")
    assert resp.status == 404 and b"NoSuchBucket" in body


async def test_path_style_on_loopback(client: Client) -> None:
    resp, body = await get(client, "/site/", host="127.0.0.1:1234")
    assert (resp.status, body) == (200, b"<h1>home</h1>")
    resp, body = await get(client, "/site", host="localhost")
    assert (resp.status, body) == (200, b"<h1>home</h1>")
    resp, _ = await get(client, "/site/about", host="127.0.0.1:1234")
    assert resp.status == 302 and resp.headers["Location"] == "/site/about/"
    resp, _ = await get(client, "/site/docs/x", host="127.0.0.1:1234")
    assert resp.headers["Location"] == "http://127.0.0.1:1234/site/documents/x"


async def test_cname_host_names_the_bucket(client: Client) -> None:
    resp, body = await get(client, "/", host="www.example.com")
    assert (resp.status, body) == (200, b"cname home")


async def test_cors_headers_on_the_website(client: Client, store: Store) -> None:
    config = CORSConfiguration((CORSRule(("GET",), ("http://app.example",)),))
    await store.set_bucket_attrs("site", {"cors": config.to_xml().decode()})
    resp, _ = await get(client, "/", Origin="http://app.example")
    assert resp.headers["Access-Control-Allow-Origin"] == "http://app.example"
    resp, _ = await get(client, "/nope", Origin="http://app.example")
    assert resp.status == 404
    assert resp.headers["Access-Control-Allow-Origin"] == "http://app.example"
    resp, _ = await get(client, "/", Origin="http://evil.example")
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_error_document_missing_or_private(client: Client, store: Store) -> None:
    cfg = WebsiteConfiguration("index.html", "private/error.html")
    await store.set_bucket_attrs("site", {"website": cfg.to_xml().decode()})
    resp, body = await get(client, "/nope")
    assert resp.status == 404
    page = body.decode()
    assert "<li>Code: NoSuchKey</li>" in page and "<li>Key: nope</li>" in page
    assert "Custom Error Document" in page
    after = page.split("Custom Error Document")[1]
    assert "<li>Code: NoSuchKey</li>" in after and "<li>Key: private/error.html</li>" in after
    await store.put("site", "private/error.html", b"hidden")
    resp, body = await get(client, "/nope")
    assert resp.status == 404 and b"hidden" not in body
    assert "<li>Code: AccessDenied</li>" in body.decode().split("Custom Error Document")[1]


async def test_no_error_document_gives_html_404(client: Client, store: Store) -> None:
    await store.set_bucket_attrs(
        "site", {"website": WebsiteConfiguration("index.html").to_xml().decode()}
    )
    resp, body = await get(client, "/nope.html")
    assert resp.status == 404
    assert resp.headers["x-amz-error-code"] == "NoSuchKey"
    assert resp.headers["x-amz-error-detail-Key"] == "nope.html"
    assert b"<title>404 Not Found</title>" in body and b"<li>Key: nope.html</li>" in body
    resp, body = await get(client, "/private/secret.txt")
    assert resp.status == 403 and b"<li>Code: AccessDenied</li>" in body


async def test_redirect_all_requests(client: Client, store: Store) -> None:
    cfg = WebsiteConfiguration(
        redirect_all_requests_to=RedirectAllRequestsTo("www.example.org", "https")
    )
    await store.set_bucket_attrs("site", {"website": cfg.to_xml().decode()})
    resp, _ = await get(client, "/a/b c.html")
    assert resp.status == 301
    assert resp.headers["Location"] == "https://www.example.org/a/b%20c.html"
    resp, _ = await get(client, "/")
    assert resp.headers["Location"] == "https://www.example.org/"


async def test_deleted_and_versioned_objects(client: Client, store: Store) -> None:
    await store.set_versioning("site", Versioning.ENABLED)
    await store.put("site", "v.txt", b"one")
    await store.put("site", "v.txt", b"two")
    resp, body = await get(client, "/v.txt")
    assert body == b"two"
    await store.delete("site", "v.txt")  # a delete marker on top
    resp, body = await get(client, "/v.txt")
    assert resp.status == 404 and body == b"<h1>oops</h1>"


async def test_can_list_false_turns_404_into_403(store: Store) -> None:
    async def no_list(visitor: Visitor, bucket: str) -> bool:
        return False

    app = build_web_app(store, web_domain=DOMAIN, can_read=_can_read, can_list=no_list)
    async with TestClient(TestServer(app)) as c:
        resp, body = await get(c, "/nope.html")
        assert resp.status == 403 and body == b"<h1>oops</h1>"
        resp, body = await get(c, "/")
        assert (resp.status, body) == (200, b"<h1>home</h1>")
