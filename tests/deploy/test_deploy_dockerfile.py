"""The Dockerfile: hadolint, the build context, and the image contract with `kvbox`.

Layer: tests (static; no container engine). The contract (docs/deploy.md): the server target
runs `kvbox serve --host 0.0.0.0 --data /data` as uid 10001, keeps /data as a volume, exposes
GW-KV on 7070/tcp+udp and HTTP on 9000, and checks itself with `kvbox health`; the client
target runs the load generator against `kvbox:7070`. The constants below are that contract;
the tests marked as needing a subcommand also check it against kvbox's own argument parser,
so a changed default in the code fails here rather than in a cluster.
"""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from deploy_files import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    image_config,
    parse_dockerfile,
    parse_kvbox,
    require_subcommands,
    tool,
)

KV_PORT = 7070
HTTP_PORT = 9000
DATA_DIR = "/data"
UID = "10001"
BASE_IMAGE = "python:3.11-slim"
OCI_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
)

#: Every finding fails, however minor: the issue allows only ignores justified in a comment.
HADOLINT_CONFIG = "failure-threshold: style\n"


def _hadolint(dockerfile: Path, config_dir: Path) -> subprocess.CompletedProcess[str]:
    config = config_dir / "hadolint.yaml"
    config.write_text(HADOLINT_CONFIG)
    # -c: our config only, never a developer's ~/.config/hadolint.yaml.
    return subprocess.run(
        [tool("hadolint"), "--no-color", "-c", str(config), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_passes(tmp_path: Path) -> None:
    proc = _hadolint(DOCKERFILE, tmp_path)
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    """A known-bad Dockerfile must fail, or a passing run above would prove nothing."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    proc = _hadolint(bad, tmp_path)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged base image


def test_hadolint_ignores_are_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint" in line and "ignore" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"Dockerfile:{number + 1}: an ignored hadolint rule needs a comment line "
                "above it saying why"
            )


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory
    covers everything under it; `**/` matches any depth including none."""
    excluded = False
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        candidates = [pattern]
        if pattern.startswith("**/"):
            candidates.append(pattern[3:])
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            excluded = not negate
    return excluded


def test_copy_sources_exist_and_reach_the_build_context() -> None:
    copied: list[str] = []
    for stage in parse_dockerfile():
        for ins in stage.instructions:
            if ins.keyword not in {"COPY", "ADD"} or "--from=" in ins.args:
                continue
            words = [w for w in ins.args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (REPO / source).exists(), (
                    f"Dockerfile:{ins.line} copies {source!r}, which does not exist: "
                    "`docker build` would fail"
                )
                copied.append(source)
    assert copied, "no COPY found"
    for source in copied:
        # What the wheel is built from: the named files, and the package's sources.
        files = [source] if (REPO / source).is_file() else []
        files += [
            str(p.relative_to(REPO))
            for pattern in ("*.py", "py.typed")
            for p in (REPO / source).rglob(pattern)
            if "__pycache__" not in p.parts
        ]
        for file in files:
            assert not _dockerignore_excludes(file), f".dockerignore drops {file}, COPYed"


def test_dockerignore_keeps_clutter_out() -> None:
    for path in (".git/HEAD", "tests/e2e/x.py", "kvbox-data/x", ".venv/bin/python"):
        assert _dockerignore_excludes(path), f"{path} would be sent to the daemon"
    assert _dockerignore_excludes("src/kvbox/__pycache__/x.cpython-311.pyc")
    assert _dockerignore_excludes("src/kvbox.egg-info/SOURCES.txt")


def test_stages_and_base_image() -> None:
    stages = parse_dockerfile()
    assert [s.name for s in stages] == ["builder", "runtime", "client", "server"]
    assert stages[0].base == BASE_IMAGE and stages[1].base == BASE_IMAGE
    # The last stage is what a plain `docker build .` produces: the server.
    assert stages[-1].name == "server"


def test_runtime_installs_only_built_wheels() -> None:
    runtime = next(s for s in parse_dockerfile() if s.name == "runtime")
    installs = [i.args for i in runtime.instructions if i.keyword == "RUN" and "pip " in i.args]
    assert installs, "runtime stage installs nothing"
    for command in installs:
        assert "--no-index" in command and "from=builder" in command


@pytest.mark.parametrize("target", ["server", "client"])
def test_both_targets_run_kvbox_as_uid_10001(target: str) -> None:
    config = image_config(target)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config.entrypoint == ["kvbox"]
    assert "kvbox" in pyproject["project"]["scripts"], "ENTRYPOINT needs the kvbox console script"
    # Numeric: Kubernetes' runAsNonRoot can only verify a numeric USER.
    assert config.user is not None and config.user.split(":")[0] == UID
    assert config.user.split(":")[-1] == UID
    for label in OCI_LABELS:
        assert label in config.labels, f"{target} image lacks OCI label {label}"


def test_server_image_static_contract() -> None:
    config = image_config("server")
    assert config.cmd == ["serve", "--host", "0.0.0.0", "--data", DATA_DIR]
    assert config.volumes == [DATA_DIR]
    assert sorted(config.exposed) == sorted(
        [f"{KV_PORT}/tcp", f"{KV_PORT}/udp", f"{HTTP_PORT}/tcp"]
    )
    assert config.healthcheck == ["CMD", "kvbox", "health"]
    options = config.healthcheck_options
    assert _seconds(options["timeout"]) < _seconds(options["interval"])


def test_client_image_static_contract() -> None:
    config = image_config("client")
    assert config.cmd == ["loadgen", "--server", f"kvbox:{KV_PORT}"]
    assert config.healthcheck == ["NONE"]
    assert not config.volumes and not config.exposed


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    raise AssertionError(f"unparsed duration {duration!r}")


def test_server_cmd_matches_kvbox_serve() -> None:
    require_subcommands("serve")
    config = image_config("server")
    assert config.cmd is not None
    args = parse_kvbox(config.cmd, config.env)
    assert args.command == "serve"
    assert args.host == "0.0.0.0", "the container must listen beyond its own loopback"
    assert str(args.data) == DATA_DIR and DATA_DIR in config.volumes
    assert (args.kv_port, args.http_port) == (KV_PORT, HTTP_PORT), (
        "kvbox serve's default ports changed: update EXPOSE, compose, stack and k8s ports"
    )
    assert f"{args.kv_port}/tcp" in config.exposed and f"{args.kv_port}/udp" in config.exposed
    assert f"{args.http_port}/tcp" in config.exposed


def test_healthcheck_matches_kvbox_health() -> None:
    require_subcommands("health")
    config = image_config("server")
    assert config.healthcheck is not None
    args = parse_kvbox(config.healthcheck[2:], config.env)
    assert args.command == "health"
    probe_timeout = getattr(args, "timeout", None)
    if isinstance(probe_timeout, float | int):
        # kvbox health must give up, and say why, before Docker kills it.
        assert probe_timeout < _seconds(config.healthcheck_options["timeout"])
    server = getattr(args, "server", None)
    if isinstance(server, str):
        # The health check runs inside the server's container: it must probe the KV port.
        assert server.rsplit(":", 1)[-1] == str(KV_PORT), server


def test_client_cmd_matches_kvbox_loadgen() -> None:
    require_subcommands("loadgen")
    config = image_config("client")
    assert config.cmd is not None
    args = parse_kvbox(config.cmd, config.env)
    assert args.command == "loadgen"
    assert args.server == f"kvbox:{KV_PORT}"
