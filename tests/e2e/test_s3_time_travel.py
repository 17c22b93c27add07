"""S3 time-travel reads (``x-kvbox-at``) against a real ``kvbox serve``: a read of a past
instant is access-checked as the version it serves (its ACL, its tags, GetObjectVersion).

Layer: tests/e2e. Rules: the ``lab`` server (tests/e2e/_lab.py): root writes with boto3,
anonymous readers ask over plain HTTP. GW-KV's GETAT is in test_gwkv_versions.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ._lab import (
    Lab,
    allow_get,
    anon,
    deny_get_if,
    instant_between,
    policy,
    signed,
    versioned,
)

# --- time-travel reads (x-kvbox-at) are access-checked as the version they serve -----------


def test_time_travel_read_uses_the_served_versions_acl(lab: Lab, lab_s3: Any) -> None:
    b = versioned(lab_s3, "rv-tt-acl", acls=True)
    at = instant_between(
        lambda: lab_s3.put_object(Bucket=b, Key="k", Body=b"PRIVATE-OLD"),
        lambda: lab_s3.put_object(Bucket=b, Key="k", Body=b"public-new", ACL="public-read"),
    )
    assert anon(lab.srv.http_port, "GET", f"/{b}/k").body == b"public-new"
    old = anon(lab.srv.http_port, "GET", f"/{b}/k?x-kvbox-at={at}")
    assert old.status == 403 and old.code == "AccessDenied", old
    assert b"PRIVATE-OLD" not in old.body


def test_time_travel_read_honours_the_served_versions_tags(lab: Lab, lab_s3: Any) -> None:
    b = versioned(lab_s3, "rv-tt-tags")
    lab_s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            allow_get(b),
            deny_get_if(b, {"StringEquals": {"s3:ExistingObjectTag/class": "secret"}}),
        ),
    )
    at = instant_between(
        lambda: lab_s3.put_object(Bucket=b, Key="doc", Body=b"TOP-SECRET", Tagging="class=secret"),
        lambda: lab_s3.put_object(Bucket=b, Key="doc", Body=b"redacted"),
    )
    old = anon(lab.srv.http_port, "GET", f"/{b}/doc?x-kvbox-at={at}")
    assert old.status == 403, old
    header = anon(lab.srv.http_port, "GET", f"/{b}/doc", {"x-kvbox-at": str(at)})
    assert header.status == 403, header


def test_time_travel_read_of_a_deleted_object_needs_get_object_version(
    lab: Lab, lab_s3: Any
) -> None:
    b = versioned(lab_s3, "rv-tt-deleted")
    lab_s3.put_bucket_policy(Bucket=b, Policy=policy(allow_get(b)))
    at = instant_between(
        lambda: lab_s3.put_object(Bucket=b, Key="leak", Body=b"DELETED-SECRET"),
        lambda: lab_s3.delete_object(Bucket=b, Key="leak"),
    )
    by_id = lab_s3.list_object_versions(Bucket=b, Prefix="leak")["Versions"][0]["VersionId"]
    # The honest ways to a noncurrent version are refused to the public...
    assert anon(lab.srv.http_port, "GET", f"/{b}/leak?versionId={by_id}").status == 403
    assert anon(lab.srv.http_port, "GET", f"/{b}/leak").status == 404
    # ...and so must the kvbox extension be.
    old = anon(lab.srv.http_port, "GET", f"/{b}/leak?x-kvbox-at={at}")
    assert old.status == 403, old


def test_time_travel_garbage_is_a_clean_400(lab: Lab, lab_s3: Any) -> None:
    b = versioned(lab_s3, "rv-tt-garbage")
    lab_s3.put_object(Bucket=b, Key="k", Body=b"x")
    for bad in ("yesterday", "9" * 40, "-1e999", "2024-13-45T99:99:99Z", "%FF", "1" * 5000):
        got = signed(lab.srv, "GET", f"/{b}/k?x-kvbox-at={quote(bad, safe='')}")
        assert got.status == 400 and got.code in ("InvalidArgument", "InvalidURI"), (bad, got)
