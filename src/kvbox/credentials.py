"""Root credentials: from the environment, a mounted secret file, or generated once.

Layer: config (runs at start-up, before any front door). Rules: a secret is never logged;
the generated pair is written to the data directory readable by its owner only, and shown
once, on the start that created it. The S3 front door signs with these; GW-KV has no auth.

Sources, first match wins:

1. ``KVBOX_ROOT_ACCESS_KEY`` and ``KVBOX_ROOT_SECRET_KEY``;
2. ``KVBOX_ROOT_ACCESS_KEY`` and ``KVBOX_ROOT_SECRET_KEY_FILE`` (a Docker/Kubernetes
   secret mounted as a file; trailing newline ignored);
3. ``<data>/root-credentials`` written by an earlier start;
4. a new random pair, written there (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kvbox.errors import InvalidArgument

CREDENTIALS_FILE = "root-credentials"
_ACCESS_ALPHABET = string.ascii_uppercase + string.digits
#: Letters and digits only. ``token_urlsafe`` had ``-`` and ``_``: one secret in 64 began
#: with ``-``, which command lines then read as an option (``aws configure set
#: aws_secret_access_key -x...`` fails). 40 characters, as AWS's secret keys have, of 62
#: symbols: 238 bits.
_SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    source: str  # "environment", "file", "data directory" or "generated"

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"Credentials(access_key={self.access_key!r}, source={self.source!r})"


def generate() -> tuple[str, str]:
    """A new (access key, secret key) pair; neither can be mistaken for an option."""
    access = "KV" + "".join(secrets.choice(_ACCESS_ALPHABET) for _ in range(18))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    return access, secret


def load_root_credentials(data_dir: Path | None, env: Mapping[str, str]) -> Credentials:
    access = env.get("KVBOX_ROOT_ACCESS_KEY", "").strip()
    secret = env.get("KVBOX_ROOT_SECRET_KEY", "")
    secret_file = env.get("KVBOX_ROOT_SECRET_KEY_FILE", "")
    if secret and secret_file:
        raise InvalidArgument("set KVBOX_ROOT_SECRET_KEY or KVBOX_ROOT_SECRET_KEY_FILE, not both")
    if secret_file:
        try:
            secret = Path(secret_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise InvalidArgument(f"cannot read KVBOX_ROOT_SECRET_KEY_FILE: {exc}") from exc
    if access or secret:
        if not (access and secret):
            raise InvalidArgument(
                "KVBOX_ROOT_ACCESS_KEY and a root secret key must be set together"
            )
        return Credentials(access, secret, "file" if secret_file else "environment")
    if data_dir is None:  # cache mode: nothing persists, so neither do generated keys
        return Credentials(*generate(), "generated")
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        lines = path.read_text().splitlines()
        if len(lines) < 2 or not lines[0] or not lines[1]:
            raise InvalidArgument(f"{path} is damaged: expected two lines (access, secret key)")
        return Credentials(lines[0], lines[1], "data directory")
    access, secret = generate()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{access}\n{secret}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return Credentials(access, secret, "generated")
