"""Percentiles, summaries, histograms and timelines of kvbox.bench.stats."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvbox.bench.stats import (
    NS_PER_MS,
    RunningWindow,
    log_histogram,
    merge_bins,
    percentile,
    summarize,
    timeline,
)


def test_percentile_nearest_rank_on_one_to_hundred() -> None:
    data = list(range(1, 101))
    assert percentile(data, 50) == 50
    assert percentile(data, 90) == 90
    assert percentile(data, 99) == 99
    assert percentile(data, 99.9) == 100
    assert percentile(data, 100) == 100
    assert percentile(data, 0.5) == 1


def test_percentile_small_samples() -> None:
    assert percentile([7], 50) == 7
    assert percentile([7], 99.9) == 7
    # two samples: p50 is the first (1 of 2 samples is <= it), p51 the second
    assert percentile([1, 2], 50) == 1
    assert percentile([1, 2], 51) == 2


def test_percentile_of_exact_boundaries_is_not_fooled_by_float_error() -> None:
    # 99.9 * 1000 / 100 is 999.0000000000001 in floats; the rank must still be 999
    data = list(range(1, 1001))
    assert percentile(data, 99.9) == 999
    data = list(range(1, 10_001))
    assert percentile(data, 99.9) == 9990
    assert percentile(data, 99.99) == 9999


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_percentile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1, 2, 3], p)


def test_percentile_rejects_empty() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=300),
       st.floats(min_value=0.01, max_value=100.0))  # fmt: skip
def test_percentile_definition(samples: list[int], p: float) -> None:
    """The result is a sample, at least p% of samples are <= it, and fewer are < it."""
    ordered = sorted(samples)
    v = percentile(ordered, p)
    assert v in samples
    n = len(ordered)
    at_or_below = sum(1 for s in ordered if s <= v)
    below = sum(1 for s in ordered if s < v)
    assert at_or_below >= p / 100 * n - 1e-6
    assert below < math.ceil(p / 100 * n - 1e-9) or below == 0


def test_summarize() -> None:
    samples = [i * NS_PER_MS for i in range(1, 1001)]  # 1..1000 ms, unsorted input is fine
    s = summarize(reversed(samples))
    assert s is not None
    assert s.count == 1000
    assert s.min_ms == 1.0
    assert s.max_ms == 1000.0
    assert s.p50_ms == 500.0
    assert s.p90_ms == 900.0
    assert s.p99_ms == 990.0
    assert s.p999_ms == 999.0
    assert s.mean_ms == pytest.approx(500.5)
    assert set(s.as_dict()) == {
        "count", "min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"
    }  # fmt: skip


def test_summarize_empty_is_none() -> None:
    assert summarize([]) is None


def test_merge_bins_of_unequal_lengths() -> None:
    assert merge_bins([[1, 2], [3], [0, 0, 5]]) == [4, 2, 5]
    assert merge_bins([]) == []


def test_timeline_drops_trailing_empty_bins_and_scales_to_rate() -> None:
    points = timeline([10, 0, 20, 0, 0], 0.1)
    assert [p["ops"] for p in points] == [10, 0, 20]
    assert [p["t_s"] for p in points] == [0.1, 0.2, 0.3]
    assert points[2]["ops_per_s"] == pytest.approx(200.0)
    with pytest.raises(ValueError):
        timeline([1], 0)


def test_log_histogram_counts_everything_in_contiguous_buckets() -> None:
    samples = [50_000, 60_000, 1_000_000, 1_000_001, 30_000_000]
    buckets = log_histogram(samples, buckets_per_decade=10)
    assert sum(n for _, n in buckets) == len(samples)
    bounds = [b for b, _ in buckets]
    assert bounds == sorted(bounds)
    # contiguous: consecutive bounds differ by one bucket width (a factor of 10**0.1)
    for lo, hi in itertools.pairwise(bounds):
        assert hi / lo == pytest.approx(10**0.1)
    # every sample is at or below its bucket's upper bound and above the previous one
    for s in samples:
        ms = s / NS_PER_MS
        i = next(i for i, b in enumerate(bounds) if ms <= b * (1 + 1e-9))
        assert i == 0 or ms > bounds[i - 1]
    assert log_histogram([]) == []


def test_running_window_is_bounded_and_resets() -> None:
    w = RunningWindow(cap=100)
    for i in range(1000):
        w.add(i)
    assert w.ops == 1000
    assert len(w.samples) == 100
    # a ring: the most recent samples are kept
    assert 999 in w.samples
    w.errors = 3
    w.reset()
    assert (w.ops, w.errors, w.samples) == (0, 0, [])
