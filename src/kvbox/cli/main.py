"""The ``kvbox`` command: one entry point, one module per subcommand.

Layer: cli. Each subcommand module exposes ``add_parser(subparsers)`` (registering its
options, with ``KVBOX_<FLAG>`` environment defaults where it has server flags) and the parser
it registers carries ``func=run`` where ``run(args) -> int`` is the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kvbox import __version__

#: Subcommand modules under kvbox.cli, in the order ``kvbox --help`` lists them.
SUBCOMMANDS = ("serve", "client", "bench", "loadgen", "fsck", "health", "admin", "policy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvbox", description="A versioned key-value and object store."
    )
    parser.add_argument("--version", action="version", version=f"kvbox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"kvbox.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kvbox.cli.{name}":
                raise
            continue  # subcommand not built yet
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
