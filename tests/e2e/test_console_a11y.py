"""The web console's accessibility: axe-core's WCAG 2.1 A and AA rules on every main screen,
in the light and the dark theme, on a desktop and on a 375-px phone; and the console used
with the keyboard alone.

Layer: tests/e2e. Rules: the console tests' shared ``kvbox serve`` (seeded here with
buckets of this module's names) and one Chromium for the module; axe
(Deque's axe-core, bundled by ``axe-playwright-python``) runs inside the page as it is
after the screen loaded; a violation fails the test with axe's own summary of it (rule,
impact, elements). The dark theme changes only colours (CSS custom properties; the
structure, names and layout are the light theme's), so in dark axe runs the rules that
depend on colour -- contrast, and links told apart by colour -- and the full set runs in
light at both widths: half the time, the same findings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, Page, Request, expect

from ._browser import STEP_MS, launched, new_page, watch
from ._png import RED_PNG
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server

#: What "accessible" means here: WCAG 2.0 and 2.1, levels A and AA (axe's tags).
WCAG_AA: dict[str, object] = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
#: The rules whose outcome depends on colours, hence on the theme.
COLOUR_ONLY: dict[str, object] = {
    "runOnly": {"type": "rule", "values": ["color-contrast", "link-in-text-block"]},
    "resultTypes": ["violations"],
}
SCREENS = [
    "#/",
    "#/buckets",
    "#/objects?bucket=a11y-photos",
    "#/object?bucket=a11y-photos&key=cat.png",
    "#/object?bucket=a11y-photos&key=notes/readme.md",
    "#/settings?bucket=a11y-photos&tab=versioning",
    "#/settings?bucket=a11y-photos&tab=permissions",
    "#/settings?bucket=a11y-photos&tab=lock",
    "#/settings?bucket=a11y-photos&tab=lifecycle",
    "#/settings?bucket=a11y-photos&tab=website",
    "#/settings?bucket=a11y-photos&tab=cors",
    "#/settings?bucket=a11y-shared&tab=permissions",
    "#/object?bucket=a11y-shared&key=open.txt",
    "#/kv",
    "#/users",
]


@pytest.fixture(scope="module")
def srv(console_srv: S3Server) -> S3Server:
    """The console tests' shared server, with the buckets every screen shows."""
    s3 = console_srv.client()
    s3.create_bucket(Bucket="a11y-photos", ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket="a11y-photos", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="a11y-photos", Key="cat.png", Body=RED_PNG, ContentType="image/png")
    s3.put_object(
        Bucket="a11y-photos",
        Key="notes/readme.md",
        Body=b"# Notes\n\nA *list*:\n\n- one\n- [two](https://example.com)\n",
        ContentType="text/markdown",
    )
    s3.put_object_tagging(
        Bucket="a11y-photos", Key="cat.png", Tagging={"TagSet": [{"Key": "kind", "Value": "cat"}]}
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket="a11y-photos",
        LifecycleConfiguration={
            "Rules": [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "notes/"},
                       "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]
        },
    )  # fmt: skip
    s3.put_bucket_cors(
        Bucket="a11y-photos",
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]},
    )
    # a bucket with ACLs on, so the grants editor is on screen
    s3.create_bucket(Bucket="a11y-shared", ObjectOwnership="ObjectWriter")
    s3.put_object(Bucket="a11y-shared", Key="open.txt", Body=b"x", ACL="public-read")
    return console_srv


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with launched(chromium) as b:
        yield b


def _in_flight(page: Page) -> set[Request]:
    """The page's requests that have not finished yet, kept up to date."""
    pending: set[Request] = set()
    page.on("request", lambda r: pending.add(r))
    page.on("requestfinished", lambda r: pending.discard(r))
    page.on("requestfailed", lambda r: pending.discard(r))
    return pending


def _settle(page: Page, pending: set[Request]) -> None:
    """Wait until the screen is drawn (the console focuses its title when a screen's
    render is done) and what it started after that (previews, the public-URL check,
    images) has arrived. Routes change only the URL fragment, so the page never loads
    again and Playwright's "networkidle" would not wait for any of it."""
    expect(page.locator("#page-title")).to_be_focused()
    deadline = time.monotonic() + STEP_MS / 1000
    while pending and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert not pending, [r.url for r in pending]


def _violations(page: Page, options: dict[str, object] = WCAG_AA) -> list[str]:
    found = Axe().run(page, options=options).response["violations"]
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
    rules = WCAG_AA if theme == "light" else COLOUR_ONLY
    in_flight = _in_flight(page)
    try:
        page.goto(f"{srv.endpoint}/console/")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        found["sign-in"] = _violations(page, rules)
        page.get_by_label("Access key").fill(ACCESS_KEY)
        page.get_by_label("Secret key").fill(SECRET_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#page-title")).to_be_visible()
        for screen in SCREENS:
            page.goto(f"{srv.endpoint}/console/{screen}")
            _settle(page, in_flight)
            found[screen] = _violations(page, rules)
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
