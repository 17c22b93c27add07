"""First contact: every S3 tool exactly as installed, against a real ``kvbox serve``.

Layer: tests/e2e. Rules: a new user points a tool at kvbox and changes nothing else, so
each client here gets only what it cannot work without -- the endpoint, the keys, the
region, plain HTTP -- and keeps every other default: the AWS CLI v1 and boto3 with
their multipart thresholds (8 MiB), default checksums and SigV2 presigned URLs; s3cmd
with SigV4 and 15 MiB multipart chunks; rclone with bucket creation, ``sync``'s deletes
and its own MD5 metadata. (``test_s3_clients.py`` pins the same tools to single PUTs and
explicit settings to test each call; this module tests what users meet first.) One
20 MiB file makes every tool that would go multipart go multipart. Bytes that go up
come back down and are compared; anonymous reads are made with curl. The module runs
in well under a minute on two cores.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]

from _cleanup import removed_after

from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server
from ._s3clients import (
    client_binary,
    client_env,
    curl_get,
    describe,
    failed,
    file_digest,
    make_tree,
    run_client,
    tree_digest,
    write_file,
)

MIB = 1 << 20
#: Above the 8 MiB threshold of the AWS CLI and boto3 and s3cmd's 15 MiB chunk.
BIG = 20 * MIB + 3
TREE = {"index.html": 120, "img/cat.png": 70_000, "img/dog.png": 0, "docs/a/b.txt": 9}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3first") as s:
        yield s


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with removed_after(tmp_path_factory.mktemp("first-files")) as base:
        path = base / "big.bin"
        write_file(path, BIG, seed=11)
        yield path


def _head(srv: S3Server, bucket: str, key: str) -> dict[str, Any]:
    head: dict[str, Any] = srv.client().head_object(Bucket=bucket, Key=key)
    return head


# --- the AWS CLI v1 ----------------------------------------------------------------------


def test_aws_cli_as_installed(srv: S3Server, big: Path, tmp_path: Path) -> None:
    """``aws s3 mb/cp/sync/ls/presign/rm/rb`` with a config that names only the region."""
    config, creds = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[default]\nregion = {REGION}\n")
    creds.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = client_env(
        tmp_path / "home",
        {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
    )
    exe = str(client_binary("aws"))

    def aws(*args: str) -> str:
        quiet = ["--no-progress"] if args[1] in ("cp", "sync") else []
        return run_client([exe, "--endpoint-url", srv.endpoint, *args, *quiet], env).stdout

    aws("s3", "mb", "s3://cli-first")
    aws("s3", "cp", str(big), "s3://cli-first/big.bin")  # multipart: 3 parts of 8 MiB
    head = _head(srv, "cli-first", "big.bin")
    assert head["ContentLength"] == BIG and head["ETag"].endswith('-3"'), head
    aws("s3", "cp", "s3://cli-first/big.bin", str(tmp_path / "big.out"))
    assert file_digest(tmp_path / "big.out") == file_digest(big)

    src, down = tmp_path / "site", tmp_path / "down"
    digests = make_tree(src, TREE, seed=3)
    aws("s3", "sync", str(src), "s3://cli-first/site")
    aws("s3", "sync", "s3://cli-first/site", str(down))
    assert tree_digest(down) == digests
    (src / "img/dog.png").unlink()
    aws("s3", "sync", "--delete", str(src), "s3://cli-first/site")
    listed = aws("s3", "ls", "--recursive", "s3://cli-first/site/")
    assert sorted(line.split()[-1] for line in listed.splitlines()) == [
        "site/docs/a/b.txt",
        "site/img/cat.png",
        "site/index.html",
    ]

    # The CLI's own presigned URL (SigV2 by default) works in curl, and expires.
    url = aws("s3", "presign", "s3://cli-first/site/index.html", "--expires-in", "60").strip()
    assert "Signature=" in url and "X-Amz-Signature" not in url, url
    assert curl_get(url) == (200, (src / "index.html").read_bytes())
    status, body = curl_get(f"{srv.endpoint}/cli-first/site/index.html")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body

    aws("s3", "rb", "--force", "s3://cli-first")  # deletes every object, then the bucket
    assert "cli-first" not in [b["Name"] for b in srv.client().list_buckets()["Buckets"]]


# --- s3cmd -------------------------------------------------------------------------------


def test_s3cmd_as_installed(srv: S3Server, big: Path, tmp_path: Path) -> None:
    """``s3cmd mb/put/ls/get/setacl/setownership/del/rb`` with the least config s3cmd
    needs for a custom endpoint (host_bucket without ``%(bucket)s`` is path style)."""
    cfg = tmp_path / "s3cfg"
    host = f"127.0.0.1:{srv.http_port}"
    cfg.write_text(
        f"[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
    )
    env = client_env(tmp_path / "home")
    exe = str(client_binary("s3cmd"))

    def s3cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_client([exe, "-c", str(cfg), "--no-progress", *args], env, check=check)

    small = tmp_path / "note.txt"
    small.write_bytes(b"shared with the world\n")
    s3cmd("mb", "s3://s3cmd-first")
    s3cmd("put", str(big), "s3://s3cmd-first/big.bin")  # multipart: 15 MiB chunks
    s3cmd("put", str(small), "s3://s3cmd-first/note.txt")
    assert _head(srv, "s3cmd-first", "big.bin")["ETag"].endswith('-2"')
    listed = s3cmd("ls", "s3://s3cmd-first").stdout
    assert "s3://s3cmd-first/big.bin" in listed and "s3://s3cmd-first/note.txt" in listed
    s3cmd("get", "s3://s3cmd-first/big.bin", str(tmp_path / "big.out"))
    assert file_digest(tmp_path / "big.out") == file_digest(big)

    # A new bucket has ACLs off (BucketOwnerEnforced), as on AWS: setacl is refused by name.
    refused = s3cmd("setacl", "--acl-public", "s3://s3cmd-first/note.txt", check=False)
    failed(refused, "AccessControlListNotSupported")
    anon = f"http://{host}/s3cmd-first/note.txt"
    assert curl_get(anon)[0] == 403
    # Turned on the way s3cmd users do it, ACLs work: public, then private again.
    s3cmd("setownership", "s3://s3cmd-first", "ObjectWriter")
    s3cmd("setacl", "--acl-public", "s3://s3cmd-first/note.txt")
    assert curl_get(anon) == (200, small.read_bytes())
    info = s3cmd("info", "s3://s3cmd-first/note.txt").stdout
    assert "*anon*: READ" in info, describe(s3cmd("info", "s3://s3cmd-first/note.txt"), "info")
    s3cmd("setacl", "--acl-private", "s3://s3cmd-first/note.txt")
    assert curl_get(anon)[0] == 403

    s3cmd("del", "--recursive", "--force", "s3://s3cmd-first")
    s3cmd("rb", "s3://s3cmd-first")
    assert "s3cmd-first" not in s3cmd("ls").stdout


# --- rclone ------------------------------------------------------------------------------


def test_rclone_as_installed(srv: S3Server, tmp_path: Path) -> None:
    """``rclone copy/sync/lsf/check`` with a remote of provider Other and nothing else:
    rclone creates the bucket itself (CreateBucket of a bucket it may already own)."""
    (tmp_path / "rclone.conf").write_text("")
    env = client_env(
        tmp_path / "home",
        {
            "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
            "RCLONE_CONFIG_KV_TYPE": "s3",
            "RCLONE_CONFIG_KV_PROVIDER": "Other",
            "RCLONE_CONFIG_KV_ENDPOINT": srv.endpoint,
            "RCLONE_CONFIG_KV_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_CONFIG_KV_SECRET_ACCESS_KEY": SECRET_KEY,
        },
    )
    exe = str(client_binary("rclone"))

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        return run_client([exe, *args], env)

    src, down = tmp_path / "src", tmp_path / "down"
    digests = make_tree(src, TREE, seed=5)
    rclone("copy", str(src), "kv:rclone-first/copy")
    rclone("copy", str(src), "kv:rclone-first/copy")  # again: the bucket exists now
    assert sorted(rclone("lsf", "kv:rclone-first/copy").stdout.split()) == [
        "docs/",
        "img/",
        "index.html",
    ]
    rclone("sync", str(src), "kv:rclone-first/mirror")
    (src / "img/cat.png").unlink()
    (src / "new.txt").write_bytes(b"added later")
    rclone("sync", str(src), "kv:rclone-first/mirror")
    assert sorted(rclone("lsf", "-R", "--files-only", "kv:rclone-first/mirror").stdout.split()) == [
        "docs/a/b.txt",
        "img/dog.png",
        "index.html",
        "new.txt",
    ]
    check = rclone("check", str(src), "kv:rclone-first/mirror")
    assert "0 differences found" in check.stderr, describe(check, "check")
    rclone("copy", "kv:rclone-first/copy", str(down))
    assert tree_digest(down) == digests


# --- boto3 -------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["default", "s3v4"])
def test_boto3_managed_transfers(srv: S3Server, big: Path, tmp_path: Path, signature: str) -> None:
    """upload_file/download_file/copy (multipart above 8 MiB, default checksums) and
    generate_presigned_url, with boto3's own configuration and with s3v4."""
    config = None if signature == "default" else Config(signature_version="s3v4")
    s3 = boto3.client(
        "s3",
        endpoint_url=srv.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=config,
    )
    bucket = f"boto-first-{signature}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(big), bucket, "big.bin")
    head = s3.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == BIG and head["PartsCount"] == 3, head
    # boto3 asks for CRC32 part checksums by default; the object shows the composite.
    assert head["ChecksumCRC32"].endswith("-3") and head["ChecksumType"] == "COMPOSITE"
    s3.download_file(bucket, "big.bin", str(tmp_path / "big.out"))
    assert file_digest(tmp_path / "big.out") == file_digest(big)
    s3.copy({"Bucket": bucket, "Key": "big.bin"}, bucket, "copy.bin")  # UploadPartCopy
    assert s3.head_object(Bucket=bucket, Key="copy.bin")["ETag"] == head["ETag"]

    s3.put_object(Bucket=bucket, Key="small.txt", Body=b"small")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "small.txt"})
    assert ("X-Amz-Signature=" in url) == (signature == "s3v4"), url
    assert curl_get(url) == (200, b"small")
