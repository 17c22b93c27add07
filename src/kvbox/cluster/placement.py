"""Where a chunk's replicas go: rendezvous (highest random weight) hashing.

Layer: cluster (pure: no I/O). Rules:

* Each node gets a score per chunk, SHA-256 of ``node id \\0 chunk id``; a chunk's
  replicas go to the R nodes with the highest scores. Every gateway computes the same
  answer from the same node set, with nothing shared but that set (PostgreSQL's
  ``blob_nodes``).
* When a node joins, it takes over only the chunks for which it now scores in the top
  R (about R/n of them); when one leaves, only its chunks move, each to the next node
  in its own order. This is what keeps rebalancing to the minimum data movement.
* The whole order, not only the top R, is useful: a write that cannot reach one of its
  R nodes falls back to the next in the chunk's order, and repair looks there first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(node_id: str, chunk_id: str) -> int:
    digest = hashlib.sha256(f"{node_id}\0{chunk_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def ranked(chunk_id: str, node_ids: Iterable[str]) -> list[str]:
    """Every node, best first, for ``chunk_id`` (ties, which need a 64-bit collision,
    broken by node id so every gateway agrees)."""
    return sorted(node_ids, key=lambda n: (-score(n, chunk_id), n))


def place(chunk_id: str, node_ids: Iterable[str], replicas: int) -> list[str]:
    """The ``replicas`` nodes that should hold ``chunk_id`` (fewer if there are fewer)."""
    return ranked(chunk_id, node_ids)[:replicas]
