"""A root-signed JSON POST to a running server's ``/_kvbox/...`` endpoints.

Layer: cli. Rules: the root credentials come from ``KVBOX_ROOT_ACCESS_KEY`` and
``KVBOX_ROOT_SECRET_KEY`` (never from the command line, where ``ps`` would show them);
the request is signed with SigV4 like any S3 request, so the server checks it with the
same code; every failure is a ``RemoteError`` whose text is ready for the user.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from kvbox.auth.sigv4 import sign_request


class RemoteError(Exception):
    """Why the call could not be made or was refused (one line for the user)."""


def refusal(status: int, body: bytes) -> str:
    """One line for an error answer: S3's ``<Error>`` as its code, message and request id
    (what an operator greps the server's log for), anything else as its first line."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError):
        root = None
    if root is not None and root.tag == "Error":
        code = (root.findtext("Code") or "").strip()
        message = (root.findtext("Message") or "").strip()
        request_id = (root.findtext("RequestId") or "").strip()
        text = f"{code}: {message}" if message else code
        where = f", request {request_id}" if request_id else ""
        return f"the server refused: {text} (HTTP {status}{where})"
    first = body.decode(errors="replace").strip().splitlines()[:1]
    detail = f": {first[0][:200]}" if first else ""
    return f"the server refused: HTTP {status}{detail}"


def post_json(server: str, path: str, payload: Any, *, region: str) -> Any:
    """POST ``payload`` as JSON to ``server`` + ``path``; the decoded JSON answer."""
    access = os.environ.get("KVBOX_ROOT_ACCESS_KEY", "").strip()
    secret = os.environ.get("KVBOX_ROOT_SECRET_KEY", "")
    if not (access and secret):
        raise RemoteError("--server needs KVBOX_ROOT_ACCESS_KEY and KVBOX_ROOT_SECRET_KEY")
    url = urllib.parse.urlsplit(server.rstrip("/"))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise RemoteError(f"not an http(s) URL: {server}")
    body = json.dumps(payload).encode()
    headers = [("host", url.netloc), ("content-type", "application/json")]
    headers += sign_request(
        "POST",
        path,
        [],
        headers,
        hashlib.sha256(body).hexdigest(),
        access_key=access,
        secret_key=secret,
        now=datetime.now(UTC),
        region=region,
    )
    request = urllib.request.Request(f"{url.scheme}://{url.netloc}{path}", data=body, method="POST")
    for name, value in headers:
        if name != "host":
            request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise RemoteError(refusal(exc.code, exc.read())) from None
    except (OSError, ValueError) as exc:
        raise RemoteError(f"cannot reach {server}: {exc}") from None
