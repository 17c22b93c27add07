"""Environment mistakes end in one clear line: taken ports, unusable data directories,
generated secrets, cache mode, refusals relayed by ``kvbox admin``, ``kvbox health --wait``.

Layer: tests/e2e. Rules: every case runs the real ``kvbox`` command as a child process and
reads what a person would read: the exit status, one line on stderr, no traceback. A
read-only file system is a real read-only bind mount and a missing permission a real
process without root's override, each in a namespace of its own (``unshare``); those
cases skip, saying why, where namespaces are not allowed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _ports import free_port

from ._s3 import ACCESS_KEY, S3Server
from ._server import KvboxServer, clean_env, kvbox_argv, run_kvbox
from .conftest import ServerFactory

SECRET_RE = re.compile(r"^kvbox: root secret key (\S+)", re.MULTILINE)


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    """The one stderr line of a failed command (and nothing that looks like a crash)."""
    err = done.stderr.decode()
    assert done.returncode != 0, f"expected a failure, got 0:\n{done.stdout.decode()}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[0]


# --- ports ------------------------------------------------------------------------------


@pytest.fixture
def taken() -> Iterator[tuple[int, socket.socket]]:
    """A TCP port another program listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1], sock
    sock.close()


@pytest.mark.parametrize("flag", ["--kv-port", "--http-port", "--web-port"])
def test_port_in_use_names_port_and_flag_before_any_secret(
    tmp_path: Path, taken: tuple[int, socket.socket], flag: str
) -> None:
    port, _ = taken
    data = tmp_path / "data"
    ports = {"--kv-port": free_port(), "--http-port": 0, "--web-port": 0}
    ports[flag] = port
    argv = ["serve", "--data", str(data), "--host", "127.0.0.1"]
    for name, value in ports.items():
        argv += [name, str(value)]
    done = run_kvbox(*argv, timeout=60)
    line = one_line_error(done)
    assert line.startswith("kvbox serve: ")
    assert f"port {port} ({flag}) is already in use" in line
    # Nothing was generated, printed or stored before the bind failed.
    assert b"secret" not in done.stdout
    assert not (data / "root-credentials").exists()
    assert not data.exists()


def test_udp_port_in_use_is_named_too(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
        done = run_kvbox(
            "serve", "--data", str(tmp_path / "d"), "--kv-port", str(port), "--http-port", "0"
        )
    line = one_line_error(done)
    assert f"port {port} (--kv-port) is already in use" in line and "UDP" in line


def test_a_start_after_a_failed_one_still_shows_its_secret(
    tmp_path: Path, taken: tuple[int, socket.socket]
) -> None:
    """The bug this guards: a failed start used to generate and print the secret "shown
    once", and the next start then only named the data directory."""
    data = tmp_path / "data"
    failed = run_kvbox("serve", "--data", str(data), "--kv-port", str(taken[0]))
    one_line_error(failed)
    with KvboxServer(data) as srv:
        srv.start()
        secret = SECRET_RE.search(srv.new_log())
        assert secret is not None, srv.new_log()
        assert (data / "root-credentials").read_text().splitlines()[1] == secret.group(1)


# --- data directories -------------------------------------------------------------------

#: (command line after ``kvbox``, with DATA for the data directory)
COMMANDS = [
    ("serve", "--data", "DATA", "--kv-port", "0", "--http-port", "0"),
    ("fsck", "--data", "DATA"),
    ("admin", "--data", "DATA", "user", "list"),
]


def _argv(command: tuple[str, ...], data: Path) -> list[str]:
    return [str(data) if word == "DATA" else word for word in command]


def _made_data_dir(tmp_path: Path) -> Path:
    """A real data directory, as a server leaves it (metadata, journal, chunks)."""
    data = tmp_path / "data"
    srv = KvboxServer(data)
    with srv:
        srv.start()
        with srv.connect() as w:
            assert w.bset("photo", os.urandom(100_000)).startswith(b"OK ")
        assert srv.terminate() == 0
    return data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _made_data_dir(tmp_path_factory.mktemp("made"))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_file_where_the_data_directory_should_be(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    line = one_line_error(run_kvbox(*_argv(command, path)))
    assert line == f"kvbox {command[0]}: data directory {path} is a file, not a directory"
    line = one_line_error(run_kvbox(*_argv(command, path / "below")))
    assert str(path / "below") in line and "file" in line


def _in_namespace(*unshare: str) -> list[str] | None:
    """``unshare`` arguments that work here, or None (containers may forbid them)."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    probe = subprocess.run([exe, *unshare, "true"], capture_output=True, timeout=30)
    return [exe, *unshare] if probe.returncode == 0 else None


def _run_inside(prefix: list[str], script: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*prefix, "sh", "-c", script],
        capture_output=True,
        timeout=120,
        env=clean_env(),
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_read_only_file_system(data_dir: Path, command: tuple[str, ...]) -> None:
    prefix = _in_namespace("--user", "--map-root-user", "--mount")
    if prefix is None:
        pytest.skip("no mount namespace here for a read-only bind mount")
    d = str(data_dir)
    argv = " ".join(f"'{a}'" for a in kvbox_argv(*_argv(command, data_dir)))
    done = _run_inside(
        prefix, f"mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && exec {argv}"
    )
    line = one_line_error(done)
    assert line == f"kvbox {command[0]}: data directory {d} is not writable: Read-only file system"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("what", ["directory", "metadata file"])
def test_missing_permission(
    tmp_path: Path, data_dir: Path, command: tuple[str, ...], what: str
) -> None:
    # Mapped to an ordinary user id, this process owns the files but has no root
    # override: exactly an operator's account facing a directory it may not write.
    prefix = _in_namespace("--user", "--map-user=1000", "--map-group=1000")
    if prefix is None:
        pytest.skip("no user namespace here to drop root's permission override")
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    target = data if what == "directory" else data / "meta.sqlite3"
    target.chmod(0o555 if what == "directory" else 0o444)
    try:
        argv = " ".join(f"'{a}'" for a in kvbox_argv(*_argv(command, data)))
        line = one_line_error(_run_inside(prefix, f"exec {argv}"))
    finally:
        target.chmod(0o755 if what == "directory" else 0o644)
    where = "" if what == "directory" else " (meta.sqlite3)"
    expected = f"data directory {data} is not writable: Permission denied{where}"
    assert line == f"kvbox {command[0]}: {expected}"


def test_fsck_and_admin_on_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for command in COMMANDS[1:]:
        line = one_line_error(run_kvbox(*_argv(command, missing)))
        assert line == f"kvbox {command[0]}: {missing}: no such data directory"


# --- root keys --------------------------------------------------------------------------


def test_generated_secret_is_letters_and_digits(server: KvboxServer) -> None:
    found = SECRET_RE.search(server.new_log())
    assert found is not None, server.new_log()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", found.group(1)), found.group(1)
    assert f"saved in {server.data_dir / 'root-credentials'}" in server.new_log()


def test_cache_mode_does_not_claim_the_secret_is_stored(server_factory: ServerFactory) -> None:
    srv = server_factory("--max-memory", "32MiB")
    log = srv.new_log()
    assert SECRET_RE.search(log) is not None, log
    assert "cache mode stores nothing" in log
    assert "saved in" not in log and "stored in" not in log
    assert not (srv.data_dir / "root-credentials").exists()


# --- refusals relayed by kvbox admin, and kvbox health --wait -------------------------------


def test_admin_shows_an_s3_refusal_as_one_line(tmp_path: Path) -> None:
    s3 = S3Server(tmp_path / "data").start()
    try:
        env = {"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": "wrong-secret"}
        done = run_kvbox("admin", "--server", s3.endpoint, "user", "list", env=env)
        line = one_line_error(done)
        assert "<" not in line, line
        assert re.fullmatch(
            r"kvbox admin: the server refused: SignatureDoesNotMatch: .+ "
            r"\(HTTP 403, request [0-9A-F]{16}\)",
            line,
        ), line
        env = {"KVBOX_ROOT_ACCESS_KEY": "KVNOSUCHKEY000000000", "KVBOX_ROOT_SECRET_KEY": "x"}
        line = one_line_error(run_kvbox("admin", "--server", s3.endpoint, "user", "list", env=env))
        assert "InvalidAccessKeyId" in line and "<" not in line, line
    finally:
        s3.close()


def test_health_wait_rides_out_a_start(tmp_path: Path) -> None:
    port = free_port()
    quick = run_kvbox("health", "--server", f"127.0.0.1:{port}", "--timeout", "1")
    assert quick.returncode == 1 and b"unhealthy" in quick.stderr
    waiting = subprocess.Popen(
        kvbox_argv("health", "--server", f"127.0.0.1:{port}", "--wait", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        time.sleep(0.5)
        assert waiting.poll() is None, "health --wait gave up at once"
        with KvboxServer(tmp_path / "data", port=port) as srv:
            srv.start()
            out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
        assert out == b"healthy\n"
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()


def test_getat_ends_its_line_on_a_terminal_only(server: KvboxServer) -> None:
    """A person at a terminal gets the prompt on its own line; a pipe gets the exact bytes."""
    assert server.cli("set", "fruit", "red").returncode == 0
    instant = str(int(time.time() * 1000) + 1000)
    piped = server.cli("getat", "fruit", instant)
    assert piped.returncode == 0 and piped.stdout == b"red", piped
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            kvbox_argv("client", server.addr, "getat", "fruit", instant),
            stdout=follower,
            stderr=subprocess.PIPE,
            env=clean_env(),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                piece = os.read(leader, 1024)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not piece:
                break
            seen += piece
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert seen.replace(b"\r\n", b"\n") == b"red\n"


def test_secret_generator_never_starts_with_a_dash() -> None:
    """Through the real generator, many times: no '-' (or any non-alphanumeric) at all."""
    code = (
        "from kvbox.credentials import generate\n"
        "pairs = [generate() for _ in range(5000)]\n"
        "print(all(s.isalnum() and s.isascii() and len(s) == 40 for _, s in pairs))\n"
        "print(len({s for _, s in pairs}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "5000"], done.stderr
