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
SUBCOMMANDS = (
    "serve",
    "migrate",
    "client",
    "bench",
    "loadgen",
    "fsck",
    "health",
    "admin",
    "policy",
    "blobnode",
    "migrate-to-cluster",
)


#: What ``kvbox --help`` says kvbox is, before the list of subcommands.
DESCRIPTION = """\
kvbox is a versioned key-value and object store in one process. `kvbox serve` runs it:
GW-KV, a line-based key-value protocol over TCP and UDP (port 7070: SET, GET, BSET,
MULTIGET, CAS, GETAT, ...); the S3 API on HTTP (port 9000, with /healthz, /readyz and
/metrics beside it), usable with the AWS CLI, boto3, s3cmd or rclone; a web console for
people at http://127.0.0.1:9000/console/; and, with --web-port, buckets served as static
websites. Every write is durable before it is
acknowledged and every key keeps a version id. The other commands talk to a server
(client, bench, loadgen, health, admin, policy) or check its data directory (fsck).
"""

_EPILOG = "Run `kvbox COMMAND --help` for a command's flags. Docs: README.md and docs/."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvbox",
        description=DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kvbox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"kvbox.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kvbox.cli.{name.replace('-', '_')}":
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
