"""S3 users and access keys: ``kvbox admin`` on a running server and on a data directory.

Every test drives a real ``kvbox serve`` with boto3; users and keys are made with the real
``kvbox admin`` command, over ``--server`` (SigV4-signed by root) or ``--data`` (with the
server stopped).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server
from ._server import run_kvbox

ROOT_ENV = {"KVBOX_ROOT_ACCESS_KEY": ACCESS_KEY, "KVBOX_ROOT_SECRET_KEY": SECRET_KEY}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    s = S3Server(tmp_path_factory.mktemp("s3users") / "data").start()
    yield s
    print(f"--- server log\n{s.server.log_text()[-20000:]}")
    s.close()


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
