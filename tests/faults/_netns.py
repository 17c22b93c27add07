"""Where the fault tests' processes live, and the faults done to them.

Layer: tests/faults (the harness every fault test uses). Rules:

* **One network namespace per process.** A ``Topology`` makes a Linux bridge in the
  root namespace holding ``10.201.X.1/24`` (X random per run and not routed yet), and
  for each ``Host`` a namespace joined to the bridge by a veth pair, with its own
  address ``10.201.X.Y``, ``lo`` up, and nothing else: the namespaces have no default
  route, so their traffic can only reach the bridge's subnet.
* **The DANGER guard.** Taking a link down removes the kernel's route to its subnet,
  and traffic would then follow the default route out of the machine. Every
  namespace, and the root namespace, gets an ``unreachable 10.201.X.0/24`` route with
  a high metric: while the link is up its own route wins; once it is down, the
  address answers "no route to host" instead of going anywhere else.
* **A partition is silence, not a refusal.** ``partition(host)`` sets the namespace's
  side of its veth down: the bridge port loses carrier and drops what is sent to the
  host, so peers see timeouts (as a cable pulled or a switch gone would do), never a
  fast RST; inside the namespace, sends fail at once with "no route to host" (the
  guard). ``heal(host)`` sets it up again and waits until the host answers.
  ``unreachable(address)`` is what a test asserts after partitioning: a connection
  from the root namespace gets no answer at all.
* **Processes** (``Proc``) start as ``ip netns exec NS python -m kvbox ...`` with the
  test's own interpreter (``e2e._server.kvbox_argv``/``clean_env``): ``ip netns exec``
  execs the command, so the PID we hold is kvbox's. ``kill9``/``restart``/``stop``/
  ``cont`` signal that PID only. Each process also dies with the test process
  (``_cleanup.dies_with_us``) when a run is killed from outside; its namespace and
  links then stay behind (no teardown runs): harmless kernel objects, and a later run
  picks a subnet no route uses yet.
* **Fallback.** Where namespaces are refused (no root, no CAP_NET_ADMIN: one attempt,
  its error caught), the same tests run with each host on its own loopback address
  ``127.0.X.Y`` and a partition is SIGSTOP of the host's processes (peers see
  timeouts there too). ``Topology.mode`` says which, and the fixtures log and report
  it; nothing is skipped. ``KVBOX_TEST_FAULTS_LOOPBACK=1`` forces the fallback.
* **Teardown always runs** (``close()`` from a fixture's ``finally``): every process
  started here is killed by its PID, then the namespaces, veth pairs, bridge and
  guard routes are deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from _cleanup import dies_with_us
from e2e._server import clean_env

log = logging.getLogger("tests.faults")

Mode = Literal["netns", "loopback"]
#: Seconds a process may take to print its ready line (six processes start at once on
#: two loaded cores).
START_TIMEOUT = 60.0
#: Metric of the guard routes: far above the kernel's own (0) for a connected subnet.
GUARD_METRIC = 4000
LOOPBACK_ENV = "KVBOX_TEST_FAULTS_LOOPBACK"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def namespaces_work() -> tuple[bool, str]:
    """Whether this machine lets us make network namespaces, and why not if it does not
    (one real attempt: a namespace made and deleted)."""
    if os.environ.get(LOOPBACK_ENV) == "1":
        return False, f"{LOOPBACK_ENV}=1"
    probe = f"kvbprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except FileNotFoundError:
        return False, "no `ip` command (iproute2)"
    except subprocess.CalledProcessError as exc:
        return False, f"`ip netns add` refused: {exc.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return True, ""


def describe(mode: Mode, why: str = "") -> str:
    """The one line the fault tests report about where they ran."""
    if mode == "netns":
        return "fault tests: one network namespace per process (ip netns, veth, bridge)"
    return (
        f"fault tests: NO network namespaces here ({why}); each process on its own "
        "loopback address 127.0.X.Y, partitions by SIGSTOP"
    )


@dataclass
class Proc:
    """One child process on a host, known by its PID (module docstring)."""

    host: Host
    name: str
    argv: list[str]
    log_path: Path
    ready: str
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    _offset: int = 0

    def spawn(self) -> None:
        assert not self.running, f"{self.name} already running"
        with open(self.log_path, "ab") as out:
            out.write(f"\n===== {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self._offset = out.tell()
            self.popen = subprocess.Popen(
                self.host.wrap(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(self.env),
                preexec_fn=dies_with_us(),  # survives ip netns exec's exec
            )
        self.stopped = False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """Wait for the ready line; the log text of this run up to it."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while True:
            text = self.new_log()
            if self.ready in text:
                return text
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout} s:\n{text}")
            time.sleep(0.05)

    def start(self) -> str:
        self.spawn()
        return self.wait_ready()

    def new_log(self) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def signal(self, sig: int) -> None:
        assert self.running, f"{self.name} is not running"
        os.kill(self.pid, sig)

    def kill9(self) -> int:
        """``kill -9`` (continued first if stopped, so it dies now); its exit status."""
        assert self.popen is not None
        self.signal(signal.SIGKILL)
        code = self.popen.wait(30)
        self.popen = None
        self.stopped = False
        return code

    def restart(self) -> str:
        """Start again (after ``kill9``) with the same argv, address and data."""
        if self.running:
            self.kill9()
        return self.start()

    def stop(self) -> None:
        """SIGSTOP: the process holds its sockets and answers nothing."""
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def close(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(30)
        self.popen = None


@dataclass
class Host:
    """A place for processes: a namespace with one address, or a loopback address."""

    topology: Topology
    name: str
    ip: str
    ns: str | None
    ifname: str | None
    procs: list[Proc] = field(default_factory=list)
    partitioned: bool = False

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace (as is on loopback)."""
        return ["ip", "netns", "exec", self.ns, *argv] if self.ns else list(argv)

    def port(self, fixed: int) -> int:
        """A port for a listener here: ``fixed`` in a namespace of our own (nothing else
        binds there), else one free on this loopback address."""
        if self.ns:
            return fixed
        with socket.socket() as s:
            s.bind((self.ip, 0))
            return int(s.getsockname()[1])

    def proc(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        ready: str,
        env: dict[str, str] | None = None,
    ) -> Proc:
        p = Proc(self, name, argv, log_path, ready, env or {})
        self.procs.append(p)
        return p


class Topology:
    """The bridge, the hosts and the faults (module docstring)."""

    def __init__(self, mode: Mode, why: str = "") -> None:
        self.mode: Mode = mode
        self.why = why
        self.token = secrets.token_hex(2)
        self.hosts: list[Host] = []
        self._made_ns: list[str] = []
        self._made_links: list[str] = []
        self._guard_root = False
        self.subnet = self._pick_subnet()
        self.bridge = f"kvf{self.token}br"
        #: The root namespace's address as the hosts see it (PostgreSQL listens here).
        self.gateway_ip = f"{self.subnet}.1" if mode == "netns" else "127.0.0.1"
        if mode == "netns":
            self._make_bridge()

    def _pick_subnet(self) -> str:
        rng = random.Random()
        for _ in range(50):
            x = rng.randrange(2, 250)
            if self.mode == "loopback":
                return f"127.0.{x}"
            if not _ip("route", "show", f"10.201.{x}.0/24").stdout.strip():
                return f"10.201.{x}"
        raise RuntimeError("no free 10.201.X.0/24 subnet")

    def _make_bridge(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        _ip("addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        _ip("route", "add", "unreachable", f"{self.subnet}.0/24", "metric", str(GUARD_METRIC))
        self._guard_root = True

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 10
        ip = f"{self.subnet}.{index}"
        if self.mode == "loopback":
            host = Host(self, name, ip, None, None)
        else:
            ns = f"kvf{self.token}{name}"
            outer, inner = f"kvf{self.token}v{index}", f"kvf{self.token}p{index}"
            _ip("netns", "add", ns)
            self._made_ns.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self._made_links.append(outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", inner, "up")
            _ip(
                "-n", ns, "route", "add", "unreachable", f"{self.subnet}.0/24",
                "metric", str(GUARD_METRIC),
            )  # fmt: skip
            host = Host(self, name, ip, ns, inner)
        self.hosts.append(host)
        return host

    # --- faults ----------------------------------------------------------------------

    def partition(self, host: Host) -> None:
        """Cut ``host`` off from every other host (module docstring)."""
        assert not host.partitioned
        if host.ns:
            assert host.ifname is not None
            _ip("-n", host.ns, "link", "set", host.ifname, "down")
        else:
            for p in host.procs:
                if p.running:
                    p.stop()
        host.partitioned = True

    def heal(self, host: Host, port: int, within: float = 30.0) -> None:
        """Undo ``partition`` and wait until ``host`` accepts a connection on ``port``."""
        assert host.partitioned
        if host.ns:
            assert host.ifname is not None
            _ip("-n", host.ns, "link", "set", host.ifname, "up")
        else:
            for p in host.procs:
                if p.running and p.stopped:
                    p.cont()
        host.partitioned = False
        deadline = time.monotonic() + within
        while not _connects(host.ip, port, 0.5):
            if time.monotonic() > deadline:
                raise AssertionError(f"{host.name} still unreachable {within} s after heal")
            time.sleep(0.1)

    def close(self) -> None:
        """Kill every process by PID, then delete what we made (always safe to call)."""
        for host in self.hosts:
            for p in host.procs:
                p.close()
        for ns in reversed(self._made_ns):
            _ip("netns", "del", ns, check=False)
        for link in reversed(self._made_links):
            _ip("link", "del", link, check=False)
        if self._guard_root:
            _ip(
                "route", "del", "unreachable", f"{self.subnet}.0/24",
                "metric", str(GUARD_METRIC), check=False,
            )  # fmt: skip
        self._made_ns.clear()
        self._made_links.clear()
        self._guard_root = False


def _connects(ip: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def unreachable(ip: str, port: int, timeout: float = 1.0) -> str:
    """How ``ip:port`` fails to answer: ``"timeout"``, ``"no route"`` or, on loopback
    where a stopped process's kernel still completes handshakes, ``"no answer"`` to a
    request. Raises if anything answers -- a refusal (RST) or a reply -- because then
    a "partitioned" address is still reached by something."""
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        if exc.errno in (113, 101):  # EHOSTUNREACH, ENETUNREACH
            return "no route"
        raise AssertionError(f"{ip}:{port} answered while partitioned: {exc!r}") from exc
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        try:
            got = sock.recv(100)
        except TimeoutError:
            return "no answer"
        raise AssertionError(f"{ip}:{port} answered while partitioned: {got!r}")


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """A ``Topology`` in the best mode this machine allows, torn down on exit."""
    ok, why = namespaces_work()
    topo = Topology("netns" if ok else "loopback", why)
    log.warning("%s", describe(topo.mode, why))
    try:
        yield topo
    finally:
        topo.close()
