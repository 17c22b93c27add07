"""Console sessions, sign-in rate limits: what the server remembers about a signed-in browser.

Layer: console (pure: no I/O, no asyncio; the clock is an argument of every call, so the
tests can walk time forward without sleeping). Rules:

* A session is created only after the S3 door authenticated the access key and secret
  (``kvbox.console.door``); it holds them in this process's memory and nowhere else, so
  every console action can be signed as that principal. The browser holds only the
  session id (an HttpOnly cookie) and the CSRF token (in page memory).
* Session ids and CSRF tokens are 256-bit values from ``secrets``: unguessable, and never
  derived from each other, so reading one (a CSRF token in the DOM) tells nothing of
  the other (the cookie).
* A session ends at the first of: sign-out, ``idle`` seconds without a request a person
  made (a page's own timer does not count), ``lifetime``
  seconds after sign-in (absolute: activity does not extend it, so a stolen cookie is
  worth a bounded time), or eviction when ``MAX_SESSIONS`` are open (the least recently
  used goes, so a flood of sign-ins cannot grow memory).
* Sign-in attempts are limited per client address and per access key (``SignInLimiter``):
  the per-address limit stops guessing secrets from one place; the per-key limit stops
  guessing one key's secret from many. Only failures count, so a person who signs in and
  out all day is never locked out.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from kvbox.config import DEFAULT_IDLE_SECONDS, DEFAULT_LIFETIME_SECONDS

#: Sessions kept at once; the least recently used beyond it are signed out. Each holds a
#: few hundred bytes, so the bound is about memory only under a sign-in flood.
MAX_SESSIONS: Final = 10_000

#: Failed sign-ins tolerated per window: from one client address, and for one access key.
MAX_FAILURES_PER_ADDRESS: Final = 10
MAX_FAILURES_PER_KEY: Final = 20
#: The window over which failures are counted, and so the longest a lock-out lasts.
FAILURE_WINDOW_SECONDS: Final = 300.0
#: Addresses and keys tracked at once (bounds the limiter's memory under a spray).
_MAX_TRACKED: Final = 50_000


def new_token() -> str:
    """A 256-bit random token, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def same_token(a: str, b: str) -> bool:
    """Constant-time comparison, so a CSRF token cannot be found byte by byte by timing."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(slots=True)
class Session:
    """One signed-in browser. ``secret_key`` is never sent to the browser and never logged:
    ``repr`` leaves it out."""

    id: str
    csrf: str
    principal: str
    access_key: str
    secret_key: str = field(repr=False)
    created: float
    last_seen: float

    def expires_at(self, idle: float, lifetime: float) -> float:
        """When this session ends if nothing more happens."""
        return min(self.last_seen + idle, self.created + lifetime)


class SessionStore:
    """The open sessions, least recently used first."""

    def __init__(
        self,
        *,
        idle: float = DEFAULT_IDLE_SECONDS,
        lifetime: float = DEFAULT_LIFETIME_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        if idle <= 0 or lifetime <= 0:
            raise ValueError("session idle and lifetime must be positive")
        self.idle = idle
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: str, access_key: str, secret_key: str, now: float) -> Session:
        s = Session(new_token(), new_token(), principal, access_key, secret_key, now, now)
        self._sessions[s.id] = s
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return s

    def get(self, session_id: str, now: float, *, touch: bool = True) -> Session | None:
        """The live session with this id, marked as used now unless ``touch`` is False;
        None if unknown or expired (an expired session is forgotten at once).

        A page's own timer (the dashboard's refresh) asks with ``touch=False``: a console
        left open on the dashboard is idle, and must still sign out when idle.
        """
        s = self._sessions.get(session_id)
        if s is None:
            return None
        if now >= s.expires_at(self.idle, self.lifetime):
            del self._sessions[session_id]
            return None
        if touch:
            s.last_seen = now
            self._sessions.move_to_end(session_id)
        return s

    def drop(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def drop_key(self, access_key: str) -> int:
        """Sign out every session of ``access_key`` (the key was refused by the S3 door:
        disabled, deleted or rotated away). Returns how many were open."""
        gone = [sid for sid, s in self._sessions.items() if s.access_key == access_key]
        for sid in gone:
            del self._sessions[sid]
        return len(gone)

    def sweep(self, now: float) -> int:
        """Forget expired sessions (called now and then, so abandoned sessions' secrets do
        not stay in memory until eviction)."""
        gone = [
            sid
            for sid, s in self._sessions.items()
            if now >= s.expires_at(self.idle, self.lifetime)
        ]
        for sid in gone:
            del self._sessions[sid]
        return len(gone)


@dataclass(slots=True)
class _Failures:
    first: float
    count: int


class SignInLimiter:
    """Counts failed sign-ins per address and per access key within a fixed window."""

    def __init__(
        self,
        *,
        per_address: int = MAX_FAILURES_PER_ADDRESS,
        per_key: int = MAX_FAILURES_PER_KEY,
        window: float = FAILURE_WINDOW_SECONDS,
    ) -> None:
        self.per_address = per_address
        self.per_key = per_key
        self.window = window
        self._seen: OrderedDict[str, _Failures] = OrderedDict()

    def _live(self, name: str, now: float) -> _Failures | None:
        f = self._seen.get(name)
        if f is not None and now - f.first >= self.window:
            del self._seen[name]
            return None
        return f

    def retry_after(self, address: str, access_key: str, now: float) -> float:
        """0 if a sign-in may be tried now, else the seconds until it may."""
        wait = 0.0
        for name, limit in (("a:" + address, self.per_address), ("k:" + access_key, self.per_key)):
            f = self._live(name, now)
            if f is not None and f.count >= limit:
                wait = max(wait, f.first + self.window - now)
        return wait

    def failed(self, address: str, access_key: str, now: float) -> None:
        for name in ("a:" + address, "k:" + access_key):
            f = self._live(name, now)
            if f is None:
                self._seen[name] = _Failures(now, 1)
            else:
                f.count += 1
                self._seen.move_to_end(name)
        while len(self._seen) > _MAX_TRACKED:
            self._seen.popitem(last=False)
