"""CORS end to end: a real browser on another origin, and preflights with curl.

Layer: tests/e2e. Rules: one ``kvbox serve`` for the module (S3 on ``--http-port``); the
bucket owner sets CORS with boto3 (PutBucketCors) and signs presigned URLs, as a web app's
backend would. The browser is headless Chromium (Debian's ``chromium``) loading a page
from a tiny ``http.server`` on another loopback port: a different origin, so every
request to kvbox goes through the browser's real CORS checks (preflight for the PUT,
Access-Control-Allow-Origin on every answer, Access-Control-Expose-Headers for the ETag).
The page reports what its script saw by POSTing JSON back to its own server (same
origin, no CORS involved). Chromium runs in its own process group, is told to resolve
no name but 127.0.0.1 and is killed by that group's id at the end of each page.

Preflights are also sent by hand with curl (``-X OPTIONS``), where the exact status,
XML error code and headers can be checked: the answers are those of the S3 API
reference ("OPTIONS object") and the user guide's CORS pages; the corner cases follow
ceph/s3-tests' CORS tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import Reply, curl
from ._pages import PageServer
from ._s3 import S3Server, module_server

#: Seconds a page may take to report (Chromium starts in about a second).
PAGE_TIMEOUT = 60.0
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


# --- the browser ---------------------------------------------------------------------------


#: The script every page runs: ``steps`` is a list of {name, url, method, body}; each
#: result records the status, the body text and the headers CORS lets the page read, or
#: the error the browser raised (a CORS refusal is a TypeError, "Failed to fetch").
_SCRIPT = """
async function run(steps) {
  const out = {};
  for (const s of steps) {
    try {
      const init = {method: s.method, cache: "no-store"};
      if (s.body !== null) init.body = s.body;
      const r = await fetch(s.url, init);
      out[s.name] = {status: r.status, text: await r.text(),
                     etag: r.headers.get("ETag"), type: r.headers.get("Content-Type")};
    } catch (e) {
      out[s.name] = {error: String(e)};
    }
  }
  return out;
}
run(STEPS).then(out => fetch(REPORT, {method: "POST", body: JSON.stringify(out)}));
"""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    url: str
    method: str = "GET"
    body: str | None = None


def _js(value: Any) -> str:
    """A JSON literal safe inside <script> (no "</" to end it early)."""
    return json.dumps(value).replace("</", "<\\/")


def run_page(
    exe: str, pages: PageServer, tmp: Path, name: str, steps: list[Step]
) -> dict[str, Any]:
    """Serve a page running ``steps`` from ``pages``' origin in Chromium; its report."""
    plan = [{"name": s.name, "url": s.url, "method": s.method, "body": s.body} for s in steps]
    script = _SCRIPT.replace("STEPS", _js(plan)).replace("REPORT", _js(f"/report/{name}"))
    html = f"<!doctype html><html><body><script>{script}</script></body></html>"
    pages.pages[name] = html.encode()
    profile = tmp / f"chromium-{name}"
    argv = [
        exe,
        "--headless",
        "--no-sandbox",  # the tests may run as root, where the sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        # never leave the machine: every name but 127.0.0.1 fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        f"{pages.origin}/{name}",
    ]
    log = (tmp / f"chromium-{name}.log").open("wb")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + PAGE_TIMEOUT
        with pages.arrived:
            while name not in pages.reports:
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    break
                pages.arrived.wait(min(left, 0.5))
    finally:
        _stop(proc)
        log.close()
    assert name in pages.reports, (
        f"page {name} did not report within {PAGE_TIMEOUT} s; chromium log:\n"
        + (tmp / f"chromium-{name}.log").read_text(errors="replace")[-5000:]
    )
    report: dict[str, Any] = pages.reports[name]
    return report


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End Chromium and its helpers: its own process group, by that group's id."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the S3 side -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "cors") as s:
        yield s


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


def presign(s3: Any, method: str, bucket: str, key: str) -> str:
    op = {"GET": "get_object", "PUT": "put_object", "DELETE": "delete_object"}[method]
    url: str = s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)
    return url


def cors_bucket(s3: Any, name: str, rules: list[dict[str, Any]] | None) -> str:
    s3.create_bucket(Bucket=name)
    if rules is not None:
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
    return name


def test_browser_puts_and_gets_through_presigned_urls(
    chromium: str, pages: PageServer, s3: Any, tmp_path: Path
) -> None:
    b = cors_bucket(
        s3,
        "cors-app",
        [
            {
                "AllowedOrigins": [pages.origin],
                "AllowedMethods": ["PUT", "GET"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 60,
            }
        ],
    )
    body = "hello from the browser ✓"
    report = run_page(
        chromium,
        pages,
        tmp_path,
        "allowed",
        [
            Step("put", presign(s3, "PUT", b, "note.txt"), "PUT", body),
            Step("get", presign(s3, "GET", b, "note.txt")),
            Step("missing", presign(s3, "GET", b, "missing.txt")),
        ],
    )
    assert report["put"].get("error") is None, report
    assert report["put"]["status"] == 200
    stored = s3.get_object(Bucket=b, Key="note.txt")
    assert stored["Body"].read() == body.encode()
    assert report["put"]["etag"] == stored["ETag"]  # readable: ETag is exposed
    assert report["get"] == {
        "status": 200,
        "text": body,
        "etag": stored["ETag"],
        "type": stored["ContentType"],
    }
    # an S3 error still carries the CORS headers, so the page can read the 404
    assert report["missing"]["status"] == 404
    assert "<Code>NoSuchKey</Code>" in report["missing"]["text"]


def test_browser_is_refused_for_another_origin(
    chromium: str, pages: PageServer, s3: Any, tmp_path: Path
) -> None:
    b = cors_bucket(
        s3,
        "cors-other",
        [{"AllowedOrigins": ["http://app.example"], "AllowedMethods": ["PUT", "GET"]}],
    )
    s3.put_object(Bucket=b, Key="there.txt", Body=b"already there")
    nocors = cors_bucket(s3, "cors-none", None)
    s3.put_object(Bucket=nocors, Key="there.txt", Body=b"no cors")
    report = run_page(
        chromium,
        pages,
        tmp_path,
        "refused",
        [
            Step("put", presign(s3, "PUT", b, "new.txt"), "PUT", "should not land"),
            Step("get", presign(s3, "GET", b, "there.txt")),
            Step("get_nocors", presign(s3, "GET", nocors, "there.txt")),
        ],
    )
    for step in ("put", "get", "get_nocors"):
        assert "Failed to fetch" in report[step].get("error", ""), report
    # the preflight failed, so the browser never sent the PUT itself
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=b, Key="new.txt")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_browser_reads_a_public_star_rule(
    chromium: str, pages: PageServer, s3: Any, tmp_path: Path
) -> None:
    b = cors_bucket(s3, "cors-star", [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}])
    s3.put_object(Bucket=b, Key="open.txt", Body=b"for everyone", ContentType="text/plain")
    report = run_page(
        chromium,
        pages,
        tmp_path,
        "star",
        [
            Step("get", presign(s3, "GET", b, "open.txt")),
            Step("put", presign(s3, "PUT", b, "open.txt"), "PUT", "not allowed"),
        ],
    )
    assert report["get"]["status"] == 200 and report["get"]["text"] == "for everyone"
    assert report["get"]["etag"] is None  # not exposed by the rule
    assert "Failed to fetch" in report["put"]["error"]
    assert s3.get_object(Bucket=b, Key="open.txt")["Body"].read() == b"for everyone"


# --- preflights with curl --------------------------------------------------------------------


def options(url: str, **headers: str) -> Reply:
    args = ["-X", "OPTIONS"]
    for name, value in headers.items():
        args += ["-H", f"{name.replace('_', '-')}: {value}"]
    return curl(url, *args)


@pytest.fixture(scope="module")
def rules_bucket(s3: Any) -> str:
    return cors_bucket(
        s3,
        "cors-rules",
        [
            {
                "ID": "uploads",
                "AllowedOrigins": ["https://*.example.com"],
                "AllowedMethods": ["PUT", "POST", "DELETE"],
                "AllowedHeaders": ["content-type", "x-amz-*"],
                "ExposeHeaders": ["ETag", "x-amz-request-id"],
                "MaxAgeSeconds": 3000,
            },
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]},
        ],
    )


def test_preflight_allowed(srv: S3Server, rules_bucket: str) -> None:
    r = options(
        f"{srv.endpoint}/{rules_bucket}/photos/cat.jpg",
        Origin="https://app.example.com",
        Access_Control_Request_Method="PUT",
        Access_Control_Request_Headers="Content-Type, X-Amz-Date",
    )
    assert r.status == 200, r
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-methods"] == "PUT, POST, DELETE"
    assert r.headers["access-control-allow-headers"] == "content-type, x-amz-date"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert r.headers["access-control-max-age"] == "3000"
    assert r.headers["vary"] == VARY
    assert "x-amz-request-id" in r.headers


def test_preflight_star_rule_on_the_bucket(srv: S3Server, rules_bucket: str) -> None:
    r = options(
        f"{srv.endpoint}/{rules_bucket}",
        Origin="http://anyone.test",
        Access_Control_Request_Method="GET",
    )
    assert r.status == 200, r
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert r.headers["access-control-allow-methods"] == "GET, HEAD"


# (origin, method, request headers, status, code, message fragment)
REFUSED: list[tuple[str | None, str | None, str | None, int, str, str]] = [
    ("https://evil.example.org", "PUT", None, 403, "AccessForbidden", "not allowed"),
    ("https://app.example.com", "PUT", "authorization", 403, "AccessForbidden", "not allowed"),
    ("http://app.example.com", "PUT", None, 403, "AccessForbidden", "not allowed"),
    ("https://app.example.com", "GET", "x-custom", 403, "AccessForbidden", "not allowed"),
    (None, "PUT", None, 400, "BadRequest", "Origin request header needed"),
    ("https://app.example.com", None, None, 400, "BadRequest", "Access-Control-Request-Method"),
    ("https://app.example.com", "PATCH", None, 400, "BadRequest", "PATCH"),
]


@pytest.mark.parametrize(("origin", "method", "req_headers", "status", "code", "fragment"), REFUSED)
def test_preflight_refused(
    srv: S3Server,
    rules_bucket: str,
    origin: str | None,
    method: str | None,
    req_headers: str | None,
    status: int,
    code: str,
    fragment: str,
) -> None:
    headers: dict[str, str] = {}
    if origin is not None:
        headers["Origin"] = origin
    if method is not None:
        headers["Access_Control_Request_Method"] = method
    if req_headers is not None:
        headers["Access_Control_Request_Headers"] = req_headers
    r = options(f"{srv.endpoint}/{rules_bucket}/k", **headers)
    assert r.status == status, r
    assert r.code == code, r
    assert fragment in (r.message or ""), r
    assert "access-control-allow-origin" not in r.headers


def test_preflight_without_cors_configuration(srv: S3Server, s3: Any) -> None:
    b = cors_bucket(s3, "cors-unset", None)
    r = options(
        f"{srv.endpoint}/{b}/k", Origin="http://a.test", Access_Control_Request_Method="GET"
    )
    assert r.status == 403 and r.code == "AccessForbidden", r
    assert r.message == "CORSResponse: CORS is not enabled for this bucket."
    # after DeleteBucketCors a configured bucket is back to the same answer
    s3.put_bucket_cors(
        Bucket=b,
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]},
    )
    r = options(
        f"{srv.endpoint}/{b}/k", Origin="http://a.test", Access_Control_Request_Method="GET"
    )
    assert r.status == 200, r
    s3.delete_bucket_cors(Bucket=b)
    r = options(
        f"{srv.endpoint}/{b}/k", Origin="http://a.test", Access_Control_Request_Method="GET"
    )
    assert r.status == 403 and r.code == "AccessForbidden", r


def test_preflight_for_a_missing_bucket(srv: S3Server) -> None:
    r = options(
        f"{srv.endpoint}/cors-no-such-bucket/k",
        Origin="http://a.test",
        Access_Control_Request_Method="GET",
    )
    assert r.status == 403 and r.code == "AccessForbidden", r


def test_actual_requests_carry_cors_headers(srv: S3Server, s3: Any, rules_bucket: str) -> None:
    s3.put_object(Bucket=rules_bucket, Key="obj.txt", Body=b"x")
    url = presign(s3, "GET", rules_bucket, "obj.txt")
    r = curl(url, "-H", "Origin: http://anyone.test")
    assert r.status == 200 and r.body == b"x"
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "GET, HEAD"
    assert r.headers["vary"] == VARY
    # no Origin: not a cross-origin request, no CORS headers
    r = curl(url)
    assert r.status == 200 and "access-control-allow-origin" not in r.headers
    # the specific rule: a DELETE from a matching origin is echoed with credentials
    r = curl(
        presign(s3, "DELETE", rules_bucket, "obj.txt"),
        "-X",
        "DELETE",
        "-H",
        "Origin: https://www.example.com",
    )
    assert r.status == 204
    assert r.headers["access-control-allow-origin"] == "https://www.example.com"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    # an error answer carries them too
    r = curl(url, "-H", "Origin: http://anyone.test")
    assert r.status == 404 and r.code == "NoSuchKey"
    assert r.headers["access-control-allow-origin"] == "*"
    # an origin no rule allows for that method gets none
    r = curl(presign(s3, "GET", rules_bucket, "obj.txt"), "-H", "Origin: https://x.example.com")
    assert "access-control-allow-origin" in r.headers  # the "*" GET rule matches
    r = curl(
        presign(s3, "PUT", rules_bucket, "obj2.txt"),
        "-X",
        "PUT",
        "--data-binary",
        "y",
        "-H",
        "Origin: https://evil.example.org",
    )
    assert r.status == 200
    assert "access-control-allow-origin" not in r.headers
