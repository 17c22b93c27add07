"""The cluster's exact commands, run natively: PostgreSQL, blob nodes, gateways.

(The Kubernetes overlay below; deploy/compose.cluster.yaml in the last test, likewise.)

Layer: tests (e2e; spawns `kvbox migrate`, `kvbox blobnode` and `kvbox serve` processes,
loopback only, and uses the session's PostgreSQL from tests/_postgres.py). As
test_deploy_native.py does for the single server, this takes what
deploy/k8s/overlays/cluster gives its containers -- the argv (image ENTRYPOINT with the
manifest's args, `$(VAR)` expanded from the container's env as the kubelet does), the env
(Secret references resolved) and the mounted Secret files -- and runs exactly that, with
only these substitutions:

* `kvbox` -> this interpreter's `python -m kvbox`;
* the Secret `kvbox-pg-app`'s `uri` (CloudNativePG's) -> a database of the test's server;
  the operator's Secrets -> values the test makes; the downward API's pod name -> the
  name the StatefulSet or Deployment would give;
* each pod's /data -> a directory of its own; mounted files -> temporary files;
* `0.0.0.0:<port>` and a pod's DNS name `<pod>.<headless service>:<port>` -> that pod's
  `127.0.0.1:<free port>`; `--host 0.0.0.0` -> 127.0.0.1; the gateways' fixed ports
  (7070/9000) -> free ones through KVBOX_KV_PORT/KVBOX_HTTP_PORT.

Then it checks what the overlay promises: the init step brings an empty database to the
schema (twice at once, as pods start together); every blob node answers its probes and
registers under the address it advertises (three of the StatefulSet's nodes: what a
write needs with R = W = 3); the gateways (the autoscaler's minimum) answer theirs; an
object written through one gateway reads back whole through the other; one node killed
with SIGKILL leaves reads served and refuses chunked writes with 503 until it is back on
its volume (docs/deploy.md, "Failures"); and SIGTERM stops every process with exit 0.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from _ports import free_port

from .test_deploy_native import Proc, _http_ok, _wait
from .test_deploy_native import procs as procs  # the fixture: every process, killed at the end

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
import deploy_files as df

ACCESS_KEY = "CLUSTERDEPLOYTEST01"
#: Bound of every wait for a process to start: six start at once here, on a 2-core CI
#: machine that may be running other suites, so twice the single server's 30 s.
START_TIMEOUT_S = 60.0


@dataclass
class Pod:
    """One pod of a workload, as the kubelet would start its containers."""

    name: str
    spec: dict[str, Any]  # the pod template's spec
    address: str = ""  # 127.0.0.1:PORT this pod's main port stands for


def _expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion of args from the container's own env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)


class Cluster:
    """Secrets, directories and addresses that put the overlay's pods on this machine."""

    def __init__(self, tmp: Path, pg_url: str, objects: list[dict[str, Any]]) -> None:
        self.tmp = tmp
        self.objects = objects
        self.secrets = {
            ("kvbox-pg-app", "uri"): pg_url,
            ("kvbox-cluster-secret", "cluster-secret"): secrets.token_hex(32),
            ("kvbox-root-credentials", "KVBOX_ROOT_ACCESS_KEY"): ACCESS_KEY,
            ("kvbox-root-credentials", "KVBOX_ROOT_SECRET_KEY"): secrets.token_urlsafe(30),
        }
        self.addresses: dict[str, str] = {}  # "<pod>.<service>:<port>" -> 127.0.0.1:PORT

    def workload(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [o for o in df.workloads(self.objects)
                    if o["kind"] == kind and o["metadata"]["name"] == name]  # fmt: skip
        return found

    def command(
        self, pod: Pod, container: dict[str, Any], extra: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        root = self.tmp / pod.name
        root.mkdir(exist_ok=True)
        env: dict[str, str] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[item["name"]] = self.secrets[(ref["name"], ref["key"])]
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = pod.name
            else:
                raise AssertionError(f"{pod.name}: env {item} has no local stand-in")
        files = self._mount(pod, container, root)
        argv = [_expand(a, env) for a in df.k8s_argv(container)]
        assert argv[0] == "kvbox", argv
        local = [self._local(a, pod, root, files) for a in argv[1:]]
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("KVBOX_")}
        run_env.update({k: self._local(v, pod, root, files) for k, v in env.items()})
        run_env.update(extra or {})
        return [sys.executable, "-m", "kvbox", *local], run_env

    def _mount(self, pod: Pod, container: dict[str, Any], root: Path) -> dict[str, str]:
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        files: dict[str, str] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    local = root / f"secret-{item['path']}"
                    local.write_text(self.secrets[(volume["secret"]["secretName"], item["key"])])
                    local.chmod(0o600)
                    files[f"{mount['mountPath']}/{item['path']}"] = str(local)
            else:  # a claim or an emptyDir: a directory of this pod's own
                files[mount["mountPath"]] = str(root / mount["name"])
        return files

    def _local(self, token: str, pod: Pod, root: Path, files: dict[str, str]) -> str:
        if token in files:
            return files[token]
        if token == "0.0.0.0":
            return "127.0.0.1"
        if token.startswith("0.0.0.0:"):
            return pod.address
        return self.addresses.get(token, token)


def _probes(container: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, port name) of every HTTP probe of a container."""
    return [
        (container[p]["httpGet"]["path"], container[p]["httpGet"]["port"])
        for p in ("startupProbe", "livenessProbe", "readinessProbe")
        if p in container
    ]


def _s3(endpoint: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )


def test_cluster_overlay_runs_natively(tmp_path: Path, pg_url: str, procs: list[Proc]) -> None:
    df.require_subcommands("serve", "blobnode", "migrate")
    objects = df.kustomize(df.K8S_OVERLAYS["cluster"])
    cluster = Cluster(tmp_path, pg_url, objects)
    nodes_set = cluster.workload("StatefulSet", "kvbox-blobnode")
    gateways_set = cluster.workload("Deployment", "kvbox-gateway")
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]

    # The pods, named as their controllers name them; each node's DNS name is the address
    # it advertises, and stands for its local port.
    service = nodes_set["spec"]["serviceName"]
    # Three of the StatefulSet's nodes: as many as a write needs (R = W = 3), which keeps
    # this test's six processes inside its time on a 2-core machine.
    assert nodes_set["spec"]["replicas"] >= 3
    nodes = [Pod(f"kvbox-blobnode-{i}", nodes_set["spec"]["template"]["spec"])
             for i in range(3)]  # fmt: skip
    gateways = [Pod(f"kvbox-gateway-{i}", gateways_set["spec"]["template"]["spec"])
                for i in range(hpa["spec"]["minReplicas"])]  # fmt: skip
    (node_container,) = nodes_set["spec"]["template"]["spec"]["containers"]
    node_port = {p["name"]: p["containerPort"] for p in node_container["ports"]}
    for pod in nodes:
        pod.address = f"127.0.0.1:{free_port()}"
        for port in node_port.values():
            cluster.addresses[f"{pod.name}.{service}:{port}"] = pod.address

    # Init containers: every pod runs `kvbox migrate` before its program; they start at
    # once, so two run concurrently on the empty database and both must succeed.
    inits = []
    for pod in (nodes[0], gateways[0]):
        (init,) = pod.spec["initContainers"]
        argv, env = cluster.command(pod, init)
        inits.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT))  # fmt: skip
    for init_proc in inits:
        out, _ = init_proc.communicate(timeout=60)
        assert init_proc.returncode == 0, out.decode()

    # Blob nodes with the StatefulSet's argv and gateways with the Deployment's, all started
    # at once as their pods would be; then every probe must answer on its port.
    for pod in nodes:
        argv, env = cluster.command(pod, node_container)
        assert pod.address in argv, f"{pod.name} does not listen/advertise its address: {argv}"
        procs.append(Proc(pod.name, argv, env, tmp_path / f"{pod.name}.log"))
    (gw_container,) = gateways_set["spec"]["template"]["spec"]["containers"]
    endpoints = []
    for pod in gateways:
        kv_port, http_port = free_port(), free_port()
        ports = {"KVBOX_KV_PORT": str(kv_port), "KVBOX_HTTP_PORT": str(http_port)}
        argv, env = cluster.command(pod, gw_container, ports)
        proc = Proc(pod.name, argv, env, tmp_path / f"{pod.name}.log")
        procs.append(proc)
        endpoints.append((f"http://127.0.0.1:{http_port}", proc))
    for pod in nodes:
        for path, port in _probes(node_container):
            assert port in node_port, port
            url = f"http://{pod.address}{path}"
            _wait(f"{pod.name} probe {path}", functools.partial(_http_ok, url),
                  START_TIMEOUT_S, procs)  # fmt: skip
    for endpoint, proc in endpoints:
        for path, _port in _probes(gw_container):
            _wait(f"{proc.name} probe {path}", functools.partial(_http_ok, endpoint + path),
                  START_TIMEOUT_S, procs)  # fmt: skip

    # Every node registered under the DNS name it advertises (here: its local address).
    status = subprocess.run(
        [sys.executable, "-m", "kvbox", "admin", "cluster", "status", "--meta", pg_url],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("KVBOX_")},
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    for pod in nodes:
        assert pod.address in status.stdout, status.stdout

    # Through both gateways: what one acknowledges, the other reads back whole.
    secret_key = cluster.secrets[("kvbox-root-credentials", "KVBOX_ROOT_SECRET_KEY")]
    (a, _), (b, _) = endpoints
    s3a, s3b = _s3(a, secret_key), _s3(b, secret_key)
    s3a.create_bucket(Bucket="deployed")
    bodies = {"small": b"kvbox cluster\n", "large": os.urandom(9 << 20)}
    for key, body in bodies.items():
        s3a.put_object(Bucket="deployed", Key=key, Body=body)
    s3b.put_object(Bucket="deployed", Key="from-b", Body=b"written on b")
    for client, key, body in [
        *((s3b, k, v) for k, v in bodies.items()),
        (s3a, "from-b", b"written on b"),
    ]:
        got = client.get_object(Bucket="deployed", Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), key
    listed = s3b.list_objects_v2(Bucket="deployed")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["from-b", "large", "small"]

    # docs/deploy.md's failure table for one blob node lost with exactly R nodes: reads
    # fail over to the other replicas, a chunked write is refused with 503 (W = 3 cannot
    # be met), and the node restarted on its volume is written to again.
    lost = procs[0]
    assert lost.stop(signal.SIGKILL) == -signal.SIGKILL
    for client in (s3a, s3b):
        got = client.get_object(Bucket="deployed", Key="large")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(bodies["large"]).digest()
    chunked = os.urandom(1 << 20)  # above the 64 KiB that stay inline in PostgreSQL
    with pytest.raises(ClientError) as refused:
        s3a.put_object(Bucket="deployed", Key="while-down", Body=chunked)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
    restarted = Proc(lost.name, lost.argv, lost.env, lost.log)
    procs[0] = restarted
    _wait(f"{lost.name} back", functools.partial(_http_ok, f"http://{nodes[0].address}/healthz"),
          START_TIMEOUT_S, procs)  # fmt: skip
    _wait("a chunked write accepted again", functools.partial(_put_ok, s3b, chunked),
          START_TIMEOUT_S, procs)  # fmt: skip
    got = s3a.get_object(Bucket="deployed", Key="while-down")["Body"].read()
    assert got == chunked

    # SIGTERM, as the kubelet stops a pod: every process drains and exits 0.
    for proc in reversed(procs):
        assert proc.stop(signal.SIGTERM) == 0, proc.tail()


def _put_ok(client: Any, body: bytes) -> bool:
    """One PUT; False while the cluster refuses it with 503 (a node not yet writable)."""
    try:
        client.put_object(Bucket="deployed", Key="while-down", Body=body)
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] != 503:
            raise
        return False
    return True


def test_compose_cluster_runs_natively(tmp_path: Path, pg_url: str, procs: list[Proc]) -> None:
    """deploy/compose.cluster.yaml's kvbox services, natively: the `migrate` one-shot, the
    blob nodes and the gateway's replicas with their argv, environment (interpolated from
    the variables the file requires) and secret files, each healthy by its own Compose
    HEALTHCHECK command; then a write through one gateway reads back through the other.
    The `postgres` service is the test's PostgreSQL (its URL replaces KVBOX_META's)."""
    df.require_subcommands("serve", "blobnode", "migrate", "health")
    services = df.load_yaml(df.CLUSTER_COMPOSE_FILE)["services"]
    secret_key = secrets.token_urlsafe(30)
    # What the user exports before `docker compose up` (the password: KVBOX_META is replaced).
    host_env = {"KVBOX_PG_PASSWORD": "unused", "KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY}
    files = {"/run/secrets/kvbox_cluster_secret": secrets.token_hex(32),
             "/run/secrets/kvbox_root_secret_key": secret_key}  # fmt: skip
    local_files: dict[str, str] = {}
    for path, value in files.items():
        local = tmp_path / Path(path).name
        local.write_text(value)
        local.chmod(0o600)
        local_files[path] = str(local)
    kvbox = {  # the services running kvbox's image (not PostgreSQL's)
        n: s
        for n, s in services.items()
        if df.interpolate(str(s["image"])).split(":")[0] in df.IMAGE_TARGETS
    }
    nodes = [n for n, s in kvbox.items() if df.compose_argv(s)[1] == "blobnode"]
    addresses = {}  # "<service>:<port>" as the others reach it -> 127.0.0.1:PORT
    for name in nodes:
        port = df.flag_value(df.compose_argv(kvbox[name]), "--listen").rpartition(":")[2]
        addresses[f"{name}:{port}"] = f"127.0.0.1:{free_port()}"

    def command(name: str, own: str = "", instance: str = "") -> list[str]:
        """NAME's argv for one of its containers (INSTANCE: a replica's own directories)."""
        service = kvbox[name]
        paths = [v.split(":")[1] for v in service.get("volumes", []) if isinstance(v, str)]
        paths += [t.split(":")[0] for t in service.get("tmpfs", [])]
        root = tmp_path / (instance or name)
        mounts = {p: str(root / p.strip("/").replace("/", "-")) for p in paths}

        def local(token: str) -> str:
            if token in local_files:
                return local_files[token]
            if token in mounts:
                return mounts[token]
            if token.startswith("0.0.0.0:"):
                return own
            return "127.0.0.1" if token == "0.0.0.0" else addresses.get(token, token)

        argv = [local(t) for t in df.compose_argv(service)[1:]]
        return [sys.executable, "-m", "kvbox", *argv]

    def environment(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        raw = kvbox[name].get("environment") or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVBOX_")}
        env.update({k: df.interpolate(str(v), host_env) for k, v in raw.items()})
        env["KVBOX_META"] = pg_url
        env.update({k: local_files.get(v, v) for k, v in env.items() if k.startswith("KVBOX_")})
        env.update(extra or {})
        return env

    def healthy(name: str, fixed: str, actual: str) -> bool:
        test = kvbox[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "kvbox"] and any(fixed in t for t in test), test
        argv = [t.replace(fixed, actual) for t in test[2:]]
        done = subprocess.run([sys.executable, "-m", "kvbox", *argv], capture_output=True,
                              timeout=15, check=False, env=environment(name))  # fmt: skip
        return done.returncode == 0

    migrate = subprocess.run(command("migrate"), env=environment("migrate"), timeout=60,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    for name in nodes:
        own = addresses[f"{name}:9100"]
        procs.append(Proc(name, command(name, own), environment(name), tmp_path / f"{name}.log"))
    endpoints = []
    for index in range(int(kvbox["gateway"]["deploy"]["replicas"])):
        kv_port, http_port = free_port(), free_port()
        ports = {"KVBOX_KV_PORT": str(kv_port), "KVBOX_HTTP_PORT": str(http_port)}
        env = environment("gateway", ports)
        proc = Proc(
            f"gateway-{index}",
            command("gateway", instance=f"gateway-{index}"),
            env,
            tmp_path / f"gw{index}.log",
        )
        procs.append(proc)
        endpoints.append(f"127.0.0.1:{http_port}")
    for name in nodes:
        check = functools.partial(healthy, name, "127.0.0.1:9100", addresses[f"{name}:9100"])
        _wait(f"{name}'s healthcheck", check, START_TIMEOUT_S, procs)
    for endpoint in endpoints:
        check = functools.partial(healthy, "gateway", "127.0.0.1:9000", endpoint)
        _wait(f"gateway {endpoint}'s healthcheck", check, START_TIMEOUT_S, procs)

    s3a, s3b = (_s3(f"http://{e}", secret_key) for e in endpoints)
    body = os.urandom(3 << 20)
    s3a.create_bucket(Bucket="composed")
    s3a.put_object(Bucket="composed", Key="k", Body=body)
    assert s3b.get_object(Bucket="composed", Key="k")["Body"].read() == body
    for proc in reversed(procs):
        assert proc.stop(signal.SIGTERM) == 0, proc.tail()
