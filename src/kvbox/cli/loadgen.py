"""``kvbox loadgen``: a SET/GET load at a target rate, forever or for ``--duration``.

Layer: cli. Rules: argument parsing only; the work is in kvbox.bench.loadgen. Every flag can
come from a ``KVBOX_LOADGEN_<FLAG>`` environment variable (containers are configured through
the environment), and ``--server`` also from ``KVBOX_SERVER``. Exit status: 0 after a stop
signal or the end of ``--duration`` (failures are counted and logged, not fatal: the point is
to keep running while the server restarts), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kvbox.bench.address import parse_server


def _env(flag: str, default: str | None) -> str | None:
    # a string default goes through the argument's ``type`` like a command-line value, so
    # a bad environment value is a usage error of ``kvbox loadgen``, not a crash of ``kvbox``
    return os.environ.get(f"KVBOX_LOADGEN_{flag.upper().replace('-', '_')}", default)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "loadgen",
        help="generate a steady SET/GET load and log throughput and latency",
        description=(
            "Issue a mix of SET and GET at a target rate against a server, forever or for "
            "--duration seconds, logging one line of throughput, latency and errors every "
            "--report-every seconds. Reconnects with backoff when the server goes away. "
            "Environment: KVBOX_LOADGEN_<FLAG> for any flag, KVBOX_SERVER for --server."
        ),
    )
    p.add_argument(
        "--server",
        default=_env("server", os.environ.get("KVBOX_SERVER", "127.0.0.1:7070")),
        metavar="HOST:PORT",
        help="GW-KV address of the server (default %(default)s)",
    )
    p.add_argument("--rate", type=float, default=_env("rate", "100"),
                   help="target operations per second (default %(default)s)")  # fmt: skip
    p.add_argument("--duration", type=float, default=_env("duration", None),
                   help="stop after S seconds (default: run until SIGTERM/SIGINT)")  # fmt: skip
    p.add_argument("--keys", type=int, default=_env("keys", "1000"),
                   help="distinct keys (default %(default)s)")  # fmt: skip
    p.add_argument("--value-size", type=int, default=_env("value-size", "100"),
                   metavar="BYTES", help="value size (default %(default)s)")  # fmt: skip
    p.add_argument("--set-ratio", type=float, default=_env("set-ratio", "0.5"),
                   help="share of SETs (default %(default)s)")  # fmt: skip
    p.add_argument("--report-every", type=float,
                   default=_env("report-every", "5"),
                   help="seconds between report lines (default %(default)s)")  # fmt: skip
    p.add_argument("--key-prefix", default=_env("key-prefix", "lg"),
                   help="key prefix, letters and digits (default %(default)s)")  # fmt: skip
    p.add_argument("--log-format", choices=("plain", "json"),
                   default=_env("log-format", os.environ.get("KVBOX_LOG_FORMAT", "plain")),
                   help="log lines as plain text or JSON (default %(default)s)")  # fmt: skip
    p.add_argument("--ack-log", type=Path, default=_env("ack-log", None), metavar="FILE",
                   help="append 'key version sha256' for every acknowledged SET")  # fmt: skip
    p.add_argument("--max-in-flight", type=int,
                   default=_env("max-in-flight", "1000"),
                   help="requests awaiting replies at most (default %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="seed for keys and values")
    p.add_argument("--access-key", default=_env("access-key", None), metavar="KEY",
                   help="authenticate each connection as this kvbox key (GW-KV AUTH, for a "
                   "server with --kv-auth)")  # fmt: skip
    p.add_argument("--secret-key-file", default=_env("secret-key-file", None), metavar="PATH",
                   help="the secret key for --access-key, read from this file (or set "
                   "KVBOX_LOADGEN_SECRET_KEY)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kvbox.bench import loadgen

    try:
        host, port = parse_server(args.server)
        secret = os.environ.get("KVBOX_LOADGEN_SECRET_KEY")
        if args.secret_key_file:
            secret = Path(args.secret_key_file).read_text().rstrip("\r\n")
        config = loadgen.LoadgenConfig(
            host=host,
            port=port,
            rate=args.rate,
            duration_s=args.duration,
            keys=args.keys,
            value_size=args.value_size,
            set_ratio=args.set_ratio,
            report_every_s=args.report_every,
            key_prefix=args.key_prefix,
            log_format=args.log_format,
            ack_log=Path(args.ack_log) if args.ack_log else None,
            max_in_flight=args.max_in_flight,
            seed=args.seed,
            access_key=args.access_key or None,
            secret_key=secret if args.access_key else None,
        )
    except (ValueError, OSError) as exc:
        print(f"kvbox loadgen: {exc}", file=sys.stderr)
        return 2
    loadgen.run(config)
    return 0
