"""The dashboard's recent history: a ring of samples of every front door's counters.

Layer: console (pure; the console door calls ``take`` on a timer and ``series`` on a
dashboard request). Rules:

* The doors' ``ServerCounters`` only ever grow; a sample keeps a copy of the figures the
  charts need (requests, errors, bytes, the latency histogram's counts), and a point of a
  chart is the difference between two neighbouring samples divided by their distance in
  time. So the hot paths pay nothing for the dashboard, and a gap in sampling (a busy
  loop) widens one point instead of distorting it.
* ``SAMPLES`` samples ``INTERVAL`` seconds apart: ten minutes, the "last minutes" an
  operator looks at when something just happened; longer history is Prometheus's job
  (``/metrics``).
* Latency percentiles come from the histogram's bucket counts, so they are the upper
  bound of the bucket the percentile falls in (the resolution ``/metrics`` has too).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kvbox.metrics import LATENCY_BOUNDS, ServerCounters

#: Seconds between samples (the charts' resolution).
INTERVAL: Final = 2.0
#: Samples kept: ten minutes at INTERVAL.
SAMPLES: Final = 300


@dataclass(frozen=True, slots=True)
class _Figures:
    requests: int
    errors: int
    bytes_in: int
    bytes_out: int
    latency: tuple[int, ...]  # per-bucket counts, immediate answers in the first


def _figures(c: ServerCounters) -> _Figures:
    counts = list(c.latency.counts)
    counts[0] += c.immediate
    return _Figures(c.requests, sum(c.errors.values()), c.bytes_in, c.bytes_out, tuple(counts))


def _percentile(counts: list[int], q: float) -> float | None:
    """The upper bound (seconds) of the bucket holding the q-th quantile; None without data.
    The overflow bucket (over the last bound) reports the last bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank and n > 0:
            return LATENCY_BOUNDS[min(i, len(LATENCY_BOUNDS) - 1)]
    return LATENCY_BOUNDS[-1]


class MetricsRing:
    """Samples of named doors' counters, oldest first, at most ``size`` of them."""

    def __init__(self, doors: Mapping[str, ServerCounters], size: int = SAMPLES) -> None:
        self.doors = doors
        self._ring: deque[tuple[float, dict[str, _Figures]]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._ring)

    def take(self, now: float) -> None:
        """Record the doors' figures as they are at ``now`` (seconds, any monotonic clock)."""
        self._ring.append((now, {name: _figures(c) for name, c in self.doors.items()}))

    def series(self, wall_now: float, mono_now: float) -> dict[str, Any]:
        """JSON-ready chart data: per door, one point per interval between samples.

        ``t`` of a point is the wall-clock time (Unix seconds) at the end of its interval,
        computed from the monotonic sample times, so a clock step does not bend the chart.
        Rates are per second; latencies in seconds (None where no request finished).
        """
        samples = list(self._ring)
        out: dict[str, Any] = {"interval": INTERVAL, "doors": {}}
        for name in self.doors:
            points: list[dict[str, Any]] = []
            for (t0, a), (t1, b) in itertools.pairwise(samples):
                fa, fb = a.get(name), b.get(name)
                if fa is None or fb is None or t1 <= t0:
                    continue
                dt = t1 - t0
                hist = [y - x for x, y in zip(fa.latency, fb.latency, strict=True)]
                points.append(
                    {
                        "t": round(wall_now - (mono_now - t1), 3),
                        "rps": (fb.requests - fa.requests) / dt,
                        "eps": (fb.errors - fa.errors) / dt,
                        "in_bps": (fb.bytes_in - fa.bytes_in) / dt,
                        "out_bps": (fb.bytes_out - fa.bytes_out) / dt,
                        "p50": _percentile(hist, 0.5),
                        "p95": _percentile(hist, 0.95),
                        "p99": _percentile(hist, 0.99),
                    }
                )
            out["doors"][name] = points
        return out
