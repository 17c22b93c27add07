"""kvbox.s3.xml: golden AWS samples, botocore as oracle, round-trips, hostile input."""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.policy.acl import canned
from kvbox.s3 import xml as s3xml
from kvbox.s3.acl import acl_from_document, document_of, parse_canned
from kvbox.s3.checksums import Algorithm, ChecksumType
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import (
    NS,
    AccessControlPolicy,
    BucketEntry,
    CannedAcl,
    CompletedPart,
    CompleteMultipartUpload,
    CompleteMultipartUploadResult,
    CopyObjectResult,
    CopyPartResult,
    CORSConfiguration,
    CORSRule,
    CreateBucketConfiguration,
    Delete,
    DeletedEntry,
    DeleteErrorEntry,
    DeleteMarkerEntry,
    DeleteResult,
    ErrorBody,
    Grant,
    InitiateMultipartUploadResult,
    ListAllMyBucketsResult,
    ListMultipartUploadsResult,
    ListObjectsResult,
    ListObjectsV2Result,
    ListPartsResult,
    ListVersionsResult,
    MfaDelete,
    ObjectEntry,
    ObjectIdentifier,
    Owner,
    PartEntry,
    PolicyStatus,
    PublicAccessBlockConfiguration,
    RedirectAllRequestsTo,
    RoutingCondition,
    RoutingRedirect,
    RoutingRule,
    Tagging,
    UploadEntry,
    VersionEntry,
    VersioningConfiguration,
    VersioningStatus,
    WebsiteConfiguration,
)

from ._oracle import boto_body, boto_error, boto_parse, namespace, same_xml, vector


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


AWS_OWNER = Owner(
    "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a", "mtd@amazon.com"
)


def assert_code(code: str, body: object, parse: object) -> S3Error:
    with pytest.raises(S3Error) as info:
        parse(body)  # type: ignore[operator]
    assert info.value.code == code, info.value
    return info.value


# --- golden: rendering matches AWS's documentation samples ---------------------------


def test_golden_error() -> None:
    err = S3Error(
        "NoSuchKey", "The resource you requested does not exist", resource="/mybucket/myfoto.jpg"
    )
    body = s3xml.render_error(err, request_id="4442587FB7D0A2F9")
    assert same_xml(body, vector("error.xml"))
    assert namespace(body) is None  # AWS's Error body has no namespace


def test_golden_list_buckets() -> None:
    result = ListAllMyBucketsResult(
        [
            BucketEntry("amzn-s3-demo-bucket", ts("2019-12-11T23:32:47Z")),
            BucketEntry("amzn-s3-demo-bucket1", ts("2019-11-10T23:32:13Z")),
        ],
        Owner("AIDACKCEVSQ6C2EXAMPLE", "Account+Name"),
    )
    assert same_xml(result.to_xml(), vector("list_buckets.xml"))
    assert namespace(result.to_xml()) == NS


def test_golden_list_objects_v1() -> None:
    with_delimiter = ListObjectsResult(
        name="example-bucket",
        prefix="",
        marker="",
        max_keys=1000,
        is_truncated=False,
        delimiter="/",
        contents=[
            ObjectEntry(
                "sample.jpg",
                ts("2011-02-26T01:56:20.000Z"),
                "bf1d737a4d46a19f3bced6905cc8b902",
                142863,
                owner=Owner("canonical-user-id", "display-name"),
            )
        ],
        common_prefixes=["photos/"],
    )
    assert same_xml(with_delimiter.to_xml(), vector("list_objects_v1_delimiter.xml"))
    with_prefix = ListObjectsResult(
        name="example-bucket",
        prefix="photos/2006/",
        marker="",
        max_keys=1000,
        is_truncated=False,
        delimiter="/",
        common_prefixes=["photos/2006/February/", "photos/2006/January/"],
    )
    assert same_xml(with_prefix.to_xml(), vector("list_objects_v1_prefix.xml"))


def test_golden_list_objects_v2() -> None:
    result = ListObjectsV2Result(
        name="quotes",
        prefix="E",
        max_keys=3,
        is_truncated=False,
        start_after="ExampleGuide.pdf",
        contents=[
            ObjectEntry(
                "ExampleObject.txt",
                ts("2013-09-17T18:07:53.000Z"),
                "599bab3ed2c697f1d26842727561fd94",
                857,
                storage_class="REDUCED_REDUNDANCY",
            )
        ],
    )
    assert same_xml(result.to_xml(), vector("list_objects_v2_start_after.xml"))


def test_golden_list_versions() -> None:
    result = ListVersionsResult(
        name="bucket",
        prefix="my",
        key_marker="",
        version_id_marker="",
        max_keys=5,
        is_truncated=False,
        entries=[
            VersionEntry(
                "my-image.jpg",
                "3/L4kqtJl40Nr8X8gdRQBpUMLUo",
                True,
                ts("2009-10-12T17:50:30.000Z"),
                "fba9dede5f27731c9771645a39863328",
                434234,
                owner=AWS_OWNER,
            ),
            DeleteMarkerEntry(
                "my-second-image.jpg",
                "03jpff543dhffds434rfdsFDN943fdsFkdmqnh892",
                True,
                ts("2009-11-12T17:50:30.000Z"),
                owner=AWS_OWNER,
            ),
            VersionEntry(
                "my-second-image.jpg",
                "QUpfdndhfd8438MNFDN93jdnJFkdmqnh893",
                False,
                ts("2009-10-10T17:50:30.000Z"),
                "9b2cf535f27731c974343645a3985328",
                166434,
                owner=AWS_OWNER,
            ),
        ],
    )
    assert same_xml(result.to_xml(), vector("list_versions.xml"))


def test_golden_location_and_copy_results() -> None:
    assert same_xml(s3xml.render_location("Europe"), vector("location.xml"))
    when = ts("2009-10-28T22:32:00Z")
    etag = "9b2cf535f27731c974343645a3985328"
    assert same_xml(CopyObjectResult(etag, when).to_xml(), vector("copy_object_result.xml"))
    assert same_xml(CopyPartResult(etag, when).to_xml(), vector("copy_part_result.xml"))


def test_golden_multipart_results() -> None:
    init = InitiateMultipartUploadResult(
        "example-bucket",
        "example-object",
        "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA",
    )
    assert same_xml(init.to_xml(), vector("initiate_multipart_upload_result.xml"))
    done = CompleteMultipartUploadResult(
        "http://Example-Bucket.s3.Region.amazonaws.com/Example-Object",
        "Example-Bucket",
        "Example-Object",
        "3858f62230ac3c915f300c664312c11f-9",
    )
    assert same_xml(done.to_xml(), vector("complete_multipart_upload_result.xml"))
    parts = ListPartsResult(
        bucket="example-bucket",
        key="example-object",
        upload_id="XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA",
        part_number_marker=1,
        next_part_number_marker=3,
        max_parts=2,
        is_truncated=True,
        parts=[
            PartEntry(
                2, ts("2010-11-10T20:48:34.000Z"), "7778aef83f66abc1fa1e8477f296d394", 10485760
            ),
            PartEntry(
                3, ts("2010-11-10T20:48:33.000Z"), "aaaa18db4cc2f85cedef654fccc4a4x8", 10485760
            ),
        ],
        initiator=Owner(
            "arn:aws:iam::111122223333:user/some-user-11116a31-17b5-4fb7-9df5-b288870f11xx",
            "umat-user-11116a31-17b5-4fb7-9df5-b288870f11xx",
        ),
        owner=Owner(AWS_OWNER.id, "someName"),
    )
    assert same_xml(parts.to_xml(), vector("list_parts.xml"))
    uploads = ListMultipartUploadsResult(
        bucket="example-bucket",
        key_marker="",
        upload_id_marker="",
        max_uploads=1000,
        is_truncated=False,
        prefix="photos/2006/",
        delimiter="/",
        common_prefixes=[
            "photos/2006/February/",
            "photos/2006/January/",
            "photos/2006/March/",
        ],
    )
    assert same_xml(uploads.to_xml(), vector("list_multipart_uploads_delimiter.xml"))


def test_golden_delete_results() -> None:
    result = DeleteResult(
        deleted=[DeletedEntry("sample1.txt")],
        errors=[DeleteErrorEntry("sample2.txt", "AccessDenied", "Access Denied")],
    )
    assert same_xml(result.to_xml(), vector("delete_result.xml"))
    marker = DeleteResult(
        deleted=[
            DeletedEntry(
                "SampleDocument.txt",
                delete_marker=True,
                delete_marker_version_id="NeQt5xeFTfgPJD8B4CGWnkSLtluMr11s",
            )
        ]
    )
    assert same_xml(marker.to_xml(), vector("delete_result_marker.xml"))


def test_golden_configuration_renders() -> None:
    assert same_xml(
        VersioningConfiguration(VersioningStatus.ENABLED).to_xml(),
        vector("versioning_enabled.xml"),
    )
    assert same_xml(VersioningConfiguration().to_xml(), vector("versioning_never_enabled.xml"))
    assert same_xml(PolicyStatus(True).to_xml(), vector("policy_status.xml"))
    assert same_xml(
        PublicAccessBlockConfiguration(True, True, True, True).to_xml(),
        vector("public_access_block.xml"),
    )
    me = Owner(AWS_OWNER.id, "CustomersName@amazon.com")
    acl = AccessControlPolicy(me, (Grant("CanonicalUser", "FULL_CONTROL", me.id, me.display_name),))
    assert same_xml(acl.to_xml(), vector("acl.xml"))


# --- golden: parsing AWS's sample request bodies -------------------------------------


def test_parse_sample_complete_multipart_upload() -> None:
    parsed = CompleteMultipartUpload.from_xml(vector("complete_multipart_upload.xml"))
    assert parsed == CompleteMultipartUpload(
        (
            CompletedPart(1, "a54357aff0632cce46d942af68356b38"),
            CompletedPart(2, "0c78aef83f66abc1fa1e8477f296d394"),
            CompletedPart(3, "acbd18db4cc2f85cedef654fccc4a4d8"),
        )
    )
    assert same_xml(parsed.to_xml(), vector("complete_multipart_upload.xml"))


def test_parse_sample_delete() -> None:
    assert Delete.from_xml(vector("delete.xml")) == Delete(
        (ObjectIdentifier("sample1.txt"), ObjectIdentifier("sample2.txt"))
    )
    assert Delete.from_xml(vector("delete_versioned_quiet.xml")) == Delete(
        (ObjectIdentifier("SampleDocument.txt", "OYcLXagmS.WaD..oyH4KRguB95_YhLs7"),),
        quiet=True,
    )


def test_parse_sample_configurations() -> None:
    tagging = Tagging.from_xml(vector("tagging.xml"))
    assert tagging == Tagging((("tag1", "val1"), ("tag2", "val2")))
    assert same_xml(tagging.to_xml(), vector("tagging.xml"))

    assert VersioningConfiguration.from_xml(
        vector("versioning_enabled.xml")
    ) == VersioningConfiguration(VersioningStatus.ENABLED)

    cors = CORSConfiguration.from_xml(vector("cors.xml"))
    assert cors == CORSConfiguration(
        (
            CORSRule(
                ("PUT", "POST", "DELETE"),
                ("http://www.example.com",),
                ("*",),
                ("x-amz-server-side-encryption",),
                3000,
            ),
            CORSRule(("GET",), ("*",), ("*",), (), 3000),
        )
    )
    assert same_xml(cors.to_xml(), vector("cors.xml"))

    website = WebsiteConfiguration.from_xml(vector("website_routing.xml"))
    assert website == WebsiteConfiguration(
        "index.html",
        "SomeErrorDocument.html",
        None,
        (
            RoutingRule(
                RoutingRedirect(replace_key_prefix_with="documents/"), RoutingCondition("docs/")
            ),
        ),
    )
    assert same_xml(website.to_xml(), vector("website_routing.xml"))

    redirect_all = WebsiteConfiguration.from_xml(vector("website_redirect_all.xml"))
    assert redirect_all == WebsiteConfiguration(
        redirect_all_requests_to=RedirectAllRequestsTo("example.com")
    )
    assert same_xml(redirect_all.to_xml(), vector("website_redirect_all.xml"))

    fragment = vector("website_error_redirect.xml")
    wrapped = (
        b'<WebsiteConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<IndexDocument><Suffix>index.html</Suffix></IndexDocument>"
        + fragment
        + b"</WebsiteConfiguration>"
    )
    on_404 = WebsiteConfiguration.from_xml(wrapped)
    assert on_404.routing_rules == (
        RoutingRule(
            RoutingRedirect(
                host_name="ec2-11-22-333-44.compute-1.amazonaws.com",
                replace_key_prefix_with="report-404/",
            ),
            RoutingCondition(http_error_code_returned_equals="404"),
        ),
    )

    acl = AccessControlPolicy.from_xml(vector("acl.xml"))
    assert acl.owner == Owner(AWS_OWNER.id, "CustomersName@amazon.com")
    assert acl.grants == (
        Grant("CanonicalUser", "FULL_CONTROL", AWS_OWNER.id, "CustomersName@amazon.com"),
    )
    assert acl_from_document(acl, AWS_OWNER.id, "us-east-1") == canned("private", AWS_OWNER.id)

    assert PublicAccessBlockConfiguration.from_xml(
        vector("public_access_block.xml")
    ) == PublicAccessBlockConfiguration(True, True, True, True)
    assert CreateBucketConfiguration.from_xml(
        vector("create_bucket_configuration.xml")
    ) == CreateBucketConfiguration("Europe")
    assert CreateBucketConfiguration.from_xml(b"") == CreateBucketConfiguration(None)
    error = ErrorBody.from_xml(vector("error.xml"))
    assert (error.code, error.resource, error.request_id) == (
        "NoSuchKey",
        "/mybucket/myfoto.jpg",
        "4442587FB7D0A2F9",
    )


# --- botocore reads what we render ---------------------------------------------------

T0 = ts("2024-05-06T07:08:09.123Z")


def test_botocore_reads_list_objects_v2_with_checksums_and_owner() -> None:
    result = ListObjectsV2Result(
        name="b",
        prefix="dir/",
        max_keys=2,
        is_truncated=True,
        delimiter="/",
        continuation_token="tok1",
        next_continuation_token="tok2",
        contents=[
            ObjectEntry(
                "dir/a&b<c>\r\n\t.txt",
                T0,
                "d41d8cd98f00b204e9800998ecf8427e",
                0,
                owner=Owner("u1", "alice"),
                checksum_algorithm=Algorithm.CRC32,
                checksum_type=ChecksumType.FULL_OBJECT,
            )
        ],
        common_prefixes=["dir/sub/"],
    )
    parsed = boto_parse("ListObjectsV2", result.to_xml())
    assert parsed["KeyCount"] == 2
    assert parsed["IsTruncated"] is True
    assert parsed["NextContinuationToken"] == "tok2"
    assert parsed["ContinuationToken"] == "tok1"
    item = parsed["Contents"][0]
    assert item["Key"] == "dir/a&b<c>\r\n\t.txt"
    assert item["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert item["LastModified"] == T0.replace(microsecond=123000)
    assert item["Owner"] == {"ID": "u1", "DisplayName": "alice"}
    assert item["ChecksumAlgorithm"] == ["CRC32"]
    assert item["ChecksumType"] == "FULL_OBJECT"
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/sub/"}]


def test_encoding_type_url_round_trips_through_botocore_decoding() -> None:
    nasty = "a b+c/é\x01%2F?&"
    result = ListObjectsV2Result(
        name="b",
        prefix="a b",
        max_keys=1000,
        is_truncated=False,
        delimiter="/",
        start_after="a+",
        encoding_type="url",
        contents=[ObjectEntry(nasty, T0, "x", 1)],
        common_prefixes=["a b+c/"],
    )
    body = result.to_xml()
    assert b"\x01" not in body  # the point of encoding-type=url
    parsed = boto_parse("ListObjectsV2", body)
    # botocore decodes with unquote_plus when it asked for url encoding itself
    assert unquote_plus(parsed["Contents"][0]["Key"]) == nasty
    assert unquote_plus(parsed["Prefix"]) == "a b"
    assert unquote_plus(parsed["StartAfter"]) == "a+"
    assert unquote_plus(parsed["CommonPrefixes"][0]["Prefix"]) == "a b+c/"
    assert parsed["EncodingType"] == "url"


def test_botocore_reads_list_objects_v1_and_versions() -> None:
    v1 = ListObjectsResult(
        "b", "", "m", 1, True, [ObjectEntry("k", T0, "e", 5)], (), "/", "k", None
    )
    parsed = boto_parse("ListObjects", v1.to_xml())
    assert (parsed["Marker"], parsed["NextMarker"], parsed["IsTruncated"]) == ("m", "k", True)
    versions = ListVersionsResult(
        "b",
        "",
        "",
        "",
        2,
        True,
        [
            VersionEntry("k", "v2", True, T0, "e", 5),
            DeleteMarkerEntry("k", "v1", False, T0, Owner("u")),
        ],
        next_key_marker="k",
        next_version_id_marker="v1",
    )
    parsed = boto_parse("ListObjectVersions", versions.to_xml())
    assert parsed["Versions"][0]["VersionId"] == "v2"
    assert parsed["Versions"][0]["IsLatest"] is True
    assert parsed["DeleteMarkers"][0]["VersionId"] == "v1"
    assert parsed["DeleteMarkers"][0]["Owner"] == {"ID": "u"}
    assert (parsed["NextKeyMarker"], parsed["NextVersionIdMarker"]) == ("k", "v1")


def test_botocore_reads_buckets_multipart_and_copy() -> None:
    buckets = ListAllMyBucketsResult([BucketEntry("b1", T0, "us-east-1")], Owner("id", "me"))
    parsed = boto_parse("ListBuckets", buckets.to_xml())
    assert parsed["Buckets"] == [
        {"Name": "b1", "CreationDate": T0.replace(microsecond=123000), "BucketRegion": "us-east-1"}
    ]
    assert parsed["Owner"] == {"ID": "id", "DisplayName": "me"}

    crc = base64.b64encode(b"\0\0\0\1").decode()
    done = CompleteMultipartUploadResult(
        "http://h/b/k", "b", "k", "abc-2", {Algorithm.CRC32: crc}, ChecksumType.COMPOSITE
    )
    parsed = boto_parse("CompleteMultipartUpload", done.to_xml())
    assert parsed["ETag"] == '"abc-2"'
    assert parsed["ChecksumCRC32"] == crc
    assert parsed["ChecksumType"] == "COMPOSITE"

    parts = ListPartsResult(
        "b",
        "k",
        "u",
        0,
        1000,
        False,
        [PartEntry(1, T0, "e1", 5 << 20, {Algorithm.SHA256: "x="})],
        initiator=Owner("i"),
        owner=Owner("o"),
        checksum_algorithm=Algorithm.SHA256,
    )
    parsed = boto_parse("ListParts", parts.to_xml())
    assert parsed["Parts"][0]["PartNumber"] == 1
    assert parsed["Parts"][0]["ChecksumSHA256"] == "x="
    assert parsed["ChecksumAlgorithm"] == "SHA256"

    uploads = ListMultipartUploadsResult(
        "b", "", "", 1000, False, [UploadEntry("k", "u1", T0, Owner("i"), Owner("o"))]
    )
    parsed = boto_parse("ListMultipartUploads", uploads.to_xml())
    assert parsed["Uploads"][0]["UploadId"] == "u1"
    assert parsed["Uploads"][0]["Initiated"] == T0.replace(microsecond=123000)

    copied = boto_parse("CopyObject", CopyObjectResult("e", T0).to_xml())
    assert copied["CopyObjectResult"]["ETag"] == '"e"'
    part = boto_parse("UploadPartCopy", CopyPartResult("e", T0).to_xml())
    assert part["CopyPartResult"]["LastModified"] == T0.replace(microsecond=123000)
    init = boto_parse(
        "CreateMultipartUpload", InitiateMultipartUploadResult("b", "k", "u").to_xml()
    )
    assert init["UploadId"] == "u"


def test_botocore_reads_configs_and_errors() -> None:
    deleted = DeleteResult(
        [DeletedEntry("a", "v1", True, "v2")], [DeleteErrorEntry("b", "AccessDenied", "no", "v")]
    )
    parsed = boto_parse("DeleteObjects", deleted.to_xml())
    assert parsed["Deleted"] == [
        {"Key": "a", "VersionId": "v1", "DeleteMarker": True, "DeleteMarkerVersionId": "v2"}
    ]
    assert parsed["Errors"] == [
        {"Key": "b", "VersionId": "v", "Code": "AccessDenied", "Message": "no"}
    ]
    parsed = boto_parse(
        "GetBucketVersioning",
        VersioningConfiguration(VersioningStatus.SUSPENDED, MfaDelete.DISABLED).to_xml(),
    )
    assert (parsed["Status"], parsed["MFADelete"]) == ("Suspended", "Disabled")
    assert "Status" not in boto_parse("GetBucketVersioning", VersioningConfiguration().to_xml())
    parsed = boto_parse("GetBucketPolicyStatus", PolicyStatus(False).to_xml())
    assert parsed["PolicyStatus"] == {"IsPublic": False}
    parsed = boto_parse(
        "GetPublicAccessBlock", PublicAccessBlockConfiguration(True, False, True, False).to_xml()
    )
    assert parsed["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False,
    }
    acl = document_of(canned(CannedAcl.PUBLIC_READ, "o"))
    parsed = boto_parse("GetBucketAcl", acl.to_xml())
    assert parsed["Owner"] == {"ID": "o", "DisplayName": "o"}
    assert parsed["Grants"][1] == {
        "Grantee": {"Type": "Group", "URI": s3xml.ALL_USERS},
        "Permission": "READ",
    }
    tags = boto_parse("GetObjectTagging", Tagging((("a", "1"),)).to_xml())
    assert tags["TagSet"] == [{"Key": "a", "Value": "1"}]

    err = S3Error("NoSuchKey", resource="/b/k", extra={"Key": "k"})
    parsed = boto_error(s3xml.render_error(err, request_id="R1", host_id="H1"), 404)
    assert parsed["Error"]["Code"] == "NoSuchKey"
    assert parsed["Error"]["Key"] == "k"
    assert parsed["Error"]["Message"] == "The specified key does not exist."


def test_botocore_reads_location() -> None:
    # botocore's GetBucketLocation customization reads the root element's text
    from botocore.handlers import parse_get_bucket_location  # type: ignore[import-untyped]

    class _Response:
        raw = object()

        def __init__(self, body: bytes) -> None:
            self.content = body

    for region, expect in (("eu-west-1", "eu-west-1"), (None, None), ("us-east-1", None)):
        parsed: dict[str, object] = {}
        parse_get_bucket_location(parsed, _Response(s3xml.render_location(region)))
        assert parsed["LocationConstraint"] == expect


# --- we read what botocore sends -----------------------------------------------------


def test_we_read_botocore_request_bodies() -> None:
    body = boto_body(
        "CompleteMultipartUpload",
        {
            "Bucket": "b",
            "Key": "k",
            "UploadId": "u",
            "MultipartUpload": {
                "Parts": [
                    {"PartNumber": 1, "ETag": '"e1"', "ChecksumCRC32": "AAAAAQ=="},
                    {"PartNumber": 3, "ETag": "e3", "ChecksumCRC64NVME": "AAAAAAAAAAE="},
                ]
            },
        },
    )
    assert CompleteMultipartUpload.from_xml(body) == CompleteMultipartUpload(
        (
            CompletedPart(1, "e1", {Algorithm.CRC32: "AAAAAQ=="}),
            CompletedPart(3, "e3", {Algorithm.CRC64NVME: "AAAAAAAAAAE="}),
        )
    )
    body = boto_body(
        "DeleteObjects",
        {
            "Bucket": "b",
            "Delete": {
                "Objects": [
                    {"Key": "a b/c"},
                    {
                        "Key": "d",
                        "VersionId": "v",
                        "ETag": '"e"',
                        "Size": 7,
                        "LastModifiedTime": T0,
                    },
                ],
                "Quiet": True,
            },
        },
    )
    assert Delete.from_xml(body) == Delete(
        # botocore writes this one timestamp in RFC 1123 form, to the second
        (ObjectIdentifier("a b/c"), ObjectIdentifier("d", "v", "e", T0.replace(microsecond=0), 7)),
        quiet=True,
    )
    body = boto_body(
        "PutObjectTagging",
        {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": [{"Key": "k 1", "Value": "v/+"}]}},
    )
    assert Tagging.from_xml(body) == Tagging((("k 1", "v/+"),))
    body = boto_body(
        "PutBucketVersioning",
        {
            "Bucket": "b",
            "VersioningConfiguration": {"Status": "Suspended", "MFADelete": "Disabled"},
        },
    )
    assert VersioningConfiguration.from_xml(body) == VersioningConfiguration(
        VersioningStatus.SUSPENDED, MfaDelete.DISABLED
    )
    body = boto_body(
        "PutBucketCors",
        {
            "Bucket": "b",
            "CORSConfiguration": {
                "CORSRules": [
                    {
                        "ID": "r1",
                        "AllowedHeaders": ["*"],
                        "AllowedMethods": ["GET", "PUT"],
                        "AllowedOrigins": ["https://*.example.com"],
                        "ExposeHeaders": ["ETag"],
                        "MaxAgeSeconds": 60,
                    }
                ]
            },
        },
    )
    assert CORSConfiguration.from_xml(body) == CORSConfiguration(
        (CORSRule(("GET", "PUT"), ("https://*.example.com",), ("*",), ("ETag",), 60, "r1"),)
    )
    body = boto_body(
        "PutBucketWebsite",
        {
            "Bucket": "b",
            "WebsiteConfiguration": {
                "IndexDocument": {"Suffix": "index.html"},
                "ErrorDocument": {"Key": "404.html"},
                "RoutingRules": [
                    {
                        "Condition": {"HttpErrorCodeReturnedEquals": "404"},
                        "Redirect": {
                            "HostName": "h",
                            "Protocol": "https",
                            "HttpRedirectCode": "302",
                            "ReplaceKeyWith": "x",
                        },
                    }
                ],
            },
        },
    )
    assert WebsiteConfiguration.from_xml(body) == WebsiteConfiguration(
        "index.html",
        "404.html",
        None,
        (
            RoutingRule(
                RoutingRedirect("h", "302", "https", None, "x"),
                RoutingCondition(None, "404"),
            ),
        ),
    )
    body = boto_body(
        "PutPublicAccessBlock",
        {"Bucket": "b", "PublicAccessBlockConfiguration": {"BlockPublicPolicy": True}},
    )
    assert PublicAccessBlockConfiguration.from_xml(body) == PublicAccessBlockConfiguration(
        block_public_policy=True
    )
    body = boto_body(
        "CreateBucket",
        {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
    )
    assert CreateBucketConfiguration.from_xml(body) == CreateBucketConfiguration("eu-west-1")
    body = boto_body(
        "PutBucketAcl",
        {
            "Bucket": "b",
            "AccessControlPolicy": {
                "Owner": {"ID": "o"},
                "Grants": [
                    {"Grantee": {"Type": "CanonicalUser", "ID": "o"}, "Permission": "FULL_CONTROL"},
                    {
                        "Grantee": {"Type": "Group", "URI": s3xml.AUTHENTICATED_USERS},
                        "Permission": "READ",
                    },
                ],
            },
        },
    )
    doc = AccessControlPolicy.from_xml(body)
    assert acl_from_document(doc, "o", "us-east-1").canned_name() == "authenticated-read"


# --- strict validation ---------------------------------------------------------------


def _complete(*parts: str) -> bytes:
    return ("<CompleteMultipartUpload>" + "".join(parts) + "</CompleteMultipartUpload>").encode()


def _part(n: str, etag: str = '"e"', extra: str = "") -> str:
    return f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>{extra}</Part>"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_complete(), "MalformedXML"),
        (_complete(_part("0")), "MalformedXML"),
        (_complete(_part("10001")), "MalformedXML"),
        (_complete(_part("x")), "MalformedXML"),
        (_complete(_part("1", etag="")), "MalformedXML"),
        (_complete("<Part><PartNumber>1</PartNumber></Part>"), "MalformedXML"),
        (_complete(_part("1", extra="<Bogus/>")), "MalformedXML"),
        (_complete(_part("1", extra="<PartNumber>2</PartNumber>")), "MalformedXML"),
        (_complete(_part("2"), _part("1")), "InvalidPartOrder"),
        (_complete(_part("1"), _part("1")), "InvalidPartOrder"),
        (b"<Other/>", "MalformedXML"),
        (b"<CompleteMultipartUpload>", "MalformedXML"),
        (b"", "MalformedXML"),
        (b"\xff\xfe", "MalformedXML"),
    ],
)
def test_complete_multipart_upload_rejects(body: bytes, code: str) -> None:
    assert_code(code, body, CompleteMultipartUpload.from_xml)


def test_complete_multipart_upload_accepts_10000_parts_and_namespace() -> None:
    body = _complete(*(_part(str(n)) for n in range(1, MAX + 1)))
    assert len(CompleteMultipartUpload.from_xml(body).parts) == MAX
    ns = f'<CompleteMultipartUpload xmlns="{NS}">{_part("1")}</CompleteMultipartUpload>'
    assert CompleteMultipartUpload.from_xml(ns.encode()).parts[0].part_number == 1


MAX = s3xml.MAX_PARTS


def _delete(n: int, quiet: str = "") -> bytes:
    objs = "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(n))
    return f"<Delete>{quiet}{objs}</Delete>".encode()


def test_delete_limits() -> None:
    assert len(Delete.from_xml(_delete(1000)).objects) == 1000
    assert_code("MalformedXML", _delete(1001), Delete.from_xml)
    assert_code("MalformedXML", _delete(0), Delete.from_xml)
    assert_code("MalformedXML", _delete(1, "<Quiet>yes</Quiet>"), Delete.from_xml)
    assert_code(
        "MalformedXML",
        b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
        Delete.from_xml,
    )
    # whitespace in keys is significant and kept
    body = b"<Delete><Object><Key> k \n</Key></Object></Delete>"
    assert Delete.from_xml(body).objects[0].key == " k \n"


def test_tagging_rules() -> None:
    def tagging(*tags: tuple[str, str]) -> bytes:
        return Tagging(tags).to_xml()

    assert_code("InvalidTag", tagging(*((f"k{i}", "v") for i in range(11))), Tagging.from_xml)
    assert (
        len(Tagging.from_xml(tagging(*((f"k{i}", "v") for i in range(50))), max_tags=50).tags) == 50
    )
    assert_code("InvalidTag", tagging(("a", "1"), ("a", "2")), Tagging.from_xml)
    assert_code("InvalidTag", tagging(("aws:x", "1")), Tagging.from_xml)
    assert_code("InvalidTag", tagging(("k" * 129, "1")), Tagging.from_xml)
    assert_code("InvalidTag", tagging(("", "1")), Tagging.from_xml)
    assert_code("InvalidTag", tagging(("k", "v" * 257)), Tagging.from_xml)
    assert_code("InvalidTag", tagging(("k<", "v")), Tagging.from_xml)
    assert Tagging.from_xml(tagging(("k" * 128, "v" * 256), ("é ü_.:/=+-@", ""))).tags[1] == (
        "é ü_.:/=+-@",
        "",
    )
    assert_code("MalformedXML", b"<Tagging/>", Tagging.from_xml)
    assert_code(
        "MalformedXML",
        b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>",
        Tagging.from_xml,
    )
    assert Tagging.from_header("") == Tagging(())
    assert Tagging.from_header("a=1&b=&c=x%2By+z").tags == (("a", "1"), ("b", ""), ("c", "x+y z"))
    # A name without "=" is a tag with an empty value, as AWS reads it.
    assert Tagging.from_header("a=b&c").tags == (("a", "b"), ("c", ""))
    assert_code("InvalidArgument", "a=%FF", Tagging.from_header)
    assert_code("InvalidTag", "a=1&a=2", Tagging.from_header)
    assert_code("InvalidArgument", "a=1&&", Tagging.from_header)
    assert Tagging.from_header(Tagging((("a b", "c=d/é+"),)).to_header()).tags == (
        ("a b", "c=d/é+"),
    )
    assert_code("InvalidTag", Tagging((("k", "a&b"),)).to_header(), Tagging.from_header)


def test_versioning_cors_website_rules() -> None:
    assert_code(
        "MalformedXML",
        b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
        VersioningConfiguration.from_xml,
    )
    assert VersioningConfiguration.from_xml(b"<VersioningConfiguration/>") == (
        VersioningConfiguration()
    )

    def cors(rule: str) -> bytes:
        return f"<CORSConfiguration><CORSRule>{rule}</CORSRule></CORSConfiguration>".encode()

    assert_code("MalformedXML", b"<CORSConfiguration/>", CORSConfiguration.from_xml)
    assert_code(
        "MalformedXML", cors("<AllowedOrigin>*</AllowedOrigin>"), CORSConfiguration.from_xml
    )
    assert_code(
        "InvalidRequest",
        cors("<AllowedMethod>PATCH</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"),
        CORSConfiguration.from_xml,
    )
    assert_code(
        "InvalidRequest",
        cors("<AllowedMethod>GET</AllowedMethod><AllowedOrigin>*.*</AllowedOrigin>"),
        CORSConfiguration.from_xml,
    )
    too_many = (
        "<CORSConfiguration>"
        + "<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule>"
        * 101
        + "</CORSConfiguration>"
    ).encode()
    assert_code("InvalidRequest", too_many, CORSConfiguration.from_xml)

    def website(inner: str) -> bytes:
        return f"<WebsiteConfiguration>{inner}</WebsiteConfiguration>".encode()

    index = "<IndexDocument><Suffix>index.html</Suffix></IndexDocument>"
    parse = WebsiteConfiguration.from_xml
    assert_code("InvalidArgument", website(""), parse)
    assert_code(
        "InvalidArgument", website("<IndexDocument><Suffix>a/b</Suffix></IndexDocument>"), parse
    )
    assert_code(
        "InvalidArgument", website("<IndexDocument><Suffix></Suffix></IndexDocument>"), parse
    )
    assert_code(
        "InvalidArgument",
        website(index + "<RedirectAllRequestsTo><HostName>h</HostName></RedirectAllRequestsTo>"),
        parse,
    )
    assert_code(
        "InvalidArgument",
        website(
            "<RedirectAllRequestsTo><HostName>h</HostName><Protocol>ftp</Protocol>"
            "</RedirectAllRequestsTo>"
        ),
        parse,
    )

    def rule(inner: str) -> bytes:
        return website(index + f"<RoutingRules><RoutingRule>{inner}</RoutingRule></RoutingRules>")

    assert_code(
        "MalformedXML", rule("<Condition><KeyPrefixEquals>a</KeyPrefixEquals></Condition>"), parse
    )
    assert_code("InvalidArgument", rule("<Redirect></Redirect>"), parse)
    assert_code(
        "InvalidArgument",
        rule(
            "<Redirect><ReplaceKeyWith>a</ReplaceKeyWith>"
            "<ReplaceKeyPrefixWith>b</ReplaceKeyPrefixWith></Redirect>"
        ),
        parse,
    )
    assert_code(
        "InvalidArgument",
        rule("<Redirect><HttpRedirectCode>200</HttpRedirectCode></Redirect>"),
        parse,
    )
    assert_code(
        "InvalidArgument",
        rule("<Redirect><HttpRedirectCode>300</HttpRedirectCode></Redirect>"),
        parse,
    )
    assert_code(
        "InvalidArgument",
        rule("<Condition/><Redirect><HostName>h</HostName></Redirect>"),
        parse,
    )
    assert_code(
        "InvalidArgument",
        rule(
            "<Condition><HttpErrorCodeReturnedEquals>302</HttpErrorCodeReturnedEquals>"
            "</Condition><Redirect><HostName>h</HostName></Redirect>"
        ),
        parse,
    )
    fifty_one = website(
        index + "<RoutingRules>" + "<RoutingRule><Redirect><HostName>h</HostName>"
        "</Redirect></RoutingRule>" * 51 + "</RoutingRules>"
    )
    assert_code("InvalidArgument", fifty_one, parse)


def test_acl_and_create_bucket_rules() -> None:
    parse = AccessControlPolicy.from_xml
    assert_code("MalformedACLError", b"<AccessControlPolicy/>", parse)
    assert_code(
        "MalformedACLError",
        b"<AccessControlPolicy><Owner><ID>o</ID></Owner>"
        b"<AccessControlList><Grant><Grantee><ID>x</ID></Grantee>"
        b"<Permission>READ</Permission></Grant></AccessControlList>"
        b"</AccessControlPolicy>",
        parse,
    )
    owner = Owner("o")
    other = AccessControlPolicy(
        owner,
        (Grant("CanonicalUser", "FULL_CONTROL", "o"), Grant("CanonicalUser", "READ", "someone")),
    )
    assert acl_from_document(other, "o", "us-east-1").canned_name() is None
    assert acl_from_document(AccessControlPolicy(owner, ()), "o", "us-east-1").grants == ()
    for name in (
        CannedAcl.PRIVATE,
        CannedAcl.PUBLIC_READ,
        CannedAcl.PUBLIC_READ_WRITE,
        CannedAcl.AUTHENTICATED_READ,
    ):
        policy = document_of(canned(name, "o"))
        parsed = acl_from_document(AccessControlPolicy.from_xml(policy.to_xml()), "o", "eu-west-1")
        assert parsed.canned_name() == name
    assert parse_canned("public-read") is CannedAcl.PUBLIC_READ
    assert_code("InvalidArgument", "public", parse_canned)
    assert_code(
        "NotImplemented",
        b"<CreateBucketConfiguration><Location><Type>AvailabilityZone</Type></Location>"
        b"</CreateBucketConfiguration>",
        CreateBucketConfiguration.from_xml,
    )


# --- hostile input -------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Delete><Object><Key>&lol4;</Key></Object></Delete>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Delete SYSTEM "http://127.0.0.1:1/evil.dtd">
<Delete><Object><Key>k</Key></Object></Delete>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_xml_bombs_and_entities_are_refused(body: bytes) -> None:
    assert_code("MalformedXML", body, Delete.from_xml)


def test_body_size_caps() -> None:
    big = b"<Tagging><TagSet>" + b" " * s3xml.MAX_CONFIG_BODY + b"</TagSet></Tagging>"
    err = assert_code("MaxMessageLengthExceeded", big, Tagging.from_xml)
    assert err.status == 400
    huge = b"<Delete>" + b" " * s3xml.MAX_XML_BODY + b"</Delete>"
    assert_code("MaxMessageLengthExceeded", huge, Delete.from_xml)


PARSERS = [
    CompleteMultipartUpload.from_xml,
    Delete.from_xml,
    Tagging.from_xml,
    VersioningConfiguration.from_xml,
    CORSConfiguration.from_xml,
    WebsiteConfiguration.from_xml,
    AccessControlPolicy.from_xml,
    PublicAccessBlockConfiguration.from_xml,
    CreateBucketConfiguration.from_xml,
    ErrorBody.from_xml,
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), st.binary(max_size=200))
def test_random_bytes_raise_only_s3_errors(parse: object, body: bytes) -> None:
    with contextlib.suppress(S3Error):
        parse(body)  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(PARSERS),
    st.lists(
        st.sampled_from(
            [
                "<Delete>",
                "</Delete>",
                "<Object>",
                "</Object>",
                "<Key>",
                "</Key>",
                "k",
                "<Part>",
                "</Part>",
                "<PartNumber>",
                "1",
                "</PartNumber>",
                "<ETag>",
                "</ETag>",
                "<Tagging>",
                "<TagSet>",
                "<Tag>",
                "<Value>",
                "&amp;",
                "&#0;",
                "<![CDATA[x]]>",
                "<?pi x?>",
                "<!-- c -->",
                "<CORSRule>",
                "<AllowedMethod>",
                "GET",
                "<Quiet>",
                "true",
            ]
        ),
        max_size=30,
    ),
)
def test_random_element_soup_raises_only_s3_errors(parse: object, tokens: list[str]) -> None:
    with contextlib.suppress(S3Error):
        parse("".join(tokens).encode())  # type: ignore[operator]


# --- parse(render(x)) == x -----------------------------------------------------------

# XML 1.0 text: no control characters but TAB, LF and CR (CR is escaped so it survives
# the parser's newline normalisation), no lone surrogates.
xml_text = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="\ufffe\uffff",
        whitelist_characters="\t\n\r",
    ),
    max_size=30,
)
xml_token = xml_text.map(str.strip).filter(bool)
etags = st.binary(min_size=16, max_size=16).map(bytes.hex)
b64 = st.binary(min_size=4, max_size=4).map(lambda b: base64.b64encode(b).decode())
checksums = st.dictionaries(st.sampled_from(list(Algorithm)), b64, max_size=3)
when = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


@given(
    st.lists(st.tuples(etags, checksums), min_size=1, max_size=20),
    st.lists(st.integers(1, 10_000), min_size=20, max_size=20, unique=True).map(sorted),
)
def test_roundtrip_complete_multipart_upload(
    parts: list[tuple[str, dict[Algorithm, str]]], numbers: list[int]
) -> None:
    doc = CompleteMultipartUpload(
        tuple(CompletedPart(n, e, c) for n, (e, c) in zip(numbers, parts, strict=False))
    )
    assert CompleteMultipartUpload.from_xml(doc.to_xml()) == doc


@given(
    st.lists(
        st.builds(
            ObjectIdentifier,
            xml_text.filter(bool),
            st.none() | xml_text,
            st.none() | etags,
            st.none() | when,
            st.none() | st.integers(0, 2**40),
        ),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_roundtrip_delete(objects: list[ObjectIdentifier], quiet: bool) -> None:
    doc = Delete(tuple(objects), quiet)
    assert Delete.from_xml(doc.to_xml()) == doc


tag_text = st.text(
    st.characters(whitelist_categories=("L", "N", "Zs"), whitelist_characters="_.:/=+-@"),
    max_size=20,
)


@given(
    st.lists(
        st.tuples(
            tag_text.filter(lambda k: bool(k) and not k.lower().startswith("aws:")), tag_text
        ),
        max_size=10,
        unique_by=lambda t: t[0],
    )
)
def test_roundtrip_tagging(tags: list[tuple[str, str]]) -> None:
    doc = Tagging(tuple(tags))
    assert Tagging.from_xml(doc.to_xml()) == doc
    assert Tagging.from_header(doc.to_header()) == doc


@given(st.sampled_from([None, *VersioningStatus]), st.sampled_from([None, *MfaDelete]))
def test_roundtrip_versioning(status: VersioningStatus | None, mfa: MfaDelete | None) -> None:
    doc = VersioningConfiguration(status, mfa)
    assert VersioningConfiguration.from_xml(doc.to_xml()) == doc


origin = xml_token.filter(lambda s: s.count("*") <= 1)
cors_rule = st.builds(
    CORSRule,
    st.lists(st.sampled_from(sorted(s3xml.CORS_METHODS)), min_size=1, max_size=5).map(tuple),
    st.lists(origin, min_size=1, max_size=3).map(tuple),
    st.lists(origin, max_size=3).map(tuple),
    st.lists(xml_token, max_size=3).map(tuple),
    st.none() | st.integers(0, 10**6),
    st.none() | xml_text.filter(lambda s: len(s) <= 255),
)


@given(st.lists(cors_rule, min_size=1, max_size=5))
def test_roundtrip_cors(rules: list[CORSRule]) -> None:
    doc = CORSConfiguration(tuple(rules))
    assert CORSConfiguration.from_xml(doc.to_xml()) == doc


redirect = st.builds(
    RoutingRedirect,
    st.none() | xml_text,
    st.none() | st.sampled_from(["301", "302", "307", "308"]),
    st.none() | st.sampled_from(["http", "https"]),
    st.none() | xml_text,
).filter(
    lambda r: any(
        v is not None
        for v in (r.host_name, r.http_redirect_code, r.protocol, r.replace_key_prefix_with)
    )
)
condition = st.builds(
    RoutingCondition,
    st.none() | xml_text,
    st.none() | st.sampled_from(["403", "404", "500"]),
).filter(lambda c: c.key_prefix_equals is not None or c.http_error_code_returned_equals is not None)
website = st.one_of(
    st.builds(
        WebsiteConfiguration,
        xml_text.filter(lambda s: bool(s) and "/" not in s),
        st.none() | xml_text.filter(bool),
        st.none(),
        st.lists(st.builds(RoutingRule, redirect, st.none() | condition), max_size=5).map(tuple),
    ),
    st.builds(
        WebsiteConfiguration,
        st.none(),
        st.none(),
        st.builds(RedirectAllRequestsTo, xml_text, st.none() | st.sampled_from(["http", "https"])),
    ),
)


@given(website)
def test_roundtrip_website(doc: WebsiteConfiguration) -> None:
    assert WebsiteConfiguration.from_xml(doc.to_xml()) == doc


grant = st.one_of(
    st.builds(
        Grant,
        st.just("CanonicalUser"),
        st.sampled_from(sorted(s3xml.PERMISSIONS)),
        xml_text,
        st.none() | xml_text,
    ),
    st.builds(
        Grant,
        st.just("Group"),
        st.sampled_from(sorted(s3xml.PERMISSIONS)),
        uri=st.sampled_from([s3xml.ALL_USERS, s3xml.AUTHENTICATED_USERS]),
    ),
    st.builds(
        Grant,
        st.just("AmazonCustomerByEmail"),
        st.sampled_from(sorted(s3xml.PERMISSIONS)),
        email=xml_text,
    ),
)


@given(st.builds(Owner, xml_text, st.none() | xml_text), st.lists(grant, max_size=5))
def test_roundtrip_acl(owner: Owner, grants: list[Grant]) -> None:
    doc = AccessControlPolicy(owner, tuple(grants))
    assert AccessControlPolicy.from_xml(doc.to_xml()) == doc


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_roundtrip_public_access_block(a: bool, b: bool, c: bool, d: bool) -> None:
    doc = PublicAccessBlockConfiguration(a, b, c, d)
    assert PublicAccessBlockConfiguration.from_xml(doc.to_xml()) == doc


@given(st.none() | xml_token)
def test_roundtrip_create_bucket_configuration(region: str | None) -> None:
    doc = CreateBucketConfiguration(region)
    assert CreateBucketConfiguration.from_xml(doc.to_xml()) == doc


@given(st.text(max_size=40))
def test_url_encode_decodes_back_with_both_unquotes(value: str) -> None:
    from urllib.parse import unquote

    encoded = s3xml.url_encode(value)
    assert encoded.isascii()
    assert " " not in encoded and "+" not in encoded
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        assert unquote(encoded) == value
        assert unquote_plus(encoded) == value


def test_timestamps() -> None:
    assert s3xml.format_timestamp(s3xml.timestamp_from_ns(1_700_000_000_123_456_789)) == (
        "2023-11-14T22:13:20.123Z"
    )
    with pytest.raises(ValueError):
        s3xml.format_timestamp(datetime(2020, 1, 1))
    assert s3xml.parse_timestamp("2020-01-01T00:00:00Z") == datetime(2020, 1, 1, tzinfo=UTC)
    assert s3xml.parse_timestamp("Mon, 06 May 2024 07:08:09 GMT") == datetime(
        2024, 5, 6, 7, 8, 9, tzinfo=UTC
    )
    assert_code("MalformedXML", "2020-01-01T00:00:00", s3xml.parse_timestamp)
    assert_code("MalformedXML", "yesterday", s3xml.parse_timestamp)
