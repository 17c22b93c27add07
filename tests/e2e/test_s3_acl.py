"""S3 canned ACLs and the ACL half of Block Public Access, on a real ``kvbox serve``, in
buckets created with ACLs enabled (Object Ownership ``ObjectWriter``).

Layer: tests/e2e. Rules: one server for the module, one bucket per test. The owner is
root (boto3, retries off); the stranger is anonymous ``curl``; the "authenticated" reader
is a kvbox user made with ``kvbox admin --server``. Expected answers are AWS's, from the
user guide's "Access control list (ACL) overview" (the canned ACL table: the owner gets
FULL_CONTROL, plus READ/WRITE for the AllUsers or AuthenticatedUsers group; READ on a
bucket lists it, on an object reads it; WRITE on a bucket creates, overwrites and deletes
objects), the API reference for Get/PutBucketAcl, Get/PutObjectAcl, CopyObject (the ACL
is not copied) and PublicAccessBlockConfiguration (BlockPublicAcls refuses new public
ACLs and leaves existing ones; IgnorePublicAcls ignores them all).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import Reply, code, curl
from ._s3 import S3Server, module_server

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

#: These tests are about what ACLs mean, so their buckets turn ACLs on (a new bucket
#: has them off, as on AWS since 2023: test_s3_acl_grants.py tests that).
ACLS_ON = "ObjectWriter"

#: A grant, flattened: (grantee type, canonical id or group URI, permission).
Grant = tuple[str, str, str]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3acl") as s:
        yield s


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


@pytest.fixture(scope="module")
def bob(srv: S3Server) -> Any:
    """A boto3 client for a second kvbox user, made with ``kvbox admin --server``."""
    return srv.client(*srv.new_user("bob"))


# --- helpers -------------------------------------------------------------------------------


def url(srv: S3Server, bucket: str, key: str = "") -> str:
    return f"{srv.endpoint}/{bucket}/{key}" if key else f"{srv.endpoint}/{bucket}"


def assert_denied(reply: Reply) -> None:
    assert reply.status == 403, reply
    assert reply.code == "AccessDenied", reply


def grants(acl: dict[str, Any]) -> tuple[str, set[Grant]]:
    """(owner id, the grants) of a Get*Acl answer; every grant must name one grantee."""
    owner = acl["Owner"]["ID"]
    assert owner, acl
    out: set[Grant] = set()
    for g in acl["Grants"]:
        grantee = g["Grantee"]
        if grantee["Type"] == "CanonicalUser":
            out.add(("CanonicalUser", grantee["ID"], g["Permission"]))
        elif grantee["Type"] == "Group":
            out.add(("Group", grantee["URI"], g["Permission"]))
        else:
            raise AssertionError(f"unexpected grantee {grantee}")
    assert len(out) == len(acl["Grants"]), f"duplicate grants in {acl['Grants']}"
    return owner, out


def canned(owner: str, acl: str) -> set[Grant]:
    """The grants AWS's canned ACL table gives ``acl`` for an owner ``owner``."""
    full: set[Grant] = {("CanonicalUser", owner, "FULL_CONTROL")}
    extra: dict[str, set[Grant]] = {
        "private": set(),
        "public-read": {("Group", ALL_USERS, "READ")},
        "public-read-write": {("Group", ALL_USERS, "READ"), ("Group", ALL_USERS, "WRITE")},
        "authenticated-read": {("Group", AUTHENTICATED_USERS, "READ")},
    }
    return full | extra[acl]


def assert_canned_bucket(s3: Any, bucket: str, acl: str) -> None:
    owner, got = grants(s3.get_bucket_acl(Bucket=bucket))
    assert got == canned(owner, acl), (acl, got)


def assert_canned_object(s3: Any, bucket: str, key: str, acl: str) -> None:
    owner, got = grants(s3.get_object_acl(Bucket=bucket, Key=key))
    assert got == canned(owner, acl), (acl, got)


# --- canned ACLs on create, put and copy ------------------------------------------------------


def test_public_read_bucket_lets_strangers_list_but_not_read(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-listable", ACL="public-read", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-listable", Key="a.txt", Body=b"private bytes")
    assert_canned_bucket(s3, "acl-listable", "public-read")
    listing = curl(url(srv, "acl-listable"))
    assert listing.status == 200, listing
    assert re.findall(rb"<Key>([^<]*)</Key>", listing.body) == [b"a.txt"]
    v2 = curl(url(srv, "acl-listable") + "?list-type=2&prefix=a")
    assert v2.status == 200 and b"<KeyCount>1</KeyCount>" in v2.body, v2
    # READ on the bucket is listing; the object's own ACL (private) still guards its bytes
    assert_denied(curl(url(srv, "acl-listable", "a.txt")))
    assert_denied(curl(url(srv, "acl-listable", "b.txt"), "-X", "PUT", "--data-binary", "x"))


def test_a_missing_key_is_404_to_whoever_may_list_however_granted(srv: S3Server, s3: Any) -> None:
    """S3's one rule: reading a key that does not exist is 404 NoSuchKey for those
    allowed s3:ListBucket and 403 for the rest, whether a canned ACL or a policy lets
    them list (AWS: "If you have the s3:ListBucket permission ... 404")."""
    s3.create_bucket(Bucket="acl-missing", ACL="public-read", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-missing", Key="private.txt", Body=b"p")
    for flags in ((), ("-I",)):  # GET, then HEAD
        missing = curl(url(srv, "acl-missing", "nothing.txt"), *flags)
        assert missing.status == 404, missing
        if not flags:
            assert missing.code == "NoSuchKey", missing
        # An object that exists keeps its own (private) ACL: still 403.
        existing = curl(url(srv, "acl-missing", "private.txt"), *flags)
        assert existing.status == 403, existing
    s3.put_bucket_acl(Bucket="acl-missing", ACL="private")
    assert_denied(curl(url(srv, "acl-missing", "nothing.txt")))
    s3.delete_object(Bucket="acl-missing", Key="private.txt")
    s3.delete_bucket(Bucket="acl-missing")


def test_anonymous_reads_cannot_override_response_headers(srv: S3Server, s3: Any) -> None:
    """AWS lets only signed (or presigned) GETs use response-* overrides."""
    s3.create_bucket(Bucket="acl-overrides", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-overrides", Key="o", Body=b"x", ACL="public-read")
    assert curl(url(srv, "acl-overrides", "o")).status == 200
    refused = curl(url(srv, "acl-overrides", "o") + "?response-content-type=text/html")
    assert (refused.status, refused.code) == (400, "InvalidRequest"), refused
    assert "anonymous GET requests" in (refused.message or "")


def test_public_read_object_in_a_private_bucket(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-object", ObjectOwnership=ACLS_ON)
    s3.put_object(
        Bucket="acl-object", Key="pub.txt", Body=b"for everyone", ACL="public-read",
        ContentType="text/plain",
    )  # fmt: skip
    s3.put_object(Bucket="acl-object", Key="priv.txt", Body=b"for the owner")
    assert_canned_object(s3, "acl-object", "pub.txt", "public-read")
    assert_canned_object(s3, "acl-object", "priv.txt", "private")
    assert_canned_bucket(s3, "acl-object", "private")

    got = curl(url(srv, "acl-object", "pub.txt"))
    assert got.status == 200 and got.body == b"for everyone", got
    assert got.headers["content-type"] == "text/plain"
    head = curl(url(srv, "acl-object", "pub.txt"), "-I")
    assert head.status == 200 and head.headers["content-length"] == "12", head
    assert_denied(curl(url(srv, "acl-object", "priv.txt")))
    assert_denied(curl(url(srv, "acl-object")))
    # an object ACL grants reading, not overwriting or deleting
    assert_denied(curl(url(srv, "acl-object", "pub.txt"), "-X", "PUT", "--data-binary", "x"))
    assert_denied(curl(url(srv, "acl-object", "pub.txt"), "-X", "DELETE"))
    assert s3.get_object(Bucket="acl-object", Key="pub.txt")["Body"].read() == b"for everyone"


def test_copy_object_sets_its_own_acl(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-copy", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-copy", Key="src", Body=b"copied bytes", ACL="public-read")
    src = {"Bucket": "acl-copy", "Key": "src"}
    s3.copy_object(Bucket="acl-copy", Key="plain-copy", CopySource=src)
    s3.copy_object(Bucket="acl-copy", Key="public-copy", CopySource=src, ACL="public-read")
    # the ACL is not copied with the object: a copy without x-amz-acl is private
    assert_canned_object(s3, "acl-copy", "plain-copy", "private")
    assert_denied(curl(url(srv, "acl-copy", "plain-copy")))
    assert_canned_object(s3, "acl-copy", "public-copy", "public-read")
    got = curl(url(srv, "acl-copy", "public-copy"))
    assert got.status == 200 and got.body == b"copied bytes", got

    s3.put_object(Bucket="acl-copy", Key="secret", Body=b"s")
    s3.copy_object(
        Bucket="acl-copy", Key="leaked", CopySource={"Bucket": "acl-copy", "Key": "secret"},
        ACL="public-read",
    )  # fmt: skip
    assert curl(url(srv, "acl-copy", "leaked")).body == b"s"
    assert_denied(curl(url(srv, "acl-copy", "secret")))


# --- Get/Put Bucket and Object ACL --------------------------------------------------------------


def test_bucket_acl_follows_each_canned_acl(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-bucket-canned", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-bucket-canned", Key="k", Body=b"k")
    assert_canned_bucket(s3, "acl-bucket-canned", "private")
    for acl in ("public-read", "public-read-write", "authenticated-read", "private"):
        done = s3.put_bucket_acl(Bucket="acl-bucket-canned", ACL=acl)
        assert done["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert_canned_bucket(s3, "acl-bucket-canned", acl)
        anonymous_list = curl(url(srv, "acl-bucket-canned"))
        if acl in ("public-read", "public-read-write"):
            assert anonymous_list.status == 200, (acl, anonymous_list)
        else:
            assert_denied(anonymous_list)


def test_object_acl_follows_each_canned_acl(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-object-canned", ObjectOwnership=ACLS_ON)
    etag = s3.put_object(Bucket="acl-object-canned", Key="k", Body=b"same bytes")["ETag"]
    assert_canned_object(s3, "acl-object-canned", "k", "private")
    for acl in ("public-read", "authenticated-read", "private", "public-read"):
        s3.put_object_acl(Bucket="acl-object-canned", Key="k", ACL=acl)
        assert_canned_object(s3, "acl-object-canned", "k", acl)
        anonymous = curl(url(srv, "acl-object-canned", "k"))
        if acl == "public-read":
            assert anonymous.status == 200 and anonymous.body == b"same bytes", (acl, anonymous)
        else:
            assert_denied(anonymous)
    # changing the ACL does not change the object
    head = s3.head_object(Bucket="acl-object-canned", Key="k")
    assert head["ETag"] == etag and head["ContentLength"] == 10

    with pytest.raises(ClientError) as info:
        s3.get_object_acl(Bucket="acl-object-canned", Key="missing")
    assert code(info.value) == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.put_object_acl(Bucket="acl-object-canned", Key="missing", ACL="public-read")
    assert code(info.value) == "NoSuchKey"


def test_authenticated_read_admits_users_not_strangers(srv: S3Server, s3: Any, bob: Any) -> None:
    s3.create_bucket(Bucket="acl-authread", ObjectOwnership=ACLS_ON)
    s3.put_object(
        Bucket="acl-authread", Key="members.txt", Body=b"members", ACL="authenticated-read"
    )
    s3.put_object(Bucket="acl-authread", Key="owner.txt", Body=b"owner")
    assert bob.get_object(Bucket="acl-authread", Key="members.txt")["Body"].read() == b"members"
    assert_denied(curl(url(srv, "acl-authread", "members.txt")))
    with pytest.raises(ClientError) as info:
        bob.get_object(Bucket="acl-authread", Key="owner.txt")
    assert code(info.value) == "AccessDenied"
    with pytest.raises(ClientError) as info:
        bob.list_objects_v2(Bucket="acl-authread")
    assert code(info.value) == "AccessDenied"

    s3.put_bucket_acl(Bucket="acl-authread", ACL="authenticated-read")
    keys = [o["Key"] for o in bob.list_objects_v2(Bucket="acl-authread")["Contents"]]
    assert keys == ["members.txt", "owner.txt"]
    assert_denied(curl(url(srv, "acl-authread")))
    with pytest.raises(ClientError) as info:
        bob.put_object(Bucket="acl-authread", Key="bob.txt", Body=b"b")
    assert code(info.value) == "AccessDenied"


def test_public_read_write_bucket_takes_anonymous_writes(
    srv: S3Server, s3: Any, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="acl-dropbox", ACL="public-read-write", ObjectOwnership=ACLS_ON)
    assert_canned_bucket(s3, "acl-dropbox", "public-read-write")
    upload = tmp_path / "note.txt"
    upload.write_bytes(b"left by a stranger\n")
    put = curl(url(srv, "acl-dropbox", "note.txt"), "-X", "PUT", "--data-binary", f"@{upload}")
    assert put.status == 200, put
    assert put.headers["etag"].strip('"')
    got = s3.get_object(Bucket="acl-dropbox", Key="note.txt")
    assert got["Body"].read() == b"left by a stranger\n"
    listing = curl(url(srv, "acl-dropbox"))
    assert listing.status == 200 and b"<Key>note.txt</Key>" in listing.body, listing
    # WRITE on the bucket includes deleting its objects
    gone = curl(url(srv, "acl-dropbox", "note.txt"), "-X", "DELETE")
    assert gone.status == 204, gone
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket="acl-dropbox", Key="note.txt")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # but not changing the bucket's ACL or policy
    assert_denied(curl(url(srv, "acl-dropbox") + "?acl", "-X", "PUT", "-H", "x-amz-acl: private"))


# --- Block Public Access: the ACL settings --------------------------------------------------------


def test_block_public_acls_refuses_new_public_acls(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-bpa", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-bpa", Key="before", Body=b"public before", ACL="public-read")
    s3.put_public_access_block(
        Bucket="acl-bpa", PublicAccessBlockConfiguration={"BlockPublicAcls": True}
    )
    refused: list[Callable[[], Any]] = [
        lambda: s3.put_object(Bucket="acl-bpa", Key="k", Body=b"k", ACL="public-read"),
        lambda: s3.put_object(Bucket="acl-bpa", Key="k", Body=b"k", ACL="authenticated-read"),
        lambda: s3.put_object_acl(Bucket="acl-bpa", Key="before", ACL="public-read-write"),
        lambda: s3.put_bucket_acl(Bucket="acl-bpa", ACL="public-read"),
        lambda: s3.copy_object(
            Bucket="acl-bpa", Key="k2", CopySource={"Bucket": "acl-bpa", "Key": "before"},
            ACL="public-read",
        ),
    ]  # fmt: skip
    for call in refused:
        with pytest.raises(ClientError) as info:
            call()
        assert code(info.value) == "AccessDenied"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket="acl-bpa", Key="k")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # private ACLs are fine, and an ACL that was public before stays as it was
    s3.put_object(Bucket="acl-bpa", Key="k", Body=b"k", ACL="private")
    assert_canned_object(s3, "acl-bpa", "before", "public-read")
    assert curl(url(srv, "acl-bpa", "before")).body == b"public before"


def test_ignore_public_acls_hides_existing_public_acls(srv: S3Server, s3: Any) -> None:
    s3.create_bucket(Bucket="acl-ignore", ACL="public-read", ObjectOwnership=ACLS_ON)
    s3.put_object(Bucket="acl-ignore", Key="k", Body=b"was public", ACL="public-read")
    assert curl(url(srv, "acl-ignore", "k")).status == 200
    assert curl(url(srv, "acl-ignore")).status == 200
    s3.put_public_access_block(
        Bucket="acl-ignore", PublicAccessBlockConfiguration={"IgnorePublicAcls": True}
    )
    assert_denied(curl(url(srv, "acl-ignore", "k")))
    assert_denied(curl(url(srv, "acl-ignore")))
    # ignored, not removed; and new public ACLs may still be set
    assert_canned_object(s3, "acl-ignore", "k", "public-read")
    s3.put_object(Bucket="acl-ignore", Key="k2", Body=b"new", ACL="public-read")
    assert_denied(curl(url(srv, "acl-ignore", "k2")))
    s3.delete_public_access_block(Bucket="acl-ignore")
    assert curl(url(srv, "acl-ignore", "k")).body == b"was public"
    assert curl(url(srv, "acl-ignore", "k2")).body == b"new"
