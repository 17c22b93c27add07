"""``kvbox client`` end to end: every operation, its output and its exit status.

Layer: tests/e2e. Rules: the CLI runs as a real child process against a real server (or a
closed port, or a socket that never answers). Exit codes are the contract: 0 ok, 1
NOTFOUND/CONFLICT, 2 usage, 3 server ERR, 4 connection refused/reset/timeout.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _ports import free_port

from ._server import KvboxServer, parse_ok_version, run_kvbox

VERSION = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def out(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stdout.decode()


def printed_version(done: subprocess.CompletedProcess[bytes]) -> str:
    text = out(done).strip()
    assert VERSION.fullmatch(text), f"expected a version id, got {text!r}"
    return text


def test_set_get_stats(server: KvboxServer) -> None:
    done = server.cli("set", "fruit", "red apple")
    assert done.returncode == 0, done.stderr
    version = printed_version(done)
    done = server.cli("get", "fruit")
    assert done.returncode == 0, done.stderr
    assert done.stdout in (b"red apple\n", b"red apple")
    done = server.cli("stats")
    assert done.returncode == 0
    assert out(done).strip() == "1"
    done = server.cli("version", "fruit")
    assert done.returncode == 0
    assert out(done).strip() == version
    assert server.oneshot(b"GET fruit\n") == b"VALUE red apple\n"


def test_value_words_are_joined(server: KvboxServer) -> None:
    assert server.cli("set", "words", "two", "words").returncode == 0
    assert server.oneshot(b"GET words\n") == b"VALUE two words\n"


def test_delete_and_notfound_exit_1(server: KvboxServer) -> None:
    assert server.cli("set", "k", "v").returncode == 0
    assert server.cli("delete", "k").returncode == 0
    done = server.cli("delete", "k")
    assert done.returncode == 1
    done = server.cli("get", "k")
    assert done.returncode == 1
    assert done.stdout == b""
    assert server.cli("version", "k").returncode == 1
    assert server.cli("bget", "k").returncode == 1


def test_cas(server: KvboxServer) -> None:
    done = server.cli("cas", "c", "-", "first")
    assert done.returncode == 0, done.stderr
    v1 = printed_version(done)
    done = server.cli("cas", "c", "-", "again")
    assert done.returncode == 1
    assert v1 in (done.stdout + done.stderr).decode()  # the conflict names the current version
    done = server.cli("cas", "c", v1, "second")
    assert done.returncode == 0, done.stderr
    v2 = printed_version(done)
    assert server.cli("cas", "c", v1, "third").returncode == 1
    assert server.oneshot(b"GET c\n") == b"VALUE second\n"
    assert server.oneshot(b"VERSION c\n") == f"OK {v2}\n".encode()


def test_mset_mget(server: KvboxServer) -> None:
    done = server.cli("mset", "a", "1", "b", "2", "c", "3")
    assert done.returncode == 0, done.stderr
    assert len(VERSION.findall(out(done))) == 3
    done = server.cli("mget", "c", "a", "b")
    assert done.returncode == 0, done.stderr
    assert out(done).split() == ["3", "1", "2"]
    assert server.oneshot(b"STATS\n") == b"OK 3\n"
    done = server.cli("mset", "x", "1", "bad-key", "2")
    assert done.returncode == 3
    assert server.oneshot(b"GET x\n") == b"NOTFOUND\n"


def test_bset_bget_file_and_output(server: KvboxServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000 + b"\n\x00\r\n"
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    done = server.cli("bset", "bin", opts=["--file", str(src)])
    assert done.returncode == 0, done.stderr
    version = printed_version(done)
    dst = tmp_path / "out.bin"
    done = server.cli("bget", "bin", opts=["--output", str(dst)])
    assert done.returncode == 0, done.stderr
    assert dst.read_bytes() == data
    done = server.cli("bget", "bin")
    assert done.returncode == 0
    assert done.stdout == data
    with server.connect() as w:
        assert w.bget("bin") == (data, version)


def test_stdin_streaming(server: KvboxServer) -> None:
    data = b"\x00from stdin\n" * 5000
    done = server.cli("bset", "piped", opts=["--file", "-"], input=data)
    assert done.returncode == 0, done.stderr
    version = printed_version(done)
    with server.connect() as w:
        assert w.bget("piped") == (data, version)
    done = server.cli("bget", "piped")
    assert done.returncode == 0
    assert done.stdout == data


def test_set_from_file(server: KvboxServer, tmp_path: Path) -> None:
    src = tmp_path / "text.txt"
    src.write_bytes(b"text from a file")
    done = server.cli("set", "fromfile", opts=["--file", str(src)])
    assert done.returncode == 0, done.stderr
    assert server.oneshot(b"GET fromfile\n") == b"VALUE text from a file\n"


def test_ping_info(server: KvboxServer) -> None:
    done = server.cli("ping")
    assert done.returncode == 0
    done = server.cli("info")
    assert done.returncode == 0
    assert "objects" in out(done)
    assert "uptime_s" in out(done)


def test_udp(server: KvboxServer) -> None:
    done = server.cli("set", "u", "over udp", opts=["--udp"])
    assert done.returncode == 0, done.stderr
    printed_version(done)
    done = server.cli("get", "u", opts=["--udp"])
    assert done.returncode == 0
    assert done.stdout in (b"over udp\n", b"over udp")
    assert server.cli("get", "nothing", opts=["--udp"]).returncode == 1


def test_usage_errors_exit_2(server: KvboxServer) -> None:
    for args in (("frobnicate", "k"), ("get",), ("set",), ("cas", "k")):
        done = server.cli(*args)
        assert done.returncode == 2, (args, done)
        assert done.stderr
    done = run_kvbox("client")
    assert done.returncode == 2


def test_server_err_exit_3(server: KvboxServer) -> None:
    done = server.cli("set", "k", "v" * 1025)
    assert done.returncode == 3, done
    assert b"TOOLARGE" in done.stderr
    assert server.oneshot(b"GET k\n") == b"NOTFOUND\n"
    done = server.cli("set", "bad-key", "v")
    assert done.returncode in (2, 3)
    assert done.stderr
    parse_ok_version(server.oneshot(b"BSET b 1\n\x00\n"))
    done = server.cli("get", "b")
    assert done.returncode == 3, done
    assert b"NOTTEXT" in done.stderr


def test_refused_connection_exit_4() -> None:
    port = free_port()
    t0 = time.monotonic()
    done = run_kvbox("client", f"127.0.0.1:{port}", "get", "k")
    assert done.returncode == 4, done
    assert done.stderr
    assert time.monotonic() - t0 < 10


@pytest.fixture
def mute_listener() -> Iterator[int]:
    """A listening socket that accepts connections (in the backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def test_timeout_exit_4(mute_listener: int) -> None:
    t0 = time.monotonic()
    done = run_kvbox(
        "client", "--timeout", "1", f"127.0.0.1:{mute_listener}", "get", "k", timeout=30
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 4, done
    assert done.stderr
    assert elapsed < 10, f"--timeout 1 took {elapsed:.1f} s"


def test_timeout_for_every_op(mute_listener: int) -> None:
    for args in (("set", "k", "v"), ("stats",), ("ping",)):
        done = run_kvbox(
            "client", "--timeout", "0.5", f"127.0.0.1:{mute_listener}", *args, timeout=30
        )
        assert done.returncode == 4, (args, done)


def test_reset_mid_reply_exit_4(server: KvboxServer) -> None:
    """A server that dies under a client is an exit 4, not a traceback."""
    server.kill()
    done = server.cli("ping")
    assert done.returncode == 4
    assert b"Traceback" not in done.stderr
