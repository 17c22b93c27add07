"""deploy/systemd/kvbox.service and deploy/cloud-init/user-data.yaml.

Layer: tests (static). The cloud-init file embeds the unit verbatim, so the two cannot drift;
the unit's command and KVBOX_* settings parse with kvbox's own parser; the paths the unit
expects are the ones cloud-init creates. `systemd-analyze verify` checks the unit where the
OS has it (it comes with systemd, not with the test extra).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    CLOUD_INIT,
    SYSTEMD_UNIT,
    assert_env_means_flags,
    load_yaml,
    require_subcommands,
)

VENV = "/opt/kvbox"
MOUNT = "/srv/kvbox"


def _unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in SYSTEMD_UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key, value))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def _unit_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for assignment in _values(_unit()["Service"], "Environment"):
        for token in shlex.split(assignment):
            key, _, value = token.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def cloud_config() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(CLOUD_INIT)
    return data


def test_cloud_init_embeds_the_unit_verbatim(cloud_config: dict[str, Any]) -> None:
    assert CLOUD_INIT.read_text().startswith("#cloud-config\n")
    (unit,) = [f for f in cloud_config["write_files"] if f["path"].endswith("/kvbox.service")]
    assert unit["path"] == "/etc/systemd/system/kvbox.service"
    assert unit["content"] == SYSTEMD_UNIT.read_text(), (
        "deploy/cloud-init/user-data.yaml must carry deploy/systemd/kvbox.service unchanged"
    )


def test_cloud_init_prepares_what_the_unit_needs(cloud_config: dict[str, Any]) -> None:
    service = _unit()["Service"]
    env = _unit_env()
    commands = [
        shlex.join(map(str, c)) if isinstance(c, list) else c for c in cloud_config["runcmd"]
    ]
    script = "\n".join(commands)
    assert "python3-venv" in cloud_config["packages"]
    assert f"python3 -m venv {VENV}" in script
    assert _values(service, "ExecStart") == [f"{VENV}/bin/kvbox serve"]
    assert f"{VENV}/bin/pip install" in script
    # The data directory is on the mounted disk, created for the service's user, writable.
    assert any(m[1] == MOUNT for m in cloud_config["mounts"])
    assert env["KVBOX_DATA"].startswith(MOUNT + "/")
    assert f"--owner={_values(service, 'User')[0]}" in script and env["KVBOX_DATA"] in script
    assert _values(service, "ReadWritePaths") == [MOUNT]
    assert "useradd" in script and _values(service, "User")[0] in script.split("useradd")[1]
    # The credential the unit loads is the file cloud-init generates.
    (credential,) = _values(service, "LoadCredential")
    name, _, source = credential.partition(":")
    assert source in script
    assert env["KVBOX_ROOT_SECRET_KEY_FILE"] == f"%d/{name}"
    assert _values(_unit()["Unit"], "RequiresMountsFor") == [MOUNT]
    assert "enable --now kvbox.service" in script


def test_unit_stops_after_kvbox_drains() -> None:
    service = _unit()["Service"]
    timeout = float(_values(service, "TimeoutStopSec")[0])
    assert timeout > float(_unit_env()["KVBOX_SHUTDOWN_GRACE"])


def test_unit_command_and_env_parse() -> None:
    argv = shlex.split(_values(_unit()["Service"], "ExecStart")[0])
    assert argv[0] == f"{VENV}/bin/kvbox"
    require_subcommands(argv[1])
    from_env = assert_env_means_flags(argv[1:], _unit_env())
    assert from_env.host == "0.0.0.0"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (it comes with the OS's systemd package)")
    # verify insists ExecStart exists; point it at a binary that does.
    unit = tmp_path / "kvbox.service"
    unit.write_text(SYSTEMD_UNIT.read_text().replace(f"{VENV}/bin/kvbox", "/bin/true"))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 on mere warnings (an unknown key, a bad value): any output fails too.
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not output, output


def test_unit_keeps_gwkv_on_loopback() -> None:
    """The unit puts S3 (with SigV4) on every address but GW-KV on loopback only: GW-KV
    is open unless --kv-auth requires credentials (docs/deploy.md, "A VM")."""
    env = _unit_env()
    assert env["KVBOX_HOST"] == "0.0.0.0"
    assert env["KVBOX_KV_HOST"] == "127.0.0.1"
    assert "KVBOX_KV_AUTH" not in env or env["KVBOX_KV_AUTH"] == "required"
