"""The cluster secret's request signatures (``kvbox.auth.cluster``): pure, no I/O."""

from __future__ import annotations

import pytest

from kvbox.auth import cluster as auth
from kvbox.errors import AccessDenied, InvalidArgument

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0
TARGET = "/v1/chunks/" + "ab" * 32


def test_a_signed_request_verifies_once() -> None:
    headers = auth.sign(SECRET, "GET", TARGET, NOW)
    v = auth.verify(SECRET, "GET", TARGET, headers, NOW + 10)
    assert (v.body_sha256, v.time) == (auth.EMPTY_SHA256, int(NOW))
    guard = auth.ReplayGuard()
    guard.accept(v, NOW + 10)
    with pytest.raises(AccessDenied, match="replayed"):
        guard.accept(auth.verify(SECRET, "GET", TARGET, headers, NOW + 11), NOW + 11)
    other = auth.verify(SECRET, "GET", TARGET, auth.sign(SECRET, "GET", TARGET, NOW), NOW)
    guard.accept(other, NOW)  # a fresh nonce is another request


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ("method", "DELETE"),
        ("target", "/v1/chunks/" + "cd" * 32),
        ("target", TARGET + "?offset=1&length=2"),
        ("X-Kvbox-Time", str(int(NOW) + 1)),
        ("X-Kvbox-Nonce", "0" * 32),
        ("X-Kvbox-Content-SHA256", "ef" * 32),
    ],
)
def test_every_signed_part_counts(part: str, value: str) -> None:
    headers = auth.sign(SECRET, "GET", TARGET, NOW)
    method, target = "GET", TARGET
    if part == "method":
        method = value
    elif part == "target":
        target = value
    else:
        headers[part] = value
    with pytest.raises(AccessDenied, match="does not match"):
        auth.verify(SECRET, method, target, headers, NOW)


def test_wrong_secret_missing_parts_and_skew() -> None:
    headers = auth.sign(SECRET, "GET", TARGET, NOW)
    with pytest.raises(AccessDenied, match="does not match"):
        auth.verify(b"another secret of sixteen", "GET", TARGET, headers, NOW)
    for name in (auth.TIME_HEADER, auth.NONCE_HEADER, auth.DIGEST_HEADER, "Authorization"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(AccessDenied):
            auth.verify(SECRET, "GET", TARGET, partial, NOW)
    auth.verify(SECRET, "GET", TARGET, headers, NOW + auth.REPLAY_WINDOW)
    for skew in (auth.REPLAY_WINDOW + 1, -auth.REPLAY_WINDOW - 1):
        with pytest.raises(AccessDenied, match="clock"):
            auth.verify(SECRET, "GET", TARGET, headers, NOW + skew)


def test_the_replay_guard_forgets_what_the_window_refuses_anyway() -> None:
    guard = auth.ReplayGuard()
    for i in range(50):
        t = NOW + i * 10
        guard.accept(auth.verify(SECRET, "GET", TARGET, auth.sign(SECRET, "GET", TARGET, t), t), t)
    assert len(guard) <= auth.REPLAY_WINDOW // 10 + 2


def test_load_secret() -> None:
    assert auth.load_secret(b"  " + SECRET + b"\n", "f") == SECRET
    with pytest.raises(InvalidArgument, match="at least 16 bytes"):
        auth.load_secret(b"short\n", "f")
