"""A server to attack: root, a second user, and anonymous requests, for S3 access tests.

Layer: tests/e2e. Rules: the ``lab``, ``lab_s3`` and ``mallory`` fixtures (conftest.py)
give a module one ``kvbox serve`` with its S3 port and ``--web-port``, driven by root
through boto3, by a second kvbox user ("mallory", made with ``kvbox admin --server``)
and by anonymous ``http.client`` requests (``anon``); ``signed`` sends root-signed bytes
boto3 would not. Each test makes its own bucket. Every request is bounded in time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.auth  # type: ignore[import-untyped]
import botocore.awsrequest  # type: ignore[import-untyped]
import botocore.credentials  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ._curl import code
from ._s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

HTTP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Lab:
    srv: S3Server
    web_port: int


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
