"""Real ``kvbox blobnode`` processes for tests: started on loopback, killed by PID.

Layer: tests (tests/cluster, tests/core/blob's conformance suite). Rules: each node is a
child process on its own data directory and a port chosen once and kept across
restarts (as a real node keeps its address); ``kill()`` is a real ``kill -9``;
``close()`` (run by every fixture) kills whatever is still alive. A test never waits on
a sleep: it waits for the node's start line or polls with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from _cleanup import dies_with_us
from _ports import free_port
from e2e._server import clean_env, kvbox_argv

START_TIMEOUT = 30.0


def write_secret(path: Path) -> Path:
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with ``labels`` in Prometheus ``text`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


class BlobNodeProcess:
    """One ``kvbox blobnode`` (module docstring)."""

    def __init__(
        self, data: Path, meta_url: str, secret_file: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.data = data
        #: More flags of ``kvbox blobnode`` (limits: ``--idle-timeout 0.5``).
        self.args = args
        self.meta_url = meta_url
        self.secret_file = secret_file
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = data.parent / f"{data.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""
        self._offset = 0

    def argv(self) -> list[str]:
        return kvbox_argv(
            "blobnode",
            "--data", str(self.data),
            "--listen", self.address,
            "--meta", self.meta_url,
            "--cluster-secret-file", str(self.secret_file),
            *self.args,
        )  # fmt: skip

    def spawn(self) -> None:
        assert not self.running
        with open(self.log_path, "ab") as log:
            self._offset = log.tell()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                preexec_fn=dies_with_us(),
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> BlobNodeProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            text = self.new_log()
            for line in text.splitlines():
                if line.startswith("kvbox: blobnode ") and " serving " in line:
                    self.node_id = line.split()[2]
                    return self
            if self.proc.poll() is not None:
                raise AssertionError(f"blobnode exited with {self.proc.returncode}:\n{text}")
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"blobnode not ready after {timeout} s:\n{text}")
            time.sleep(0.02)

    def start(self) -> BlobNodeProcess:
        self.spawn()
        return self.wait_ready()

    def new_log(self) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """``sig`` (default: kill -9) to the node's PID; its exit status."""
        assert self.proc is not None and self.proc.poll() is None, "node not running"
        os.kill(self.proc.pid, sig)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None

    def metrics(self) -> str:
        """The node's /metrics text."""
        url = f"http://{self.address}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text: str = resp.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the node's /metrics (0 when absent)."""
        return metric_value(self.metrics(), name, **labels)

    def chunk_file(self, chunk_id: str) -> Path:
        return self.data / "chunks" / chunk_id[:2] / chunk_id[2:4] / chunk_id

    def temp_files(self) -> list[Path]:
        tmp = self.data / "chunks" / "tmp"
        return sorted(tmp.iterdir()) if tmp.exists() else []


@contextlib.contextmanager
def blob_nodes(
    base: Path, meta_url: str, count: int, args: tuple[str, ...] = ()
) -> Iterator[list[BlobNodeProcess]]:
    """``count`` started nodes sharing one secret (``base / "secret"``), closed on exit;
    ``args`` are more flags for each."""
    base.mkdir(parents=True, exist_ok=True)
    secret = write_secret(base / "secret")
    nodes = [BlobNodeProcess(base / f"node{i}", meta_url, secret, args) for i in range(count)]
    try:
        for n in nodes:  # spawn all, then wait: their start-ups overlap
            n.spawn()
        for n in nodes:
            n.wait_ready()
        yield nodes
    finally:
        for n in nodes:
            n.close()
