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

from kvbox.auth.sigv4 import sign_request


class RemoteError(Exception):
    """Why the call could not be made or was refused (one line for the user)."""


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
        detail = exc.read().decode(errors="replace").strip()
        raise RemoteError(f"the server refused: HTTP {exc.code} {detail}".rstrip()) from None
    except (OSError, ValueError) as exc:
        raise RemoteError(f"cannot reach {server}: {exc}") from None
