"""S3 buckets end to end: create, head, list (pages), delete, names, expected owners, the
GW-KV bucket, request ids.

Layer: tests/e2e. Rules: one ``kvbox serve`` for the module, driven by boto3; each test
makes its own bucket names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore import UNSIGNED  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import code
from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3buckets") as srv:
        yield srv


@pytest.fixture(scope="module")
def s3(s3srv: S3Server) -> Any:
    return s3srv.client()


# --- buckets -------------------------------------------------------------------------------


def test_bucket_lifecycle(s3: Any) -> None:
    s3.create_bucket(Bucket="life-cycle")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "life-cycle" in names and "kv" in names
    assert names == sorted(names)
    s3.head_bucket(Bucket="life-cycle")
    loc = s3.get_bucket_location(Bucket="life-cycle")
    assert loc["LocationConstraint"] is None
    # us-east-1 (kvbox's default region) answers a re-create by the owner 200, as AWS.
    s3.create_bucket(Bucket="life-cycle")
    s3.put_object(Bucket="life-cycle", Key="k", Body=b"x")
    s3.create_bucket(Bucket="life-cycle")  # and keeps what the bucket holds
    assert s3.get_object(Bucket="life-cycle", Key="k")["Body"].read() == b"x"
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket="life-cycle")
    assert code(info.value) == "BucketNotEmpty"
    s3.delete_object(Bucket="life-cycle", Key="k")
    s3.delete_bucket(Bucket="life-cycle")
    with pytest.raises(ClientError) as info:
        s3.head_bucket(Bucket="life-cycle")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket="life-cycle")
    assert code(info.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as info:
        s3.list_objects_v2(Bucket="life-cycle")
    assert code(info.value) == "NoSuchBucket"


def test_a_deleted_bucket_is_no_such_bucket_for_keys_read_before(s3: Any) -> None:
    """A key read while its bucket existed (and so remembered as absent, or as deleted)
    answers NoSuchBucket once the bucket is gone, and nothing old once it is back."""
    s3.create_bucket(Bucket="short-lived")
    s3.put_object(Bucket="short-lived", Key="was", Body=b"x")
    s3.delete_object(Bucket="short-lived", Key="was")
    for key in ("never", "was"):
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket="short-lived", Key=key)
        assert code(info.value) == "NoSuchKey"
    s3.delete_bucket(Bucket="short-lived")
    for key in ("never", "was"):
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket="short-lived", Key=key)
        assert code(info.value) == "NoSuchBucket"
        with pytest.raises(ClientError) as info:
            s3.head_object(Bucket="short-lived", Key=key)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.create_bucket(Bucket="short-lived")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="short-lived", Key="was")
    assert code(info.value) == "NoSuchKey"
    s3.delete_bucket(Bucket="short-lived")


def test_a_name_created_again_by_another_owner_keeps_nothing_of_the_old_bucket(
    s3srv: S3Server,
) -> None:
    """Every setting and cache of a deleted bucket goes with it: the next owner of the
    name gets a bucket with no policy, tags, CORS, versioning or keys of the old one,
    and the old owner no say in it -- whatever either of them had looked up before."""
    alice = s3srv.client(*s3srv.new_user("alice-old"))
    bob = s3srv.client(*s3srv.new_user("bob-new"))
    anon = boto3.client(
        "s3",
        endpoint_url=s3srv.endpoint,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    name = "handed-over"
    alice.create_bucket(Bucket=name)
    alice.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    alice.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    alice.put_bucket_cors(
        Bucket=name,
        CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]},
    )
    public = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
            }
        ],
    }
    alice.put_bucket_policy(Bucket=name, Policy=json.dumps(public))
    put = alice.put_object(Bucket=name, Key="shared", Body=b"alice's")
    assert anon.get_object(Bucket=name, Key="shared")["Body"].read() == b"alice's"
    for key in ("shared", "missing"):  # looked up, so cached (the missing one as absent)
        try:
            anon.get_object(Bucket=name, Key=key)
        except ClientError as exc:
            assert code(exc) == "NoSuchKey"
    alice.delete_object(Bucket=name, Key="shared", VersionId=put["VersionId"])
    alice.delete_bucket(Bucket=name)

    bob.create_bucket(Bucket=name)
    assert bob.get_bucket_acl(Bucket=name)["Owner"]["ID"] == "bob-new"
    assert "Status" not in bob.get_bucket_versioning(Bucket=name)
    for call, missing in (
        (bob.get_bucket_policy, "NoSuchBucketPolicy"),
        (bob.get_bucket_tagging, "NoSuchTagSet"),
        (bob.get_bucket_cors, "NoSuchCORSConfiguration"),
    ):
        with pytest.raises(ClientError) as info:
            call(Bucket=name)
        assert code(info.value) == missing
    assert bob.list_objects_v2(Bucket=name)["KeyCount"] == 0
    for key in ("shared", "missing"):
        with pytest.raises(ClientError) as info:
            bob.get_object(Bucket=name, Key=key)
        assert code(info.value) == "NoSuchKey"
        with pytest.raises(ClientError) as info:
            anon.get_object(Bucket=name, Key=key)
        assert code(info.value) == "AccessDenied"
    for call in (alice.list_objects_v2, alice.get_bucket_acl):
        with pytest.raises(ClientError) as info:
            call(Bucket=name)
        assert code(info.value) == "AccessDenied"
    bob.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "name", ["ab", "UpperCase", "a..b", "192.168.1.1", "-dash", "xn--punycode", "a" * 64]
)
def test_bad_bucket_names(s3srv: S3Server, name: str) -> None:
    s3 = s3srv.client(parameter_validation=False)
    with pytest.raises(ClientError) as info:
        s3.create_bucket(Bucket=name)
    assert code(info.value) == "InvalidBucketName"


def test_kv_bucket_cannot_be_deleted(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket="kv")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    s3.head_bucket(Bucket="kv")


def test_request_ids_differ(s3: Any) -> None:
    a = s3.list_buckets()["ResponseMetadata"]["RequestId"]
    b = s3.list_buckets()["ResponseMetadata"]["RequestId"]
    assert re.fullmatch(r"[0-9A-F]{16}", a) and a != b


def test_server_log_has_no_secret(s3srv: S3Server, s3: Any, tmp_path: Path) -> None:
    s3.list_buckets()
    assert ACCESS_KEY in s3srv.server.log_text()  # announced at start, as designed
    assert SECRET_KEY not in s3srv.server.log_text()


def test_list_buckets_pages_filters_and_regions(s3srv: S3Server, s3: Any) -> None:
    names = [f"page-{i:02d}" for i in range(7)]
    for name in names:
        s3.create_bucket(Bucket=name)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"MaxBuckets": 3, "Prefix": "page-"}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_buckets(**kwargs)
        pages += 1
        assert page["Prefix"] == "page-"
        assert all(b["BucketRegion"] == "us-east-1" for b in page["Buckets"])
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert (seen, pages) == (names, 3)
    # boto3's paginator drives the same parameters.
    paginator = s3.get_paginator("list_buckets")
    got = [
        b["Name"]
        for p in paginator.paginate(Prefix="page-", PaginationConfig={"PageSize": 2})
        for b in p["Buckets"]
    ]
    assert got == names
    assert s3.list_buckets(BucketRegion="eu-west-1")["Buckets"] == []
    assert {b["Name"] for b in s3.list_buckets(BucketRegion="us-east-1")["Buckets"]} >= set(names)
    for bad in ("0", "10001", "x"):
        with pytest.raises(ClientError) as info:
            s3srv.client(parameter_validation=False).list_buckets(MaxBuckets=bad)
        assert code(info.value) == "InvalidArgument"
    with pytest.raises(ClientError) as info:
        s3.list_buckets(ContinuationToken="!!!")
    assert code(info.value) == "InvalidArgument"
    for name in names:
        s3.delete_bucket(Bucket=name)


def test_expected_bucket_owner_is_checked(s3: Any) -> None:
    s3.create_bucket(Bucket="owned")
    s3.put_object(Bucket="owned", Key="k", Body=b"x")
    owner = s3.get_bucket_acl(Bucket="owned")["Owner"]["ID"]
    calls: list[Callable[[str], Any]] = [
        lambda who: s3.head_bucket(Bucket="owned", ExpectedBucketOwner=who),
        lambda who: s3.list_objects_v2(Bucket="owned", ExpectedBucketOwner=who),
        lambda who: s3.get_object(Bucket="owned", Key="k", ExpectedBucketOwner=who),
        lambda who: s3.put_object(Bucket="owned", Key="k", Body=b"y", ExpectedBucketOwner=who),
        lambda who: s3.get_bucket_versioning(Bucket="owned", ExpectedBucketOwner=who),
        lambda who: s3.copy_object(
            Bucket="owned", Key="c", CopySource="owned/k", ExpectedSourceBucketOwner=who
        ),
    ]
    for call in calls:
        call(owner)
        with pytest.raises(ClientError) as info:
            call("111122223333")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert code(info.value) in ("AccessDenied", "403")  # HEAD has no body
    assert s3.get_object(Bucket="owned", Key="k")["Body"].read() == b"y"
