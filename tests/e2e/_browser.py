"""Headless Chromium driven by Playwright for Python, for the web console's tests.

Layer: tests/e2e. Rules: the browser is Debian's Chromium (``/usr/bin/chromium``,
``executable_path``) -- never Playwright's own download, which this machine cannot
fetch -- launched headless with a fresh profile and no network beyond loopback
(background networking, component updates and sync off; QUIC off so every request is
the plain HTTP a test server answers). One browser per test module (launching costs
about a second); each test gets its own context, so cookies never leak between tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

#: The flags the brief names, plus /dev/shm off (small in containers).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: Milliseconds any single browser step may wait (a loaded 2-core machine is slow).
STEP_MS = 20_000


@contextmanager
def launched(executable: str) -> Iterator[Browser]:
    """A Playwright ``Browser`` on ``executable``; closed (and its process ended) after."""
    expect.set_options(timeout=STEP_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, *, width: int = 1280, height: int = 860, **kw: object) -> Page:
    """A page in a fresh context (its own cookies), with the step timeout set."""
    context = browser.new_context(viewport={"width": width, "height": height}, **kw)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    return page


def watch(page: Page) -> list[str]:
    """Collect what must never happen on a console page: an uncaught script error, or
    anything the Content-Security-Policy refused (an inline style, a foreign host). A
    refused request (4xx) the test provoked on purpose is not such a problem."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def console(msg: ConsoleMessage) -> None:
        if "Content Security Policy" in msg.text or msg.type == "assert":
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", console)
    return problems
