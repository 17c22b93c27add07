"""GET answers a value as text only if the protocol's text grammar allows it (docs/protocol.md
§2: at most 1,024 bytes of ASCII without NUL, LF or CR); anything else is NOTTEXT."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.core.model import ObjectVersion
from kvbox.kv.commands import _is_text
from kvbox.proto import gwkv as p

#: The grammar's definition of a text byte, written the obvious (slow) way.
_TEXT = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")


def _version(data: bytes | None) -> ObjectVersion:
    return ObjectVersion("kv", "k", "V", len(data or b""), inline=data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1100) | st.text(max_size=1100).map(lambda t: t.encode()))
def test_text_check_matches_the_grammar(data: bytes) -> None:
    expected = len(data) <= p.MAX_TEXT_VALUE and _TEXT.fullmatch(data) is not None
    assert _is_text(_version(data)) is expected


def test_each_forbidden_byte_makes_a_value_binary() -> None:
    for bad in (0, 10, 13, 0x80, 0xFF):
        assert not _is_text(_version(b"ok" + bytes([bad]) + b"ok"))
    assert _is_text(_version(b"tab\tand all of ASCII " + bytes(range(14, 128))))
    assert not _is_text(_version(b"x" * (p.MAX_TEXT_VALUE + 1)))
    assert not _is_text(_version(None))  # chunked: never text
