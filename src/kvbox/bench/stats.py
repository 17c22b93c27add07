"""Latency and throughput statistics for the benchmark and the load generator.

Layer: bench (pure). Rules: no I/O, no clocks, no asyncio; inputs are plain numbers so the
functions are exact and testable. Latencies are integers in nanoseconds everywhere (what
``time.perf_counter_ns`` gives), converted to milliseconds only when reported, so sums and
merges never accumulate float error.

Percentiles use the nearest-rank method: the p-th percentile is the smallest sample such
that at least p percent of the samples are at or below it. It always returns a value that
was actually observed (no interpolation), which is what latency reports conventionally show
and what redis-benchmark and wrk print.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

#: The percentiles every report carries (issue 2 §6: p50, p90, p99, p99.9, max).
REPORTED_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)

NS_PER_MS = 1_000_000


def percentile(sorted_samples: Sequence[int], p: float) -> int:
    """The nearest-rank ``p``-th percentile of already sorted samples.

    Sorting is the caller's job so that several percentiles of one large sample cost one
    sort. ``p`` is in (0, 100]; p=100 is the maximum.
    """
    if not sorted_samples:
        raise ValueError("percentile of an empty sample")
    if not 0.0 < p <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    n = len(sorted_samples)
    # rank = ceil(p/100 * n); computed on integers where possible to avoid 0.999...9 traps
    rank = math.ceil(round(p * n, 9) / 100.0)
    return sorted_samples[min(max(rank, 1), n) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency distribution of one run, in milliseconds (floats, for reporting)."""

    count: int
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def split_by_op(samples: Sequence[int], sets: Sequence[int]) -> dict[str, list[int]]:
    """{"GET": ..., "SET": ...}: ``sets`` are the SET replies' latencies, all of them
    also in ``samples`` (both sorted); the GETs are the rest. An op with no samples is
    left out."""
    gets: list[int] = []
    j = 0
    for x in samples:
        if j < len(sets) and sets[j] == x:
            j += 1
            continue
        gets.append(x)
    out = {"GET": gets, "SET": list(sets)}
    return {op: xs for op, xs in out.items() if xs}


def summarize(samples_ns: Iterable[int]) -> LatencySummary | None:
    """Summarize latency samples (ns); ``None`` when there are none (a run with no reply)."""
    ordered = sorted(samples_ns)
    if not ordered:
        return None
    n = len(ordered)
    p50, p90, p99, p999 = (percentile(ordered, p) for p in REPORTED_PERCENTILES)
    return LatencySummary(
        count=n,
        min_ms=ordered[0] / NS_PER_MS,
        mean_ms=sum(ordered) / n / NS_PER_MS,
        p50_ms=p50 / NS_PER_MS,
        p90_ms=p90 / NS_PER_MS,
        p99_ms=p99 / NS_PER_MS,
        p999_ms=p999 / NS_PER_MS,
        max_ms=ordered[-1] / NS_PER_MS,
    )


def merge_bins(per_worker: Iterable[Sequence[int]]) -> list[int]:
    """Add per-worker completion counts bin by bin (workers may have different lengths)."""
    total: list[int] = []
    for bins in per_worker:
        if len(bins) > len(total):
            total.extend([0] * (len(bins) - len(total)))
        for i, count in enumerate(bins):
            total[i] += count
    return total


def timeline(bins: Sequence[int], bin_s: float) -> list[dict[str, float]]:
    """Throughput over time from completion counts per bin of ``bin_s`` seconds.

    Trailing empty bins are dropped; each point is the bin's end time and its rate.
    """
    if bin_s <= 0:
        raise ValueError("bin width must be positive")
    end = len(bins)
    while end and bins[end - 1] == 0:
        end -= 1
    return [
        {"t_s": round((i + 1) * bin_s, 6), "ops": bins[i], "ops_per_s": bins[i] / bin_s}
        for i in range(end)
    ]


def log_histogram(
    samples_ns: Sequence[int], buckets_per_decade: int = 10
) -> list[tuple[float, int]]:
    """Counts of samples in logarithmic buckets: ``[(upper_bound_ms, count), ...]``.

    Latency spans decades (tens of microseconds to seconds), so equal-width buckets would
    put nearly everything in the first one. Empty buckets between the first and last
    non-empty ones are kept, so the result plots as a continuous histogram.
    """
    if buckets_per_decade < 1:
        raise ValueError("buckets_per_decade must be >= 1")
    counts: dict[int, int] = {}
    for s in samples_ns:
        # bucket index b covers (10**((b-1)/k), 10**(b/k)] nanoseconds; 0 and 1 ns go to 0
        b = math.ceil(math.log10(s) * buckets_per_decade - 1e-9) if s > 1 else 0
        counts[b] = counts.get(b, 0) + 1
    if not counts:
        return []
    lo, hi = min(counts), max(counts)
    return [
        (10 ** (b / buckets_per_decade) / NS_PER_MS, counts.get(b, 0)) for b in range(lo, hi + 1)
    ]


class RunningWindow:
    """Latency samples and counters for one reporting interval of the load generator.

    The load generator runs forever, so it must never keep every sample: each interval's
    samples are summarized and dropped. A cap bounds memory even at absurd rates; past it
    the window becomes a ring holding the most recent ``cap`` samples.
    """

    __slots__ = ("_cap", "_seen", "errors", "ops", "samples")

    def __init__(self, cap: int = 200_000) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        self._cap = cap
        self._seen = 0
        self.samples: list[int] = []
        self.ops = 0
        self.errors = 0

    def add(self, latency_ns: int) -> None:
        self.ops += 1
        self._seen += 1
        if len(self.samples) < self._cap:
            self.samples.append(latency_ns)
        else:
            self.samples[self._seen % self._cap] = latency_ns

    def reset(self) -> None:
        self._seen = 0
        self.samples = []
        self.ops = 0
        self.errors = 0
