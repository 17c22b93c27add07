"""Static website hosting end to end: ``kvbox serve --web-port`` answering browsers.

Layer: tests/e2e. Rules: one server for the module (the policy tests at the end use the
shared ``lab`` server of tests/e2e/_lab.py) (``--http-port`` for the S3 API,
``--web-port`` and ``--web-domain web.test`` for the websites); buckets and their
settings are made with boto3 as an AWS user would (PutObject, PutBucketWebsite,
PutBucketPolicy); the website is read anonymously with ``http.client``, which sends
the Host header we choose and follows no redirect. Expected answers are AWS's, from
the S3 user guide ("Hosting a static website": index documents, custom error documents,
redirects, "Setting permissions for website access") and the API reference
(PutBucketWebsite, PutObject's x-amz-website-redirect-location).
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from _ports import free_port

from ._curl import code
from ._lab import (
    Lab,
    allow_get,
    anon,
    deny_get_if,
    website,
)
from ._lab import policy as lab_policy
from ._s3 import S3Server, module_server
from ._server import IO_TIMEOUT

DOMAIN = "web.test"
BIG = bytes(range(256)) * 4096  # 1 MiB: several store chunks


@dataclass(frozen=True, slots=True)
class Page:
    """One HTTP answer; header names lower-cased."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Web:
    """Anonymous HTTP/1.1 requests to the website port, with an explicit Host."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self, path: str, host: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Page:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)
        try:
            conn.request(method, path, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            body = resp.read()
            return Page(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        finally:
            conn.close()

    def site(self, bucket: str, path: str = "/", **kw: Any) -> Page:
        return self.request(path, f"{bucket}.{DOMAIN}:{self.port}", **kw)


@pytest.fixture(scope="module")
def web_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, web_port: int) -> Iterator[S3Server]:
    web = ("--web-port", str(web_port), "--web-domain", DOMAIN)
    with module_server(tmp_path_factory, "website", *web) as s:
        yield s


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


@pytest.fixture(scope="module")
def www(srv: S3Server, web_port: int) -> Web:
    return Web(web_port)


def policy(bucket: str, *, listing: bool = True, deny_prefix: str | None = None) -> str:
    """The user guide's public-website policy: anyone may GetObject (and here, unless
    ``listing`` is off, ListBucket, so missing keys are 404s rather than 403s)."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "PublicReadGetObject",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
    ]
    if listing:
        statements.append(
            {
                "Sid": "PublicList",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
            }
        )
    if deny_prefix is not None:
        statements.append(
            {
                "Sid": "Private",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{deny_prefix}*",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def make_site(
    s3: Any,
    bucket: str,
    objects: dict[str, bytes],
    website: dict[str, Any],
    *,
    public: bool = True,
    listing: bool = True,
    deny_prefix: str | None = None,
) -> str:
    s3.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        kind = "text/html" if key.endswith(".html") else "application/octet-stream"
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=website)
    if public:
        s3.put_bucket_policy(
            Bucket=bucket, Policy=policy(bucket, listing=listing, deny_prefix=deny_prefix)
        )
    return bucket


SITE = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "error.html"}}
PAGES = {
    "index.html": b"<h1>home</h1>",
    "error.html": b"<h1>not here</h1>",
    "docs/index.html": b"<h1>docs</h1>",
    "docs/a.html": b"page a",
    "big.bin": BIG,
    "private/secret.html": b"top secret",
}


@pytest.fixture(scope="module")
def site(s3: Any) -> str:
    return make_site(s3, "site", PAGES, SITE, deny_prefix="private/")


def test_index_document(www: Web, site: str) -> None:
    page = www.site(site, "/")
    assert page.status == 200 and page.body == b"<h1>home</h1>"
    assert page.headers["content-type"] == "text/html"
    assert page.headers["content-length"] == str(len(page.body))
    assert page.headers["etag"] == f'"{hashlib.md5(page.body).hexdigest()}"'
    assert "last-modified" in page.headers
    assert www.site(site, "/index.html").body == b"<h1>home</h1>"


def test_folder_index_and_redirect(www: Web, site: str) -> None:
    page = www.site(site, "/docs/")
    assert (page.status, page.body) == (200, b"<h1>docs</h1>")
    page = www.site(site, "/docs")
    assert page.status == 302 and page.headers["location"] == "/docs/"
    assert www.site(site, "/docs/a.html").body == b"page a"


def test_error_document_keeps_the_404(www: Web, site: str) -> None:
    page = www.site(site, "/no/such/page.html")
    assert page.status == 404 and page.body == b"<h1>not here</h1>"
    assert page.headers["content-type"] == "text/html"


def test_private_object_is_403(www: Web, site: str) -> None:
    page = www.site(site, "/private/secret.html")
    assert page.status == 403
    assert b"top secret" not in page.body
    assert page.body == b"<h1>not here</h1>"  # the error document, with the 403


def test_bucket_without_policy_is_forbidden(s3: Any, www: Web) -> None:
    index_only = {"IndexDocument": {"Suffix": "index.html"}}
    make_site(s3, "closed", {"index.html": b"x"}, index_only, public=False)
    page = www.site("closed", "/")
    assert page.status == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>403 Forbidden</h1>" in page.text
    assert "<li>Code: AccessDenied</li>" in page.text
    assert page.headers["x-amz-error-code"] == "AccessDenied"


def test_without_list_permission_a_missing_key_is_403(s3: Any, www: Web) -> None:
    """AWS: without s3:ListBucket the public may not learn that a key is missing."""
    make_site(s3, "nolist", {"index.html": b"x"}, SITE, listing=False)
    page = www.site("nolist", "/missing.html")
    assert page.status == 403
    assert "<li>Code: AccessDenied</li>" in page.text
    # the error document itself is missing: the page says so in its second section
    assert "Custom Error Document" in page.text
    assert www.site("nolist", "/").status == 200


def test_plain_html_404_without_error_document(s3: Any, www: Web) -> None:
    make_site(s3, "noerr", {"index.html": b"x"}, {"IndexDocument": {"Suffix": "index.html"}})
    page = www.site("noerr", "/nope.html")
    assert page.status == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>404 Not Found</title>" in page.text
    assert "<li>Code: NoSuchKey</li>" in page.text
    assert "<li>Key: nope.html</li>" in page.text
    assert "<li>RequestId: " in page.text


def test_missing_bucket_and_missing_website_configuration(s3: Any, www: Web) -> None:
    page = www.site("no-such-bucket-here", "/")
    assert page.status == 404
    assert "<li>Code: NoSuchBucket</li>" in page.text
    assert "<li>BucketName: no-such-bucket-here</li>" in page.text
    s3.create_bucket(Bucket="nosite")
    page = www.site("nosite", "/")
    assert page.status == 404
    assert "<li>Code: NoSuchWebsiteConfiguration</li>" in page.text


def test_redirect_all_requests(s3: Any, www: Web) -> None:
    s3.create_bucket(Bucket="old-site")
    s3.put_bucket_website(
        Bucket="old-site",
        WebsiteConfiguration={
            "RedirectAllRequestsTo": {"HostName": "www.example.org", "Protocol": "https"}
        },
    )
    page = www.site("old-site", "/blog/post.html")
    assert page.status == 301
    assert page.headers["location"] == "https://www.example.org/blog/post.html"
    s3.put_bucket_website(
        Bucket="old-site",
        WebsiteConfiguration={"RedirectAllRequestsTo": {"HostName": "new.example"}},
    )
    page = www.site("old-site", "/")
    assert page.status == 301 and page.headers["location"] == "http://new.example/"


def test_routing_rules(s3: Any, www: Web) -> None:
    """The user guide's three examples: rename a folder, folder to a page, on 404."""
    config = {
        "IndexDocument": {"Suffix": "index.html"},
        "RoutingRules": [
            {
                "Condition": {"KeyPrefixEquals": "docs/"},
                "Redirect": {"ReplaceKeyPrefixWith": "documents/"},
            },
            {
                "Condition": {"KeyPrefixEquals": "images/"},
                "Redirect": {"ReplaceKeyWith": "folderdeleted.html"},
            },
            {
                "Condition": {"HttpErrorCodeReturnedEquals": "404"},
                "Redirect": {
                    "HostName": "ec2.example",
                    "ReplaceKeyPrefixWith": "report-404/",
                    "HttpRedirectCode": "307",
                },
            },
        ],
    }
    make_site(s3, "rules", {"index.html": b"i", "documents/a.html": b"a"}, config)
    host = f"rules.{DOMAIN}:{www.port}"
    page = www.site("rules", "/docs/a.html")
    assert page.status == 301 and page.headers["location"] == f"http://{host}/documents/a.html"
    page = www.site("rules", "/images/cat.png")
    assert page.status == 301 and page.headers["location"] == f"http://{host}/folderdeleted.html"
    page = www.site("rules", "/ExamplePage.html")
    assert page.status == 307
    assert page.headers["location"] == "http://ec2.example/report-404/ExamplePage.html"
    page = www.site("rules", "/documents/a.html")
    assert (page.status, page.body) == (200, b"a")


def test_website_redirect_location(s3: Any, www: Web, site: str) -> None:
    s3.put_object(Bucket=site, Key="old.html", Body=b"", WebsiteRedirectLocation="/docs/a.html")
    s3.put_object(
        Bucket=site, Key="out.html", Body=b"", WebsiteRedirectLocation="https://example.com/x"
    )
    assert s3.head_object(Bucket=site, Key="old.html")["WebsiteRedirectLocation"] == "/docs/a.html"
    page = www.site(site, "/old.html")
    assert page.status == 301 and page.headers["location"] == "/docs/a.html"
    page = www.site(site, "/out.html")
    assert page.status == 301 and page.headers["location"] == "https://example.com/x"


def test_head(www: Web, site: str) -> None:
    page = www.site(site, "/big.bin", method="HEAD")
    assert page.status == 200 and page.body == b""
    assert page.headers["content-length"] == str(len(BIG))
    assert page.headers["accept-ranges"] == "bytes"
    page = www.site(site, "/nope", method="HEAD")
    assert page.status == 404 and page.body == b""
    assert page.headers["x-amz-error-code"] == "NoSuchKey"


def test_big_object_whole_and_ranges(www: Web, site: str) -> None:
    page = www.site(site, "/big.bin")
    assert page.status == 200 and page.body == BIG
    page = www.site(site, "/big.bin", headers={"Range": "bytes=1000-299999"})
    assert page.status == 206 and page.body == BIG[1000:300000]
    assert page.headers["content-range"] == f"bytes 1000-299999/{len(BIG)}"
    page = www.site(site, "/big.bin", headers={"Range": "bytes=-10"})
    assert page.status == 206 and page.body == BIG[-10:]
    page = www.site(site, "/big.bin", headers={"Range": f"bytes={len(BIG)}-"})
    assert page.status == 416
    assert page.headers["content-range"] == f"bytes */{len(BIG)}"


def test_not_modified(s3: Any, www: Web, site: str) -> None:
    head = s3.head_object(Bucket=site, Key="index.html")
    page = www.site(site, "/", headers={"If-None-Match": head["ETag"]})
    assert page.status == 304 and page.body == b""
    later = formatdate(head["LastModified"].timestamp() + 60, usegmt=True)
    page = www.site(site, "/index.html", headers={"If-Modified-Since": later})
    assert page.status == 304
    page = www.site(site, "/index.html", headers={"If-None-Match": '"0123"'})
    assert page.status == 200


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_only_get_and_head(www: Web, site: str, method: str) -> None:
    page = www.site(site, "/index.html", method=method)
    assert page.status == 405
    assert "<li>Code: MethodNotAllowed</li>" in page.text
    assert www.site(site, "/index.html").body == b"<h1>home</h1>"  # nothing changed


def test_path_style_on_an_ip(www: Web, site: str) -> None:
    host = f"127.0.0.1:{www.port}"
    page = www.request(f"/{site}/", host)
    assert (page.status, page.body) == (200, b"<h1>home</h1>")
    page = www.request(f"/{site}/docs", host)
    assert page.status == 302 and page.headers["location"] == f"/{site}/docs/"


def test_cname_style_bucket(s3: Any, www: Web) -> None:
    """A bucket named like the site's host name serves that host (S3's CNAME setup)."""
    make_site(s3, "www.example.com", {"index.html": b"cname"}, SITE)
    page = www.request("/", "www.example.com")
    assert (page.status, page.body) == (200, b"cname")


def test_the_s3_port_is_not_a_website(srv: S3Server, site: str) -> None:
    """The REST endpoint keeps its own rules: no index document, XML errors."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", f"/{site}/docs/")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status in (403, 404)
    assert body.startswith(b"<?xml")


# --- bucket policies on the website endpoint -----------------------------------------------


def test_website_applies_a_source_ip_deny(lab: Lab, lab_s3: Any) -> None:
    b = "rv-web-ipdeny"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_object(Bucket=b, Key="index.html", Body=b"hello", ContentType="text/html")
    website(lab_s3, b)
    lab_s3.put_bucket_policy(
        Bucket=b,
        Policy=lab_policy(
            allow_get(b), deny_get_if(b, {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})
        ),
    )
    assert anon(lab.srv.http_port, "GET", f"/{b}/index.html").status == 403
    page = anon(lab.web_port, "GET", f"/{b}/index.html")
    assert page.status == 403, page


def test_website_applies_user_agent_and_referer_denies(lab: Lab, lab_s3: Any) -> None:
    b = "rv-web-uadeny"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_object(Bucket=b, Key="index.html", Body=b"hello", ContentType="text/html")
    website(lab_s3, b)
    lab_s3.put_bucket_policy(
        Bucket=b,
        Policy=lab_policy(
            allow_get(b),
            deny_get_if(b, {"StringLike": {"aws:UserAgent": "*BadBot*"}}),
            deny_get_if(b, {"StringLike": {"aws:Referer": "http://evil.example/*"}}),
        ),
    )
    for hdrs in ({"User-Agent": "BadBot/1.0"}, {"Referer": "http://evil.example/page"}):
        assert anon(lab.srv.http_port, "GET", f"/{b}/index.html", hdrs).status == 403
        page = anon(lab.web_port, "GET", f"/{b}/index.html", hdrs)
        assert page.status == 403, (hdrs, page)


def test_website_applies_an_existing_object_tag_deny(lab: Lab, lab_s3: Any) -> None:
    b = "rv-web-tagdeny"
    lab_s3.create_bucket(Bucket=b)
    website(lab_s3, b)
    lab_s3.put_bucket_policy(
        Bucket=b,
        Policy=lab_policy(
            allow_get(b),
            deny_get_if(b, {"StringEquals": {"s3:ExistingObjectTag/class": "secret"}}),
        ),
    )
    lab_s3.put_object(Bucket=b, Key="doc.html", Body=b"TOP-SECRET", Tagging="class=secret")
    assert anon(lab.srv.http_port, "GET", f"/{b}/doc.html").status == 403
    page = anon(lab.web_port, "GET", f"/{b}/doc.html")
    assert page.status == 403, page
    assert b"TOP-SECRET" not in page.body


def test_website_allow_pinned_to_source_ip(lab: Lab, lab_s3: Any) -> None:
    b = "rv-web-ipallow"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_object(Bucket=b, Key="index.html", Body=b"hello", ContentType="text/html")
    website(lab_s3, b)
    stmt = allow_get(b) | {"Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}
    lab_s3.put_bucket_policy(Bucket=b, Policy=lab_policy(stmt))
    assert anon(lab.srv.http_port, "GET", f"/{b}/index.html").status == 200
    assert anon(lab.web_port, "GET", f"/{b}/index.html").status == 200


def test_website_never_serves_private_objects_or_unconfigured_buckets(
    lab: Lab, lab_s3: Any
) -> None:
    site = "rv-web-site"
    lab_s3.create_bucket(Bucket=site)
    lab_s3.put_object(Bucket=site, Key="index.html", Body=b"home", ContentType="text/html")
    lab_s3.put_object(Bucket=site, Key="priv/secret.txt", Body=b"SITE-SECRET")
    website(lab_s3, site)
    lab_s3.put_bucket_policy(
        Bucket=site,
        Policy=lab_policy(
            allow_get(site),
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{site}/priv/*",
            },
        ),
    )
    other = "rv-web-private"
    lab_s3.create_bucket(Bucket=other)
    lab_s3.put_object(Bucket=other, Key="index.html", Body=b"OTHER-SECRET")
    port = lab.web_port
    assert anon(port, "GET", f"/{site}/").body == b"home"
    tricks = [
        f"/{site}/priv/secret.txt",
        f"/{site}/priv%2Fsecret.txt",
        f"/{site}/pub/../priv/secret.txt",
        f"/{site}/./priv/secret.txt",
        "/%72v-web-site/priv/secret.txt",
        f"/{other}/index.html",
        f"/{other}/",
        f"/{site}/../{other}/index.html",
        f"/{site}%2F..%2F{other}/index.html",
    ]
    for path in tricks:
        for method in ("GET", "HEAD"):
            got = anon(port, method, path)
            assert got.status in (403, 404), (method, path, got.status)
            assert b"SECRET" not in got.body, (method, path)
    # The Host header picks a bucket only among those with a website configuration.
    for host in (other, f"{other}:{port}", f"{site}.{other}", "localhost"):
        got = anon(port, "GET", "/index.html", {"Host": host})
        assert b"OTHER-SECRET" not in got.body, host


def test_website_redirect_location_is_validated(lab: Lab, lab_s3: Any) -> None:
    b = "rv-web-redirect"
    lab_s3.create_bucket(Bucket=b)
    for bad in ("javascript:alert(1)", "evil.example/x", "data:text/html,hi"):
        try:
            lab_s3.put_object(Bucket=b, Key="r.html", Body=b"", WebsiteRedirectLocation=bad)
        except ClientError as exc:
            assert code(exc) == "InvalidRedirectLocation", bad
        else:
            pytest.fail(f"x-amz-website-redirect-location {bad!r} was stored")
