"""``kvbox bench --plot``: latency distribution and throughput over time as one PNG.

Layer: bench (output). Rules: matplotlib is an optional dependency (``kvbox[plot]``), so it
is imported only here, lazily, and its absence is a clear ``PlotUnavailable`` that the CLI
reports before the benchmark starts rather than after it ran. The Agg backend is forced:
the benchmark runs on servers without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvbox.bench.runner import BIN_S, BenchReport
from kvbox.bench.stats import NS_PER_MS, log_histogram, percentile, split_by_op, timeline

#: Percentile points of the CDF panel, denser in the tail where latency is interesting.
_CDF_POINTS: tuple[float, ...] = tuple(
    [p / 10 for p in range(1, 1000)] + [99.9 + i / 100 for i in range(1, 10)] + [100.0]
)


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def require_matplotlib() -> Any:
    """Import matplotlib's pyplot on the Agg backend, or raise PlotUnavailable."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed: pip install 'kvbox[plot]'"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_report(report: BenchReport, path: str | Path) -> Path:
    """Draw the report's latency histograms (GET and SET apart), latency CDF and
    throughput timeline."""
    plt = require_matplotlib()
    samples = sorted(report.samples_ns)
    sets = sorted(report.set_samples_ns)
    cfg = report.config
    fig, (ax_hist, ax_cdf, ax_tput) = plt.subplots(3, 1, figsize=(9, 11))
    shape = (
        f"persistent, pipeline {cfg.pipeline}"
        if cfg.mode == "persistent"
        else ("one request per connection")
    )
    fig.suptitle(
        f"kvbox bench: {cfg.workload.op}, {cfg.workload.value_size} B values, "
        f"{cfg.clients} clients, {shape}\n"
        f"{report.replies:,} ops, {report.throughput:,.0f} ops/s, errors {report.errors:,}"
    )
    _histogram(ax_hist, split_by_op(samples, sets))
    _cdf(ax_cdf, samples)
    _throughput(ax_tput, report.bins, report.elapsed_s)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
    return out


#: Colours of the ops' histograms.
_COLOURS = {"GET": "tab:blue", "SET": "tab:orange"}


def _histogram(ax: Any, by_op: dict[str, list[int]]) -> None:
    """One histogram per op on one log axis, each labelled with its count and median."""
    drawn = False
    for op, samples in by_op.items():
        buckets = log_histogram(samples, buckets_per_decade=20)
        if not buckets:
            continue
        bounds = [b for b, _ in buckets]
        lows = [bounds[0] / 10 ** (1 / 20), *bounds[:-1]]
        median = percentile(samples, 50.0) / NS_PER_MS
        ax.bar(
            lows,
            [n for _, n in buckets],
            width=[hi - lo for lo, hi in zip(lows, bounds, strict=True)],
            align="edge",
            color=_COLOURS.get(op, "tab:grey"),
            alpha=0.6,
            label=f"{op}: {len(samples):,} requests, p50 {median:.2f} ms",
        )
        drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.legend(loc="upper right")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("requests")
    ax.set_title("latency distribution, by operation")
    ax.grid(True, which="both", alpha=0.3)


def _cdf(ax: Any, samples: Sequence[int]) -> None:
    if samples:
        lat = [percentile(samples, p) / NS_PER_MS for p in _CDF_POINTS]
        # x axis: "nines" so the tail is readable: 1 / (1 - p)
        xs = [1.0 / max(1e-6, 1.0 - p / 100.0) for p in _CDF_POINTS]
        ax.plot(xs, lat, color="tab:red")
        ax.set_xscale("log")
        ticks = [1, 2, 10, 100, 1000, 10000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99"])
        ax.set_xlim(1, 10000)
        for p in (50.0, 99.0, 99.9):
            ax.annotate(
                f"p{p:g} {percentile(samples, p) / NS_PER_MS:.2f} ms",
                (1.0 / (1.0 - p / 100.0), percentile(samples, p) / NS_PER_MS),
                textcoords="offset points",
                xytext=(-10, 8),
                fontsize=8,
            )
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency by percentile")
    ax.grid(True, which="both", alpha=0.3)


def full_bins(bins: Sequence[int], elapsed_s: float) -> list[int]:
    """The throughput bins the run filled: the last one, cut short by the end of the run
    while the clients drained, would otherwise be drawn as a drop nobody saw."""
    whole = int(elapsed_s / BIN_S + 1e-9)
    return list(bins[: max(1, min(len(bins), whole))]) if bins else []


def _throughput(ax: Any, bins: Sequence[int], elapsed_s: float) -> None:
    points = timeline(full_bins(bins, elapsed_s), BIN_S)
    if points:
        ax.plot(
            [p["t_s"] for p in points],
            [p["ops_per_s"] for p in points],
            color="tab:green",
            label="all operations",
        )
        ax.legend(loc="lower right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ops/s (100 ms bins)")
    ax.set_title("throughput over time (whole 100 ms bins: the last, partial one is left out)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
