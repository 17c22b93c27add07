"""POST Object (browser-based uploads) on a real ``kvbox serve``.

Layer: tests/e2e. Rules: one server for the module. Forms are made the ways users make
them: boto3's ``generate_presigned_post`` (with boto3's default configuration, which
signs forms with Signature Version 2, and with ``signature_version='s3v4'``), submitted
with ``curl -F`` exactly as a shell user would; bodies built by hand where a test needs
bytes no client sends (fields after the file, a cut-off body, a 20 KB field). Expected
answers are AWS's: the API reference's "POST Object" and the "POST Policy",
"Calculating a signature (POST)" and "HTML forms" pages (status codes, error codes, the
``PostResponse`` body, the 303 redirect's query). The browser half is
``test_s3_post_browser.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import Reply, curl
from ._s3 import ACCESS_KEY, SECRET_KEY, S3Server, module_server

BUCKET = "forms"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3post") as s:
        s.client().create_bucket(Bucket=BUCKET)
        yield s


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


@pytest.fixture(scope="module", params=["default", "s3v4"])
def signer(request: pytest.FixtureRequest, srv: S3Server) -> tuple[str, Any]:
    """A boto3 client to sign forms with: botocore's default (which signs forms with
    SigV2 against a custom endpoint) or ``signature_version='s3v4'``."""
    name = str(request.param)
    return name, srv.default_client() if name == "default" else srv.client()


def post_curl(url: str, fields: dict[str, str], file: Path, *extra: str) -> Reply:
    """``curl -F`` as a user types it: ``--form-string`` keeps values literal."""
    args: list[str] = []
    for name, value in fields.items():
        args += ["--form-string", f"{name}={value}"]
    return curl(url, *args, "-F", f"file=@{file}", *extra)


def form_body(
    fields: list[tuple[str, str]],
    file: tuple[str, bytes] | None,
    after: list[tuple[str, str]] = (),  # type: ignore[assignment]
    boundary: str = "kvboxFormBoundary7MA4YWxk",
) -> bytes:
    """A multipart/form-data body by hand: fields, the file (name, bytes), then fields."""
    out = bytearray()

    def part(name: str, value: bytes, filename: str | None = None) -> None:
        out.extend(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.extend(f"Content-Disposition: {disposition}\r\n\r\n".encode())
        out.extend(value + b"\r\n")

    for name, value in fields:
        part(name, value.encode())
    if file is not None:
        part("file", file[1], file[0])
    for name, value in after:
        part(name, value.encode())
    out.extend(f"--{boundary}--\r\n".encode())
    return bytes(out)


def post_raw(
    srv: S3Server, body: bytes, bucket: str = BUCKET, boundary: str = "kvboxFormBoundary7MA4YWxk"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request(
            "POST",
            f"/{bucket}",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def error_code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code") if body.startswith(b"<") else None


def missing(s3: Any, key: str, bucket: str = BUCKET) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"]) == 404
    return False


# --- uploads that work ----------------------------------------------------------------------


def test_presigned_post_with_each_signature_version(
    srv: S3Server, s3: Any, signer: tuple[str, Any], tmp_path: Path
) -> None:
    config, client = signer
    post = client.generate_presigned_post(
        BUCKET,
        "up/${filename}",
        Fields={"x-amz-meta-color": "red", "Content-Type": "text/plain"},
        Conditions=[
            {"x-amz-meta-color": "red"},
            ["starts-with", "$Content-Type", "text/"],
            ["content-length-range", 1, 1000],
        ],
    )
    signed_v4 = "x-amz-signature" in post["fields"]
    assert signed_v4 == (config == "s3v4"), post["fields"]
    name = f"note-{'v4' if signed_v4 else 'v2'}.txt"
    upload = tmp_path / name
    upload.write_bytes(b"hello from a form\n")
    reply = post_curl(post["url"], post["fields"], upload)
    assert reply.status == 204, reply
    etag = hashlib.md5(b"hello from a form\n").hexdigest()
    assert reply.headers["etag"] == f'"{etag}"'
    assert reply.headers["location"].endswith(f"/{BUCKET}/up/{name}")
    got = s3.get_object(Bucket=BUCKET, Key=f"up/{name}")
    assert got["Body"].read() == b"hello from a form\n"
    assert got["Metadata"] == {"color": "red"}
    assert got["ContentType"] == "text/plain"


def test_success_status_and_redirect(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    upload = tmp_path / "a.bin"
    upload.write_bytes(b"abc")
    for status, expect in (("201", 201), ("200", 200), ("404", 204)):
        post = s3.generate_presigned_post(
            BUCKET,
            f"status-{status}",
            Fields={"success_action_status": status},
            Conditions=[{"success_action_status": status}],
        )
        reply = post_curl(post["url"], post["fields"], upload)
        assert reply.status == expect, reply
        if expect == 201:
            doc = ET.fromstring(reply.body)
            assert doc.tag == "PostResponse"
            assert doc.findtext("Bucket") == BUCKET and doc.findtext("Key") == "status-201"
            assert doc.findtext("ETag") == f'"{hashlib.md5(b"abc").hexdigest()}"'
            assert doc.findtext("Location", "").endswith(f"/{BUCKET}/status-201")
        else:
            assert reply.body == b""
    done = "https://app.example/uploaded?from=form"
    post = s3.generate_presigned_post(
        BUCKET,
        "redirected",
        Fields={"success_action_redirect": done},
        Conditions=[{"success_action_redirect": done}],
    )
    reply = post_curl(post["url"], post["fields"], upload)
    assert reply.status == 303, reply
    where = urlsplit(reply.headers["location"])
    assert (where.scheme, where.netloc, where.path) == ("https", "app.example", "/uploaded")
    assert parse_qs(where.query) == {
        "from": ["form"],
        "bucket": [BUCKET],
        "key": ["redirected"],
        "etag": [f'"{hashlib.md5(b"abc").hexdigest()}"'],
    }
    assert s3.get_object(Bucket=BUCKET, Key="redirected")["Body"].read() == b"abc"


def test_filename_variable_case_and_ignored_fields(srv: S3Server, s3: Any) -> None:
    """Field names are case-insensitive, ``x-ignore-*`` needs no condition, ``${filename}``
    is the browser's file name, and fields after the file are ignored."""
    post = s3.generate_presigned_post(
        BUCKET, "by-name/${filename}", Conditions=[["starts-with", "$Content-Type", "image/"]]
    )
    fields = [(k.upper() if k == "key" else k, v) for k, v in post["fields"].items()]
    fields += [("content-type", "image/png"), ("x-ignore-submit", "Upload")]
    body = form_body(
        fields,
        ("C:\\Users\\me\\cat.png", b"\x89PNG fake"),
        after=[("x-amz-meta-late", "ignored"), ("acl", "public-read")],
    )
    status, _, answer = post_raw(srv, body)
    assert status == 204, answer
    head = s3.head_object(Bucket=BUCKET, Key="by-name/cat.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {}


def test_tagging_checksum_and_acl_fields(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    upload = tmp_path / "t.txt"
    upload.write_bytes(b"tagged")
    tagging = "<Tagging><TagSet><Tag><Key>team</Key><Value>blue</Value></Tag></TagSet></Tagging>"
    sha = base64.b64encode(hashlib.sha256(b"tagged").digest()).decode()
    post = s3.generate_presigned_post(
        BUCKET,
        "tagged",
        Fields={"tagging": tagging, "x-amz-checksum-sha256": sha},
        Conditions=[{"tagging": tagging}, {"x-amz-checksum-sha256": sha}],
    )
    assert post_curl(post["url"], post["fields"], upload).status == 204
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="tagged")["TagSet"]
    assert tags == [{"Key": "team", "Value": "blue"}]
    head = s3.head_object(Bucket=BUCKET, Key="tagged", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha
    # a checksum that does not match stores nothing
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    post = s3.generate_presigned_post(
        BUCKET,
        "bad-sum",
        Fields={"x-amz-checksum-sha256": wrong},
        Conditions=[{"x-amz-checksum-sha256": wrong}],
    )
    reply = post_curl(post["url"], post["fields"], upload)
    assert (reply.status, reply.code) == (400, "BadDigest"), reply
    assert missing(s3, "bad-sum")
    # ACLs: refused in a bucket with ACLs disabled (the default), kept where they are on
    post = s3.generate_presigned_post(
        BUCKET, "public", Fields={"acl": "public-read"}, Conditions=[{"acl": "public-read"}]
    )
    reply = post_curl(post["url"], post["fields"], upload)
    assert (reply.status, reply.code) == (400, "AccessControlListNotSupported"), reply
    s3.create_bucket(Bucket="forms-acl", ObjectOwnership="ObjectWriter")
    post = s3.generate_presigned_post(
        "forms-acl", "public", Fields={"acl": "public-read"}, Conditions=[{"acl": "public-read"}]
    )
    assert post_curl(post["url"], post["fields"], upload).status == 204
    assert curl(f"{srv.endpoint}/forms-acl/public").body == b"tagged"


# --- the policy: every condition enforced -----------------------------------------------------


def test_every_condition_is_enforced(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    upload = tmp_path / "x.txt"
    upload.write_bytes(b"0123456789")

    def attempt(
        key: str, conditions: list[Any], fields: dict[str, str], expires: int = 600
    ) -> Reply:
        post = s3.generate_presigned_post(
            BUCKET, key, Fields=dict(fields), Conditions=conditions, ExpiresIn=expires
        )
        sent = dict(post["fields"])
        sent.update(fields)
        return post_curl(post["url"], sent, upload)

    def denied(reply: Reply, message: str) -> None:
        assert (reply.status, reply.code) == (403, "AccessDenied"), reply
        assert message in (reply.message or ""), reply

    denied(attempt("old", [], {}, expires=-5), "Policy expired")
    denied(attempt("eq", [{"x-amz-meta-a": "1"}], {"x-amz-meta-a": "2"}), "Policy Condition failed")
    post = s3.generate_presigned_post(
        BUCKET, "user/${filename}", Conditions=[["starts-with", "$key", "user/"]]
    )
    fields = dict(post["fields"], key="admin/x.txt")
    denied(post_curl(post["url"], fields, upload), "Policy Condition failed")
    # a field a condition names must be in the form
    post = s3.generate_presigned_post(BUCKET, "needs", Conditions=[{"x-amz-meta-a": "1"}])
    denied(post_curl(post["url"], post["fields"], upload), "Policy Condition failed")
    # a field no condition names is refused
    post = s3.generate_presigned_post(BUCKET, "extra")
    denied(
        post_curl(post["url"], dict(post["fields"], **{"x-amz-meta-extra": "x"}), upload),
        "Extra input fields: x-amz-meta-extra",
    )
    # the policy names its bucket: it is no good for another one
    s3.create_bucket(Bucket="forms-other")
    post = s3.generate_presigned_post(BUCKET, "elsewhere")
    denied(post_curl(f"{srv.endpoint}/forms-other", post["fields"], upload), "bucket")
    # content-length-range
    for key, low, high, code in (
        ("big", 0, 5, "EntityTooLarge"),
        ("small", 20, 99, "EntityTooSmall"),
    ):
        reply = attempt(key, [["content-length-range", low, high]], {})
        assert (reply.status, reply.code) == (400, code), reply
    for key in ("old", "eq", "needs", "extra", "big", "small"):
        assert missing(s3, key), key
    assert missing(s3, "elsewhere", "forms-other")


def test_form_errors(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    upload = tmp_path / "e.txt"
    upload.write_bytes(b"e")
    post = s3.generate_presigned_post(BUCKET, "err")
    good = list(post["fields"].items())

    def answer(body: bytes) -> tuple[int, str | None]:
        status, _, text = post_raw(srv, body)
        return status, error_code(text)

    assert answer(form_body([f for f in good if f[0] != "key"], ("e", b"e"))) == (
        400,
        "InvalidArgument",
    )
    assert answer(form_body(good, None)) == (400, "IncorrectNumberOfFilesInPostRequest")
    tampered = [(k, v + "0" if k == "x-amz-signature" else v) for k, v in good]
    assert answer(form_body(tampered, ("e", b"e"))) == (403, "SignatureDoesNotMatch")
    unknown = [
        (k, v.replace(v.split("/")[0], "NOSUCHKEY0000000000") if k == "x-amz-credential" else v)
        for k, v in good
    ]
    assert answer(form_body(unknown, ("e", b"e"))) == (403, "InvalidAccessKeyId")
    unsigned = [(k, v) for k, v in good if k != "x-amz-signature"]
    assert answer(form_body(unsigned, ("e", b"e"))) == (400, "InvalidArgument")
    shouting = base64.b64encode(
        json.dumps({"EXPIRATION": "2099-01-01T00:00:00Z", "conditions": []}).encode()
    ).decode()
    # signed (SigV2, computed as AWS documents it) but not a policy AWS would read
    sig = base64.b64encode(hmac.digest(SECRET_KEY.encode(), shouting.encode(), "sha1")).decode()
    bad_policy = [("key", "err"), ("AWSAccessKeyId", ACCESS_KEY), ("policy", shouting)]
    bad_policy.append(("signature", sig))
    assert answer(form_body(bad_policy, ("e", b"e"))) == (400, "InvalidPolicyDocument")
    whole = form_body(good, ("e", b"e" * 1000))
    assert answer(whole[:-40]) == (400, "MalformedPOSTRequest")
    huge = [*good, ("x-ignore-padding", "p" * 21_000)]
    assert answer(form_body(huge, ("e", b"e"))) == (400, "MaxPostPreDataLengthExceededError")
    not_a_form = curl(f"{srv.endpoint}/{BUCKET}", "-X", "POST", "--data-binary", "key=x")
    assert (not_a_form.status, not_a_form.code) == (400, "MalformedPOSTRequest"), not_a_form
    # a field kvbox does not implement is refused, even when the policy allows it
    sse = {"x-amz-server-side-encryption": "aws:kms"}
    post = s3.generate_presigned_post(BUCKET, "err", Fields=sse, Conditions=[sse])
    reply = post_curl(post["url"], post["fields"], upload)
    assert (reply.status, reply.code) == (501, "NotImplemented"), reply
    assert missing(s3, "err")


def test_object_lock_fields_and_default_retention(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    """An upload that gets a lock (its own fields or the bucket's default retention) needs
    Content-MD5 or a checksum, as a PutObject does; with one, the lock is kept."""
    upload = tmp_path / "locked.txt"
    upload.write_bytes(b"keep me")
    s3.create_bucket(Bucket="forms-lock", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket="forms-lock",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    post = s3.generate_presigned_post("forms-lock", "k")
    reply = post_curl(post["url"], post["fields"], upload)
    assert (reply.status, reply.code) == (400, "InvalidRequest"), reply
    md5 = base64.b64encode(hashlib.md5(b"keep me").digest()).decode()
    hold = {"Content-MD5": md5, "x-amz-object-lock-legal-hold": "ON"}
    post = s3.generate_presigned_post(
        "forms-lock", "k", Fields=hold, Conditions=[{k: v} for k, v in hold.items()]
    )
    reply = post_curl(post["url"], post["fields"], upload)
    assert reply.status == 204, reply
    head = s3.head_object(Bucket="forms-lock", Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockLegalHoldStatus"] == "ON"


# --- who may post -------------------------------------------------------------------------------


def test_anonymous_post_needs_the_bucket_policy(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="forms-drop")
    body = form_body([("key", "uploads/anon.txt"), ("Content-Type", "text/plain")], ("a", b"hi"))
    status, _, text = post_raw(srv, body, bucket="forms-drop")
    assert (status, error_code(text)) == (403, "AccessDenied")
    s3.put_bucket_policy(
        Bucket="forms-drop",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": "arn:aws:s3:::forms-drop/uploads/*",
                    }
                ],
            }
        ),
    )
    status, _, text = post_raw(srv, body, bucket="forms-drop")
    assert status == 204, text
    got = s3.get_object(Bucket="forms-drop", Key="uploads/anon.txt")
    assert got["Body"].read() == b"hi" and got["ContentType"] == "text/plain"
    outside = form_body([("key", "elsewhere.txt")], ("a", b"hi"))
    status, _, text = post_raw(srv, outside, bucket="forms-drop")
    assert (status, error_code(text)) == (403, "AccessDenied")
    # a bucket ACL granting everyone WRITE (ACLs on) lets a stranger post too
    s3.create_bucket(Bucket="forms-rw", ACL="public-read-write", ObjectOwnership="ObjectWriter")
    status, _, text = post_raw(srv, outside, bucket="forms-rw")
    assert status == 204, text
    assert s3.get_object(Bucket="forms-rw", Key="elsewhere.txt")["Body"].read() == b"hi"


def test_a_bucket_policy_sees_a_post_for_what_it_is(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    """``s3:authType`` is ``POST`` and ``s3:signatureversion`` the form's: a policy can
    let objects in through forms only."""
    s3.create_bucket(Bucket="forms-only")
    s3.put_bucket_policy(
        Bucket="forms-only",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": "arn:aws:s3:::forms-only/*",
                        "Condition": {"StringNotEquals": {"s3:authType": "POST"}},
                    },
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": "arn:aws:s3:::forms-only/v4/*",
                        "Condition": {
                            "StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}
                        },
                    },
                ],
            }
        ),
    )
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="forms-only", Key="put", Body=b"x")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    upload = tmp_path / "f.txt"
    upload.write_bytes(b"via a form")
    post = s3.generate_presigned_post("forms-only", "v4/posted")
    assert post_curl(post["url"], post["fields"], upload).status == 204
    v2 = srv.default_client().generate_presigned_post("forms-only", "v4/posted-v2")
    reply = post_curl(v2["url"], v2["fields"], upload)
    assert (reply.status, reply.code) == (403, "AccessDenied"), reply
    assert s3.get_object(Bucket="forms-only", Key="v4/posted")["Body"].read() == b"via a form"


def test_a_large_upload_streams(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    """96 MiB through one form: the server's memory grows by a few store chunks, not by
    the file (peak RSS sampled while the upload runs)."""
    size = 96 * 1024 * 1024
    upload = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with upload.open("wb") as fh:
        block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
        for _ in range(size // len(block)):
            fh.write(block)
            digest.update(block)
    post = s3.generate_presigned_post(BUCKET, "big.bin")
    base = srv.server.rss_kib()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], srv.server.rss_kib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        reply = post_curl(post["url"], post["fields"], upload)
    finally:
        stop.set()
        sampler.join(5)
    assert reply.status == 204, reply
    grown_mib = (peak[0] - base) / 1024
    assert grown_mib < 64, f"RSS grew {grown_mib:.0f} MiB for a {size >> 20} MiB POST"
    got = s3.get_object(Bucket=BUCKET, Key="big.bin")
    assert got["ContentLength"] == size
    check = hashlib.sha256()
    for piece in iter(lambda: got["Body"].read(1 << 20), b""):
        check.update(piece)
    assert check.digest() == digest.digest()
