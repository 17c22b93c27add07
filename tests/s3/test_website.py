"""kvbox.s3.website: the steps of a website-endpoint request, as tables.

The routing-rule cases follow the examples of the S3 user guide ("Configuring
redirects": renaming a folder, redirecting a folder to a page, redirecting on an HTTP
error) and its rules: first match wins, prefix rules before the lookup, error-code
rules after it, both conditions must hold when both are given.
"""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvbox.s3 import website
from kvbox.s3.errors import S3Error
from kvbox.s3.website import (
    REDIRECT_ATTR,
    ErrorDocument,
    Fetch,
    Redirect,
    WebError,
    config_of,
    error_page,
    folder_redirect,
    on_error,
    parse_website,
    plan,
    status_line,
    website_redirect,
)
from kvbox.s3.xml import (
    RedirectAllRequestsTo,
    RoutingCondition,
    RoutingRedirect,
    RoutingRule,
    WebsiteConfiguration,
)


def test_doctests() -> None:
    assert doctest.testmod(website).failed == 0


def rule(
    *,
    prefix: str | None = None,
    error: str | None = None,
    host: str | None = None,
    code: str | None = None,
    protocol: str | None = None,
    replace_prefix: str | None = None,
    replace_key: str | None = None,
) -> RoutingRule:
    condition = None
    if prefix is not None or error is not None:
        condition = RoutingCondition(prefix, error)
    return RoutingRule(
        RoutingRedirect(host, code, protocol, replace_prefix, replace_key), condition
    )


PLAIN = WebsiteConfiguration(index_document="index.html", error_document="error.html")

RULES = WebsiteConfiguration(
    index_document="index.html",
    error_document="error.html",
    routing_rules=(
        # the guide's "rename a folder": docs/ -> documents/
        rule(prefix="docs/", replace_prefix="documents/"),
        # "redirect a folder to a page": images/ -> folderdeleted.html
        rule(prefix="images/", replace_key="folderdeleted.html"),
        # a permanent move to another host, keeping the key, over https with 302
        rule(prefix="moved/", host="new.example", protocol="https", code="302"),
        # both conditions: only a 404 under private/ goes to the login page
        rule(prefix="private/", error="404", replace_key="login.html"),
        # "redirect on an HTTP error": any 404 -> report-404/<key> on another host
        rule(error="404", host="ec2.example", replace_prefix="report-404/"),
        # strip a prefix (ReplaceKeyPrefixWith empty)
        rule(prefix="old/", replace_prefix=""),
        # a rule after a catching one is never reached for the same key
        rule(prefix="docs/sub/", replace_key="never.html"),
    ),
)


# --- plan ----------------------------------------------------------------------------

# (config, path, expected step)
PLANS: list[tuple[WebsiteConfiguration, str, Fetch | Redirect]] = [
    (PLAIN, "", Fetch("index.html", "")),
    (PLAIN, "index.html", Fetch("index.html", "index.html", "index.html/index.html")),
    (PLAIN, "photos/", Fetch("photos/index.html", "photos/")),
    (PLAIN, "photos", Fetch("photos", "photos", "photos/index.html")),
    (PLAIN, "a/b/c/", Fetch("a/b/c/index.html", "a/b/c/")),
    (PLAIN, "a/b/c.txt", Fetch("a/b/c.txt", "a/b/c.txt", "a/b/c.txt/index.html")),
    (PLAIN, "/", Fetch("/index.html", "/")),  # a key that starts with a slash
    (PLAIN, "sp ace/", Fetch("sp ace/index.html", "sp ace/")),
    (RULES, "docs/a.html", Redirect(301, "documents/a.html")),
    (RULES, "docs/", Redirect(301, "documents/")),
    (RULES, "docs/sub/x", Redirect(301, "documents/sub/x")),  # first match wins
    (RULES, "docs", Fetch("docs", "docs", "docs/index.html")),  # prefix "docs/" not met
    (RULES, "images/cat.png", Redirect(301, "folderdeleted.html")),
    (RULES, "moved/x.html", Redirect(302, "moved/x.html", "new.example", "https")),
    (RULES, "old/a/b", Redirect(301, "a/b")),
    (RULES, "private/x", Fetch("private/x", "private/x", "private/x/index.html")),
    (RULES, "", Fetch("index.html", "")),
    (RULES, "other.html", Fetch("other.html", "other.html", "other.html/index.html")),
]


@pytest.mark.parametrize(("config", "path", "expected"), PLANS)
def test_plan(config: WebsiteConfiguration, path: str, expected: Fetch | Redirect) -> None:
    assert plan(config, path) == expected


def test_redirect_all_requests() -> None:
    config = WebsiteConfiguration(redirect_all_requests_to=RedirectAllRequestsTo("example.com"))
    assert plan(config, "") == Redirect(301, "", "example.com", None)
    assert plan(config, "a/b.html") == Redirect(301, "a/b.html", "example.com", None)
    https = WebsiteConfiguration(
        redirect_all_requests_to=RedirectAllRequestsTo("example.com", "https")
    )
    step = plan(https, "x y")
    assert isinstance(step, Redirect)
    assert step.location("http", "blog.web:8080") == "https://example.com/x%20y"


def test_rule_without_condition_redirects_everything() -> None:
    config = WebsiteConfiguration(
        index_document="index.html", routing_rules=(rule(host="elsewhere.example"),)
    )
    assert plan(config, "") == Redirect(301, "", "elsewhere.example")
    assert plan(config, "a/b") == Redirect(301, "a/b", "elsewhere.example")
    assert on_error(config, "a/b", 404) is None  # it already applied before the fetch


def test_empty_prefix_matches_every_key() -> None:
    config = WebsiteConfiguration(
        index_document="index.html", routing_rules=(rule(prefix="", replace_prefix="v2/"),)
    )
    assert plan(config, "") == Redirect(301, "v2/")
    assert plan(config, "a") == Redirect(301, "v2/a")


@given(st.text(max_size=40))
def test_plan_without_rules_always_fetches(path: str) -> None:
    step = plan(PLAIN, path)
    assert isinstance(step, Fetch)
    assert step.path == path
    if path == "" or path.endswith("/"):
        assert step.key == path + "index.html" and step.folder_index is None
    else:
        assert step.key == path and step.folder_index == path + "/index.html"


# --- after a failed lookup ------------------------------------------------------------

# (config, path, status, expected)
ERRORS: list[tuple[WebsiteConfiguration, str, int, Redirect | ErrorDocument | None]] = [
    (PLAIN, "missing.html", 404, ErrorDocument("error.html", 404)),
    (PLAIN, "secret.html", 403, ErrorDocument("error.html", 403)),
    (PLAIN, "x", 500, None),  # the error document is for 4xx only
    (WebsiteConfiguration(index_document="index.html"), "missing", 404, None),
    (RULES, "private/x", 404, Redirect(301, "login.html")),
    (RULES, "private/x", 403, ErrorDocument("error.html", 403)),  # both must hold
    (RULES, "ExamplePage.html", 404, Redirect(301, "report-404/ExamplePage.html", "ec2.example")),
    (RULES, "a/", 404, Redirect(301, "report-404/a/", "ec2.example")),
    (RULES, "a", 403, ErrorDocument("error.html", 403)),
    # a prefix-only rule never applies after the fetch (it applied before, or not at all)
    (RULES, "docsx", 403, ErrorDocument("error.html", 403)),
]


@pytest.mark.parametrize(("config", "path", "status", "expected"), ERRORS)
def test_on_error(
    config: WebsiteConfiguration,
    path: str,
    status: int,
    expected: Redirect | ErrorDocument | None,
) -> None:
    assert on_error(config, path, status) == expected


def test_error_rule_for_a_5xx_code() -> None:
    config = WebsiteConfiguration(
        index_document="index.html",
        error_document="e.html",
        routing_rules=(rule(error="503", host="status.example", code="307"),),
    )
    assert on_error(config, "x", 503) == Redirect(307, "x", "status.example")
    assert on_error(config, "x", 404) == ErrorDocument("e.html", 404)


def test_folder_redirect() -> None:
    step = plan(PLAIN, "photos")
    assert isinstance(step, Fetch)
    r = folder_redirect(step)
    assert r == Redirect(302, "photos/", absolute=False)
    assert r.location("http", "site.example") == "/photos/"
    assert r.location("http", "127.0.0.1:80", "/bucket") == "/bucket/photos/"


# --- Location ------------------------------------------------------------------------

# (redirect, request protocol, request host, base, Location)
LOCATIONS: list[tuple[Redirect, str, str, str, str]] = [
    (Redirect(301, "a.html"), "http", "site.example", "", "http://site.example/a.html"),
    (Redirect(301, "a.html"), "https", "site.example:8443", "", "https://site.example:8443/a.html"),
    (
        Redirect(301, "a.html", protocol="https"),
        "http",
        "s.example",
        "",
        "https://s.example/a.html",
    ),
    (
        Redirect(301, "a.html", host="o.example"),
        "https",
        "s.example",
        "",
        "https://o.example/a.html",
    ),
    (Redirect(301, "a.html"), "http", "127.0.0.1:8080", "/b", "http://127.0.0.1:8080/b/a.html"),
    (
        Redirect(301, "a.html", host="o.example"),
        "http",
        "127.0.0.1",
        "/b",
        "http://o.example/a.html",
    ),
    (Redirect(301, ""), "http", "s.example", "", "http://s.example/"),
    (Redirect(301, "d/ü #?.html"), "http", "s", "", "http://s/d/%C3%BC%20%23%3F.html"),
    (Redirect(301, "a+b=c&d"), "http", "s", "", "http://s/a+b=c&d"),
    (Redirect(301, "evil\r\nSet-Cookie: x"), "http", "s", "", "http://s/evil%0D%0ASet-Cookie:%20x"),
    (Redirect(302, "x/", absolute=False), "http", "s", "", "/x/"),
]


@pytest.mark.parametrize(("r", "protocol", "host", "base", "location"), LOCATIONS)
def test_location(r: Redirect, protocol: str, host: str, base: str, location: str) -> None:
    assert r.location(protocol, host, base) == location


@given(st.text(max_size=60))
def test_location_never_carries_control_characters(key: str) -> None:
    loc = Redirect(301, key).location("http", "s")
    assert loc.isascii() and loc.isprintable() and " " not in loc


def test_website_redirect_attr() -> None:
    assert website_redirect({}) is None
    assert website_redirect({REDIRECT_ATTR: ""}) is None
    assert website_redirect({REDIRECT_ATTR: "/other.html"}) == "/other.html"
    assert website_redirect({"h:cache-control": "x"}) is None


# --- stored configuration ----------------------------------------------------------------


def test_config_of_reads_stored_xml() -> None:
    assert config_of({}) is None
    text = RULES.to_xml().decode()
    config = config_of({"website": text})
    assert config == RULES
    assert parse_website(text) is config  # memoised


def test_stored_xml_is_validated_again() -> None:
    with pytest.raises(S3Error):
        parse_website("<WebsiteConfiguration/>")


# --- HTML errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (403, "403 Forbidden"),
        (404, "404 Not Found"),
        (405, "405 Method Not Allowed"),
        (412, "412 Precondition Failed"),
        (416, "416 Requested Range Not Satisfiable"),
        (599, "599 Error"),
    ],
)
def test_status_line(status: int, line: str) -> None:
    assert status_line(status) == line


def test_error_page_shape() -> None:
    err = WebError(404, "NoSuchKey", "The specified key does not exist.", [("Key", "a.html")])
    page = error_page(err, request_id="REQ1", host_id="HOST1").decode()
    assert page.startswith("<html>\n<head><title>404 Not Found</title></head>")
    for line in (
        "<h1>404 Not Found</h1>",
        "<li>Code: NoSuchKey</li>",
        "<li>Message: The specified key does not exist.</li>",
        "<li>Key: a.html</li>",
        "<li>RequestId: REQ1</li>",
        "<li>HostId: HOST1</li>",
    ):
        assert line in page.splitlines()
    assert "Custom Error Document" not in page
    assert page.rstrip().endswith("</html>")


def test_error_page_with_failed_error_document() -> None:
    err = WebError(403, "AccessDenied", "Access Denied")
    doc = WebError(404, "NoSuchKey", "The specified key does not exist.", [("Key", "err.html")])
    page = error_page(err, request_id="R", host_id="H", document_error=doc).decode()
    lines = page.splitlines()
    assert "<h1>403 Forbidden</h1>" in lines
    at = lines.index(
        "<h3>An Error Occurred While Attempting to Retrieve a Custom Error Document</h3>"
    )
    assert "<li>Code: NoSuchKey</li>" in lines[at:]
    assert "<li>Key: err.html</li>" in lines[at:]
    assert "<li>Code: AccessDenied</li>" in lines[:at]


def test_error_page_escapes_everything() -> None:
    err = WebError(404, "NoSuchKey", "m", [("Key", "<script>&'\"")])
    page = error_page(err, request_id="<r>", host_id="h").decode()
    assert "<script>" not in page
    assert "&lt;script&gt;&amp;&#x27;&quot;" in page
    assert "&lt;r&gt;" in page


def test_error_headers() -> None:
    err = WebError(404, "NoSuchKey", "The specified key does not exist.", [("Key", "a b\nc/ü")])
    assert err.headers() == {
        "x-amz-error-code": "NoSuchKey",
        "x-amz-error-message": "The specified key does not exist.",
        "x-amz-error-detail-Key": "a%20b%0Ac/%C3%BC",
    }
