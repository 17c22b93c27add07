"""The folder tree is the architecture: these tests keep its import rules true.

Rules (docs/ARCHITECTURE.md):

* The pure layers -- ``proto/`` (codecs), ``auth/`` (signatures), ``policy/`` (access
  decisions) and ``s3/`` (the S3 protocol) -- do no I/O of their own: they import no
  asyncio (nor aiohttp or uvloop) and nothing from the storage core, the servers, the
  front doors or the programs built on them.
* ``core/`` (storage) knows no protocol and no program: nothing from ``s3/``,
  ``s3door/``, ``kv/``, ``server/``, ``console/``, ``cli/``, ``client/`` or ``bench/``.
* Top-level packages import each other without cycles, so each can be read, tested and
  replaced from the bottom up.

Imports are read with ``ast`` from the source, every one of them: at module level, inside
functions and under ``TYPE_CHECKING`` alike (a type-only import is still a dependency of
the reader).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import kvbox

SRC = Path(kvbox.__file__).parent

PURE = ("proto", "auth", "policy", "s3")
#: What the pure layers may not import (a module or any of its submodules).
NOT_IN_PURE = (
    "asyncio",
    "aiohttp",
    "uvloop",
    "kvbox.core",
    "kvbox.server",
    "kvbox.s3door",
    "kvbox.kv",
    "kvbox.console",
    "kvbox.cli",
    "kvbox.client",
    "kvbox.bench",
)
NOT_IN_CORE = (
    "kvbox.s3",
    "kvbox.s3door",
    "kvbox.kv",
    "kvbox.server",
    "kvbox.console",
    "kvbox.cli",
    "kvbox.client",
    "kvbox.bench",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _imports(path: Path) -> tuple[str, ...]:
    """Every module ``path`` imports, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            # ``from kvbox import s3`` imports the submodule kvbox.s3
            found += [f"{base}.{alias.name}" for alias in node.names]
    return tuple(found)


def _files(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((SRC / package).rglob("*.py"))


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _source_module(name: str) -> bool:
    """Whether ``name`` is a kvbox module that exists (``from kvbox.x import Name`` gives
    ``kvbox.x.Name`` too, which is not a module)."""
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def test_the_rules_see_the_tree() -> None:
    """Guards the test itself: every package it names exists and has modules."""
    for package in (*PURE, "core", "kv", "server", "s3door", "cli"):
        assert list(_files(package)), package


@pytest.mark.parametrize("package", PURE)
def test_pure_layers_do_no_io(package: str) -> None:
    bad = [
        f"{_module_name(path)} imports {imported}"
        for path in _files(package)
        for imported in _imports(path)
        if _within(imported, NOT_IN_PURE)
    ]
    assert bad == []


def test_core_knows_no_protocol() -> None:
    bad = [
        f"{_module_name(path)} imports {imported}"
        for path in _files("core")
        for imported in _imports(path)
        if _within(imported, NOT_IN_CORE)
    ]
    assert bad == []


def _unit(module: str) -> str:
    """The top-level package (or module) of a kvbox module: kvbox.core.meta -> core."""
    return module.split(".")[1]


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        if name == "kvbox":
            continue
        here = _unit(name)
        edges = graph.setdefault(here, set())
        for imported in _imports(path):
            if imported.startswith("kvbox.") and _source_module(imported):
                there = _unit(imported)
                if there != here:
                    edges.add(there)
    return graph


def test_no_cycles_between_top_level_packages() -> None:
    graph = _package_graph()
    assert {"core", "s3", "s3door", "server", "errors"} <= set(graph)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_errors_is_the_bottom() -> None:
    """kvbox.errors imports nothing from kvbox: every layer can raise its errors."""
    assert [m for m in _imports(SRC / "errors.py") if m.startswith("kvbox")] == []
