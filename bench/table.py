#!/usr/bin/env python3
"""Render ``kvbox bench --json`` reports as one Markdown table (for docs/benchmarks.md).

python bench/table.py RESULTS_DIR/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    print(
        "| run | op | shape | ops | ops/s | p50 ms | p99 ms | p99.9 ms | max ms "
        "| server µs/req | client µs/op | errors |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in sys.argv[1:]:
        r = json.loads(Path(name).read_text())
        cfg = r["config"]
        shape = (
            "one request per connection"
            if cfg["mode"] == "conn"
            else f"persistent, pipeline {cfg['pipeline']}"
        )
        lat = r["latency_ms"] or {}
        server = r["server"].get("cpu_us_per_request")
        client = r["client"].get("cpu_us_per_op")
        print(
            f"| {Path(name).stem} | {cfg['op'].upper()} | {shape} | {r['ops']:,} "
            f"| {r['throughput_ops_s']:,.0f} | {lat.get('p50_ms', 0):.2f} "
            f"| {lat.get('p99_ms', 0):.2f} | {lat.get('p999_ms', 0):.2f} "
            f"| {lat.get('max_ms', 0):.2f} "
            f"| {'n/a' if server is None else f'{server:.1f}'} "
            f"| {'n/a' if client is None else f'{client:.1f}'} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
