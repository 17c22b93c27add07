"""Root credentials: environment, mounted secret file, data directory, generated once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kvbox.credentials import CREDENTIALS_FILE, load_root_credentials
from kvbox.errors import InvalidArgument


def test_generated_once_then_reused(tmp_path: Path) -> None:
    first = load_root_credentials(tmp_path, {})
    assert first.source == "generated"
    path = tmp_path / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_root_credentials(tmp_path, {})
    assert again.source == "data directory"
    assert (again.access_key, again.secret_key) == (first.access_key, first.secret_key)
    assert first.secret_key not in repr(first)


def test_environment_and_secret_file(tmp_path: Path) -> None:
    env = {"KVBOX_ROOT_ACCESS_KEY": "AK", "KVBOX_ROOT_SECRET_KEY": "s3cret"}
    creds = load_root_credentials(tmp_path, env)
    assert (creds.access_key, creds.secret_key, creds.source) == ("AK", "s3cret", "environment")
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    env = {"KVBOX_ROOT_ACCESS_KEY": "AK", "KVBOX_ROOT_SECRET_KEY_FILE": str(secret)}
    creds = load_root_credentials(tmp_path, env)
    assert (creds.secret_key, creds.source) == ("from-file", "file")
    assert not (tmp_path / CREDENTIALS_FILE).exists()


@pytest.mark.parametrize(
    "env",
    [
        {"KVBOX_ROOT_ACCESS_KEY": "AK"},
        {"KVBOX_ROOT_SECRET_KEY": "only-secret"},
        {"KVBOX_ROOT_ACCESS_KEY": "AK", "KVBOX_ROOT_SECRET_KEY_FILE": "/nonexistent/secret"},
        {
            "KVBOX_ROOT_ACCESS_KEY": "AK",
            "KVBOX_ROOT_SECRET_KEY": "x",
            "KVBOX_ROOT_SECRET_KEY_FILE": "/etc/hostname",
        },
    ],
)
def test_incomplete_settings_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        load_root_credentials(tmp_path, env)
