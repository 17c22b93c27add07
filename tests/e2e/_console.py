"""A plain HTTP client of the web console, for the tests that check its security rules.

Layer: tests/e2e. Rules: what a browser would send, spelled out by hand (the session
cookie, the CSRF header, ``Sec-Fetch-Site``), over ``http.client`` with a timeout; an
optional source address (any 127.x.y.z on Linux) lets a test be "another client" for
the per-address sign-in limit; ``admin`` makes users and keys through the admin API.
Nothing here imports kvbox.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from ._s3 import S3Server, signed

COOKIE = "kvbox_console"
#: The website domain of the console tests' shared server: a bucket's site is BUCKET.WEB_DOMAIN.
WEB_DOMAIN = "sites.kvbox.test"


def admin_lines(srv: S3Server, noun: str, verb: str, target: str = "") -> list[str]:
    """One ``kvbox admin`` command through the running server's admin API, signed by
    root (what ``kvbox admin --server`` sends, without starting a process per call):
    the lines it answered."""
    body = json.dumps({"noun": noun, "verb": verb, "target": target}).encode()
    reply = signed(
        srv, "POST", "/_kvbox/admin", headers={"Content-Type": "application/json"}, body=body
    )
    assert reply.status == 200, reply.body
    answer = json.loads(reply.body)
    assert answer["status"] == 0, answer["lines"]
    lines: list[str] = answer["lines"]
    return lines


def admin(srv: S3Server, noun: str, verb: str, target: str = "") -> dict[str, str]:
    """``admin_lines`` as the ``name: value`` pairs it answered (a new key's
    ``access key``, ``secret key``)."""
    out: dict[str, str] = {}
    for line in admin_lines(srv, noun, verb, target):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""


@dataclass
class ConsoleClient:
    """One browser's worth of state: its cookie and the CSRF token the page would hold."""

    port: int
    host: str = "127.0.0.1"
    source: str | None = None
    tls: bool = False  # HTTPS, trusting any certificate (the tests make their own)
    prefix: str = "/console/"
    session_id: str | None = None
    csrf: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        csrf: bool = True,
    ) -> Answer:
        """``path`` is relative to the console (``api/session``) unless it starts with /."""
        source = (self.source, 0) if self.source else None
        conn: http.client.HTTPConnection
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=30, source_address=source, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(
                self.host, self.port, timeout=30, source_address=source
            )
        try:
            hdrs = {**self.extra_headers, **(headers or {})}
            if self.session_id is not None:
                hdrs["Cookie"] = f"{COOKIE}={self.session_id}"
            if csrf and self.csrf is not None and method not in ("GET", "HEAD"):
                hdrs.setdefault("X-Kvbox-CSRF", self.csrf)
            target = path if path.startswith("/") else self.prefix + path
            conn.request(method, target, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Answer(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def post_json(self, path: str, doc: Any, **kw: Any) -> Answer:
        body = json.dumps(doc).encode()
        return self.request("POST", path, body, {"Content-Type": "application/json"}, **kw)

    def sign_in(self, access_key: str, secret_key: str) -> Answer:
        answer = self.post_json("api/session", {"access_key": access_key, "secret_key": secret_key})
        if answer.status == 200:
            jar: SimpleCookie = SimpleCookie()
            jar.load(answer.header("Set-Cookie"))
            self.session_id = jar[COOKIE].value
            self.csrf = answer.json()["csrf"]
        return answer
