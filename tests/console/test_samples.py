"""The dashboard's ring of counter samples: rates and percentiles between samples."""

from __future__ import annotations

import pytest

from kvbox.console.samples import MetricsRing
from kvbox.metrics import LATENCY_BOUNDS, ServerCounters


def test_points_are_rates_between_neighbouring_samples() -> None:
    c = ServerCounters()
    ring = MetricsRing({"s3": c}, size=10)
    ring.take(100.0)
    c.requests += 20
    c.errors["NoSuchKey"] += 4
    c.bytes_in += 2000
    for _ in range(18):
        c.latency.observe(0.0004)  # in the 0.0005 s bucket
    c.latency.observe(0.2)
    c.latency.observe(0.2)  # two slow ones: the 95th percentile is in the 0.25 s bucket
    ring.take(102.0)
    out = ring.series(wall_now=1_000_000.0, mono_now=103.0)
    (point,) = out["doors"]["s3"]
    assert point["rps"] == pytest.approx(10.0)
    assert point["eps"] == pytest.approx(2.0)
    assert point["in_bps"] == pytest.approx(1000.0)
    assert point["p50"] == 0.0005
    assert point["p95"] == 0.25
    assert point["t"] == pytest.approx(999_999.0)  # 102 is one second before "now" (103)


def test_no_requests_means_no_latency_and_the_ring_is_bounded() -> None:
    c = ServerCounters()
    ring = MetricsRing({"gwkv": c}, size=3)
    for t in range(5):
        ring.take(float(t))
    assert len(ring) == 3
    points = ring.series(wall_now=10.0, mono_now=4.0)["doors"]["gwkv"]
    assert len(points) == 2
    assert all(p["rps"] == 0 and p["p95"] is None for p in points)


def test_immediate_answers_count_in_the_lowest_bucket_and_overflow_in_the_last() -> None:
    c = ServerCounters()
    ring = MetricsRing({"gwkv": c}, size=5)
    ring.take(0.0)
    c.immediate += 99
    c.latency.observe(60.0)  # beyond every bound
    ring.take(1.0)
    (point,) = ring.series(wall_now=1.0, mono_now=1.0)["doors"]["gwkv"]
    assert point["p50"] == LATENCY_BOUNDS[0]
    assert point["p99"] == LATENCY_BOUNDS[0]
    c.latency.observe(60.0)
    ring.take(2.0)
    last = ring.series(wall_now=2.0, mono_now=2.0)["doors"]["gwkv"][-1]
    assert last["p50"] == LATENCY_BOUNDS[-1]
