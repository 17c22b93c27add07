"""S3 front door, step 4: objects (put/get/head/delete, ranges, conditions, checksums,
metadata, copy, tagging, batch delete) and awkward keys, with boto3 on a real server."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import code
from ._lab import (
    Lab,
    anon,
    versioned,
)
from ._s3 import ACCESS_KEY, NO_MULTIPART, SECRET_KEY, S3Server, module_server
from ._s3clients import AwsCli, S3Target
from ._server import pseudo_random_chunks

BUCKET = "objects"


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3obj") as srv:
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


def _status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_put_get_head_delete(s3: Any) -> None:
    body = b"hello, kvbox"
    put = s3.put_object(Bucket=BUCKET, Key="greeting.txt", Body=body, ContentType="text/plain")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=BUCKET, Key="greeting.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=BUCKET, Key="greeting.txt")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    age = dt.datetime.now(dt.UTC) - head["LastModified"]
    assert dt.timedelta(seconds=-2) < age < dt.timedelta(minutes=1)
    s3.delete_object(Bucket=BUCKET, Key="greeting.txt")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="greeting.txt")
    assert _code(info.value) == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="greeting.txt")
    assert _status(info.value) == 404
    s3.delete_object(Bucket=BUCKET, Key="greeting.txt")  # deleting nothing is fine


def test_empty_object(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="empty", Body=b"")
    got = s3.get_object(Bucket=BUCKET, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="empty", Range="bytes=0-0")
    assert _status(info.value) == 416


def test_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
    assert _code(info.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="no-such-bucket", Key="k")
    assert _code(info.value) == "NoSuchBucket"


def test_large_object_streams_through(s3: Any) -> None:
    size = 20 * 1024 * 1024 + 123  # several 8 MiB store chunks plus a tail
    data = b"".join(pseudo_random_chunks(7, size))
    s3.upload_fileobj(io.BytesIO(data), BUCKET, "big.bin", Config=NO_MULTIPART)
    head = s3.head_object(Bucket=BUCKET, Key="big.bin")
    assert head["ContentLength"] == size
    out = io.BytesIO()
    s3.download_fileobj(BUCKET, "big.bin", out, Config=NO_MULTIPART)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()
    part = s3.get_object(Bucket=BUCKET, Key="big.bin", Range="bytes=8388600-8388700")
    assert part["Body"].read() == data[8388600:8388701]


def test_ranges(s3: Any) -> None:
    data = bytes(range(256)) * 4
    s3.put_object(Bucket=BUCKET, Key="range", Body=data)
    cases = {
        "bytes=0-9": (data[0:10], "bytes 0-9/1024"),
        "bytes=1000-": (data[1000:], "bytes 1000-1023/1024"),
        "bytes=-24": (data[-24:], "bytes 1000-1023/1024"),
        "bytes=1020-5000": (data[1020:], "bytes 1020-1023/1024"),
        "bytes=-5000": (data, "bytes 0-1023/1024"),
    }
    for rng, (want, content_range) in cases.items():
        got = s3.get_object(Bucket=BUCKET, Key="range", Range=rng)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert got["ContentRange"] == content_range, rng
        assert got["Body"].read() == want, rng
    for bad in ("bytes=1024-", "bytes=2000-3000"):
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket=BUCKET, Key="range", Range=bad)
        assert _status(info.value) == 416
        assert _code(info.value) == "InvalidRange"
    whole = s3.get_object(Bucket=BUCKET, Key="range", Range="items=0-1")
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert whole["Body"].read() == data


def test_read_conditions(s3: Any) -> None:
    etag = s3.put_object(Bucket=BUCKET, Key="cond", Body=b"v1")["ETag"]
    mtime = s3.head_object(Bucket=BUCKET, Key="cond")["LastModified"]
    assert s3.get_object(Bucket=BUCKET, Key="cond", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="cond", IfMatch='"0000"')
    assert _status(info.value) == 412
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="cond", IfNoneMatch=etag)
    assert _status(info.value) == 304
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="cond", IfNoneMatch=etag)
    assert _status(info.value) == 304
    later = mtime + dt.timedelta(seconds=10)
    earlier = mtime - dt.timedelta(seconds=10)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="cond", IfModifiedSince=later)
    assert _status(info.value) == 304
    s3.get_object(Bucket=BUCKET, Key="cond", IfModifiedSince=earlier)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="cond", IfUnmodifiedSince=earlier)
    assert _status(info.value) == 412
    s3.get_object(Bucket=BUCKET, Key="cond", IfUnmodifiedSince=later)
    # If-Match true wins over If-Unmodified-Since false (RFC 9110 §13.2.2).
    s3.get_object(Bucket=BUCKET, Key="cond", IfMatch=etag, IfUnmodifiedSince=earlier)


def test_conditional_writes(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="cw", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="cw", Body=b"second", IfNoneMatch="*")
    assert _status(info.value) == 412
    assert _code(info.value) == "PreconditionFailed"
    etag = s3.head_object(Bucket=BUCKET, Key="cw")["ETag"]
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="cw", Body=b"third", IfMatch='"deadbeef"')
    assert _status(info.value) == 412
    s3.put_object(Bucket=BUCKET, Key="cw", Body=b"fourth", IfMatch=etag)
    assert s3.get_object(Bucket=BUCKET, Key="cw")["Body"].read() == b"fourth"


def test_metadata_and_headers_round_trip(s3: Any) -> None:
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    s3.put_object(
        Bucket=BUCKET,
        Key="meta",
        Body=b"{}",
        ContentType="application/json",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="x.json"',
        CacheControl="max-age=60",
        ContentLanguage="en",
        Expires=expires,
        Metadata={"Color": "blue", "owner-id": "42"},
    )
    for resp in (
        s3.head_object(Bucket=BUCKET, Key="meta"),
        s3.get_object(Bucket=BUCKET, Key="meta"),
    ):
        assert resp["ContentType"] == "application/json"
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentDisposition"] == 'attachment; filename="x.json"'
        assert resp["CacheControl"] == "max-age=60"
        assert resp["ContentLanguage"] == "en"
        assert resp["Metadata"] == {"color": "blue", "owner-id": "42"}
    got = s3.get_object(
        Bucket=BUCKET,
        Key="meta",
        ResponseContentType="text/plain",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
    )
    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"


def test_content_md5(s3: Any) -> None:
    body = b"digest me"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=BUCKET, Key="md5", Body=body, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="md5-bad", Body=body, ContentMD5=bad)
    assert _code(info.value) == "BadDigest"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="md5-bad")
    assert _status(info.value) == 404


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_flexible_checksums_stored_and_returned(s3: Any, algorithm: str) -> None:
    key = f"sum-{algorithm}"
    body = b"checksummed body " * 1000
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=body, ChecksumAlgorithm=algorithm)
    field = f"Checksum{algorithm}"
    assert put[field]
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head[field] == put[field]
    got = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # botocore validates the checksum while reading
    assert got[field] == put[field]
    plain = s3.head_object(Bucket=BUCKET, Key=key)
    assert field not in plain


def test_wrong_checksum_header_is_bad_digest(s3: Any) -> None:
    body = b"payload"
    wrong = base64.b64encode(zlib.crc32(b"not the payload").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="crc-bad", Body=body, ChecksumCRC32=wrong)
    assert _code(info.value) == "BadDigest"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="crc-bad")
    assert _status(info.value) == 404


def test_malformed_checksum_header_is_invalid_request(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="crc-malformed", Body=b"x", ChecksumCRC32="not-a-crc")
    assert _code(info.value) == "InvalidRequest"
    assert _status(info.value) == 400


def test_copy_object(s3: Any) -> None:
    s3.put_object(
        Bucket=BUCKET,
        Key="src",
        Body=b"copy me",
        ContentType="text/x",
        Metadata={"a": "1"},
        Tagging="t=1",
    )
    res = s3.copy_object(Bucket=BUCKET, Key="dst", CopySource={"Bucket": BUCKET, "Key": "src"})
    assert res["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    got = s3.get_object(Bucket=BUCKET, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["ContentType"] == "text/x"
    assert got["Metadata"] == {"a": "1"}
    assert s3.get_object_tagging(Bucket=BUCKET, Key="dst")["TagSet"] == [{"Key": "t", "Value": "1"}]
    s3.copy_object(
        Bucket=BUCKET,
        Key="dst2",
        CopySource={"Bucket": BUCKET, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="text/y",
        Metadata={"b": "2"},
    )
    head = s3.head_object(Bucket=BUCKET, Key="dst2")
    assert head["ContentType"] == "text/y" and head["Metadata"] == {"b": "2"}


def test_copy_onto_itself(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="self", Body=b"same bytes", Metadata={"v": "1"})
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=BUCKET, Key="self", CopySource={"Bucket": BUCKET, "Key": "self"})
    assert _code(info.value) == "InvalidRequest"
    s3.copy_object(
        Bucket=BUCKET,
        Key="self",
        CopySource={"Bucket": BUCKET, "Key": "self"},
        MetadataDirective="REPLACE",
        Metadata={"v": "2"},
    )
    got = s3.get_object(Bucket=BUCKET, Key="self")
    assert got["Body"].read() == b"same bytes"
    assert got["Metadata"] == {"v": "2"}


def test_copy_source_conditions_and_missing_source(s3: Any) -> None:
    etag = s3.put_object(Bucket=BUCKET, Key="csrc", Body=b"x")["ETag"]
    src = {"Bucket": BUCKET, "Key": "csrc"}
    s3.copy_object(Bucket=BUCKET, Key="cdst", CopySource=src, CopySourceIfMatch=etag)
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=BUCKET, Key="cdst", CopySource=src, CopySourceIfMatch='"nope"')
    assert _status(info.value) == 412
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=BUCKET, Key="cdst", CopySource=src, CopySourceIfNoneMatch=etag)
    assert _status(info.value) == 412
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=BUCKET, Key="cdst", CopySource={"Bucket": BUCKET, "Key": "nope"})
    assert _code(info.value) == "NoSuchKey"


def test_object_tagging(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="tagged", Body=b"t", Tagging="env=dev&team=kv%20box")
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="tagged")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "dev"), ("team", "kv box")]
    assert (
        s3.head_object(Bucket=BUCKET, Key="tagged")["ResponseMetadata"]["HTTPHeaders"][
            "x-amz-tagging-count"
        ]
        == "2"
    )
    s3.put_object_tagging(
        Bucket=BUCKET, Key="tagged", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]}
    )
    assert s3.get_object_tagging(Bucket=BUCKET, Key="tagged")["TagSet"] == [
        {"Key": "only", "Value": "one"}
    ]
    assert s3.get_object(Bucket=BUCKET, Key="tagged")["Body"].read() == b"t"
    s3.delete_object_tagging(Bucket=BUCKET, Key="tagged")
    assert s3.get_object_tagging(Bucket=BUCKET, Key="tagged")["TagSet"] == []
    with pytest.raises(ClientError) as info:
        s3.put_object_tagging(
            Bucket=BUCKET, Key="tagged", Tagging={"TagSet": [{"Key": "aws:x", "Value": "1"}]}
        )
    assert _code(info.value) == "InvalidTag"


def test_delete_objects(s3: Any) -> None:
    for i in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"batch/{i}", Body=b"x")
    res = s3.delete_objects(
        Bucket=BUCKET,
        Delete={"Objects": [{"Key": f"batch/{i}"} for i in range(3)] + [{"Key": "batch/none"}]},
    )
    assert sorted(d["Key"] for d in res["Deleted"]) == [
        "batch/0",
        "batch/1",
        "batch/2",
        "batch/none",
    ]
    res = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "batch/3"}, {"Key": "batch/4"}], "Quiet": True}
    )
    assert "Deleted" not in res and "Errors" not in res
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/")
    assert left["KeyCount"] == 0


@pytest.mark.parametrize(
    "key",
    [
        "../escape",
        "a/../../b",
        "dir/./file",
        "double//slash",
        "percent%2Fslash",
        "spaces and+plus",
        "unicode/ü€😀",
        "k" * 1024,
        "é" * 512,
    ],
)
def test_awkward_keys_are_names_not_paths(s3: Any, key: str) -> None:
    body = key.encode()[:64]
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=key)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    s3.delete_object(Bucket=BUCKET, Key=key)


def test_key_over_1024_bytes_is_refused(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="k" * 1025, Body=b"x")
    assert _code(info.value) == "KeyTooLongError"
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="é" * 513, Body=b"x")
    assert _code(info.value) == "KeyTooLongError"


# --- tags and ACLs belong to one version ---------------------------------------------------


def test_tags_and_acl_never_stick_to_the_next_version(lab: Lab, lab_s3: Any) -> None:
    for versioning in (False, True):
        b = "rv-stale-v" if versioning else "rv-stale-u"
        if versioning:
            versioned(lab_s3, b, acls=True)
        else:
            lab_s3.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
        lab_s3.put_object(Bucket=b, Key="k", Body=b"one")
        lab_s3.put_object_tagging(
            Bucket=b, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]}
        )
        lab_s3.put_object_acl(Bucket=b, Key="k", ACL="public-read")
        assert anon(lab.srv.http_port, "GET", f"/{b}/k").status == 200
        lab_s3.put_object(Bucket=b, Key="k", Body=b"two")
        assert lab_s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == []
        assert anon(lab.srv.http_port, "GET", f"/{b}/k").status == 403
        assert lab_s3.get_object(Bucket=b, Key="k")["Body"].read() == b"two"


def test_concurrent_tagging_and_overwrites(lab: Lab) -> None:
    """Tags set while the key is overwritten land on some version whole, never mixed
    into another version's fresh tags, and never undo an overwrite."""
    writer, tagger, reader = lab.srv.client(), lab.srv.client(), lab.srv.client()
    b = versioned(reader, "rv-tag-race")
    reader.put_object(Bucket=b, Key="k", Body=b"body-start", Tagging="fresh=start")
    deadline = time.monotonic() + 6.0
    last: list[int] = []
    errors: list[str] = []

    def write() -> None:
        for i in range(150):
            if time.monotonic() > deadline:
                return
            writer.put_object(Bucket=b, Key="k", Body=f"body-{i}".encode(), Tagging=f"fresh={i}")
            last.append(i)

    def tag() -> None:
        for _ in range(600):
            if time.monotonic() > deadline:
                return
            try:
                tagger.put_object_tagging(
                    Bucket=b, Key="k", Tagging={"TagSet": [{"Key": "fresh", "Value": "tagged"}]}
                )
            except ClientError as exc:
                errors.append(code(exc))

    threads = [threading.Thread(target=write), threading.Thread(target=tag)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert last, "no overwrite completed"
    now = reader.get_object(Bucket=b, Key="k")["Body"].read().decode()
    assert now == f"body-{last[-1]}"
    versions = reader.list_object_versions(Bucket=b, Prefix="k")["Versions"]
    assert len(versions) == len(last) + 1
    for v in versions[:40]:
        vid = v["VersionId"]
        body = reader.get_object(Bucket=b, Key="k", VersionId=vid)["Body"].read().decode()
        tags = reader.get_object_tagging(Bucket=b, Key="k", VersionId=vid)["TagSet"]
        value = {t["Key"]: t["Value"] for t in tags}["fresh"]
        assert value == "tagged" or body == f"body-{value}", (body, value)


def test_tagging_header_with_a_tag_without_value(s3srv: S3Server, s3: Any, tmp_path: Path) -> None:
    """``x-amz-tagging: a=b&c`` (URL query form, ``c`` with no ``=``) is two tags, the
    second with an empty value, as AWS reads it."""
    s3.put_object(Bucket=BUCKET, Key="tag-bare", Body=b"x", Tagging="a=b&c")
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="tag-bare")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "b"), ("c", "")]
    cli = AwsCli(S3Target("127.0.0.1", s3srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path)
    body = tmp_path / "body"
    body.write_bytes(b"y")
    cli("s3api", "put-object", "--bucket", BUCKET, "--key", "tag-cli", "--body", str(body),
        "--tagging", "project=blue&draft")  # fmt: skip
    tags = cli.json("get-object-tagging", "--bucket", BUCKET, "--key", "tag-cli")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("draft", ""), ("project", "blue")]


def test_what_kvbox_does_not_do_is_refused_not_ignored(s3: Any) -> None:
    """Server-side encryption, storage classes other than STANDARD and sub-resources
    kvbox does not serve answer errors; nothing is stored by a refused request."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ServerSideEncryption": "AES256"}, "NotImplemented"),
        ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k"}, "NotImplemented"),
        ({"StorageClass": "GLACIER"}, "InvalidStorageClass"),
    ]
    for extra, expected in cases:
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket=BUCKET, Key="refused", Body=b"x", **extra)
        assert _code(info.value) == expected, extra
    s3.put_object(Bucket=BUCKET, Key="standard", Body=b"x", StorageClass="STANDARD")
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="refused")
    assert _status(info.value) == 404
    with pytest.raises(ClientError) as info:
        s3.put_bucket_encryption(
            Bucket=BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
    assert _code(info.value) == "NotImplemented"
    with pytest.raises(ClientError) as info:
        s3.get_bucket_accelerate_configuration(Bucket=BUCKET)
    assert _code(info.value) == "NotImplemented"
