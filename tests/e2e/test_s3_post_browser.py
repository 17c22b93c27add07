"""POST Object from a real browser: an HTML form submitted by headless Chromium.

Layer: tests/e2e. Rules: one ``kvbox serve`` for the module; the page comes from a tiny
web app on another loopback port (``_pages.py``), as a real one would serve it. The form is what
AWS's "Browser-based uploads using POST" describes: ``enctype="multipart/form-data"``,
hidden fields from boto3's ``generate_presigned_post`` (SigV4), a ``file`` input last,
``success_action_redirect`` back to the app. Playwright for Python drives Debian's
Chromium (``executable_path``; no browser download): it picks a file into the input and
clicks the submit button, so the request is the browser's own (its boundary, its part
headers, its file name). Chromium resolves no name but 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from playwright.sync_api import Browser, FilePayload, sync_playwright

from ._pages import PageServer
from ._s3 import S3Server, module_server

BUCKET = "browser-forms"
#: Seconds a page may take to load or navigate.
PAGE_TIMEOUT_MS = 30_000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3postbrowser") as s:
        s.client().create_bucket(Bucket=BUCKET)
        yield s


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def upload_page(action: str, fields: dict[str, str]) -> bytes:
    """The HTML a web app serves: hidden signed fields, then the file input, last."""
    hidden = "\n".join(
        f'  <input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>upload</title></head><body>
<form id="up" action="{html.escape(action)}" method="post" enctype="multipart/form-data">
{hidden}
  <input type="file" name="file">
  <input type="submit" name="x-ignore-submit" value="Upload">
</form>
</body></html>""".encode()


def test_a_browser_form_uploads_and_comes_back(
    srv: S3Server, pages: PageServer, browser: Browser
) -> None:
    s3 = srv.client()
    done = f"{pages.origin}/done"
    post = s3.generate_presigned_post(
        BUCKET,
        "photos/${filename}",
        Fields={"success_action_redirect": done, "Content-Type": "image/png"},
        Conditions=[
            {"success_action_redirect": done},
            ["starts-with", "$Content-Type", "image/"],
            ["starts-with", "$key", "photos/"],
            ["content-length-range", 1, 1 << 20],
        ],
    )
    assert "x-amz-signature" in post["fields"]
    pages.pages["upload.html"] = upload_page(post["url"], post["fields"])
    pages.pages["done"] = b"<html><body>uploaded</body></html>"
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
    page = browser.new_page()
    try:
        page.goto(f"{pages.origin}/upload.html", timeout=PAGE_TIMEOUT_MS)
        page.set_input_files(
            'input[name="file"]',
            files=[FilePayload(name="cat.png", mimeType="image/png", buffer=picture)],
        )
        with page.expect_navigation(url=f"{done}**", timeout=PAGE_TIMEOUT_MS):
            page.click('input[type="submit"]')
        where = urlsplit(page.url)
    finally:
        page.close()
    etag = f'"{hashlib.md5(picture).hexdigest()}"'
    assert parse_qs(where.query) == {"bucket": [BUCKET], "key": ["photos/cat.png"], "etag": [etag]}
    got = s3.get_object(Bucket=BUCKET, Key="photos/cat.png")
    assert got["Body"].read() == picture
    assert got["ContentType"] == "image/png" and got["ETag"] == etag


def test_a_browser_form_that_breaks_its_policy_stores_nothing(
    srv: S3Server, pages: PageServer, browser: Browser
) -> None:
    s3 = srv.client()
    post = s3.generate_presigned_post(
        BUCKET, "small/${filename}", Conditions=[["content-length-range", 1, 100]]
    )
    pages.pages["small.html"] = upload_page(post["url"], post["fields"])
    page = browser.new_page()
    try:
        page.goto(f"{pages.origin}/small.html", timeout=PAGE_TIMEOUT_MS)
        page.set_input_files(
            'input[name="file"]',
            files=[FilePayload(name="big.bin", mimeType="text/plain", buffer=b"x" * 5000)],
        )
        with page.expect_navigation(timeout=PAGE_TIMEOUT_MS) as nav:
            page.click('input[type="submit"]')
        response = nav.value
        assert response is not None and response.status == 400
        text = page.content()
    finally:
        page.close()
    assert "EntityTooLarge" in text, text
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="small/big.bin")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
