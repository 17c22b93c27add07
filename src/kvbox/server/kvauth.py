"""GW-KV's AUTH and access decision (``--kv-auth``): who a connection is, what it may do.

Layer: server (asyncio glue). Rules: the proof is ``kvbox.auth.gwkv``'s (pure), the keys
are the S3 door's (``S3Frontend.credentials``: root's, and users' from ``kvbox admin``,
behind the same cache), and the decision is the S3 door's own
(``AccessControl.kv_allows``, the pure ``policy.decide``): a GW-KV request is allowed
exactly when the S3 request doing the same to the same key would be. What each command
needs is its row of ``kvbox.kv.commands.COMMANDS`` (``action``).

Modes (docs/protocol.md §5):

* ``off`` -- the course's protocol: every connection may do everything (AUTH still
  checks the credentials it is given, so a client configured with keys works anywhere).
* ``optional`` -- a connection that authenticated acts as its user; one that did not,
  and every UDP datagram, acts as anonymous: what the bucket's policy or ACL lets the
  public do (nothing, for a private bucket).
* ``required`` -- nothing but AUTH, PING and QUIT until AUTH succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from kvbox.auth import gwkv as proof
from kvbox.core.meta.users import ROOT
from kvbox.core.store import Store
from kvbox.kv.commands import BUCKET_ACTIONS, ROOT_ONLY, Command
from kvbox.proto import gwkv as p
from kvbox.s3door.access import AccessControl

log = logging.getLogger("kvbox.gwkv")

Mode = Literal["off", "optional", "required"]
MODES: Final = ("off", "optional", "required")

#: Failed AUTHs a connection may make before it is closed: enough for a typo, too few
#: to guess with (a secret is 238 bits).
MAX_FAILURES: Final = 3

DENIED_FIRST: Final = p.err("DENIED", "authenticate first: AUTH <access key>")
DENIED: Final = p.err("DENIED", "access denied")
_BAD_CREDENTIALS: Final = p.err("DENIED", "invalid credentials")
_NO_NONCE: Final = p.err("DENIED", "no such challenge on this connection: send AUTH <access key>")
_PLAIN_REMOTE: Final = p.err(
    "DENIED", "AUTH with a plain secret only from loopback; use AUTH <access key> for a challenge"
)


@dataclass(slots=True)
class Session:
    """One connection's authentication: who it is and the challenge it was given."""

    principal: str | None = None
    nonce: str | None = None
    failures: int = 0


class KvAuth:
    """The GW-KV door's authentication and authorisation, over one bucket."""

    def __init__(
        self,
        mode: Mode,
        store: Store,
        bucket: str,
        access: AccessControl,
        credentials: Callable[[str], Awaitable[tuple[str, str] | None]],
    ) -> None:
        self.mode = mode
        self.store = store
        self.bucket = bucket
        self.access = access
        self.credentials = credentials

    # --- who -------------------------------------------------------------------------

    async def authenticate(self, session: Session, ev: p.Auth, loopback: bool) -> bytes:
        """Answer one AUTH, updating ``session``; the reply line."""
        if ev.secret is None and ev.nonce is None:
            session.nonce = proof.new_nonce()
            return p.ok(session.nonce)
        if ev.secret is not None and not loopback:
            return self._failed(session, _PLAIN_REMOTE)
        if ev.nonce is not None and (session.nonce is None or ev.nonce != session.nonce):
            return self._failed(session, _NO_NONCE)
        found = await self.credentials(ev.access_key)
        if ev.nonce is not None:
            session.nonce = None  # a challenge answers once, right or wrong
        if found is None:
            return self._failed(session, _BAD_CREDENTIALS)
        principal, secret = found
        if ev.nonce is not None:
            good = proof.verify(secret, ev.access_key, ev.nonce, ev.proof or "")
        else:
            good = proof.same(secret, ev.secret or "")
        if not good:
            return self._failed(session, _BAD_CREDENTIALS)
        session.principal = principal
        session.failures = 0
        return p.ok(principal)

    @staticmethod
    def _failed(session: Session, reply: bytes) -> bytes:
        session.failures += 1
        return reply

    # --- what -----------------------------------------------------------------------------

    def trusts(self, principal: str | None) -> bool:
        """Whether requests of ``principal`` need no decision at all (mode off; root
        while the bucket has no policy): then the fast paths stay."""
        if self.mode == "off":
            return True
        return self.access.trusts(principal, self.store.cached_bucket(self.bucket))

    def refuse_unauthenticated(self, session: Session, row: Command) -> bytes | None:
        """``ERR DENIED`` at once for a request that needs a user on a ``required``
        connection that has none; None otherwise."""
        if self.mode == "required" and session.principal is None and row.action is not None:
            return DENIED_FIRST
        return None

    async def allows(self, principal: str | None, row: Command, ev: object, remote: str) -> bool:
        """Whether ``principal`` may run ``ev`` (every key it names must be allowed)."""
        action = row.action
        if action is None or self.trusts(principal):
            return True
        if action == ROOT_ONLY:
            return principal == ROOT
        if action in BUCKET_ACTIONS:
            return await self.access.kv_allows(principal, self.bucket, action, None, remote)
        for key in keys_of(ev):
            if not await self.access.kv_allows(principal, self.bucket, action, key, remote):
                return False
        return True

    async def may_learn_absence(self, principal: str | None, remote: str) -> bool:
        """S3's rule for a read of a key that does not exist: NOTFOUND only to those who
        may list the bucket; anyone else learns nothing (``ERR DENIED``)."""
        if self.trusts(principal):
            return True
        return await self.access.kv_allows(principal, self.bucket, "s3:ListBucket", None, remote)


def keys_of(ev: object) -> tuple[str, ...]:
    """The keys a request names."""
    key = getattr(ev, "key", None)
    if key is not None:
        return (key,)
    keys = getattr(ev, "keys", None)
    if keys is not None:
        return tuple(keys)
    pairs = getattr(ev, "pairs", None)
    if pairs is not None:
        return tuple(k for k, _ in pairs)
    return ()
