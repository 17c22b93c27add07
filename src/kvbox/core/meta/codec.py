"""How a version's chunk list and attrs are stored in a SQL row: one encoding for every
SQL backend (SQLite, PostgreSQL), so a row means the same thing in both.

Layer: core (pure). Rules: a chunk list is 32 bytes of digest + 8 bytes of big-endian
size per chunk (40 bytes where JSON took ~90; the digest doubles as the chunk's id);
attrs are compact JSON with sorted names; the commonest content type is stored as NULL
to keep rows short.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from kvbox.core.model import EMPTY_ATTRS, ChunkRef, ObjectVersion

#: The content type most objects have; stored as NULL to keep rows short.
DEFAULT_CT: Final = ObjectVersion("", "", "").content_type


def enc_chunks(chunks: Sequence[ChunkRef]) -> bytes | None:
    """32-byte digest + 8-byte big-endian size per chunk: 40 bytes instead of ~90 JSON."""
    if not chunks:
        return None
    return b"".join(bytes.fromhex(c.chunk_id) + c.size.to_bytes(8, "big") for c in chunks)


def dec_chunks(blob: bytes | None) -> tuple[ChunkRef, ...]:
    if not blob:
        return ()
    return tuple(
        ChunkRef(blob[i : i + 32].hex(), int.from_bytes(blob[i + 32 : i + 40], "big"))
        for i in range(0, len(blob), 40)
    )


def chunk_digests(blob: bytes) -> set[bytes]:
    """The chunk digests one encoded chunk list references."""
    return {blob[i : i + 32] for i in range(0, len(blob), 40)}


def chunk_counts(chunks: Sequence[ChunkRef]) -> Counter[str]:
    """References per chunk in one version or part (a chunk may repeat in an object)."""
    return Counter(c.chunk_id for c in chunks)


def enc_attrs(attrs: Mapping[str, str]) -> str | None:
    return json.dumps(dict(attrs), separators=(",", ":"), sort_keys=True) if attrs else None


def dec_attrs(text: str | None) -> Mapping[str, str]:
    return MappingProxyType(json.loads(text)) if text else EMPTY_ATTRS


def enc_ct(content_type: str) -> str | None:
    return None if content_type == DEFAULT_CT else content_type


def dec_ct(stored: str | None) -> str:
    return DEFAULT_CT if stored is None else stored
