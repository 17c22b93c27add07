"""kvbox.server.kvauth: AUTH's steps and rules, in process over a memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kvbox.auth.gwkv import prove
from kvbox.core.blob.memory import MemoryBlobStore
from kvbox.core.meta.memory import MemoryMetaStore
from kvbox.core.store import Store
from kvbox.proto import gwkv as p
from kvbox.s3door.access import AccessControl
from kvbox.server.kvauth import KvAuth, Session

KEYS = {"AKROOT": ("root", "root-secret"), "AKALICE": ("alice", "alice-secret")}


async def _credentials(access_key: str) -> tuple[str, str] | None:
    return KEYS.get(access_key)


@pytest.fixture
async def auth() -> AsyncIterator[KvAuth]:
    store = Store(MemoryMetaStore(), MemoryBlobStore())
    await store.open()
    await store.ensure_bucket("kv")
    yield KvAuth("required", store, "kv", AccessControl(store), _credentials)
    await store.close()


def _nonce(session: Session) -> str | None:
    return session.nonce


async def test_challenge_response(auth: KvAuth) -> None:
    session = Session()
    reply = await auth.authenticate(session, p.Auth("AKALICE"), loopback=False)
    nonce = reply.decode().split()[1]
    assert _nonce(session) == nonce
    proof = prove("alice-secret", "AKALICE", nonce)
    ok = await auth.authenticate(session, p.Auth("AKALICE", nonce=nonce, proof=proof), False)
    assert (ok, session.principal, _nonce(session)) == (b"OK alice\n", "alice", None)
    again = await auth.authenticate(session, p.Auth("AKALICE", nonce=nonce, proof=proof), False)
    assert again.startswith(b"ERR DENIED no such challenge")


async def test_plain_secret_only_from_loopback(auth: KvAuth) -> None:
    session = Session()
    remote = await auth.authenticate(session, p.Auth("AKROOT", secret="root-secret"), False)
    assert remote.startswith(b"ERR DENIED AUTH with a plain secret only from loopback")
    assert (session.principal, session.failures) == (None, 1)
    local = await auth.authenticate(session, p.Auth("AKROOT", secret="root-secret"), True)
    assert (local, session.principal, session.failures) == (b"OK root\n", "root", 0)


async def test_failures_are_counted_and_leave_the_principal(auth: KvAuth) -> None:
    session = Session(principal="alice")
    for n in (1, 2):
        reply = await auth.authenticate(session, p.Auth("AKROOT", secret="wrong"), True)
        assert reply == b"ERR DENIED invalid credentials\n" and session.failures == n
    unknown = await auth.authenticate(session, p.Auth("NOSUCHKEY", secret="x"), True)
    assert unknown == b"ERR DENIED invalid credentials\n"
    assert session.principal == "alice"


def test_auth_never_shows_its_secret() -> None:
    shown = repr(p.Auth("AK", secret="hunter2", nonce="n", proof="deadbeef"))
    assert "hunter2" not in shown and "deadbeef" not in shown
