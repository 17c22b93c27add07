"""How the runner splits clients and operations (kvbox.bench.runner.plan) and parses addresses."""

from __future__ import annotations

import pytest

from kvbox.bench.address import parse_server
from kvbox.bench.runner import BenchConfig, plan, split_evenly


def test_split_evenly() -> None:
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(2, 4) == [1, 1, 0, 0]
    assert sum(split_evenly(10_001, 7)) == 10_001


@pytest.mark.parametrize(
    ("clients", "ops", "procs", "mode", "pipeline"),
    [
        (50, 10_000, 2, "persistent", 16),
        (50, 10_000, 2, "conn", 1),
        (3, 10, 8, "persistent", 4),
        (7, 1001, 3, "persistent", 1),
        (1, 1, 1, "conn", 1),
    ],
)
def test_plan_covers_every_client_and_at_least_ops(
    clients: int, ops: int, procs: int, mode: str, pipeline: int
) -> None:
    cfg = BenchConfig(clients=clients, ops=ops, procs=procs, mode=mode,  # type: ignore[arg-type]
                      pipeline=pipeline)  # fmt: skip
    specs = plan(cfg)
    assert len(specs) == min(procs, clients)
    assert sum(len(s.client_ops) for s in specs) == clients
    total = sum(sum(s.client_ops) for s in specs)
    assert ops <= total < ops + pipeline
    for s in specs:
        assert all(n % cfg.unit == 0 for n in s.client_ops)
    assert [s.index for s in specs] == list(range(len(specs)))


def test_plan_is_exact_when_ops_divide() -> None:
    specs = plan(BenchConfig(clients=50, ops=10_000, procs=2, pipeline=16))
    assert sum(sum(s.client_ops) for s in specs) == 10_000


def test_plan_warmup_is_a_whole_number_of_round_trips() -> None:
    specs = plan(BenchConfig(clients=10, ops=1000, pipeline=8, warmup=True))
    assert all(s.warmup_ops > 0 and s.warmup_ops % 8 == 0 for s in specs)
    assert all(s.warmup_ops == 0 for s in plan(BenchConfig(clients=10, ops=1000)))


@pytest.mark.parametrize(
    "kwargs",
    [{"clients": 0}, {"ops": 0}, {"mode": "udp"}, {"mode": "conn", "pipeline": 4},
     {"timeout_s": 0}],
)  # fmt: skip
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BenchConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7070", ("127.0.0.1", 7070)),
        ("localhost", ("localhost", 7070)),
        ("kvbox:9000", ("kvbox", 9000)),
        ("[::1]:7171", ("::1", 7171)),
        ("[::1]", ("::1", 7070)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["", ":7070", "host:", "host:0", "host:70000", "::1:70",
                                  "[::1", "[::1]x", "host:abc"])  # fmt: skip
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_server(text)
