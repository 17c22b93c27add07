"""The --plot dependency check and the load generator's argument validation."""

from __future__ import annotations

import sys

import pytest

from kvbox.bench.loadgen import LoadgenConfig
from kvbox.bench.plot import PlotUnavailable, require_matplotlib


def test_missing_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # a None entry in sys.modules makes ``import matplotlib`` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable, match=r"kvbox\[plot\]"):
        require_matplotlib()


def test_matplotlib_present_gives_pyplot_on_agg() -> None:
    plt = require_matplotlib()
    assert plt.get_backend().lower() == "agg"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"duration_s": -1}, "duration"),
        ({"keys": 0}, "keys"),
        ({"value_size": -1}, "value size"),
        ({"set_ratio": 2}, "set ratio"),
        ({"report_every_s": 0}, "report"),
        ({"key_prefix": "lg-1"}, "prefix"),
        ({"key_prefix": "x" * 60}, "too long"),
        ({"log_format": "xml"}, "log format"),
        ({"max_in_flight": 0}, "in flight"),
    ],
)
def test_loadgen_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadgenConfig(**kwargs)  # type: ignore[arg-type]


def test_loadgen_binary_values_above_text_limit() -> None:
    assert not LoadgenConfig(value_size=1024).binary
    assert LoadgenConfig(value_size=1025).binary


def test_split_by_op_and_whole_bins() -> None:
    from kvbox.bench.plot import full_bins
    from kvbox.bench.stats import split_by_op

    everything = sorted([5, 1, 3, 3, 9, 7])
    sets = [3, 9]
    assert split_by_op(everything, sets) == {"GET": [1, 3, 5, 7], "SET": [3, 9]}
    assert split_by_op([1, 2], []) == {"GET": [1, 2]}
    # 2.05 s of a run: 20 whole 100 ms bins; the 21st, cut short as clients drained, goes.
    bins = [100] * 20 + [7]
    assert full_bins(bins, 2.05) == [100] * 20
    assert full_bins(bins, 2.1) == bins
    assert full_bins([3], 0.01) == [3]  # a run shorter than a bin still shows its one bin


def test_plot_draws_labelled_get_and_set_histograms() -> None:
    """The histogram axis has one labelled series per op and a legend naming both."""
    import matplotlib.pyplot as plt

    from kvbox.bench.plot import _histogram

    fig, ax = plt.subplots()
    _histogram(ax, {"GET": [1_000_000, 2_000_000] * 50, "SET": [4_000_000] * 30})
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    plt.close(fig)
    assert len(labels) == 2
    assert labels[0].startswith("GET: 100 requests") and labels[1].startswith("SET: 30 requests")
