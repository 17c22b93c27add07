"""A full disk survived: a real small file system, filled for real (issue 10).

Layer: tests/e2e. The data directory lives on a 64 MiB tmpfs this module mounts (and
unmounts); where mounting is not allowed the module is skipped, saying so. The disk is
filled by the server's own clients (S3 PUTs until the reserve refuses them) and then to
the last byte by a file written beside the data directory, as another program would.
What must hold: writes refused at once with S3 507 ``XKvboxStorageFull`` (which boto3
does not retry) and GW-KV ``ERR STORAGE full`` (BSET too); reads, STATS and deletes
working throughout, even with not one byte free; /readyz and /metrics saying so; one
WARNING per episode; writes resuming by themselves once space is back; and a start, with
unapplied journal records, on a disk full to the last byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._gwkv import MiB, wait_until
from ._s3 import S3Server, signed

BUCKET = "full"
FS_SIZE = "64m"


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("fullfs") / "mnt"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a {FS_SIZE} tmpfs is not allowed here: {done.stderr.decode()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path: Path) -> Path:
    """Write a file until the file system has not one byte left (as another program
    would); returns it, to be removed to give the space back."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (256 * 1024, 4096, 512, 1):  # then the last partial blocks
            block = b"\xff" * size
            for _ in range(4096):  # bounded: the fs holds 64 MiB
                try:
                    os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    assert _free(path) < 4096, _free(path)
    return filler


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m is not None, f"{name} not in /metrics"
    return float(m.group(1))


def _put_until_refused(s3: object, prefix: str) -> tuple[list[str], ClientError]:
    stored: list[str] = []
    for i in range(80):  # bounded: 80 MiB is more than the file system holds
        key = f"{prefix}{i:03}"
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(MiB))  # type: ignore[attr-defined]
        except ClientError as exc:
            return stored, exc
        stored.append(key)
    raise AssertionError("the disk never filled")


def _server(data: Path, logs: Path, *args: str) -> S3Server:
    """A server whose data lives on the small file system and whose log does not: the
    test reads the log, which a full disk would cut short."""
    srv = S3Server(data, *args)
    srv.server.log_path = logs / f"{data.name}.server.log"
    return srv.start()


def _set_works(srv: S3Server) -> bool:
    with srv.server.connect() as w:
        return w.request(b"SET more x\n").startswith(b"OK ")


def test_a_full_disk_refuses_writes_keeps_reads_and_deletes_and_recovers(
    small_fs: Path, tmp_path: Path
) -> None:
    srv = _server(
        small_fs / "data",
        tmp_path,
        "--min-free",
        "16MiB",
        "--lifecycle-test-clock",
        "--lifecycle-interval",
        "0",
    )
    try:
        server = srv.server
        s3 = srv.client()
        s3.create_bucket(Bucket=BUCKET)
        with server.connect() as w:
            assert w.request(b"SET before hello\n").startswith(b"OK ")

        stored, refusal = _put_until_refused(s3, "obj")
        assert len(stored) >= 20, len(stored)  # 64 MiB less a 16 MiB reserve
        assert refusal.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert refusal.response["Error"]["Code"] == "XKvboxStorageFull"
        assert "deletes still work" in refusal.response["Error"]["Message"]
        assert str(small_fs) not in refusal.response["Error"]["Message"]

        # boto3 as users make it (default retries) sends the refused PUT once.
        t0 = time.monotonic()
        with pytest.raises(ClientError) as err:
            srv.default_client().put_object(Bucket=BUCKET, Key="again", Body=b"x" * 1000)
        assert time.monotonic() - t0 < 2.0
        assert err.value.response["Error"]["Code"] == "XKvboxStorageFull"
        s3.head_bucket(Bucket=BUCKET)  # its access line comes after every attempt's
        assert wait_until(lambda: "HeadBucket full " in server.new_log(), 5)
        assert server.new_log().count("PutObject full/again 507:XKvboxStorageFull") == 1

        with server.connect() as w:
            t0 = time.monotonic()
            for request in (b"SET k1 v1\n", b"BSET k2 5\nhello\n"):
                reply = w.request(request)
                assert reply.startswith(b"ERR STORAGE full: "), reply
            assert time.monotonic() - t0 < 1.0  # each refusal answers at once
            assert w.request(b"GET before\n") == b"VALUE hello\n"
            assert re.fullmatch(rb"OK \d+\n", w.request(b"STATS\n"))
        assert s3.get_object(Bucket=BUCKET, Key=stored[0])["ContentLength"] == MiB

        base = f"http://127.0.0.1:{srv.http_port}"
        assert _get(base + "/readyz")[0] == 503
        metrics = _get(base + "/metrics")[1]
        assert _metric(metrics, "kvbox_storage_full") == 1
        assert _metric(metrics, "kvbox_disk_reserve_bytes") == 16 * MiB
        assert _metric(metrics, "kvbox_disk_free_bytes") < 16 * MiB
        assert _metric(metrics, "kvbox_storage_full_refusals_total") >= 4

        # Lifecycle expiry works below the reserve (obj000..obj009 expire a day old).
        s3.put_bucket_lifecycle_configuration(
            Bucket=BUCKET,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "old",
                        "Status": "Enabled",
                        "Filter": {"Prefix": "obj00"},
                        "Expiration": {"Days": 1},
                    }
                ]
            },
        )
        ran = signed(
            srv, "POST", "/_kvbox/lifecycle", body=b'{"run": true, "offset_seconds": 172800}'
        )
        assert ran.status == 200, ran.body
        assert json.loads(ran.body)["expired_current"] == 10
        with pytest.raises(ClientError):
            s3.head_object(Bucket=BUCKET, Key=stored[0])

        # Not one byte left: deletes still commit (the reserve file gives them room).
        filler = _fill(small_fs)
        for key in stored[10:20]:
            s3.delete_object(Bucket=BUCKET, Key=key)
        with server.connect() as w:
            assert w.request(b"DELETE before\n") == b"OK\n"
            assert w.request(b"GET before\n") == b"NOTFOUND\n"
        with pytest.raises(ClientError):
            s3.put_object(Bucket=BUCKET, Key="still-full", Body=b"x")

        # Space back: writes resume by themselves.
        filler.unlink()
        assert wait_until(lambda: _get(base + "/readyz")[0] == 200, 10)
        s3.put_object(Bucket=BUCKET, Key="after", Body=b"back again")
        with server.connect() as w:
            assert w.request(b"SET k1 v1\n").startswith(b"OK ")
        log = server.new_log()
        assert log.count("storage full:") == 1, log[-5000:]
        assert "storage no longer full" in log
        assert "Traceback" not in log
        server.terminate()
    finally:
        srv.close()
        shutil.rmtree(small_fs / "data", ignore_errors=True)


def test_a_start_on_a_disk_full_to_the_last_byte_replays_and_deletes(
    small_fs: Path, tmp_path: Path
) -> None:
    """Acknowledged SETs left in the journal by kill -9, then a disk without a free byte:
    the next start succeeds (no segment preallocated, the reserve file given to the
    replay), the SETs are there, and deletes work."""
    srv = _server(small_fs / "data2", tmp_path, "--min-free", "1MiB")
    filler: Path | None = None
    try:
        server = srv.server
        with server.connect() as w:
            for i in range(200):
                assert w.request(f"SET key{i} value-{i}\n".encode()).startswith(b"OK ")
        server.kill()  # the journal holds them, unapplied
        filler = _fill(small_fs)
        server.start()
        with server.connect() as w:
            assert w.request(b"GET key199\n") == b"VALUE value-199\n"
            assert w.request(b"SET more x\n").startswith(b"ERR STORAGE full")
            assert w.request(b"DELETE key0\n") == b"OK\n"
            assert w.request(b"GET key0\n") == b"NOTFOUND\n"
        filler.unlink()
        filler = None
        assert wait_until(lambda: _set_works(srv), 10)
        server.terminate()
    finally:
        if filler is not None:
            filler.unlink()
        srv.close()
        shutil.rmtree(small_fs / "data2", ignore_errors=True)
