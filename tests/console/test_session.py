"""Console sessions and sign-in limits, on a clock the tests move by hand."""

from __future__ import annotations

import pytest

from kvbox.console.session import SessionStore, SignInLimiter, same_token


def test_a_session_is_found_by_id_and_holds_the_secret_out_of_its_repr() -> None:
    store = SessionStore(idle=60, lifetime=600)
    s = store.create("alice", "AK", "the-secret", now=0.0)
    assert store.get(s.id, now=1.0) is s
    assert "the-secret" not in repr(s)
    assert s.id != s.csrf and len(s.id) >= 43 and len(s.csrf) >= 43
    assert store.get("no-such-id", now=1.0) is None


def test_idle_expiry_is_reset_by_use_but_the_lifetime_is_absolute() -> None:
    store = SessionStore(idle=60, lifetime=150)
    s = store.create("alice", "AK", "sk", now=0.0)
    assert store.get(s.id, now=59.0) is s  # used: the idle clock restarts
    assert store.get(s.id, now=118.0) is s
    assert store.get(s.id, now=149.0) is s
    assert store.get(s.id, now=150.0) is None  # 150 s after sign-in, however active
    assert len(store) == 0


def test_an_idle_session_expires_and_is_forgotten() -> None:
    store = SessionStore(idle=60, lifetime=600)
    s = store.create("alice", "AK", "sk", now=0.0)
    assert store.get(s.id, now=60.0) is None
    assert store.get(s.id, now=1.0) is None  # gone for good, not merely hidden


def test_sweep_and_eviction_bound_the_sessions_kept() -> None:
    store = SessionStore(idle=10, lifetime=600, max_sessions=3)
    first = [store.create("u", f"AK{i}", "sk", now=float(i)) for i in range(3)]
    store.get(first[0].id, now=3.0)  # the oldest is used: it is no longer the LRU
    store.create("u", "AK9", "sk", now=4.0)
    assert store.get(first[1].id, now=4.0) is None  # the least recently used went
    assert store.get(first[0].id, now=4.0) is first[0]
    assert store.sweep(now=100.0) == 3
    assert len(store) == 0


def test_drop_key_signs_out_every_session_of_that_key() -> None:
    store = SessionStore()
    a1 = store.create("alice", "AKA", "sk", now=0.0)
    a2 = store.create("alice", "AKA", "sk", now=0.0)
    b = store.create("bob", "AKB", "sk", now=0.0)
    assert store.drop_key("AKA") == 2
    assert store.get(a1.id, 1.0) is None and store.get(a2.id, 1.0) is None
    assert store.get(b.id, 1.0) is b


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SessionStore(idle=0)


def test_same_token() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd")
    assert not same_token("abc", "")


def test_failures_from_one_address_lock_it_out_for_the_window() -> None:
    lim = SignInLimiter(per_address=3, per_key=100, window=60)
    for i in range(3):
        assert lim.retry_after("10.0.0.1", f"AK{i}", now=float(i)) == 0
        lim.failed("10.0.0.1", f"AK{i}", now=float(i))
    wait = lim.retry_after("10.0.0.1", "AKX", now=10.0)
    assert wait == pytest.approx(50.0)  # the window began at the first failure
    assert lim.retry_after("10.0.0.2", "AKX", now=10.0) == 0  # other addresses are free
    assert lim.retry_after("10.0.0.1", "AKX", now=60.0) == 0  # the window ended


def test_failures_for_one_key_lock_that_key_from_every_address() -> None:
    lim = SignInLimiter(per_address=100, per_key=2, window=60)
    lim.failed("10.0.0.1", "AKA", now=0.0)
    lim.failed("10.0.0.2", "AKA", now=1.0)
    assert lim.retry_after("10.0.0.3", "AKA", now=2.0) > 0
    assert lim.retry_after("10.0.0.3", "AKB", now=2.0) == 0


def test_a_background_request_does_not_keep_a_session_alive() -> None:
    store = SessionStore(idle=60, lifetime=600)
    s = store.create("alice", "AK", "sk", now=0.0)
    assert store.get(s.id, now=50.0, touch=False) is s  # still valid, but not renewed
    assert store.get(s.id, now=61.0, touch=False) is None  # idle since 0
