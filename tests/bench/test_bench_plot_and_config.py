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
