"""S3 Object Lock end to end: a real ``kvbox serve`` and real clients, every removal path.

Layer: tests/e2e. Rules: one server for the module, one bucket per test. boto3 both as a
user makes it (no Config at all) and with explicit s3v4 and retries off; the AWS CLI;
curl with its own SigV4 signer; raw GW-KV sockets; ``kvbox fsck`` and ``kvbox admin``.
Requests no SDK will send (no checksum where AWS demands one) are signed with botocore's
signer and sent by hand. Expected answers are AWS's, from the S3 API reference
(CreateBucket, Put/GetObjectLockConfiguration, Put/GetObjectRetention,
Put/GetObjectLegalHold, PutObject, CopyObject, CreateMultipartUpload, DeleteObject,
DeleteObjects, PutBucketVersioning) and the user guide's Object Lock chapters.

The promise under test: no path removes or overwrites a protected version -- S3
DeleteObject and DeleteObjects by version, GW-KV DELETE and SET, bucket deletion, admin
user deletion, ``kvbox fsck --repair`` (lifecycle expiry: test_s3_lifecycle.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, ROOT_ENV, SECRET_KEY, S3Server, module_server, signed
from ._s3clients import AwsCli, S3Target
from ._server import Wire, run_kvbox

DAY = timedelta(days=1)
LOCK_DENIED = "Access Denied because object protected by object lock."


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3lock") as s:
        yield s


@pytest.fixture(scope="module", params=["default", "s3v4"])
def s3(srv: S3Server, request: pytest.FixtureRequest) -> Any:
    """boto3 as users make it, and as the rest of the suite configures it."""
    return srv.default_client() if request.param == "default" else srv.client()


def err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return int(r["ResponseMetadata"]["HTTPStatusCode"]), str(r["Error"]["Code"])


def later(days: float = 1) -> datetime:
    """A retain-until date in the future, whole seconds (S3 keeps milliseconds)."""
    return (datetime.now(UTC) + days * DAY).replace(microsecond=0)


_SEQ = iter(range(1_000_000))


def locked_bucket(s3: Any, stem: str) -> str:
    name = f"{stem}-{next(_SEQ)}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def retain(s3: Any, bucket: str, key: str, vid: str, mode: str, until: datetime, **kw: Any) -> Any:
    return s3.put_object_retention(
        Bucket=bucket,
        Key=key,
        VersionId=vid,
        Retention={"Mode": mode, "RetainUntilDate": until},
        **kw,
    )


# --- buckets -------------------------------------------------------------------------


def test_a_bucket_with_object_lock_is_versioned_for_good(s3: Any) -> None:
    b = locked_bucket(s3, "lk-create")
    assert s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"
    }
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    with pytest.raises(ClientError) as info:
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert err(info) == (409, "InvalidBucketState")
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"


def test_default_retention_put_get_and_applied(s3: Any) -> None:
    b = locked_bucket(s3, "lk-default")
    for rule in ({"Mode": "GOVERNANCE", "Days": 1}, {"Mode": "COMPLIANCE", "Years": 1}):
        conf = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}}
        s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=conf)
        assert s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"] == conf
    s3.put_object_lock_configuration(
        Bucket=b,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}},
        },
    )
    before = datetime.now(UTC)
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    after = datetime.now(UTC)
    got = s3.get_object_retention(Bucket=b, Key="k", VersionId=vid)["Retention"]
    assert got["Mode"] == "GOVERNANCE"
    assert before + 2 * DAY - timedelta(seconds=1) <= got["RetainUntilDate"] <= after + 2 * DAY
    head = s3.head_object(Bucket=b, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == got["RetainUntilDate"]
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=b, Key="k", VersionId=vid)
    assert err(info) == (403, "AccessDenied")
    assert info.value.response["Error"]["Message"] == LOCK_DENIED
    s3.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML"),
        ({"Mode": "GOVERNANCE", "Days": 0}, "InvalidArgument"),
        ({"Mode": "GOVERNANCE", "Years": -1}, "InvalidArgument"),
        ({"Mode": "governance", "Days": 1}, "MalformedXML"),
        ({"Mode": "abc", "Days": 1}, "MalformedXML"),
    ],
)
def test_bad_lock_configurations(s3: Any, rule: dict[str, Any], code: str) -> None:
    b = locked_bucket(s3, "lk-badconf")
    conf = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}}
    with pytest.raises(ClientError) as info:
        s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=conf)
    assert err(info) == (400, code)
    with pytest.raises(ClientError) as info:
        s3.put_object_lock_configuration(
            Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Disabled"}
        )
    assert err(info) == (400, "MalformedXML")


def test_object_lock_on_an_existing_bucket(s3: Any) -> None:
    b = f"lk-existing-{next(_SEQ)}"
    s3.create_bucket(Bucket=b)
    with pytest.raises(ClientError) as info:
        s3.get_object_lock_configuration(Bucket=b)
    assert err(info) == (404, "ObjectLockConfigurationNotFoundError")
    conf = {"ObjectLockEnabled": "Enabled"}
    with pytest.raises(ClientError) as info:
        s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=conf)
    assert err(info) == (409, "InvalidBucketState")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    with pytest.raises(ClientError) as info:
        s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=conf)
    assert err(info) == (409, "InvalidBucketState")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"] == conf


def test_lock_operations_on_a_bucket_without_object_lock(s3: Any) -> None:
    b = f"lk-plain-{next(_SEQ)}"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    calls: list[Callable[[], Any]] = [
        lambda: s3.put_object_retention(
            Bucket=b, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later()}
        ),
        lambda: s3.get_object_retention(Bucket=b, Key="k"),
        lambda: s3.put_object_legal_hold(Bucket=b, Key="k", LegalHold={"Status": "ON"}),
        lambda: s3.get_object_legal_hold(Bucket=b, Key="k"),
        lambda: s3.put_object(
            Bucket=b,
            Key="new",
            Body=b"x" * 100_000,
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=later(),
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as info:
            call()
        assert err(info) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=b, Key="new")  # the refused upload stored nothing
    assert err(info)[0] == 404


# --- one version's lock ----------------------------------------------------------------


def test_put_with_lock_headers_and_what_get_and_head_answer(s3: Any) -> None:
    b = locked_bucket(s3, "lk-headers")
    until = later(3)
    vid = s3.put_object(
        Bucket=b,
        Key="k",
        Body=b"locked bytes",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )["VersionId"]
    got = s3.get_object(Bucket=b, Key="k")
    assert got["Body"].read() == b"locked bytes"
    for r in (got, s3.head_object(Bucket=b, Key="k", VersionId=vid)):
        assert r["ObjectLockMode"] == "GOVERNANCE"
        assert r["ObjectLockRetainUntilDate"] == until
        assert r["ObjectLockLegalHoldStatus"] == "ON"
    assert s3.get_object_retention(Bucket=b, Key="k")["Retention"] == {
        "Mode": "GOVERNANCE",
        "RetainUntilDate": until,
    }
    assert s3.get_object_legal_hold(Bucket=b, Key="k")["LegalHold"] == {"Status": "ON"}
    with pytest.raises(ClientError) as info:  # a legal hold: no bypass helps
        s3.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)
    assert err(info) == (403, "AccessDenied")
    s3.put_object_legal_hold(Bucket=b, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=b, Key="k")["LegalHold"] == {"Status": "OFF"}
    s3.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)


@pytest.mark.parametrize(
    "headers",
    [
        {"ObjectLockMode": "GOVERNANCE"},  # a mode without a date
        {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": "2001-01-01T00:00:00Z"},
    ],
)
def test_bad_lock_headers_store_nothing(s3: Any, headers: dict[str, Any]) -> None:
    b = locked_bucket(s3, "lk-badhdr")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=b, Key="k", Body=b"x", **headers)
    assert err(info) == (400, "InvalidArgument")
    assert s3.list_object_versions(Bucket=b).get("Versions", []) == []


def test_lock_parameters_need_content_md5_or_a_checksum(srv: S3Server, s3: Any) -> None:
    """AWS: "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object
    requests with Object Lock parameters" -- and for PutObjectRetention, PutObjectLegalHold
    and PutObjectLockConfiguration, whose bodies must always carry one."""
    b = locked_bucket(s3, "lk-md5")
    until = later().strftime("%Y-%m-%dT%H:%M:%SZ")
    lock_headers = {
        "x-amz-object-lock-mode": "GOVERNANCE",
        "x-amz-object-lock-retain-until-date": until,
    }
    bare = signed(srv, "PUT", f"/{b}/k", headers=lock_headers, body=b"data")
    assert (bare.status, bare.code) == (400, "InvalidRequest")
    assert b"Content-MD5" in bare.body
    md5 = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    ok = signed(srv, "PUT", f"/{b}/k", headers={**lock_headers, "Content-MD5": md5}, body=b"data")
    assert ok.status == 200, ok.body
    hold = b'<LegalHold xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>ON</Status></LegalHold>'
    bare = signed(srv, "PUT", f"/{b}/k", "legal-hold=", body=hold)
    assert (bare.status, bare.code) == (400, "InvalidRequest")
    crc = base64.b64encode(hashlib.sha256(hold).digest()).decode()
    ok = signed(
        srv, "PUT", f"/{b}/k", "legal-hold=", headers={"x-amz-checksum-sha256": crc}, body=hold
    )
    assert ok.status == 200, ok.body
    # A bucket with a default retention gives every new object a retention: the same rule.
    s3.put_object_lock_configuration(
        Bucket=b,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    bare = signed(srv, "PUT", f"/{b}/k2", body=b"data")
    assert (bare.status, bare.code) == (400, "InvalidRequest")
    # ... and so does each part of a multipart upload into it.
    up = s3.create_multipart_upload(Bucket=b, Key="m")["UploadId"]
    part = signed(srv, "PUT", f"/{b}/m", f"partNumber=1&uploadId={up}", body=b"data")
    assert (part.status, part.code) == (400, "InvalidRequest")
    assert b"Put Part" in part.body
    s3.abort_multipart_upload(Bucket=b, Key="m", UploadId=up)


def test_governance_retention_rules(s3: Any) -> None:
    b = locked_bucket(s3, "lk-gov")
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    with pytest.raises(ClientError) as info:
        s3.get_object_retention(Bucket=b, Key="k")
    assert err(info) == (404, "NoSuchObjectLockConfiguration")
    with pytest.raises(ClientError) as info:
        s3.get_object_legal_hold(Bucket=b, Key="k")
    assert err(info) == (404, "NoSuchObjectLockConfiguration")
    far, near = later(10), later(5)
    retain(s3, b, "k", vid, "GOVERNANCE", far)
    retain(s3, b, "k", vid, "GOVERNANCE", later(11))  # extending is always allowed
    attempts: list[Callable[[], Any]] = [
        lambda: retain(s3, b, "k", vid, "GOVERNANCE", near),  # shorten
        lambda: retain(s3, b, "k", vid, "COMPLIANCE", later(12)),  # change the mode
        lambda: s3.delete_object(Bucket=b, Key="k", VersionId=vid),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as info:
            attempt()
        assert err(info) == (403, "AccessDenied")
    retain(s3, b, "k", vid, "GOVERNANCE", near, BypassGovernanceRetention=True)
    assert s3.get_object_retention(Bucket=b, Key="k")["Retention"]["RetainUntilDate"] == near
    with pytest.raises(ClientError) as info:  # a date in the past is never accepted
        retain(
            s3,
            b,
            "k",
            vid,
            "GOVERNANCE",
            datetime(2001, 1, 1, tzinfo=UTC),
            BypassGovernanceRetention=True,
        )
    assert err(info) == (400, "InvalidArgument")
    s3.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True)
    assert s3.list_object_versions(Bucket=b).get("Versions", []) == []


def test_compliance_retention_only_extends(s3: Any) -> None:
    b = locked_bucket(s3, "lk-comp")
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    retain(s3, b, "k", vid, "GOVERNANCE", later(2))
    retain(s3, b, "k", vid, "COMPLIANCE", later(2), BypassGovernanceRetention=True)
    retain(s3, b, "k", vid, "COMPLIANCE", later(3))
    attempts: list[Callable[[], Any]] = [
        lambda: retain(s3, b, "k", vid, "COMPLIANCE", later(1), BypassGovernanceRetention=True),
        lambda: retain(s3, b, "k", vid, "GOVERNANCE", later(30), BypassGovernanceRetention=True),
        lambda: s3.delete_object(Bucket=b, Key="k", VersionId=vid, BypassGovernanceRetention=True),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as info:
            attempt()
        assert err(info) == (403, "AccessDenied")
    assert s3.get_object(Bucket=b, Key="k", VersionId=vid)["Body"].read() == b"x"


def test_a_delete_without_version_adds_a_marker_and_the_locked_version_stays(s3: Any) -> None:
    b = locked_bucket(s3, "lk-marker")
    vid = s3.put_object(Bucket=b, Key="k", Body=b"kept")["VersionId"]
    retain(s3, b, "k", vid, "GOVERNANCE", later())
    marker = s3.delete_object(Bucket=b, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=b, Key="k", VersionId=vid)
    assert err(info) == (403, "AccessDenied")
    s3.delete_object(Bucket=b, Key="k", VersionId=marker["VersionId"])  # markers: never locked
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"kept"
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=b, Key="k", VersionId=vid)
    assert err(info) == (403, "AccessDenied")
    # An overwrite is a new version: the locked one is still there underneath.
    s3.put_object(Bucket=b, Key="k", Body=b"newer")
    assert s3.get_object(Bucket=b, Key="k", VersionId=vid)["Body"].read() == b"kept"


def test_delete_objects_decides_each_version(s3: Any) -> None:
    b = locked_bucket(s3, "lk-multi")
    v1 = s3.put_object(Bucket=b, Key="a", Body=b"a")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="b", Body=b"b")["VersionId"]
    retain(s3, b, "a", v1, "GOVERNANCE", later())
    objects = [{"Key": "a", "VersionId": v1}, {"Key": "b", "VersionId": v2}]
    out = s3.delete_objects(Bucket=b, Delete={"Objects": objects})
    assert [(d["Key"], d["VersionId"]) for d in out["Deleted"]] == [("b", v2)]
    (e,) = out["Errors"]
    assert (e["Key"], e["VersionId"], e["Code"]) == ("a", v1, "AccessDenied")
    out = s3.delete_objects(
        Bucket=b, Delete={"Objects": objects[:1]}, BypassGovernanceRetention=True
    )
    assert [(d["Key"], d["VersionId"]) for d in out["Deleted"]] == [("a", v1)]
    assert "Errors" not in out


def test_copy_takes_the_lock_its_request_names_never_the_source_s(s3: Any) -> None:
    src = locked_bucket(s3, "lk-copysrc")
    dst = locked_bucket(s3, "lk-copydst")
    svid = s3.put_object(Bucket=src, Key="s", Body=b"src", ObjectLockLegalHoldStatus="ON")[
        "VersionId"
    ]
    plain = s3.copy_object(Bucket=dst, Key="plain", CopySource={"Bucket": src, "Key": "s"})
    with pytest.raises(ClientError) as info:
        s3.get_object_legal_hold(Bucket=dst, Key="plain")
    assert err(info) == (404, "NoSuchObjectLockConfiguration")
    s3.delete_object(Bucket=dst, Key="plain", VersionId=plain["VersionId"])
    until = later(2)
    locked = s3.copy_object(
        Bucket=dst,
        Key="locked",
        CopySource={"Bucket": src, "Key": "s"},
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    assert s3.get_object_retention(Bucket=dst, Key="locked", VersionId=locked["VersionId"])[
        "Retention"
    ] == {"Mode": "COMPLIANCE", "RetainUntilDate": until}
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=dst, Key="locked", VersionId=locked["VersionId"])
    assert err(info) == (403, "AccessDenied")
    s3.put_object_legal_hold(Bucket=src, Key="s", VersionId=svid, LegalHold={"Status": "OFF"})


def test_multipart_upload_with_lock_headers(s3: Any) -> None:
    b = locked_bucket(s3, "lk-mpu")
    until = later(2)
    up = s3.create_multipart_upload(
        Bucket=b, Key="m", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )  # fmt: skip
    part = s3.upload_part(Bucket=b, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"abc")
    done = s3.complete_multipart_upload(
        Bucket=b,
        Key="m",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    vid = done["VersionId"]
    assert s3.get_object_retention(Bucket=b, Key="m", VersionId=vid)["Retention"] == {
        "Mode": "GOVERNANCE",
        "RetainUntilDate": until,
    }
    assert s3.get_object_legal_hold(Bucket=b, Key="m", VersionId=vid)["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=b, Key="m", VersionId=vid)
    assert err(info) == (403, "AccessDenied")
    with pytest.raises(ClientError) as info:
        s3.create_multipart_upload(
            Bucket=b, Key="m2", ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=datetime(2001, 1, 1, tzinfo=UTC),
        )  # fmt: skip
    assert err(info) == (400, "InvalidArgument")


def test_bucket_deletion_never_takes_a_locked_version(s3: Any) -> None:
    b = locked_bucket(s3, "lk-delbucket")
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")["VersionId"]
    marker = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    s3.delete_object(Bucket=b, Key="k", VersionId=marker)
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=b)
    assert err(info) == (409, "BucketNotEmpty")
    assert s3.get_object(Bucket=b, Key="k", VersionId=vid)["Body"].read() == b"x"


# --- who may bypass ----------------------------------------------------------------------


def _policy(s3: Any, bucket: str, *statements: dict[str, Any]) -> None:
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    )


def _stmt(effect: str, principal: Any, actions: list[str], bucket: str) -> dict[str, Any]:
    return {
        "Effect": effect,
        "Principal": principal,
        "Action": actions,
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }


@pytest.fixture(scope="module")
def bob(srv: S3Server) -> Any:
    return srv.client(*srv.new_user("bob"))


def test_bypass_needs_the_permission_as_well_as_the_header(srv: S3Server, bob: Any) -> None:
    s3 = srv.client()
    b = locked_bucket(s3, "lk-perm")
    bob_arn = {"AWS": "arn:aws:iam::000000000000:user/bob"}
    v = [s3.put_object(Bucket=b, Key=f"k{i}", Body=b"x")["VersionId"] for i in range(3)]
    for i in range(3):
        retain(s3, b, f"k{i}", v[i], "GOVERNANCE", later())
    _policy(s3, b, _stmt("Allow", bob_arn, ["s3:DeleteObjectVersion", "s3:PutObjectRetention"], b))
    with pytest.raises(ClientError) as info:
        bob.delete_object(Bucket=b, Key="k0", VersionId=v[0], BypassGovernanceRetention=True)
    assert err(info) == (403, "AccessDenied")
    with pytest.raises(ClientError) as info:
        retain(bob, b, "k0", v[0], "GOVERNANCE", later(0.5), BypassGovernanceRetention=True)
    assert err(info) == (403, "AccessDenied")
    _policy(
        s3,
        b,
        _stmt(
            "Allow",
            bob_arn,
            ["s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention"],
            b,
        ),
    )
    bob.delete_object(Bucket=b, Key="k0", VersionId=v[0], BypassGovernanceRetention=True)
    # An explicit Deny stops even root.
    _policy(s3, b, _stmt("Deny", "*", ["s3:BypassGovernanceRetention"], b))
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=b, Key="k1", VersionId=v[1], BypassGovernanceRetention=True)
    assert err(info) == (403, "AccessDenied")
    s3.delete_bucket_policy(Bucket=b)
    s3.delete_object(Bucket=b, Key="k1", VersionId=v[1], BypassGovernanceRetention=True)


def test_lock_headers_and_reads_need_their_own_permissions(srv: S3Server, bob: Any) -> None:
    s3 = srv.client()
    b = locked_bucket(s3, "lk-perm2")
    bob_arn = {"AWS": "arn:aws:iam::000000000000:user/bob"}
    _policy(s3, b, _stmt("Allow", bob_arn, ["s3:PutObject", "s3:GetObject"], b))
    with pytest.raises(ClientError) as info:  # s3:PutObjectLegalHold is needed too
        bob.put_object(Bucket=b, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")
    assert err(info) == (403, "AccessDenied")
    s3.put_object(
        Bucket=b,
        Key="k",
        Body=b"x",
        ObjectLockLegalHoldStatus="ON",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=later(),
    )
    # Without s3:GetObjectRetention / s3:GetObjectLegalHold the headers are left out.
    head = bob.head_object(Bucket=b, Key="k")
    assert "ObjectLockMode" not in head and "ObjectLockLegalHoldStatus" not in head
    _policy(
        s3,
        b,
        _stmt(
            "Allow", bob_arn, ["s3:GetObject", "s3:GetObjectRetention", "s3:GetObjectLegalHold"], b
        ),
    )
    head = bob.head_object(Bucket=b, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"


def test_a_policy_can_cap_retention_days(s3: Any) -> None:
    """``s3:object-lock-remaining-retention-days`` from the header of a PutObject and from
    the body of a PutObjectRetention: a Deny over 30 days stops even root."""
    b = locked_bucket(s3, "lk-cap")
    cap = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:PutObject", "s3:PutObjectRetention"],
        "Resource": f"arn:aws:s3:::{b}/*",
        "Condition": {"NumericGreaterThan": {"s3:object-lock-remaining-retention-days": "30"}},
    }
    _policy(s3, b, cap)
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    retain(s3, b, "k", vid, "GOVERNANCE", later(10))
    with pytest.raises(ClientError) as info:
        retain(s3, b, "k", vid, "GOVERNANCE", later(40))
    assert err(info) == (403, "AccessDenied")
    with pytest.raises(ClientError) as info:
        s3.put_object(
            Bucket=b, Key="k2", Body=b"x", ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=later(40),
        )  # fmt: skip
    assert err(info) == (403, "AccessDenied")
    s3.delete_bucket_policy(Bucket=b)


# --- other clients and other doors ------------------------------------------------------


def test_object_lock_through_the_aws_cli(srv: S3Server, tmp_path: Path) -> None:
    aws = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    b = f"lk-cli-{next(_SEQ)}"
    aws("s3api", "create-bucket", "--bucket", b, "--object-lock-enabled-for-bucket")
    conf = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
    }
    aws(
        "s3api", "put-object-lock-configuration", "--bucket", b,
        "--object-lock-configuration", json.dumps(conf),
    )  # fmt: skip
    assert (
        aws.json("get-object-lock-configuration", "--bucket", b)["ObjectLockConfiguration"] == conf
    )
    body = tmp_path / "f.txt"
    body.write_bytes(b"kept by the cli\n")
    vid = aws.json("put-object", "--bucket", b, "--key", "f", "--body", str(body))["VersionId"]
    until = later(5).strftime("%Y-%m-%dT%H:%M:%SZ")
    aws(
        "s3api", "put-object-retention", "--bucket", b, "--key", "f", "--version-id", vid,
        "--retention", f"Mode=GOVERNANCE,RetainUntilDate={until}",
    )  # fmt: skip
    got = aws.json("get-object-retention", "--bucket", b, "--key", "f", "--version-id", vid)
    assert got["Retention"]["Mode"] == "GOVERNANCE"
    assert got["Retention"]["RetainUntilDate"].startswith(until[:19])
    aws("s3api", "put-object-legal-hold", "--bucket", b, "--key", "f", "--legal-hold", "Status=ON")
    assert aws.json("get-object-legal-hold", "--bucket", b, "--key", "f")["LegalHold"] == {
        "Status": "ON"
    }
    refused = aws(
        "s3api", "delete-object", "--bucket", b, "--key", "f", "--version-id", vid, check=False
    )
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    aws("s3api", "put-object-legal-hold", "--bucket", b, "--key", "f", "--legal-hold", "Status=OFF")
    aws(
        "s3api", "delete-object", "--bucket", b, "--key", "f", "--version-id", vid,
        "--bypass-governance-retention",
    )  # fmt: skip
    assert "Versions" not in aws.json("list-object-versions", "--bucket", b)


def _curl(srv: S3Server, method: str, path: str, *args: str) -> tuple[int, bytes]:
    """curl with its own SigV4 signer (``--aws-sigv4``), as a shell user would call S3."""
    exe = shutil.which("curl")
    assert exe, "curl is needed for these tests (apt-get install curl)"
    proc = subprocess.run(
        [
            exe, "-sS", "--noproxy", "*", "--max-time", "30", "-X", method,
            "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
            "-o", "-", "-w", "\n%{http_code}", *args, srv.endpoint + path,
        ],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    body, _, code = proc.stdout.rpartition(b"\n")
    return int(code), body


def test_object_lock_through_curl(srv: S3Server) -> None:
    s3 = srv.client()
    b = locked_bucket(s3, "lk-curl")
    vid = s3.put_object(Bucket=b, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")["VersionId"]
    # ``?object-lock=``: curl 7.88 signs a bare ``?object-lock`` without the ``=`` AWS's
    # canonical query string has (fixed in later curls), so S3 itself would refuse it.
    code, body = _curl(srv, "GET", f"/{b}?object-lock=")
    assert code == 200 and b"<ObjectLockEnabled>Enabled</ObjectLockEnabled>" in body
    code, body = _curl(srv, "GET", f"/{b}/k?legal-hold=")
    assert code == 200 and b"<Status>ON</Status>" in body
    code, body = _curl(srv, "DELETE", f"/{b}/k?versionId={vid}")
    assert code == 403 and b"<Code>AccessDenied</Code>" in body and LOCK_DENIED.encode() in body
    s3.put_object_legal_hold(Bucket=b, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})


def test_gwkv_never_removes_a_protected_version(tmp_path: Path) -> None:
    """The GW-KV bucket under object lock: SET writes a new version (with the bucket's
    default retention), DELETE adds a delete marker, and the locked versions stay."""
    srv = S3Server(tmp_path / "data", "--kv-versioning", "true").start()
    try:
        s3 = srv.client()
        s3.put_object_lock_configuration(
            Bucket="kv",
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
            },
        )
        with Wire.connect("127.0.0.1", srv.server.port) as w:
            first = w.request(b"SET apple red\n")
            second = w.request(b"SET apple green\n")
            v1 = re.fullmatch(rb"OK (\S+)\n", first)
            v2 = re.fullmatch(rb"OK (\S+)\n", second)
            assert v1 and v2, (first, second)
            assert w.request(b"DELETE apple\n") == b"OK\n"
            assert w.request(b"GET apple\n") == b"NOTFOUND\n"
            assert w.request(b"GETV apple " + v1.group(1) + b"\n") == b"VALUE red\n"
        for vid in (v1.group(1).decode(), v2.group(1).decode()):
            got = s3.get_object_retention(Bucket="kv", Key="apple", VersionId=vid)["Retention"]
            assert got["Mode"] == "COMPLIANCE"
            with pytest.raises(ClientError) as info:
                s3.delete_object(
                    Bucket="kv", Key="apple", VersionId=vid, BypassGovernanceRetention=True
                )
            assert err(info) == (403, "AccessDenied")
        versions = s3.list_object_versions(Bucket="kv", Prefix="apple")
        assert len(versions["Versions"]) == 2 and len(versions["DeleteMarkers"]) == 1
    finally:
        srv.close()


def test_admin_and_fsck_never_remove_a_protected_version(tmp_path: Path) -> None:
    """``kvbox admin user delete`` refuses a user whose locked bucket stands, and ``kvbox
    fsck --repair`` keeps a protected version even when its bytes are gone."""
    srv = S3Server(tmp_path / "data").start()
    try:
        carol = srv.client(*srv.new_user("carol"))
        b = locked_bucket(carol, "lk-admin")
        big = bytes(range(256)) * 1024  # 256 KiB: stored as a chunk file, not inline
        vid = carol.put_object(Bucket=b, Key="big", Body=big, ObjectLockLegalHoldStatus="ON")[
            "VersionId"
        ]
        gone = run_kvbox("admin", "--server", srv.endpoint, "user", "delete", "carol", env=ROOT_ENV)
        assert gone.returncode != 0, gone.stdout
        assert carol.get_object(Bucket=b, Key="big", VersionId=vid)["Body"].read() == big
    finally:
        srv.close()
    chunks = tmp_path / "data" / "chunks"
    chunk_files = [
        p for p in chunks.rglob("*") if p.is_file() and "tmp" not in p.relative_to(chunks).parts
    ]
    assert len(chunk_files) == 1
    chunk_files[0].unlink()
    repair = run_kvbox("fsck", "--data", str(tmp_path / "data"), "--repair")
    out = repair.stdout.decode()
    assert repair.returncode == 1, out
    assert f"kept {b}/big version {vid}" in out and "restore their chunks from a backup" in out
    srv = S3Server(tmp_path / "data").start()
    try:
        listing = srv.client().list_object_versions(Bucket=b)
        assert [v["VersionId"] for v in listing["Versions"]] == [vid]
    finally:
        srv.close()


def test_cache_mode_refuses_object_lock(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data", "--max-memory", "64MiB").start()
    try:
        with pytest.raises(ClientError) as info:
            srv.client().create_bucket(Bucket="lk-cache", ObjectLockEnabledForBucket=True)
        status, code = err(info)
        assert (status, code) == (400, "InvalidArgument")
        assert "cache mode" in info.value.response["Error"]["Message"]
    finally:
        srv.close()
