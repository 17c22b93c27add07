"""An anonymous client learns nothing about which buckets exist.

Layer: tests/e2e. Issue 10: an anonymous DeleteObjects answered 200 (every key
AccessDenied) for a bucket that exists and 403 for one that does not. Here every S3
operation is sent anonymously, byte for byte the same, to a private bucket that exists
(with an object, an upload in progress, a policy for someone else) and to one that does
not -- a CORS preflight, a browser form upload and a wrong x-amz-expected-bucket-owner
too: the status, the error code, the XML body (request ids aside) and the response
headers must be the same. A bucket whose policy lets the public delete is different on
purpose: it published its existence, so DeleteObjects answers key by key there.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator

import pytest

from ._s3 import S3Server, module_server

EXISTS, MISSING = "privatebkt", "nosuchbkt"
_IDS = re.compile(rb"<(RequestId|HostId)>[^<]*</\1>")
#: Headers that differ between any two responses.
_VOLATILE = {"date", "x-amz-request-id", "x-amz-id-2", "content-length"}

DELETE_BODY = b"<Delete><Object><Key>k</Key></Object><Object><Key>other</Key></Object></Delete>"

FORM = "xx"
FORM_BODY = (
    b'--xx\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n'
    b'--xx\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nhi\r\n'
    b"--xx--\r\n"
)

#: (method, path with {b} for the bucket, extra headers, body) -- one per operation.
REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/{b}", {}, b""),
    ("GET", "/{b}?list-type=2&prefix=k", {}, b""),
    ("GET", "/{b}?versions", {}, b""),
    ("GET", "/{b}?uploads", {}, b""),
    ("HEAD", "/{b}", {}, b""),
    ("GET", "/{b}?location", {}, b""),
    ("GET", "/{b}?acl", {}, b""),
    ("GET", "/{b}?policy", {}, b""),
    ("GET", "/{b}?versioning", {}, b""),
    ("GET", "/{b}?cors", {}, b""),
    ("GET", "/{b}?tagging", {}, b""),
    ("GET", "/{b}?website", {}, b""),
    ("GET", "/{b}?publicAccessBlock", {}, b""),
    ("PUT", "/{b}?policy", {}, b'{"Version":"2012-10-17","Statement":[]}'),
    ("PUT", "/{b}?versioning", {}, b"<VersioningConfiguration/>"),
    ("DELETE", "/{b}", {}, b""),
    ("DELETE", "/{b}?policy", {}, b""),
    ("POST", "/{b}?delete", {"Content-Type": "application/xml"}, DELETE_BODY),
    ("POST", "/{b}?delete", {"Content-Type": "application/xml"}, b"<not-xml"),
    ("GET", "/{b}/k", {}, b""),
    ("GET", "/{b}/absent", {}, b""),
    ("HEAD", "/{b}/k", {}, b""),
    ("GET", "/{b}/k?acl", {}, b""),
    ("GET", "/{b}/k?tagging", {}, b""),
    ("GET", "/{b}/k?attributes", {"x-amz-object-attributes": "ETag"}, b""),
    ("PUT", "/{b}/k", {}, b"overwrite"),
    ("PUT", "/{b}/k?tagging", {}, b"<Tagging><TagSet/></Tagging>"),
    ("PUT", "/{b}/copy", {"x-amz-copy-source": "/{b}/k"}, b""),
    ("DELETE", "/{b}/k", {}, b""),
    ("POST", "/{b}/k?uploads", {}, b""),
    ("PUT", "/{b}/k?partNumber=1&uploadId=x", {}, b"part"),
    ("POST", "/{b}/k?uploadId=x", {}, b"<CompleteMultipartUpload/>"),
    ("DELETE", "/{b}/k?uploadId=x", {}, b""),
    ("GET", "/{b}/k?uploadId=x", {}, b""),
    ("GET", "/{b}?ownershipControls", {}, b""),
    ("GET", "/{b}?lifecycle", {}, b""),
    ("GET", "/{b}?object-lock", {}, b""),
    ("GET", "/{b}/k?retention", {}, b""),
    ("GET", "/{b}/k?legal-hold", {}, b""),
    ("GET", "/{b}?list-type=2", {"x-amz-expected-bucket-owner": "123456789012"}, b""),
    ("GET", "/{b}/k", {"x-amz-expected-bucket-owner": "123456789012"}, b""),
    # A CORS preflight is anonymous by nature: "no CORS here" for both.
    ("OPTIONS", "/{b}/k", {"Origin": "http://x", "Access-Control-Request-Method": "GET"}, b""),
    # A browser form upload with no signature: refused by the access decision for both.
    ("POST", "/{b}", {"Content-Type": f"multipart/form-data; boundary={FORM}"}, FORM_BODY),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "anonprobe") as s:
        s3 = s.client()
        s3.create_bucket(Bucket=EXISTS)
        s3.put_object(Bucket=EXISTS, Key="k", Body=b"secret")
        s3.create_multipart_upload(Bucket=EXISTS, Key="k")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "someone-else"},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{EXISTS}/*",
                }
            ],
        }
        s3.put_bucket_policy(Bucket=EXISTS, Policy=json.dumps(policy))
        yield s


def _anonymous(
    srv: S3Server, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        kept = {k.lower(): v for k, v in resp.getheaders() if k.lower() not in _VOLATILE}
        return resp.status, kept, _IDS.sub(b"", data)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    REQUESTS,
    ids=[f"{m} {p.replace('{b}', 'b')}" for m, p, _, _ in REQUESTS],
)
def test_existing_private_bucket_answers_like_a_missing_one(
    srv: S3Server, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    answers = [
        _anonymous(
            srv,
            method,
            path.format(b=bucket),
            {k: v.format(b=bucket) for k, v in headers.items()},
            body,
        )
        for bucket in (EXISTS, MISSING)
    ]
    exists, missing = answers
    assert exists[0] == missing[0] and exists[0] in (403, 400, 405, 501), answers
    normalized = (
        exists[2].replace(EXISTS.encode(), b"B"),
        missing[2].replace(MISSING.encode(), b"B"),
    )
    assert normalized[0] == normalized[1], answers
    assert exists[1] == missing[1], answers
    # the object is untouched by all of it
    assert srv.client().get_object(Bucket=EXISTS, Key="k")["Body"].read() == b"secret"


def test_a_bucket_open_to_public_deletes_answers_key_by_key(srv: S3Server) -> None:
    """Whose policy lets everyone delete under one prefix: DeleteObjects is decided per
    key (its existence is public anyway), and only that prefix is deleted."""
    s3 = srv.client()
    s3.create_bucket(Bucket="openbkt")
    s3.put_object(Bucket="openbkt", Key="tmp/a", Body=b"a")
    s3.put_object(Bucket="openbkt", Key="keep", Body=b"k")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:DeleteObject",
                "Resource": "arn:aws:s3:::openbkt/tmp/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket="openbkt", Policy=json.dumps(policy))
    body = b"<Delete><Object><Key>tmp/a</Key></Object><Object><Key>keep</Key></Object></Delete>"
    status, _, data = _anonymous(srv, "POST", "/openbkt?delete", {}, body)
    assert status == 200, data
    assert b"<Deleted><Key>tmp/a</Key>" in data
    assert b"<Key>keep</Key><Code>AccessDenied</Code>" in data
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="openbkt")["Contents"]] == ["keep"]
