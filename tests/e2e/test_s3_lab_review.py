"""Security review of the S3 lab (issue 4): attacks on a real ``kvbox serve``.

Layer: tests/e2e. Rules: one server for the module (S3 port plus ``--web-port``, path
style on 127.0.0.1), one bucket per test; root drives it through boto3, a second kvbox
user ("mallory", made with ``kvbox admin --server``) and anonymous ``http.client``
requests are the attackers. Expected answers are AWS's (S3 API reference and user
guide) or docs/s3-compat.md. Each bug the review found is pinned by a test here (all
fixed since). Every loop is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import botocore.auth  # type: ignore[import-untyped]
import botocore.awsrequest  # type: ignore[import-untyped]
import botocore.credentials  # type: ignore[import-untyped]
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import code
from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from ._server import free_port

HTTP_TIMEOUT = 15.0


# --- fixtures and helpers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lab:
    srv: S3Server
    web_port: int


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    web_port = free_port()
    data = tmp_path_factory.mktemp("labreview") / "data"
    s = S3Server(data, "--web-port", str(web_port)).start()
    yield Lab(s, web_port)
    print(f"--- server log\n{s.server.log_text()[-20000:]}")
    s.close()


@pytest.fixture(scope="module")
def s3(lab: Lab) -> Any:
    return lab.srv.client()


@pytest.fixture(scope="module")
def mallory(lab: Lab) -> Any:
    """A second kvbox user, owner of nothing the tests attack."""
    return lab.srv.client(*lab.srv.new_user("mallory"))


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        m = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return m.group(1).decode() if m else None


def anon(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Answer:
    """One unsigned request, headers exactly as given (no proxy, bounded in time)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def signed(srv: S3Server, method: str, path: str, body: bytes = b"") -> Answer:
    """A root-signed request with a body boto3 would not send (raw bytes, any encoding)."""
    url = f"{srv.endpoint}{path}"
    headers = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body, headers=headers)
    creds = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    botocore.auth.S3SigV4Auth(creds, "s3", REGION).add_auth(req)
    prepared = req.prepare()
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=HTTP_TIMEOUT)
    try:
        target = prepared.url[len(srv.endpoint) :]
        conn.request(method, target, body=body or None, headers=dict(prepared.headers))
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow_get(bucket: str) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }


def deny_get_if(bucket: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": condition,
    }


def versioned(s3: Any, name: str, *, acls: bool = False) -> str:
    """A versioned bucket; ``acls``: with ACLs enabled (new buckets have them off)."""
    s3.create_bucket(Bucket=name, **({"ObjectOwnership": "ObjectWriter"} if acls else {}))
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def website(s3: Any, name: str) -> str:
    s3.put_bucket_website(
        Bucket=name, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}}
    )
    return name


def instant_between(before: Callable[[], object], after: Callable[[], object]) -> int:
    """Epoch milliseconds strictly after ``before()`` wrote and before ``after()`` did."""
    before()
    time.sleep(0.02)
    at = int(time.time() * 1000)
    time.sleep(0.02)
    after()
    return at


def refused(fn: Callable[[], object]) -> str:
    try:
        fn()
    except ClientError as exc:
        return code(exc)
    return "ALLOWED"


# --- time-travel reads (x-kvbox-at) --------------------------------------------------------


def test_time_travel_read_uses_the_served_versions_acl(lab: Lab, s3: Any) -> None:
    b = versioned(s3, "rv-tt-acl", acls=True)
    at = instant_between(
        lambda: s3.put_object(Bucket=b, Key="k", Body=b"PRIVATE-OLD"),
        lambda: s3.put_object(Bucket=b, Key="k", Body=b"public-new", ACL="public-read"),
    )
    assert anon(lab.srv.http_port, "GET", f"/{b}/k").body == b"public-new"
    old = anon(lab.srv.http_port, "GET", f"/{b}/k?x-kvbox-at={at}")
    assert old.status == 403 and old.code == "AccessDenied", old
    assert b"PRIVATE-OLD" not in old.body


def test_time_travel_read_honours_the_served_versions_tags(lab: Lab, s3: Any) -> None:
    b = versioned(s3, "rv-tt-tags")
    s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            allow_get(b),
            deny_get_if(b, {"StringEquals": {"s3:ExistingObjectTag/class": "secret"}}),
        ),
    )
    at = instant_between(
        lambda: s3.put_object(Bucket=b, Key="doc", Body=b"TOP-SECRET", Tagging="class=secret"),
        lambda: s3.put_object(Bucket=b, Key="doc", Body=b"redacted"),
    )
    old = anon(lab.srv.http_port, "GET", f"/{b}/doc?x-kvbox-at={at}")
    assert old.status == 403, old
    header = anon(lab.srv.http_port, "GET", f"/{b}/doc", {"x-kvbox-at": str(at)})
    assert header.status == 403, header


def test_time_travel_read_of_a_deleted_object_needs_get_object_version(lab: Lab, s3: Any) -> None:
    b = versioned(s3, "rv-tt-deleted")
    s3.put_bucket_policy(Bucket=b, Policy=policy(allow_get(b)))
    at = instant_between(
        lambda: s3.put_object(Bucket=b, Key="leak", Body=b"DELETED-SECRET"),
        lambda: s3.delete_object(Bucket=b, Key="leak"),
    )
    by_id = s3.list_object_versions(Bucket=b, Prefix="leak")["Versions"][0]["VersionId"]
    # The honest ways to a noncurrent version are refused to the public...
    assert anon(lab.srv.http_port, "GET", f"/{b}/leak?versionId={by_id}").status == 403
    assert anon(lab.srv.http_port, "GET", f"/{b}/leak").status == 404
    # ...and so must the kvbox extension be.
    old = anon(lab.srv.http_port, "GET", f"/{b}/leak?x-kvbox-at={at}")
    assert old.status == 403, old


def test_time_travel_garbage_is_a_clean_400(lab: Lab, s3: Any) -> None:
    b = versioned(s3, "rv-tt-garbage")
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    for bad in ("yesterday", "9" * 40, "-1e999", "2024-13-45T99:99:99Z", "%FF", "1" * 5000):
        got = signed(lab.srv, "GET", f"/{b}/k?x-kvbox-at={quote(bad, safe='')}")
        assert got.status == 400 and got.code in ("InvalidArgument", "InvalidURI"), (bad, got)


# --- the website endpoint ------------------------------------------------------------------


def test_website_applies_a_source_ip_deny(lab: Lab, s3: Any) -> None:
    b = "rv-web-ipdeny"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="index.html", Body=b"hello", ContentType="text/html")
    website(s3, b)
    s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(allow_get(b), deny_get_if(b, {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})),
    )
    assert anon(lab.srv.http_port, "GET", f"/{b}/index.html").status == 403
    page = anon(lab.web_port, "GET", f"/{b}/index.html")
    assert page.status == 403, page


def test_website_applies_user_agent_and_referer_denies(lab: Lab, s3: Any) -> None:
    b = "rv-web-uadeny"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="index.html", Body=b"hello", ContentType="text/html")
    website(s3, b)
    s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            allow_get(b),
            deny_get_if(b, {"StringLike": {"aws:UserAgent": "*BadBot*"}}),
            deny_get_if(b, {"StringLike": {"aws:Referer": "http://evil.example/*"}}),
        ),
    )
    for hdrs in ({"User-Agent": "BadBot/1.0"}, {"Referer": "http://evil.example/page"}):
        assert anon(lab.srv.http_port, "GET", f"/{b}/index.html", hdrs).status == 403
        page = anon(lab.web_port, "GET", f"/{b}/index.html", hdrs)
        assert page.status == 403, (hdrs, page)


def test_website_applies_an_existing_object_tag_deny(lab: Lab, s3: Any) -> None:
    b = "rv-web-tagdeny"
    s3.create_bucket(Bucket=b)
    website(s3, b)
    s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            allow_get(b),
            deny_get_if(b, {"StringEquals": {"s3:ExistingObjectTag/class": "secret"}}),
        ),
    )
    s3.put_object(Bucket=b, Key="doc.html", Body=b"TOP-SECRET", Tagging="class=secret")
    assert anon(lab.srv.http_port, "GET", f"/{b}/doc.html").status == 403
    page = anon(lab.web_port, "GET", f"/{b}/doc.html")
    assert page.status == 403, page
    assert b"TOP-SECRET" not in page.body


def test_website_allow_pinned_to_source_ip(lab: Lab, s3: Any) -> None:
    b = "rv-web-ipallow"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="index.html", Body=b"hello", ContentType="text/html")
    website(s3, b)
    stmt = allow_get(b) | {"Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}
    s3.put_bucket_policy(Bucket=b, Policy=policy(stmt))
    assert anon(lab.srv.http_port, "GET", f"/{b}/index.html").status == 200
    assert anon(lab.web_port, "GET", f"/{b}/index.html").status == 200


def test_website_never_serves_private_objects_or_unconfigured_buckets(lab: Lab, s3: Any) -> None:
    site = "rv-web-site"
    s3.create_bucket(Bucket=site)
    s3.put_object(Bucket=site, Key="index.html", Body=b"home", ContentType="text/html")
    s3.put_object(Bucket=site, Key="priv/secret.txt", Body=b"SITE-SECRET")
    website(s3, site)
    s3.put_bucket_policy(
        Bucket=site,
        Policy=policy(
            allow_get(site),
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{site}/priv/*",
            },
        ),
    )
    other = "rv-web-private"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=other, Key="index.html", Body=b"OTHER-SECRET")
    port = lab.web_port
    assert anon(port, "GET", f"/{site}/").body == b"home"
    tricks = [
        f"/{site}/priv/secret.txt",
        f"/{site}/priv%2Fsecret.txt",
        f"/{site}/pub/../priv/secret.txt",
        f"/{site}/./priv/secret.txt",
        "/%72v-web-site/priv/secret.txt",
        f"/{other}/index.html",
        f"/{other}/",
        f"/{site}/../{other}/index.html",
        f"/{site}%2F..%2F{other}/index.html",
    ]
    for path in tricks:
        for method in ("GET", "HEAD"):
            got = anon(port, method, path)
            assert got.status in (403, 404), (method, path, got.status)
            assert b"SECRET" not in got.body, (method, path)
    # The Host header picks a bucket only among those with a website configuration.
    for host in (other, f"{other}:{port}", f"{site}.{other}", "localhost"):
        got = anon(port, "GET", "/index.html", {"Host": host})
        assert b"OTHER-SECRET" not in got.body, host


def test_website_redirect_location_is_validated(lab: Lab, s3: Any) -> None:
    b = "rv-web-redirect"
    s3.create_bucket(Bucket=b)
    for bad in ("javascript:alert(1)", "evil.example/x", "data:text/html,hi"):
        try:
            s3.put_object(Bucket=b, Key="r.html", Body=b"", WebsiteRedirectLocation=bad)
        except ClientError as exc:
            assert code(exc) == "InvalidRedirectLocation", bad
        else:
            pytest.fail(f"x-amz-website-redirect-location {bad!r} was stored")


# --- bucket policies: decisions and spoofing -----------------------------------------------


def test_x_forwarded_for_never_becomes_the_source_ip(lab: Lab, s3: Any) -> None:
    b = "rv-xff"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    s3.put_object(Bucket=b, Key="index.html", Body=b"x")
    website(s3, b)
    stmt = allow_get(b) | {"Condition": {"IpAddress": {"aws:SourceIp": "10.9.8.7/32"}}}
    s3.put_bucket_policy(Bucket=b, Policy=policy(stmt))
    spoofs = (
        {"X-Forwarded-For": "10.9.8.7"},
        {"X-Forwarded-For": "10.9.8.7, 127.0.0.1"},
        {"Forwarded": "for=10.9.8.7"},
        {"X-Real-IP": "10.9.8.7"},
        {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.8.7"},
    )
    for hdrs in spoofs:
        assert anon(lab.srv.http_port, "GET", f"/{b}/k", hdrs).status == 403, hdrs
        assert anon(lab.web_port, "GET", f"/{b}/index.html", hdrs).status == 403, hdrs


def test_secure_transport_is_not_spoofable(lab: Lab, s3: Any) -> None:
    b = "rv-tls-only"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    stmt = allow_get(b) | {"Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    s3.put_bucket_policy(Bucket=b, Policy=policy(stmt))
    for hdrs in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "proto=https"}, {}):
        assert anon(lab.srv.http_port, "GET", f"/{b}/k", hdrs).status == 403, hdrs


def test_deny_on_a_prefix_beats_a_public_allow(lab: Lab, s3: Any, mallory: Any) -> None:
    b = "rv-deny-prefix"
    s3.create_bucket(Bucket=b)
    for k in ("pub/a", "priv/b"):
        s3.put_object(Bucket=b, Key=k, Body=b"PRIVATE" if k.startswith("priv") else b"ok")
    s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{b}/*", f"arn:aws:s3:::{b}"],
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": f"arn:aws:s3:::{b}/priv/*",
            },
        ),
    )
    port = lab.srv.http_port
    assert anon(port, "GET", f"/{b}/pub/a").status == 200
    for path in (f"/{b}/priv/b", f"/{b}/priv%2Fb", f"/{b}/priv/b?versionId=null"):
        for method in ("GET", "HEAD"):
            got = anon(port, method, path)
            assert got.status == 403, (method, path, got)
    # "Principal": "*" in a Deny covers signed users and root too (AWS).
    assert refused(lambda: mallory.get_object(Bucket=b, Key="priv/b")) == "AccessDenied"
    assert refused(lambda: s3.get_object(Bucket=b, Key="priv/b")) == "AccessDenied"
    assert refused(lambda: s3.put_object(Bucket=b, Key="priv/new", Body=b"x")) == "AccessDenied"
    # and root may still repair the policy (AWS keeps the account root able to)
    s3.delete_bucket_policy(Bucket=b)


def test_not_principal_deny(lab: Lab, s3: Any) -> None:
    b = "rv-notprincipal"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            allow_get(b),
            {
                "Effect": "Deny",
                "NotPrincipal": {"AWS": "nobody-in-particular"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{b}/*",
            },
        ),
    )
    assert anon(lab.srv.http_port, "GET", f"/{b}/k").status == 403
    assert refused(lambda: s3.get_object(Bucket=b, Key="k")) == "AccessDenied"


# --- a second user against root's bucket ---------------------------------------------------


def test_second_user_is_denied_every_operation(lab: Lab, s3: Any, mallory: Any) -> None:
    b = versioned(s3, "rv-root-owned")
    vid = s3.put_object(Bucket=b, Key="secret", Body=b"s3cr3t")["VersionId"]
    up = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
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
    assert s3.get_object(Bucket=b, Key="secret")["Body"].read() == b"s3cr3t"
    assert s3.list_parts(Bucket=b, Key="mp", UploadId=up).get("Parts", []) == []
    assert refused(lambda: s3.get_bucket_policy(Bucket=b)) == "NoSuchBucketPolicy"


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


def test_delete_objects_with_an_object_level_grant(lab: Lab, s3: Any, mallory: Any) -> None:
    b = "rv-delete-objects"
    s3.create_bucket(Bucket=b)
    for k in ("pub/a", "priv/b"):
        s3.put_object(Bucket=b, Key=k, Body=b"x")
    s3.put_bucket_policy(
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
    assert s3.get_object(Bucket=b, Key="priv/b")["Body"].read() == b"x"


def test_anonymous_missing_key_and_bucket_do_not_leak(lab: Lab, s3: Any) -> None:
    b = "rv-leaks"
    s3.create_bucket(Bucket=b)
    s3.put_bucket_policy(Bucket=b, Policy=policy(allow_get(b)))
    port = lab.srv.http_port
    for path in (f"/{b}/missing", "/rv-no-such-bucket/k", "/rv-no-such-bucket"):
        for method in ("GET", "HEAD"):
            got = anon(port, method, path)
            assert got.status == 403, (method, path, got)
    got = anon(port, "GET", f"/{b}/missing?x-kvbox-at=2020-01-01T00:00:00Z")
    assert got.status == 403, got
    for body in (anon(port, "GET", f"/{b}/missing").body, anon(port, "GET", "/nope/x").body):
        assert b"Traceback" not in body and b"/work" not in body and b"sqlite" not in body.lower()


# --- bad input -----------------------------------------------------------------------------


def test_non_utf8_config_documents_are_a_400(lab: Lab, s3: Any) -> None:
    b = "rv-latin1"
    s3.create_bucket(Bucket=b)
    decl = '<?xml version="1.0" encoding="ISO-8859-1"?>'
    web = (
        f"{decl}<WebsiteConfiguration><IndexDocument><Suffix>ind\xe9x.html</Suffix>"
        "</IndexDocument></WebsiteConfiguration>"
    ).encode("latin-1")
    cors = (
        f"{decl}<CORSConfiguration><CORSRule><AllowedOrigin>http://\xe9.example</AllowedOrigin>"
        "<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"
    ).encode("latin-1")
    for sub, body in (("website", web), ("cors", cors)):
        got = signed(lab.srv, "PUT", f"/{b}?{sub}", body)
        assert got.status in (200, 400), (sub, got)  # stored faithfully, or refused
        assert got.code != "InternalError", (sub, got)


def test_malformed_policies_are_refused_cleanly(lab: Lab, s3: Any) -> None:
    b = "rv-bad-policy"
    s3.create_bucket(Bucket=b)
    stmt = allow_get(b)
    nested = json.dumps(
        {"Version": "2012-10-17", "Statement": [stmt | {"Condition": "@"}]}
    ).replace('"@"', "[" * 3000 + "]" * 3000)
    bad: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b"{" * 20000,
        nested.encode(),
        policy(stmt).replace('"Effect"', '"Effect": "Deny", "Effect"', 1).encode(),
        policy(stmt | {"Sid": "x"}).encode().replace(b'"x"', b'"\xff\xfe"'),
        policy(stmt).encode() + b" " * (21 * 1024),
        policy(stmt | {"Resource": "arn:aws:s3:::someone-elses-bucket/*"}).encode(),
        policy(stmt | {"Condition": {"NumericLessThan": {"s3:max-keys": float("nan")}}}).encode(),
        policy(stmt | {"Condition": {"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}}}).encode(),
    ]
    for body in bad:
        got = signed(lab.srv, "PUT", f"/{b}?policy", body)
        # (an oversized body may be cut off before it is parsed)
        assert got.status == 400, (body[:80], got)
        assert got.code in ("MalformedPolicy", "MaxMessageLengthExceeded"), (body[:80], got)
    assert refused(lambda: s3.get_bucket_policy(Bucket=b)) == "NoSuchBucketPolicy"


def test_malformed_markers_and_ids(lab: Lab, s3: Any) -> None:
    b = versioned(s3, "rv-bad-markers")
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    srv = lab.srv
    for query in (
        "versions&version-id-marker=ABC",
        "versions&max-keys=-1",
        "versions&max-keys=99999999999999999999999999999",
        "versions&encoding-type=base64",
    ):
        got = signed(srv, "GET", f"/{b}?{query}")
        assert got.status in (200, 400), (query, got)
        assert got.code != "InternalError", (query, got)
    got = signed(srv, "GET", f"/{b}?versions&max-keys=99999999999999")
    assert got.status == 200 and b"<MaxKeys>1000</MaxKeys>" in got.body, got
    for vid in ("../../etc", "'; DROP TABLE versions;--", "A" * 5000, "%00", "null%00"):
        got = signed(srv, "GET", f"/{b}/k?versionId={quote(vid, safe='')}")
        assert got.status in (400, 404), (vid, got)
    for marker in ("\U0010ffff" * 3, "\ud7ff\ue000", "z" * 1100):
        query = f"versions&key-marker={quote(marker, safe='')}&version-id-marker=null"
        got = signed(srv, "GET", f"/{b}?{query}")
        assert got.status in (200, 400), (marker, got)


# --- listing, tags and attrs ---------------------------------------------------------------


def _paged_versions(s3: Any, bucket: str, page: int, **kw: Any) -> tuple[list[Any], list[str]]:
    entries: list[Any] = []
    prefixes: list[str] = []
    markers: dict[str, str] = {}
    for _ in range(500):
        r = s3.list_object_versions(Bucket=bucket, MaxKeys=page, **kw, **markers)
        for v in r.get("Versions", []) + r.get("DeleteMarkers", []):
            entries.append((v["Key"], v["VersionId"], v["IsLatest"]))
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            return entries, prefixes
        markers = {"KeyMarker": r["NextKeyMarker"]}
        if r.get("NextVersionIdMarker"):
            markers["VersionIdMarker"] = r["NextVersionIdMarker"]
    raise AssertionError("ListObjectVersions did not end within 500 pages")


def test_list_object_versions_pages_add_up(lab: Lab, s3: Any) -> None:
    b = versioned(s3, "rv-lov-pages")
    for k in ("a", "a/1", "a/2", "a0", "b", "b/x/y", "c", "d/"):
        for i in range(3):
            s3.put_object(Bucket=b, Key=k, Body=str(i).encode())
    s3.delete_object(Bucket=b, Key="c")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=b, Key="a0", Body=b"null")
    s3.put_object(Bucket=b, Key="e", Body=b"null")
    for kw in ({}, {"Delimiter": "/"}, {"Prefix": "a"}, {"Prefix": "a", "Delimiter": "/"}):
        whole, whole_prefixes = _paged_versions(s3, b, 1000, **kw)
        for page in (1, 2, 3, 5):
            got, got_prefixes = _paged_versions(s3, b, page, **kw)
            assert len(got) == len(set(got)), (kw, page)
            assert sorted(got) == sorted(whole), (kw, page)
            assert sorted(got_prefixes) == sorted(whole_prefixes), (kw, page)


def test_tags_and_acl_never_stick_to_the_next_version(lab: Lab, s3: Any) -> None:
    for versioning in (False, True):
        b = "rv-stale-v" if versioning else "rv-stale-u"
        if versioning:
            versioned(s3, b, acls=True)
        else:
            s3.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
        s3.put_object(Bucket=b, Key="k", Body=b"one")
        s3.put_object_tagging(Bucket=b, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
        s3.put_object_acl(Bucket=b, Key="k", ACL="public-read")
        assert anon(lab.srv.http_port, "GET", f"/{b}/k").status == 200
        s3.put_object(Bucket=b, Key="k", Body=b"two")
        assert s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == []
        assert anon(lab.srv.http_port, "GET", f"/{b}/k").status == 403
        assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"two"


def test_concurrent_tagging_and_overwrites(lab: Lab) -> None:
    """Tags set while the key is overwritten land on some version whole, never mixed
    into another version's fresh tags, and never undo an overwrite."""
    writer, tagger, reader = lab.srv.client(), lab.srv.client(), lab.srv.client()
    b = versioned(reader, "rv-tag-race")
    reader.put_object(Bucket=b, Key="k", Body=b"body-start", Tagging="fresh=start")
    deadline = time.monotonic() + 6.0
    last: list[int] = []
    errors: list[str] = []

    def write() -> None:
        for i in range(150):
            if time.monotonic() > deadline:
                return
            writer.put_object(Bucket=b, Key="k", Body=f"body-{i}".encode(), Tagging=f"fresh={i}")
            last.append(i)

    def tag() -> None:
        for _ in range(600):
            if time.monotonic() > deadline:
                return
            try:
                tagger.put_object_tagging(
                    Bucket=b, Key="k", Tagging={"TagSet": [{"Key": "fresh", "Value": "tagged"}]}
                )
            except ClientError as exc:
                errors.append(code(exc))

    threads = [threading.Thread(target=write), threading.Thread(target=tag)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert last, "no overwrite completed"
    now = reader.get_object(Bucket=b, Key="k")["Body"].read().decode()
    assert now == f"body-{last[-1]}"
    versions = reader.list_object_versions(Bucket=b, Prefix="k")["Versions"]
    assert len(versions) == len(last) + 1
    for v in versions[:40]:
        vid = v["VersionId"]
        body = reader.get_object(Bucket=b, Key="k", VersionId=vid)["Body"].read().decode()
        tags = reader.get_object_tagging(Bucket=b, Key="k", VersionId=vid)["TagSet"]
        value = {t["Key"]: t["Value"] for t in tags}["fresh"]
        assert value == "tagged" or body == f"body-{value}", (body, value)


# --- durability and denial of service (own servers) ----------------------------------------


def test_bucket_settings_survive_kill_9(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        b = "rv-durable"
        s3.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
        for i in range(20):
            doc = {"Version": "2012-10-17", "Id": f"p{i}", "Statement": [allow_get(b)]}
            s3.put_bucket_policy(Bucket=b, Policy=json.dumps(doc))
        s3.put_bucket_acl(Bucket=b, ACL="public-read")
        s3.put_object(Bucket=b, Key="t", Body=b"x")
        s3.put_object_tagging(Bucket=b, Key="t", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
        srv.server.restart(signal.SIGKILL)
        s3 = srv.client()
        assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"])["Id"] == "p19"
        grants = s3.get_bucket_acl(Bucket=b)["Grants"]
        assert any(g["Permission"] == "READ" for g in grants)
        assert s3.get_object_tagging(Bucket=b, Key="t")["TagSet"] == [{"Key": "a", "Value": "1"}]
        assert anon(srv.http_port, "GET", f"/{b}/t").status == 200
    finally:
        srv.close()


def test_policy_wildcards_cannot_freeze_the_server(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        b = "rv-redos"
        s3.create_bucket(Bucket=b)
        stmt = allow_get(b) | {"Condition": {"StringLike": {"aws:UserAgent": "*a" * 10 + "*b"}}}
        s3.put_bucket_policy(Bucket=b, Policy=policy(stmt))
        attack = threading.Thread(
            target=lambda: _swallow(
                lambda: anon(srv.http_port, "GET", f"/{b}/k", {"User-Agent": "a" * 200})
            ),
            daemon=True,
        )
        attack.start()
        time.sleep(0.5)
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=5.0)
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        assert time.monotonic() - started < 5.0
    finally:
        srv.close()  # SIGKILL by PID: the stuck regex does not outlive the test


def _swallow(fn: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):  # the server is killed under it at the test's end
        fn()
