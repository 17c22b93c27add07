"""The S3 lab, step by step, as a student runs it: boto3 or the AWS CLI as the owner,
``curl`` as the world.

Layer: tests/e2e. Rules: each story gets its own server (they share nothing and are the
slowest thing here only because the CLI starts a Python per command); the images are
real PNGs built in ``_png``; every answer is checked byte for byte and header by header.
The story: a private bucket and an image nobody can fetch; a public-read bucket policy
and the image served with its type, length, ETag and date, with ranges and
revalidation working; versioning turned on and a second image uploaded; both versions
listed and the first still readable by id; a delete that only adds a delete marker, and
the newest image back once the marker is deleted. The public policy grants
``s3:GetObject`` on the objects and ``s3:ListBucket`` on the bucket: without the latter
AWS answers a missing (or deleted) key with 403, not 404 (GetObject, "Permissions").
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._curl import Reply, curl
from ._png import BLUE_PNG, PNG_SIGNATURE, RED_PNG, png_size
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server
from ._s3clients import AwsCli, S3Target


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[S3Server]:
    s = S3Server(tmp_path / "data").start()
    yield s
    print(f"--- server log\n{s.server.log_text()[-20000:]}")
    s.close()


# --- helpers -------------------------------------------------------------------------------


def public_read_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                },
                {
                    "Sid": "PublicList",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{bucket}",
                },
            ],
        }
    )


def etag_of(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def assert_serves(reply: Reply, image: bytes) -> None:
    """A 200 carrying exactly ``image`` as a PNG, with the headers a browser uses."""
    assert reply.status == 200, reply
    assert reply.body == image
    assert png_size(reply.body) == png_size(image)
    assert reply.headers["content-type"] == "image/png"
    assert reply.headers["content-length"] == str(len(image))
    assert reply.headers["etag"] == etag_of(image)
    modified = email.utils.parsedate_to_datetime(reply.headers["last-modified"])
    age = dt.datetime.now(dt.UTC) - modified
    assert dt.timedelta(seconds=-2) < age < dt.timedelta(minutes=5), reply.headers


def assert_denied(reply: Reply) -> None:
    assert reply.status == 403 and reply.code == "AccessDenied", reply


def assert_deleted(reply: Reply) -> None:
    assert reply.status == 404 and reply.code == "NoSuchKey", reply
    assert reply.headers.get("x-amz-delete-marker") == "true", reply.headers


def assert_range_and_revalidation(image_url: str, image: bytes) -> None:
    part = curl(image_url, "-r", "0-7")
    assert part.status == 206, part
    assert part.body == PNG_SIGNATURE
    assert part.headers["content-range"] == f"bytes 0-7/{len(image)}"
    assert part.headers["content-length"] == "8"
    tail = curl(image_url, "-H", "Range: bytes=-12")
    assert tail.status == 206 and tail.body == image[-12:], tail  # ends with IEND + CRC
    fresh = curl(image_url, "-H", f"If-None-Match: {etag_of(image)}")
    assert fresh.status == 304, fresh
    assert fresh.body == b""
    assert fresh.headers["etag"] == etag_of(image)
    stale = curl(image_url, "-H", 'If-None-Match: "0123456789abcdef0123456789abcdef"')
    assert stale.status == 200 and stale.body == image


# --- the lab with boto3 ---------------------------------------------------------------------


def test_the_lab_with_boto3(srv: S3Server) -> None:
    s3 = srv.client()
    bucket = "lab-images"
    image_url = f"{srv.endpoint}/{bucket}/cat.png"

    # 1. a private bucket: the image is there, but not for the world
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="cat.png", Body=RED_PNG, ContentType="image/png")
    assert_denied(curl(image_url))

    # 2. a public-read policy: now anyone can fetch it, as a browser would
    s3.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    first = curl(image_url)
    assert_serves(first, RED_PNG)
    assert_range_and_revalidation(image_url, RED_PNG)
    assert_denied(curl(image_url, "-X", "PUT", "--data-binary", "defaced"))

    # 3. versioning on, a second image under the same name: the world sees the new one
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    second_vid = s3.put_object(
        Bucket=bucket, Key="cat.png", Body=BLUE_PNG, ContentType="image/png"
    )["VersionId"]
    assert second_vid and second_vid != "null"
    second = curl(image_url)
    assert_serves(second, BLUE_PNG)
    assert second.headers["x-amz-version-id"] == second_vid
    assert second.headers["etag"] != first.headers["etag"]

    # 4. both versions listed; the first (written before versioning) is the null version
    versions = s3.list_object_versions(Bucket=bucket)
    assert versions.get("DeleteMarkers", []) == []
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in versions["Versions"]] == [
        ("cat.png", second_vid, True, len(BLUE_PNG)),
        ("cat.png", "null", False, len(RED_PNG)),
    ]
    old = s3.get_object(Bucket=bucket, Key="cat.png", VersionId="null")
    assert old["Body"].read() == RED_PNG and old["ContentType"] == "image/png"
    # an old version is s3:GetObjectVersion, which the public policy does not grant
    assert_denied(curl(image_url + "?versionId=null"))

    # 5. delete: only a delete marker, and the world gets 404
    gone = s3.delete_object(Bucket=bucket, Key="cat.png")
    assert gone["DeleteMarker"] is True
    marker = gone["VersionId"]
    assert_deleted(curl(image_url))
    listed = s3.list_object_versions(Bucket=bucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]
    assert len(listed["Versions"]) == 2

    # 6. delete the marker: the newest image is served again
    s3.delete_object(Bucket=bucket, Key="cat.png", VersionId=marker)
    again = curl(image_url)
    assert_serves(again, BLUE_PNG)
    assert again.headers["x-amz-version-id"] == second_vid


# --- the lab with the AWS CLI ------------------------------------------------------------------


def test_the_lab_with_the_aws_cli(srv: S3Server, tmp_path: Path) -> None:
    aws = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    bucket = "lab-cli"
    image_url = f"{srv.endpoint}/{bucket}/photos/dog.png"
    red = tmp_path / "red.png"
    red.write_bytes(RED_PNG)
    blue = tmp_path / "blue.png"
    blue.write_bytes(BLUE_PNG)

    aws("s3", "mb", f"s3://{bucket}")
    aws("s3", "cp", str(red), f"s3://{bucket}/photos/dog.png", "--content-type", "image/png")
    assert_denied(curl(image_url))

    policy = tmp_path / "policy.json"
    policy.write_text(public_read_policy(bucket))
    aws("s3api", "put-bucket-policy", "--bucket", bucket, "--policy", f"file://{policy}")
    stored = aws.json("get-bucket-policy", "--bucket", bucket)
    assert json.loads(stored["Policy"]) == json.loads(policy.read_text())
    assert aws.json("get-bucket-policy-status", "--bucket", bucket) == {
        "PolicyStatus": {"IsPublic": True}
    }
    assert_serves(curl(image_url), RED_PNG)
    assert_range_and_revalidation(image_url, RED_PNG)

    aws(
        "s3api", "put-bucket-versioning", "--bucket", bucket,
        "--versioning-configuration", "Status=Enabled",
    )  # fmt: skip
    aws("s3", "cp", str(blue), f"s3://{bucket}/photos/dog.png", "--content-type", "image/png")
    assert_serves(curl(image_url), BLUE_PNG)

    versions = aws.json("list-object-versions", "--bucket", bucket, "--prefix", "photos/")
    assert [(v["VersionId"] == "null", v["IsLatest"], v["Size"]) for v in versions["Versions"]] == [
        (False, True, len(BLUE_PNG)),
        (True, False, len(RED_PNG)),
    ]
    out = tmp_path / "first.png"
    aws(
        "s3api", "get-object", "--bucket", bucket, "--key", "photos/dog.png",
        "--version-id", "null", str(out),
    )  # fmt: skip
    assert out.read_bytes() == RED_PNG

    aws("s3", "rm", f"s3://{bucket}/photos/dog.png")
    assert_deleted(curl(image_url))
    markers = aws.json("list-object-versions", "--bucket", bucket)["DeleteMarkers"]
    assert len(markers) == 1 and markers[0]["IsLatest"] is True
    aws(
        "s3api", "delete-object", "--bucket", bucket, "--key", "photos/dog.png",
        "--version-id", markers[0]["VersionId"],
    )  # fmt: skip
    assert_serves(curl(image_url), BLUE_PNG)


def test_the_images_are_real_pngs() -> None:
    """The lab's fixtures themselves: valid PNGs that differ in every way a test checks."""
    assert png_size(RED_PNG) == (16, 16) and png_size(BLUE_PNG) == (24, 12)
    assert RED_PNG != BLUE_PNG and len(RED_PNG) != len(BLUE_PNG)
    assert etag_of(RED_PNG) != etag_of(BLUE_PNG)
    assert RED_PNG.endswith(b"IEND\xaeB`\x82") and BLUE_PNG.endswith(b"IEND\xaeB`\x82")
