"""The S3 front door through real clients: the AWS CLI, s3cmd and rclone.

Layer: tests/e2e. Rules: each test starts ``kvbox serve --http-port PORT`` with known root
credentials and drives it only through the client programs a user would run (boto3 is
used solely to seed 1,200 keys fast). Clients come from the test extra, are found next to
``sys.executable`` and are configured for 127.0.0.1, path style, region us-east-1 and no
multipart (single PUTs, each call checked; the tools' defaults, multipart included, are
tested in ``test_s3_first_contact.py``). Every byte
that goes up comes back down and is compared by SHA-256; listings are compared with
what was written, key by key. Every loop is bounded, and the file runs in about a
minute on two cores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from _ports import free_port

from ._s3clients import (
    ROOT_ACCESS_KEY,
    ROOT_SECRET_KEY,
    AwsCli,
    Rclone,
    S3Cmd,
    S3Target,
    boto3_client,
    describe,
    failed,
    file_digest,
    make_tree,
    tree_digest,
    tree_sizes,
    write_file,
)
from .conftest import ServerFactory

MIB = 1 << 20

#: A few bytes to a few MiB, with odd sizes and an empty file.
SMALL_LAYOUT = {
    "tiny.txt": 5,
    "empty.bin": 0,
    "docs/a.bin": 1024,
    "docs/b.bin": 300 * 1024 + 7,
    "docs/deep/c.bin": 3 * MIB + 17,
}


@pytest.fixture
def s3(server_factory: ServerFactory) -> S3Target:
    """A fresh server with the S3 API on its own port and known root credentials."""
    port = free_port()
    server_factory(
        "--http-port",
        str(port),
        # Durability is not what these tests check; an fsync per PUT only slows them.
        "--sync",
        "normal",
        env={"KVBOX_ROOT_ACCESS_KEY": ROOT_ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": ROOT_SECRET_KEY},
    )
    return S3Target("127.0.0.1", port)


@pytest.fixture
def aws(s3: S3Target, tmp_path: Path) -> AwsCli:
    return AwsCli(s3, tmp_path / "aws")


# --- parsing what the CLIs print ------------------------------------------------------------

_AWS_LS_OBJECT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(\d+) (.+)$")
_AWS_LS_PREFIX = re.compile(r"^ +PRE (.+)$")


def aws_ls(text: str) -> tuple[list[str], dict[str, int]]:
    """``aws s3 ls`` output: (common prefixes, {key or name: size})."""
    prefixes: list[str] = []
    objects: dict[str, int] = {}
    for line in text.splitlines():
        if m := _AWS_LS_PREFIX.match(line):
            prefixes.append(m.group(1))
        elif m := _AWS_LS_OBJECT.match(line):
            objects[m.group(2)] = int(m.group(1))
        else:
            raise AssertionError(f"unexpected aws s3 ls line {line!r} in:\n{text}")
    return prefixes, objects


def action_lines(text: str, action: str) -> list[str]:
    """The targets of an ``aws s3`` command's ``ACTION: SRC to DST`` (or ``delete: DST``)
    lines; sources are left out because the CLI prints them relative to the cwd."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(action + ": "):
            rest = line[len(action) + 2 :].rstrip()
            out.append(rest.rpartition(" to ")[2] if " to " in rest else rest)
    return out


def age_tree(root: Path, seconds: float = 3600.0) -> None:
    """Backdate every file under ``root``.

    ``aws s3 sync`` uploads a file whose mtime is later than the object's LastModified,
    which S3 gives to the second: a file written in the same second as its upload would
    be sent again on the next sync, on AWS too. Old files make "nothing to do" exact.
    """
    when = time.time() - seconds
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (when, when))


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def keys_of(listing: dict[str, Any]) -> list[str]:
    return [str(obj["Key"]) for obj in listing.get("Contents", [])]


def prefixes_of(listing: dict[str, Any]) -> list[str]:
    return [str(p["Prefix"]) for p in listing.get("CommonPrefixes", [])]


# --- aws s3 ---------------------------------------------------------------------------------


def test_aws_s3_files_roundtrip(aws: AwsCli, tmp_path: Path) -> None:
    bucket = "aws-files"
    src, out = tmp_path / "src", tmp_path / "out"
    digests = make_tree(src, SMALL_LAYOUT, seed=1)

    assert f"make_bucket: {bucket}" in aws("s3", "mb", f"s3://{bucket}").stdout
    assert bucket in aws("s3", "ls").stdout.split()

    up = aws("s3", "cp", str(src), f"s3://{bucket}/up/", "--recursive", "--no-progress")
    assert len(action_lines(up.stdout, "upload")) == len(SMALL_LAYOUT), up.stdout
    note = tmp_path / "note.txt"
    note.write_text("hello, kvbox\n")
    single = aws(
        "s3",
        "cp",
        str(note),
        f"s3://{bucket}/single.txt",
        "--content-type",
        "text/plain",
        "--metadata",
        "origin=e2e",
        "--no-progress",
    )
    assert action_lines(single.stdout, "upload") == [f"s3://{bucket}/single.txt"], single.stdout
    head = aws.json("head-object", "--bucket", bucket, "--key", "single.txt")
    assert (head["ContentType"], head["Metadata"]) == ("text/plain", {"origin": "e2e"}), head

    # Delimiter listings, one level at a time, and a prefix that ends mid-name.
    prefixes, objects = aws_ls(aws("s3", "ls", f"s3://{bucket}/up/").stdout)
    assert prefixes == ["docs/"]
    assert objects == {"empty.bin": 0, "tiny.txt": 5}
    prefixes, objects = aws_ls(aws("s3", "ls", f"s3://{bucket}/up/docs/").stdout)
    assert prefixes == ["deep/"]
    assert objects == {"a.bin": 1024, "b.bin": SMALL_LAYOUT["docs/b.bin"]}
    prefixes, objects = aws_ls(aws("s3", "ls", f"s3://{bucket}/up/do").stdout)
    assert (prefixes, objects) == (["docs/"], {})
    prefixes, objects = aws_ls(aws("s3", "ls", f"s3://{bucket}").stdout)
    assert (prefixes, objects) == (["up/"], {"single.txt": 13})
    _, everything = aws_ls(aws("s3", "ls", f"s3://{bucket}", "--recursive").stdout)
    expected = {f"up/{rel}": size for rel, size in tree_sizes(src).items()}
    assert everything == {**expected, "single.txt": 13}

    # Down again, byte for byte; and one object streamed to stdout.
    down = aws("s3", "cp", f"s3://{bucket}/up/", str(out), "--recursive", "--no-progress")
    assert len(action_lines(down.stdout, "download")) == len(SMALL_LAYOUT), down.stdout
    assert tree_digest(out) == digests
    assert aws("s3", "cp", f"s3://{bucket}/single.txt", "-").stdout == "hello, kvbox\n"

    # Server-side copy and move (copy + delete).
    copy = aws(
        "s3",
        "cp",
        f"s3://{bucket}/up/docs/deep/c.bin",
        f"s3://{bucket}/copied/c.bin",
        "--no-progress",
    )
    assert action_lines(copy.stdout, "copy") == [f"s3://{bucket}/copied/c.bin"], copy.stdout
    aws("s3", "mv", f"s3://{bucket}/copied/c.bin", f"s3://{bucket}/moved/c.bin", "--no-progress")
    aws("s3", "cp", f"s3://{bucket}/moved/c.bin", str(tmp_path / "c.bin"), "--no-progress")
    assert file_digest(tmp_path / "c.bin") == digests["docs/deep/c.bin"]
    prefixes, _ = aws_ls(aws("s3", "ls", f"s3://{bucket}").stdout)
    assert prefixes == ["moved/", "up/"]

    # Delete: one key, then a prefix; a non-empty bucket refuses rb.
    aws("s3", "rm", f"s3://{bucket}/single.txt")
    rm = aws("s3", "rm", f"s3://{bucket}/up/", "--recursive")
    assert len(action_lines(rm.stdout, "delete")) == len(SMALL_LAYOUT), rm.stdout
    _, left = aws_ls(aws("s3", "ls", f"s3://{bucket}", "--recursive").stdout)
    assert left == {"moved/c.bin": SMALL_LAYOUT["docs/deep/c.bin"]}
    failed(aws("s3", "rb", f"s3://{bucket}", check=False), "BucketNotEmpty")
    assert f"remove_bucket: {bucket}" in aws("s3", "rb", f"s3://{bucket}", "--force").stdout
    assert bucket not in aws("s3", "ls").stdout.split()


def test_aws_64_mib_single_put(aws: AwsCli, tmp_path: Path) -> None:
    """64 MiB in one PutObject (multipart is off) and one GetObject back."""
    bucket = "aws-large"
    big = tmp_path / "big.bin"
    sha = write_file(big, 64 * MIB, seed=64)
    md5 = file_digest(big, "md5")
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", str(big), f"s3://{bucket}/big.bin", "--no-progress")
    head = aws.json(
        "head-object", "--bucket", bucket, "--key", "big.bin", "--checksum-mode", "ENABLED"
    )
    assert head["ContentLength"] == 64 * MIB
    # A single-part ETag is the body's MD5: a multipart upload would end in "-N".
    assert head["ETag"] == f'"{md5}"', head
    # The CLI sends a CRC32 by default; the server keeps it and returns it on request.
    crc = 0
    with big.open("rb") as fh:
        while chunk := fh.read(MIB):
            crc = zlib.crc32(chunk, crc)
    assert head.get("ChecksumCRC32") == base64.b64encode(crc.to_bytes(4, "big")).decode(), head
    big.unlink()
    aws("s3", "cp", f"s3://{bucket}/big.bin", str(tmp_path / "back.bin"), "--no-progress")
    assert file_digest(tmp_path / "back.bin") == sha


def test_aws_s3_sync_tree_both_ways(aws: AwsCli, tmp_path: Path) -> None:
    bucket = "aws-sync"
    src, down = tmp_path / "tree", tmp_path / "down"
    dirs = ["", "a/", "a/b/", "a/b/c/", "x/", "x/y/"]
    layout = {f"{d}f{i}.dat": (i * 977 + len(d) * 131) % 20_000 for d in dirs for i in range(6)}
    assert len(layout) == 36
    make_tree(src, layout, seed=7)
    age_tree(src)
    target = f"s3://{bucket}/tree"
    aws("s3", "mb", f"s3://{bucket}")

    up = aws("s3", "sync", str(src), target, "--no-progress")
    assert len(action_lines(up.stdout, "upload")) == 36, up.stdout
    # Nothing changed: sizes match and the server's LastModified is not older than the files.
    again = aws("s3", "sync", str(src), target, "--no-progress")
    assert again.stdout.strip() == "", describe(again, "second sync was not a no-op")

    # One file grows, one goes away: exactly one upload and one delete.
    write_file(src / "a/b/f2.dat", 12_345, seed=99)
    (src / "x/y/f5.dat").unlink()
    delta = aws("s3", "sync", str(src), target, "--delete", "--no-progress")
    assert action_lines(delta.stdout, "upload") == [f"{target}/a/b/f2.dat"], delta.stdout
    assert action_lines(delta.stdout, "delete") == [f"{target}/x/y/f5.dat"], delta.stdout

    back = aws("s3", "sync", target, str(down), "--no-progress")
    assert len(action_lines(back.stdout, "download")) == 35, back.stdout
    assert tree_digest(down) == tree_digest(src)
    noop = aws("s3", "sync", target, str(down), "--no-progress")
    assert noop.stdout.strip() == "", describe(noop, "second download sync was not a no-op")


def test_aws_s3_awkward_key_names(aws: AwsCli, tmp_path: Path) -> None:
    """Spaces, plus signs, non-ASCII and reserved characters survive a sync both ways.

    ``aws s3`` lists with ``encoding-type=url`` and decodes what comes back, so a server
    that encodes wrongly (or not at all) shows up here as a re-upload or a wrong name.
    """
    bucket = "aws-names"
    src, down = tmp_path / "names", tmp_path / "names-down"
    names = [
        "with space.txt",
        "plus+sign.txt",
        "ünïcödé/日本語.txt",
        "percent%20literal.txt",
        "semi;colon,comma=eq&amp.txt",
        "tilde~(paren)'quote'.txt",
    ]
    digests = make_tree(src, {n: 10 + i for i, n in enumerate(names)}, seed=11)
    age_tree(src)
    aws("s3", "mb", f"s3://{bucket}")
    up = aws("s3", "sync", str(src), f"s3://{bucket}", "--no-progress")
    assert sorted(action_lines(up.stdout, "upload")) == sorted(
        f"s3://{bucket}/{n}" for n in names
    ), up.stdout
    again = aws("s3", "sync", str(src), f"s3://{bucket}", "--no-progress")
    assert again.stdout.strip() == "", describe(again, "second sync was not a no-op")
    listing = aws.json("list-objects-v2", "--bucket", bucket)
    assert sorted(keys_of(listing), key=str.encode) == keys_of(listing)
    assert set(keys_of(listing)) == set(names)
    aws("s3", "sync", f"s3://{bucket}", str(down), "--no-progress")
    assert tree_digest(down) == digests


# --- aws s3api -------------------------------------------------------------------------------


def test_aws_s3api_object_calls(aws: AwsCli, tmp_path: Path) -> None:
    bucket, key = "api-objects", "dir/object.bin"
    data = bytes(range(256)) * 3 + b"tail-of-the-object" * 13
    assert len(data) == 1002
    body = tmp_path / "body.bin"
    body.write_bytes(data)
    etag = f'"{md5_hex(data)}"'

    assert aws.json("create-bucket", "--bucket", bucket).get("Location") == f"/{bucket}"
    aws("s3api", "head-bucket", "--bucket", bucket)
    # us-east-1 is the one region S3 reports as an empty LocationConstraint (null).
    location = aws.json("get-bucket-location", "--bucket", bucket)
    assert location.get("LocationConstraint") is None, location

    put = aws.json(
        "put-object",
        "--bucket",
        bucket,
        "--key",
        key,
        "--body",
        str(body),
        "--content-type",
        "application/x-kvbox-test",
        "--metadata",
        "color=blue,size=big",
        "--tagging",
        "a=1&b=two",
    )
    assert put["ETag"] == etag, put
    head = aws.json("head-object", "--bucket", bucket, "--key", key)
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == etag
    assert head["ContentType"] == "application/x-kvbox-test"
    assert head["Metadata"] == {"color": "blue", "size": "big"}
    assert head.get("AcceptRanges") == "bytes", head

    # Ranges: closed, suffix and open-ended.
    for rng, want, content_range in (
        ("bytes=100-199", data[100:200], "bytes 100-199/1002"),
        ("bytes=-10", data[-10:], "bytes 992-1001/1002"),
        ("bytes=1000-", data[1000:], "bytes 1000-1001/1002"),
    ):
        part = tmp_path / "part.bin"
        got = aws.json("get-object", "--bucket", bucket, "--key", key, "--range", rng, str(part))
        assert part.read_bytes() == want, rng
        assert got["ContentLength"] == len(want), got
        assert got["ContentRange"] == content_range, got
    whole = aws.json("get-object", "--bucket", bucket, "--key", key, str(tmp_path / "whole"))
    assert (tmp_path / "whole").read_bytes() == data
    assert whole.get("TagCount") == 2, whole

    # Conditionals through the CLI: a matching If-None-Match is 304, a wrong If-Match 412.
    failed(
        aws(
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--if-none-match",
            etag,
            str(tmp_path / "nm"),
            check=False,
        ),
        "304",
    )
    failed(
        aws(
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--if-match",
            '"0123456789abcdef0123456789abcdef"',
            str(tmp_path / "m"),
            check=False,
        ),
        "PreconditionFailed",
    )
    aws.json(
        "get-object", "--bucket", bucket, "--key", key, "--if-match", etag, str(tmp_path / "m")
    )
    assert (tmp_path / "m").read_bytes() == data

    # Tagging: set on PUT, replaced, read back, removed.
    tags = aws.json("get-object-tagging", "--bucket", bucket, "--key", key)
    assert sorted(tags["TagSet"], key=lambda t: t["Key"]) == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "two"},
    ]
    aws(
        "s3api",
        "put-object-tagging",
        "--bucket",
        bucket,
        "--key",
        key,
        "--tagging",
        json.dumps({"TagSet": [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "kv"}]}),
    )
    tags = aws.json("get-object-tagging", "--bucket", bucket, "--key", key)
    assert sorted(tags["TagSet"], key=lambda t: t["Key"]) == [
        {"Key": "env", "Value": "test"},
        {"Key": "team", "Value": "kv"},
    ]
    aws("s3api", "delete-object-tagging", "--bucket", bucket, "--key", key)
    assert aws.json("get-object-tagging", "--bucket", bucket, "--key", key)["TagSet"] == []

    # CopyObject keeps metadata by default and replaces it on request.
    copied = aws.json(
        "copy-object", "--bucket", bucket, "--key", "copy-1", "--copy-source", f"{bucket}/{key}"
    )
    assert copied["CopyObjectResult"]["ETag"] == etag, copied
    head = aws.json("head-object", "--bucket", bucket, "--key", "copy-1")
    assert head["Metadata"] == {"color": "blue", "size": "big"}
    assert head["ContentType"] == "application/x-kvbox-test"
    assert head["ContentLength"] == len(data)
    aws.json(
        "copy-object",
        "--bucket",
        bucket,
        "--key",
        "copy-2",
        "--copy-source",
        f"{bucket}/{key}",
        "--metadata-directive",
        "REPLACE",
        "--metadata",
        "fresh=yes",
        "--content-type",
        "text/plain",
    )
    head = aws.json("head-object", "--bucket", bucket, "--key", "copy-2")
    assert head["Metadata"] == {"fresh": "yes"}
    assert head["ContentType"] == "text/plain"
    aws.json("get-object", "--bucket", bucket, "--key", "copy-2", str(tmp_path / "c2"))
    assert (tmp_path / "c2").read_bytes() == data

    # DeleteObjects: a key that never existed counts as deleted, as in S3.
    doomed = sorted([key, "copy-1", "copy-2", "never-was"])
    batch = {"Objects": [{"Key": k} for k in doomed], "Quiet": False}
    deleted = aws.json("delete-objects", "--bucket", bucket, "--delete", json.dumps(batch))
    assert sorted(d["Key"] for d in deleted["Deleted"]) == doomed, deleted
    assert not deleted.get("Errors"), deleted
    listing = aws.json("list-objects-v2", "--bucket", bucket)
    assert keys_of(listing) == [], listing
    aws("s3api", "delete-bucket", "--bucket", bucket)
    failed(aws("s3api", "head-bucket", "--bucket", bucket, check=False), "404")


def _seed_keys(s3: S3Target, bucket: str, keys: list[str]) -> None:
    """PUT ``keys`` (each one's body is its name) with 8 threads over boto3."""
    client = boto3_client(s3)
    try:
        client.create_bucket(Bucket=bucket)

        def put(key: str) -> None:
            client.put_object(Bucket=bucket, Key=key, Body=key.encode())

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, keys))
    finally:
        client.close()


def test_aws_s3api_listing_and_pagination(aws: AwsCli, s3: S3Target, tmp_path: Path) -> None:
    bucket = "api-listing"
    in_dirs = [f"dir{i % 12:02d}/obj{i:04d}" for i in range(1200)]
    top = [f"top-{i}" for i in range(5)]
    everything = sorted(in_dirs + top, key=str.encode)
    _seed_keys(s3, bucket, in_dirs + top)
    dirs = [f"dir{d:02d}/" for d in range(12)]

    # One level with a delimiter: 12 common prefixes and the 5 top-level keys.
    level = aws.json("list-objects-v2", "--bucket", bucket, "--delimiter", "/")
    assert prefixes_of(level) == dirs, level.get("CommonPrefixes")
    assert keys_of(level) == top
    in_dir = aws.json("list-objects-v2", "--bucket", bucket, "--prefix", "dir03/")
    assert keys_of(in_dir) == [k for k in everything if k.startswith("dir03/")]
    assert len(keys_of(in_dir)) == 100
    after = aws.json(
        "list-objects-v2",
        "--bucket",
        bucket,
        "--prefix",
        "dir03/",
        "--start-after",
        "dir03/obj0603",
    )
    assert keys_of(after) == [k for k in keys_of(in_dir) if k > "dir03/obj0603"]

    # The CLI's own pagination: --max-items and --starting-token, over server pages of
    # 300 keys (continuation tokens), until no NextToken is left.
    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        args = ["list-objects-v2", "--bucket", bucket, "--max-items", "500", "--page-size", "300"]
        if token:
            args += ["--starting-token", token]
        page = aws.json(*args)
        seen += keys_of(page)
        token = page.get("NextToken")
        if not token:
            break
    assert not token, "pagination did not end within 10 CLI calls"
    assert len(seen) == len(everything)
    assert seen == everything

    # ListObjects v1 (markers), whole and with a delimiter in pages of 5 entries.
    v1 = aws.json("list-objects", "--bucket", bucket, "--page-size", "400")
    assert keys_of(v1) == everything
    v1_level = aws.json("list-objects", "--bucket", bucket, "--delimiter", "/", "--page-size", "5")
    assert prefixes_of(v1_level) == dirs
    assert keys_of(v1_level) == top
    v2_level = aws.json(
        "list-objects-v2", "--bucket", bucket, "--delimiter", "/", "--page-size", "5"
    )
    assert prefixes_of(v2_level) == dirs
    assert keys_of(v2_level) == top

    # aws s3 ls: the delimiter view and the recursive one (two server pages of 1,000).
    prefixes, objects = aws_ls(aws("s3", "ls", f"s3://{bucket}/").stdout)
    assert prefixes == dirs
    assert sorted(objects) == top
    _, listed = aws_ls(aws("s3", "ls", f"s3://{bucket}", "--recursive").stdout)
    assert sorted(listed) == sorted(everything)
    assert all(size == len(k.encode()) for k, size in listed.items())

    # The largest DeleteObjects S3 allows: 1,000 keys in one request.
    doomed = in_dirs[:1000]
    batch = tmp_path / "delete.json"
    batch.write_text(json.dumps({"Objects": [{"Key": k} for k in doomed], "Quiet": True}))
    quiet = aws.json("delete-objects", "--bucket", bucket, "--delete", f"file://{batch}")
    assert not quiet.get("Errors"), quiet
    assert not quiet.get("Deleted"), "Quiet mode reports only errors"
    rest = aws.json("list-objects-v2", "--bucket", bucket)
    assert keys_of(rest) == sorted(set(everything) - set(doomed), key=str.encode)


def _http_get(url: str) -> tuple[int, bytes]:
    """GET ``url`` with no proxy and no credentials of our own: (status, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=30) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), bytes(err.read())


def test_aws_presigned_urls(aws: AwsCli, tmp_path: Path) -> None:
    """``aws s3 presign`` URLs work from a plain HTTP client, until tampered or expired."""
    bucket = "aws-presign"
    body = tmp_path / "shared.bin"
    sha = write_file(body, 100_000, seed=5)
    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", str(body), f"s3://{bucket}/shared file.bin", "--no-progress")

    url = aws("s3", "presign", f"s3://{bucket}/shared file.bin", "--expires-in", "300")
    url_text = url.stdout.strip()
    assert "X-Amz-Signature=" in url_text, url.stdout
    status, got = _http_get(url_text)
    assert status == 200, got[:500]
    assert hashlib.sha256(got).hexdigest() == sha

    sig = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url_text)
    assert sig, url_text
    flipped = "0" if sig.group(1)[-1] != "0" else "1"
    tampered = url_text.replace(sig.group(1), sig.group(1)[:-1] + flipped)
    status, got = _http_get(tampered)
    assert (status, b"<Code>SignatureDoesNotMatch</Code>" in got) == (403, True), got[:500]

    short = aws("s3", "presign", f"s3://{bucket}/shared file.bin", "--expires-in", "1")
    time.sleep(2.5)
    status, got = _http_get(short.stdout.strip())
    assert (status, b"<Code>AccessDenied</Code>" in got) == (403, True), got[:500]
    assert b"expired" in got, got[:500]


def test_aws_error_paths(aws: AwsCli, s3: S3Target, tmp_path: Path) -> None:
    bucket = "aws-errors"
    aws("s3", "mb", f"s3://{bucket}")

    wrong_secret = AwsCli(
        S3Target(s3.host, s3.port, ROOT_ACCESS_KEY, "not-the-secret"), tmp_path / "bad-secret"
    )
    failed(wrong_secret("s3", "ls", check=False), "SignatureDoesNotMatch")
    failed(
        wrong_secret("s3api", "list-objects-v2", "--bucket", bucket, check=False),
        "SignatureDoesNotMatch",
    )
    unknown_key = AwsCli(
        S3Target(s3.host, s3.port, "AKIANOSUCHKEY0000000", ROOT_SECRET_KEY), tmp_path / "bad-key"
    )
    failed(unknown_key("s3", "ls", check=False), "InvalidAccessKeyId")

    out = tmp_path / "missing.out"
    failed(
        aws("s3api", "get-object", "--bucket", bucket, "--key", "missing", str(out), check=False),
        "NoSuchKey",
    )
    # HEAD has no body: the CLI can only report the status.
    failed(aws("s3api", "head-object", "--bucket", bucket, "--key", "missing", check=False), "404")
    failed(aws("s3", "cp", f"s3://{bucket}/missing", str(out), "--no-progress", check=False), "404")
    assert not out.exists()
    failed(aws("s3", "ls", "s3://no-such-bucket", check=False), "NoSuchBucket")
    failed(aws("s3", "rb", "s3://no-such-bucket", check=False), "NoSuchBucket")
    failed(aws("s3api", "create-bucket", "--bucket", "Bad_Name", check=False), "InvalidBucketName")


# --- s3cmd -----------------------------------------------------------------------------------

_S3CMD_LS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d +(\d+) +(?:([0-9a-f]{32}) +)?(s3://\S.*)$")
_S3CMD_DIR = re.compile(r"^ +DIR +(s3://\S.*)$")


def s3cmd_ls(text: str) -> tuple[list[str], dict[str, tuple[int, str | None]]]:
    """``s3cmd ls`` output: (DIR uris, {uri: (size, md5 if listed)})."""
    dirs: list[str] = []
    objects: dict[str, tuple[int, str | None]] = {}
    for line in text.splitlines():
        if m := _S3CMD_DIR.match(line):
            dirs.append(m.group(1))
        elif m := _S3CMD_LS.match(line):
            objects[m.group(3)] = (int(m.group(1)), m.group(2))
        else:
            raise AssertionError(f"unexpected s3cmd ls line {line!r} in:\n{text}")
    return dirs, objects


def test_s3cmd_roundtrip(s3: S3Target, tmp_path: Path) -> None:
    s3cmd = S3Cmd(s3, tmp_path / "s3cmd")
    bucket = "s3cmd-bucket"
    b = f"s3://{bucket}"
    src, out = tmp_path / "src", tmp_path / "out"
    layout = {"small.txt": 11, "mid.bin": 200 * 1024, "big.bin": 2 * MIB + 3, "sub/nested.txt": 42}
    digests = make_tree(src, layout, seed=21)

    s3cmd("mb", b)
    assert f"{b}" in s3cmd("ls").stdout
    s3cmd(
        "put",
        "--disable-multipart",
        str(src / "small.txt"),
        str(src / "mid.bin"),
        str(src / "big.bin"),
        f"{b}/dir/",
    )
    s3cmd("put", "--disable-multipart", str(src / "sub/nested.txt"), f"{b}/dir/sub/nested.txt")

    dirs, objects = s3cmd_ls(s3cmd("ls", f"{b}/").stdout)
    assert (dirs, objects) == ([f"{b}/dir/"], {})
    dirs, objects = s3cmd_ls(s3cmd("ls", "--list-md5", f"{b}/dir/").stdout)
    assert dirs == [f"{b}/dir/sub/"]
    assert objects == {
        f"{b}/dir/{name}": (layout[name], file_digest(src / name, "md5"))
        for name in ("big.bin", "mid.bin", "small.txt")
    }
    _, recursive = s3cmd_ls(s3cmd("ls", "--recursive", b).stdout)
    assert {uri: size for uri, (size, _) in recursive.items()} == {
        f"{b}/dir/{rel}": size for rel, size in layout.items()
    }

    info = s3cmd("info", f"{b}/dir/mid.bin").stdout
    assert re.search(r"File size: +204800\b", info), info
    assert f"MD5 sum:   {file_digest(src / 'mid.bin', 'md5')}" in info, info

    s3cmd("get", f"{b}/dir/big.bin", str(tmp_path / "big.bin"))
    assert file_digest(tmp_path / "big.bin") == digests["big.bin"]
    out.mkdir()
    s3cmd("get", "--recursive", f"{b}/dir/", str(out) + "/")
    assert tree_digest(out) == digests

    s3cmd("cp", f"{b}/dir/small.txt", f"{b}/copy/small.txt")
    s3cmd("get", f"{b}/copy/small.txt", str(tmp_path / "copy.txt"))
    assert file_digest(tmp_path / "copy.txt") == digests["small.txt"]
    s3cmd("del", f"{b}/dir/small.txt")
    _, objects = s3cmd_ls(s3cmd("ls", f"{b}/dir/").stdout)
    assert sorted(objects) == [f"{b}/dir/big.bin", f"{b}/dir/mid.bin"]

    missing = s3cmd("get", f"{b}/dir/missing", str(tmp_path / "missing"), check=False)
    failed(missing, "does not exist")
    failed(s3cmd("rb", b, check=False), "BucketNotEmpty")
    s3cmd("del", "--recursive", "--force", b)
    assert s3cmd("ls", "--recursive", b).stdout.strip() == ""
    s3cmd("rb", b)
    assert f"{b}" not in s3cmd("ls").stdout


# --- rclone ----------------------------------------------------------------------------------


def test_rclone_roundtrip(s3: S3Target, tmp_path: Path) -> None:
    rclone = Rclone(s3, tmp_path / "rclone")
    remote = "kv:rclone-bucket"
    src, out = tmp_path / "src", tmp_path / "out"
    layout = {
        "a.txt": 5,
        "b.bin": 64 * 1024,
        "sub/c.bin": 2 * MIB + 1,
        "sub/deeper/d.txt": 300,
        "sub/deeper/empty": 0,
    }
    digests = make_tree(src, layout, seed=31)

    rclone("mkdir", remote)
    assert "rclone-bucket" in rclone("lsd", "kv:").stdout
    rclone("copy", str(src), f"{remote}/data")

    listed = {}
    for line in rclone("ls", f"{remote}/data").stdout.splitlines():
        size, _, name = line.strip().partition(" ")
        listed[name] = int(size)
    assert listed == tree_sizes(src)
    # Non-recursive: a delimiter listing, directories with a trailing slash.
    assert sorted(rclone("lsf", f"{remote}/data").stdout.split()) == ["a.txt", "b.bin", "sub/"]
    assert sorted(rclone("lsf", f"{remote}/data/sub").stdout.split()) == ["c.bin", "deeper/"]
    hashes = {}
    for line in rclone(
        "lsf", "-R", "--files-only", "--hash", "MD5", "--format", "hp", f"{remote}/data"
    ).stdout.splitlines():
        md5, _, name = line.partition(";")
        hashes[name] = md5
    assert hashes == {rel: file_digest(src / rel, "md5") for rel in layout}

    check = rclone("check", str(src), f"{remote}/data")
    assert "0 differences found" in check.stderr, describe(check, "check found differences")

    rclone("copy", f"{remote}/data", str(out))
    assert tree_digest(out) == digests

    rclone("copyto", f"{remote}/data/sub/c.bin", f"{remote}/copy/c.bin")
    md5sum = rclone("md5sum", f"{remote}/copy").stdout.split()
    assert md5sum == [file_digest(src / "sub/c.bin", "md5"), "c.bin"]
    # S3 has no directories: rclone reads a missing key as an empty one and copies nothing.
    missing = rclone("cat", "--error-on-no-transfer", f"{remote}/copy/missing", check=False)
    assert (missing.returncode, missing.stdout) == (9, ""), describe(
        missing, "cat of a missing key"
    )

    rclone("delete", f"{remote}/data", "--include", "*.txt")
    assert sorted(rclone("lsf", "-R", "--files-only", f"{remote}/data").stdout.split()) == [
        "b.bin",
        "sub/c.bin",
        "sub/deeper/empty",
    ]
    rclone("purge", remote)
    assert "rclone-bucket" not in rclone("lsd", "kv:").stdout
