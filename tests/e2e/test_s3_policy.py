"""S3 bucket policies and Block Public Access end to end, on a real ``kvbox serve``.

Layer: tests/e2e. Rules: one server for the module, one bucket per test (the attacks at
the end use the shared ``lab`` server of tests/e2e/_lab.py instead). The bucket
owner is root (boto3, retries off); the stranger is anonymous ``curl`` (no SDK, no
signature: what a browser or ``wget`` sends); the second principal is a kvbox user made
with ``kvbox admin --server`` and used through boto3. Expected answers are AWS's, from the
S3 API reference (PutBucketPolicy, GetBucketPolicy, DeleteBucketPolicy,
GetBucketPolicyStatus, Put/Get/DeletePublicAccessBlock, GetObject's "missing object
without s3:ListBucket is 403") and the user guide ("Bucket policy examples", "Blocking
public access", "The meaning of public"); ``kvbox policy explain`` is kvbox's own CLI.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import Reply, code, curl, status
from ._lab import (
    Lab,
    anon,
    policy,
    refused,
    signed,
    website,
)
from ._lab import allow_get as lab_allow_get
from ._s3 import ACCESS_KEY, ROOT_ENV, SECRET_KEY, S3Server, module_server
from ._s3clients import AwsCli, S3Target, failed
from ._server import run_kvbox

#: The account id kvbox shows in ARNs (one account: root and its users).
ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with module_server(tmp_path_factory, "s3policy") as s:
        yield s


@pytest.fixture(scope="module")
def s3(srv: S3Server) -> Any:
    return srv.client()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    client: Any

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:user/{self.name}"


@pytest.fixture(scope="module")
def alice(srv: S3Server) -> User:
    """A second kvbox user, made the way an operator would: ``kvbox admin --server``."""
    return User("alice", srv.client(*srv.new_user("alice")))


# --- helpers -------------------------------------------------------------------------------


def http_status(resp: dict[str, Any]) -> int:
    return int(resp["ResponseMetadata"]["HTTPStatusCode"])


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow_get(bucket: str, principal: Any = "*", sid: str = "PublicRead") -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal,
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }


def allow_list(bucket: str, principal: Any = "*", sid: str = "PublicList") -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal,
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{bucket}",
    }


def bucket_with(s3: Any, name: str, objects: dict[str, bytes]) -> str:
    s3.create_bucket(Bucket=name)
    for key, body in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    return name


def url(srv: S3Server, bucket: str, key: str = "") -> str:
    return f"{srv.endpoint}/{bucket}/{key}" if key else f"{srv.endpoint}/{bucket}"


def assert_denied(reply: Reply) -> None:
    assert reply.status == 403, reply
    assert reply.code == "AccessDenied", reply


# --- Put/Get/DeleteBucketPolicy ------------------------------------------------------------


def test_put_get_delete_bucket_policy(s3: Any) -> None:
    b = bucket_with(s3, "pol-crud", {})
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=b)
    assert status(info.value) == 404 and code(info.value) == "NoSuchBucketPolicy"

    first = doc(allow_get(b))
    assert http_status(s3.put_bucket_policy(Bucket=b, Policy=first)) in (200, 204)
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == json.loads(first)

    second = doc(allow_get(b, sid="Other"), allow_list(b))
    s3.put_bucket_policy(Bucket=b, Policy=second)
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == json.loads(second)

    assert http_status(s3.delete_bucket_policy(Bucket=b)) == 204
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=b)
    assert code(info.value) == "NoSuchBucketPolicy"
    assert http_status(s3.delete_bucket_policy(Bucket=b)) == 204


def test_policy_on_a_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket="pol-no-such-bucket", Policy=doc(allow_get("x")))
    assert code(info.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket="pol-no-such-bucket")
    assert code(info.value) == "NoSuchBucket"


MALFORMED: dict[str, str] = {
    "not json": '{"Version": "2012-10-17", "Statement": [',
    "not an object": '["just", "a", "list"]',
    "no statement": '{"Version": "2012-10-17"}',
    "missing Effect": json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pol-bad/*"}
            ],
        }
    ),
    "bad Effect": doc({**allow_get("pol-bad"), "Effect": "Perhaps"}),
    "missing Principal": json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pol-bad/*"}
            ],
        }
    ),
    "resource in another bucket": doc(allow_get("some-other-bucket")),
    "resource not an s3 arn": doc({**allow_get("pol-bad"), "Resource": "pol-bad/*"}),
    "unknown action": doc({**allow_get("pol-bad"), "Action": "s3:MakeCoffee"}),
    "unknown condition operator": doc(
        {**allow_get("pol-bad"), "Condition": {"StringEqualsMaybe": {"aws:UserAgent": "curl"}}}
    ),
}


@pytest.fixture(scope="module")
def bad_bucket(s3: Any) -> str:
    """The bucket every malformed policy names (and is refused for)."""
    s3.create_bucket(Bucket="pol-bad")
    return "pol-bad"


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_policy_is_refused(s3: Any, bad_bucket: str, case: str) -> None:
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket=bad_bucket, Policy=MALFORMED[case])
    assert status(info.value) == 400, case
    assert code(info.value) == "MalformedPolicy", case
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=bad_bucket)
    assert code(info.value) == "NoSuchBucketPolicy", "a refused policy must not be stored"


# --- who gets in ----------------------------------------------------------------------------


def test_anonymous_read_needs_a_public_policy(srv: S3Server, s3: Any) -> None:
    b = bucket_with(s3, "pol-public", {"hello.txt": b"hello, world\n"})
    assert_denied(curl(url(srv, b, "hello.txt")))
    assert_denied(curl(url(srv, b)))

    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b)))
    got = curl(url(srv, b, "hello.txt"))
    assert got.status == 200 and got.body == b"hello, world\n", got
    assert got.headers["content-length"] == "13"
    # GetObject alone does not let a stranger list, nor learn which keys exist
    assert_denied(curl(url(srv, b)))
    assert_denied(curl(url(srv, b, "missing.txt")))
    # ...or write
    assert_denied(curl(url(srv, b, "new.txt"), "-X", "PUT", "--data-binary", "x"))
    assert_denied(curl(url(srv, b, "hello.txt"), "-X", "DELETE"))

    # with s3:ListBucket as well, a missing key is an honest 404
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b), allow_list(b)))
    missing = curl(url(srv, b, "missing.txt"))
    assert missing.status == 404 and missing.code == "NoSuchKey", missing
    listing = curl(url(srv, b) + "?list-type=2")
    assert listing.status == 200, listing
    assert b"<Key>hello.txt</Key>" in listing.body

    s3.delete_bucket_policy(Bucket=b)
    assert_denied(curl(url(srv, b, "hello.txt")))


def test_explicit_deny_beats_allow(srv: S3Server, s3: Any) -> None:
    b = bucket_with(s3, "pol-deny", {"open/a.txt": b"open", "secret/b.txt": b"secret"})
    deny = {
        "Sid": "NoSecrets",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{b}/secret/*",
    }
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b), deny))
    got = curl(url(srv, b, "open/a.txt"))
    assert got.status == 200 and got.body == b"open", got
    assert_denied(curl(url(srv, b, "secret/b.txt")))

    # the order of statements does not matter
    s3.put_bucket_policy(Bucket=b, Policy=doc(deny, allow_get(b)))
    assert_denied(curl(url(srv, b, "secret/b.txt")))
    assert curl(url(srv, b, "open/a.txt")).status == 200


def test_a_named_user_reads_but_cannot_delete(srv: S3Server, s3: Any, alice: User) -> None:
    b = bucket_with(s3, "pol-alice", {"report.csv": b"a,b\n1,2\n"})
    before: list[Callable[[], Any]] = [
        lambda: alice.client.get_object(Bucket=b, Key="report.csv"),
        lambda: alice.client.list_objects_v2(Bucket=b),
    ]
    for call in before:
        with pytest.raises(ClientError) as info:
            call()
        assert code(info.value) == "AccessDenied"

    grant = {
        "Sid": "AliceReads",
        "Effect": "Allow",
        "Principal": {"AWS": [alice.arn]},
        "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"],
    }
    s3.put_bucket_policy(Bucket=b, Policy=doc(grant))
    assert alice.client.get_object(Bucket=b, Key="report.csv")["Body"].read() == b"a,b\n1,2\n"
    keys = [o["Key"] for o in alice.client.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["report.csv"]
    with pytest.raises(ClientError) as info:
        alice.client.head_object(Bucket=b, Key="nothing-here")
    assert status(info.value) == 404  # ListBucket granted: missing is 404, not 403

    denied: list[Callable[[], Any]] = [
        lambda: alice.client.delete_object(Bucket=b, Key="report.csv"),
        lambda: alice.client.put_object(Bucket=b, Key="x", Body=b"x"),
        lambda: alice.client.get_bucket_policy(Bucket=b),
        lambda: alice.client.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b))),
        lambda: alice.client.delete_bucket(Bucket=b),
    ]
    for call in denied:
        with pytest.raises(ClientError) as info:
            call()
        assert code(info.value) == "AccessDenied"
    assert s3.get_object(Bucket=b, Key="report.csv")["Body"].read() == b"a,b\n1,2\n"
    # the grant names alice, not everyone
    assert_denied(curl(url(srv, b, "report.csv")))


def test_source_ip_conditions(srv: S3Server, s3: Any) -> None:
    """These tests reach the server from 127.0.0.1."""
    b = bucket_with(s3, "pol-ip", {"k": b"by address"})

    def only_from(cidr: str) -> dict[str, Any]:
        return {**allow_get(b), "Condition": {"IpAddress": {"aws:SourceIp": cidr}}}

    s3.put_bucket_policy(Bucket=b, Policy=doc(only_from("127.0.0.0/8")))
    assert curl(url(srv, b, "k")).body == b"by address"
    s3.put_bucket_policy(Bucket=b, Policy=doc(only_from("10.0.0.0/8")))
    assert_denied(curl(url(srv, b, "k")))

    def deny_unless_from(cidrs: list[str]) -> dict[str, Any]:
        return {
            "Sid": "OfficeOnly",
            "Effect": "Deny",
            "Principal": "*",
            # GetObject only: a Deny on s3:* would lock the owner out of the policy too
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{b}/*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": cidrs}},
        }

    s3.put_bucket_policy(
        Bucket=b, Policy=doc(allow_get(b), deny_unless_from(["10.0.0.0/8", "192.168.0.0/16"]))
    )
    assert_denied(curl(url(srv, b, "k")))
    s3.put_bucket_policy(
        Bucket=b, Policy=doc(allow_get(b), deny_unless_from(["10.0.0.0/8", "127.0.0.1/32"]))
    )
    assert curl(url(srv, b, "k")).status == 200


def test_prefix_condition_on_list_bucket(srv: S3Server, s3: Any) -> None:
    b = bucket_with(s3, "pol-prefix", {"public/a": b"a", "public/b": b"b", "private/c": b"c"})
    listing = {
        **allow_list(b),
        "Condition": {"StringLike": {"s3:prefix": ["public/*"]}},
    }
    s3.put_bucket_policy(Bucket=b, Policy=doc(listing))
    ok = curl(url(srv, b) + "?list-type=2&prefix=public/")
    assert ok.status == 200, ok
    assert re.findall(rb"<Key>([^<]*)</Key>", ok.body) == [b"public/a", b"public/b"]
    assert_denied(curl(url(srv, b) + "?list-type=2&prefix=private/"))
    assert_denied(curl(url(srv, b) + "?list-type=2"))


def test_secure_transport_false_is_denied_over_plain_http(srv: S3Server, s3: Any) -> None:
    b = bucket_with(s3, "pol-tls", {"k": b"only over TLS"})

    def deny_when_secure(value: str) -> dict[str, Any]:
        return {
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{b}/*",
            "Condition": {"Bool": {"aws:SecureTransport": value}},
        }

    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b), deny_when_secure("false")))
    assert_denied(curl(url(srv, b, "k")))
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b), deny_when_secure("true")))
    assert curl(url(srv, b, "k")).body == b"only over TLS"


# --- policy status and Block Public Access -----------------------------------------------------


def test_policy_status(s3: Any, alice: User) -> None:
    b = bucket_with(s3, "pol-status", {})
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy_status(Bucket=b)
    assert code(info.value) == "NoSuchBucketPolicy"
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b)))
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": True}
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b, {"AWS": "*"})))
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": True}
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b, {"AWS": [alice.arn]})))
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": False}
    # a public Deny does not make a bucket public
    deny_all = {**allow_get(b), "Effect": "Deny"}
    s3.put_bucket_policy(Bucket=b, Policy=doc(deny_all))
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": False}


def test_public_access_block_put_get_delete(s3: Any) -> None:
    b = bucket_with(s3, "pol-pab", {})
    with pytest.raises(ClientError) as info:
        s3.get_public_access_block(Bucket=b)
    assert status(info.value) == 404
    assert code(info.value) == "NoSuchPublicAccessBlockConfiguration"

    config = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False,
    }
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=config)
    got = s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    assert got == config
    # a field left out is false
    s3.put_public_access_block(
        Bucket=b, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True}
    )
    got = s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    assert got == {
        "BlockPublicAcls": False,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True,
    }
    assert http_status(s3.delete_public_access_block(Bucket=b)) == 204
    with pytest.raises(ClientError) as info:
        s3.get_public_access_block(Bucket=b)
    assert code(info.value) == "NoSuchPublicAccessBlockConfiguration"


def test_block_public_policy_refuses_public_policies(srv: S3Server, s3: Any, alice: User) -> None:
    b = bucket_with(s3, "pol-bpp", {"k": b"kept"})
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b)))
    assert status(info.value) == 403 and code(info.value) == "AccessDenied"
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=b)
    assert code(info.value) == "NoSuchBucketPolicy"
    # a policy that names a principal is not public, so it is accepted
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b, {"AWS": [alice.arn]})))
    assert alice.client.get_object(Bucket=b, Key="k")["Body"].read() == b"kept"


def test_block_public_policy_leaves_an_existing_policy_alone(srv: S3Server, s3: Any) -> None:
    """AWS: "Enabling this setting doesn't affect existing bucket policies"."""
    b = bucket_with(s3, "pol-bpp-existing", {"k": b"still public"})
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b)))
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    assert curl(url(srv, b, "k")).body == b"still public"
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == json.loads(doc(allow_get(b)))


def test_restrict_public_buckets_shuts_out_strangers(srv: S3Server, s3: Any) -> None:
    b = bucket_with(s3, "pol-rpb", {"k": b"members only"})
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b)))
    assert curl(url(srv, b, "k")).status == 200
    s3.put_public_access_block(
        Bucket=b, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True}
    )
    assert_denied(curl(url(srv, b, "k")))
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"members only"
    # the policy itself is untouched; lifting the block opens the bucket again
    assert s3.get_bucket_policy_status(Bucket=b)["PolicyStatus"] == {"IsPublic": True}
    s3.delete_public_access_block(Bucket=b)
    assert curl(url(srv, b, "k")).status == 200


# --- the AWS CLI and kvbox policy explain ------------------------------------------------------


def test_policies_through_the_aws_cli(srv: S3Server, s3: Any, tmp_path: Path) -> None:
    aws = AwsCli(S3Target("127.0.0.1", srv.http_port, ACCESS_KEY, SECRET_KEY), tmp_path / "aws")
    b = bucket_with(s3, "pol-cli", {"site/index.html": b"<h1>hi</h1>\n"})
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(doc(allow_get(b)))

    missing = aws("s3api", "get-bucket-policy", "--bucket", b, check=False)
    failed(missing, "NoSuchBucketPolicy")
    aws("s3api", "put-bucket-policy", "--bucket", b, "--policy", f"file://{policy_file}")
    got = aws.json("get-bucket-policy", "--bucket", b)
    assert json.loads(got["Policy"]) == json.loads(policy_file.read_text())
    assert aws.json("get-bucket-policy-status", "--bucket", b) == {
        "PolicyStatus": {"IsPublic": True}
    }
    page = curl(url(srv, b, "site/index.html"))
    assert page.status == 200 and page.body == b"<h1>hi</h1>\n"

    broken = tmp_path / "broken.json"
    broken.write_text('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"')
    refused = aws(
        "s3api", "put-bucket-policy", "--bucket", b, "--policy", f"file://{broken}", check=False
    )
    failed(refused, "MalformedPolicy")

    aws("s3api", "delete-bucket-policy", "--bucket", b)
    failed(aws("s3api", "get-bucket-policy", "--bucket", b, check=False), "NoSuchBucketPolicy")
    assert_denied(curl(url(srv, b, "site/index.html")))


def _explain(srv: S3Server, principal: str, action: str, resource: str) -> Any:
    return run_kvbox(
        "policy", "explain", "--server", srv.endpoint,
        "--principal", principal, "--action", action, "--resource", resource,
        env=ROOT_ENV,
    )  # fmt: skip


def test_policy_explain_cli(srv: S3Server, s3: Any, alice: User) -> None:
    """kvbox's own CLI: exit 0 when the request would be allowed, 1 when not, and the
    statement that decided named by its Sid."""
    b = bucket_with(s3, "pol-explain", {"pub/k": b"x", "priv/k": b"y"})
    deny = {
        "Sid": "KeepPrivOut",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{b}/priv/*",
    }
    s3.put_bucket_policy(Bucket=b, Policy=doc(allow_get(b, sid="AnyoneReadsPub"), deny))

    allowed = _explain(srv, "anonymous", "s3:GetObject", f"arn:aws:s3:::{b}/pub/k")
    assert allowed.returncode == 0, allowed.stderr
    assert b"AnyoneReadsPub" in allowed.stdout + allowed.stderr

    denied = _explain(srv, "anonymous", "s3:GetObject", f"arn:aws:s3:::{b}/priv/k")
    assert denied.returncode == 1, (denied.stdout, denied.stderr)
    assert b"KeepPrivOut" in denied.stdout + denied.stderr

    # nothing grants a delete: an implicit deny, still exit 1
    implicit = _explain(srv, "anonymous", "s3:DeleteObject", f"arn:aws:s3:::{b}/pub/k")
    assert implicit.returncode == 1, (implicit.stdout, implicit.stderr)

    # a user is named by name; the explicit deny applies to "*" and so to alice too
    as_alice = _explain(srv, alice.name, "s3:GetObject", f"arn:aws:s3:::{b}/priv/k")
    assert as_alice.returncode == 1 and b"KeepPrivOut" in as_alice.stdout + as_alice.stderr


# --- attacks on policy decisions: spoofed facts, denies, leaks, hostile documents ----------


def test_x_forwarded_for_never_becomes_the_source_ip(lab: Lab, lab_s3: Any) -> None:
    b = "rv-xff"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_object(Bucket=b, Key="k", Body=b"x")
    lab_s3.put_object(Bucket=b, Key="index.html", Body=b"x")
    website(lab_s3, b)
    stmt = lab_allow_get(b) | {"Condition": {"IpAddress": {"aws:SourceIp": "10.9.8.7/32"}}}
    lab_s3.put_bucket_policy(Bucket=b, Policy=policy(stmt))
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


def test_secure_transport_is_not_spoofable(lab: Lab, lab_s3: Any) -> None:
    b = "rv-tls-only"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_object(Bucket=b, Key="k", Body=b"x")
    stmt = lab_allow_get(b) | {"Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    lab_s3.put_bucket_policy(Bucket=b, Policy=policy(stmt))
    for hdrs in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "proto=https"}, {}):
        assert anon(lab.srv.http_port, "GET", f"/{b}/k", hdrs).status == 403, hdrs


def test_deny_on_a_prefix_beats_a_public_allow(lab: Lab, lab_s3: Any, mallory: Any) -> None:
    b = "rv-deny-prefix"
    lab_s3.create_bucket(Bucket=b)
    for k in ("pub/a", "priv/b"):
        lab_s3.put_object(Bucket=b, Key=k, Body=b"PRIVATE" if k.startswith("priv") else b"ok")
    lab_s3.put_bucket_policy(
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
    assert refused(lambda: lab_s3.get_object(Bucket=b, Key="priv/b")) == "AccessDenied"
    assert refused(lambda: lab_s3.put_object(Bucket=b, Key="priv/new", Body=b"x")) == "AccessDenied"
    # and root may still repair the policy (AWS keeps the account root able to)
    lab_s3.delete_bucket_policy(Bucket=b)


def test_not_principal_deny(lab: Lab, lab_s3: Any) -> None:
    b = "rv-notprincipal"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_object(Bucket=b, Key="k", Body=b"x")
    lab_s3.put_bucket_policy(
        Bucket=b,
        Policy=policy(
            lab_allow_get(b),
            {
                "Effect": "Deny",
                "NotPrincipal": {"AWS": "nobody-in-particular"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{b}/*",
            },
        ),
    )
    assert anon(lab.srv.http_port, "GET", f"/{b}/k").status == 403
    assert refused(lambda: lab_s3.get_object(Bucket=b, Key="k")) == "AccessDenied"


def test_anonymous_missing_key_and_bucket_do_not_leak(lab: Lab, lab_s3: Any) -> None:
    b = "rv-leaks"
    lab_s3.create_bucket(Bucket=b)
    lab_s3.put_bucket_policy(Bucket=b, Policy=policy(lab_allow_get(b)))
    port = lab.srv.http_port
    for path in (f"/{b}/missing", "/rv-no-such-bucket/k", "/rv-no-such-bucket"):
        for method in ("GET", "HEAD"):
            got = anon(port, method, path)
            assert got.status == 403, (method, path, got)
    got = anon(port, "GET", f"/{b}/missing?x-kvbox-at=2020-01-01T00:00:00Z")
    assert got.status == 403, got
    for body in (anon(port, "GET", f"/{b}/missing").body, anon(port, "GET", "/nope/x").body):
        assert b"Traceback" not in body and b"/work" not in body and b"sqlite" not in body.lower()


def test_malformed_policies_are_refused_cleanly(lab: Lab, lab_s3: Any) -> None:
    b = "rv-bad-policy"
    lab_s3.create_bucket(Bucket=b)
    stmt = lab_allow_get(b)
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
    assert refused(lambda: lab_s3.get_bucket_policy(Bucket=b)) == "NoSuchBucketPolicy"


def test_policy_wildcards_cannot_freeze_the_server(tmp_path: Path) -> None:
    srv = S3Server(tmp_path / "data").start()
    try:
        s3 = srv.client()
        b = "rv-redos"
        s3.create_bucket(Bucket=b)
        stmt = lab_allow_get(b) | {"Condition": {"StringLike": {"aws:UserAgent": "*a" * 10 + "*b"}}}
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


# --- condition keys kvbox used to accept and never fill ---------------------------------------


def test_copy_source_and_metadata_directive_conditions_bite(s3: Any, alice: User) -> None:
    """A Deny on s3:x-amz-copy-source / s3:x-amz-metadata-directive stops the copies it
    names (the keys were accepted before and never filled: the Deny did nothing)."""
    bucket_with(s3, "copy-guard", {"secret/plan": b"s", "public/note": b"p"})
    s3.put_bucket_policy(
        Bucket="copy-guard",
        Policy=doc(
            {
                "Sid": "AliceWrites",
                "Effect": "Allow",
                "Principal": {"AWS": alice.arn},
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": "arn:aws:s3:::copy-guard/*",
            },
            {
                "Sid": "NoCopyingSecrets",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::copy-guard/*",
                "Condition": {"StringLike": {"s3:x-amz-copy-source": "copy-guard/secret/*"}},
            },
            {
                "Sid": "KeepMetadata",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::copy-guard/*",
                "Condition": {"StringEquals": {"s3:x-amz-metadata-directive": "REPLACE"}},
            },
        ),
    )
    c = alice.client
    c.copy_object(Bucket="copy-guard", Key="copy1", CopySource="copy-guard/public/note")
    for kwargs in (
        {"CopySource": "copy-guard/secret/plan"},
        {"CopySource": "copy-guard/public/note", "MetadataDirective": "REPLACE"},
    ):
        with pytest.raises(ClientError) as info:
            c.copy_object(Bucket="copy-guard", Key="copy2", **kwargs)
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    s3.delete_bucket_policy(Bucket="copy-guard")


def test_a_policy_naming_a_key_kvbox_cannot_fill_is_refused(s3: Any) -> None:
    s3.create_bucket(Bucket="vpc-only")
    policy = doc(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "arn:aws:s3:::vpc-only/*",
            "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}},
        }
    )
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket="vpc-only", Policy=policy)
    err = info.value.response["Error"]
    assert err["Code"] == "MalformedPolicy"
    assert "aws:sourcevpce" in err["Message"] and "VPC" in err["Message"]
