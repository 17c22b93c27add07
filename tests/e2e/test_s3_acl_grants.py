"""ACL grants and Object Ownership on a real ``kvbox serve``.

Layer: tests/e2e. Rules: one server for the module; root, and two kvbox users made with
``kvbox admin --server``: alice (who owns the buckets the ownership tests use, so no
root privilege hides a refusal) and bob. Clients: boto3 with its default configuration
and with ``signature_version='s3v4'``, the AWS CLI (``s3api``), s3cmd and curl. Expected
answers are AWS's: the API reference for Put/GetBucketAcl, Put/GetObjectAcl,
CreateBucket (``x-amz-object-ownership``, ``x-amz-grant-*``), Put/Get/
DeleteBucketOwnershipControls; the user guide's "Access control list (ACL) overview"
(grantees, the permission-to-action mapping), "Controlling ownership of objects and
disabling ACLs" and its troubleshooting page (AccessControlListNotSupported,
InvalidBucketAclWithObjectOwnership).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import code, curl, status
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server
from ._s3clients import AwsCli, S3Cmd, S3Target

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3grants") as s:
        yield s


@pytest.fixture(scope="module")
def keys(srv: S3Server) -> dict[str, tuple[str, str]]:
    return {"alice": srv.new_user("alice"), "bob": srv.new_user("bob")}


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


@pytest.fixture(scope="module")
def alice(srv: S3Server, keys: dict[str, tuple[str, str]]) -> Any:
    return srv.client(*keys["alice"])


@pytest.fixture(scope="module")
def bob(srv: S3Server, keys: dict[str, tuple[str, str]]) -> Any:
    return srv.default_client(*keys["bob"])


def refused(call: Any, expected_code: str, expected_status: int) -> None:
    with pytest.raises(ClientError) as info:
        call()
    assert (code(info.value), status(info.value)) == (expected_code, expected_status), (
        info.value.response
    )


def grant_set(acl: dict[str, Any]) -> set[tuple[str, str]]:
    out = set()
    for g in acl["Grants"]:
        grantee = g["Grantee"]
        out.add((grantee.get("ID") or grantee.get("URI"), g["Permission"]))
    return out


def ownership(client: Any, bucket: str) -> str:
    rules = client.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert len(rules) == 1, rules
    return str(rules[0]["ObjectOwnership"])


# --- Object Ownership: the default, and the errors ---------------------------------------


def test_a_new_bucket_has_acls_disabled(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="own-default")
    assert ownership(s3, "own-default") == "BucketOwnerEnforced"
    # setting an ACL is refused; saying "bucket owner full control" is accepted
    refused(
        lambda: s3.put_object(Bucket="own-default", Key="k", Body=b"x", ACL="public-read"),
        "AccessControlListNotSupported",
        400,
    )
    refused(
        lambda: s3.put_bucket_acl(Bucket="own-default", ACL="public-read"),
        "AccessControlListNotSupported",
        400,
    )
    s3.put_object(Bucket="own-default", Key="k", Body=b"x", ACL="bucket-owner-full-control")
    s3.put_object(Bucket="own-default", Key="k2", Body=b"x")
    s3.put_bucket_acl(Bucket="own-default", ACL="private")
    # reads show the bucket owner's full control
    assert grant_set(s3.get_bucket_acl(Bucket="own-default")) == {("root", "FULL_CONTROL")}
    acl = s3.get_object_acl(Bucket="own-default", Key="k")
    assert grant_set(acl) == {("root", "FULL_CONTROL")} and acl["Owner"]["ID"] == "root"
    # nothing public got through: the object is not readable anonymously
    assert curl(f"{srv.endpoint}/own-default/k").status == 403
    # and a public ACL on a new bucket cannot be asked for at all
    refused(
        lambda: s3.create_bucket(Bucket="own-public", ACL="public-read"),
        "InvalidBucketAclWithObjectOwnership",
        400,
    )
    refused(lambda: s3.head_bucket(Bucket="own-public"), "404", 404)


def test_ownership_controls_put_get_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="own-cycle", ObjectOwnership="ObjectWriter")
    assert ownership(s3, "own-cycle") == "ObjectWriter"
    s3.put_bucket_acl(Bucket="own-cycle", ACL="public-read")
    # ACLs cannot be disabled while the bucket ACL grants anyone but its owner
    refused(
        lambda: s3.put_bucket_ownership_controls(
            Bucket="own-cycle",
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        ),
        "InvalidBucketAclWithObjectOwnership",
        400,
    )
    s3.put_bucket_acl(Bucket="own-cycle", ACL="private")
    for value in ("BucketOwnerPreferred", "BucketOwnerEnforced", "ObjectWriter"):
        s3.put_bucket_ownership_controls(
            Bucket="own-cycle", OwnershipControls={"Rules": [{"ObjectOwnership": value}]}
        )
        assert ownership(s3, "own-cycle") == value
    s3.delete_bucket_ownership_controls(Bucket="own-cycle")
    refused(
        lambda: s3.get_bucket_ownership_controls(Bucket="own-cycle"),
        "OwnershipControlsNotFoundError",
        404,
    )
    # without controls, ACLs are on (ObjectWriter), as for a bucket from before 2023
    s3.put_bucket_acl(Bucket="own-cycle", ACL="public-read")
    refused(
        lambda: s3.create_bucket(Bucket="own-bad", ObjectOwnership="Everyone"),
        "InvalidArgument",
        400,
    )
    refused(lambda: s3.get_bucket_ownership_controls(Bucket="own-none"), "NoSuchBucket", 404)


def test_ownership_controls_bodies_are_validated(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="own-xml")
    cli_dir = srv.server.data_dir.parent / "cli-own-xml"
    aws = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), cli_dir)
    bad = aws(
        "s3api",
        "put-bucket-ownership-controls",
        "--bucket",
        "own-xml",
        "--ownership-controls",
        json.dumps(
            {"Rules": [{"ObjectOwnership": "ObjectWriter"}, {"ObjectOwnership": "ObjectWriter"}]}
        ),
        check=False,
    )
    assert bad.returncode != 0 and "MalformedXML" in bad.stderr, bad.stderr
    done = aws(
        "s3api",
        "put-bucket-ownership-controls",
        "--bucket",
        "own-xml",
        "--ownership-controls",
        "Rules=[{ObjectOwnership=BucketOwnerPreferred}]",
    )
    assert done.returncode == 0
    got = aws.json("get-bucket-ownership-controls", "--bucket", "own-xml")
    assert got["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerPreferred"}]


# --- grants --------------------------------------------------------------------------------


def test_grant_headers_let_named_users_in(s3: Any, alice: Any, bob: Any) -> None:
    alice.create_bucket(Bucket="gr-headers", ObjectOwnership="ObjectWriter")
    alice.put_object(Bucket="gr-headers", Key="k", Body=b"alice's")
    refused(lambda: bob.list_objects_v2(Bucket="gr-headers"), "AccessDenied", 403)
    alice.put_bucket_acl(Bucket="gr-headers", GrantRead='id="bob"', GrantFullControl='id="alice"')
    assert grant_set(alice.get_bucket_acl(Bucket="gr-headers")) == {
        ("alice", "FULL_CONTROL"),
        ("bob", "READ"),
    }
    assert [o["Key"] for o in bob.list_objects_v2(Bucket="gr-headers")["Contents"]] == ["k"]
    # READ on the bucket is listing, not reading objects nor writing
    refused(lambda: bob.get_object(Bucket="gr-headers", Key="k"), "AccessDenied", 403)
    refused(lambda: bob.put_object(Bucket="gr-headers", Key="b", Body=b"b"), "AccessDenied", 403)
    refused(lambda: bob.get_bucket_acl(Bucket="gr-headers"), "AccessDenied", 403)
    # READ_ACP / WRITE on the bucket
    alice.put_bucket_acl(
        Bucket="gr-headers",
        GrantFullControl='id="alice"',
        GrantReadACP='id="bob"',
        GrantWrite='id="bob"',
    )
    assert ("bob", "READ_ACP") in grant_set(bob.get_bucket_acl(Bucket="gr-headers"))
    bob.put_object(Bucket="gr-headers", Key="from-bob", Body=b"bob's")
    refused(
        lambda: bob.put_bucket_acl(Bucket="gr-headers", GrantRead='id="bob"'),
        "AccessDenied",
        403,
    )
    # an object grant: bob may read alice's object once its ACL says so
    alice.put_object_acl(
        Bucket="gr-headers", Key="k", GrantRead='id="bob"', GrantFullControl='id="alice"'
    )
    assert bob.get_object(Bucket="gr-headers", Key="k")["Body"].read() == b"alice's"
    assert grant_set(alice.get_object_acl(Bucket="gr-headers", Key="k")) == {
        ("alice", "FULL_CONTROL"),
        ("bob", "READ"),
    }


def test_grant_header_errors(s3: Any) -> None:
    s3.create_bucket(Bucket="gr-errors", ObjectOwnership="ObjectWriter")
    refused(
        lambda: s3.put_bucket_acl(Bucket="gr-errors", GrantRead='id="nobody-like-this"'),
        "InvalidArgument",
        400,
    )
    refused(
        lambda: s3.put_bucket_acl(Bucket="gr-errors", GrantRead='emailAddress="a@example.com"'),
        "UnresolvableGrantByEmailAddress",
        400,
    )
    refused(
        lambda: s3.put_bucket_acl(
            Bucket="gr-errors", GrantRead='uri="http://acs.amazonaws.com/groups/global/Nobody"'
        ),
        "InvalidArgument",
        400,
    )
    refused(
        lambda: s3.put_bucket_acl(Bucket="gr-errors", ACL="private", GrantRead='id="root"'),
        "InvalidRequest",
        400,
    )
    refused(
        lambda: s3.put_object(Bucket="gr-errors", Key="k", Body=b"x", GrantRead="bob"),
        "InvalidArgument",
        400,
    )
    # nothing was changed by the refusals
    assert grant_set(s3.get_bucket_acl(Bucket="gr-errors")) == {("root", "FULL_CONTROL")}


def test_access_control_policy_body_and_groups(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="gr-body", ObjectOwnership="BucketOwnerPreferred")
    s3.put_bucket_acl(
        Bucket="gr-body",
        AccessControlPolicy={
            "Owner": {"ID": "root"},
            "Grants": [
                {"Grantee": {"Type": "CanonicalUser", "ID": "root"}, "Permission": "FULL_CONTROL"},
                {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
                {"Grantee": {"Type": "Group", "URI": LOG_DELIVERY}, "Permission": "WRITE"},
                {"Grantee": {"Type": "CanonicalUser", "ID": "bob"}, "Permission": "WRITE_ACP"},
            ],
        },
    )
    got = s3.get_bucket_acl(Bucket="gr-body")
    assert grant_set(got) == {
        ("root", "FULL_CONTROL"),
        (ALL_USERS, "READ"),
        (LOG_DELIVERY, "WRITE"),
        ("bob", "WRITE_ACP"),
    }
    # AllUsers READ lists the bucket for anyone; the LogDelivery group is nobody here
    assert curl(f"{srv.endpoint}/gr-body").status == 200
    assert curl(f"{srv.endpoint}/gr-body/x", "-X", "PUT", "--data-binary", "x").status == 403
    refused(
        lambda: s3.put_bucket_acl(
            Bucket="gr-body",
            AccessControlPolicy={
                "Owner": {"ID": "root"},
                "Grants": [
                    {
                        "Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "x@y.z"},
                        "Permission": "READ",
                    }
                ],
            },
        ),
        "UnresolvableGrantByEmailAddress",
        400,
    )


def test_grant_condition_keys_reach_the_bucket_policy(alice: Any, bob: Any) -> None:
    """``s3:x-amz-grant-full-control`` carries the request's header: a bucket policy can
    demand that every upload gives the bucket owner full control (AWS's own example)."""
    b = "gr-cond"
    alice.create_bucket(Bucket=b, ObjectOwnership="BucketOwnerPreferred")
    alice.put_bucket_policy(
        Bucket=b,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "bob"},
                        "Action": ["s3:PutObject", "s3:PutObjectAcl"],
                        "Resource": f"arn:aws:s3:::{b}/*",
                        "Condition": {
                            "StringEquals": {"s3:x-amz-grant-full-control": 'id="alice"'}
                        },
                    }
                ],
            }
        ),
    )
    refused(lambda: bob.put_object(Bucket=b, Key="k", Body=b"x"), "AccessDenied", 403)
    bob.put_object(Bucket=b, Key="k", Body=b"x", GrantFullControl='id="alice"')
    # full control to the bucket owner is what bucket-owner-full-control grants: under
    # BucketOwnerPreferred the object is hers
    listed = alice.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listed] == [("k", "alice")]
    assert alice.get_object(Bucket=b, Key="k")["Body"].read() == b"x"


# --- who owns what --------------------------------------------------------------------------


def test_object_writer_keeps_what_it_writes(alice: Any, bob: Any) -> None:
    b = "own-writer"
    alice.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
    alice.put_bucket_acl(Bucket=b, GrantFullControl='id="alice"', GrantWrite='id="bob"')
    bob.put_object(Bucket=b, Key="bobs", Body=b"bob wrote this")
    alice.put_object(Bucket=b, Key="alices", Body=b"alice wrote this")
    owners = {
        o["Key"]: o["Owner"]["ID"]
        for o in alice.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]
    }
    assert owners == {"alices": "alice", "bobs": "bob"}
    assert {o["Key"]: o["Owner"]["ID"] for o in alice.list_objects(Bucket=b)["Contents"]} == owners
    versions = alice.list_object_versions(Bucket=b)["Versions"]
    assert {v["Key"]: v["Owner"]["ID"] for v in versions} == owners
    # bob's object is bob's: the bucket owner cannot read it or its ACL...
    refused(lambda: alice.get_object(Bucket=b, Key="bobs"), "AccessDenied", 403)
    refused(lambda: alice.get_object_acl(Bucket=b, Key="bobs"), "AccessDenied", 403)
    acl = bob.get_object_acl(Bucket=b, Key="bobs")
    assert acl["Owner"]["ID"] == "bob" and grant_set(acl) == {("bob", "FULL_CONTROL")}
    # ...until bob shares it; she may always delete it (a bucket matter)
    bob.put_object_acl(Bucket=b, Key="bobs", ACL="bucket-owner-read")
    assert alice.get_object(Bucket=b, Key="bobs")["Body"].read() == b"bob wrote this"
    alice.delete_object(Bucket=b, Key="bobs")
    # disabling ACLs hands every object to the bucket owner
    bob.put_object(Bucket=b, Key="bobs2", Body=b"again")
    alice.put_bucket_acl(Bucket=b, ACL="private")
    alice.put_bucket_ownership_controls(
        Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    assert alice.get_object(Bucket=b, Key="bobs2")["Body"].read() == b"again"
    listed = alice.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]
    assert {o["Owner"]["ID"] for o in listed} == {"alice"}


def test_bucket_owner_preferred_takes_bucket_owner_full_control_uploads(
    alice: Any, bob: Any
) -> None:
    b = "own-preferred"
    alice.create_bucket(Bucket=b, ObjectOwnership="BucketOwnerPreferred")
    alice.put_bucket_acl(Bucket=b, GrantFullControl='id="alice"', GrantWrite='id="bob"')
    bob.put_object(Bucket=b, Key="given", Body=b"1", ACL="bucket-owner-full-control")
    bob.put_object(Bucket=b, Key="kept", Body=b"2")
    owners = {
        o["Key"]: o["Owner"]["ID"]
        for o in alice.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]
    }
    assert owners == {"given": "alice", "kept": "bob"}
    assert alice.get_object(Bucket=b, Key="given")["Body"].read() == b"1"
    refused(lambda: alice.get_object(Bucket=b, Key="kept"), "AccessDenied", 403)


def test_multipart_uploads_name_their_initiator_and_owner(alice: Any, bob: Any) -> None:
    b = "own-mpu"
    alice.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
    alice.put_bucket_acl(Bucket=b, GrantFullControl='id="alice"', GrantWrite='id="bob"')
    up = bob.create_multipart_upload(Bucket=b, Key="big")["UploadId"]
    mine = alice.create_multipart_upload(Bucket=b, Key="mine")["UploadId"]
    listed = alice.list_multipart_uploads(Bucket=b)["Uploads"]
    people = {u["Key"]: (u["Initiator"]["ID"], u["Owner"]["ID"]) for u in listed}
    assert people == {"big": ("bob", "bob"), "mine": ("alice", "alice")}
    parts = bob.list_parts(Bucket=b, Key="big", UploadId=up)
    assert (parts["Initiator"]["ID"], parts["Owner"]["ID"]) == ("bob", "bob")
    etag = bob.upload_part(Bucket=b, Key="big", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    bob.complete_multipart_upload(
        Bucket=b,
        Key="big",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    listed_objects = alice.list_objects_v2(Bucket=b, FetchOwner=True)["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listed_objects] == [("big", "bob")]
    alice.abort_multipart_upload(Bucket=b, Key="mine", UploadId=mine)


def test_s3cmd_and_the_cli_read_and_set_grants(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="gr-tools", ObjectOwnership="ObjectWriter")
    s3.put_object(Bucket="gr-tools", Key="k", Body=b"x")
    target = S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY)
    aws = AwsCli(target, tmp_path / "aws")
    aws("s3api", "put-object-acl", "--bucket", "gr-tools", "--key", "k", "--grant-read", "id=bob")
    got = aws.json("get-object-acl", "--bucket", "gr-tools", "--key", "k")
    assert {(g["Grantee"].get("ID"), g["Permission"]) for g in got["Grants"]} == {("bob", "READ")}
    s3cmd = S3Cmd(target, tmp_path / "s3cmd")
    s3cmd("setacl", "s3://gr-tools/k", "--acl-public")
    info = s3cmd("info", "s3://gr-tools/k").stdout
    assert "*anon*: READ" in info, info
    assert curl(f"{srv.endpoint}/gr-tools/k").status == 200
