"""The web console's security rules, checked over plain HTTP against a real ``kvbox serve``.

Layer: tests/e2e. Rules: each rule is tried the way an attacker or a stale browser would
(no cookie, no or a wrong CSRF token, a cross-site fetch, an expired session, a guessing
client, a key disabled after sign-in) and its effect is checked with an independent
client (boto3): a refused request changed nothing.
"""

from __future__ import annotations

import re
import time

import pytest

from _ports import free_port

from ._console import ConsoleClient, admin
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server
from ._server import run_kvbox
from ._tls import make_cert
from .test_access_log import access_lines


@pytest.fixture(scope="module")
def srv(console_srv: S3Server) -> S3Server:
    return console_srv


def signed_in(srv: S3Server, **kw: object) -> ConsoleClient:
    c = ConsoleClient(srv.http_port, **kw)  # type: ignore[arg-type]
    assert c.sign_in(ACCESS_KEY, SECRET_KEY).status == 200
    return c


def test_the_page_and_its_assets_are_served_with_a_strict_policy(srv: S3Server) -> None:
    c = ConsoleClient(srv.http_port)
    moved = c.request("GET", "/console")
    assert moved.status == 308 and moved.header("Location") == "/console/"
    page = c.request("GET", "")
    assert page.status == 200 and page.header("Content-Type").startswith("text/html")
    csp = page.header("Content-Security-Policy")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.header("X-Frame-Options") == "DENY"
    html = page.body.decode()
    # no inline script or style: every <script> has a src, no style attribute or element
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assets = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert "js/app.js" in assets and "console.css" in assets
    for name in assets:
        got = c.request("GET", name)
        assert got.status == 200, name
        assert got.header("Content-Security-Policy"), name
        assert got.header("X-Content-Type-Options") == "nosniff", name
    # revalidation by ETag
    again = c.request("GET", "js/app.js")
    assert (
        c.request("GET", "js/app.js", headers={"If-None-Match": again.header("ETag")}).status == 304
    )
    assert c.request("GET", "no-such-file.js").status == 404


def test_sign_in_sets_an_httponly_strict_cookie_and_never_echoes_the_secret(
    srv: S3Server,
) -> None:
    c = ConsoleClient(srv.http_port)
    answer = c.sign_in(ACCESS_KEY, SECRET_KEY)
    assert answer.status == 200
    cookie = answer.header("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test for Secure
    assert SECRET_KEY.encode() not in answer.body
    info = answer.json()
    assert info["principal"] == "root" and info["root"] is True
    assert c.request("GET", "api/session").json()["principal"] == "root"


def test_without_a_session_the_api_answers_401(srv: S3Server) -> None:
    c = ConsoleClient(srv.http_port)
    for method, path in (("GET", "api/s3/"), ("GET", "api/dashboard"), ("PUT", "api/s3/x1")):
        got = c.request(method, path)
        assert got.status == 401 and got.json()["error"] == "NotSignedIn", path
    c.session_id = "made-up-session-id"
    assert c.request("GET", "api/s3/").status == 401
    assert c.request("GET", "api/session").json() == {"signed_in": False}


def test_a_state_change_without_the_csrf_token_is_refused_and_changes_nothing(
    srv: S3Server,
) -> None:
    c = signed_in(srv)
    s3 = srv.client()
    missing = c.request("PUT", "api/s3/csrf-bucket", csrf=False)
    assert missing.status == 403 and missing.json()["error"] == "BadCsrfToken"
    wrong = c.request("PUT", "api/s3/csrf-bucket", headers={"X-Kvbox-CSRF": "x" * 43})
    assert wrong.status == 403
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "csrf-bucket" not in names
    # another session's token is no better
    other = signed_in(srv)
    assert (
        c.request("PUT", "api/s3/csrf-bucket", headers={"X-Kvbox-CSRF": other.csrf or ""}).status
        == 403
    )
    assert c.request("PUT", "api/s3/csrf-bucket").status == 200
    assert "csrf-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # signing out needs the token too
    assert c.request("DELETE", "api/session", csrf=False).status == 403
    assert c.request("GET", "api/s3/").status == 200


def test_cross_site_requests_are_refused_even_reads(srv: S3Server) -> None:
    c = signed_in(srv)
    for site in ("cross-site", "same-site"):
        got = c.request("GET", "api/s3/", headers={"Sec-Fetch-Site": site})
        assert got.status == 403 and got.json()["error"] == "CrossSiteRequest"
    assert c.request("GET", "api/s3/", headers={"Sec-Fetch-Site": "same-origin"}).status == 200


def test_sign_in_takes_only_json(srv: S3Server) -> None:
    """An HTML form on another site can post urlencoded or text/plain, never JSON."""
    c = ConsoleClient(srv.http_port)
    body = f"access_key={ACCESS_KEY}&secret_key={SECRET_KEY}".encode()
    for ctype in ("application/x-www-form-urlencoded", "text/plain"):
        got = c.request("POST", "api/session", body, {"Content-Type": ctype})
        assert got.status == 415 and "Set-Cookie" not in got.headers


def test_sign_out_ends_the_session(srv: S3Server) -> None:
    c = signed_in(srv)
    out = c.request("DELETE", "api/session")
    assert out.status == 200 and "Max-Age=0" in out.header("Set-Cookie")
    assert c.request("GET", "api/s3/").status == 401


def test_s3_bodies_seen_through_the_console_are_sandboxed(srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="pages")
    s3.put_object(
        Bucket="pages", Key="evil.html", Body=b"<script>alert(1)</script>", ContentType="text/html"
    )
    c = signed_in(srv)
    got = c.request("GET", "api/s3/pages/evil.html")
    assert got.status == 200 and got.body == b"<script>alert(1)</script>"
    assert got.header("Content-Security-Policy").startswith("sandbox")
    assert got.header("X-Content-Type-Options") == "nosniff"
    assert "no-store" in got.header("Cache-Control")


def test_a_key_disabled_after_sign_in_ends_the_session(srv: S3Server) -> None:
    admin(srv, "user", "add", "dora")
    key = admin(srv, "key", "add", "dora")
    c = ConsoleClient(srv.http_port)
    assert c.sign_in(key["access key"], key["secret key"]).json()["principal"] == "dora"
    assert c.request("GET", "api/s3/").status == 200
    admin(srv, "key", "disable", key["access key"])
    gone = c.request("GET", "api/s3/")
    assert gone.status == 401 and gone.json()["error"] == "NotSignedIn"
    assert c.request("GET", "api/session").json() == {"signed_in": False}
    # and a disabled key cannot sign in again
    assert ConsoleClient(srv.http_port).sign_in(key["access key"], key["secret key"]).status == 401


def test_guessing_secrets_is_rate_limited_per_client(srv: S3Server) -> None:
    guesser = ConsoleClient(srv.http_port, source="127.0.0.77")
    for i in range(10):
        got = guesser.sign_in(ACCESS_KEY, f"guess-{i}")
        assert got.status == 401 and got.json()["error"] == "SignInFailed"
    limited = guesser.sign_in(ACCESS_KEY, SECRET_KEY)  # even the right secret now waits
    assert limited.status == 429 and int(limited.header("Retry-After")) > 0
    # other clients are not locked out by this one
    assert (
        ConsoleClient(srv.http_port, source="127.0.0.78").sign_in(ACCESS_KEY, SECRET_KEY).status
        == 200
    )


def test_a_signed_request_for_a_bucket_named_console_still_reaches_s3(srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="console")
    s3.put_object(Bucket="console", Key="index.html", Body=b"mine")
    assert s3.get_object(Bucket="console", Key="index.html")["Body"].read() == b"mine"


def test_idle_and_absolute_expiry(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Three sessions side by side (idle 1 s, lifetime 2.5 s): one left alone, one whose
    page only polls in the background, one busy all along."""
    with module_server(
        tmp_path_factory,
        "console-expiry",
        "--console-idle-timeout",
        "1",
        "--console-session-lifetime",
        "2.5",
    ) as s:
        idle, polled, busy = signed_in(s), signed_in(s), signed_in(s)
        t0 = time.monotonic()
        checked_idle = False
        while time.monotonic() < t0 + 1.9:  # busy never rests the idle second
            assert busy.request("GET", "api/s3/").status == 200
            # a page's own timer (the dashboard's refresh) does not count as activity
            early = time.monotonic() < t0 + 0.8
            bg = polled.request("GET", "api/dashboard", headers={"X-Kvbox-Background": "1"})
            assert bg.status == 200 if early else bg.status in (200, 401)
            if not checked_idle and time.monotonic() > t0 + 1.3:
                got = idle.request("GET", "api/s3/")
                assert got.status == 401 and got.json()["error"] == "NotSignedIn"
                assert polled.request("GET", "api/s3/").status == 401
                checked_idle = True
            time.sleep(0.3)
        assert checked_idle
        time.sleep(max(0.0, t0 + 2.8 - time.monotonic()))
        assert busy.request("GET", "api/s3/").status == 401  # the absolute limit bites


def test_console_port_and_console_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    with module_server(tmp_path_factory, "console-port", "--console-port", str(port)) as s:
        own = ConsoleClient(port)
        assert own.request("GET", "/").header("Location") == "/console/"
        assert own.sign_in(ACCESS_KEY, SECRET_KEY).status == 200
        info = own.request("GET", "api/session").json()
        assert info["s3_url"] == f"http://127.0.0.1:{s.http_port}"
        # the HTTP port's /console/ is S3's again; its /metrics still counts the console
        shared = ConsoleClient(s.http_port).request("GET", "")
        assert shared.status in (403, 404) and shared.body.startswith(b"<?xml")
        metrics = ConsoleClient(s.http_port).request("GET", "/metrics").body.decode()
        assert 'kvbox_requests_total{door="console",op="Console:session"}' in metrics
    with module_server(tmp_path_factory, "console-off", "--console", "off") as s:
        off = ConsoleClient(s.http_port).request("GET", "")
        assert off.body.startswith(b"<?xml")
        assert "kvbox: console" not in s.server.log_text()


def test_the_cookie_is_secure_on_tls_and_behind_a_tls_proxy(
    srv: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxied = ConsoleClient(srv.http_port, extra_headers={"X-Forwarded-Proto": "https"})
    assert "; Secure" in proxied.sign_in(ACCESS_KEY, SECRET_KEY).header("Set-Cookie")
    crt, key = make_cert(tmp_path_factory.mktemp("console-tls"))
    with module_server(
        tmp_path_factory, "console-tls", "--tls-cert", str(crt), "--tls-key", str(key)
    ) as s:
        c = ConsoleClient(s.http_port, tls=True)
        answer = c.sign_in(ACCESS_KEY, SECRET_KEY)
        assert answer.status == 200 and "; Secure" in answer.header("Set-Cookie")
        assert answer.json()["s3_url"] == f"https://127.0.0.1:{s.http_port}"
        assert c.request("GET", "api/s3/").status == 200


def test_console_requests_are_in_the_access_log_as_the_signed_in_user(srv: S3Server) -> None:
    c = ConsoleClient(srv.http_port, source="127.0.0.91")
    assert c.request("GET", "api/s3/").status == 401  # nobody yet
    assert c.sign_in(ACCESS_KEY, SECRET_KEY).status == 200
    assert c.request("PUT", "api/s3/logged-bucket").status == 200
    assert c.request("PUT", "api/s3/logged-other", csrf=False).status == 403
    assert c.request("GET", "api/s3/logged-bucket?list-type=2").status == 200
    deadline = time.monotonic() + 10
    while True:  # the access log is written a few times a second
        mine = [
            (ln["op"], ln["target"], ln["status"], ln["principal"])
            for ln in access_lines(srv.server, 0, timeout=0)
            if ln["door"] == "console" and ln["remote"].startswith("127.0.0.91:")
        ]
        if len(mine) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine == [
        ("Console", "/console/api/s3/", "401:NotSignedIn", "-"),
        ("Console:session", "/console/api/session", "200", "root"),
        ("CreateBucket", "logged-bucket", "200", "root"),
        ("Console", "/console/api/s3/logged-other", "403:BadCsrfToken", "root"),
        ("ListObjectsV2", "logged-bucket", "200", "root"),
    ], mine
    assert SECRET_KEY not in srv.server.new_log()


def test_a_base_path_and_forwarded_prefixes(
    srv: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # X-Forwarded-Prefix: used for the cookie and redirects; anything but a plain path
    # (an attempt at an open redirect, a header injection) is ignored
    c = ConsoleClient(srv.http_port, extra_headers={"X-Forwarded-Prefix": "/tools/kvbox/"})
    assert c.request("GET", "/console").header("Location") == "/tools/kvbox/console/"
    assert "Path=/tools/kvbox/console/" in c.sign_in(ACCESS_KEY, SECRET_KEY).header("Set-Cookie")
    for bad in ("//evil.example", "/a/../b", "https://evil.example/x", "/a b"):
        moved = ConsoleClient(srv.http_port, extra_headers={"X-Forwarded-Prefix": bad})
        assert moved.request("GET", "/console").header("Location") == "/console/", bad
    # --console-base-path: a proxy that does not strip its prefix is served as well
    with module_server(tmp_path_factory, "console-base", "--console-base-path", "/storage/") as s:
        plain = ConsoleClient(s.http_port)
        assert plain.request("GET", "/console").header("Location") == "/storage/console/"
        unstripped = ConsoleClient(s.http_port, prefix="/storage/console/")
        assert unstripped.request("GET", "").status == 200
        answer = unstripped.sign_in(ACCESS_KEY, SECRET_KEY)
        assert "Path=/storage/console/" in answer.header("Set-Cookie")
        assert unstripped.request("GET", "api/s3/").status == 200
    refused = run_kvbox("serve", "--console-base-path", "/a/../b", "--kv-port", "0")
    assert refused.returncode != 0 and b"--console-base-path" in refused.stderr
