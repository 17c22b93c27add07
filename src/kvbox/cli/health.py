"""``kvbox health``: exit 0 if a server answers, for container HEALTHCHECKs and scripts.

Layer: cli. Rules: stdlib sockets only and a short timeout, so a health probe never hangs
longer than the orchestrator's own timeout. ``--wait`` retries for scripts that have just
started a server in the background (``kvbox serve &``) and must not race its start-up.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from kvbox.cli.serve import env_default


def _split(server: str, default_port: int) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or "]" in port or (host.count(":") and not host.startswith("[")):
        return server.strip("[]"), default_port
    return host.strip("[]"), int(port)


def add_parser(sub: Any) -> None:
    ap: argparse.ArgumentParser = sub.add_parser(
        "health", help="check that a server answers (exit 0) or not (exit 1)"
    )
    ap.add_argument(
        "--server",
        default=f"127.0.0.1:{env_default('kv-port', 7070)}",
        help="GW-KV address to PING (default %(default)s)",
    )
    ap.add_argument(
        "--http", metavar="URL", help="check this URL instead, e.g. http://127.0.0.1:9000/readyz"
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="give up on one check after this long (default %(default)s)",
    )
    ap.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry until the server answers or this long has passed, e.g. right after "
        "starting it in the background (default %(default)s: check once)",
    )
    ap.set_defaults(func=run)


#: Seconds between two checks under ``--wait``.
_RETRY_EVERY = 0.1


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + max(0.0, args.wait)
    while True:
        problem = _check(args)
        if problem is None:
            print("healthy")
            return 0
        if time.monotonic() >= deadline:
            print(f"kvbox health: unhealthy: {problem}", file=sys.stderr)
            return 1
        time.sleep(_RETRY_EVERY)


def _check(args: argparse.Namespace) -> str | None:
    """None if the server answered as a healthy one does, else what went wrong."""
    try:
        if args.http:
            with urllib.request.urlopen(args.http, timeout=args.timeout) as resp:
                ok = resp.status == 200
        else:
            host, port = _split(args.server, 7070)
            with socket.create_connection((host, port), timeout=args.timeout) as sock:
                sock.sendall(b"PING\n")
                ok = sock.recv(64).startswith(b"OK PONG")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return str(exc)
    return None if ok else "unexpected answer"
