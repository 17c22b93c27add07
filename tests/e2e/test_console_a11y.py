"""The web console's accessibility: axe-core's WCAG 2.1 A and AA rules on every main screen,
in the light and the dark theme, on a desktop and on a 375-px phone; and the console used
with the keyboard alone.

Layer: tests/e2e. Rules: one seeded ``kvbox serve`` and one Chromium for the module; axe
(Deque's axe-core, bundled by ``axe-playwright-python``) runs inside the page as it is
after the screen loaded; a violation fails the test with axe's own summary of it (rule,
impact, elements). Colour contrast is among the rules, so both themes are checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, Page, expect

from ._browser import launched, new_page, watch
from ._png import RED_PNG
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server

#: What "accessible" means here: WCAG 2.0 and 2.1, levels A and AA (axe's tags).
WCAG_AA = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
SCREENS = [
    "#/",
    "#/buckets",
    "#/objects?bucket=photos",
    "#/object?bucket=photos&key=cat.png",
    "#/object?bucket=photos&key=notes/readme.md",
    "#/settings?bucket=photos&tab=versioning",
    "#/settings?bucket=photos&tab=permissions",
    "#/settings?bucket=photos&tab=lock",
    "#/settings?bucket=photos&tab=lifecycle",
    "#/settings?bucket=photos&tab=website",
    "#/settings?bucket=photos&tab=cors",
    "#/settings?bucket=shared&tab=permissions",
    "#/object?bucket=shared&key=open.txt",
    "#/kv",
    "#/users",
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "console-a11y") as s:
        s3 = s.client()
        s3.create_bucket(Bucket="photos", ObjectLockEnabledForBucket=True)
        s3.put_bucket_versioning(Bucket="photos", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="photos", Key="cat.png", Body=RED_PNG, ContentType="image/png")
        s3.put_object(
            Bucket="photos",
            Key="notes/readme.md",
            Body=b"# Notes\n\nA *list*:\n\n- one\n- [two](https://example.com)\n",
            ContentType="text/markdown",
        )
        s3.put_object_tagging(
            Bucket="photos", Key="cat.png", Tagging={"TagSet": [{"Key": "kind", "Value": "cat"}]}
        )
        s3.put_bucket_lifecycle_configuration(
            Bucket="photos",
            LifecycleConfiguration={
                "Rules": [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "notes/"},
                           "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]
            },
        )  # fmt: skip
        # a bucket with ACLs on, so the grants editor is on screen
        s3.create_bucket(Bucket="shared", ObjectOwnership="ObjectWriter")
        s3.put_object(Bucket="shared", Key="open.txt", Body=b"x", ACL="public-read")
        s3.put_bucket_cors(
            Bucket="photos",
            CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]},
        )
        yield s


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with launched(chromium) as b:
        yield b


def _violations(page: Page) -> list[str]:
    found = Axe().run(page, options=WCAG_AA).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {json.dumps([n['target'] for n in v['nodes']][:5])} "
        f"{v['nodes'][0].get('failureSummary', '')[:300]}"
        for v in found
    ]


@pytest.mark.parametrize("width", [1280, 375])
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_screen_meets_wcag_aa(
    browser: Browser, srv: S3Server, theme: str, width: int
) -> None:
    page = new_page(browser, width=width, height=800, color_scheme=theme)
    problems = watch(page)
    found: dict[str, list[str]] = {}
    try:
        page.goto(f"{srv.endpoint}/console/")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        found["sign-in"] = _violations(page)
        page.get_by_label("Access key").fill(ACCESS_KEY)
        page.get_by_label("Secret key").fill(SECRET_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#page-title")).to_be_visible()
        for screen in SCREENS:
            page.goto(f"{srv.endpoint}/console/{screen}")
            expect(page.locator("#page-title")).to_be_visible()
            page.wait_for_load_state("networkidle")
            found[screen] = _violations(page)
        # the page is never wider than the phone's screen: nothing to scroll sideways
        # except inside a table's own scroll box
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the window"
    finally:
        page.context.close()
    bad = {screen: v for screen, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)
    assert not problems, problems


def test_the_console_works_with_the_keyboard_alone(browser: Browser, srv: S3Server) -> None:
    page = new_page(browser)
    problems = watch(page)
    try:
        page.goto(f"{srv.endpoint}/console/")
        # the skip link comes first, then the page's controls in reading order
        expect(page.get_by_label("Access key")).to_be_focused()  # focus starts in the form
        page.keyboard.type(ACCESS_KEY)
        page.keyboard.press("Tab")
        expect(page.get_by_label("Secret key")).to_be_focused()
        page.keyboard.type(SECRET_KEY)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_focused()  # focus follows
        page.goto(f"{srv.endpoint}/console/#/buckets")
        expect(page.get_by_role("heading", name="Buckets")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_label("Bucket name")).to_be_focused()
        page.keyboard.type("typed-bucket")
        page.keyboard.press("Enter")
        expect(page.get_by_role("row", name="typed-bucket")).to_be_visible()
        # a confirmation dialog takes the focus, Escape closes it and gives it back
        delete = page.get_by_role("button", name="Delete bucket typed-bucket")
        delete.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("dialog")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(delete).to_be_focused()
        assert "typed-bucket" in [b["Name"] for b in srv.client().list_buckets()["Buckets"]]
        # the skip link is the first stop in the tab order, and it takes focus to the main
        first = page.evaluate(
            """() => [...document.querySelectorAll('a[href], button, input, select, textarea')]
                 .find((el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length)
                 .textContent"""
        )
        assert first == "Skip to content"
        skip = page.get_by_role("link", name="Skip to content")
        skip.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#main")).to_be_focused()
    finally:
        page.context.close()
    assert not problems, problems
