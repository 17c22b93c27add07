"""``kvbox --help`` and every subcommand's flags: each says what it is for.

Layer: tests/cli. Rules: walks the real parser ``kvbox`` builds, so a flag added without
help text fails here, whichever subcommand it is in.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

from kvbox import __version__
from kvbox.cli.main import SUBCOMMANDS, build_parser


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))
        else:
            yield path, action


def test_every_flag_and_argument_has_help() -> None:
    missing = [
        f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        for path, action in _walk(build_parser(), ("kvbox",))
        if action.help != argparse.SUPPRESS
        and (action.help is None or not action.help.strip() or action.help.strip() == "%(default)s")
    ]
    assert missing == [], f"flags without help text: {missing}"


def test_every_subcommand_is_built_and_described() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert all(helps.get(name) for name in SUBCOMMANDS), helps


def test_kvbox_help_says_what_kvbox_is() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kvbox", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for words in ("key-value", "object store", "GW-KV", "S3", "console", "serve", "fsck", "--help"):
        assert words in text, f"{words!r} missing from kvbox --help:\n{text}"
    version = subprocess.run(
        [sys.executable, "-m", "kvbox", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"kvbox {__version__}"
