"""SigV2 (legacy) and the region rule, against a real ``kvbox serve``.

Layer: tests/e2e. Rules: the clients are used as users meet them: boto3's *default*
configuration (whose presigned URLs are SigV2), ``Config(signature_version="s3")``
(SigV2 headers), the AWS CLI v1 with no configuration beyond credentials and region
(``aws s3 presign``), s3cmd with ``signature_v2``, and curl/urllib for the URLs. A
signature is never computed here by hand: botocore and the CLIs sign.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, module_server
from ._s3clients import S3Cmd, S3Target, client_binary, client_env, curl_get, run_client

BUCKET = "legacy"
CREDS = Credentials(ACCESS_KEY, SECRET_KEY)


@pytest.fixture(scope="module")
def s3srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3sigv2") as srv:
        srv.client().create_bucket(Bucket=BUCKET)
        yield srv


def default_client(srv: S3Server, region: str = REGION, **config: Any) -> Any:
    """boto3 as a user gets it: no signature_version, only retries off."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=srv.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=region,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, proxies={}, **config),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def _open(request: urllib.request.Request | str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read(), dict(e.headers)


# --- SigV2 presigned URLs ----------------------------------------------------------------


def test_boto3_default_presigned_urls_work(s3srv: S3Server) -> None:
    s3 = default_client(s3srv)
    s3.put_object(Bucket=BUCKET, Key="a b/ü+1.txt", Body=b"shared with v2")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "a b/ü+1.txt"}, ExpiresIn=300
    )
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "X-Amz-" not in url
    status, body, _ = _open(url)
    assert (status, body) == (200, b"shared with v2")
    # Sub-resources AWS signs (response-* overrides) are covered by the signature.
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": BUCKET, "Key": "a b/ü+1.txt", "ResponseContentType": "text/x-v2"},
    )
    status, body, headers = _open(url)
    assert status == 200 and headers["Content-Type"] == "text/x-v2"
    status, body, _ = _open(url.replace("text%2Fx-v2", "text%2Fhtml"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    assert b"<StringToSignBytes>" in body


def test_presigned_put_applies_the_headers_it_signed(s3srv: S3Server) -> None:
    s3 = default_client(s3srv)
    url = s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": BUCKET,
            "Key": "put-v2",
            "ContentType": "text/plain",
            "Metadata": {"origin": "presigned"},
        },
        ExpiresIn=300,
    )
    assert "content-type=text%2Fplain" in url and "x-amz-meta-origin=presigned" in url
    # The uploader sends the bytes and nothing else (http.client adds no Content-Type,
    # unlike urllib): the URL carries the headers it signed.
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("PUT", f"{parts.path}?{parts.query}", body=b"uploaded")
    reply = conn.getresponse()
    assert reply.status == 200, reply.read()
    conn.close()
    head = s3.head_object(Bucket=BUCKET, Key="put-v2")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"origin": "presigned"}


def test_expired_and_tampered_sigv2_urls(s3srv: S3Server) -> None:
    s3 = default_client(s3srv)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    req = AWSRequest(method="GET", url=f"{s3srv.endpoint}/{BUCKET}/k")
    HmacV1QueryAuth(CREDS, expires=-60).add_auth(req)  # Expires a minute ago
    status, body, _ = _open(req.url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body
    assert b"<Expires>" in body and b"<ServerTime>" in body
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"})
    status, body, _ = _open(url.replace("/k?", "/other?"))
    assert status == 403 and b"SignatureDoesNotMatch" in body
    status, body, _ = _open(url.replace(f"AWSAccessKeyId={ACCESS_KEY}", "AWSAccessKeyId=NOPE"))
    assert status == 403 and b"InvalidAccessKeyId" in body


def test_aws_cli_v1_presign_with_default_config(s3srv: S3Server, tmp_path: Path) -> None:
    """``aws s3 presign`` as the CLI ships: no s3 signature_version set anywhere."""
    default_client(s3srv).put_object(Bucket=BUCKET, Key="cli.txt", Body=b"from the cli")
    config = tmp_path / "config"
    config.write_text(f"[default]\nregion = {REGION}\n")
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = client_env(
        tmp_path / "home",
        {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(creds)},
    )
    proc = run_client(
        [
            str(client_binary("aws")),
            "--endpoint-url",
            s3srv.endpoint,
            "s3",
            "presign",
            f"s3://{BUCKET}/cli.txt",
            "--expires-in",
            "300",
        ],
        env,
    )
    url = proc.stdout.strip()
    assert "Signature=" in url and "X-Amz-Signature" not in url, url
    assert curl_get(url) == (200, b"from the cli")


# --- SigV2 headers ---------------------------------------------------------------------------


def test_boto3_sigv2_headers_across_operations(s3srv: S3Server) -> None:
    """Config(signature_version="s3"): every call carries ``Authorization: AWS``."""
    s3 = default_client(s3srv, signature_version="s3")
    s3.create_bucket(Bucket="v2-headers")
    s3.put_object(Bucket="v2-headers", Key="dir/o", Body=b"v2", Metadata={"m": "1"})
    assert s3.get_object(Bucket="v2-headers", Key="dir/o")["Body"].read() == b"v2"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="v2-headers")["Contents"]] == ["dir/o"]
    s3.put_bucket_versioning(Bucket="v2-headers", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="v2-headers")["Status"] == "Enabled"
    s3.put_object_tagging(
        Bucket="v2-headers", Key="dir/o", Tagging={"TagSet": [{"Key": "t", "Value": "v"}]}
    )
    assert s3.get_object_tagging(Bucket="v2-headers", Key="dir/o")["TagSet"] == [
        {"Key": "t", "Value": "v"}
    ]
    s3.get_bucket_acl(Bucket="v2-headers")
    up = s3.create_multipart_upload(Bucket="v2-headers", Key="mp")["UploadId"]
    etag = s3.upload_part(
        Bucket="v2-headers", Key="mp", UploadId=up, PartNumber=1, Body=b"p" * 100
    )["ETag"]
    s3.complete_multipart_upload(
        Bucket="v2-headers",
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    s3.delete_objects(Bucket="v2-headers", Delete={"Objects": [{"Key": "mp"}]})
    wrong = boto3.session.Session().client(
        "s3",
        endpoint_url=s3srv.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY + "x",
        region_name=REGION,
        config=Config(signature_version="s3", retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        wrong.list_buckets()
    assert _code(info.value) == "SignatureDoesNotMatch"


def test_sigv2_clock_skew(s3srv: S3Server) -> None:
    req = AWSRequest(method="GET", url=f"{s3srv.endpoint}/{BUCKET}")
    auth = HmacV1Auth(CREDS)
    auth._get_date = lambda: formatdate(time.time() - 20 * 60, usegmt=True)
    auth.add_auth(req)
    status, body, _ = _open(urllib.request.Request(req.url, headers=dict(req.headers.items())))
    assert status == 403 and b"<Code>RequestTimeTooSkewed</Code>" in body
    assert b"<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>" in body


def test_s3cmd_with_signature_v2(s3srv: S3Server, tmp_path: Path) -> None:
    s3cmd = S3Cmd(S3Target("127.0.0.1", s3srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path)
    s3cmd.config.write_text(
        s3cmd.config.read_text().replace("signature_v2 = False", "signature_v2 = True")
    )
    src = tmp_path / "file.bin"
    src.write_bytes(b"s3cmd v2 " * 1000)
    s3cmd("mb", "s3://s3cmd-v2")
    s3cmd("put", str(src), "s3://s3cmd-v2/dir/file.bin")
    listing = s3cmd("ls", "s3://s3cmd-v2/dir/").stdout
    assert "s3://s3cmd-v2/dir/file.bin" in listing
    out = tmp_path / "back.bin"
    s3cmd("get", "s3://s3cmd-v2/dir/file.bin", str(out))
    assert out.read_bytes() == src.read_bytes()
    s3cmd("setacl", "--acl-private", "s3://s3cmd-v2/dir/file.bin")
    s3cmd("del", "s3://s3cmd-v2/dir/file.bin")
    s3cmd("rb", "s3://s3cmd-v2")


def test_a_policy_can_refuse_sigv2(s3srv: S3Server) -> None:
    """s3:signatureversion is "AWS" for SigV2: the usual policy that bans it works."""
    v4 = s3srv.client()
    v4.create_bucket(Bucket="no-v2")
    v4.put_object(Bucket="no-v2", Key="k", Body=b"v4 only")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::no-v2", "arn:aws:s3:::no-v2/*"],
                "Condition": {"StringEquals": {"s3:signatureversion": "AWS"}},
            }
        ],
    }
    v4.put_bucket_policy(Bucket="no-v2", Policy=json.dumps(policy))
    url = default_client(s3srv).generate_presigned_url(
        "get_object", Params={"Bucket": "no-v2", "Key": "k"}
    )
    status, body, _ = _open(url)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert v4.get_object(Bucket="no-v2", Key="k")["Body"].read() == b"v4 only"
    v4.delete_bucket_policy(Bucket="no-v2")


# --- the region rule --------------------------------------------------------------------------


def _signed_for(srv: S3Server, region: str, path: str) -> tuple[int, bytes]:
    req = AWSRequest(method="GET", url=f"{srv.endpoint}{path}")
    req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    S3SigV4Auth(CREDS, "s3", region).add_auth(req)
    status, body, _ = _open(urllib.request.Request(req.url, headers=dict(req.headers.items())))
    return status, body


def test_a_request_signed_for_another_region_names_the_right_one(s3srv: S3Server) -> None:
    status, body = _signed_for(s3srv, "eu-west-1", f"/{BUCKET}")
    assert status == 400
    assert b"<Code>AuthorizationHeaderMalformed</Code>" in body
    assert b"the region 'eu-west-1' is wrong; expecting 'us-east-1'" in body
    assert b"<Region>us-east-1</Region>" in body
    # boto3 reads <Region> and re-signs for it, so a user with the wrong region still works.
    s3 = default_client(s3srv, region="eu-west-1", signature_version="s3v4")
    s3.list_objects_v2(Bucket=BUCKET)


def test_create_bucket_location_rules(s3srv: S3Server) -> None:
    s3 = s3srv.client()
    with pytest.raises(ClientError) as info:
        s3.create_bucket(
            Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    assert _code(info.value) == "IllegalLocationConstraintException"
    with pytest.raises(ClientError) as info:
        s3.create_bucket(
            Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "us-east-1"}
        )
    assert _code(info.value) == "InvalidLocationConstraint"


def test_sigv2_off_and_another_region(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``--sigv2 off --region eu-west-1``: SigV2 refused as SigV4-only regions refuse it;
    clients configured for eu-west-1 work, buckets are located there."""
    with module_server(
        tmp_path_factory, "s3euw1", "--sigv2", "off", "--region", "eu-west-1"
    ) as srv:
        s3 = default_client(srv, region="eu-west-1", signature_version="s3v4")
        with pytest.raises(ClientError) as info:
            s3.create_bucket(Bucket="eu-bucket")
        assert _code(info.value) == "IllegalLocationConstraintException"
        s3.create_bucket(
            Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        assert s3.get_bucket_location(Bucket="eu-bucket")["LocationConstraint"] == "eu-west-1"
        assert (
            s3.head_bucket(Bucket="eu-bucket")["ResponseMetadata"]["HTTPHeaders"][
                "x-amz-bucket-region"
            ]
            == "eu-west-1"
        )
        with pytest.raises(ClientError) as info:  # outside us-east-1, AWS answers 409
            s3.create_bucket(
                Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )
        assert _code(info.value) == "BucketAlreadyOwnedByYou"
        s3.put_object(Bucket="eu-bucket", Key="k", Body=b"x")
        status, body = _signed_for(srv, "us-east-1", "/eu-bucket/k")
        assert status == 400 and b"<Region>eu-west-1</Region>" in body
        url = default_client(srv, region="eu-west-1").generate_presigned_url(
            "get_object", Params={"Bucket": "eu-bucket", "Key": "k"}
        )
        assert "Signature=" in url
        status, body, _ = _open(url)
        assert status == 400 and b"<Code>InvalidRequest</Code>" in body
        assert b"Please use AWS4-HMAC-SHA256" in body
