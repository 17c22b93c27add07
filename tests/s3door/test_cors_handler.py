"""kvbox.s3door.handlers.cors over a real in-memory Store: the preflight handler and the
headers for actual requests, driven with ``S3Request`` values (no HTTP server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.store import Store
from kvbox.s3.cors import VARY
from kvbox.s3.errors import S3Error
from kvbox.s3.router import Endpoint, Op
from kvbox.s3.xml import CORSConfiguration, CORSRule
from kvbox.s3door.handlers.common import Context
from kvbox.s3door.handlers.cors import cors_headers, preflight
from kvbox.s3door.types import S3Request

CONFIG = CORSConfiguration(
    (
        CORSRule(("PUT", "GET"), ("http://app.example",), ("content-type",), ("ETag",), 600),
        CORSRule(("GET",), ("*",)),
    )
)


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    store = Store(MemoryMetaStore(), MemoryBlobStore())
    await store.open()
    await store.create_bucket("web", owner="root")
    await store.set_bucket_attrs("web", {"cors": CONFIG.to_xml().decode()})
    await store.create_bucket("bare", owner="root")
    yield Context(store, "kv")
    await store.close()


async def _no_body() -> AsyncIterator[bytes]:
    empty: list[bytes] = []
    for piece in empty:  # an empty body that is still an async generator
        yield piece


def request(method: str, **headers: str) -> S3Request:
    h: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        h[name.replace("_", "-")] = value
    return S3Request(method, "/web/k", "", [], h, _no_body(), "REQ", principal=None)


async def test_preflight_allowed(ctx: Context) -> None:
    req = request(
        "OPTIONS",
        Origin="http://app.example",
        Access_Control_Request_Method="PUT",
        Access_Control_Request_Headers="Content-Type",
    )
    resp = await preflight(ctx, req, Endpoint(Op.PREFLIGHT, "web", "k"))
    assert resp.status == 200 and resp.body == b""
    assert resp.headers == {
        "Access-Control-Allow-Origin": "http://app.example",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "PUT, GET",
        "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Expose-Headers": "ETag",
        "Access-Control-Max-Age": "600",
        "Vary": VARY,
    }


# (bucket, key, headers, code, message fragment, resource type)
REFUSED: list[tuple[str, str | None, dict[str, str], str, str, str | None]] = [
    ("web", "k", {"Access_Control_Request_Method": "GET"}, "BadRequest", "Origin", None),
    ("web", "k", {"Origin": "http://a"}, "BadRequest", "Method: null", None),
    ("nosuch", "k", {"Origin": "http://a", "Access_Control_Request_Method": "GET"},
     "AccessForbidden", "CORS is not enabled", "OBJECT"),
    ("bare", None, {"Origin": "http://a", "Access_Control_Request_Method": "GET"},
     "AccessForbidden", "CORS is not enabled", "BUCKET"),
    ("web", "k", {"Origin": "http://a", "Access_Control_Request_Method": "PUT"},
     "AccessForbidden", "not allowed", "OBJECT"),
    ("web", "k", {"Origin": "http://app.example", "Access_Control_Request_Method": "PUT",
                  "Access_Control_Request_Headers": "x-amz-date"},
     "AccessForbidden", "not allowed", "OBJECT"),
]  # fmt: skip


@pytest.mark.parametrize(("bucket", "key", "headers", "code", "fragment", "rtype"), REFUSED)
async def test_preflight_refused(
    ctx: Context,
    bucket: str,
    key: str | None,
    headers: dict[str, str],
    code: str,
    fragment: str,
    rtype: str | None,
) -> None:
    with pytest.raises(S3Error) as info:
        await preflight(ctx, request("OPTIONS", **headers), Endpoint(Op.PREFLIGHT, bucket, key))
    assert info.value.code == code
    assert fragment in info.value.message
    if rtype is not None:
        assert info.value.extra["ResourceType"] == rtype


async def test_cors_headers_for_actual_requests(ctx: Context) -> None:
    assert await cors_headers(ctx, request("GET"), "web") == {}
    assert await cors_headers(ctx, request("GET", Origin="http://x"), None) == {}
    assert await cors_headers(ctx, request("GET", Origin="http://x"), "bare") == {}
    assert await cors_headers(ctx, request("GET", Origin="http://x"), "nosuch") == {}
    h = await cors_headers(ctx, request("GET", Origin="http://x"), "web")
    assert h["Access-Control-Allow-Origin"] == "*"
    h = await cors_headers(ctx, request("PUT", Origin="http://app.example"), "web")
    assert h["Access-Control-Allow-Origin"] == "http://app.example"
    assert h["Access-Control-Expose-Headers"] == "ETag"
    assert await cors_headers(ctx, request("DELETE", Origin="http://app.example"), "web") == {}
    # a request carrying Access-Control-Request-Method is matched on it (s3-tests)
    req = request("DELETE", Origin="http://app.example", Access_Control_Request_Method="PUT")
    assert (await cors_headers(ctx, req, "web"))["Access-Control-Allow-Methods"] == "PUT, GET"
