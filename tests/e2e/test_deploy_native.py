"""The containers' exact commands, run natively: one server and its load generators.

Layer: tests (e2e; spawns `kvbox serve` and `kvbox loadgen` as processes, loopback only).
No container engine runs in CI, so this test takes what deploy/compose.yaml and the
Kubernetes demo overlay give their containers -- the argv (image ENTRYPOINT/CMD with the
manifest's command/args on top, resolved as Docker and Kubernetes do) and the environment
(secrets resolved) -- and runs exactly that, with only these substitutions:

* `kvbox` -> this interpreter's `python -m kvbox`;
* `0.0.0.0` -> `127.0.0.1` (nothing here may listen beyond loopback);
* the image's data volume (/data) -> a temporary directory;
* `<server service>:<port>` -> `127.0.0.1:<free port>`, and KVBOX_KV_PORT/KVBOX_HTTP_PORT
  set to free ports (the manifests use the fixed 7070/9000);
* mounted secret files -> temporary files with the Secret's content;
* instruments that change no behaviour: KVBOX_LOADGEN_ACK_LOG (one file per load generator,
  every acknowledged SET) and KVBOX_LOADGEN_LOG_FORMAT=json (machine-readable reports).

Then it checks what the deployments promise: the server becomes healthy by the image's own
HEALTHCHECK command (and, for Kubernetes, answers its probe paths); the load generators'
writes are visible on the server; SIGKILL and restart of the server on the same data loses
no acknowledged write; the load generators reconnect by themselves; and both programs exit 0
on SIGTERM, which is what makes running them as PID 1 without an init safe (Dockerfile).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _cleanup import dies_with_us

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
import deploy_files as df

from _ports import free_port

#: Bounds of every wait: generous for a loaded 2-core CI machine, still far below the
#: pytest timeout. Load generators report every 5 s (the manifests' --report-every) and
#: back off at most 5 s between reconnects.
START_TIMEOUT_S = 30.0
REPORT_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass
class Launch:
    """One container's process as its manifest describes it."""

    argv: list[str]  # starting with "kvbox"
    env: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)  # mounted secret files by path


@dataclass
class Deployment:
    server: Launch
    clients: list[Launch]
    server_names: set[str]  # how clients address the server (service names)
    health: list[str]  # the server image's HEALTHCHECK command
    probe_paths: list[str]  # HTTP paths the orchestrator probes (Kubernetes)


def _from_compose() -> Deployment:
    services = df.load_yaml(df.COMPOSE_FILE)["services"]
    server_name = next(n for n, s in services.items() if df.compose_target(s) == "server")
    server = services[server_name]
    clients = [s for s in services.values() if df.compose_target(s) == "client"]
    launches = [
        Launch(df.compose_argv(c), df.compose_environment(c))
        for c in clients
        for _ in range(int((c.get("deploy") or {}).get("replicas", 1)))
    ]
    health = df.image_config("server").healthcheck or []
    return Deployment(
        server=Launch(df.compose_argv(server), df.compose_environment(server)),
        clients=launches,
        server_names={server_name},
        health=health[1:],
        probe_paths=[],
    )


def _from_k8s_demo() -> Deployment:
    objects = df.kustomize(df.K8S_OVERLAYS["demo"])
    server: Launch | None = None
    clients: list[Launch] = []
    probes: list[str] = []
    for workload in df.workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            launch = Launch(
                df.k8s_argv(container),
                df.k8s_environment(container, objects),
                df.k8s_secret_files(pod, container, objects),
            )
            if df.k8s_target(container) == "server":
                server = launch
                probes = [
                    container[p]["httpGet"]["path"]
                    for p in ("startupProbe", "livenessProbe", "readinessProbe")
                    if p in container
                ]
            else:
                clients += [launch] * int(workload["spec"].get("replicas", 1))
    assert server is not None, "the demo overlay has no server"
    health = df.image_config("server").healthcheck or []
    return Deployment(
        server=server,
        clients=clients,
        server_names={o["metadata"]["name"] for o in objects if o["kind"] == "Service"},
        health=health[1:],
        probe_paths=probes,
    )


SOURCES: dict[str, Callable[[], Deployment]] = {
    "compose": _from_compose,
    "k8s-demo": _from_k8s_demo,
}


@dataclass
class Local:
    """The substitutions that move a container's process onto this machine's loopback."""

    tmp: Path
    data_dir: Path
    kv_port: int
    http_port: int
    server_names: set[str]
    volume: str = field(default_factory=lambda: df.image_config("server").volumes[0])

    def value(self, token: str, files: dict[str, Path]) -> str:
        if token == "0.0.0.0":
            return "127.0.0.1"
        if token == self.volume or token.startswith(self.volume + "/"):
            return str(self.data_dir) + token[len(self.volume) :]
        if token in files:
            return str(files[token])
        match = re.fullmatch(r"([\w.-]+):(\d+)", token)
        if match and match.group(1) in self.server_names:
            return f"127.0.0.1:{self.kv_port}"
        return token

    def command(
        self, launch: Launch, extra_env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        files: dict[str, Path] = {}
        for index, (path, content) in enumerate(sorted(launch.files.items())):
            local = self.tmp / f"secret-{index}-{Path(path).name}"
            local.write_bytes(content)
            files[path] = local
        assert launch.argv[0] == "kvbox", launch.argv
        args = [self.value(t, files) for t in launch.argv[1:]]
        for flag, port in (("--kv-port", self.kv_port), ("--http-port", self.http_port)):
            if flag in args:
                args[args.index(flag) + 1] = str(port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVBOX_")}
        env.update({k: self.value(v, files) for k, v in launch.env.items()})
        env.update(extra_env)
        return [sys.executable, "-m", "kvbox", *args], env


class Proc:
    """A spawned kvbox process with its output in a file (a pipe could fill and block it)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=dies_with_us(),
            )

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self, sig: signal.Signals, timeout: float = STOP_TIMEOUT_S) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)
            raise AssertionError(f"{self.name} ignored {sig.name} for {timeout} s") from None

    def tail(self) -> str:
        return "\n".join(self.lines()[-20:])


def _wait(what: str, check: Callable[[], bool], timeout: float, procs: list[Proc]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            code = proc.popen.poll()
            if code is not None:
                raise AssertionError(f"{proc.name} exited {code} while waiting for {what}:\n"
                                     f"{proc.tail()}")  # fmt: skip
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")


def _healthy(health: list[str], env: dict[str, str]) -> bool:
    proc = subprocess.run(
        health, env=env, capture_output=True, timeout=15, check=False, stdin=subprocess.DEVNULL
    )
    return proc.returncode == 0


def _http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=3) as response:
        return bool(response.status == 200)
    return False


def _reports(proc: Proc, since: int = 0) -> list[dict[str, Any]]:
    reports = []
    for line in proc.lines()[since:]:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "report":
                reports.append(event)
    return reports


def _serving(proc: Proc) -> bool:
    """A report shows the load generator connected and completing requests."""
    return any(r.get("connected") and r.get("ops", 0) > 0 for r in _reports(proc))


def _reconnected(proc: Proc, since: int) -> bool:
    """The load generator logged a reconnect after line SINCE."""
    for line in proc.lines()[since:]:
        with contextlib.suppress(ValueError):
            if json.loads(line).get("event") == "reconnected":
                return True
    return False


def _acked_after(ack_log: Path, version: str) -> bool:
    """Some acknowledged SET in ACK_LOG is newer than VERSION (version ids sort by time)."""
    if not ack_log.exists():
        return False
    return any(
        line.split()[1] > version for line in ack_log.read_text().splitlines() if line.strip()
    )


def _recovered(proc: Proc, since: int, ack_log: Path, version: str) -> bool:
    return _reconnected(proc, since) and _acked_after(ack_log, version)


def _auth_line(env: dict[str, str]) -> bytes:
    """``AUTH`` with the server's root keys when its environment requires GW-KV auth
    (loopback: the plain form is accepted); nothing otherwise."""
    if env.get("KVBOX_KV_AUTH") != "required":
        return b""
    secret = env.get("KVBOX_ROOT_SECRET_KEY") or Path(env["KVBOX_ROOT_SECRET_KEY_FILE"]).read_text()
    return f"AUTH {env['KVBOX_ROOT_ACCESS_KEY']} {secret.strip()}\n".encode()


def _set(kv_port: int, key: str, value: str, auth: bytes = b"") -> str:
    """SET over GW-KV (after ``auth``, an AUTH line); returns the new version id."""
    with socket.create_connection(("127.0.0.1", kv_port), timeout=15) as sock:
        sock.sendall(auth + f"SET {key} {value}\n".encode())
        reader = sock.makefile("rb")
        if auth:
            assert reader.readline().startswith(b"OK "), "AUTH refused"
        reply = reader.readline().decode().split()
    assert reply[0] == "OK", reply
    return reply[1]


def _read_reply(reader: Any) -> tuple[str, bytes | None]:
    """One BGET reply: (version, value) or ("", None) for NOTFOUND."""
    line = reader.readline().decode().rstrip("\r\n")
    if line == "NOTFOUND":
        return "", None
    word, length, version = line.split(" ")
    assert word == "VALUE", line
    value: bytes = reader.read(int(length))
    assert reader.read(1) == b"\n"
    return version, value


def _newest(
    kv_port: int, keys: list[str], auth: bytes = b""
) -> dict[str, tuple[str, bytes | None]]:
    """The newest version and value of every key, via pipelined GW-KV BGETs."""
    newest: dict[str, tuple[str, bytes | None]] = {}
    with socket.create_connection(("127.0.0.1", kv_port), timeout=15) as sock:
        sock.sendall(auth + b"".join(f"BGET {k}\n".encode() for k in keys))
        reader = sock.makefile("rb")
        if auth:
            assert reader.readline().startswith(b"OK "), "AUTH refused"
        for key in keys:
            newest[key] = _read_reply(reader)
        sock.sendall(b"STATS\n")
        stats = reader.readline().decode().split()
    assert stats[0] == "OK"
    newest[""] = (stats[1], None)
    return newest


def _acks(paths: list[Path]) -> dict[str, tuple[str, str]]:
    """Key -> (newest acknowledged version, sha256 of its value) over every ack log."""
    newest: dict[str, tuple[str, str]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            key, version, sha = line.split()
            if key not in newest or version > newest[key][0]:
                newest[key] = (version, sha)
    return newest


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts; whatever is still running at the end is killed."""
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(timeout=10)


@pytest.mark.parametrize("source", list(SOURCES))
def test_deployment_runs_natively(source: str, tmp_path: Path, procs: list[Proc]) -> None:
    df.require_subcommands("serve", "loadgen", "health")
    deployment = SOURCES[source]()
    assert len(deployment.clients) == 2, "the deployments run two load generators"
    local = Local(
        tmp=tmp_path,
        data_dir=tmp_path / "data",
        kv_port=free_port(),
        http_port=free_port(),
        server_names=deployment.server_names,
    )
    ports = {"KVBOX_KV_PORT": str(local.kv_port), "KVBOX_HTTP_PORT": str(local.http_port)}
    server_argv, server_env = local.command(deployment.server, ports)
    health = [sys.executable, "-m", "kvbox", *deployment.health[1:]]
    assert deployment.health[0] == "kvbox"

    def start_server() -> Proc:
        proc = Proc("server", server_argv, server_env, tmp_path / "server.log")
        procs.append(proc)
        _wait("the server's HEALTHCHECK", functools.partial(_healthy, health, server_env),
              START_TIMEOUT_S, [proc])  # fmt: skip
        for path in deployment.probe_paths:
            url = f"http://127.0.0.1:{local.http_port}{path}"
            _wait(f"probe {path}", functools.partial(_http_ok, url), START_TIMEOUT_S, [proc])
        return proc

    server = start_server()

    ack_logs = [tmp_path / f"acks-{i}.log" for i in range(len(deployment.clients))]
    clients = []
    for index, launch in enumerate(deployment.clients):
        instruments = {"KVBOX_LOADGEN_ACK_LOG": str(ack_logs[index]),
                       "KVBOX_LOADGEN_LOG_FORMAT": "json"}  # fmt: skip
        argv, env = local.command(launch, instruments)
        assert f"127.0.0.1:{local.kv_port}" in argv, f"client does not target the server: {argv}"
        clients.append(Proc(f"loadgen-{index}", argv, env, tmp_path / f"loadgen-{index}.log"))
    procs.extend(clients)
    for client in clients:
        _wait(f"{client.name} to report work", functools.partial(_serving, client),
              REPORT_TIMEOUT_S, [server, *clients])  # fmt: skip

    # Crash the server under load, then start it again on the same data directory.
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    marks = [len(c.lines()) for c in clients]
    time.sleep(1.0)  # the load generators notice and start backing off
    server = start_server()
    # Any version created from now on sorts after this one: a load generator whose ack log
    # gets a newer version has had a write acknowledged by the restarted server.
    auth = _auth_line(server_env)
    restarted = _set(local.kv_port, "deploynativeprobe", "restarted", auth)
    for client, mark, ack_log in zip(clients, marks, ack_logs, strict=True):
        _wait(f"{client.name} to reconnect and get writes acknowledged again",
              functools.partial(_recovered, client, mark, ack_log, restarted),
              REPORT_TIMEOUT_S, [server, *clients])  # fmt: skip

    # SIGTERM: the load generators stop cleanly (flushing their ack logs), exit 0.
    for client in clients:
        assert client.stop(signal.SIGTERM) == 0, client.tail()

    acked = _acks(ack_logs)
    assert acked, "no SET was acknowledged"
    newest = _newest(local.kv_port, sorted(acked), auth)
    for key, (version, sha) in acked.items():
        current, value = newest[key]
        assert value is not None, f"{key}: acknowledged as {version}, now NOTFOUND"
        assert current >= version, f"{key}: acknowledged {version}, server has older {current}"
        if current == version:
            assert hashlib.sha256(value).hexdigest() == sha, f"{key}: value differs from ack"
    stored, keys = int(newest[""][0]), len(acked)
    assert stored >= keys, f"STATS counts {stored} keys, {keys} were acknowledged"

    assert server.stop(signal.SIGTERM) == 0, server.tail()
