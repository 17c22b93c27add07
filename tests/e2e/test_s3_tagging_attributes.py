"""Bucket tagging and GetObjectAttributes against a real ``kvbox serve``.

Layer: tests/e2e. Rules: boto3 (default config and s3v4) and the AWS CLI's ``s3api`` as
users run them; expected values are computed here from the bytes written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server
from ._s3clients import AwsCli, S3Target

MiB = 1 << 20


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3tagattr") as s:
        yield s


@pytest.fixture(scope="module", params=["s3v4", "default"])
def s3(srv: S3Server, request: pytest.FixtureRequest) -> Any:
    if request.param == "s3v4":
        return srv.client()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=srv.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


# --- bucket tagging -------------------------------------------------------------------------


def test_bucket_tagging_put_get_delete(s3: Any, tmp_path: Path, srv: S3Server) -> None:
    name = f"tagged-{s3.meta.config.signature_version or 'default'}".lower().replace("s3v4", "v4")
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_tagging(Bucket=name)
    assert _code(info.value) == "NoSuchTagSet"
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "cost center", "Value": "4 2"}]
    put = s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
    got = s3.get_bucket_tagging(Bucket=name)["TagSet"]
    assert sorted(got, key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])
    # A PUT replaces the whole set.
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "only", "Value": ""}]})
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "only", "Value": ""}]
    for bad in (
        [{"Key": f"k{i}", "Value": "v"} for i in range(51)],
        [{"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}],
        [{"Key": "aws:reserved", "Value": "v"}],
        [{"Key": "x" * 129, "Value": "v"}],
    ):
        with pytest.raises(ClientError) as info:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": bad})
        assert _code(info.value) == "InvalidTag"
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "only", "Value": ""}]
    assert s3.delete_bucket_tagging(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as info:
        s3.get_bucket_tagging(Bucket=name)
    assert _code(info.value) == "NoSuchTagSet"
    with pytest.raises(ClientError) as info:
        s3.get_bucket_tagging(Bucket="no-such-bucket-here")
    assert _code(info.value) == "NoSuchBucket"


def test_bucket_tagging_with_the_aws_cli_and_a_resource_tag_policy(
    srv: S3Server, tmp_path: Path
) -> None:
    cli = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path)
    cli("s3api", "create-bucket", "--bucket", "cli-tagged")
    cli("s3api", "put-bucket-tagging", "--bucket", "cli-tagged",
        "--tagging", "TagSet=[{Key=env,Value=prod}]")  # fmt: skip
    got = cli.json("get-bucket-tagging", "--bucket", "cli-tagged")
    assert got["TagSet"] == [{"Key": "env", "Value": "prod"}]
    # aws:ResourceTag/<k> reads the bucket's tags: a public read only while env=public.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::cli-tagged/*",
                "Condition": {"StringEquals": {"aws:ResourceTag/env": "public"}},
            }
        ],
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    cli("s3api", "put-bucket-policy", "--bucket", "cli-tagged",
        "--policy", f"file://{tmp_path / 'policy.json'}")  # fmt: skip
    (tmp_path / "o").write_bytes(b"hello")
    cli("s3api", "put-object", "--bucket", "cli-tagged", "--key", "o",
        "--body", str(tmp_path / "o"))  # fmt: skip
    import urllib.error
    import urllib.request

    url = f"{srv.endpoint}/cli-tagged/o"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 403
    info.value.close()
    cli("s3api", "put-bucket-tagging", "--bucket", "cli-tagged",
        "--tagging", "TagSet=[{Key=env,Value=public}]")  # fmt: skip
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"hello"
    cli("s3api", "delete-bucket-tagging", "--bucket", "cli-tagged")
    assert cli("s3api", "get-bucket-tagging", "--bucket", "cli-tagged", check=False).returncode


# --- GetObjectAttributes ----------------------------------------------------------------------


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_object_attributes_of_a_single_put(s3: Any) -> None:
    bucket = f"attrs-{'v4' if s3.meta.config.signature_version else 'default'}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(1234)
    put = s3.put_object(Bucket=bucket, Key="one", Body=data, ChecksumAlgorithm="SHA256")
    got = s3.get_object_attributes(
        Bucket=bucket,
        Key="one",
        ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"],
    )
    assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert got["Checksum"] == {"ChecksumSHA256": _sha256_b64(data), "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in got  # not a multipart object
    assert (got["StorageClass"], got["ObjectSize"]) == ("STANDARD", 1234)
    assert got["LastModified"] == s3.head_object(Bucket=bucket, Key="one")["LastModified"]
    only = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == 1234 and "ETag" not in only and "Checksum" not in only


def test_object_attributes_of_a_multipart_object_page_by_page(s3: Any) -> None:
    bucket = f"attrs-mp-{'v4' if s3.meta.config.signature_version else 'default'}"
    s3.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(99)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=data,
            ChecksumAlgorithm="SHA256",
        )  # fmt: skip
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    first = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts", "Checksum"], MaxParts=2
    )
    composite = base64.b64encode(
        hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    ).decode()
    assert first["Checksum"] == {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"}
    op = first["ObjectParts"]
    assert (op["TotalPartsCount"], op["MaxParts"], op["IsTruncated"]) == (3, 2, True)
    assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in op["Parts"]] == [
        (n, len(d), _sha256_b64(d)) for n, d in enumerate(parts[:2], 1)
    ]
    rest = s3.get_object_attributes(
        Bucket=bucket,
        Key="mp",
        ObjectAttributes=["ObjectParts"],
        PartNumberMarker=int(op["NextPartNumberMarker"]),
    )["ObjectParts"]
    assert rest["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 99)]


def test_object_attributes_errors_and_versions(s3: Any) -> None:
    bucket = f"attrs-err-{'v4' if s3.meta.config.signature_version else 'default'}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"three")
    old = s3.get_object_attributes(
        Bucket=bucket, Key="k", VersionId=v1, ObjectAttributes=["ObjectSize"]
    )
    assert (old["ObjectSize"], old["VersionId"]) == (3, v1)
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert _code(info.value) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag"])
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Colour"])
    assert _code(info.value) == "InvalidArgument"


def test_object_attributes_header_must_name_something(srv: S3Server) -> None:
    s3 = srv.client()
    s3.create_bucket(Bucket="attrs-empty")
    s3.put_object(Bucket="attrs-empty", Key="k", Body=b"x")

    def strip(request: Any, **_: Any) -> None:
        del request.headers["x-amz-object-attributes"]  # (setting would add a second)
        request.headers["x-amz-object-attributes"] = ","  # names nothing

    s3.meta.events.register_first("before-sign.s3.GetObjectAttributes", strip)
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket="attrs-empty", Key="k", ObjectAttributes=["ETag"])
    assert _code(info.value) == "InvalidRequest"
    assert "x-amz-object-attributes header" in info.value.response["Error"]["Message"]
