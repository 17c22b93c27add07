"""``kvbox bench`` against a real ``kvbox serve``: JSON report, plot, shapes, failures.

Layer: tests/e2e. Rules: the benchmark runs as a user would run it (``python -m kvbox bench``
in a child process) against a server started by the KvboxServer helper; runs are small (a
few thousand operations) except the one run of exactly 10,000 operations, persistent and
pipelined, that issue 2 §6 names as the benchmark's definition. Each test is bounded.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from _ports import free_port

from ._server import KvboxServer, run_kvbox

pytestmark = pytest.mark.timeout(120)


def _bench(server: KvboxServer, tmp_path: Path, *args: str, name: str = "run") -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    proc = run_kvbox(
        "bench", "--server", server.addr, "--procs", "2", "--json", str(out), *args, timeout=90
    )
    text = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, text
    assert "throughput" in proc.stdout.decode()
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _check_report(report: dict[str, Any], ops: int) -> None:
    assert report["ops"] >= ops
    assert report["ok"] + report["notfound"] + report["errors"] == report["ops"]
    assert report["errors"] == 0, report["error_samples"]
    assert report["complete"] is True
    assert report["timed_out"] is False
    assert report["elapsed_s"] > 0
    assert report["throughput_ops_s"] == pytest.approx(report["ops"] / report["elapsed_s"])
    lat = report["latency_ms"]
    assert lat["count"] == report["ops"]
    assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["p99_ms"] <= lat["p999_ms"] <= lat["max_ms"]
    # the server reports its CPU (docs/protocol.md INFO): CPU per request is positive
    server = report["server"]
    assert server["reported"] is True
    assert server["requests"] >= report["ops"]
    assert server["cpu_s"] > 0
    assert 0 < server["cpu_us_per_request"] < 100_000
    assert report["client"]["cpu_s"] > 0
    # the timeline accounts for every operation
    assert sum(p["ops"] for p in report["timeline"]) == report["ops"]
    assert sum(b["count"] for b in report["histogram_ms"]) == report["ops"]


def _assert_valid_png(path: Path) -> None:
    """Signature, IHDR first with a non-empty size, IEND last, every chunk's CRC right."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos = 8
    kinds: list[bytes] = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            assert width > 100 and height > 100
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds


def test_exactly_10000_ops_persistent_pipelined(server: KvboxServer, tmp_path: Path) -> None:
    report = _bench(
        server, tmp_path,
        "--clients", "50", "--ops", "10000", "--op", "set", "--value-size", "1024",
        "--mode", "persistent", "--pipeline", "16", "--keys", "500",
    )  # fmt: skip
    _check_report(report, 10_000)
    assert report["ops"] == 10_000  # 10,000 = 625 batches of 16: exact, not rounded up
    cfg = report["config"]
    assert (cfg["clients"], cfg["pipeline"], cfg["mode"]) == (50, 16, "persistent")
    assert report["ok"] == 10_000
    # the writes really happened: 10,000 random picks of 500 keys touch (almost) all
    assert server.stats() >= 490
    with server.connect() as w:
        reply = w.request(b"GET bench00000007\n")
    assert reply.startswith(b"VALUE ") and len(reply) == len(b"VALUE \n") + 1024


def test_conn_mode_mix_with_plot(server: KvboxServer, tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    report = _bench(
        server, tmp_path,
        "--clients", "10", "--ops", "2000", "--op", "mix", "--set-ratio", "0.3",
        "--value-size", "100", "--mode", "conn", "--keys", "200", "--plot", str(png),
    )  # fmt: skip
    _check_report(report, 2000)
    assert report["populated_keys"] == 200  # GETs hit: the keys were written first
    assert report["notfound"] == 0
    assert report["config"]["mode"] == "conn"
    by_op = report["latency_ms_by_op"]  # what the plot draws as two labelled histograms
    assert set(by_op) == {"GET", "SET"}
    assert by_op["GET"]["count"] + by_op["SET"]["count"] == report["latency_ms"]["count"]
    assert 0.2 < by_op["SET"]["count"] / report["latency_ms"]["count"] < 0.4
    _assert_valid_png(png)


def test_get_with_warmup_and_binary_values(server: KvboxServer, tmp_path: Path) -> None:
    # values over the 1 KB text limit go through BSET/BGET and their length-prefixed replies
    report = _bench(
        server, tmp_path,
        "--clients", "8", "--ops", "1000", "--op", "get", "--value-size", "3000",
        "--pipeline", "4", "--keys", "100", "--warmup",
    )  # fmt: skip
    _check_report(report, 1000)
    assert report["ok"] == report["ops"]  # every GET found a value of the right length
    assert report["config"]["warmup"] is True


def test_unreachable_server_fails_fast(tmp_path: Path) -> None:
    proc = run_kvbox("bench", "--server", f"127.0.0.1:{free_port()}", "--ops", "100", timeout=30)
    assert proc.returncode == 1
    assert b"refused" in proc.stderr


def test_bad_arguments_are_usage_errors() -> None:
    proc = run_kvbox("bench", "--mode", "conn", "--pipeline", "8", timeout=30)
    assert proc.returncode == 2
    assert b"persistent" in proc.stderr
