"""User and access-key administration: one command set, two ways in.

Layer: s3 door (async, over ``kvbox.core.meta``). Rules: ``run_command`` is the single
implementation of ``kvbox admin user|key ...``; the CLI calls it directly on a data
directory it has locked, and ``S3Frontend`` calls it for ``POST /_kvbox/admin`` (root
only, SigV4-signed, a JSON body ``{"noun", "verb", "target"}``) on a running server. A
secret key appears in the output once, when the key is made (add, rotate); listings
never show secrets. Failures are ``(1, [message])``, never exceptions, so both ways in
report them the same.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from kvbox.core.meta import MetaStore
from kvbox.core.meta.users import AccessKey, NoSuchUser
from kvbox.errors import KvboxError

#: The reserved path of the admin endpoint: ``_`` is not allowed in bucket names, so no
#: S3 request can ever mean it.
ADMIN_PATH: Final = "/_kvbox/admin"

VERBS: Final = {
    "user": ("add", "list", "disable", "enable", "delete"),
    "key": ("add", "list", "disable", "enable", "delete", "rotate"),
}


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(disabled: bool) -> str:
    return "disabled" if disabled else "enabled"


def _show_new(key: AccessKey) -> list[str]:
    return [
        f"user:       {key.user}",
        f"access key: {key.access_key}",
        f"secret key: {key.secret_key}",
        "(the secret key is shown only this once)",
    ]


async def run_command(meta: MetaStore, noun: str, verb: str, target: str) -> tuple[int, list[str]]:
    """Run one admin command; returns (exit status, output lines)."""
    if verb not in VERBS.get(noun, ()):
        return 2, [f"unknown command: {noun} {verb}"]
    now = time.time_ns()
    try:
        if noun == "user":
            return 0, await _user(meta, verb, target, now)
        return 0, await _key(meta, verb, target, now)
    except KvboxError as exc:
        return 1, [f"{type(exc).__name__}: {exc}"]


async def _user(meta: MetaStore, verb: str, name: str, now: int) -> list[str]:
    if verb == "add":
        await meta.create_user(name, now)
        return [f"user {name} created; give it a key with: kvbox admin key add {name}"]
    if verb == "list":
        return [
            f"{u.name}\t{_state(u.disabled)}\t{_when(u.created_ns)}"
            for u in await meta.list_users()
        ]
    if verb in ("disable", "enable"):
        await meta.set_user_disabled(name, verb == "disable")
        return [f"user {name} {verb}d"]
    await meta.delete_user(name)
    return [f"user {name} and its keys deleted"]


async def _key(meta: MetaStore, verb: str, target: str, now: int) -> list[str]:
    if verb == "add":
        return _show_new(await meta.add_key(target, now))
    if verb == "list":
        if await meta.get_user(target) is None:
            raise NoSuchUser(target)
        return [
            f"{k.access_key}\t{_state(k.disabled)}\t{_when(k.created_ns)}"
            for k in await meta.list_keys(target)
        ]
    if verb in ("disable", "enable"):
        await meta.set_key_disabled(target, verb == "disable")
        return [f"key {target} {verb}d"]
    if verb == "rotate":
        new = await meta.rotate_key(target, now)
        return [*_show_new(new), f"old key {target} disabled; delete it once unused"]
    await meta.delete_key(target)
    return [f"key {target} deleted"]
