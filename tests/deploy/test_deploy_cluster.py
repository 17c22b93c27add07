"""deploy/compose.cluster.yaml and deploy/swarm/cluster.yaml: the cluster topology.

Layer: tests (static; no Docker engine). The Kubernetes `cluster` overlay is checked in
test_deploy_k8s.py beside the other overlays; these are its Compose and Swarm forms: the
Compose specification's schema, the shape (PostgreSQL, three blob nodes each with its own
volume and advertised name, gateways on --blobs cluster), and every kvbox command parsed by
kvbox's own parser with the service's environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    CLUSTER_COMPOSE_FILE,
    CLUSTER_STACK_FILE,
    IMAGE_TARGETS,
    REPO,
    SWARM_DEPLOY_KEYS,
    SWARM_SERVICE_KEYS,
    assert_env_means_flags,
    compose_argv,
    compose_environment,
    flag_value,
    interpolate,
    load_yaml,
    require_subcommands,
    run_tool,
    tool,
)

FILES = {"compose": CLUSTER_COMPOSE_FILE, "stack": CLUSTER_STACK_FILE}


def _kvbox_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running a kvbox image (not PostgreSQL's)."""
    return {
        name: service
        for name, service in data["services"].items()
        if interpolate(str(service["image"])).rsplit("/", 1)[-1].split(":")[0] in IMAGE_TARGETS
    }


def _by_command(data: dict[str, Any], command: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _kvbox_services(data).items()
        if compose_argv(service)[1] == command
    }


@pytest.mark.parametrize("which", list(FILES))
def test_matches_compose_spec_schema(which: str) -> None:
    run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
              str(FILES[which])])  # fmt: skip


@pytest.mark.parametrize("which", list(FILES))
def test_cluster_topology(which: str) -> None:
    data = load_yaml(FILES[which])
    services = data["services"]
    assert "postgres" in services
    nodes = _by_command(data, "blobnode")
    assert len(nodes) >= 3, "three replicas of each chunk need three nodes"
    volumes: set[str] = set()
    for name, node in nodes.items():
        argv = compose_argv(node)
        # A node advertises its own service name, on the port it listens on.
        port = flag_value(argv, "--listen").rpartition(":")[2]
        assert flag_value(argv, "--advertise") == f"{name}:{port}", name
        (mount,) = [v for v in node["volumes"] if isinstance(v, str)]
        volume, _, path = mount.partition(":")
        assert path == flag_value(argv, "--data") and volume in data["volumes"]
        volumes.add(volume)
        assert node["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/healthz"
    assert len(volumes) == len(nodes), "each blob node has a volume of its own"
    gateways = _by_command(data, "serve")
    assert list(gateways) == ["gateway"]
    gateway = gateways["gateway"]
    assert flag_value(compose_argv(gateway), "--blobs") == "cluster"
    assert gateway["deploy"]["replicas"] >= 2, "one gateway lost must leave another serving"
    # Every kvbox process reads the same database, on the postgres service, and signs with
    # the cluster secret mounted where its argv says.
    for name, service in _kvbox_services(data).items():
        env = compose_environment(service)
        assert re.fullmatch(r"postgresql://kvbox:.*@postgres:5432/kvbox", env["KVBOX_META"])
        argv = compose_argv(service)
        if "--cluster-secret-file" in argv:
            secret = flag_value(argv, "--cluster-secret-file")
            assert secret == "/run/secrets/kvbox_cluster_secret", name
            assert "kvbox_cluster_secret" in service["secrets"], name
    assert set(data["secrets"]) == {"kvbox_cluster_secret", "kvbox_root_secret_key"}


def test_compose_starts_in_order() -> None:
    """Schema first, then nodes, then gateways: each waits for what it needs."""
    data = load_yaml(CLUSTER_COMPOSE_FILE)
    services = data["services"]
    assert compose_argv(services["migrate"])[1:] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in _by_command(data, "blobnode"):
        wait = services[name]["depends_on"]["migrate"]["condition"]
        assert wait == "service_completed_successfully", name
    gateway = services["gateway"]["depends_on"]
    assert gateway["migrate"]["condition"] == "service_completed_successfully"
    assert {n for n, d in gateway.items() if d["condition"] == "service_healthy"} == set(
        _by_command(data, "blobnode")
    )
    # The secrets are the operator's files, never committed.
    for secret in data["secrets"].values():
        path = (CLUSTER_COMPOSE_FILE.parent / secret["file"]).resolve()
        assert path.parent == (REPO / "deploy" / "secrets").resolve()
    assert "/deploy/secrets/" in (REPO / ".gitignore").read_text().splitlines()


def test_stack_is_swarm_shaped() -> None:
    stack = load_yaml(CLUSTER_STACK_FILE)
    assert str(stack["version"]).startswith("3.")
    assert stack["networks"]["kvbox"]["driver"] == "overlay"
    for name, service in stack["services"].items():
        assert set(service) <= SWARM_SERVICE_KEYS, (name, set(service) - SWARM_SERVICE_KEYS)
        assert set(service["deploy"]) <= SWARM_DEPLOY_KEYS, name
        assert "build" not in service and "kvbox" in service["networks"]
    # No start order in Swarm: the gateways apply the schema themselves.
    assert compose_environment(stack["services"]["gateway"])["KVBOX_MIGRATE"] == "true"
    # A local volume lives on one machine: PostgreSQL and every node are pinned to theirs,
    # and a rolling update stops the old task before starting the new one.
    for name in ["postgres", *_by_command(stack, "blobnode")]:
        deploy = stack["services"][name]["deploy"]
        assert deploy["placement"]["constraints"], name
        assert deploy["update_config"]["order"] == "stop-first", name
    assert all(s.get("external") for s in stack["secrets"].values())


def _commands() -> list[tuple[str, str]]:
    return [(which, name) for which, path in FILES.items() for name in
            _kvbox_services(load_yaml(path))]  # fmt: skip


@pytest.mark.parametrize(("which", "name"), _commands())
def test_service_command_and_env_parse(which: str, name: str) -> None:
    service = _kvbox_services(load_yaml(FILES[which]))[name]
    argv = compose_argv(service)
    assert argv[0] == "kvbox"
    require_subcommands(argv[1])
    assert_env_means_flags(argv[1:], compose_environment(service))


def test_every_compose_file_is_tested() -> None:
    from deploy_files import COMPOSE_FILE, STACK_FILE

    on_disk = {*REPO.joinpath("deploy").glob("compose*.yaml"),
               *REPO.joinpath("deploy", "swarm").glob("*.yaml")}  # fmt: skip
    assert on_disk == {COMPOSE_FILE, STACK_FILE, *map(Path, FILES.values())}
