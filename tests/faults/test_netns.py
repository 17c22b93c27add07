"""The fault harness itself (``_netns``): hosts reach each other, a partition silences a
host both ways and nothing else answers for it, a heal restores it, and teardown leaves
nothing behind -- in network namespaces where the machine allows them, and always in
the loopback fallback, so the fallback cannot rot unseen on a machine that has
namespaces.

Layer: tests/faults. The "server" on each host is a few lines of Python that answer
every connection with one line: the harness's contract is about addresses and
processes, not about kvbox.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e._gwkv import wait_until

from ._netns import Host, Proc, Topology, namespaces_work, unreachable

PORT = 19555
#: One line to every connection, forever (the test kills it by PID).
ANSWER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
    "print('answering', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'here\\n'); c.close()\n"
)


def modes() -> list[str]:
    ok, _ = namespaces_work()
    return ["netns", "loopback"] if ok else ["loopback"]


@pytest.fixture(params=modes())
def topo(request: pytest.FixtureRequest) -> Iterator[Topology]:
    t = Topology(request.param, "" if request.param == "netns" else "forced by this test")
    try:
        yield t
    finally:
        t.close()


def answering(t: Topology, name: str, base: Path) -> tuple[Host, Proc, int]:
    host = t.add_host(name)
    port = host.port(PORT)
    proc = host.proc(
        name, [sys.executable, "-c", ANSWER, host.ip, str(port)], base / f"{name}.log", "answering"
    )
    proc.start()
    return host, proc, port


def hears(ip: str, port: int, via: Host | None = None) -> bool:
    """Whether ``ip:port`` answers, from the root namespace or from ``via``'s."""
    if via is None or via.ns is None:
        try:
            with socket.create_connection((ip, port), timeout=2) as s:
                s.settimeout(2)
                return s.recv(10) == b"here\n"
        except OSError:
            return False
    probe = f"import socket; s = socket.create_connection(('{ip}', {port}), timeout=2); " \
        "s.settimeout(2); print(s.recv(10) == b'here\\n')"  # fmt: skip
    out = subprocess.run(
        via.wrap([sys.executable, "-c", probe]), capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip() == "True"


def test_partition_silences_a_host_and_heal_restores_it(topo: Topology, tmp_path: Path) -> None:
    a, _, port_a = answering(topo, "a", tmp_path)
    b, proc_b, port_b = answering(topo, "b", tmp_path)
    assert hears(b.ip, port_b) and hears(b.ip, port_b, via=a) and hears(a.ip, port_a, via=b)
    topo.partition(b)
    # Silence, not a refusal, and nothing else answering for the address.
    assert unreachable(b.ip, port_b) in ("timeout", "no route", "no answer")
    assert not hears(b.ip, port_b, via=a)
    if topo.mode == "netns":
        assert not hears(a.ip, port_a, via=b)  # both ways: b reaches nobody either
        guard = subprocess.run(
            ["ip", "route", "show", f"{topo.subnet}.0/24"], capture_output=True, text=True
        )
        assert "unreachable" in guard.stdout  # the DANGER guard stays in place
    else:
        assert proc_b.stopped
    assert hears(a.ip, port_a)  # the others are untouched
    topo.heal(b, port_b)
    assert hears(b.ip, port_b) and hears(b.ip, port_b, via=a)


def test_kill9_restart_and_teardown(topo: Topology, tmp_path: Path) -> None:
    host, proc, port = answering(topo, "k", tmp_path)
    pid = proc.pid
    assert proc.kill9() == -9
    assert not hears(host.ip, port)
    proc.restart()
    assert proc.pid != pid and hears(host.ip, port)
    ns, pid = host.ns, proc.pid
    topo.close()
    assert not proc.running
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10)
    if ns is not None:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in listed
        routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        assert f"{topo.subnet}.0/24" not in routes
