"""S3 bucket lifecycle end to end: configurations through real clients, and the background
worker of a real ``kvbox serve`` expiring objects on its (test-moved) clock.

Layer: tests/e2e. Rules: the server runs with the hidden, test-only
``--lifecycle-test-clock``, so a test moves lifecycle time forward with a root-signed
``POST /_kvbox/lifecycle`` (docs/operations.md) instead of waiting days; nothing is
patched inside the server. Passes run when asked (``"run": true``), except in the test
that proves the worker runs by itself on ``--lifecycle-interval``. Expected answers are
AWS's, from the S3 API reference (Put/Get/DeleteBucketLifecycleConfiguration, PutObject,
HeadObject's ``x-amz-expiration``) and the user guide's lifecycle chapters (how days are
counted: to the next midnight UTC; expired object delete markers; noncurrent versions;
incomplete multipart uploads). Every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server, signed
from ._s3clients import AwsCli, S3Cmd, S3Target

DAY = 86_400.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(
        tmp_path_factory, "s3life", "--lifecycle-test-clock", "--lifecycle-interval", "0"
    ) as s:
        yield s


@pytest.fixture(scope="module", params=["default", "s3v4"])
def s3(srv: S3Server, request: pytest.FixtureRequest) -> Any:
    return srv.default_client() if request.param == "default" else srv.client()


_SEQ = iter(range(1_000_000))


def bucket(s3: Any, stem: str, *, versioned: bool = False, lock: bool = False) -> str:
    name = f"{stem}-{next(_SEQ)}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    if versioned and not lock:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def rules(s3: Any, name: str, *rs: dict[str, Any]) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": list(rs)})


def lifecycle(srv: S3Server, **request: Any) -> dict[str, Any]:
    """``POST /_kvbox/lifecycle`` as root: move the clock (``offset_seconds``), run a pass
    (``run``); the answer is the pass's report."""
    reply = signed(srv, "POST", "/_kvbox/lifecycle", body=json.dumps(request).encode())
    assert reply.status == 200, reply.body
    out: dict[str, Any] = json.loads(reply.body)
    return out


def run_at(srv: S3Server, days: float) -> dict[str, Any]:
    """A pass as if ``days`` days had gone by since the test started the server's clock."""
    return lifecycle(srv, offset_seconds=days * DAY, run=True)


@pytest.fixture(autouse=True)
def real_time(srv: S3Server) -> Iterator[None]:
    """Every test starts (and leaves the server) at the real time."""
    lifecycle(srv, offset_seconds=0)
    yield
    lifecycle(srv, offset_seconds=0)


def keys(s3: Any, name: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])]


def err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return int(r["ResponseMetadata"]["HTTPStatusCode"]), str(r["Error"]["Code"])


def next_midnight(when: datetime, days: int) -> datetime:
    """AWS's rule: the time plus ``days``, rounded up to the next midnight UTC."""
    t = when + timedelta(days=days)
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == t else midnight + timedelta(days=1)


# --- the configuration ---------------------------------------------------------------


RULES = [
    {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}},
    {
        "ID": "tmp",
        "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "kind", "Value": "scratch"}]}},
        "Status": "Disabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 5, "NewerNoncurrentVersions": 2},
    },
    {
        "ID": "uploads",
        "Filter": {"ObjectSizeGreaterThan": 0},
        "Status": "Enabled",
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    },
    {
        "ID": "mpu",
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    },
]


def test_put_get_delete_configuration(s3: Any) -> None:
    b = bucket(s3, "lc-conf")
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert err(info) == (404, "NoSuchLifecycleConfiguration")
    rules(s3, b, *RULES)
    got = s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert got["Rules"] == RULES
    s3.delete_bucket_lifecycle(Bucket=b)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert err(info) == (404, "NoSuchLifecycleConfiguration")
    s3.delete_bucket_lifecycle(Bucket=b)  # deleting none is fine, as on AWS


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [
        (
            {"ID": "a", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}},
            400,
            "InvalidArgument",
        ),
        ({"ID": "a", "Filter": {}, "Status": "On", "Expiration": {"Days": 1}}, 400, "MalformedXML"),
        (
            {"ID": "a" * 256, "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}},
            400,
            "InvalidArgument",
        ),
        ({"ID": "a", "Filter": {}, "Status": "Enabled"}, 400, "InvalidRequest"),
        (
            {
                "ID": "a",
                "Filter": {},
                "Status": "Enabled",
                "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
            },
            501,
            "NotImplemented",
        ),
    ],
)
def test_bad_configurations_get_aws_errors(
    s3: Any, rule: dict[str, Any], status: int, code: str
) -> None:
    b = bucket(s3, "lc-bad")
    with pytest.raises(ClientError) as info:
        rules(s3, b, rule)
    assert err(info) == (status, code)
    with pytest.raises(ClientError) as info:  # nothing was stored
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert err(info) == (404, "NoSuchLifecycleConfiguration")


def test_the_body_needs_content_md5_or_a_checksum(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-md5")
    body = (
        b'<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule>'
        b"<ID>r</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"
        b"</Rule></LifecycleConfiguration>"
    )
    bare = signed(srv, "PUT", f"/{b}", "lifecycle=", body=body)
    assert (bare.status, bare.code) == (400, "InvalidRequest")
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    ok = signed(srv, "PUT", f"/{b}", "lifecycle=", headers={"Content-MD5": md5}, body=body)
    assert ok.status == 200, ok.body


def test_x_amz_expiration_on_put_head_and_get(s3: Any) -> None:
    b = bucket(s3, "lc-header")
    rules(
        s3,
        b,
        {
            "ID": "logs rule",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Expiration": {"Days": 3},
        },
    )
    put = s3.put_object(Bucket=b, Key="logs/a", Body=b"x")
    head = s3.head_object(Bucket=b, Key="logs/a")
    want = next_midnight(head["LastModified"], 3)
    for r in (put, head, s3.get_object(Bucket=b, Key="logs/a")):
        m = re.fullmatch(r'expiry-date="([^"]+)", rule-id="logs rule"', r["Expiration"])
        assert m, r["Expiration"]
        assert parsedate_to_datetime(m.group(1)) == want
    assert "Expiration" not in s3.put_object(Bucket=b, Key="data/b", Body=b"x")
    assert "Expiration" not in s3.head_object(Bucket=b, Key="data/b")


# --- what the worker does -------------------------------------------------------------


def test_unversioned_objects_expire_on_their_day(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-plain")
    rules(
        s3,
        b,
        {
            "ID": "logs",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Expiration": {"Days": 2},
        },
    )
    s3.put_object(Bucket=b, Key="logs/a", Body=b"1")
    s3.put_object(Bucket=b, Key="data/b", Body=b"2")
    assert run_at(srv, 1)["expired_current"] == 0
    assert keys(s3, b) == ["data/b", "logs/a"]
    report = run_at(srv, 3)  # two days after the next midnight, whatever the hour now
    assert report["expired_current"] == 1
    assert keys(s3, b) == ["data/b"]


def test_versioned_current_noncurrent_and_expired_delete_markers(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-ver", versioned=True)
    rules(
        s3,
        b,
        {"ID": "cur", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {
            "ID": "old",
            "Filter": {},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        },
    )
    vid = s3.put_object(Bucket=b, Key="k", Body=b"v")["VersionId"]
    assert run_at(srv, 2)["expired_current"] == 1  # a delete marker on top
    listing = s3.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in listing["Versions"]] == [vid]
    assert len(listing["DeleteMarkers"]) == 1 and listing["DeleteMarkers"][0]["IsLatest"]
    assert run_at(srv, 4)["expired_noncurrent"] == 1  # the old version, a day after
    # The marker is now alone: a Days rule cleans up expired object delete markers.
    assert run_at(srv, 6)["delete_markers_removed"] == 1
    listing = s3.list_object_versions(Bucket=b)
    assert "Versions" not in listing and "DeleteMarkers" not in listing


def test_newer_noncurrent_versions_are_kept(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-newer", versioned=True)
    rules(
        s3,
        b,
        {
            "ID": "keep2",
            "Filter": {},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2},
        },
    )
    vids = [s3.put_object(Bucket=b, Key="k", Body=str(i).encode())["VersionId"] for i in range(5)]
    assert run_at(srv, 3)["expired_noncurrent"] == 2
    left = [v["VersionId"] for v in s3.list_object_versions(Bucket=b)["Versions"]]
    assert left == vids[::-1][:3]


def test_tag_and_size_filters(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-filter")
    rules(
        s3,
        b,
        {
            "ID": "scratch",
            "Filter": {
                "And": {"Tags": [{"Key": "kind", "Value": "scratch"}], "ObjectSizeLessThan": 100}
            },
            "Status": "Enabled",
            "Expiration": {"Days": 1},
        },
    )
    s3.put_object(Bucket=b, Key="small-scratch", Body=b"x", Tagging="kind=scratch")
    s3.put_object(Bucket=b, Key="big-scratch", Body=b"x" * 200, Tagging="kind=scratch")
    s3.put_object(Bucket=b, Key="small-keep", Body=b"x", Tagging="kind=keep")
    run_at(srv, 3)
    assert keys(s3, b) == ["big-scratch", "small-keep"]


def test_incomplete_multipart_uploads_are_aborted(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-mpu")
    rules(
        s3,
        b,
        {
            "ID": "mpu",
            "Filter": {"Prefix": "tmp/"},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        },
    )
    stale = s3.create_multipart_upload(Bucket=b, Key="tmp/a")["UploadId"]
    kept = s3.create_multipart_upload(Bucket=b, Key="keep/b")["UploadId"]
    assert run_at(srv, 1)["uploads_aborted"] == 0
    assert run_at(srv, 3)["uploads_aborted"] == 1
    left = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b)["Uploads"]]
    assert left == [kept] and stale not in left


def test_object_lock_wins_over_lifecycle(srv: S3Server, s3: Any) -> None:
    b = bucket(s3, "lc-lock", lock=True)
    rules(
        s3,
        b,
        {
            "ID": "all",
            "Filter": {},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        },
        {
            "ID": "markers",
            "Filter": {"Prefix": "none/"},
            "Status": "Enabled",
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
    )
    until = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    retained = s3.put_object(
        Bucket=b,
        Key="retained",
        Body=b"r",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]
    held = s3.put_object(Bucket=b, Key="held", Body=b"h", ObjectLockLegalHoldStatus="ON")[
        "VersionId"
    ]
    assert run_at(srv, 2)["expired_current"] == 2  # delete markers on top: allowed
    report = run_at(srv, 5)
    assert report["skipped_locked"] == 2 and report["expired_noncurrent"] == 0
    assert s3.get_object(Bucket=b, Key="retained", VersionId=retained)["Body"].read() == b"r"
    report = run_at(srv, 12)  # the retention is over; the legal hold is not
    assert report["expired_noncurrent"] == 1 and report["skipped_locked"] == 1
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="retained", VersionId=retained)
    assert s3.get_object(Bucket=b, Key="held", VersionId=held)["Body"].read() == b"h"
    s3.put_object_legal_hold(Bucket=b, Key="held", VersionId=held, LegalHold={"Status": "OFF"})


def _metric(srv: S3Server, line_start: str) -> float:
    with urllib.request.urlopen(srv.endpoint + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not in /metrics:\n{text[:3000]}")


def test_progress_in_metrics(srv: S3Server, s3: Any) -> None:
    before = _metric(srv, 'kvbox_lifecycle_actions_total{action="expire_current"}')
    passes = _metric(srv, "kvbox_lifecycle_passes_total")
    b = bucket(s3, "lc-metrics")
    rules(s3, b, {"ID": "all", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}})
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    run_at(srv, 3)
    assert _metric(srv, 'kvbox_lifecycle_actions_total{action="expire_current"}') == before + 1
    assert _metric(srv, "kvbox_lifecycle_passes_total") == passes + 1
    assert _metric(srv, "kvbox_lifecycle_running") == 0
    assert _metric(srv, "kvbox_lifecycle_last_pass_end_timestamp_seconds") > time.time() + 2 * DAY


# --- the worker on its own schedule, and the clock's guard ---------------------------------


def test_the_worker_runs_by_itself(tmp_path: Path) -> None:
    srv = S3Server(
        tmp_path / "data", "--lifecycle-test-clock", "--lifecycle-interval", "0.2"
    ).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="lc-auto")
        rules(
            s3,
            "lc-auto",
            {"ID": "all", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}},
        )
        s3.put_object(Bucket="lc-auto", Key="k", Body=b"x")
        lifecycle(srv, offset_seconds=3 * DAY)  # no "run": the schedule does it
        deadline = time.monotonic() + 30
        while keys(s3, "lc-auto") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert keys(s3, "lc-auto") == []
    finally:
        srv.close()


def test_the_clock_moves_only_on_a_test_server(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data").start()
    try:
        moved = signed(srv, "POST", "/_kvbox/lifecycle", body=b'{"offset_seconds": 86400}')
        assert (moved.status, moved.code) == (403, "AccessDenied")
        assert b"--lifecycle-test-clock" in moved.body
        ran = signed(srv, "POST", "/_kvbox/lifecycle", body=b'{"run": true}')
        assert ran.status == 200 and json.loads(ran.body)["buckets"] == 0
        stranger = urllib.request.Request(
            srv.endpoint + "/_kvbox/lifecycle", data=b"{}", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(stranger, timeout=30)
        info.value.close()
        assert info.value.code == 403
    finally:
        srv.close()


# --- other clients -------------------------------------------------------------------


def test_lifecycle_through_the_aws_cli(srv: S3Server, tmp_path: Path) -> None:
    aws = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    b = f"lc-cli-{next(_SEQ)}"
    aws("s3api", "create-bucket", "--bucket", b)
    conf = tmp_path / "lifecycle.json"
    conf.write_text(json.dumps({"Rules": RULES[:1]}))
    aws(
        "s3api", "put-bucket-lifecycle-configuration", "--bucket", b,
        "--lifecycle-configuration", f"file://{conf}",
    )  # fmt: skip
    assert aws.json("get-bucket-lifecycle-configuration", "--bucket", b)["Rules"] == RULES[:1]
    aws("s3api", "delete-bucket-lifecycle", "--bucket", b)
    gone = aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", b, check=False)
    assert gone.returncode != 0 and "NoSuchLifecycleConfiguration" in gone.stderr


def test_lifecycle_through_s3cmd(srv: S3Server, tmp_path: Path) -> None:
    """s3cmd's ``expire`` writes a whole configuration of its own (a rule with no ID,
    which gets one), ``getlifecycle`` reads it back, ``dellifecycle`` removes it, and the
    worker expires what it says."""
    s3 = srv.client()
    b = bucket(s3, "lc-s3cmd")
    cmd = S3Cmd(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "s3cmd")
    cmd("expire", f"s3://{b}", "--expiry-days=2", "--expiry-prefix=logs/")
    shown = cmd("getlifecycle", f"s3://{b}").stdout
    assert "<Prefix>logs/</Prefix>" in shown and "<Days>2</Days>" in shown, shown
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
    assert rule["Filter"] == {"Prefix": "logs/"} and rule["Expiration"] == {"Days": 2}
    assert rule["ID"]
    s3.put_object(Bucket=b, Key="logs/a", Body=b"x")
    s3.put_object(Bucket=b, Key="keep", Body=b"x")
    run_at(srv, 4)
    assert keys(s3, b) == ["keep"]
    cmd("dellifecycle", f"s3://{b}")
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert err(info) == (404, "NoSuchLifecycleConfiguration")
