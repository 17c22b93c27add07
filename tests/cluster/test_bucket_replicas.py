"""Per-bucket R on one cluster: ``kvbox admin bucket replicas BUCKET N``, real processes.

Layer: tests/cluster. PostgreSQL, three real blob nodes and a real gateway (R = 3 by
default, the repair worker every half second); copies are counted as chunk files on the
nodes' disks, not from the catalog's word. A chunk shared by buckets keeps the highest R
of the buckets that reference it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import urllib.request
from collections.abc import Iterator

import asyncpg
import pytest

from _cleanup import removed_after
from _postgres import PostgresServer
from e2e._gwkv import wait_until
from e2e._s3 import S3Server
from e2e._server import run_kvbox

from ._nodes import BlobNodeProcess, blob_nodes, metric_value


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[tuple[str, list[BlobNodeProcess], S3Server]]:
    url = postgres.new_database(migrated=True)
    with (
        removed_after(tmp_path_factory.mktemp("replicas")) as base,
        blob_nodes(base / "nodes", url, 3) as nodes,
    ):
        gw = S3Server(
            base / "gw", "--meta", url, "--blobs", "cluster", "--cluster-secret-file",
            str(nodes[0].secret_file), "--repair-interval", "0.5",
            "--cluster-recount-interval", "0.5",
        )  # fmt: skip
        gw.start()
        try:
            yield url, nodes, gw
        finally:
            gw.close()


async def sql(url: str, query: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(query)
    finally:
        await conn.close()


def copies(nodes: list[BlobNodeProcess], data: bytes) -> int:
    """Nodes holding the chunk of ``data`` (one chunk: below 8 MiB) as a file."""
    cid = hashlib.sha256(data).hexdigest()
    return sum(1 for n in nodes if n.chunk_file(cid).exists())


def admin(*args: str) -> str:
    r = run_kvbox("admin", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def passes(gw: S3Server) -> float:
    text = urllib.request.urlopen(f"{gw.endpoint}/metrics", timeout=10).read().decode()
    return metric_value(text, "kvbox_cluster_repair_passes_total")


def two_more_passes(gw: S3Server) -> None:
    """Until the repair worker has run two whole passes from now."""
    start = passes(gw)
    assert wait_until(lambda: passes(gw) >= start + 2, within=30, step=0.2)


def bucket_row(status: str, name: str) -> list[str]:
    return next(line.split() for line in status.splitlines() if line.startswith(name + " "))


def test_buckets_with_r1_and_r3_on_one_cluster_and_r_raised_and_lowered(
    cluster: tuple[str, list[BlobNodeProcess], S3Server],
) -> None:
    url, nodes, gw = cluster
    s3 = gw.client()
    s3.create_bucket(Bucket="one")
    s3.create_bucket(Bucket="three")
    said = admin("bucket", "replicas", "one", "1", "--meta", url)
    assert "bucket one: replicas 1, was 3 (the default)" in said
    ones = {f"o{i}": os.urandom(100_000 + i) for i in range(4)}  # above INLINE_MAX
    threes = {f"t{i}": os.urandom(100_000 + i) for i in range(2)}
    shared = os.urandom(120_000)  # stored in both buckets: one chunk
    for key, data in ones.items():
        s3.put_object(Bucket="one", Key=key, Body=data)
    for key, data in threes.items():
        s3.put_object(Bucket="three", Key=key, Body=data)
    s3.put_object(Bucket="one", Key="shared", Body=shared)
    s3.put_object(Bucket="three", Key="shared", Body=shared)
    # Every write path passes its bucket: a multipart part, and a copy (a new write of
    # the same bytes into "three": its chunk is then wanted 3 times).
    part = os.urandom(110_000)
    up = s3.create_multipart_upload(Bucket="one", Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket="one", Key="mp", UploadId=up, PartNumber=1, Body=part)["ETag"]
    s3.complete_multipart_upload(
        Bucket="one", Key="mp", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )  # fmt: skip
    copied = os.urandom(130_000)
    s3.put_object(Bucket="one", Key="copied", Body=copied)
    assert copies(nodes, copied) == 1
    s3.copy_object(Bucket="three", Key="copied", CopySource={"Bucket": "one", "Key": "copied"})
    two_more_passes(gw)  # the worker leaves each chunk at its own R
    assert [copies(nodes, d) for d in ones.values()] == [1] * len(ones)
    assert copies(nodes, part) == 1
    assert [copies(nodes, d) for d in threes.values()] == [3] * len(threes)
    assert copies(nodes, shared) == 3  # the highest R of the buckets that hold it
    assert copies(nodes, copied) == 3
    status = admin("cluster", "status", "--meta", url)
    assert bucket_row(status, "one") == ["one", "1", str(len(ones) + 3), "0"]
    assert bucket_row(status, "three") == ["three", "3", "default", str(len(threes) + 2), "0"]
    for key, data in ones.items():
        assert s3.get_object(Bucket="one", Key=key)["Body"].read() == data

    # Raised: the worker gives every chunk of the bucket its new R.
    said = admin("bucket", "replicas", "one", "3", "--meta", url)
    assert "bucket one: replicas 3, was 1" in said  # recounted by it or by the worker

    def raised() -> bool:
        return all(copies(nodes, d) == 3 for d in [*ones.values(), part])

    assert wait_until(raised, within=60, step=0.2)
    assert bucket_row(admin("cluster", "status", "--meta", url), "one")[-1] == "0"

    # Lowered again. Chunks written in the last hour (the GC delay) are not lowered
    # (a write in flight may need them at a higher R): their copies stay ...
    said = admin("bucket", "replicas", "one", "1", "--meta", url)
    assert " 0 of them now want" in said
    two_more_passes(gw)
    assert all(copies(nodes, d) == 3 for d in [*ones.values(), part])
    # ... until they are older (made so here rather than waited for): the worker's
    # recount lowers them, and surplus copies go, except of the chunks "three" holds too.
    asyncio.run(sql(url, "UPDATE kvbox.blob_chunks SET written_at = now() - interval '2 h'"))

    def lowered() -> bool:
        return all(copies(nodes, d) == 1 for d in [*ones.values(), part])

    assert wait_until(lowered, within=60, step=0.2)
    assert copies(nodes, shared) == 3 and copies(nodes, copied) == 3
    for key, data in {**ones, "shared": shared, "copied": copied, "mp": part}.items():
        assert s3.get_object(Bucket="one", Key=key)["Body"].read() == data


def test_bad_bucket_replicas_commands(
    cluster: tuple[str, list[BlobNodeProcess], S3Server],
) -> None:
    url, _, _ = cluster
    r = run_kvbox("admin", "bucket", "replicas", "no-such-bucket", "2", "--meta", url)
    assert r.returncode == 1 and b"no-such-bucket" in r.stderr
    gw_bucket = "three"
    for value in ("0", "17"):
        r = run_kvbox("admin", "bucket", "replicas", gw_bucket, value, "--meta", url)
        assert r.returncode == 1 and b"1..16" in r.stderr, r.stderr
    r = run_kvbox("admin", "bucket", "replicas", gw_bucket, "lots", "--meta", url)
    assert r.returncode == 2 and b"usage" in r.stderr
    r = run_kvbox("admin", "bucket", "replicas", gw_bucket, "2")
    assert r.returncode == 2 and b"--meta" in r.stderr
    said = admin("bucket", "replicas", gw_bucket, "4", "--meta", url)  # three nodes
    assert "warning: 3 writable blob nodes" in said
    said = admin("bucket", "replicas", gw_bucket, "default", "--meta", url)
    assert "replicas 3 (the default), was 4" in said and "warning" not in said
    # The gateways' R, when not given, is $KVBOX_REPLICAS (as kvbox serve reads it).
    r = run_kvbox("admin", "cluster", "status", "--meta", url, env={"KVBOX_REPLICAS": "2"})
    assert r.returncode == 0 and b"under their R (default 2)" in r.stdout, r.stdout
    assert bucket_row(r.stdout.decode(), gw_bucket)[1:3] == ["2", "default"]
