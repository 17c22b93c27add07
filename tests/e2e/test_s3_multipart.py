"""S3 multipart upload end to end: boto3's API calls, s3transfer and ``aws s3 cp``.

Layer: tests/e2e. Rules: a real ``kvbox serve``; the multipart ETag is checked against
AWS's formula computed here from the bytes, and every download by its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server
from ._s3clients import AwsCli, S3Target, file_digest, write_file

BUCKET = "multi"
MiB = 1 << 20


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3mp") as srv:
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def _aws_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def _crc_b64(alg: str, data: bytes) -> str:
    """An independent oracle: zlib's CRC32 and awscrt's CRC64NVME."""
    if alg == "CRC32":
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    from awscrt import checksums  # type: ignore[import-untyped]

    return base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()


def _upload(s3: Any, key: str, parts: list[bytes]) -> tuple[str, list[dict[str, Any]]]:
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="text/x-kv")["UploadId"]
    done = []
    for n, body in enumerate(parts, 1):
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=body)
        assert r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    return uid, done


def test_three_parts_complete_into_one_object(s3: Any) -> None:
    rng = random.Random(1)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(1 * MiB)]
    uid, done = _upload(s3, "big/obj", parts)
    listed = s3.list_parts(Bucket=BUCKET, Key="big/obj", UploadId=uid)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [
        (1, 5 * MiB),
        (2, 5 * MiB),
        (3, 1 * MiB),
    ]
    ups = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in ups] == [("big/obj", uid)]
    r = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="big/obj", UploadId=uid, MultipartUpload={"Parts": done}
    )
    assert r["ETag"] == _aws_etag(parts)
    assert r["ETag"].endswith('-3"')
    got = s3.get_object(Bucket=BUCKET, Key="big/obj")
    data = got["Body"].read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(parts)).digest()
    assert got["ETag"] == _aws_etag(parts)
    assert got["ContentType"] == "text/x-kv"
    ranged = s3.get_object(Bucket=BUCKET, Key="big/obj", Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")
    assert ranged["Body"].read() == parts[0][-2:] + parts[1][:2]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)
    with pytest.raises(ClientError) as info:
        s3.list_parts(Bucket=BUCKET, Key="big/obj", UploadId=uid)
    assert _code(info.value) == "NoSuchUpload"


def test_small_part_before_the_last_is_entity_too_small(s3: Any) -> None:
    uid, done = _upload(s3, "small", [b"a" * 1024, b"b" * 1024])
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="small", UploadId=uid, MultipartUpload={"Parts": done}
        )
    assert _code(info.value) == "EntityTooSmall"
    # one small part alone is fine: it is the last
    r = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="small", UploadId=uid, MultipartUpload={"Parts": done[1:]}
    )
    assert r["ETag"] == _aws_etag([b"b" * 1024])
    assert s3.get_object(Bucket=BUCKET, Key="small")["Body"].read() == b"b" * 1024


def test_out_of_order_and_wrong_etag(s3: Any) -> None:
    uid, done = _upload(s3, "order", [b"x" * 10, b"y" * 10])
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="order", UploadId=uid, MultipartUpload={"Parts": done[::-1]}
        )
    assert _code(info.value) == "InvalidPartOrder"
    wrong = [done[0], {"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="order", UploadId=uid, MultipartUpload={"Parts": wrong}
        )
    assert _code(info.value) == "InvalidPart"
    missing = [{"PartNumber": 7, "ETag": done[0]["ETag"]}]
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="order", UploadId=uid, MultipartUpload={"Parts": missing}
        )
    assert _code(info.value) == "InvalidPart"
    s3.abort_multipart_upload(Bucket=BUCKET, Key="order", UploadId=uid)


def test_abort_then_no_such_upload(s3: Any) -> None:
    uid, done = _upload(s3, "aborted", [b"z" * 100])
    s3.abort_multipart_upload(Bucket=BUCKET, Key="aborted", UploadId=uid)
    with pytest.raises(ClientError) as info:
        s3.upload_part(Bucket=BUCKET, Key="aborted", UploadId=uid, PartNumber=1, Body=b"")
    assert _code(info.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="aborted", UploadId=uid, MultipartUpload={"Parts": done}
        )
    assert _code(info.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as info:
        s3.abort_multipart_upload(Bucket=BUCKET, Key="aborted", UploadId=uid)
    assert _code(info.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as info:  # an upload id of another key is not found
        s3.list_parts(Bucket=BUCKET, Key="elsewhere", UploadId=uid)
    assert _code(info.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="aborted")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_multipart_on_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.create_multipart_upload(Bucket="mpu-missing", Key="big")
    assert _code(info.value) == "NoSuchBucket"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_parts_and_uploads_page(s3: Any) -> None:
    uid, _ = _upload(s3, "pages/a", [b"1", b"2", b"3"])
    uid2 = s3.create_multipart_upload(Bucket=BUCKET, Key="pages/b")["UploadId"]
    page = s3.list_parts(Bucket=BUCKET, Key="pages/a", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True
    rest = s3.list_parts(
        Bucket=BUCKET,
        Key="pages/a",
        UploadId=uid,
        PartNumberMarker=page["NextPartNumberMarker"],
    )
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert rest["IsTruncated"] is False
    ups = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="pages/", MaxUploads=1)
    assert [u["UploadId"] for u in ups["Uploads"]] == [uid]
    assert ups["IsTruncated"] is True
    more = s3.list_multipart_uploads(
        Bucket=BUCKET,
        Prefix="pages/",
        KeyMarker=ups["NextKeyMarker"],
        UploadIdMarker=ups["NextUploadIdMarker"],
    )
    assert [u["UploadId"] for u in more["Uploads"]] == [uid2]
    folded = s3.list_multipart_uploads(Bucket=BUCKET, Delimiter="/")
    assert [p["Prefix"] for p in folded["CommonPrefixes"]] == ["pages/"]
    for key, u in (("pages/a", uid), ("pages/b", uid2)):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=u)


def test_boto3_upload_file_multipart(s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    digest = write_file(src, 40 * MiB, seed=7)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    s3.upload_file(str(src), BUCKET, "transfer.bin", Config=cfg)
    head = s3.head_object(Bucket=BUCKET, Key="transfer.bin")
    assert head["ContentLength"] == 40 * MiB
    assert head["ETag"].endswith('-5"')
    dst = tmp_path / "dst.bin"
    s3.download_file(BUCKET, "transfer.bin", str(dst))
    assert file_digest(dst) == digest


def test_aws_cli_cp_uses_multipart(s3srv: S3Server, s3: Any, tmp_path: Path) -> None:
    aws = AwsCli(S3Target("127.0.0.1", s3srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    # Back to the CLI's default multipart settings (8 MiB threshold and parts).
    config = tmp_path / "aws" / "aws-config"
    config.write_text(
        "".join(
            line
            for line in config.read_text().splitlines(keepends=True)
            if "multipart_threshold" not in line
        )
    )
    src = tmp_path / "cli.bin"
    digest = write_file(src, 40 * MiB, seed=11)
    aws("s3", "cp", str(src), f"s3://{BUCKET}/cli.bin")
    head = s3.head_object(Bucket=BUCKET, Key="cli.bin")
    assert head["ContentLength"] == 40 * MiB
    assert head["ETag"].endswith('-5"')
    dst = tmp_path / "cli-back.bin"
    aws("s3", "cp", f"s3://{BUCKET}/cli.bin", str(dst))
    assert file_digest(dst) == digest


def test_upload_part_copy_with_ranges(s3: Any) -> None:
    rng = random.Random(3)
    big = rng.randbytes(6 * MiB)
    s3.put_object(Bucket=BUCKET, Key="copy-src", Body=big)
    s3.put_object(Bucket=BUCKET, Key="copy-small", Body=b"tail bytes")
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="copied")["UploadId"]
    src = {"Bucket": BUCKET, "Key": "copy-src"}
    r1 = s3.upload_part_copy(
        Bucket=BUCKET, Key="copied", UploadId=uid, PartNumber=1, CopySource=src
    )
    r2 = s3.upload_part_copy(
        Bucket=BUCKET,
        Key="copied",
        UploadId=uid,
        PartNumber=2,
        CopySource=src,
        CopySourceRange=f"bytes=0-{5 * MiB - 1}",
    )
    r3 = s3.upload_part_copy(
        Bucket=BUCKET,
        Key="copied",
        UploadId=uid,
        PartNumber=3,
        CopySource={"Bucket": BUCKET, "Key": "copy-small"},
        CopySourceRange="bytes=5-9",
    )
    parts = [big, big[: 5 * MiB], b"bytes"]
    etags = [r["CopyPartResult"]["ETag"] for r in (r1, r2, r3)]
    assert etags == [f'"{hashlib.md5(p).hexdigest()}"' for p in parts]
    with pytest.raises(ClientError) as info:
        s3.upload_part_copy(
            Bucket=BUCKET,
            Key="copied",
            UploadId=uid,
            PartNumber=4,
            CopySource={"Bucket": BUCKET, "Key": "copy-small"},
            CopySourceRange="bytes=5-10",
        )
    assert _code(info.value) == "InvalidRange"
    done = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    r = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="copied", UploadId=uid, MultipartUpload={"Parts": done}
    )
    assert r["ETag"] == _aws_etag(parts)
    data = s3.get_object(Bucket=BUCKET, Key="copied")["Body"].read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(parts)).digest()


def _chunk_files(srv: S3Server) -> set[str]:
    root = srv.server.data_dir / "chunks"
    return {p.name for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"}


def test_deleting_a_bucket_deletes_its_uploads_in_progress(s3srv: S3Server, s3: Any) -> None:
    """AWS deletes a bucket whose only contents are unfinished uploads, and the uploads
    with it: their parts' bytes are released, a new bucket of that name starts empty."""
    s3.create_bucket(Bucket="pending")
    before = _chunk_files(s3srv)
    uid = s3.create_multipart_upload(Bucket="pending", Key="k")["UploadId"]
    body = random.Random(7).randbytes(MiB)
    s3.upload_part(Bucket="pending", Key="k", UploadId=uid, PartNumber=1, Body=body)
    assert _chunk_files(s3srv) - before, "the part's bytes are on disk"
    assert s3.delete_bucket(Bucket="pending")["ResponseMetadata"]["HTTPStatusCode"] == 204
    calls: list[Callable[[], Any]] = [
        lambda: s3.list_multipart_uploads(Bucket="pending"),
        lambda: s3.upload_part(Bucket="pending", Key="k", UploadId=uid, PartNumber=2, Body=b"x"),
        lambda: s3.complete_multipart_upload(
            Bucket="pending",
            Key="k",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0"'}]},
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as info:
            call()
        assert _code(info.value) == "NoSuchBucket"
    s3.create_bucket(Bucket="pending")
    assert s3.list_multipart_uploads(Bucket="pending").get("Uploads", []) == []
    with pytest.raises(ClientError) as info:
        s3.list_parts(Bucket="pending", Key="k", UploadId=uid)
    assert _code(info.value) == "NoSuchUpload"
    deadline = time.monotonic() + 10
    while _chunk_files(s3srv) - before and time.monotonic() < deadline:
        time.sleep(0.05)  # chunk files are deleted in the background, after the commit
    assert not _chunk_files(s3srv) - before
    s3.delete_bucket(Bucket="pending")


def test_a_bucket_with_objects_keeps_its_uploads(s3: Any) -> None:
    s3.create_bucket(Bucket="busy")
    s3.put_object(Bucket="busy", Key="o", Body=b"1")
    uid = s3.create_multipart_upload(Bucket="busy", Key="k")["UploadId"]
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket="busy")
    assert _code(info.value) == "BucketNotEmpty"
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="busy")["Uploads"]] == [uid]
    s3.delete_object(Bucket="busy", Key="o")
    s3.delete_bucket(Bucket="busy")


@pytest.mark.slow
def test_one_gib_through_the_aws_cli(s3srv: S3Server, s3: Any, tmp_path: Path) -> None:
    """The issue's upper size: 1 GiB up and down with the AWS CLI's default multipart
    settings (8 MiB parts, parallel), checked by SHA-256 at both ends."""
    aws = AwsCli(S3Target("127.0.0.1", s3srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    config = tmp_path / "aws" / "aws-config"
    config.write_text(
        "".join(
            line
            for line in config.read_text().splitlines(keepends=True)
            if "multipart_threshold" not in line
        )
    )
    src = tmp_path / "gib.bin"
    digest = write_file(src, 1024 * MiB, seed=1024)
    aws("s3", "cp", str(src), f"s3://{BUCKET}/gib.bin")
    src.unlink()  # keep the test's own disk use to one copy at a time
    head = s3.head_object(Bucket=BUCKET, Key="gib.bin")
    assert head["ContentLength"] == 1024 * MiB
    assert head["ETag"].endswith('-128"')
    dst = tmp_path / "gib-back.bin"
    aws("s3", "cp", f"s3://{BUCKET}/gib.bin", str(dst))
    assert file_digest(dst) == digest
    # Checked: neither GiB has to stay while the module's other tests run.
    dst.unlink()
    s3.delete_object(Bucket=BUCKET, Key="gib.bin")


def test_multipart_checksums_composite_and_full_object(s3: Any) -> None:
    """boto3's per-part checksums become the object's: COMPOSITE (``-N``) for SHA256 and
    CRC32 by default, FULL_OBJECT for CRC64NVME and when the upload asks for it; a part
    checksum in the Complete body that is not the uploaded one is InvalidPart."""
    s3.create_bucket(Bucket="mp-sums")
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    whole = b"".join(parts)
    cases = [("SHA256", None), ("CRC32", None), ("CRC64NVME", None), ("CRC32", "FULL_OBJECT")]
    for alg, kind in cases:
        key = f"{alg}-{kind}"
        extra = {"ChecksumType": kind} if kind else {}
        up = s3.create_multipart_upload(Bucket="mp-sums", Key=key, ChecksumAlgorithm=alg, **extra)[
            "UploadId"
        ]
        done = []
        for n, data in enumerate(parts, 1):
            r = s3.upload_part(
                Bucket="mp-sums", Key=key, UploadId=up, PartNumber=n, Body=data,
                ChecksumAlgorithm=alg,
            )  # fmt: skip
            done.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{alg}": r[f"Checksum{alg}"]})
        res = s3.complete_multipart_upload(
            Bucket="mp-sums", Key=key, UploadId=up, MultipartUpload={"Parts": done}
        )
        value = res[f"Checksum{alg}"]
        head = s3.head_object(Bucket="mp-sums", Key=key, ChecksumMode="ENABLED")
        assert head[f"Checksum{alg}"] == value
        if alg == "CRC64NVME" or kind == "FULL_OBJECT":
            assert head["ChecksumType"] == "FULL_OBJECT"
            # the CRC of the whole object's bytes, combined from the parts' CRCs
            assert value == _crc_b64(alg, whole)
        else:
            assert head["ChecksumType"] == "COMPOSITE" and value.endswith("-2")
    up = s3.create_multipart_upload(Bucket="mp-sums", Key="bad", ChecksumAlgorithm="CRC32")[
        "UploadId"
    ]
    r = s3.upload_part(
        Bucket="mp-sums", Key="bad", UploadId=up, PartNumber=1, Body=b"x", ChecksumAlgorithm="CRC32"
    )
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket="mp-sums",
            Key="bad",
            UploadId=up,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": "AAAAAA=="}]
            },
        )
    assert _code(info.value) == "InvalidPart"


def test_get_and_head_by_part_number(s3: Any) -> None:
    """GetObject/HeadObject ?partNumber=N serve part N of a multipart object (206, its
    Content-Range, x-amz-mp-parts-count); past the last part is 416; with a Range, 400."""
    s3.create_bucket(Bucket="mp-partnum")
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024), os.urandom(777)]
    up = s3.create_multipart_upload(Bucket="mp-partnum", Key="obj")["UploadId"]
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket="mp-partnum", Key="obj", UploadId=up, PartNumber=n, Body=data)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket="mp-partnum", Key="obj", UploadId=up, MultipartUpload={"Parts": done}
    )
    offset = 0
    for n, data in enumerate(parts, 1):
        got = s3.get_object(Bucket="mp-partnum", Key="obj", PartNumber=n)
        assert got["Body"].read() == data and got["PartsCount"] == 3
        assert (
            got["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{sum(map(len, parts))}"
        )
        head = s3.head_object(Bucket="mp-partnum", Key="obj", PartNumber=n)
        assert head["ContentLength"] == len(data) and head["PartsCount"] == 3
        offset += len(data)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="mp-partnum", Key="obj", PartNumber=4)
    assert _code(info.value) == "InvalidRange"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="mp-partnum", Key="obj", PartNumber=1, Range="bytes=0-1")
    assert _code(info.value) == "InvalidRequest"
    # a copy is a single-part object: no part layout carried over
    s3.copy_object(
        Bucket="mp-partnum", Key="copy", CopySource={"Bucket": "mp-partnum", "Key": "obj"}
    )
    assert "PartsCount" not in s3.head_object(Bucket="mp-partnum", Key="copy")


def test_unknown_checksum_type_is_invalid_request(s3srv: S3Server, s3: Any) -> None:
    """x-amz-checksum-type takes COMPOSITE or FULL_OBJECT; anything else is a 400."""
    s3.create_bucket(Bucket="mp-badtype")

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-amz-checksum-type"] = "SOMETIMES"

    s3.meta.events.register_first("before-sign.s3.CreateMultipartUpload", add_header)
    try:
        with pytest.raises(ClientError) as info:
            s3.create_multipart_upload(Bucket="mp-badtype", Key="k")
    finally:
        s3.meta.events.unregister("before-sign.s3.CreateMultipartUpload", add_header)
    assert _code(info.value) == "InvalidRequest"
    assert s3.list_multipart_uploads(Bucket="mp-badtype").get("Uploads", []) == []


def _one_part_upload(s3: Any, key: str, body: bytes) -> tuple[str, list[dict[str, Any]]]:
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=1, Body=body)["ETag"]
    return uid, [{"PartNumber": 1, "ETag": etag}]


def test_complete_honours_if_none_match_and_if_match(s3: Any) -> None:
    """If-None-Match: * on CompleteMultipartUpload must not overwrite an existing object
    (it used to); If-Match must name the current ETag. A refused Complete changes
    nothing, and the upload can still be completed."""
    s3.put_object(Bucket=BUCKET, Key="guarded", Body=b"original")
    current = s3.head_object(Bucket=BUCKET, Key="guarded")["ETag"]
    uid, parts = _one_part_upload(s3, "guarded", b"replacement")
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}):
        with pytest.raises(ClientError) as info:
            s3.complete_multipart_upload(
                Bucket=BUCKET, Key="guarded", UploadId=uid, MultipartUpload={"Parts": parts},
                **condition,
            )  # fmt: skip
        assert _code(info.value) == "PreconditionFailed"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert s3.get_object(Bucket=BUCKET, Key="guarded")["Body"].read() == b"original"
    assert [
        p["PartNumber"] for p in s3.list_parts(Bucket=BUCKET, Key="guarded", UploadId=uid)["Parts"]
    ] == [1]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="guarded", UploadId=uid, MultipartUpload={"Parts": parts},
        IfMatch=current,
    )  # fmt: skip
    assert s3.get_object(Bucket=BUCKET, Key="guarded")["Body"].read() == b"replacement"
    # If-None-Match: * on a key nobody wrote: the upload becomes the object.
    uid, parts = _one_part_upload(s3, "fresh-guarded", b"first")
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="fresh-guarded", UploadId=uid, MultipartUpload={"Parts": parts},
        IfNoneMatch="*",
    )  # fmt: skip
    assert s3.get_object(Bucket=BUCKET, Key="fresh-guarded")["Body"].read() == b"first"


def test_declared_checksum_algorithm_is_echoed_listed_and_enforced(
    s3srv: S3Server, s3: Any
) -> None:
    """CreateMultipartUpload's x-amz-checksum-algorithm is echoed with its type, shown
    by ListParts and ListMultipartUploads, required of every part (another algorithm, or
    none, is a mismatch, as AWS answers), and a COMPOSITE Complete must list each part's
    checksum."""
    s3.create_bucket(Bucket="mp-declared")
    created = s3.create_multipart_upload(Bucket="mp-declared", Key="k", ChecksumAlgorithm="SHA256")
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == ("SHA256", "COMPOSITE")
    up = created["UploadId"]
    full = s3.create_multipart_upload(Bucket="mp-declared", Key="f", ChecksumAlgorithm="CRC64NVME")
    assert full["ChecksumType"] == "FULL_OBJECT"
    with pytest.raises(ClientError) as info:
        s3.create_multipart_upload(
            Bucket="mp-declared", Key="x", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"
        )
    assert _code(info.value) == "InvalidRequest"
    assert "FULL_OBJECT checksum type cannot be used with the sha256" in str(info.value)

    listed = s3.list_multipart_uploads(Bucket="mp-declared")["Uploads"]
    assert {(u["Key"], u["ChecksumAlgorithm"], u.get("ChecksumType")) for u in listed} == {
        ("k", "SHA256", "COMPOSITE"),
        ("f", "CRC64NVME", "FULL_OBJECT"),
    }
    with pytest.raises(ClientError) as info:
        s3.upload_part(
            Bucket="mp-declared", Key="k", UploadId=up, PartNumber=1, Body=b"a",
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip
    assert _code(info.value) == "InvalidRequest"
    assert "expected checksum Type: sha256, actual checksum Type: crc32" in str(info.value)
    no_sum = s3srv.client(request_checksum_calculation="when_required")
    with pytest.raises(ClientError) as info:
        no_sum.upload_part(Bucket="mp-declared", Key="k", UploadId=up, PartNumber=1, Body=b"a")
    assert "expected checksum Type: sha256, actual checksum Type: null" in str(info.value)
    parts = [os.urandom(5 * MiB), os.urandom(10)]
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket="mp-declared", Key="k", UploadId=up, PartNumber=n, Body=data,
            ChecksumAlgorithm="SHA256",
        )  # fmt: skip
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    lp = s3.list_parts(Bucket="mp-declared", Key="k", UploadId=up)
    assert (lp["ChecksumAlgorithm"], lp["ChecksumType"]) == ("SHA256", "COMPOSITE")
    assert [p["ChecksumSHA256"] for p in lp["Parts"]] == [d["ChecksumSHA256"] for d in done]
    bare = [{"PartNumber": d["PartNumber"], "ETag": d["ETag"]} for d in done]
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket="mp-declared", Key="k", UploadId=up, MultipartUpload={"Parts": bare}
        )
    assert "It was missing for part 1 in the request" in str(info.value)
    res = s3.complete_multipart_upload(
        Bucket="mp-declared", Key="k", UploadId=up, MultipartUpload={"Parts": done}
    )
    inner = b"".join(hashlib.sha256(p).digest() for p in parts)
    composite = base64.b64encode(hashlib.sha256(inner).digest()).decode() + "-2"
    assert (res["ChecksumSHA256"], res["ChecksumType"]) == (composite, "COMPOSITE")
    s3.abort_multipart_upload(Bucket="mp-declared", Key="f", UploadId=full["UploadId"])


def test_copies_get_the_checksum_they_ask_for(s3: Any) -> None:
    """CopyObject with x-amz-checksum-algorithm returns (and stores) that checksum of the
    copied bytes; UploadPartCopy into an upload with a declared algorithm computes it."""
    s3.create_bucket(Bucket="mp-copysum")
    data = os.urandom(70_000)
    s3.put_object(Bucket="mp-copysum", Key="src", Body=data)
    r = s3.copy_object(
        Bucket="mp-copysum", Key="dst", CopySource="mp-copysum/src", ChecksumAlgorithm="CRC32"
    )
    assert r["CopyObjectResult"]["ChecksumCRC32"] == _crc_b64("CRC32", data)
    assert r["CopyObjectResult"]["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket="mp-copysum", Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == _crc_b64("CRC32", data)
    up = s3.create_multipart_upload(Bucket="mp-copysum", Key="mpc", ChecksumAlgorithm="CRC32")[
        "UploadId"
    ]
    part = s3.upload_part_copy(
        Bucket="mp-copysum", Key="mpc", UploadId=up, PartNumber=1, CopySource="mp-copysum/src"
    )["CopyPartResult"]
    assert part["ChecksumCRC32"] == _crc_b64("CRC32", data)
    res = s3.complete_multipart_upload(
        Bucket="mp-copysum",
        Key="mpc",
        UploadId=up,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]}
            ]
        },
    )
    assert res["ChecksumCRC32"].endswith("-1")


def test_complete_checks_its_claims_about_the_whole_object(s3: Any) -> None:
    """The Complete's x-amz-mp-object-size, x-amz-checksum-type and full-object
    x-amz-checksum-<alg> must match what the parts make; a mismatch commits nothing."""
    s3.create_bucket(Bucket="mp-claims")
    parts = [os.urandom(5 * MiB), os.urandom(321)]
    whole = b"".join(parts)
    up = s3.create_multipart_upload(
        Bucket="mp-claims", Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket="mp-claims", Key="k", UploadId=up, PartNumber=n, Body=data,
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    right = _crc_b64("CRC32", whole)
    wrong_claims: list[tuple[dict[str, Any], str]] = [
        ({"MpuObjectSize": len(whole) + 1}, "InvalidRequest"),
        ({"ChecksumType": "COMPOSITE"}, "InvalidRequest"),
        ({"ChecksumCRC32": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}, "BadDigest"),
    ]
    for claim, code in wrong_claims:
        with pytest.raises(ClientError) as info:
            s3.complete_multipart_upload(
                Bucket="mp-claims", Key="k", UploadId=up, MultipartUpload={"Parts": done},
                **claim,
            )  # fmt: skip
        assert _code(info.value) == code, claim
    with pytest.raises(ClientError):
        s3.head_object(Bucket="mp-claims", Key="k")
    res = s3.complete_multipart_upload(
        Bucket="mp-claims", Key="k", UploadId=up, MultipartUpload={"Parts": done},
        ChecksumCRC32=right, ChecksumType="FULL_OBJECT", MpuObjectSize=len(whole),
    )  # fmt: skip
    assert res["ChecksumCRC32"] == right
