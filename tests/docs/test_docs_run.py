"""The docs run as written: README.md and docs/lab.md on a fresh install, and the package.

Layer: tests/docs. Rules: nothing here imports kvbox. The repository's tracked files are
copied to a temporary directory and a fresh virtual environment is made; every shell
block of README.md and docs/lab.md is then run as a person would, in order, with that
environment first on PATH, so the install lines (``pip install .``, the ``plot`` extra,
the AWS CLI) are run too, against the package index as a user's would be. Each block
says how it is run by the HTML comment just before it:

* ``<!-- docs-test: serve -->``  the README's set-up line, which keeps ``kvbox serve`` in
  the foreground: started in the background; the blocks after it run once it is ready.
* ``<!-- docs-test: run -->``  run (all such blocks of one document in one bash session,
  ``set -euo pipefail``, aliases on), from the repository copy's root.
* ``<!-- docs-test: after-stop -->``  run after the foreground server was stopped with
  SIGINT, as Ctrl-C stops it.
* ``<!-- ci:test -->``  the test command itself (``.ci/run`` runs it): not run here.

A shell block without one of these fails the test, so a new example cannot skip it.
The documents use kvbox's default ports (7070, 9000, 9080): the sessions of this module
hold a machine-wide lock while they run, and refuse to start while something else
listens there. The module also builds the sdist and the wheel (``python -m build``),
checks their metadata with ``twine check``, and installs the wheel into its own fresh
environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _cleanup import removed_after

REPO = Path(__file__).resolve().parents[2]
#: Blocks: the marker comment, then a fenced shell block.
BLOCK = re.compile(
    r"(?:<!--\s*(?P<mark>[^>]*?)\s*-->\s*\n)?```(?:sh|bash|shell)\n(?P<body>.*?)```", re.S
)
MARKS = {"docs-test: serve", "docs-test: run", "docs-test: after-stop", "ci:test"}
#: Ports the documents name (kvbox's defaults and the lab's website port).
DOC_PORTS = (7070, 9000, 9080)
#: Seconds a documented session may take: installs from the index included.
SESSION_TIMEOUT = 900
LOCK = Path("/tmp/kvbox-docs-test.lock")

#: Each test installs from the package index and runs a whole document: on a loaded
#: 2-core machine that is several minutes, beyond pytest's default of 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(SESSION_TIMEOUT + 300)]


def blocks(doc: Path) -> list[tuple[str, str]]:
    """(marker, body) of every shell block of ``doc``, in order."""
    found = [(m["mark"] or "", m["body"]) for m in BLOCK.finditer(doc.read_text())]
    assert found, f"{doc} has no shell blocks"
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/lab.md"])
def test_every_shell_block_says_how_it_is_tested(doc: str) -> None:
    unmarked = [body for mark, body in blocks(REPO / doc) if mark not in MARKS]
    assert unmarked == [], f"{doc}: shell blocks without a docs-test marker: {unmarked}"


def test_readme_keeps_its_two_setup_commands() -> None:
    """CI reads the test command after ``<!-- ci:test -->``; a person the one before."""
    marks = {mark: body.strip() for mark, body in blocks(REPO / "README.md")}
    assert marks["docs-test: serve"] == "pip install . && kvbox serve"
    assert marks["ci:test"] == "pip install -e '.[test]' && pytest -n 2 --dist loadfile"


# --- the fresh install ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the repository's tracked files, as a clone would have them."""
    with removed_after(tmp_path_factory.mktemp("docs")) as root:
        copy = root / "kvbox"
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        for name in filter(None, listed.split("\0")):
            src = REPO / name
            if src.is_file():
                dst = copy / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        yield copy


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One fresh virtual environment for the README and the lab, as one person would
    have one (the lab's ``pip install .`` then finds kvbox there and is quick)."""
    with removed_after(tmp_path_factory.mktemp("venv")) as base:
        yield _venv(base / "venv")


def _venv(where: Path) -> dict[str, str]:
    """A fresh virtual environment (no packages of ours); the environment to run in it."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVBOX_", "AWS_", "VIRTUAL"))}
    env["PATH"] = f"{where / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(where)
    env.pop("PYTHONPATH", None)
    return env


@contextlib.contextmanager
def doc_ports() -> Iterator[None]:
    """Hold the machine-wide lock of documented sessions; the documented ports must be
    free (another test run's session waits for the lock instead of colliding)."""
    with open(LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        for port in DOC_PORTS:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    pytest.fail(f"port {port}, which the docs use, is taken on this machine")
        yield


def _session(body: str, cwd: Path, env: dict[str, str], log: Path) -> None:
    """Run ``body`` in one bash session; fail with the transcript if any command fails."""
    script = "set -euo pipefail\nshopt -s expand_aliases\nset -x\n" + body
    with open(log, "ab") as out:
        # Its own process group: a server the document starts in the background (`&`)
        # belongs to it, and goes with it however the session ends, so a failed or timed
        # out session never leaves a server holding the documented ports.
        session = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = session.wait(timeout=SESSION_TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session.pid, signal.SIGKILL)
            session.wait()
    text = log.read_text(errors="replace")
    assert returncode == 0, f"a documented command failed (exit {returncode}):\n{text[-8000:]}"
    assert "Traceback" not in text, f"a documented command crashed:\n{text[-8000:]}"


def test_readme_runs_as_written(workspace: Path, fresh_env: dict[str, str], tmp_path: Path) -> None:
    env = fresh_env
    parts = blocks(workspace / "README.md")
    (serve,) = [body for mark, body in parts if mark == "docs-test: serve"]
    run = "\n".join(body for mark, body in parts if mark == "docs-test: run")
    after = "\n".join(body for mark, body in parts if mark == "docs-test: after-stop")
    server_log = tmp_path / "serve.log"
    with doc_ports():
        with open(server_log, "wb") as out:
            server = subprocess.Popen(
                # exec: the server is this process, so SIGINT reaches it as Ctrl-C would
                ["bash", "-c", serve.strip().replace("&& kvbox", "&& exec kvbox")],
                cwd=workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + SESSION_TIMEOUT
            while "kvbox: ready" not in server_log.read_text(errors="replace"):
                assert server.poll() is None, f"kvbox serve ended:\n{server_log.read_text()}"
                assert time.monotonic() < deadline, f"not ready:\n{server_log.read_text()}"
                time.sleep(0.2)
            text = server_log.read_text()
            assert "saved in kvbox-data/root-credentials" in text, text
            _session(run, workspace, env, tmp_path / "try-it.log")
            # Ctrl-C, as the README says: the server stops cleanly.
            os.kill(server.pid, signal.SIGINT)
            assert server.wait(timeout=60) == 0, server_log.read_text()[-4000:]
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        _session(after, workspace, env, tmp_path / "after.log")
    transcript = (tmp_path / "try-it.log").read_text()
    assert "VALUE red" in transcript and (workspace / "bench.png").stat().st_size > 10_000
    assert (workspace / "copy.png").read_bytes() == (workspace / "docs/lab/cat.png").read_bytes()
    assert (workspace / "served.png").read_bytes() == (workspace / "docs/lab/cat.png").read_bytes()
    assert "ALLOWED" in transcript, transcript[-4000:]
    assert "result: clean" in (tmp_path / "after.log").read_text()
    served = server_log.read_text()
    assert "INFO kvbox.access: s3 " in served and "INFO kvbox.access: gwkv " in served


def test_lab_runs_as_written(workspace: Path, fresh_env: dict[str, str], tmp_path: Path) -> None:
    env = fresh_env
    run = "\n".join(body for mark, body in blocks(workspace / "docs/lab.md") if mark)
    log = tmp_path / "lab.log"
    with doc_ports():
        _session(run, workspace, env, log)
    text = log.read_text()
    for said in (
        "\nsame bytes\n",
        "\nnewest served\n",
        "\nthe first image is still there\n",
        "\nback\n",
        "\nthe first image\n",
        "ALLOWED",
        "\nresult: clean\n",
        "\nfirst",  # GETAT's answer: the value before THEN
    ):
        assert said in text, f"no {said!r} in:\n{text[-6000:]}"
    # The lab's server logged one line per request, with no secret in them.
    served = (workspace / "docs/lab/kvbox.log").read_text()
    assert "INFO kvbox.access: s3 " in served and "INFO kvbox.access: gwkv " in served
    assert "labsecretkey0000000000" not in served


def test_package_builds_checks_and_installs(tmp_path: Path, workspace: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--outdir",
            str(dist),
            str(workspace),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    made = sorted(p.name for p in dist.iterdir())
    version = re.search(
        r'__version__ = "([^"]+)"', (workspace / "src/kvbox/__init__.py").read_text()
    )
    assert version is not None
    assert made == [f"kvbox-{version[1]}-py3-none-any.whl", f"kvbox-{version[1]}.tar.gz"], made
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    env = _venv(tmp_path / "venv")
    wheel = next(dist.glob("*.whl"))
    subprocess.run(["pip", "install", "-q", str(wheel)], env=env, check=True, timeout=600)
    shown = subprocess.run(
        ["kvbox", "--version"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert shown.stdout.strip() == f"kvbox {version[1]}", shown
    # The console's page ships inside the wheel.
    files = subprocess.run(
        ["python", "-c", "import kvbox, pathlib; print(pathlib.Path(kvbox.__file__).parent)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    assert (Path(files) / "py.typed").exists()
    static = workspace / "src/kvbox/console/static"
    page = sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file())
    assert "index.html" in page and "js/app.js" in page
    missing = [rel for rel in page if not (Path(files) / "console/static" / rel).is_file()]
    assert not missing, f"the wheel lacks console files: {missing}"
