"""Durability over S3: PUTs acknowledged before a ``kill -9`` are all there, whole, after it.

Writers are boto3 clients in threads, PUTting objects of mixed sizes (inline and chunked,
so both the metadata-only and the chunk-file paths are crossed by the kill). Each key is
written once, so the check is exact: an acknowledged key must read back with its digest; a
key whose PUT was cut off may be absent, but never partial.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from ._lab import (
    allow_get,
    anon,
)
from ._s3 import S3Server

SIZES = (100, 4096, 70_000, 300_000, 2_500_000)


@pytest.mark.parametrize("seed", range(5))
def test_kill9_keeps_acknowledged_puts(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    srv = S3Server(tmp_path / "data", "--sync", "full").start()
    try:
        srv.client().create_bucket(Bucket="durable")
        acked: dict[str, str] = {}
        attempted: dict[str, str] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def writer(w: int) -> None:
            s3 = srv.client()
            wrng = random.Random(seed * 100 + w)
            for i in range(2_000):
                if stop.is_set():
                    return
                body = wrng.randbytes(wrng.choice(SIZES))
                key, digest = f"w{w}/obj{i}", hashlib.sha256(body).hexdigest()
                with lock:
                    attempted[key] = digest
                try:
                    s3.put_object(Bucket="durable", Key=key, Body=body)
                except (BotoCoreError, ClientError, OSError):
                    return  # the server died under us
                with lock:
                    acked[key] = digest

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        # The kill lands at a random moment of a running load: counted from the first
        # acknowledgement, not from the threads' start (making boto3 clients alone took
        # over 1.5 s at a load average of 12, and the kill then preceded every PUT).
        deadline = time.monotonic() + 60
        while not acked and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.2, 1.0))
        srv.server.kill(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert acked, "no PUT was acknowledged before the kill"
        srv.server.start()
        s3 = srv.client()
        for key, digest in acked.items():
            body = s3.get_object(Bucket="durable", Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == digest, key
        for key in set(attempted) - set(acked):
            try:
                body = s3.get_object(Bucket="durable", Key=key)["Body"].read()
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey"
                continue
            assert hashlib.sha256(body).hexdigest() == attempted[key], f"{key} is partial"
    finally:
        srv.close()


# --- bucket settings survive kill -9 -------------------------------------------------------


def test_bucket_settings_survive_kill_9(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        b = "rv-durable"
        s3.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
        for i in range(20):
            doc = {"Version": "2012-10-17", "Id": f"p{i}", "Statement": [allow_get(b)]}
            s3.put_bucket_policy(Bucket=b, Policy=json.dumps(doc))
        s3.put_bucket_acl(Bucket=b, ACL="public-read")
        s3.put_object(Bucket=b, Key="t", Body=b"x")
        s3.put_object_tagging(Bucket=b, Key="t", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
        srv.server.restart(signal.SIGKILL)
        s3 = srv.client()
        assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"])["Id"] == "p19"
        grants = s3.get_bucket_acl(Bucket=b)["Grants"]
        assert any(g["Permission"] == "READ" for g in grants)
        assert s3.get_object_tagging(Bucket=b, Key="t")["TagSet"] == [{"Key": "a", "Value": "1"}]
        assert anon(srv.http_port, "GET", f"/{b}/t").status == 200
    finally:
        srv.close()
