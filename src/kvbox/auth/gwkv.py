"""GW-KV's AUTH challenge-response: the proof a client sends instead of its secret.

Layer: auth (pure: no I/O; randomness and secrets are arguments). docs/protocol.md §5:

1. ``AUTH <access key>``  ->  ``OK <nonce>``: the server names a fresh random nonce for
   this connection (``new_nonce``).
2. ``AUTH <access key> <nonce> <proof>``  ->  ``OK <principal>``: ``proof`` is
   ``prove(secret, access key, nonce)``, an HMAC-SHA256 keyed with the secret; the server
   computes the same and compares in constant time (``verify``). A nonce answers once.

Why this form and not the secret itself: GW-KV has no TLS, so anything on the wire can
be read by whoever sits on the path. A proof names one nonce of one connection, so a
recorded exchange opens nothing later, and the secret (40 random characters, 238 bits)
cannot be guessed back from it. What this does not give is integrity or secrecy of the
requests that follow: an attacker who can change packets can hijack the connection, and
values travel in the clear -- for those use the S3 API over TLS. The plain form
``AUTH <access key> <secret>`` exists for nc on the same machine and is refused unless
the connection comes from loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

#: Versioned, so a later form can never be confused with this one.
_CONTEXT: Final = b"kvbox-gwkv-auth-1"
#: 128 bits of nonce, as 32 hex digits.
NONCE_BYTES: Final = 16


def new_nonce() -> str:
    """A fresh challenge for one connection."""
    return secrets.token_hex(NONCE_BYTES)


def prove(secret: str, access_key: str, nonce: str) -> str:
    """The proof for ``nonce``: hex HMAC-SHA256 over the context, the access key and the
    nonce, keyed with the secret.

    >>> prove("secret", "AK", "00" * 16)[:16]
    '88764a0961aa2557'
    """
    message = b"\n".join((_CONTEXT, access_key.encode(), nonce.encode()))
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, access_key: str, nonce: str, proof: str) -> bool:
    """Whether ``proof`` answers ``nonce`` for ``access_key`` with ``secret``."""
    return hmac.compare_digest(prove(secret, access_key, nonce), proof.lower())


def same(secret: str, given: str) -> bool:
    """Whether ``given`` is ``secret`` (the plain form), in constant time."""
    return hmac.compare_digest(secret.encode(), given.encode())
