"""Requests between kvbox processes (gateway -> blob node), signed with the cluster secret.

Layer: auth. Rules: pure functions over plain types, like ``sigv4``: no I/O, no clock
(``now`` is an argument), secrets are compared in constant time and never logged.

Every request a gateway (or the repair worker) sends to a blob node carries::

    X-Kvbox-Time: <unix seconds>
    X-Kvbox-Nonce: <32 hex digits, fresh per request>
    X-Kvbox-Content-SHA256: <hex SHA-256 of the body>
    Authorization: KVBOX-HMAC-SHA256 <hex HMAC-SHA256(secret, string to sign)>

and the string to sign is ``KVBOX-HMAC-SHA256\\n METHOD \\n PATH?QUERY \\n TIME \\n NONCE
\\n BODY-SHA256`` (one per line). What each part buys:

* the method and the whole target: a signed GET cannot be turned into a DELETE, nor one
  chunk's request into another's;
* the body digest: a PUT's body cannot be swapped. For a chunk PUT it is the chunk id
  itself, so the sender hashes the bytes once, and the node, which hashes them anyway
  to check the content address, finds any mismatch;
* the time and ``REPLAY_WINDOW``: a captured request is refused once it is older (or
  newer, for a skewed clock) than the window;
* the nonce and ``ReplayGuard``: inside the window, a request is accepted once. A
  replayed DELETE or PUT is refused rather than repeated.

Why not SigV4: the cluster secret is one shared key between processes of one
deployment, not a user's access key; no region, service or credential scope applies,
and a smaller form is easier to audit. The secret comes from ``--cluster-secret-file``
(``load_secret``) and must hold at least ``MIN_SECRET`` bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kvbox.errors import AccessDenied, InvalidArgument

SCHEME: Final = "KVBOX-HMAC-SHA256"
TIME_HEADER: Final = "X-Kvbox-Time"
NONCE_HEADER: Final = "X-Kvbox-Nonce"
DIGEST_HEADER: Final = "X-Kvbox-Content-SHA256"
#: Seconds a signed request stays valid either side of the receiver's clock: long enough
#: for ordinary clock skew between machines kept by NTP, short enough that the nonces
#: to remember stay few.
REPLAY_WINDOW: Final = 300
#: Bytes of secret at least (after stripping surrounding whitespace): 128 bits.
MIN_SECRET: Final = 16
#: SHA-256 of the empty body.
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32}")


def load_secret(raw: bytes, source: str) -> bytes:
    """The cluster secret from the bytes of ``--cluster-secret-file`` (``source`` names
    the file in errors); surrounding whitespace (a trailing newline) is not part of it."""
    secret = raw.strip()
    if len(secret) < MIN_SECRET:
        raise InvalidArgument(
            f"--cluster-secret-file {source}: the secret must hold at least {MIN_SECRET} "
            f"bytes (has {len(secret)}); make one with: head -c 32 /dev/urandom | base64 > FILE"
        )
    return secret


def string_to_sign(method: str, target: str, time: int, nonce: str, body_sha256: str) -> str:
    return "\n".join((SCHEME, method.upper(), target, str(time), nonce, body_sha256))


def signature(secret: bytes, method: str, target: str, time: int, nonce: str, body: str) -> str:
    text = string_to_sign(method, target, time, nonce, body)
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(
    secret: bytes, method: str, target: str, now: float, body_sha256: str = EMPTY_SHA256
) -> dict[str, str]:
    """Headers that authenticate one request for ``target`` (path and query, exactly as
    sent) with a body whose SHA-256 is ``body_sha256``."""
    t = int(now)
    nonce = secrets.token_hex(16)
    sig = signature(secret, method, target, t, nonce, body_sha256)
    return {
        TIME_HEADER: str(t),
        NONCE_HEADER: nonce,
        DIGEST_HEADER: body_sha256,
        "Authorization": f"{SCHEME} {sig}",
    }


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed ``verify``: the body digest it vouches for (a PUT's body
    must then hash to it)."""

    body_sha256: str
    nonce: str
    time: int


def verify(
    secret: bytes, method: str, target: str, headers: Mapping[str, str], now: float
) -> Verified:
    """Check a request's signature and time (not yet its nonce: ``ReplayGuard``);
    raises ``AccessDenied`` saying which part failed, never what was expected."""
    auth = headers.get("Authorization", "")
    scheme, _, sig = auth.partition(" ")
    if scheme != SCHEME or not _HEX64.fullmatch(sig.strip()):
        raise AccessDenied(f"cluster request without a {SCHEME} signature")
    raw_time = headers.get(TIME_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    digest = headers.get(DIGEST_HEADER, "")
    if not raw_time.isdigit() or not _NONCE.fullmatch(nonce) or not _HEX64.fullmatch(digest):
        raise AccessDenied(
            f"cluster request needs {TIME_HEADER}, {NONCE_HEADER} and {DIGEST_HEADER}"
        )
    t = int(raw_time)
    expected = signature(secret, method, target, t, nonce, digest)
    if not hmac.compare_digest(expected, sig.strip()):
        raise AccessDenied("cluster request signature does not match (wrong cluster secret?)")
    if abs(now - t) > REPLAY_WINDOW:
        raise AccessDenied(
            f"cluster request time is {int(now - t)} s from this node's clock "
            f"(allowed: {REPLAY_WINDOW} s): check the machines' clocks"
        )
    return Verified(digest, nonce, t)


@dataclass(slots=True)
class ReplayGuard:
    """Nonces seen inside the replay window: each signed request is accepted once.

    Memory is bounded by the request rate times the window: entries older than the
    window are dropped as new ones arrive (a request that old fails ``verify``'s time
    check anyway).
    """

    window: int = REPLAY_WINDOW
    _seen: dict[str, int] = field(default_factory=dict)
    _oldest: int = 0

    def accept(self, v: Verified, now: float) -> None:
        """Remember ``v``'s nonce; ``AccessDenied`` if it was already used."""
        cutoff = int(now) - self.window
        if self._oldest < cutoff and self._seen:
            self._seen = {n: t for n, t in self._seen.items() if t >= cutoff}
            self._oldest = min(self._seen.values(), default=cutoff)
        if v.nonce in self._seen:
            raise AccessDenied("cluster request replayed (its nonce was already used)")
        self._seen[v.nonce] = v.time
        self._oldest = min(self._oldest, v.time) if self._seen else v.time

    def __len__(self) -> int:
        return len(self._seen)
