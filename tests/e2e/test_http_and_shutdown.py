"""The HTTP side door (health, readiness, Prometheus metrics) and graceful SIGTERM."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from _ports import free_port
from kvbox import Client
from kvbox.errors import KvboxError

from ._s3 import S3Server
from .conftest import ServerFactory


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert m, f"{name}{{{labels}}} not in metrics:\n{text}"
    return float(m.group(1))


def test_health_ready_and_metrics(server_factory: ServerFactory) -> None:
    http = free_port()
    server = server_factory("--http-port", str(http))
    base = f"http://127.0.0.1:{http}"
    assert _get(base + "/healthz") == (200, "ok\n")
    assert _get(base + "/readyz") == (200, "ready\n")
    with Client("127.0.0.1", server.port) as c:
        for i in range(25):
            c.set(f"m{i}", b"x" * 100)
        for i in range(10):
            assert c.get(f"m{i}") == b"x" * 100
    assert server.oneshot(b"GET bad-key\n").startswith(b"ERR BADKEY")
    status, text = _get(base + "/metrics")
    assert status == 200
    assert _metric(text, "kvbox_requests_total", 'door="gwkv",op="SET"') == 25
    assert _metric(text, "kvbox_requests_total", 'door="gwkv",op="GET"') >= 10
    assert _metric(text, "kvbox_request_errors_total", 'code="BADKEY",door="gwkv"') == 1
    assert _metric(text, "kvbox_stored_objects") == 25
    assert _metric(text, "kvbox_stored_bytes") == 2500
    assert _metric(text, "kvbox_received_bytes_total", 'door="gwkv"') > 2500
    assert _metric(text, "kvbox_sent_bytes_total", 'door="gwkv"') > 1000
    count = _metric(text, "kvbox_request_duration_seconds_count", 'door="gwkv"')
    assert count >= 36
    assert _metric(text, "kvbox_open_connections", 'door="gwkv"') == 0


def test_sigterm_under_load_loses_no_acknowledged_write(server_factory: ServerFactory) -> None:
    server = server_factory("--shutdown-grace", "5")
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        try:
            with Client("127.0.0.1", server.port, timeout=5) as c:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    key, value = f"w{w}k{i}", f"value-{w}-{i}".encode()
                    c.set(key, value)
                    with lock:
                        acked[key] = value
        except (OSError, KvboxError):
            return  # the server went away: what was acknowledged so far must survive

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    code = server.terminate()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert code == 0, server.log_text()
    assert "stopped" in server.log_text()
    assert len(acked) >= 200
    server.start()
    with Client("127.0.0.1", server.port) as c:
        keys = sorted(acked)
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            assert c.mget(batch) == [acked[k] for k in batch]


def test_root_credentials_printed_once(server_factory: ServerFactory) -> None:
    server = server_factory()
    first = server.log_text()
    m = re.search(r"^kvbox: root access key (\S+)$", first, re.MULTILINE)
    assert m, first
    assert re.search(r"^kvbox: root secret key \S+ ", first, re.MULTILINE)
    server.terminate()
    server.start()
    second = server.log_text()[len(first) :]
    assert f"root access key {m.group(1)} (from the data directory)" in second
    assert "root secret key" not in second


def test_s3_requests_are_in_the_metrics(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="metered")
        s3.put_object(Bucket="metered", Key="k", Body=b"x" * 1000)
        assert s3.get_object(Bucket="metered", Key="k")["Body"].read() == b"x" * 1000
        with pytest.raises(ClientError):
            s3.get_object(Bucket="metered", Key="missing")
        _, text = _get(f"{srv.endpoint}/metrics")
        assert _metric(text, "kvbox_requests_total", 'door="s3",op="PutObject"') == 1
        assert _metric(text, "kvbox_requests_total", 'door="s3",op="GetObject"') == 2
        assert _metric(text, "kvbox_request_errors_total", 'code="NoSuchKey",door="s3"') == 1
        assert _metric(text, "kvbox_received_bytes_total", 'door="s3"') >= 1000
        assert _metric(text, "kvbox_sent_bytes_total", 'door="s3"') >= 1000
        assert _metric(text, "kvbox_request_duration_seconds_count", 'door="s3"') >= 4
    finally:
        srv.close()
