"""deploy/compose.yaml and deploy/swarm/stack.yaml: schema, shape, and kvbox's flags.

Layer: tests (static; no Docker engine). Both files are checked against the Compose
specification's JSON schema as vendored by the check-jsonschema package
(`--builtin-schema vendor.compose-spec`). `docker stack deploy` reads only the legacy 3.x
format, so the stack file is also held to the service keys that format has. Every command a
service runs is parsed by kvbox's own parser with the service's environment, so a flag or
KVBOX_* variable the code does not know fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import (
    COMPOSE_FILE,
    STACK_FILE,
    SWARM_DEPLOY_KEYS,
    SWARM_SERVICE_KEYS,
    assert_env_means_flags,
    compose_argv,
    compose_environment,
    compose_target,
    image_config,
    load_yaml,
    require_subcommands,
    run_tool,
    tool,
)

SERVER = "kvbox"
CLIENT = "loadgen"
KV_PORT = 7070
HTTP_PORT = 9000


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return data


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(STACK_FILE)
    return data


@pytest.mark.parametrize("path", [COMPOSE_FILE, STACK_FILE], ids=["compose", "stack"])
def test_matches_compose_spec_schema(path: Path) -> None:
    run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def test_schema_check_is_really_checking(tmp_path: Path, compose: dict[str, Any]) -> None:
    """A misspelt key must fail the same check, or the passes above would prove nothing."""
    broken = yaml.safe_load(yaml.safe_dump(compose))
    broken["services"][SERVER]["read_onyl"] = True
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(pytest.fail.Exception, match="read_onyl"):
        run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    raise AssertionError(f"unparsed duration {duration!r}")


def _container_ports(service: dict[str, Any]) -> set[str]:
    ports: set[str] = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(f"{port['target']}/{port.get('protocol', 'tcp')}")
        else:
            target, _, protocol = str(port).rsplit(":", 1)[-1].partition("/")
            ports.add(f"{target}/{protocol or 'tcp'}")
    return ports


@pytest.mark.parametrize("which", ["compose", "stack"])
def test_server_service(which: str, compose: dict[str, Any], stack: dict[str, Any]) -> None:
    data = compose if which == "compose" else stack
    server = data["services"][SERVER]
    image = image_config(compose_target(server))
    assert compose_target(server) == "server"
    # The named volume sits on the image's data directory, and is declared.
    mounts = [v for v in server["volumes"] if isinstance(v, str)]
    assert any(m.split(":")[1] == image.volumes[0] for m in mounts), mounts
    assert {m.split(":")[0] for m in mounts} <= set(data["volumes"])
    # Every port the image exposes is published, with its protocol.
    assert _container_ports(server) == set(image.exposed)
    # Docker's SIGKILL must come after kvbox's own drain.
    grace = float(compose_environment(server)["KVBOX_SHUTDOWN_GRACE"])
    assert _seconds(server["stop_grace_period"]) > grace


def test_compose_clients_wait_for_a_healthy_server(compose: dict[str, Any]) -> None:
    client = compose["services"][CLIENT]
    assert client["deploy"]["replicas"] == 2
    assert client["depends_on"][SERVER]["condition"] == "service_healthy"
    # service_healthy needs a health check: here it is the server image's HEALTHCHECK.
    server = compose["services"][SERVER]
    assert "healthcheck" in server or image_config("server").healthcheck not in (None, ["NONE"])
    assert compose_target(client) == "client"
    # No profiles: the cluster is deploy/compose.cluster.yaml (docs/deploy.md).
    assert all("profiles" not in s for s in compose["services"].values())


@pytest.mark.parametrize("which", ["compose", "stack"])
def test_clients_target_the_server_service(
    which: str, compose: dict[str, Any], stack: dict[str, Any]
) -> None:
    data = compose if which == "compose" else stack
    argv = compose_argv(data["services"][CLIENT])
    assert argv[:2] == ["kvbox", "loadgen"]
    address = argv[argv.index("--server") + 1]
    assert address == f"{SERVER}:{KV_PORT}", "clients reach the server by its service name"


def test_stack_is_swarm_shaped(stack: dict[str, Any]) -> None:
    assert str(stack["version"]).startswith("3."), "docker stack deploy reads format 3.x"
    assert stack["networks"]["kvbox"]["driver"] == "overlay"
    for name, service in stack["services"].items():
        assert set(service) <= SWARM_SERVICE_KEYS, (
            f"{name}: {set(service) - SWARM_SERVICE_KEYS} unknown to docker stack deploy"
        )
        assert set(service["deploy"]) <= SWARM_DEPLOY_KEYS
        assert "build" not in service and "kvbox" in service["networks"]
        assert {"update_config", "restart_policy"} <= set(service["deploy"])
    server = stack["services"][SERVER]
    assert server["deploy"]["replicas"] == 1
    assert server["deploy"]["placement"]["constraints"], "the volume is on one node"
    # One volume: a rolling update must stop the old server before starting the new one.
    assert server["deploy"]["update_config"]["order"] == "stop-first"
    assert stack["services"][CLIENT]["deploy"]["replicas"] == 2
    secret_file = compose_environment(server)["KVBOX_ROOT_SECRET_KEY_FILE"]
    assert secret_file.rsplit("/", 1)[-1] in server["secrets"]


def _services() -> list[tuple[str, str]]:
    return [
        (file_id, name)
        for file_id, path in (("compose", COMPOSE_FILE), ("stack", STACK_FILE))
        for name in load_yaml(path)["services"]
    ]


@pytest.mark.parametrize(("which", "name"), _services())
def test_service_command_and_env_parse(
    which: str, name: str, compose: dict[str, Any], stack: dict[str, Any]
) -> None:
    """The service's argv is a valid kvbox command, and every KVBOX_* variable it sets is a
    flag of that command meaning the same as the flag (KVBOX_ROOT_* belong to the S3
    credentials, read from the environment directly)."""
    service = (compose if which == "compose" else stack)["services"][name]
    argv = compose_argv(service)
    assert argv[0] == "kvbox"
    require_subcommands(argv[1])
    assert_env_means_flags(argv[1:], compose_environment(service))


def test_compose_never_prints_the_root_secret(compose: dict[str, Any]) -> None:
    """Compose passes no root keys, so the server generates them on its first start; its
    log must not carry the secret (container logs are kept and shipped). The image says
    so by default and the Compose file says it again, explicitly."""
    server = compose["services"][SERVER]
    assert image_config(compose_target(server)).env["KVBOX_SHOW_ROOT_SECRET"] == "false"
    assert compose_environment(server).get("KVBOX_SHOW_ROOT_SECRET") == "false"
    assert "KVBOX_ROOT_SECRET_KEY" not in compose_environment(server)


def test_compose_memory_limit_covers_the_servers_bound(compose: dict[str, Any]) -> None:
    """As the Kubernetes test: docs/operations.md's bound with the settings given."""
    server = compose["services"][SERVER]
    env = compose_environment(server)
    inflight = int(env["KVBOX_MAX_INFLIGHT_BYTES"].removesuffix("MiB")) << 20
    bound = (60 << 20) + (64 << 20) + (160 << 20) + inflight
    bound += int(env["KVBOX_MAX_CONNECTIONS"]) * (5 + 16) * 1024
    assert server["mem_limit"] == "512m"
    assert bound < 512 << 20
