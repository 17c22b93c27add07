"""``kvbox bench``: drive a running server and report throughput, latency and CPU per request.

Layer: cli. Rules: argument parsing and output only; the work is in kvbox.bench.runner.
Exit status: 0 when every operation succeeded, 1 when any failed, the run timed out or the
server could not be reached, 2 for bad arguments (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kvbox.bench.address import parse_server
from kvbox.bench.worker import MODES
from kvbox.bench.workload import OPS, Workload


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="benchmark a running server (throughput, latency, CPU per request)",
        description=(
            "Drive a running kvbox server with concurrent clients for a fixed number of "
            "operations and report throughput, latency percentiles, errors and CPU time per "
            "request. Bounded: stops after --ops operations or --timeout seconds."
        ),
    )
    p.add_argument(
        "--server",
        default=os.environ.get("KVBOX_SERVER", "127.0.0.1:7070"),
        metavar="HOST:PORT",
        help="GW-KV address of the server (env KVBOX_SERVER; default %(default)s)",
    )
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument(
        "--ops", type=int, default=10_000, help="operations in total, at least (default 10000)"
    )
    p.add_argument("--op", choices=OPS, default="set", help="operation (default set)")
    p.add_argument(
        "--set-ratio", type=float, default=0.5, help="share of SETs with --op mix (default 0.5)"
    )
    p.add_argument(
        "--value-size",
        type=int,
        default=1024,
        metavar="BYTES",
        help="value size; over 1024 uses BSET/BGET (default 1024)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="persistent",
        help="conn: one request per connection; persistent: kept connections (default)",
    )
    p.add_argument(
        "--pipeline", type=int, default=None, help="requests in flight per connection "
        "(persistent mode; default 1)"
    )  # fmt: skip
    p.add_argument(
        "--procs",
        type=int,
        default=os.cpu_count() or 1,
        help="load generator processes (default: CPU count, %(default)s)",
    )
    p.add_argument("--keys", type=int, default=10_000, help="distinct keys (default 10000)")
    p.add_argument("--key-prefix", default="bench", help="key prefix (default bench)")
    p.add_argument(
        "--warmup",
        action="store_true",
        help="run 10%% of --ops unmeasured first (keys for GET are always populated)",
    )
    p.add_argument(
        "--no-populate",
        action="store_true",
        help="do not write the keys before a get/mix run (GETs may then be NOTFOUND)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="stop after S seconds (300)")
    p.add_argument("--seed", type=int, default=1, help="seed for keys and values")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw latency and throughput (matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--one-source",
        action="store_true",
        help="conn mode: every client connects from one address (default: each client "
        "from its own 127.x address when the server is on 127.x, so client-side TIME_WAIT "
        "sockets don't make connect() the bottleneck)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kvbox.bench import runner

    try:
        host, port = parse_server(args.server)
        pipeline = args.pipeline if args.pipeline is not None else 1
        config = runner.BenchConfig(
            host=host,
            port=port,
            clients=args.clients,
            ops=args.ops,
            mode=args.mode,
            pipeline=pipeline,
            procs=args.procs,
            workload=Workload(
                op=args.op,
                value_size=args.value_size,
                keys=args.keys,
                set_ratio=args.set_ratio,
                key_prefix=args.key_prefix,
            ),
            warmup=args.warmup,
            populate=False if args.no_populate else None,
            timeout_s=args.timeout,
            seed=args.seed,
            spread_sources=not args.one_source,
        )
    except ValueError as exc:
        print(f"kvbox bench: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        from kvbox.bench.plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()  # fail before the run, not after it
        except PlotUnavailable as exc:
            print(f"kvbox bench: {exc}", file=sys.stderr)
            return 2
    try:
        report = runner.run(config, progress=None if args.quiet else sys.stderr)
    except runner.BenchError as exc:
        print(f"kvbox bench: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2) + "\n")
        print(f"  json        {args.json}")
    if args.plot:
        from kvbox.bench.plot import plot_report

        plot_report(report, args.plot)
        print(f"  plot        {args.plot}")
    failed = report.errors > 0 or report.timed_out or report.replies < config.ops
    return 1 if failed else 0
