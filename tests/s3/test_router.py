"""kvbox.s3.router: one table of requests -> endpoints, plus botocore as oracle."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from botocore import serialize  # type: ignore[import-untyped]
from botocore.handlers import handle_copy_source_param  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.s3.errors import S3Error
from kvbox.s3.names import MAX_KEY_BYTES, RouteError, valid_bucket_name
from kvbox.s3.router import (
    ACTIONS,
    CopySource,
    Endpoint,
    Op,
    parse_copy_source,
    route,
)

from ._oracle import _MODEL

H = {"host": "localhost:9000"}


def r(
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    domain: str | None = None,
) -> Endpoint:
    pairs = parse_qsl(query, keep_blank_values=True)
    return route(method, path, pairs, {**H, **(headers or {})}, domain=domain)


def fails(code: str, method: str, path: str, query: str = "", **kw: Any) -> S3Error:
    with pytest.raises(RouteError) as info:
        r(method, path, query, **kw)
    assert info.value.code == code, info.value
    return info.value


# (method, path, query, headers, op, bucket, key, action)
CASES: list[tuple[str, str, str, dict[str, str], Op, str | None, str | None, str | None]] = [
    ("GET", "/", "", {}, Op.LIST_BUCKETS, None, None, "s3:ListAllMyBuckets"),
    ("GET", "/", "x-id=ListBuckets", {}, Op.LIST_BUCKETS, None, None, "s3:ListAllMyBuckets"),
    # bucket level
    ("PUT", "/b1b", "", {}, Op.CREATE_BUCKET, "b1b", None, "s3:CreateBucket"),
    ("HEAD", "/b1b", "", {}, Op.HEAD_BUCKET, "b1b", None, "s3:ListBucket"),
    ("DELETE", "/b1b", "", {}, Op.DELETE_BUCKET, "b1b", None, "s3:DeleteBucket"),
    ("GET", "/b1b", "location", {}, Op.GET_BUCKET_LOCATION, "b1b", None, "s3:GetBucketLocation"),
    ("GET", "/b1b", "", {}, Op.LIST_OBJECTS, "b1b", None, "s3:ListBucket"),
    ("GET", "/b1b/", "prefix=a&marker=b", {}, Op.LIST_OBJECTS, "b1b", None, "s3:ListBucket"),
    ("GET", "/b1b", "list-type=2", {}, Op.LIST_OBJECTS_V2, "b1b", None, "s3:ListBucket"),
    ("GET", "/b1b", "versions", {}, Op.LIST_OBJECT_VERSIONS, "b1b", None, "s3:ListBucketVersions"),
    (
        "GET",
        "/b1b",
        "uploads",
        {},
        Op.LIST_MULTIPART_UPLOADS,
        "b1b",
        None,
        "s3:ListBucketMultipartUploads",
    ),
    ("POST", "/b1b", "delete", {}, Op.DELETE_OBJECTS, "b1b", None, "s3:DeleteObject"),
    (
        "GET",
        "/b1b",
        "versioning",
        {},
        Op.GET_BUCKET_VERSIONING,
        "b1b",
        None,
        "s3:GetBucketVersioning",
    ),
    (
        "PUT",
        "/b1b",
        "versioning",
        {},
        Op.PUT_BUCKET_VERSIONING,
        "b1b",
        None,
        "s3:PutBucketVersioning",
    ),
    ("GET", "/b1b", "policy", {}, Op.GET_BUCKET_POLICY, "b1b", None, "s3:GetBucketPolicy"),
    ("PUT", "/b1b", "policy", {}, Op.PUT_BUCKET_POLICY, "b1b", None, "s3:PutBucketPolicy"),
    ("DELETE", "/b1b", "policy", {}, Op.DELETE_BUCKET_POLICY, "b1b", None, "s3:DeleteBucketPolicy"),
    (
        "GET",
        "/b1b",
        "policyStatus",
        {},
        Op.GET_BUCKET_POLICY_STATUS,
        "b1b",
        None,
        "s3:GetBucketPolicyStatus",
    ),
    (
        "GET",
        "/b1b",
        "publicAccessBlock",
        {},
        Op.GET_PUBLIC_ACCESS_BLOCK,
        "b1b",
        None,
        "s3:GetBucketPublicAccessBlock",
    ),
    (
        "PUT",
        "/b1b",
        "publicAccessBlock",
        {},
        Op.PUT_PUBLIC_ACCESS_BLOCK,
        "b1b",
        None,
        "s3:PutBucketPublicAccessBlock",
    ),
    (
        "DELETE",
        "/b1b",
        "publicAccessBlock",
        {},
        Op.DELETE_PUBLIC_ACCESS_BLOCK,
        "b1b",
        None,
        "s3:PutBucketPublicAccessBlock",
    ),
    ("GET", "/b1b", "acl", {}, Op.GET_BUCKET_ACL, "b1b", None, "s3:GetBucketAcl"),
    ("PUT", "/b1b", "acl", {}, Op.PUT_BUCKET_ACL, "b1b", None, "s3:PutBucketAcl"),
    ("GET", "/b1b", "website", {}, Op.GET_BUCKET_WEBSITE, "b1b", None, "s3:GetBucketWebsite"),
    ("PUT", "/b1b", "website", {}, Op.PUT_BUCKET_WEBSITE, "b1b", None, "s3:PutBucketWebsite"),
    (
        "DELETE",
        "/b1b",
        "website",
        {},
        Op.DELETE_BUCKET_WEBSITE,
        "b1b",
        None,
        "s3:DeleteBucketWebsite",
    ),
    ("GET", "/b1b", "cors", {}, Op.GET_BUCKET_CORS, "b1b", None, "s3:GetBucketCORS"),
    ("PUT", "/b1b", "cors", {}, Op.PUT_BUCKET_CORS, "b1b", None, "s3:PutBucketCORS"),
    ("DELETE", "/b1b", "cors", {}, Op.DELETE_BUCKET_CORS, "b1b", None, "s3:PutBucketCORS"),
    ("GET", "/b1b", "tagging", {}, Op.GET_BUCKET_TAGGING, "b1b", None, "s3:GetBucketTagging"),
    ("PUT", "/b1b", "tagging", {}, Op.PUT_BUCKET_TAGGING, "b1b", None, "s3:PutBucketTagging"),
    ("DELETE", "/b1b", "tagging", {}, Op.DELETE_BUCKET_TAGGING, "b1b", None, "s3:PutBucketTagging"),
    (
        "GET",
        "/b1b",
        "lifecycle",
        {},
        Op.GET_BUCKET_LIFECYCLE,
        "b1b",
        None,
        "s3:GetLifecycleConfiguration",
    ),
    (
        "PUT",
        "/b1b",
        "lifecycle",
        {},
        Op.PUT_BUCKET_LIFECYCLE,
        "b1b",
        None,
        "s3:PutLifecycleConfiguration",
    ),
    (
        "DELETE",
        "/b1b",
        "lifecycle",
        {},
        Op.DELETE_BUCKET_LIFECYCLE,
        "b1b",
        None,
        "s3:PutLifecycleConfiguration",
    ),
    (
        "PUT",
        "/b1b",
        "object-lock",
        {},
        Op.PUT_OBJECT_LOCK_CONFIGURATION,
        "b1b",
        None,
        "s3:PutBucketObjectLockConfiguration",
    ),
    (
        "GET",
        "/b1b",
        "object-lock",
        {},
        Op.GET_OBJECT_LOCK_CONFIGURATION,
        "b1b",
        None,
        "s3:GetBucketObjectLockConfiguration",
    ),
    (
        "PUT",
        "/b1b/k",
        "retention",
        {},
        Op.PUT_OBJECT_RETENTION,
        "b1b",
        "k",
        "s3:PutObjectRetention",
    ),
    (
        "GET",
        "/b1b/k",
        "retention&versionId=v",
        {},
        Op.GET_OBJECT_RETENTION,
        "b1b",
        "k",
        "s3:GetObjectRetention",
    ),
    (
        "PUT",
        "/b1b/k",
        "legal-hold",
        {},
        Op.PUT_OBJECT_LEGAL_HOLD,
        "b1b",
        "k",
        "s3:PutObjectLegalHold",
    ),
    (
        "GET",
        "/b1b/k",
        "legal-hold",
        {},
        Op.GET_OBJECT_LEGAL_HOLD,
        "b1b",
        "k",
        "s3:GetObjectLegalHold",
    ),
    ("OPTIONS", "/b1b", "", {}, Op.PREFLIGHT, "b1b", None, None),
    # object level
    ("PUT", "/b1b/k", "", {}, Op.PUT_OBJECT, "b1b", "k", "s3:PutObject"),
    ("GET", "/b1b/k", "", {}, Op.GET_OBJECT, "b1b", "k", "s3:GetObject"),
    ("GET", "/b1b/k", "versionId=v1", {}, Op.GET_OBJECT, "b1b", "k", "s3:GetObjectVersion"),
    ("GET", "/b1b/k", "response-content-type=a/b", {}, Op.GET_OBJECT, "b1b", "k", "s3:GetObject"),
    ("HEAD", "/b1b/k", "", {}, Op.HEAD_OBJECT, "b1b", "k", "s3:GetObject"),
    ("HEAD", "/b1b/k", "versionId=null", {}, Op.HEAD_OBJECT, "b1b", "k", "s3:GetObjectVersion"),
    ("DELETE", "/b1b/k", "", {}, Op.DELETE_OBJECT, "b1b", "k", "s3:DeleteObject"),
    ("DELETE", "/b1b/k", "versionId=v", {}, Op.DELETE_OBJECT, "b1b", "k", "s3:DeleteObjectVersion"),
    (
        "PUT",
        "/b1b/k",
        "",
        {"x-amz-copy-source": "/src/s"},
        Op.COPY_OBJECT,
        "b1b",
        "k",
        "s3:PutObject",
    ),
    ("PUT", "/b1b/k", "tagging", {}, Op.PUT_OBJECT_TAGGING, "b1b", "k", "s3:PutObjectTagging"),
    (
        "PUT",
        "/b1b/k",
        "tagging&versionId=v",
        {},
        Op.PUT_OBJECT_TAGGING,
        "b1b",
        "k",
        "s3:PutObjectVersionTagging",
    ),
    ("GET", "/b1b/k", "tagging", {}, Op.GET_OBJECT_TAGGING, "b1b", "k", "s3:GetObjectTagging"),
    (
        "GET",
        "/b1b/k",
        "tagging&versionId=v",
        {},
        Op.GET_OBJECT_TAGGING,
        "b1b",
        "k",
        "s3:GetObjectVersionTagging",
    ),
    (
        "DELETE",
        "/b1b/k",
        "tagging",
        {},
        Op.DELETE_OBJECT_TAGGING,
        "b1b",
        "k",
        "s3:DeleteObjectTagging",
    ),
    (
        "DELETE",
        "/b1b/k",
        "tagging&versionId=v",
        {},
        Op.DELETE_OBJECT_TAGGING,
        "b1b",
        "k",
        "s3:DeleteObjectVersionTagging",
    ),
    ("GET", "/b1b/k", "acl", {}, Op.GET_OBJECT_ACL, "b1b", "k", "s3:GetObjectAcl"),
    (
        "GET",
        "/b1b/k",
        "acl&versionId=v",
        {},
        Op.GET_OBJECT_ACL,
        "b1b",
        "k",
        "s3:GetObjectVersionAcl",
    ),
    ("PUT", "/b1b/k", "acl", {}, Op.PUT_OBJECT_ACL, "b1b", "k", "s3:PutObjectAcl"),
    (
        "GET",
        "/b1b/k",
        "attributes",
        {},
        Op.GET_OBJECT_ATTRIBUTES,
        "b1b",
        "k",
        "s3:GetObjectAttributes",
    ),
    ("POST", "/b1b/k", "uploads", {}, Op.CREATE_MULTIPART_UPLOAD, "b1b", "k", "s3:PutObject"),
    ("PUT", "/b1b/k", "partNumber=2&uploadId=u", {}, Op.UPLOAD_PART, "b1b", "k", "s3:PutObject"),
    (
        "PUT",
        "/b1b/k",
        "partNumber=2&uploadId=u",
        {"x-amz-copy-source": "src/s"},
        Op.UPLOAD_PART_COPY,
        "b1b",
        "k",
        "s3:PutObject",
    ),
    ("POST", "/b1b/k", "uploadId=u", {}, Op.COMPLETE_MULTIPART_UPLOAD, "b1b", "k", "s3:PutObject"),
    (
        "DELETE",
        "/b1b/k",
        "uploadId=u",
        {},
        Op.ABORT_MULTIPART_UPLOAD,
        "b1b",
        "k",
        "s3:AbortMultipartUpload",
    ),
    ("GET", "/b1b/k", "uploadId=u", {}, Op.LIST_PARTS, "b1b", "k", "s3:ListMultipartUploadParts"),
    (
        "PUT",
        "/b1b",
        "ownershipControls",
        {},
        Op.PUT_BUCKET_OWNERSHIP_CONTROLS,
        "b1b",
        None,
        "s3:PutBucketOwnershipControls",
    ),
    (
        "GET",
        "/b1b",
        "ownershipControls",
        {},
        Op.GET_BUCKET_OWNERSHIP_CONTROLS,
        "b1b",
        None,
        "s3:GetBucketOwnershipControls",
    ),
    (
        "DELETE",
        "/b1b",
        "ownershipControls",
        {},
        Op.DELETE_BUCKET_OWNERSHIP_CONTROLS,
        "b1b",
        None,
        "s3:PutBucketOwnershipControls",
    ),
    ("POST", "/b1b", "", {}, Op.POST_OBJECT, "b1b", None, "s3:PutObject"),
    ("OPTIONS", "/b1b/k", "", {}, Op.PREFLIGHT, "b1b", "k", None),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "op", "bucket", "key", "action"), CASES
)
def test_route_table(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    op: Op,
    bucket: str | None,
    key: str | None,
    action: str | None,
) -> None:
    ep = r(method, path, query, headers)
    assert (ep.op, ep.bucket, ep.key, ep.action) == (op, bucket, key, action)
    assert ep.virtual_host is False


def test_every_op_is_routed_and_has_an_action_row() -> None:
    assert {case[4] for case in CASES} == set(Op)
    assert set(ACTIONS) == set(Op)


def test_resources_and_ids() -> None:
    assert r("GET", "/").resource == "*"
    assert r("GET", "/b1b", "list-type=2").resource == "arn:aws:s3:::b1b"
    assert r("POST", "/b1b", "delete").resource == "arn:aws:s3:::b1b"
    assert r("GET", "/b1b/a/b c").resource == "arn:aws:s3:::b1b/a/b c"
    assert r("OPTIONS", "/b1b").resource == "arn:aws:s3:::b1b"
    assert r("OPTIONS", "/b1b/k").resource == "arn:aws:s3:::b1b/k"
    ep = r("PUT", "/b1b/k", "partNumber=7&uploadId=abc")
    assert (ep.upload_id, ep.part_number, ep.version_id) == ("abc", 7, None)
    ep = r("GET", "/b1b/k", "partNumber=3&versionId=v")
    assert (ep.part_number, ep.version_id) == (3, "v")
    # repeated parameters: the first wins
    assert r("GET", "/b1b/k", "versionId=a&versionId=b").version_id == "a"


def test_extra_actions_from_headers() -> None:
    tagged = r("PUT", "/b1b/k", headers={"x-amz-tagging": "a=1", "x-amz-acl": "public-read"})
    assert tagged.actions == ("s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectAcl")
    copied = r("PUT", "/b1b/k", headers={"x-amz-copy-source": "s/k", "x-amz-grant-read": "id=x"})
    assert copied.actions == ("s3:PutObject", "s3:PutObjectAcl")
    mpu = r("POST", "/b1b/k", "uploads", headers={"x-amz-tagging": ""})
    assert mpu.actions == ("s3:PutObject", "s3:PutObjectTagging")
    assert r(
        "PUT", "/b1b/k", "partNumber=1&uploadId=u", headers={"x-amz-tagging": "a=1"}
    ).actions == ("s3:PutObject",)
    assert r("PUT", "/b1b", headers={"x-amz-acl": "private"}).actions == (
        "s3:CreateBucket",
        "s3:PutBucketAcl",
    )
    assert r("OPTIONS", "/b1b/k").actions == ()


def test_virtual_host_addressing() -> None:
    d = "s3.example.test"
    ep = r("GET", "/a/b", headers={"host": "My.Bucket.S3.Example.Test:9000"}, domain=d)
    assert (ep.op, ep.bucket, ep.key, ep.virtual_host) == (Op.GET_OBJECT, "my.bucket", "a/b", True)
    ep = r("GET", "/", "list-type=2", headers={"host": "photos.s3.example.test"}, domain=d)
    assert (ep.op, ep.bucket, ep.virtual_host) == (Op.LIST_OBJECTS_V2, "photos", True)
    ep = r("GET", "//k", headers={"host": "photos.s3.example.test."}, domain=d)
    assert (ep.bucket, ep.key) == ("photos", "/k")
    # the bare domain, another host, or no domain setting: path style
    ep = r("GET", "/photos/k", headers={"host": "s3.example.test"}, domain=d)
    assert (ep.bucket, ep.key, ep.virtual_host) == ("photos", "k", False)
    ep = r("GET", "/photos/k", headers={"host": "127.0.0.1:9000"}, domain=d)
    assert (ep.bucket, ep.key) == ("photos", "k")
    ep = r("GET", "/photos/k", headers={"host": "[::1]:9000"}, domain=d)
    assert (ep.bucket, ep.key) == ("photos", "k")
    ep = r("GET", "/photos/k", headers={"host": "photos.s3.example.test"}, domain=None)
    assert (ep.bucket, ep.key) == ("photos", "k")
    ep = r("GET", "/", headers={"host": "s3.example.test"}, domain=d)
    assert ep.op is Op.LIST_BUCKETS
    # headers given as a plain dict with other capitalisation
    ep = route("GET", "/", [], {"Host": "b1b.s3.example.test"}, domain=d)
    assert ep.bucket == "b1b"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("a+b", "a+b"),
        ("a%2Bb", "a+b"),
        ("a%20b", "a b"),
        ("a%2Fb", "a/b"),
        ("a%2fb", "a/b"),
        ("../..", "../.."),
        ("a/../b", "a/../b"),
        ("./a", "./a"),
        ("a//b/", "a//b/"),
        ("%2E%2E/x", "../x"),
        ("%E2%82%AC/%F0%9F%98%80", "€/😀"),
        ("é", "é"),
        ("%25", "%"),
        ("a?b", "a?b"),
    ],
)
def test_key_decoding(raw: str, key: str) -> None:
    assert r("GET", "/b1b/" + raw).key == key


def test_key_rejections() -> None:
    fails("InvalidArgument", "GET", "/b1b/a%00b")
    fails("InvalidURI", "GET", "/b1b/a%zzb")
    fails("InvalidURI", "GET", "/b1b/a%2")
    fails("InvalidURI", "GET", "/b1b/%C3%28")  # invalid UTF-8
    fails("InvalidURI", "GET", "/b1b/%ED%A0%80")  # encoded surrogate
    fails("InvalidURI", "GET", "relative")
    assert r("GET", "/b1b/" + "k" * MAX_KEY_BYTES).key == "k" * MAX_KEY_BYTES
    err = fails("KeyTooLongError", "PUT", "/b1b/" + "k" * (MAX_KEY_BYTES + 1))
    assert err.extra == {"Size": "1025", "MaxSizeAllowed": "1024"}
    fails("KeyTooLongError", "PUT", "/b1b/" + quote("€" * 342))  # 1,026 bytes, 342 chars
    assert r("PUT", "/b1b/" + quote("€" * 341)).key == "€" * 341


def test_bucket_names() -> None:
    assert r("GET", "/kv/k").bucket == "kv"  # GW-KV's bucket: addressable, though short
    assert r("GET", "/Legacy_Bucket").bucket == "Legacy_Bucket"
    fails("InvalidBucketName", "PUT", "/kv")
    fails("InvalidBucketName", "PUT", "/Legacy_Bucket")
    fails("InvalidBucketName", "GET", "/b%2Fc/k")
    fails("InvalidBucketName", "GET", "/b%00c/k")
    fails("InvalidBucketName", "GET", "/" + "b" * 256)
    fails("InvalidBucketName", "GET", "/", headers={"host": "a b.s3.x"}, domain="s3.x")
    assert r("PUT", "/my-bucket.2024").op is Op.CREATE_BUCKET


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("abc", True),
        ("a" * 63, True),
        ("my.bucket-1", True),
        ("1bucket", True),
        ("ab", False),
        ("a" * 64, False),
        ("Abc", False),
        ("ab_c", False),
        ("-abc", False),
        ("abc-", False),
        (".abc", False),
        ("abc.", False),
        ("a..b", False),
        ("192.168.5.4", False),
        ("1.2.3.999", False),
        ("1.2.3", True),
        ("xn--abc", False),
        ("sthree-abc", False),
        ("amzn-s3-demo-bucket", False),
        ("abc-s3alias", False),
        ("abc--ol-s3", False),
        ("abc.mrap", False),
        ("abc--x-s3", False),
        ("abc--table-s3", False),
        ("ab c", False),
        ("abé", False),
    ],
)
def test_valid_bucket_name(name: str, ok: bool) -> None:
    assert valid_bucket_name(name) is ok


def test_argument_errors() -> None:
    err = fails("InvalidArgument", "GET", "/b1b/k", "versionId=")
    assert err.extra["ArgumentName"] == "versionId"
    for bad in ("0", "10001", "x", "-1", "1.5", "", "\u0661"):
        err = fails("InvalidArgument", "PUT", "/b1b/k", f"partNumber={bad}&uploadId=u")
        assert err.extra["ArgumentName"] == "partNumber"
    assert r("PUT", "/b1b/k", "partNumber=10000&uploadId=u").part_number == 10000
    fails("InvalidArgument", "GET", "/b1b/k", "partNumber=0")
    fails("InvalidRequest", "PUT", "/b1b/k", "uploadId=u")
    fails("InvalidRequest", "PUT", "/b1b/k", "partNumber=1")
    fails("InvalidArgument", "GET", "/b1b", "list-type=3")


def test_method_errors() -> None:
    for method in ("PUT", "DELETE", "POST", "HEAD", "PATCH"):
        err = fails("MethodNotAllowed", method, "/")
        assert err.status == 405
        assert err.headers["Allow"] == "GET"
    err = fails("MethodNotAllowed", "POST", "/b1b/k")
    assert err.extra == {"Method": "POST", "ResourceType": "OBJECT"}
    fails("MethodNotAllowed", "PATCH", "/b1b/k")
    fails("MethodNotAllowed", "TRACE", "/b1b")
    assert r("POST", "/b1b").op is Op.POST_OBJECT  # a browser's form upload


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/b1b", "encryption"),
        ("PUT", "/b1b", "replication"),
        ("PUT", "/b1b", "notification"),
        ("GET", "/b1b", "logging"),
        ("GET", "/b1b", "session"),
        ("GET", "/b1b", "abac"),
        ("PUT", "/b1b", "default-storage-class"),
        ("PUT", "/b1b", "metadataJournalTable"),
        ("PUT", "/b1b/k", "encryption"),
        ("GET", "/b1b/k", "part"),
        ("PUT", "/b1b/k", "annotation"),
        ("DELETE", "/b1b/k", "annotation"),
        ("POST", "/b1b/k", "restore"),
        ("POST", "/b1b/k", "select&select-type=2"),
        ("GET", "/b1b/k", "torrent"),
    ],
)
def test_unserved_subresources_are_not_implemented(method: str, path: str, query: str) -> None:
    assert fails("NotImplemented", method, path, query).status == 501


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("DELETE", "/b1b", "object-lock"),
        ("POST", "/b1b", "object-lock"),
        ("DELETE", "/b1b/k", "retention"),
        ("DELETE", "/b1b/k", "legal-hold&versionId=v"),
        ("POST", "/b1b/k", "legal-hold"),
    ],
)
def test_lock_subresources_never_fall_through_to_a_delete(
    method: str, path: str, query: str
) -> None:
    """S3 has no DeleteObjectRetention or DeleteObjectLockConfiguration: a DELETE naming
    one is refused, never taken for a DeleteObject or DeleteBucket."""
    assert fails("MethodNotAllowed", method, path, query).status == 405


def test_lock_headers_need_their_own_actions() -> None:
    ep = r(
        "PUT",
        "/b1b/k",
        headers={"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-legal-hold": "ON"},
    )
    assert ep.actions == ("s3:PutObject", "s3:PutObjectRetention", "s3:PutObjectLegalHold")
    copy = r(
        "PUT",
        "/b1b/k",
        headers={"x-amz-copy-source": "/a/b", "x-amz-object-lock-retain-until-date": "x"},
    )
    assert copy.actions == ("s3:PutObject", "s3:PutObjectRetention")
    mpu = r("POST", "/b1b/k", "uploads", headers={"x-amz-object-lock-legal-hold": "OFF"})
    assert mpu.actions == ("s3:PutObject", "s3:PutObjectLegalHold")


def test_copy_source() -> None:
    assert parse_copy_source("src/a/b") == CopySource("src", "a/b")
    assert parse_copy_source("/src/a%20b%2Bc%3Fd?versionId=v%2B1") == CopySource(
        "src", "a b+c?d", "v+1"
    )
    assert parse_copy_source("src/k?versionId=v").action == "s3:GetObjectVersion"
    assert parse_copy_source("src/k").action == "s3:GetObject"
    assert parse_copy_source("src/k").resource == "arn:aws:s3:::src/k"
    assert parse_copy_source("src/k?x=1").version_id is None
    for bad in ("src", "src/", "/k", "", "src/%zz"):
        with pytest.raises(RouteError) as info:
            parse_copy_source(bad)
        assert info.value.code == "InvalidArgument", bad
    with pytest.raises(RouteError) as info:
        parse_copy_source("arn:aws:s3:us-east-1:123:accesspoint/ap/object/k")
    assert info.value.code == "NotImplemented"
    with pytest.raises(RouteError) as info:
        parse_copy_source("src/k?versionId=")
    assert info.value.code == "InvalidArgument"
    with pytest.raises(RouteError) as info:
        parse_copy_source("src/" + "k" * 1025)
    assert info.value.code == "KeyTooLongError"
    ep = r("PUT", "/b1b/k", headers={"X-Amz-Copy-Source": "src/a%2Fb?versionId=3"})
    assert ep.copy_source == CopySource("src", "a/b", "3")


# --- botocore as oracle: what boto3 sends routes back to what it meant ---------------

_SERIALIZER = serialize.create_serializer("rest-xml")


def _boto_route(operation: str, params: dict[str, Any]) -> Endpoint:
    handle_copy_source_param(params)
    request = _SERIALIZER.serialize_to_request(params, _MODEL.operation_model(operation))
    path, _, sub = request["url_path"].partition("?")
    query = parse_qsl(sub, keep_blank_values=True) + [
        (k, str(v)) for k, v in request["query_string"].items()
    ]
    method = request["method"]
    return route(method, path, query, {**H, **request["headers"]}, domain=None)


BOTO_CASES: list[tuple[str, dict[str, Any], Op]] = [
    ("ListBuckets", {}, Op.LIST_BUCKETS),
    ("CreateBucket", {"Bucket": "b1b"}, Op.CREATE_BUCKET),
    ("HeadBucket", {"Bucket": "b1b"}, Op.HEAD_BUCKET),
    ("DeleteBucket", {"Bucket": "b1b"}, Op.DELETE_BUCKET),
    ("GetBucketLocation", {"Bucket": "b1b"}, Op.GET_BUCKET_LOCATION),
    ("PutObject", {"Bucket": "b1b", "Key": "k"}, Op.PUT_OBJECT),
    ("GetObject", {"Bucket": "b1b", "Key": "k", "VersionId": "v"}, Op.GET_OBJECT),
    ("HeadObject", {"Bucket": "b1b", "Key": "k", "PartNumber": 2}, Op.HEAD_OBJECT),
    ("DeleteObject", {"Bucket": "b1b", "Key": "k"}, Op.DELETE_OBJECT),
    ("DeleteObjects", {"Bucket": "b1b", "Delete": {"Objects": [{"Key": "k"}]}}, Op.DELETE_OBJECTS),
    ("CopyObject", {"Bucket": "b1b", "Key": "k", "CopySource": "s/a b"}, Op.COPY_OBJECT),
    (
        "CopyObject",
        {
            "Bucket": "b1b",
            "Key": "k",
            "CopySource": {"Bucket": "s", "Key": "a+b", "VersionId": "v"},
        },
        Op.COPY_OBJECT,
    ),
    (
        "PutObjectTagging",
        {"Bucket": "b1b", "Key": "k", "Tagging": {"TagSet": []}},
        Op.PUT_OBJECT_TAGGING,
    ),
    ("GetObjectTagging", {"Bucket": "b1b", "Key": "k"}, Op.GET_OBJECT_TAGGING),
    ("DeleteObjectTagging", {"Bucket": "b1b", "Key": "k"}, Op.DELETE_OBJECT_TAGGING),
    ("ListObjects", {"Bucket": "b1b", "Prefix": "p"}, Op.LIST_OBJECTS),
    ("ListObjectsV2", {"Bucket": "b1b", "StartAfter": "s"}, Op.LIST_OBJECTS_V2),
    ("CreateMultipartUpload", {"Bucket": "b1b", "Key": "k"}, Op.CREATE_MULTIPART_UPLOAD),
    ("UploadPart", {"Bucket": "b1b", "Key": "k", "UploadId": "u", "PartNumber": 1}, Op.UPLOAD_PART),
    (
        "UploadPartCopy",
        {"Bucket": "b1b", "Key": "k", "UploadId": "u", "PartNumber": 1, "CopySource": "s/k"},
        Op.UPLOAD_PART_COPY,
    ),
    (
        "CompleteMultipartUpload",
        {"Bucket": "b1b", "Key": "k", "UploadId": "u"},
        Op.COMPLETE_MULTIPART_UPLOAD,
    ),
    (
        "AbortMultipartUpload",
        {"Bucket": "b1b", "Key": "k", "UploadId": "u"},
        Op.ABORT_MULTIPART_UPLOAD,
    ),
    ("ListParts", {"Bucket": "b1b", "Key": "k", "UploadId": "u"}, Op.LIST_PARTS),
    ("ListMultipartUploads", {"Bucket": "b1b"}, Op.LIST_MULTIPART_UPLOADS),
    (
        "PutBucketVersioning",
        {"Bucket": "b1b", "VersioningConfiguration": {}},
        Op.PUT_BUCKET_VERSIONING,
    ),
    ("GetBucketVersioning", {"Bucket": "b1b"}, Op.GET_BUCKET_VERSIONING),
    ("ListObjectVersions", {"Bucket": "b1b"}, Op.LIST_OBJECT_VERSIONS),
    ("PutBucketPolicy", {"Bucket": "b1b", "Policy": "{}"}, Op.PUT_BUCKET_POLICY),
    ("GetBucketPolicy", {"Bucket": "b1b"}, Op.GET_BUCKET_POLICY),
    ("DeleteBucketPolicy", {"Bucket": "b1b"}, Op.DELETE_BUCKET_POLICY),
    ("GetBucketPolicyStatus", {"Bucket": "b1b"}, Op.GET_BUCKET_POLICY_STATUS),
    (
        "PutPublicAccessBlock",
        {"Bucket": "b1b", "PublicAccessBlockConfiguration": {}},
        Op.PUT_PUBLIC_ACCESS_BLOCK,
    ),
    ("GetPublicAccessBlock", {"Bucket": "b1b"}, Op.GET_PUBLIC_ACCESS_BLOCK),
    ("DeletePublicAccessBlock", {"Bucket": "b1b"}, Op.DELETE_PUBLIC_ACCESS_BLOCK),
    ("GetBucketAcl", {"Bucket": "b1b"}, Op.GET_BUCKET_ACL),
    ("PutBucketAcl", {"Bucket": "b1b", "ACL": "private"}, Op.PUT_BUCKET_ACL),
    ("GetObjectAcl", {"Bucket": "b1b", "Key": "k"}, Op.GET_OBJECT_ACL),
    ("PutObjectAcl", {"Bucket": "b1b", "Key": "k", "ACL": "public-read"}, Op.PUT_OBJECT_ACL),
    ("PutBucketWebsite", {"Bucket": "b1b", "WebsiteConfiguration": {}}, Op.PUT_BUCKET_WEBSITE),
    ("GetBucketWebsite", {"Bucket": "b1b"}, Op.GET_BUCKET_WEBSITE),
    ("DeleteBucketWebsite", {"Bucket": "b1b"}, Op.DELETE_BUCKET_WEBSITE),
    (
        "PutBucketCors",
        {"Bucket": "b1b", "CORSConfiguration": {"CORSRules": []}},
        Op.PUT_BUCKET_CORS,
    ),
    ("GetBucketCors", {"Bucket": "b1b"}, Op.GET_BUCKET_CORS),
    ("DeleteBucketCors", {"Bucket": "b1b"}, Op.DELETE_BUCKET_CORS),
    ("PutBucketTagging", {"Bucket": "b1b", "Tagging": {"TagSet": []}}, Op.PUT_BUCKET_TAGGING),
    ("GetBucketTagging", {"Bucket": "b1b"}, Op.GET_BUCKET_TAGGING),
    ("DeleteBucketTagging", {"Bucket": "b1b"}, Op.DELETE_BUCKET_TAGGING),
    ("GetBucketLifecycleConfiguration", {"Bucket": "b1b"}, Op.GET_BUCKET_LIFECYCLE),
    ("PutBucketLifecycleConfiguration", {"Bucket": "b1b"}, Op.PUT_BUCKET_LIFECYCLE),
    ("DeleteBucketLifecycle", {"Bucket": "b1b"}, Op.DELETE_BUCKET_LIFECYCLE),
]


@pytest.mark.parametrize(("operation", "params", "op"), BOTO_CASES)
def test_botocore_requests_route_to_their_operation(
    operation: str, params: dict[str, Any], op: Op
) -> None:
    ep = _boto_route(operation, dict(params))
    assert ep.op is op
    assert op.value == operation  # Op values are AWS's operation names
    if "Key" in params:
        assert ep.key == params["Key"]
    if "VersionId" in params:
        assert ep.version_id == params["VersionId"]
    copy = params.get("CopySource")
    if isinstance(copy, dict):
        assert ep.copy_source == CopySource(copy["Bucket"], copy["Key"], copy.get("VersionId"))
    elif isinstance(copy, str):
        bucket, _, key = copy.partition("/")
        assert ep.copy_source == CopySource(bucket, key)


# keys botocore can send: any text but NUL, within 1,024 bytes of UTF-8
keys = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1).filter(
    lambda k: len(k.encode()) <= MAX_KEY_BYTES
)


@settings(max_examples=300, deadline=None)
@given(keys)
def test_any_key_botocore_sends_routes_back_exactly(key: str) -> None:
    assert _boto_route("GetObject", {"Bucket": "b1b", "Key": key}).key == key
    copy = _boto_route("CopyObject", {"Bucket": "b1b", "Key": "k", "CopySource": f"s/{key}"})
    assert copy.copy_source == CopySource("s", key)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST", "OPTIONS", "PATCH"]),
    st.text(max_size=40),
    st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=4),
    st.dictionaries(
        st.sampled_from(["host", "x-amz-copy-source", "x-amz-acl"]), st.text(max_size=30)
    ),
)
def test_arbitrary_requests_route_or_raise_s3_errors(
    method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    try:
        ep = route(method, "/" + path, query, headers, domain="s3.local")
    except S3Error:
        return
    assert ep.op in set(Op)
    if ep.key is not None:
        assert "\x00" not in ep.key
        assert len(ep.key.encode()) <= MAX_KEY_BYTES
