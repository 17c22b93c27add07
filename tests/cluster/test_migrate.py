"""``kvbox migrate-to-cluster``: a real single-node server's data directory, written
over S3 and GW-KV and then killed with -9, moves into a cluster of real blob nodes and
reads back the same: every version, delete marker, null version, bucket setting,
multipart upload in progress, user and key.

Layer: tests/cluster. The comparison here is independent of the one the command makes:
it reads both sides through a ``Store`` (the SQLite directory with its local chunks,
and PostgreSQL with the blob nodes), bytes included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _postgres import PostgresServer
from e2e._s3 import S3Server
from e2e._server import Wire, run_kvbox
from kvbox.auth.cluster import load_secret
from kvbox.cluster.store import ClusterBlobStore
from kvbox.core.blob.localdir import LocalDirBlobStore
from kvbox.core.meta import MetaStore
from kvbox.core.meta.postgres import PostgresMetaStore
from kvbox.core.meta.sqlite import META_FILE, SqliteMetaStore
from kvbox.core.pg import PgUrl
from kvbox.core.store import Store

from ._nodes import blob_nodes


def fill(server: S3Server) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    big = os.urandom(300_000)  # chunked (above the inline limit)
    for i in range(3):
        s3.put_object(Bucket="versioned", Key="doc", Body=f"version {i}".encode())
    s3.put_object(Bucket="versioned", Key="big", Body=big)
    s3.put_object(Bucket="versioned", Key="big", Body=big[::-1])
    s3.delete_object(Bucket="versioned", Key="doc")  # a delete marker on top
    s3.put_bucket_cors(
        Bucket="versioned",
        CORSConfiguration={
            "CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://a.example"]}]
        },
    )
    s3.create_bucket(Bucket="suspended")
    s3.put_object(Bucket="suspended", Key="k", Body=b"null before")
    s3.put_bucket_versioning(Bucket="suspended", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="suspended", Key="k", Body=b"versioned")
    s3.put_bucket_versioning(Bucket="suspended", VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket="suspended", Key="k", Body=b"null after")
    s3.create_bucket(Bucket="plain")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::plain/public/*"}
        ],
    }  # fmt: skip
    s3.put_bucket_policy(Bucket="plain", Policy=json.dumps(policy))
    s3.put_object(Bucket="plain", Key="public/a.txt", Body=b"hello", ContentType="text/plain")
    up = s3.create_multipart_upload(Bucket="plain", Key="in-progress")
    s3.upload_part(
        Bucket="plain", Key="in-progress", UploadId=up["UploadId"], PartNumber=1,
        Body=os.urandom(5 * 1024 * 1024),
    )  # fmt: skip
    server.new_user("alice")
    with Wire.connect("127.0.0.1", server.server.port) as w:  # GW-KV: the journal
        for i in range(20):
            assert w.request(f"SET kv{i} {'v' * i}x\n".encode()).startswith(b"OK ")


async def snapshot(meta: MetaStore, blobs_store: Store) -> dict[str, object]:
    """Everything a user could read, bytes included, in a comparable form."""
    out: dict[str, object] = {}
    for b in await meta.list_buckets():
        versions = []
        for v in await meta.list_bucket_versions(b.name, limit=10_000):
            body = (
                b"".join([piece async for piece in blobs_store.iter_bytes(v)])
                if (not v.is_delete_marker)
                else None
            )
            versions.append((
                v.key, v.version_id, v.is_null, v.is_delete_marker, v.size, v.etag,
                v.mtime_ns, v.content_type, dict(v.attrs), body,
            ))  # fmt: skip
        uploads = [(u, await meta.list_parts(u.upload_id)) for u in await meta.list_uploads(b.name)]
        out[b.name] = (b, versions, uploads, await meta.stats(b.name))
    out["users"] = [(u, await meta.list_keys(u.name)) for u in await meta.list_users()]
    return out


async def test_migrate_to_cluster_loses_nothing(tmp_path: Path, postgres: PostgresServer) -> None:
    data = tmp_path / "single"
    server = S3Server(data).start()
    try:
        fill(server)
        server.server.kill()  # kill -9: GW-KV writes may still be only in the journal
    finally:
        server.close()
    url = postgres.new_database(migrated=True)
    with blob_nodes(tmp_path / "cluster", url, 3) as nodes:
        secret_file = nodes[0].secret_file
        r = run_kvbox(
            "migrate-to-cluster", "--data", str(data), "--meta", url, "--blobs", "cluster",
            "--cluster-secret-file", str(secret_file), timeout=300,
        )  # fmt: skip
        out = r.stdout.decode()
        assert r.returncode == 0, out + r.stderr.decode()
        assert "every one read back the same" in out
        assert postgres.password not in out + r.stderr.decode()
        # The same again refuses: the cluster is no longer empty.
        again = run_kvbox(
            "migrate-to-cluster", "--data", str(data), "--meta", url, "--blobs", "cluster",
            "--cluster-secret-file", str(secret_file), timeout=300,
        )  # fmt: skip
        assert again.returncode == 1 and b"empty cluster only" in again.stderr

        local = Store(SqliteMetaStore(data / META_FILE), LocalDirBlobStore(data))
        cluster = Store(
            PostgresMetaStore(url),
            ClusterBlobStore(PgUrl.parse(url), load_secret(secret_file.read_bytes(), "t")),
        )
        await local.open()
        await cluster.open()
        try:
            before = await snapshot(local.meta, local)
            after = await snapshot(cluster.meta, cluster)
        finally:
            await local.close()
            await cluster.close()
    assert set(before) == {"versioned", "suspended", "plain", "kv", "users"}
    assert after == before
    kv = before["kv"]
    assert isinstance(kv, tuple) and len(kv[1]) == 20  # the journaled GW-KV writes too


def test_bad_invocations(tmp_path: Path, postgres: PostgresServer) -> None:
    secret = tmp_path / "s"
    secret.write_text("x" * 32)
    url = postgres.new_database(migrated=True)
    r = run_kvbox(
        "migrate-to-cluster", "--data", str(tmp_path / "nothing"), "--meta", url,
        "--blobs", "cluster", "--cluster-secret-file", str(secret),
    )  # fmt: skip
    assert r.returncode == 1 and b"no kvbox data directory" in r.stderr
    r = run_kvbox("migrate-to-cluster", "--data", str(tmp_path), "--meta", url, "--blobs", "local",
                  "--cluster-secret-file", str(secret))  # fmt: skip
    assert r.returncode == 2 and b"invalid choice" in r.stderr


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:botocore")
