"""How the console is reached: its settings, from ``kvbox serve``'s flags.

Layer: console (pure). Rules: every field has the default of a console on the HTTP port
with no proxy in front; ``normalize_base_path`` is the one check of a public path prefix,
for ``--console-base-path`` and for a request's ``X-Forwarded-Prefix`` alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kvbox.config import DEFAULT_IDLE_SECONDS, DEFAULT_LIFETIME_SECONDS

_PREFIX_RE: Final = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console is reached; all of it from ``kvbox serve`` flags."""

    base_path: str = ""  # a reverse proxy's public prefix ("" = none), no trailing slash
    idle: float = DEFAULT_IDLE_SECONDS
    lifetime: float = DEFAULT_LIFETIME_SECONDS
    s3_url: str | None = None  # the S3 endpoint as browsers reach it (None: derive)
    http_port: int = 0  # the S3 port, to derive s3_url when the console has its own port
    own_port: bool = False  # served on --console-port rather than the HTTP port
    tls: bool = False
    kv_bucket: str = "kv"
    data_dir: Path | None = None  # None: cache mode, nothing on disk
    web_port: int = 0  # the static-website endpoint (0: none), for its links
    web_domain: str | None = None


def normalize_base_path(value: str | None) -> str:
    """``--console-base-path``: "" or ``/a/b`` (leading slash, none trailing); raises
    ValueError on anything that is not a plain path."""
    text = (value or "").strip()
    if text in ("", "/"):
        return ""
    if text.startswith("//"):  # a network-path reference: another host, not a prefix
        raise ValueError(f"not a URL path prefix: {value!r} (e.g. /kvbox)")
    text = "/" + text.strip("/")
    if "//" in text or not _PREFIX_RE.fullmatch(text) or ".." in text.split("/"):
        raise ValueError(f"not a URL path prefix: {value!r} (e.g. /kvbox)")
    return text
