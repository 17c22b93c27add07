"""The web console in a real browser: headless Chromium (Playwright) on a real ``kvbox serve``.

Layer: tests/e2e. Rules: the console tests' shared server (``console_srv``) and one
browser for the module; each test opens its own browser context (its own cookies and
storage), signs in through the page like a person, works on buckets of its own names,
and checks the outcome with an independent client (boto3, curl, a raw GW-KV socket) --
never through the console itself. Every page is watched for script errors and
Content-Security-Policy violations (``_browser.watch``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import struct
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from ._browser import launched, new_page, watch
from ._console import WEB_DOMAIN, admin, admin_lines
from ._curl import curl
from ._png import BLUE_PNG, RED_PNG
from ._proxy import SubPathProxy
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server
from ._server import Wire


@pytest.fixture(scope="module")
def srv(console_srv: S3Server) -> S3Server:
    return console_srv


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with launched(chromium) as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # the clipboard is the copy buttons' whole point: let the page use it
    p = new_page(browser, permissions=["clipboard-read", "clipboard-write"])
    problems = watch(p)
    yield p
    p.context.close()
    assert not problems, problems


def console_url(srv: S3Server) -> str:
    return f"{srv.endpoint}/console/"


def sign_in(
    page: Page, srv: S3Server, access: str = ACCESS_KEY, secret: str = SECRET_KEY, url: str = ""
) -> None:
    page.goto(url or console_url(srv))
    page.get_by_label("Access key").fill(access)
    page.get_by_label("Secret key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def open_screen(page: Page, srv: S3Server, fragment: str) -> None:
    page.goto(console_url(srv) + fragment)
    expect(page.locator("#page-title")).to_be_visible()


def drop_folder(page: Page, tree: dict[str, bytes]) -> None:
    """What dropping a folder from the desktop delivers: a ``drop`` whose DataTransfer
    item is the folder's FileSystemDirectoryEntry. Neither Playwright nor a page can make
    a real one, so this builds an object with that interface (``name``, ``isDirectory``,
    ``createReader().readEntries`` answering in batches, then ``[]``; a file entry's
    ``file()``) -- the browser's API, stood in for; the console's walk of it runs as is.
    ``tree`` maps paths (``top/sub/file``) to contents."""
    page.locator("#dropzone").wait_for()
    page.evaluate(
        """(tree) => {
          const dir = (name) => ({ name, isDirectory: true, isFile: false, children: [] });
          const root = dir("");
          for (const [path, b64] of Object.entries(tree)) {
            const parts = path.split("/");
            let at = root;
            for (const part of parts.slice(0, -1)) {
              let next = at.children.find((c) => c.name === part);
              if (!next) at.children.push(next = dir(part));
              at = next;
            }
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const file = new File([bytes], parts.at(-1));
            at.children.push({ name: file.name, isDirectory: false, isFile: true,
                               file: (ok) => setTimeout(() => ok(file)) });
          }
          const withReaders = (e) => {
            if (e.isDirectory) {
              e.children.forEach(withReaders);
              e.createReader = () => {
                const batches = e.children.map((c) => [c]);  // one entry per batch
                return { readEntries: (ok) => setTimeout(() => ok(batches.shift() || [])) };
              };
            }
            return e;
          };
          const items = root.children.map((e) => ({ webkitGetAsEntry: () => withReaders(e) }));
          const drop = new Event("drop", { bubbles: true, cancelable: true });
          Object.defineProperty(drop, "dataTransfer", { value: { items, files: [] } });
          document.getElementById("dropzone").dispatchEvent(drop);
        }""",
        {path: base64.b64encode(data).decode() for path, data in tree.items()},
    )


def drop_file(page: Page, name: str, data: bytes, ctype: str) -> None:
    """What a drag and drop from the desktop delivers: a ``drop`` event whose
    DataTransfer holds the file (Playwright cannot drag from outside the page)."""
    page.locator("#dropzone").wait_for()
    page.evaluate(
        """([name, b64, type]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, { type }));
          const zone = document.getElementById("dropzone");
          const init = { dataTransfer: dt, bubbles: true, cancelable: true };
          for (const kind of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(kind, init));
          }
        }""",
        [name, base64.b64encode(data).decode(), ctype],
    )


# --- sign-in and buckets ------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_secret_then_signs_in(page: Page, srv: S3Server) -> None:
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(console_url(srv))
    page.get_by_label("Access key").fill(ACCESS_KEY)
    page.get_by_label("Secret key").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong")
    # the secret field was cleared: the page keeps no secret it was given
    expect(page.get_by_label("Secret key")).to_have_value("")
    page.get_by_label("Secret key").fill(SECRET_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("#who")).to_have_text("root (root)")
    # the session cookie is HttpOnly, SameSite=Strict: the page's script cannot read it
    assert page.evaluate("document.cookie") == ""
    cookie = next(c for c in page.context.cookies() if c["name"] == "kvbox_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console/"
    # nothing secret is kept in the browser's storage
    stored = page.evaluate(
        "JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
    )
    assert SECRET_KEY not in stored
    # the dashboard shows the server's own figures
    expect(page.locator("#stat-version")).not_to_be_empty()
    expect(page.locator("figure svg.chart")).to_have_count(3)
    page.get_by_role("link", name="Buckets", exact=True).click()
    expect(page.get_by_role("heading", name="Buckets")).to_be_visible()
    # the theme: the system's (light here) until toggled; the choice outlives a reload
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.get_by_role("button", name="Dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.get_by_role("button", name="Light theme")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate(background) != light
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.evaluate("localStorage.getItem('kvbox-theme')") == "dark"
    page.get_by_role("button", name="Light theme").click()
    assert page.evaluate(background) == light
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # signed out for the server too: the old session's cookie is gone and the API says so
    assert page.evaluate("async () => (await fetch('api/s3/')).status") == 401
    # no secret in any URL the page asked for, nor in the page's own address
    assert urls and not [u for u in urls if SECRET_KEY in u or "not-the-secret" in u]
    assert SECRET_KEY not in page.url


def test_create_a_bucket(page: Page, srv: S3Server) -> None:
    sign_in(page, srv)
    page.get_by_role("link", name="Buckets", exact=True).click()
    name = page.get_by_label("Bucket name")
    name.fill("Bad_Name")
    page.get_by_role("button", name="Create bucket").click()
    # the S3 door's own reason, not a console rule
    expect(page.locator("#new-bucket-error")).to_contain_text("InvalidBucketName")
    name.fill("created-here")
    page.get_by_role("button", name="Create bucket").click()
    row = page.get_by_role("row", name="created-here")
    expect(row).to_be_visible()
    expect(row.get_by_role("cell").nth(1)).to_have_text("0")
    s3 = srv.client()
    assert "created-here" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # the list shows each bucket's object count and bytes, from the server's counters
    s3.put_object(Bucket="created-here", Key="small", Body=b"abc")
    s3.put_object(Bucket="created-here", Key="larger", Body=b"x" * 2045)
    page.reload()
    row = page.get_by_role("row", name="created-here")
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")
    expect(row.get_by_role("cell").nth(2)).to_have_text("2.0 KiB")


def test_a_bucket_that_is_not_empty_is_emptied_first(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="to-empty")
    s3.put_bucket_versioning(Bucket="to-empty", VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        s3.put_object(Bucket="to-empty", Key=f"k{i}", Body=b"x")
        s3.put_object(Bucket="to-empty", Key=f"k{i}", Body=b"y")  # two versions each
    sign_in(page, srv)
    open_screen(page, srv, "#/buckets")
    # the progress bar comes and goes within a blink: note every value it shows
    page.evaluate(
        """() => {
          window.progressSeen = [];
          new MutationObserver(() => {
            const bar = document.querySelector("progress[aria-label='Emptying to-empty']");
            if (bar) window.progressSeen.push([bar.value, bar.max]);
          }).observe(document.body, { subtree: true, childList: true, attributes: true });
        }"""
    )
    page.get_by_role("button", name="Delete bucket to-empty").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("dialog")).to_contain_text("not empty")
    page.get_by_role("button", name="Empty and delete").click()
    expect(page.get_by_role("row", name="to-empty")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text("emptied and deleted")
    seen = page.evaluate("window.progressSeen")
    assert seen and seen[0][0] == 0 and [6, 6] in seen, seen  # six versions, all counted
    assert "to-empty" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --- the S3 lab: upload, preview, public read, versions, presigned links ------------------


def test_upload_by_drag_and_drop_and_a_folder_by_button(
    page: Page, srv: S3Server, tmp_path: Path
) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="lab")
    folder = tmp_path / "album"
    (folder / "inner").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"first file\n")
    (folder / "inner" / "b.json").write_bytes(b'{"b": 2}')
    sign_in(page, srv)
    open_screen(page, srv, "#/objects?bucket=lab")
    drop_file(page, "cat.png", RED_PNG, "image/png")
    bar = page.get_by_role("progressbar", name="Upload of cat.png")
    expect(bar).to_be_visible()
    expect(page.locator("li[data-key='cat.png']")).to_have_attribute("data-state", "done")
    assert bar.evaluate("el => el.value === el.max")
    page.locator("input[webkitdirectory]").set_input_files(folder)
    for key in ("album/a.txt", "album/inner/b.json"):
        expect(page.locator(f"li[data-key='{key}']")).to_have_attribute("data-state", "done")
        expect(page.get_by_role("progressbar", name=f"Upload of {key}")).to_be_visible()
    assert s3.get_object(Bucket="lab", Key="cat.png")["Body"].read() == RED_PNG
    assert s3.get_object(Bucket="lab", Key="cat.png")["ContentType"] == "image/png"
    assert s3.get_object(Bucket="lab", Key="album/inner/b.json")["Body"].read() == b'{"b": 2}'
    # a whole folder dropped: every file under it, at its path
    drop_folder(page, {"trip/day1.txt": b"sea", "trip/photos/p1.png": RED_PNG})
    for key in ("trip/day1.txt", "trip/photos/p1.png"):
        expect(page.locator(f"li[data-key='{key}']")).to_have_attribute("data-state", "done")
        expect(page.get_by_role("progressbar", name=f"Upload of {key}")).to_be_visible()
    assert s3.get_object(Bucket="lab", Key="trip/photos/p1.png")["Body"].read() == RED_PNG
    assert s3.get_object(Bucket="lab", Key="trip/day1.txt")["Body"].read() == b"sea"
    # the listing shows the new entries as a file and a folder
    expect(page.get_by_role("link", name="cat.png", exact=True)).to_be_visible()
    page.get_by_role("link", name="album/", exact=True).click()
    expect(page.get_by_role("link", name="a.txt", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="inner/", exact=True)).to_be_visible()


def _names(page: Page) -> Locator:
    """The names in the object browser's table, top to bottom (``expect`` it: the table
    is drawn again after each step)."""
    return page.locator("tbody td.name a")


def test_browse_folders_sort_filter_and_download(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="browse")
    sizes = {"bee.txt": 300, "ant.txt": 20, "bear.txt": 5, "cave/deep/worm.txt": 7}
    for key, size in sizes.items():
        s3.put_object(Bucket="browse", Key=key, Body=key.encode()[:1] * size)
    sign_in(page, srv)
    open_screen(page, srv, "#/objects?bucket=browse")
    expect(_names(page)).to_have_text(["cave/", "ant.txt", "bear.txt", "bee.txt"])  # folders first
    # sorting the page: by size, then the other way
    page.get_by_role("button", name="Size").click()
    expect(page.locator("th[aria-sort='ascending']")).to_contain_text("Size")
    expect(_names(page)).to_have_text(["cave/", "bear.txt", "ant.txt", "bee.txt"])
    page.get_by_role("button", name="Size").click()
    expect(page.locator("th[aria-sort='descending']")).to_contain_text("Size")
    expect(_names(page)).to_have_text(["cave/", "bee.txt", "ant.txt", "bear.txt"])
    # the filter is typed, and asks the server for the names that start with it
    listed: list[str] = []
    page.on("request", lambda r: listed.append(r.url) if "list-type=2" in r.url else None)
    page.get_by_role("searchbox", name="Filter by name").fill("be")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(_names(page)).to_have_text(["bear.txt", "bee.txt"])
    assert any("prefix=be" in u for u in listed)
    # folders and breadcrumbs, down and back up
    open_screen(page, srv, "#/objects?bucket=browse")
    page.get_by_role("link", name="cave/", exact=True).click()
    page.get_by_role("link", name="deep/", exact=True).click()
    crumbs = page.get_by_role("navigation", name="Breadcrumbs")
    expect(crumbs).to_contain_text("deep")
    expect(_names(page)).to_have_text(["worm.txt"])
    crumbs.get_by_role("link", name="cave", exact=True).click()
    expect(_names(page)).to_have_text(["deep/"])
    crumbs.get_by_role("link", name="browse", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(4)
    # a download from the list and one from the object's page: the bytes, the name
    with page.expect_download() as got:
        page.get_by_role("link", name="Download bee.txt").click()
    assert got.value.suggested_filename == "bee.txt"
    assert Path(got.value.path()).read_bytes() == b"b" * 300
    page.get_by_role("link", name="cave/", exact=True).click()
    page.get_by_role("link", name="deep/", exact=True).click()
    page.get_by_role("link", name="worm.txt", exact=True).click()
    with page.expect_download() as got:  # the toolbar's, not a version row's
        page.locator(".toolbar").get_by_role("link", name="Download", exact=True).click()
    assert got.value.suggested_filename == "worm.txt"
    assert Path(got.value.path()).read_bytes() == b"c" * 7


def test_image_preview_public_read_preset_and_anonymous_fetch(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="public-lab")
    s3.put_object(Bucket="public-lab", Key="cat.png", Body=RED_PNG, ContentType="image/png")
    anonymous = f"{srv.endpoint}/public-lab/cat.png"
    assert curl(anonymous).status == 403
    sign_in(page, srv)
    open_screen(page, srv, "#/objects?bucket=public-lab")
    page.get_by_role("link", name="cat.png", exact=True).click()
    img = page.get_by_role("img", name="Preview of cat.png")
    expect(img).to_be_visible()
    page.wait_for_function("() => document.querySelector('.preview img').naturalWidth > 0")
    assert img.evaluate("el => [el.naturalWidth, el.naturalHeight]") == [16, 16]
    expect(page.get_by_text("Not public")).to_be_visible()

    open_screen(page, srv, "#/settings?bucket=public-lab&tab=permissions")
    page.get_by_label("Preset").select_option(label="Public read")
    page.get_by_role("button", name="Use preset").click()
    expect(page.locator("#policy-status")).to_contain_text("makes the bucket public")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#status")).to_contain_text("Policy saved")
    got = curl(anonymous)
    assert got.status == 200 and got.body == RED_PNG
    # the explainer says why, from the saved settings
    page.get_by_label("Key", exact=True).fill("cat.png")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#explain-verdict")).to_have_text("ALLOWED")
    expect(page.locator("#explain-result")).to_contain_text("PublicRead")
    # and the object page offers the public URL
    open_screen(page, srv, "#/object?bucket=public-lab&key=cat.png")
    expect(page.locator("#public-url")).to_have_text(anonymous)
    page.get_by_role("button", name="Copy public URL").click()
    expect(page.locator("#status")).to_contain_text("Public URL copied")
    assert page.evaluate("navigator.clipboard.readText()") == anonymous


def test_the_policy_editor_shows_the_servers_error_at_its_line(page: Page, srv: S3Server) -> None:
    srv.client().create_bucket(Bucket="policy-lab")
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=policy-lab&tab=permissions")
    text = (
        '{\n  "Version": "2012-10-17",\n  "Statement": [{\n    "Effect": "Allow",\n'
        '    "Principal": "*",\n    "Action": "s3:GetObjekt",\n'
        '    "Resource": "arn:aws:s3:::policy-lab/*"\n  }]\n}'
    )
    page.get_by_label("Policy (JSON)").fill(text)
    expect(page.locator("#policy-status")).to_contain_text("Line 6:")
    expect(page.locator("#policy-status")).to_contain_text("s3:GetObjekt")
    expect(page.locator(".gutter .bad")).to_have_text("6")
    expect(page.get_by_label("Policy (JSON)")).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Save policy").click()  # refused before it is sent
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        srv.client().get_bucket_policy(Bucket="policy-lab")


def test_versioning_a_new_version_and_restoring_the_old_one(
    page: Page, srv: S3Server, tmp_path: Path
) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="versions-lab")
    s3.put_object(Bucket="versions-lab", Key="cat.png", Body=RED_PNG, ContentType="image/png")
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=versions-lab&tab=versioning")
    page.get_by_label("Enabled").check()
    page.get_by_role("button", name="Save versioning").click()
    # "off (never enabled)" contains "enabled" too: wait for the state word itself.
    expect(page.locator("#versioning-state strong")).to_have_text("enabled")
    assert s3.get_bucket_versioning(Bucket="versions-lab")["Status"] == "Enabled"

    new = tmp_path / "cat.png"
    new.write_bytes(BLUE_PNG)
    open_screen(page, srv, "#/objects?bucket=versions-lab")
    page.get_by_label("Files to upload").set_input_files(new)
    expect(page.locator("li[data-key='cat.png']")).to_have_attribute("data-state", "done")
    assert s3.get_object(Bucket="versions-lab", Key="cat.png")["Body"].read() == BLUE_PNG

    page.get_by_role("link", name="cat.png", exact=True).click()
    rows = page.locator("#versions-title ~ div tbody tr")
    expect(rows).to_have_count(2)
    # written before versioning was on: the "null" version, as S3 names it
    assert rows.nth(1).get_attribute("data-version") == "null"
    rows.nth(1).get_by_role("button", name="Restore").click()
    expect(page.locator("#status")).to_contain_text("restored")
    expect(page.locator("#versions-title ~ div tbody tr")).to_have_count(3)
    assert s3.get_object(Bucket="versions-lab", Key="cat.png")["Body"].read() == RED_PNG
    listed = s3.list_object_versions(Bucket="versions-lab", Prefix="cat.png")["Versions"]
    assert len(listed) == 3  # restoring copies; nothing was deleted
    # any version downloads as it was: the blue one, now neither latest nor shown
    blue = page.locator("#versions-title ~ div tbody tr").nth(1)
    with page.expect_download() as got:
        blue.get_by_role("link", name="Download").click()
    assert got.value.suggested_filename == "cat.png"
    assert Path(got.value.path()).read_bytes() == BLUE_PNG

    # suspended: S3 never turns versioning off, and neither does the console
    open_screen(page, srv, "#/settings?bucket=versions-lab&tab=versioning")
    page.get_by_label("Suspended").check()
    page.get_by_role("button", name="Save versioning").click()
    expect(page.locator("#versioning-state strong")).to_have_text("suspended")
    assert s3.get_bucket_versioning(Bucket="versions-lab")["Status"] == "Suspended"


def test_a_presigned_link_made_in_the_console_can_be_fetched(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="share-lab")
    body = b"shared through a presigned link\n"
    s3.put_object(Bucket="share-lab", Key="notes/today.txt", Body=body, ContentType="text/plain")
    sign_in(page, srv)
    open_screen(page, srv, "#/object?bucket=share-lab&key=notes/today.txt")
    expect(page.locator(".preview pre")).to_have_text(body.decode())
    page.get_by_role("button", name="Share a link").click()
    page.get_by_label("Valid for").select_option(label="15 minutes")
    page.get_by_role("button", name="Make link").click()
    url = page.locator("#presigned-url").input_value()
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=900" in url
    assert SECRET_KEY not in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == body
    assert curl(url.split("?")[0]).status == 403  # without the signature: private


# --- uploads that survive a dropped connection ---------------------------------------------


#: Past the console's single-PUT limit (8 MiB): a multipart upload of an 8 MiB part and
#: a last part of 512 KiB.
TWO_PARTS = 8 * 1024 * 1024 + 512 * 1024
#: The requests that carry part 2 of a multipart upload.
_PART_2 = re.compile(r"/api/s3/[^?]+\?(.*&)?partNumber=2&")


def _big_file(tmp_path: Path, size: int, seed: int) -> tuple[Path, bytes]:
    data = random.Random(seed).randbytes(size)
    path = tmp_path / f"big-{seed}.bin"
    path.write_bytes(data)
    return path, data


def test_a_multipart_upload_retries_a_part_whose_connection_dropped(
    page: Page, srv: S3Server, tmp_path: Path
) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="big-lab")
    path, data = _big_file(tmp_path, TWO_PARTS, 1)
    attempts: list[str] = []
    page.on("request", lambda r: attempts.append(r.url) if "partNumber=2&" in r.url else None)
    sign_in(page, srv)
    # Only part 2's first request is intercepted (and dropped): a route that passes a
    # request on copies its body through Playwright's driver, 8 MiB at a time.
    page.route(_PART_2, lambda route: route.abort("connectionreset"), times=1)
    open_screen(page, srv, "#/objects?bucket=big-lab")
    page.get_by_label("Files to upload").set_input_files(path)
    row = page.locator(f"li[data-key='{path.name}']")
    expect(row).to_have_attribute("data-state", "done", timeout=60_000)
    assert len(attempts) == 2
    got = s3.get_object(Bucket="big-lab", Key=path.name)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()
    assert got["ETag"].endswith('-2"')  # a multipart object of two parts
    assert (
        page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('kvbox-upload:'))") == []
    )


def test_an_interrupted_upload_resumes_without_resending_parts(
    page: Page, srv: S3Server, tmp_path: Path
) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="resume-lab")
    path, data = _big_file(tmp_path, TWO_PARTS, 2)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "partNumber=" in r.url else None)
    sign_in(page, srv)
    page.route(_PART_2, lambda route: route.abort("connectionreset"))  # never arrives
    open_screen(page, srv, "#/objects?bucket=resume-lab")
    page.get_by_label("Files to upload").set_input_files(path)
    row = page.locator(f"li[data-key='{path.name}']")
    expect(row).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(row.get_by_role("button", name="Retry")).to_be_visible()
    uploads = s3.list_multipart_uploads(Bucket="resume-lab").get("Uploads", [])
    assert len(uploads) == 1
    upload_id = uploads[0]["UploadId"]
    done_parts = {
        p["PartNumber"]
        for p in s3.list_parts(Bucket="resume-lab", Key=path.name, UploadId=upload_id)["Parts"]
    }
    assert 1 in done_parts and 2 not in done_parts

    # The page is closed and opened again; the connection is back; the same file is chosen.
    page.unroute(_PART_2)
    sent.clear()
    page.reload()
    open_screen(page, srv, "#/objects?bucket=resume-lab")
    page.get_by_label("Files to upload").set_input_files(path)
    expect(page.locator(f"li[data-key='{path.name}']")).to_have_attribute(
        "data-state", "done", timeout=60_000
    )
    expect(page.locator("#status")).to_contain_text("resumed")
    assert not [u for u in sent if "partNumber=1&" in u]  # part 1 was not sent again
    assert [u for u in sent if "partNumber=2&" in u]
    assert f"uploadId={upload_id}" in next(u for u in sent if "partNumber=2&" in u)
    got = s3.get_object(Bucket="resume-lab", Key=path.name)["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert s3.list_multipart_uploads(Bucket="resume-lab").get("Uploads", []) == []


# --- a large bucket is paged by the server -------------------------------------------------


def test_a_large_bucket_is_listed_a_server_page_at_a_time(page: Page, srv: S3Server) -> None:
    """250 keys through one GW-KV MULTISET; the browser asks S3 for 100 at a time with
    continuation tokens and never for the whole bucket (a million keys, page by page, is
    bench/console_listing.py's: a page costs the same at any depth)."""
    host, port = srv.server.host, srv.server.port
    with Wire.connect(host, port) as w:
        lines = [f"many{i:05d} v" for i in range(250)]
        w.send(("MULTISET 250\n" + "\n".join(lines) + "\n").encode())
        assert w.readline().startswith(b"OK ")
    listings: list[str] = []
    page.on("request", lambda r: listings.append(r.url) if "list-type=2" in r.url else None)
    sign_in(page, srv)
    open_screen(page, srv, "#/objects?bucket=kv&filter=many")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.first).to_contain_text("many00000")
    page.get_by_role("button", name="Next page").click()
    expect(rows.first).to_contain_text("many00100")
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(50)
    expect(rows.last).to_contain_text("many00249")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(rows.first).to_contain_text("many00100")
    assert listings and all("max-keys=100&" in u or u.endswith("max-keys=100") for u in listings)
    assert sum("continuation-token=" in u for u in listings) >= 3
    # a larger page is the user's choice, and still a server-side page
    page.get_by_label("Keys per page").select_option("500")
    expect(rows).to_have_count(250)
    assert "max-keys=500" in listings[-1]


# --- one keyspace: GW-KV and the key-value view ----------------------------------------------


def test_a_gwkv_write_appears_in_the_key_value_view_and_the_kv_bucket(
    page: Page, srv: S3Server
) -> None:
    # versions kept, as with kvbox serve --kv-versioning on
    srv.client().put_bucket_versioning(Bucket="kv", VersioningConfiguration={"Status": "Enabled"})
    with Wire.connect(srv.server.host, srv.server.port) as w:
        assert w.request(b"SET apple red\n").startswith(b"OK ")
    sign_in(page, srv)
    page.get_by_role("link", name="Key-value", exact=True).click()
    page.get_by_role("searchbox", name="Keys starting with").fill("apple")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("tr[data-key='apple']")
    expect(row).to_be_visible()
    row.get_by_role("button", name="GET").click()
    expect(page.locator("#kv-value")).to_have_text("red")
    # SET from the page: GW-KV reads it back
    page.get_by_label("Key", exact=True).fill("pear")
    page.get_by_label("Value (for SET)").fill("green and round")
    page.get_by_role("button", name="SET", exact=True).click()
    expect(page.locator("#kv-result")).to_contain_text("pear set")
    with Wire.connect(srv.server.host, srv.server.port) as w:
        assert w.request(b"GET pear\n") == b"VALUE green and round\n"
    # SET again: the key's versions, newest first
    page.get_by_label("Value (for SET)").fill("ripe")
    page.get_by_role("button", name="SET", exact=True).click()
    expect(page.locator("#kv-result")).to_contain_text("pear set")
    page.get_by_role("searchbox", name="Keys starting with").fill("pear")
    page.get_by_role("button", name="Filter").click()
    page.locator("tr[data-key='pear']").get_by_role("button", name="Versions").click()
    history = page.get_by_role("region", name="Versions of pear").get_by_role("listitem")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("latest")
    expect(history.first).to_contain_text("4 B")
    # DELETE from the page: GW-KV finds nothing, and neither does the page's GET
    form = page.get_by_role("form", name="SET, GET or DELETE a key")
    page.get_by_label("Key", exact=True).fill("pear")
    form.get_by_role("button", name="DELETE", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#kv-result")).to_contain_text("pear deleted")
    with Wire.connect(srv.server.host, srv.server.port) as w:
        assert w.request(b"GET pear\n") == b"NOTFOUND\n"
    form.get_by_role("button", name="GET", exact=True).click()
    expect(page.locator("#kv-value")).to_have_text("NOTFOUND")
    # the same key is an object of the kv bucket
    assert srv.client().get_object(Bucket="kv", Key="apple")["Body"].read() == b"red"
    open_screen(page, srv, "#/objects?bucket=kv&filter=apple")
    expect(page.get_by_role("link", name="apple", exact=True)).to_be_visible()
    # an invalid GW-KV key is refused as GW-KV would refuse it
    open_screen(page, srv, "#/kv")
    page.get_by_label("Key", exact=True).fill("not a key")
    page.get_by_role("button", name="SET", exact=True).click()
    expect(page.locator("#kv-result")).to_contain_text("BADKEY")


# --- what a user who is not root sees -------------------------------------------------------


def test_a_user_who_is_not_root_sees_only_what_the_api_allows(page: Page, srv: S3Server) -> None:
    admin(srv, "user", "add", "alice")
    alice = admin(srv, "key", "add", "alice")
    admin(srv, "user", "add", "bob")
    bob = admin(srv, "key", "add", "bob")
    bob_s3 = srv.client(bob["access key"], bob["secret key"])
    bob_s3.create_bucket(Bucket="bobs-bucket")
    bob_s3.put_object(Bucket="bobs-bucket", Key="secret.txt", Body=b"bob's")
    alice_s3 = srv.client(alice["access key"], alice["secret key"])
    alice_s3.create_bucket(Bucket="alices-bucket")

    sign_in(page, srv, alice["access key"], alice["secret key"])
    expect(page.locator("#who")).to_have_text("alice")
    expect(page.get_by_role("link", name="Users and keys", exact=True)).to_be_hidden()
    # the users page, opened by hand, is refused by the server's admin API
    open_screen(page, srv, "#/users")
    expect(page.get_by_role("alert")).to_contain_text("Only root")
    # another user's bucket: not listed, and refused when opened
    open_screen(page, srv, "#/buckets")
    expect(page.get_by_role("row", name="alices-bucket")).to_be_visible()
    expect(page.get_by_role("row", name="bobs-bucket")).to_have_count(0)
    open_screen(page, srv, "#/objects?bucket=bobs-bucket")
    expect(page.get_by_role("alert")).to_contain_text("AccessDenied")
    open_screen(page, srv, "#/object?bucket=bobs-bucket&key=secret.txt")
    expect(page.get_by_role("alert")).to_contain_text("may not read")
    # the dashboard counts only what she may list, and shows her nothing of the host
    open_screen(page, srv, "#/")
    expect(page.locator("#stat-buckets")).to_have_text("1")
    expect(page.locator("#stat-disk-used")).to_have_count(0)


def test_root_manages_users_and_sees_a_new_secret_once(page: Page, srv: S3Server) -> None:
    sign_in(page, srv)
    page.get_by_role("link", name="Users and keys", exact=True).click()
    page.get_by_label("User name").fill("carol")
    page.get_by_role("button", name="Add user").click()
    card = page.locator("section[data-user='carol']")
    expect(card).to_be_visible()
    card.get_by_role("button", name="Add access key").click()
    access = page.locator("#new-access-key").inner_text()
    secret = page.locator("#new-secret-key").inner_text()
    page.get_by_role("button", name="Copy secret key").click()
    expect(page.locator("#status")).to_contain_text("Secret key copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#new-secret-key")).to_have_count(0)  # gone from the page
    assert srv.client(access, secret).list_buckets()["Owner"]["ID"] == "carol"
    card.locator(f"tr[data-key='{access}']").get_by_role("button", name="Rotate").click()
    page.get_by_role("dialog").get_by_role("button", name="Rotate").click()
    new_access = page.locator("#new-access-key").inner_text()
    new_secret = page.locator("#new-secret-key").inner_text()
    page.get_by_role("button", name="Done").click()
    assert new_access != access
    assert srv.client(new_access, new_secret).list_buckets()["Owner"]["ID"] == "carol"
    expect(card.locator(f"tr[data-key='{access}']")).to_contain_text("disabled")  # the old
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        srv.client(access, secret).list_buckets()
    card.locator(f"tr[data-key='{access}']").get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(card.locator(f"tr[data-key='{access}']")).to_have_count(0)
    # a disabled user's keys stop working (for the S3 API, not only here); enabled, they work
    carol = srv.client(new_access, new_secret)
    card.get_by_role("button", name="Disable user").click()
    expect(card.get_by_role("heading", name="carol")).to_contain_text("disabled")
    _until_code(carol.list_buckets, "InvalidAccessKeyId")
    card.get_by_role("button", name="Enable user").click()
    expect(card.get_by_role("button", name="Disable user")).to_be_visible()
    _until_code(carol.list_buckets, "")

    # deleted: gone from the page, from the admin API, and her keys with her
    def users() -> list[str]:
        return [ln.split("\t")[0] for ln in admin_lines(srv, "user", "list")]

    assert "carol" in users()
    card.get_by_role("button", name="Delete user").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)
    assert "carol" not in users()
    _until_code(carol.list_buckets, "InvalidAccessKeyId")


def _until_code(call: Callable[[], object], code: str, seconds: float = 8.0) -> None:
    """Call until it fails with S3 error ``code`` ("" = until it succeeds): a key's
    lookup may be cached by the S3 door for a few seconds (KEY_CACHE_SECONDS)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            call()
            got = ""
        except Exception as exc:  # botocore's ClientError names the code
            got = getattr(exc, "response", {}).get("Error", {}).get("Code", repr(exc))
        if got == code:
            return
        assert time.monotonic() < deadline, f"still {got!r}, not {code!r}"
        time.sleep(0.2)


# --- cross-site and stale sessions, in the browser ------------------------------------------


def test_csrf_and_an_expired_session_are_refused_in_the_browser(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with module_server(tmp_path_factory, "console-short", "--console-idle-timeout", "2") as s:
        page = new_page(browser)
        problems = watch(page)
        try:
            sign_in(page, s)
            status = page.evaluate(
                "async () => (await fetch('api/s3/forged-bucket', {method: 'PUT'})).status"
            )
            assert status == 403  # no CSRF token: refused
            assert "forged-bucket" not in [b["Name"] for b in s.client().list_buckets()["Buckets"]]
            time.sleep(2.5)
            page.get_by_role("link", name="Buckets", exact=True).click()
            expect(page.get_by_role("button", name="Sign in")).to_be_visible()
            expect(page.locator("#status")).to_contain_text("not signed in, or the session expired")
        finally:
            page.context.close()
        assert not problems, problems


# --- behind a reverse proxy on a sub-path ---------------------------------------------------


def test_the_console_works_under_a_sub_path_behind_a_reverse_proxy(
    page: Page, srv: S3Server
) -> None:
    srv.client().create_bucket(Bucket="proxied")
    srv.client().put_object(Bucket="proxied", Key="hello.txt", Body=b"through the proxy\n")
    with SubPathProxy(srv.http_port, "/storage") as proxy:
        page.goto(proxy.url + "console")  # the redirect keeps the prefix
        expect(page).to_have_url(proxy.url + "console/")
        sign_in(page, srv, url=proxy.url + "console/")
        cookie = next(c for c in page.context.cookies() if c["name"] == "kvbox_console")
        assert cookie["path"] == "/storage/console/"
        page.get_by_role("link", name="Buckets", exact=True).click()
        page.get_by_role("link", name="proxied", exact=True).click()
        page.get_by_role("link", name="hello.txt", exact=True).click()
        expect(page.locator(".preview pre")).to_have_text("through the proxy\n")
        page.get_by_role("button", name="Share a link").click()
        page.get_by_role("button", name="Make link").click()
        url = page.locator("#presigned-url").input_value()
        assert url.startswith(proxy.url + "proxied/hello.txt?")
        with urllib.request.urlopen(url, timeout=10) as resp:  # through the proxy
            assert resp.read() == b"through the proxy\n"
        assert all(
            seen.startswith(("GET /storage/", "POST /storage/", "HEAD /storage/"))
            for seen in proxy.seen
        )


# --- time travel, metadata, tags, many at once, previews, settings, dashboard ---------------


def test_the_bucket_as_of_an_instant(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="travel")
    s3.put_bucket_versioning(Bucket="travel", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="travel", Key="docs/a.txt", Body=b"the first text\n")
    s3.put_object(Bucket="travel", Key="docs/b.txt", Body=b"deleted later\n")
    time.sleep(1.2)
    instant_ms = int(time.time() * 1000)
    time.sleep(1.2)
    s3.put_object(Bucket="travel", Key="docs/a.txt", Body=b"the second, longer text\n")
    s3.delete_object(Bucket="travel", Key="docs/b.txt")
    s3.put_object(Bucket="travel", Key="docs/c.txt", Body=b"made later\n")
    sign_in(page, srv)
    open_screen(page, srv, "#/objects?bucket=travel&prefix=docs/")
    expect(page.locator("tbody tr")).to_have_count(2)  # a.txt and c.txt now
    local = page.evaluate(
        """(ms) => { const d = new Date(ms), p = (n) => String(n).padStart(2, "0");
          return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T` +
                 `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }""",
        instant_ms,
    )
    page.get_by_label("As of").fill(local)
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".badge.accent")).to_contain_text("as of")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("a.txt")
    expect(rows.nth(0)).to_contain_text("15 B")  # the first text, not the second
    expect(rows.nth(1)).to_contain_text("b.txt")  # deleted since, there then
    page.get_by_role("link", name="a.txt", exact=True).click()
    expect(page.locator(".preview pre")).to_have_text("the first text\n")
    page.get_by_role("link", name="docs", exact=True).click()
    page.get_by_role("link", name="Back to now").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.get_by_role("link", name="c.txt", exact=True)).to_be_visible()


def test_metadata_and_tags_are_seen_and_edited(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="meta-lab")
    s3.put_object(
        Bucket="meta-lab",
        Key="photo.png",
        Body=RED_PNG,
        ContentType="image/png",
        CacheControl="max-age=60",
        Metadata={"camera": "phone"},
    )
    sign_in(page, srv)
    open_screen(page, srv, "#/object?bucket=meta-lab&key=photo.png")
    # the object's own Cache-Control, not the console's no-store
    expect(page.get_by_label("Cache-Control")).to_have_value("max-age=60")
    expect(page.get_by_label("Metadata name")).to_have_value("camera")
    page.get_by_label("Cache-Control").fill("public, max-age=3600")
    page.get_by_label("Metadata value").fill("tablet")
    page.get_by_role("button", name="Save metadata").click()
    expect(page.locator("#status")).to_contain_text("Metadata saved")
    head = s3.head_object(Bucket="meta-lab", Key="photo.png")
    assert head["CacheControl"] == "public, max-age=3600"
    assert head["Metadata"] == {"camera": "tablet"}
    assert head["ContentType"] == "image/png"
    assert s3.get_object(Bucket="meta-lab", Key="photo.png")["Body"].read() == RED_PNG
    expect(page.get_by_label("Cache-Control")).to_have_value("public, max-age=3600")
    page.get_by_role("button", name="Add tag").click()
    page.get_by_label("Tag key").fill("kind")
    page.get_by_label("Tag value").fill("cat picture")
    page.get_by_role("button", name="Save tags").click()
    expect(page.locator("#status")).to_contain_text("Tags saved")
    tags = s3.get_object_tagging(Bucket="meta-lab", Key="photo.png")["TagSet"]
    assert tags == [{"Key": "kind", "Value": "cat picture"}]


def test_create_a_folder_and_delete_many_at_once(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="tidy")
    for key in ("one.txt", "two.txt", "keep.txt", "old/x.txt", "old/deeper/y.txt"):
        s3.put_object(Bucket="tidy", Key=key, Body=key.encode())
    sign_in(page, srv)
    open_screen(page, srv, "#/objects?bucket=tidy")
    page.get_by_role("button", name="Create folder").click()
    page.get_by_label("Folder name").fill("fresh")
    page.get_by_role("button", name="OK").click()
    expect(page.get_by_role("link", name="fresh/", exact=True)).to_be_visible()
    assert s3.head_object(Bucket="tidy", Key="fresh/")["ContentLength"] == 0
    for name in ("one.txt", "two.txt", "old/"):
        page.get_by_label(f"Select {name}").check()
    page.get_by_role("button", name="Delete selected (3)").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Deleted 4 object(s)")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="tidy").get("Contents", []))
    assert keys == ["fresh/", "keep.txt"]


def test_previews_render_text_formats_and_never_run_an_objects_markup(
    page: Page, srv: S3Server
) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="previews")
    s3.put_object(
        Bucket="previews",
        Key="page.html",
        Body=b"<h1>hi</h1><script>window.pwned = 1</script><img src=x onerror='window.pwned=2'>",
        ContentType="text/html",
    )
    s3.put_object(
        Bucket="previews",
        Key="readme.md",
        Body=b"# Title\n\nSome **bold** text <img src=x onerror='window.pwned=3'>\n\n"
        b"- [safe](https://example.com)\n- [unsafe](javascript:alert(1))\n",
        ContentType="text/markdown",
    )
    s3.put_object(Bucket="previews", Key="data.json", Body=b'{"b":[1,2],"a":{"c":true}}')
    sign_in(page, srv)
    open_screen(page, srv, "#/object?bucket=previews&key=page.html")
    expect(page.locator(".preview pre")).to_contain_text("<script>window.pwned = 1</script>")
    open_screen(page, srv, "#/object?bucket=previews&key=readme.md")
    md = page.locator(".preview .markdown")
    expect(md.get_by_role("heading", name="Title")).to_be_visible()
    expect(md.locator("strong")).to_have_text("bold")
    expect(md).to_contain_text("<img src=x onerror=")  # shown as text
    expect(md.get_by_role("link", name="safe", exact=True)).to_have_attribute(
        "href", "https://example.com"
    )
    expect(md.get_by_role("link", name="unsafe")).to_have_count(0)
    open_screen(page, srv, "#/object?bucket=previews&key=data.json")
    expect(page.locator(".preview pre")).to_have_text(
        '{\n  "b": [\n    1,\n    2\n  ],\n  "a": {\n    "c": true\n  }\n}'
    )
    assert page.evaluate("window.pwned") is None


def test_website_and_cors_settings(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="site-lab")
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=site-lab&tab=website")
    expect(page.get_by_text("Website hosting is off.")).to_be_visible()
    page.get_by_label("Index document").fill("index.html")
    page.get_by_label("Error document").fill("404.html")
    page.get_by_role("button", name="Save website").click()
    expect(page.get_by_text("Website hosting is on.")).to_be_visible()
    site = s3.get_bucket_website(Bucket="site-lab")
    assert site["IndexDocument"] == {"Suffix": "index.html"}
    assert site["ErrorDocument"] == {"Key": "404.html"}
    # the link to the website endpoint leads to the site (once its pages are public)
    web_url = page.locator("#website-link").get_attribute("href") or ""
    assert web_url.startswith(f"http://site-lab.{WEB_DOMAIN}:")
    s3.put_object(
        Bucket="site-lab", Key="index.html", Body=b"<h1>home</h1>", ContentType="text/html"
    )
    public = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
              "Resource": "arn:aws:s3:::site-lab/*"}  # fmt: skip
    s3.put_bucket_policy(
        Bucket="site-lab", Policy=json.dumps({"Version": "2012-10-17", "Statement": [public]})
    )
    host_port = web_url.split("//")[1].rstrip("/")
    home = curl(web_url, "--resolve", f"{host_port}:127.0.0.1")
    assert home.status == 200 and home.body == b"<h1>home</h1>"

    open_screen(page, srv, "#/settings?bucket=site-lab&tab=cors")
    page.get_by_role("button", name="Add rule").click()
    page.get_by_label("Allowed origins").fill("https://app.test\nhttps://other.test")
    page.get_by_label("PUT").check()
    page.get_by_label("Exposed headers").fill("ETag")
    page.get_by_label("Max age (seconds)").fill("600")
    page.get_by_role("button", name="Save CORS").click()
    expect(page.locator("#status")).to_contain_text("CORS saved")
    (rule,) = s3.get_bucket_cors(Bucket="site-lab")["CORSRules"]
    assert rule["AllowedOrigins"] == ["https://app.test", "https://other.test"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "PUT"]
    assert rule["ExposeHeaders"] == ["ETag"] and rule["MaxAgeSeconds"] == 600


def test_the_dashboard_charts_the_servers_own_traffic(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="busy")
    for i in range(40):
        s3.put_object(Bucket="busy", Key=f"k{i}", Body=b"x" * 100)
    with pytest.raises(Exception, match="NoSuchKey"):
        s3.get_object(Bucket="busy", Key="missing")
    sign_in(page, srv)
    # the ring samples every 2 s: the traffic shows once a sample after it is taken
    deadline = time.monotonic() + 10
    while True:
        data = page.evaluate("async () => (await fetch('api/dashboard')).json()")
        s3_points = data["metrics"]["doors"]["s3"]
        if any(p["eps"] > 0 for p in s3_points) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert any(p["rps"] > 0 for p in s3_points)
    assert any(p["eps"] > 0 for p in s3_points)  # the NoSuchKey
    assert any(p["p95"] is not None for p in s3_points)
    assert data["stored"]["objects"] >= 40
    assert data["disk"]["free"] > 0 and data["disk"]["used"] > 0  # root sees the host
    chart = page.get_by_role("img", name="Requests")
    expect(chart).to_have_attribute("aria-label", re.compile(r"S3 \d"))
    expect(page.locator("#stat-uptime")).not_to_be_empty()
    # the figures on the page are the server's: objects and bytes, version, the disk
    server = curl(f"{srv.endpoint}/").headers["server"]  # "kvbox/<version>"
    expect(page.locator("#stat-version")).to_have_text(server.removeprefix("kvbox/"))
    objects = int(page.locator("#stat-objects").inner_text().replace(",", ""))
    assert objects >= 40
    expect(page.locator("#stat-bytes")).not_to_have_text("0 B")
    expect(page.locator("#stat-disk-free")).to_contain_text(" of ")


def _wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A silent mono 8-bit PCM WAV file (RIFF header + samples), built here."""
    samples = bytes([128]) * int(seconds * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


#: A one-page PDF, written out by hand (objects, cross-reference table, trailer).
_PDF = b"""%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >> endobj
trailer << /Root 1 0 R >>
%%EOF
"""


def test_audio_video_and_pdf_previews(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="tone.wav", Body=_wav(), ContentType="audio/wav")
    s3.put_object(Bucket="media", Key="clip.mp4", Body=b"\x00" * 64, ContentType="video/mp4")
    s3.put_object(Bucket="media", Key="doc.pdf", Body=_PDF, ContentType="application/pdf")
    sign_in(page, srv)
    open_screen(page, srv, "#/object?bucket=media&key=tone.wav")
    audio = page.get_by_label("Audio tone.wav")
    expect(audio).to_be_attached()
    # the browser fetched the object through the console and decoded it: half a second
    page.wait_for_function("() => document.querySelector('.preview audio').duration > 0")
    assert audio.evaluate("el => Math.round(el.duration * 10)") == 5
    open_screen(page, srv, "#/object?bucket=media&key=clip.mp4")
    expect(page.locator(".preview video")).to_have_attribute(
        "src", re.compile(r"^api/s3/media/clip\.mp4")
    )
    with page.expect_response(lambda r: r.url.endswith("/media/doc.pdf")) as fetched:
        open_screen(page, srv, "#/object?bucket=media&key=doc.pdf")
    assert fetched.value.status == 200
    expect(page.get_by_title("PDF doc.pdf")).to_have_attribute("src", re.compile(r"^blob:"))


def test_block_public_access_refuses_a_public_policy(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="blocked")
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=blocked&tab=permissions")
    page.get_by_label("Block public bucket policies").check()
    page.get_by_role("button", name="Save Block Public Access").click()
    expect(page.locator("#status")).to_contain_text("Block Public Access saved")
    pab = s3.get_public_access_block(Bucket="blocked")["PublicAccessBlockConfiguration"]
    assert pab["BlockPublicPolicy"] is True and pab["BlockPublicAcls"] is False
    page.get_by_label("Preset").select_option(label="Public read")
    page.get_by_role("button", name="Use preset").click()
    page.get_by_role("button", name="Save policy").click()
    # the S3 door's refusal, shown where the policy is
    expect(page.locator("#policy-status")).to_contain_text("AccessDenied")
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket="blocked")


def test_the_read_for_one_user_preset_lets_exactly_that_user_read(
    page: Page, srv: S3Server
) -> None:
    admin(srv, "user", "add", "reader")
    reader = admin(srv, "key", "add", "reader")
    admin(srv, "user", "add", "stranger")
    stranger = admin(srv, "key", "add", "stranger")
    s3 = srv.client()
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="report.txt", Body=b"for the reader")
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=shared&tab=permissions")
    page.get_by_label("Preset").select_option(label="Read for one user")
    page.get_by_role("button", name="Use preset").click()
    page.get_by_label("User name").fill("reader")
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#policy-status")).to_contain_text("Valid: 1 statement.")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#status")).to_contain_text("Policy saved")
    as_reader = srv.client(reader["access key"], reader["secret key"])
    assert (
        as_reader.get_object(Bucket="shared", Key="report.txt")["Body"].read() == b"for the reader"
    )
    assert [o["Key"] for o in as_reader.list_objects_v2(Bucket="shared")["Contents"]] == [
        "report.txt"
    ]
    with pytest.raises(Exception, match="AccessDenied"):
        srv.client(stranger["access key"], stranger["secret key"]).get_object(
            Bucket="shared", Key="report.txt"
        )
    page.get_by_label("Principal").fill("stranger")
    page.get_by_label("Key", exact=True).fill("report.txt")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#explain-verdict")).to_have_text("DENIED")


def test_the_public_prefix_and_private_presets(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="half-open")
    s3.put_object(Bucket="half-open", Key="public/flyer.txt", Body=b"come one, come all")
    s3.put_object(Bucket="half-open", Key="private/diary.txt", Body=b"dear diary")
    flyer, diary = (
        f"{srv.endpoint}/half-open/{k}" for k in ("public/flyer.txt", "private/diary.txt")
    )
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=half-open&tab=permissions")
    page.get_by_label("Preset").select_option(label="Public read of a prefix")
    page.get_by_role("button", name="Use preset").click()
    page.get_by_role("dialog").get_by_label("Prefix").fill("public/")
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#policy-status")).to_contain_text("makes the bucket public")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#status")).to_contain_text("Policy saved")
    assert curl(flyer).body == b"come one, come all"
    assert curl(diary).status == 403
    # "private" is no policy at all: saving it deletes the bucket's policy
    page.get_by_label("Preset").select_option(label="Private (no policy)")
    page.get_by_role("button", name="Use preset").click()
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#status")).to_contain_text("Policy deleted")
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket="half-open")
    assert curl(flyer).status == 403


def test_copy_buttons_and_a_version_deleted_for_good(browser: Browser, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="copy-lab")
    s3.put_bucket_versioning(Bucket="copy-lab", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="copy-lab", Key="a.txt", Body=b"one")["VersionId"]
    s3.put_object(Bucket="copy-lab", Key="a.txt", Body=b"two")
    page = new_page(browser, permissions=["clipboard-read", "clipboard-write"])
    problems = watch(page)
    try:
        sign_in(page, srv)
        open_screen(page, srv, "#/object?bucket=copy-lab&key=a.txt")
        page.get_by_role("button", name="Share a link").click()
        page.get_by_role("button", name="Make link").click()
        url = page.locator("#presigned-url").input_value()
        page.get_by_role("button", name="Copy link").click()
        expect(page.locator("#status")).to_contain_text("Link copied")
        assert page.evaluate("navigator.clipboard.readText()") == url
        row = page.locator(f"tr[data-version='{first}']")
        row.get_by_role("button", name="Delete for good").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page.locator(f"tr[data-version='{first}']")).to_have_count(0)
        versions = s3.list_object_versions(Bucket="copy-lab", Prefix="a.txt")["Versions"]
        assert [v["VersionId"] for v in versions] != [] and first not in [
            v["VersionId"] for v in versions
        ]
        # deleting the object in a versioned bucket leaves a delete marker in its history;
        # removing the marker brings the object back
        page.locator(".toolbar").get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name="copy-lab")).to_be_visible()
        expect(page.get_by_role("link", name="a.txt", exact=True)).to_have_count(0)
        open_screen(page, srv, "#/object?bucket=copy-lab&key=a.txt")
        expect(page.get_by_role("alert")).to_contain_text("No such object")
        marker = page.locator("#versions-title ~ div tbody tr").first
        expect(marker).to_contain_text("delete marker")
        expect(marker).to_contain_text("latest")
        marker.get_by_role("button", name="Remove marker").click()
        page.get_by_role("dialog").get_by_role("button", name="Remove").click()
        expect(page.locator("#status")).to_contain_text("Delete marker removed")
        assert s3.get_object(Bucket="copy-lab", Key="a.txt")["Body"].read() == b"two"
    finally:
        page.context.close()
    assert not problems, problems


# --- object lock and lifecycle ---------------------------------------------------------------


def test_object_lock_retention_and_legal_hold(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    sign_in(page, srv)
    open_screen(page, srv, "#/buckets")
    page.get_by_label("Bucket name").fill("locked-lab")
    page.get_by_label("Object lock").check()
    page.get_by_role("button", name="Create bucket").click()
    expect(page.get_by_role("row", name="locked-lab")).to_be_visible()
    conf = s3.get_object_lock_configuration(Bucket="locked-lab")["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled"

    open_screen(page, srv, "#/settings?bucket=locked-lab&tab=lock")
    expect(page.locator("#lock-state")).to_contain_text("enabled")
    page.get_by_label("Default retention for new objects").select_option("GOVERNANCE")
    page.get_by_label("Retention period", exact=True).fill("1")
    page.get_by_role("button", name="Save object lock").click()
    expect(page.locator("#status")).to_contain_text("Object lock saved")
    conf = s3.get_object_lock_configuration(Bucket="locked-lab")["ObjectLockConfiguration"]
    assert conf["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}

    version = s3.put_object(Bucket="locked-lab", Key="record.txt", Body=b"keep me")["VersionId"]
    open_screen(page, srv, "#/object?bucket=locked-lab&key=record.txt")
    state = page.locator("#object-lock-state")
    expect(state).to_contain_text("Governance retention until")
    page.get_by_role("button", name="Place legal hold").click()
    expect(page.locator("#object-lock-state")).to_contain_text("Legal hold: on")
    hold = s3.get_object_legal_hold(Bucket="locked-lab", Key="record.txt", VersionId=version)
    assert hold["LegalHold"]["Status"] == "ON"
    # the lock is the S3 door's: deleting the version for good is refused
    page.locator(f"tr[data-version='{version}']").get_by_role(
        "button", name="Delete for good"
    ).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#status")).to_contain_text("AccessDenied")
    assert (
        s3.get_object(Bucket="locked-lab", Key="record.txt", VersionId=version)["Body"].read()
        == b"keep me"
    )
    page.get_by_role("button", name="Remove legal hold").click()
    expect(page.locator("#object-lock-state")).to_contain_text("Legal hold: off")
    page.get_by_role("button", name="Remove retention").click()  # root may bypass governance
    expect(page.locator("#object-lock-state")).to_contain_text("No retention")
    with pytest.raises(Exception, match="NoSuchObjectLockConfiguration"):
        s3.get_object_retention(Bucket="locked-lab", Key="record.txt", VersionId=version)


def test_lifecycle_rules_are_written_and_unknown_ones_kept(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="lifecycle-lab")
    s3.put_bucket_lifecycle_configuration(
        Bucket="lifecycle-lab",
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "by-tag",
                    "Status": "Enabled",
                    "Filter": {"Tag": {"Key": "temp", "Value": "yes"}},
                    "Expiration": {"Days": 3},
                }
            ]
        },
    )
    sign_in(page, srv)
    open_screen(page, srv, "#/settings?bucket=lifecycle-lab&tab=lifecycle")
    expect(page.locator(".lifecycle-rule pre")).to_contain_text("temp")  # shown as XML, kept
    page.get_by_role("button", name="Add rule").click()
    rule = page.locator(".lifecycle-rule").nth(1)
    rule.get_by_label("Rule ID").fill("old-logs")
    rule.get_by_label("Applies to keys starting with").fill("logs/")
    rule.get_by_label("Expire current versions after (days)").fill("30")
    rule.get_by_label("Abort unfinished multipart uploads after (days)").fill("7")
    page.get_by_role("button", name="Save lifecycle").click()
    expect(page.locator("#status")).to_contain_text("Lifecycle saved")
    rules = {
        r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="lifecycle-lab")["Rules"]
    }
    assert rules["old-logs"]["Filter"] == {"Prefix": "logs/"}
    assert rules["old-logs"]["Expiration"] == {"Days": 30}
    assert rules["old-logs"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rules["by-tag"]["Filter"] == {"Tag": {"Key": "temp", "Value": "yes"}}
    # a rule the form cannot express is refused by the server with its own words
    page.get_by_role("button", name="Add rule").click()
    page.locator(".lifecycle-rule").nth(2).get_by_label("Rule ID").fill("does-nothing")
    page.get_by_role("button", name="Save lifecycle").click()
    expect(page.locator("#status")).to_contain_text("InvalidRequest")


def _grants(page: Page) -> list[tuple[str, str]]:
    """(grantee, permission) of each row of the ACL grants table on the page."""
    rows: list[list[str]] = page.eval_on_selector_all(
        "table.acl-grants tr.grant-row",
        """rows => rows.map(r => {
             const [who, perm] = r.querySelectorAll("select");
             const name = r.querySelector("input");
             return [who.value === "user" ? name.value : who.value, perm.value];
           })""",
    )
    return [(who, perm) for who, perm in rows]


def test_object_ownership_and_acls_on_a_bucket_and_an_object(page: Page, srv: S3Server) -> None:
    s3 = srv.client()
    sign_in(page, srv)
    # a new bucket has ACLs off, as on AWS since 2023; the form can turn them on
    open_screen(page, srv, "#/buckets")
    page.get_by_label("Bucket name").fill("acl-lab")
    page.get_by_label("Object ownership").select_option("ObjectWriter")
    page.get_by_role("button", name="Create bucket").click()
    expect(page.get_by_role("row", name="acl-lab")).to_be_visible()
    rule = s3.get_bucket_ownership_controls(Bucket="acl-lab")["OwnershipControls"]["Rules"][0]
    assert rule["ObjectOwnership"] == "ObjectWriter"
    s3.put_object(Bucket="acl-lab", Key="open.txt", Body=b"anyone may read this")
    assert curl(f"{srv.endpoint}/acl-lab/open.txt").status == 403

    open_screen(page, srv, "#/object?bucket=acl-lab&key=open.txt")
    expect(page.locator("table.acl-grants tr.grant-row")).to_have_count(1)
    assert _grants(page) == [("root", "FULL_CONTROL")]
    page.get_by_role("button", name="Add grant").click()
    page.get_by_label("Grantee").nth(1).select_option(
        "http://acs.amazonaws.com/groups/global/AllUsers"
    )
    page.get_by_label("Permission").nth(1).select_option("READ")
    page.get_by_role("button", name="Save grants").click()
    expect(page.locator("#status")).to_contain_text("Grants saved")
    assert curl(f"{srv.endpoint}/acl-lab/open.txt").body == b"anyone may read this"
    grants = s3.get_object_acl(Bucket="acl-lab", Key="open.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants  # fmt: skip

    open_screen(page, srv, "#/settings?bucket=acl-lab&tab=permissions")
    page.get_by_label("Replace with a canned ACL").select_option("public-read")
    page.get_by_role("button", name="Save ACL").click()
    expect(page.locator("#status")).to_contain_text("ACL saved")
    expect(page.locator("table.acl-grants tr.grant-row")).to_have_count(2)
    assert curl(f"{srv.endpoint}/acl-lab").status == 200  # anyone may list it now
    # ownership back to "bucket owner enforced": refused while the bucket's ACL grants
    # more than its owner (the S3 door's rule, as AWS's); then ACLs are off, and say so
    page.get_by_label("Bucket owner enforced").check()
    page.get_by_role("button", name="Save object ownership").click()
    expect(page.locator("#status")).to_contain_text("InvalidBucketAclWithObjectOwnership")
    page.get_by_label("Replace with a canned ACL").select_option("private")
    page.get_by_role("button", name="Save ACL").click()
    expect(page.locator("table.acl-grants tr.grant-row")).to_have_count(1)
    page.get_by_label("Bucket owner enforced").check()
    page.get_by_role("button", name="Save object ownership").click()
    expect(page.locator("#acl-disabled")).to_contain_text("ACLs are disabled")
    rule = s3.get_bucket_ownership_controls(Bucket="acl-lab")["OwnershipControls"]["Rules"][0]
    assert rule["ObjectOwnership"] == "BucketOwnerEnforced"


# --- a user with many buckets ----------------------------------------------------------------


def test_many_buckets_are_listed_a_page_at_a_time_with_their_counts(
    page: Page, srv: S3Server
) -> None:
    """130 buckets of S3's longest names: ListBuckets a page of 100 at a time, and every
    row's count and bytes filled in (asked for 40 names a request: 130 names in one query
    are past any server's request-line limit)."""
    admin(srv, "user", "add", "hoarder")
    key = admin(srv, "key", "add", "hoarder")
    s3 = srv.client(key["access key"], key["secret key"])
    names = [f"hoard-{i:03d}-" + "x" * 53 for i in range(130)]  # 63 characters each
    for name in names:
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=names[-1], Key="one", Body=b"1")
    try:
        sign_in(page, srv, key["access key"], key["secret key"])
        open_screen(page, srv, "#/buckets")
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(100)
        expect(rows.first).to_contain_text(names[0])
        counts = page.locator("tbody tr td:nth-child(2)")
        expect(counts).to_have_text(["0"] * 100)  # none left at "…" or failed
        page.get_by_role("button", name="Next page").click()
        expect(rows).to_have_count(30)
        expect(rows.last).to_contain_text(names[-1])
        expect(counts.last).to_have_text("1")
        expect(page.get_by_role("button", name="Next page")).to_be_disabled()
        page.get_by_role("button", name="Previous page").click()
        expect(rows.first).to_contain_text(names[0])
    finally:
        s3.delete_object(Bucket=names[-1], Key="one")
        for name in names:
            s3.delete_bucket(Bucket=name)
