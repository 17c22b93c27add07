"""botocore as the oracle: what boto3 signs, we verify; what we sign, botocore agrees with.

Requests are randomized (methods, odd keys, repeated and empty query parameters, headers
with runs of whitespace); then one thing is changed and the right error must come out.
botocore signs with its own clock, so each check takes ``now`` from the request's
X-Amz-Date instead of patching any clock.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvbox.auth import sigv4

AK = "AKIAKVBOXTEST"
SECRET = "kvbox/secret+key=with/odd~chars"
HOST = "127.0.0.1:9000"
REGION = "us-east-1"
CREDS = Credentials(AK, SECRET)


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


_key_chars = st.sampled_from(list("abcXYZ019-_.~ +%/=&?#!$'()*,;:@[]^`{}|\"<>\\éü日本😀\u00a0"))
keys = st.text(_key_chars, min_size=1, max_size=40).filter(lambda k: not k.startswith("/"))
query_text = st.text(st.sampled_from(list("ab1-_.~ +%/=&?é日")), max_size=8)
queries = st.lists(
    st.tuples(query_text.filter(bool), query_text, st.booleans()),
    max_size=5,
)
_value_chars = st.sampled_from(list("abc XYZ 123 ,;=:/\t   \t"))
header_values = st.text(_value_chars, max_size=20)
meta_headers = st.lists(
    st.tuples(st.sampled_from(["x-amz-meta-a", "X-Amz-Meta-B", "x-amz-meta-c"]), header_values),
    max_size=4,
)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"])
bodies = st.binary(max_size=64)


def build_url(key: str, query: list[tuple[str, str, bool]]) -> str:
    path = "/bucket/" + quote(key, safe="/~")
    pieces = [
        quote(k, safe="-_.~") + ("" if bare and not v else "=" + quote(v, safe="-_.~"))
        for k, v, bare in query
    ]
    return f"http://{HOST}{path}" + ("?" + "&".join(pieces) if pieces else "")


def boto_request(method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body)
    request.headers["Host"] = HOST
    for name, value in headers:
        request.headers[name] = value  # HTTPHeaders appends repeated names
    return request


def as_server_sees_it(
    request: AWSRequest,
) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    url = urlsplit(request.url)
    headers = [(str(n), str(v)) for n, v in request.headers.items()]
    return url.path, sigv4.parse_query_string(url.query), headers


def replace_first(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    out, done = [], False
    for n, v in headers:
        if not done and n.lower() == name.lower():
            out.append((n, value))
            done = True
        else:
            out.append((n, v))
    return out


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(methods, keys, queries, meta_headers, bodies, st.booleans())
def test_boto_header_signatures_verify(
    method: str,
    key: str,
    query: list[tuple[str, str, bool]],
    meta: list[tuple[str, str]],
    body: bytes,
    with_content_type: bool,
) -> None:
    extra = [
        *meta,
        *([("Content-Type", "text/plain;  charset=utf-8")] if with_content_type else []),
    ]
    request = boto_request(method, build_url(key, query), extra, body)
    S3SigV4Auth(CREDS, "s3", REGION).add_auth(request)
    path, raw_query, headers = as_server_sees_it(request)
    now = sigv4.parse_amz_date(request.headers["X-Amz-Date"])

    result = sigv4.verify_request(
        method, path, raw_query, headers, None, lookup, now, region=REGION
    )
    assert result.access_key == AK
    assert result.expected_sha256 == hashlib.sha256(body).hexdigest()
    assert sigv4.authenticate(method, path, raw_query, headers, lookup, now) == result

    # Our signer, given the same request and instant, writes botocore's Authorization.
    unsigned = [
        (n, v)
        for n, v in headers
        if n.lower() not in ("authorization", "x-amz-date", "x-amz-content-sha256")
    ]
    ours = sigv4.sign_request(
        method,
        path,
        raw_query,
        unsigned,
        request.headers["X-Amz-Content-SHA256"],
        access_key=AK,
        secret_key=SECRET,
        now=now,
        region=REGION,
    )
    assert dict(ours)["Authorization"] == request.headers["Authorization"]

    def refused(
        error: type[sigv4.AuthError],
        *,
        p: str = path,
        q: list[tuple[str, str]] = raw_query,
        h: list[tuple[str, str]] = headers,
        lookup_fn: sigv4.SecretLookup = lookup,
        at: object = now,
    ) -> None:
        assert isinstance(at, type(now))
        with pytest.raises(error) as info:
            sigv4.verify_request(method, p, q, h, None, lookup_fn, at)
        text = f"{info.value} {vars(info.value)!r}"
        assert SECRET not in text

    refused(sigv4.SignatureDoesNotMatch, p=path + "x")
    refused(sigv4.SignatureDoesNotMatch, h=replace_first(headers, "host", "example.com"))
    refused(sigv4.SignatureDoesNotMatch, q=[*raw_query, ("extra", "1")])
    refused(sigv4.SignatureDoesNotMatch, lookup_fn=lambda _: SECRET + "x")
    refused(sigv4.InvalidAccessKeyId, lookup_fn=lambda _: None)
    refused(sigv4.RequestTimeTooSkewed, at=now + timedelta(minutes=15, seconds=1))
    refused(sigv4.RequestTimeTooSkewed, at=now - timedelta(minutes=16))
    refused(sigv4.AccessDenied, h=[*headers, ("x-amz-meta-unsigned", "1")])
    if meta:
        name, value = meta[0]
        refused(sigv4.SignatureDoesNotMatch, h=replace_first(headers, name, value + "X"))
    if raw_query:
        k, v = raw_query[0]
        refused(sigv4.SignatureDoesNotMatch, q=[(k, v + "X"), *raw_query[1:]])


@SETTINGS
@given(methods, keys, queries, st.integers(1, sigv4.MAX_PRESIGNED_EXPIRES))
def test_boto_presigned_urls_verify(
    method: str, key: str, query: list[tuple[str, str, bool]], expires: int
) -> None:
    request = boto_request(method, build_url(key, query), [], b"")
    S3SigV4QueryAuth(CREDS, "s3", REGION, expires=expires).add_auth(request)
    path, raw_query, headers = as_server_sees_it(request)
    amz_date = dict(raw_query)["X-Amz-Date"]
    now = sigv4.parse_amz_date(amz_date)

    result = sigv4.verify_presigned(method, path, raw_query, headers, lookup, now, region=REGION)
    assert result.presigned
    assert result.expires_at == now + timedelta(seconds=expires)
    assert sigv4.authenticate(method, path, raw_query, headers, lookup, now) == result
    sigv4.verify_presigned(method, path, raw_query, headers, lookup, result.expires_at)

    # Our presigner, with botocore's operation parameters and instant, signs the same.
    signature_at = next(i for i, (k, _) in enumerate(raw_query) if k == "X-Amz-Algorithm")
    url = sigv4.presign_url(
        method,
        "http",
        HOST,
        path,
        raw_query[:signature_at],
        access_key=AK,
        secret_key=SECRET,
        now=now,
        expires=expires,
        region=REGION,
    )
    assert url == request.url

    with pytest.raises(sigv4.RequestExpired):
        sigv4.verify_presigned(
            method, path, raw_query, headers, lookup, now + timedelta(seconds=expires + 1)
        )
    with pytest.raises(sigv4.SignatureDoesNotMatch):
        sigv4.verify_presigned(method, path + "x", raw_query, headers, lookup, now)
    other = "PUT" if method != "PUT" else "GET"
    with pytest.raises(sigv4.SignatureDoesNotMatch):
        sigv4.verify_presigned(other, path, raw_query, headers, lookup, now)
    with pytest.raises(sigv4.InvalidAccessKeyId):
        sigv4.verify_presigned(method, path, raw_query, headers, lambda _: None, now)


def test_boto_date_header_instead_of_x_amz_date() -> None:
    # botocore signs with the HTTP Date header when the request carries one.
    request = boto_request("GET", build_url("k", []), [("Date", "x")], b"")
    S3SigV4Auth(CREDS, "s3", REGION).add_auth(request)
    assert "X-Amz-Date" not in request.headers
    path, raw_query, headers = as_server_sees_it(request)
    now = parsedate_to_datetime(request.headers["Date"]).replace(tzinfo=UTC)
    result = sigv4.verify_request("GET", path, raw_query, headers, None, lookup, now)
    assert result.request_time == now
