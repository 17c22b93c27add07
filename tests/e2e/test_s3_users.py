"""S3 users and access keys: ``kvbox admin`` on a running server and on a data directory.

Every test drives a real ``kvbox serve`` with boto3; users and keys are made with the real
``kvbox admin`` command, over ``--server`` (SigV4-signed by root) or ``--data`` (with the
server stopped).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.auth  # type: ignore[import-untyped]
import botocore.awsrequest  # type: ignore[import-untyped]
import botocore.credentials  # type: ignore[import-untyped]
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._lab import (
    Lab,
    anon,
    policy,
    refused,
    versioned,
    website,
)
from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server
from ._server import run_kvbox

ROOT_ENV = {"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3users") as s:
        yield s


def admin(srv: S3Server, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_kvbox("admin", "--server", srv.endpoint, *args, env=ROOT_ENV)


def new_key(done: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    access = re.search(r"access key: (\S+)", out)
    secret = re.search(r"secret key: (\S+)", out)
    assert access and secret, out
    return access.group(1), secret.group(1)


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def wait_for_code(call: Any, wanted: str, within: float = 15.0) -> None:
    """Repeat ``call`` until it fails with ``wanted`` (a key cache expires in seconds)."""
    deadline = time.monotonic() + within
    while True:
        try:
            call()
            got = "success"
        except ClientError as exc:
            got = str(exc.response["Error"]["Code"])
        if got == wanted:
            return
        assert time.monotonic() < deadline, f"still {got}, wanted {wanted}"
        time.sleep(0.5)


def test_user_owns_its_buckets_and_nothing_else(srv: S3Server) -> None:
    root = srv.client()
    root.create_bucket(Bucket="root-bucket")
    assert admin(srv, "user", "add", "alice").returncode == 0
    access, secret = new_key(admin(srv, "key", "add", "alice"))
    alice = srv.client(access, secret)

    alice.create_bucket(Bucket="alice-bucket")
    alice.put_object(Bucket="alice-bucket", Key="k", Body=b"hello")
    assert alice.get_object(Bucket="alice-bucket", Key="k")["Body"].read() == b"hello"
    names = [b["Name"] for b in alice.list_buckets()["Buckets"]]
    assert names == ["alice-bucket"]

    calls: list[Callable[[], Any]] = [
        lambda: alice.list_objects_v2(Bucket="root-bucket"),
        lambda: alice.put_object(Bucket="root-bucket", Key="x", Body=b"x"),
        lambda: alice.get_object(Bucket="kv", Key="x"),
        lambda: alice.delete_bucket(Bucket="root-bucket"),
        lambda: alice.copy_object(
            Bucket="alice-bucket", Key="stolen", CopySource={"Bucket": "root-bucket", "Key": "x"}
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        alice.create_bucket(Bucket="root-bucket")
    assert code(exc) == "BucketAlreadyExists"

    # root sees and reaches every bucket
    root_names = {b["Name"] for b in root.list_buckets()["Buckets"]}
    assert {"alice-bucket", "root-bucket", "kv"} <= root_names
    assert root.get_object(Bucket="alice-bucket", Key="k")["Body"].read() == b"hello"

    listed = admin(srv, "key", "list", "alice")
    assert access in listed.stdout.decode() and secret not in listed.stdout.decode()
    assert "alice\tenabled" in admin(srv, "user", "list").stdout.decode()


def test_disabled_key_and_user_stop_working_within_seconds(srv: S3Server) -> None:
    assert admin(srv, "user", "add", "bob").returncode == 0
    access, secret = new_key(admin(srv, "key", "add", "bob"))
    bob = srv.client(access, secret)
    assert bob.list_buckets()["Buckets"] == []

    assert admin(srv, "key", "disable", access).returncode == 0
    wait_for_code(bob.list_buckets, "InvalidAccessKeyId")
    assert admin(srv, "key", "enable", access).returncode == 0
    wait_for_code(bob.list_buckets, "success")
    assert admin(srv, "user", "disable", "bob").returncode == 0
    wait_for_code(bob.list_buckets, "InvalidAccessKeyId")


def test_rotate_gives_a_new_key_and_retires_the_old(srv: S3Server) -> None:
    assert admin(srv, "user", "add", "carol").returncode == 0
    old_access, old_secret = new_key(admin(srv, "key", "add", "carol"))
    carol_old = srv.client(old_access, old_secret)
    carol_old.create_bucket(Bucket="carol-bucket")
    new_access, new_secret = new_key(admin(srv, "key", "rotate", old_access))
    carol_new = srv.client(new_access, new_secret)
    assert [b["Name"] for b in carol_new.list_buckets()["Buckets"]] == ["carol-bucket"]
    wait_for_code(carol_old.list_buckets, "InvalidAccessKeyId")

    # a user that owns buckets cannot be deleted; once they are gone it can
    refused = admin(srv, "user", "delete", "carol")
    assert refused.returncode == 1 and b"owns buckets" in refused.stderr
    carol_new.delete_bucket(Bucket="carol-bucket")
    assert admin(srv, "user", "delete", "carol").returncode == 0
    wait_for_code(carol_new.list_buckets, "InvalidAccessKeyId")


def test_admin_endpoint_is_root_only(srv: S3Server) -> None:
    assert admin(srv, "user", "add", "dave").returncode == 0
    access, secret = new_key(admin(srv, "key", "add", "dave"))
    as_dave = run_kvbox(
        "admin",
        "--server",
        srv.endpoint,
        "user",
        "list",
        env={"KVBOX_ROOT_ACCESS_KEY": access, "KVBOX_ROOT_SECRET_KEY": secret},
    )
    assert as_dave.returncode == 2 and b"403" in as_dave.stderr
    wrong = run_kvbox(
        "admin",
        "--server",
        srv.endpoint,
        "user",
        "list",
        env={"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": "wrong"},
    )
    assert wrong.returncode == 2 and b"SignatureDoesNotMatch" in wrong.stderr


def test_data_dir_admin_refuses_while_served_then_works_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = S3Server(data).start()
    try:
        busy = run_kvbox("admin", "--data", str(data), "user", "add", "erin")
        assert busy.returncode == 2 and b"--server" in busy.stderr
    finally:
        s.close()
    assert run_kvbox("admin", "--data", str(data), "user", "add", "erin").returncode == 0
    access, secret = new_key(run_kvbox("admin", "--data", str(data), "key", "add", "erin"))
    s = S3Server(data).start()
    try:
        erin = s.client(access, secret)
        erin.create_bucket(Bucket="erin-bucket")
        assert [b["Name"] for b in erin.list_buckets()["Buckets"]] == ["erin-bucket"]
    finally:
        s.close()


def test_listings_name_the_bucket_owner(srv: S3Server) -> None:
    """Objects belong to their bucket's owner: every listing's Owner says so."""
    assert admin(srv, "user", "add", "olga").returncode == 0
    olga = srv.client(*new_key(admin(srv, "key", "add", "olga")))
    olga.create_bucket(Bucket="olga-things")
    olga.put_object(Bucket="olga-things", Key="a", Body=b"1")
    up = olga.create_multipart_upload(Bucket="olga-things", Key="big")["UploadId"]
    v2 = olga.list_objects_v2(Bucket="olga-things", FetchOwner=True)["Contents"][0]["Owner"]
    v1 = olga.list_objects(Bucket="olga-things")["Contents"][0]["Owner"]
    vers = olga.list_object_versions(Bucket="olga-things")["Versions"][0]["Owner"]
    ups = olga.list_multipart_uploads(Bucket="olga-things")["Uploads"][0]
    parts = olga.list_parts(Bucket="olga-things", Key="big", UploadId=up)
    for owner in (v2, v1, vers, ups["Owner"], ups["Initiator"], parts["Owner"]):
        assert owner["ID"] == "olga"
    olga.abort_multipart_upload(Bucket="olga-things", Key="big", UploadId=up)


# --- a second user against root's buckets --------------------------------------------------


def test_second_user_is_denied_every_operation(lab: Lab, lab_s3: Any, mallory: Any) -> None:
    b = versioned(lab_s3, "rv-root-owned")
    vid = lab_s3.put_object(Bucket=b, Key="secret", Body=b"s3cr3t")["VersionId"]
    up = lab_s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    mine = "rv-mallory-own"
    mallory.create_bucket(Bucket=mine)
    my_up = mallory.create_multipart_upload(Bucket=mine, Key="m")["UploadId"]
    tagging = {"TagSet": [{"Key": "a", "Value": "b"}]}
    open_policy = policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{b}/*"}
    )
    pab = {
        "BlockPublicAcls": False,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    }
    ops: dict[str, Callable[[], object]] = {
        "GetObject": lambda: mallory.get_object(Bucket=b, Key="secret"),
        "GetObject?versionId": lambda: mallory.get_object(Bucket=b, Key="secret", VersionId=vid),
        "PutObject": lambda: mallory.put_object(Bucket=b, Key="x", Body=b"x"),
        "DeleteObject": lambda: mallory.delete_object(Bucket=b, Key="secret"),
        "DeleteObject?versionId": lambda: mallory.delete_object(
            Bucket=b, Key="secret", VersionId=vid
        ),
        "ListObjectsV2": lambda: mallory.list_objects_v2(Bucket=b),
        "ListObjectVersions": lambda: mallory.list_object_versions(Bucket=b),
        "ListMultipartUploads": lambda: mallory.list_multipart_uploads(Bucket=b),
        "UploadPart": lambda: mallory.upload_part(
            Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=b"z"
        ),
        "ListParts": lambda: mallory.list_parts(Bucket=b, Key="mp", UploadId=up),
        "CompleteMultipartUpload": lambda: mallory.complete_multipart_upload(
            Bucket=b, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1}]}
        ),
        "AbortMultipartUpload": lambda: mallory.abort_multipart_upload(
            Bucket=b, Key="mp", UploadId=up
        ),
        "CreateMultipartUpload": lambda: mallory.create_multipart_upload(Bucket=b, Key="m2"),
        "CopyObject from": lambda: mallory.copy_object(
            Bucket=mine, Key="stolen", CopySource={"Bucket": b, "Key": "secret"}
        ),
        "CopyObject from version": lambda: mallory.copy_object(
            Bucket=mine, Key="stolen", CopySource={"Bucket": b, "Key": "secret", "VersionId": vid}
        ),
        "UploadPartCopy from": lambda: mallory.upload_part_copy(
            Bucket=mine,
            Key="m",
            UploadId=my_up,
            PartNumber=1,
            CopySource={"Bucket": b, "Key": "secret"},
        ),
        "GetObjectTagging": lambda: mallory.get_object_tagging(Bucket=b, Key="secret"),
        "PutObjectTagging": lambda: mallory.put_object_tagging(
            Bucket=b, Key="secret", Tagging=tagging
        ),
        "PutObjectTagging?versionId": lambda: mallory.put_object_tagging(
            Bucket=b, Key="secret", VersionId=vid, Tagging=tagging
        ),
        "DeleteObjectTagging": lambda: mallory.delete_object_tagging(Bucket=b, Key="secret"),
        "GetObjectAcl": lambda: mallory.get_object_acl(Bucket=b, Key="secret"),
        "PutObjectAcl": lambda: mallory.put_object_acl(Bucket=b, Key="secret", ACL="public-read"),
        "GetBucketAcl": lambda: mallory.get_bucket_acl(Bucket=b),
        "PutBucketAcl": lambda: mallory.put_bucket_acl(Bucket=b, ACL="public-read-write"),
        "PutBucketPolicy": lambda: mallory.put_bucket_policy(Bucket=b, Policy=open_policy),
        "GetBucketPolicy": lambda: mallory.get_bucket_policy(Bucket=b),
        "DeleteBucketPolicy": lambda: mallory.delete_bucket_policy(Bucket=b),
        "GetBucketPolicyStatus": lambda: mallory.get_bucket_policy_status(Bucket=b),
        "PutPublicAccessBlock": lambda: mallory.put_public_access_block(
            Bucket=b, PublicAccessBlockConfiguration=pab
        ),
        "GetPublicAccessBlock": lambda: mallory.get_public_access_block(Bucket=b),
        "DeletePublicAccessBlock": lambda: mallory.delete_public_access_block(Bucket=b),
        "PutBucketVersioning": lambda: mallory.put_bucket_versioning(
            Bucket=b, VersioningConfiguration={"Status": "Suspended"}
        ),
        "GetBucketVersioning": lambda: mallory.get_bucket_versioning(Bucket=b),
        "PutBucketWebsite": lambda: website(mallory, b),
        "GetBucketWebsite": lambda: mallory.get_bucket_website(Bucket=b),
        "DeleteBucketWebsite": lambda: mallory.delete_bucket_website(Bucket=b),
        "PutBucketCors": lambda: mallory.put_bucket_cors(
            Bucket=b,
            CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]},
        ),
        "GetBucketCors": lambda: mallory.get_bucket_cors(Bucket=b),
        "DeleteBucketCors": lambda: mallory.delete_bucket_cors(Bucket=b),
        "GetBucketLocation": lambda: mallory.get_bucket_location(Bucket=b),
        "DeleteBucket": lambda: mallory.delete_bucket(Bucket=b),
        "GetBucketTagging": lambda: mallory.get_bucket_tagging(Bucket=b),
    }
    allowed = {name: got for name, fn in ops.items() if (got := refused(fn)) != "AccessDenied"}
    assert allowed == {}
    # DeleteObjects is decided key by key, as on AWS: 200 with an AccessDenied per key
    out = mallory.delete_objects(
        Bucket=b, Delete={"Objects": [{"Key": "secret", "VersionId": vid}]}
    )
    assert [e["Code"] for e in out.get("Errors", [])] == ["AccessDenied"]
    assert out.get("Deleted", []) == []
    for name, fn in (
        ("HeadObject", lambda: mallory.head_object(Bucket=b, Key="secret")),
        ("HeadBucket", lambda: mallory.head_bucket(Bucket=b)),
    ):
        assert refused(fn) == "403", name
    # nothing changed underneath
    assert lab_s3.get_object(Bucket=b, Key="secret")["Body"].read() == b"s3cr3t"
    assert lab_s3.list_parts(Bucket=b, Key="mp", UploadId=up).get("Parts", []) == []
    assert refused(lambda: lab_s3.get_bucket_policy(Bucket=b)) == "NoSuchBucketPolicy"


def test_admin_and_explain_are_root_only(lab: Lab, mallory: Any) -> None:
    creds = mallory._request_signer._credentials
    for path, body in (
        ("/_kvbox/admin", {"noun": "user", "verb": "add", "target": "eve"}),
        ("/_kvbox/policy/explain", {"action": "s3:GetObject", "resource": "arn:aws:s3:::x/y"}),
    ):
        raw = json.dumps(body).encode()
        assert anon(lab.srv.http_port, "POST", path, body=raw).status == 403, path
        req = botocore.awsrequest.AWSRequest(
            method="POST",
            url=f"{lab.srv.endpoint}{path}",
            data=raw,
            headers={"x-amz-content-sha256": hashlib.sha256(raw).hexdigest()},
        )
        botocore.auth.S3SigV4Auth(creds, "s3", REGION).add_auth(req)
        got = anon(lab.srv.http_port, "POST", path, dict(req.prepare().headers), raw)
        assert got.status == 403 and got.code == "AccessDenied", (path, got)


def test_delete_objects_with_an_object_level_grant(lab: Lab, lab_s3: Any, mallory: Any) -> None:
    b = "rv-delete-objects"
    lab_s3.create_bucket(Bucket=b)
    for k in ("pub/a", "priv/b"):
        lab_s3.put_object(Bucket=b, Key=k, Body=b"x")
    lab_s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": "mallory"},
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{b}/*",
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": "mallory"},
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{b}/priv/*",
            },
        ),
    )
    got = mallory.delete_objects(
        Bucket=b, Delete={"Objects": [{"Key": "pub/a"}, {"Key": "priv/b"}]}
    )
    assert [d["Key"] for d in got.get("Deleted", [])] == ["pub/a"]
    assert [(e["Key"], e["Code"]) for e in got.get("Errors", [])] == [("priv/b", "AccessDenied")]
    assert lab_s3.get_object(Bucket=b, Key="priv/b")["Body"].read() == b"x"
