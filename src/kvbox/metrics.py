"""Counters the front doors bump on their hot paths, exported by ``server/http.py``.

Layer: shared by kv/ and server/. Rules: plain integers and lists, no locks, no labels
lookups per request: the event loop is the only writer, and Prometheus families are built
only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

#: Latency bucket upper bounds in seconds: 50 µs to 10 s, roughly x2.5 apart.
LATENCY_BOUNDS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 10.0,
)  # fmt: skip


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...] = LATENCY_BOUNDS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total: float = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += n
        self.total += seconds * n

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (le, cumulative count), ending with +Inf."""
        out: list[tuple[str, int]] = []
        acc = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            acc += count
            out.append((repr(bound), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out


@dataclass(slots=True)
class ServerCounters:
    """Live figures of the GW-KV front door: INFO reports them, /metrics exports them.

    ``requests`` counts every request; ``by_op`` by request type name; ``errors`` by ERR
    code. ``connections`` (open), ``connections_total``, ``refused`` (by reason),
    ``timeouts`` (by phase) and ``evicted`` are kept by ``kvbox.server.governor`` for
    every door. ``latency`` observes requests that waited (storage, a thread); requests answered
    on the spot (cache hits, PING, refusals) count as ``immediate`` and are exported in
    the lowest latency bucket.
    """

    started: float = field(default_factory=time.monotonic)
    connections: int = 0
    connections_total: int = 0
    requests: int = 0
    immediate: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    latency: Histogram = field(default_factory=Histogram)
    refused: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    evicted: int = 0
