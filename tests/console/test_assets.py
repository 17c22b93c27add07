"""The console's page, read as files: what the Content-Security-Policy and the "no other
host" rule need of it, and that the installed package carries every file."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

STATIC = Path(__file__).parents[2] / "src" / "kvbox" / "console" / "static"
#: XML namespace names and S3's ACL group URIs are identifiers, never fetched.
NAMESPACES = {
    "http://s3.amazonaws.com/doc/2006-03-01/",
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/2001/XMLSchema-instance",
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    "http://acs.amazonaws.com/groups/s3/LogDelivery",
}
#: Ways a string becomes markup (or code) in the console's own origin.
MARKUP_SINKS = re.compile(
    r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\("
)


def _files() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.is_file())


def test_no_asset_names_another_host() -> None:
    files = [p for p in _files() if p.suffix in {".js", ".html", ".css", ".svg"}]
    assert len(files) > 5
    for path in files:
        urls = set(re.findall(r"https?://[^\s\"'`)<>]+", path.read_text()))
        assert urls <= NAMESPACES, (path.name, urls - NAMESPACES)


def test_no_script_turns_text_into_markup() -> None:
    for path in STATIC.rglob("*.js"):
        assert not MARKUP_SINKS.search(path.read_text()), path.name


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    for path in STATIC.rglob("*.js"):
        # inline style attributes are refused by the CSP (style-src 'self'); the browser
        # tests also fail on any CSP violation the page reports
        text = path.read_text()
        assert not re.search(r"""\bstyle\s*:|setAttribute\(\s*["']style""", text), path.name


def test_every_static_file_is_package_data() -> None:
    """What pyproject's package-data ships is what the server serves from (an installed,
    not editable, copy must carry the page)."""
    shipped = resources.files("kvbox.console") / "static"
    for path in _files():
        rel = path.relative_to(STATIC).as_posix()
        assert (shipped / rel).is_file(), rel
