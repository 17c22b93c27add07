"""Users and access keys: the records and the rules every MetaStore shares.

Layer: core (pure). Rules: ``root`` is not a stored user (its key comes from
``kvbox.credentials``), so no stored user may take that name; a key's secret never
appears in a repr; an access key is "KV" + 18 upper-case alphanumerics and a secret 40
URL-safe characters, the shape of the generated root key. The errors raised here are
the ones every store raises for the same cases; they are defined in ``kvbox.errors``
with the rest of the tree.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from typing import Final

from kvbox.errors import InvalidArgument

# The errors of this module live in the one tree (kvbox.errors); re-exported for callers.
from kvbox.errors import NoSuchAccessKey as NoSuchAccessKey
from kvbox.errors import NoSuchUser as NoSuchUser
from kvbox.errors import UserExists as UserExists
from kvbox.errors import UserOwnsBuckets as UserOwnsBuckets

ROOT: Final = "root"
_NAME = re.compile(r"[A-Za-z0-9_.@+=,-]{1,64}")
_ACCESS_ALPHABET: Final = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class User:
    name: str
    created_ns: int
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key: str
    secret_key: str
    user: str
    created_ns: int
    disabled: bool = False

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return (
            f"AccessKey(access_key={self.access_key!r}, user={self.user!r}, "
            f"disabled={self.disabled!r})"
        )


def check_user_name(name: str) -> None:
    """IAM's user-name alphabet, 1-64 characters; ``root`` is reserved."""
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"invalid user name {name!r}: 1-64 of A-Z a-z 0-9 _.@+=,-")
    if name.lower() == ROOT:
        raise InvalidArgument("the name 'root' is reserved")


def new_key(user: str, created_ns: int) -> AccessKey:
    access = "KV" + "".join(secrets.choice(_ACCESS_ALPHABET) for _ in range(18))
    return AccessKey(access, secrets.token_urlsafe(30), user, created_ns)
