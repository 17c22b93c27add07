"""``kvbox client`` in-process against the fake server: output and exit statuses.

The end-to-end versions (a child process against ``kvbox serve``) are in tests/e2e.
"""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kvbox.cli.main import main

from .fakeserver import FAIL_KEY, FakeServer

Run = tuple[int, bytes, str]


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> Run:
    try:
        status = main(["client", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        status = int(exc.code or 0)
    out, err = capsysbinary.readouterr()
    return status, out, err.decode()


def test_operations(fake: FakeServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    addr = f"127.0.0.1:{fake.port}"
    status, out, _ = run(capsysbinary, addr, "SET", "fruit", "red", "apple")
    assert status == 0
    version = out.strip().decode()
    assert fake.data["fruit"] == (version, b"red apple")
    assert run(capsysbinary, addr, "get", "fruit") == (0, b"red apple\n", "")
    assert run(capsysbinary, addr, "version", "fruit") == (0, f"{version}\n".encode(), "")
    assert run(capsysbinary, addr, "stats") == (0, b"1\n", "")
    assert run(capsysbinary, addr, "ping") == (0, b"PONG\n", "")
    status, out, _ = run(capsysbinary, addr, "info")
    assert status == 0 and b"objects 1\n" in out
    status, out, _ = run(capsysbinary, addr, "cas", "fruit", version, "green")
    assert status == 0 and fake.data["fruit"][1] == b"green"
    status, out, _ = run(capsysbinary, addr, "cas", "new", "-", "x")
    assert status == 0 and fake.data["new"][1] == b"x"
    status, out, _ = run(capsysbinary, addr, "mset", "a", "1", "b", "2")
    assert status == 0 and len(out.split()) == 2
    assert run(capsysbinary, addr, "mget", "b", "a") == (0, b"2\n1\n", "")
    assert run(capsysbinary, addr, "delete", "a") == (0, b"OK\n", "")


def test_not_found_and_conflict_exit_1(
    fake: FakeServer, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    addr = f"127.0.0.1:{fake.port}"
    for args in (("get", "x"), ("delete", "x"), ("version", "x"), ("bget", "x")):
        status, out, err = run(capsysbinary, addr, *args)
        assert (status, out) == (1, b""), args
        assert err.startswith("kvbox client: ") and "not found" in err
    run(capsysbinary, addr, "set", "k", "v")
    status, out, err = run(capsysbinary, addr, "cas", "k", "-", "w")
    assert status == 1 and fake.data["k"][0] in err
    status, out, err = run(capsysbinary, addr, "mget", "k", "x")
    assert (status, out) == (1, b"v\n\n")
    assert "not found: x" in err


def test_binary_values(
    fake: FakeServer,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addr = f"127.0.0.1:{fake.port}"
    data = bytes(range(256)) * 5000
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    status, out, _ = run(capsysbinary, "--file", str(src), addr, "bset", "bin")
    assert status == 0 and fake.data["bin"] == (out.strip().decode(), data)
    status, out, _ = run(capsysbinary, addr, "bget", "bin")
    assert (status, out) == (0, data)
    dst = tmp_path / "out.bin"
    assert run(capsysbinary, addr, "bget", "bin", "--output", str(dst))[0] == 0
    assert dst.read_bytes() == data
    missing = tmp_path / "missing.bin"
    assert run(capsysbinary, addr, "bget", "nope", "--output", str(missing))[0] == 1
    assert sorted(tmp_path.iterdir()) == sorted([dst, src])  # no partial or temporary file
    # stdin, both ways of saying it
    for args in (("bset", "piped", "-"), ("bset", "piped")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00piped")))
        assert run(capsysbinary, addr, *args)[0] == 0
        assert fake.data["piped"][1] == b"\x00piped"
    # set --file switches to BSET; get refuses binary values (NOTTEXT, exit 3)
    assert run(capsysbinary, "--file", str(src), addr, "set", "viaset")[0] == 0
    assert fake.data["viaset"][1] == data
    status, _, err = run(capsysbinary, addr, "get", "viaset")
    assert status == 3 and "NOTTEXT" in err


def test_getat_and_getv(
    fake: FakeServer, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    addr = f"127.0.0.1:{fake.port}"
    before = time.time_ns() // 1_000_000 - 1
    status, out, _ = run(capsysbinary, addr, "set", "k", "one")
    v1 = out.strip().decode()
    time.sleep(0.003)
    between = time.time_ns()
    time.sleep(0.003)
    assert run(capsysbinary, addr, "set", "k", "two")[0] == 0
    rfc = datetime.fromtimestamp(between / 1e9, UTC).isoformat().replace("+00:00", "Z")
    assert run(capsysbinary, addr, "getat", "k", rfc) == (0, b"one", "")
    assert run(capsysbinary, addr, "GETAT", "k", str(between // 1_000_000)) == (0, b"one", "")
    status, out, err = run(capsysbinary, addr, "getat", "k", str(before))
    assert (status, out) == (1, b"") and "not found at" in err
    status, out, err = run(capsysbinary, addr, "getat", "k", "2026-01-01T00:00:00")
    assert (status, out) == (3, b"") and "refused: ARGS" in err and "zone" in err
    assert run(capsysbinary, addr, "getat", "k")[0] == 2
    dst = tmp_path / "then.txt"
    assert run(capsysbinary, addr, "getat", "k", rfc, "--output", str(dst))[0] == 0
    assert dst.read_bytes() == b"one"
    assert run(capsysbinary, addr, "getv", "k", v1, "--output", str(dst))[0] == 0
    assert dst.read_bytes() == b"one"
    assert run(capsysbinary, addr, "getv", "k", v1) == (0, b"one", "")
    assert run(capsysbinary, "--udp", f"127.0.0.1:{fake.udp_port}", "getat", "k", rfc) == (
        0,
        b"one",
        "",
    )
    assert sorted(tmp_path.iterdir()) == [dst]  # no temporary file left


def test_udp(fake: FakeServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    addr = f"127.0.0.1:{fake.udp_port}"
    assert run(capsysbinary, "--udp", addr, "set", "u", "over", "udp")[0] == 0
    assert run(capsysbinary, "--udp", addr, "get", "u") == (0, b"over udp\n", "")
    assert run(capsysbinary, "--udp", addr, "get", "x")[0] == 1


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate", "k"),
        ("get",),
        ("get", "a", "b"),
        ("set",),
        ("set", "k"),
        ("cas", "k"),
        ("mset", "a"),
        ("stats", "x"),
        ("get", "k", "--output", "x"),
        ("bset", "k", "inline"),
    ],
)
def test_usage_errors_exit_2(
    fake: FakeServer, capsysbinary: pytest.CaptureFixture[bytes], args: tuple[str, ...]
) -> None:
    status, out, err = run(capsysbinary, f"127.0.0.1:{fake.port}", *args)
    assert (status, out) == (2, b"")
    assert err


def test_bad_address_and_missing_file_exit_2(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    assert run(capsysbinary, "::1", "ping")[0] == 2
    assert run(capsysbinary, "host:notaport", "ping")[0] == 2
    status, _, err = run(capsysbinary, "--file", str(tmp_path / "nope"), "127.0.0.1:1", "bset", "k")
    assert status in (2, 4)  # which is noticed first is not promised
    assert err.startswith("kvbox client: ")


def test_refusals_exit_3(fake: FakeServer, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    addr = f"127.0.0.1:{fake.port}"
    status, _, err = run(capsysbinary, addr, "set", FAIL_KEY, "x")
    assert status == 3 and "STORAGE" in err
    status, _, err = run(capsysbinary, addr, "set", "k", "v" * 1025)
    assert status == 3 and "TOOLARGE" in err
    status, _, err = run(capsysbinary, addr, "mset", "x", "1", "bad-key", "2")
    assert status == 3 and "BADKEY" in err
    assert fake.requests == [fake.requests[0]]  # only the first reached the server


def test_network_errors_exit_4(
    capsysbinary: pytest.CaptureFixture[bytes], closed_port: int, mute_port: int
) -> None:
    status, _, err = run(capsysbinary, f"127.0.0.1:{closed_port}", "ping")
    assert status == 4 and "refused" in err and str(closed_port) in err
    status, _, err = run(capsysbinary, "--timeout", "0.2", f"127.0.0.1:{mute_port}", "ping")
    assert status == 4 and "within" in err
    status, _, err = run(capsysbinary, f"[::1]:{closed_port}", "ping")
    assert status == 4
