"""botocore's SigV2 signers as the oracle: what boto3 signs with HmacV1Auth (the
``Authorization: AWS`` header) and HmacV1QueryAuth (the presigned URLs boto3 and the AWS
CLI v1 make by default), ``kvbox.auth.sigv2`` verifies; one change, and it refuses.

Requests are randomized: methods, odd keys, signed sub-resources mixed with unsigned
parameters (empty, bare, repeated, percent-encoded), repeated and mixed-case x-amz-*
headers, Content-Type and Content-MD5, path or virtual-host style. botocore reads its own
clock, so each check takes ``now`` from what it wrote (Date, Expires).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvbox.auth import sigv2, sigv4

AK = "AKIAKVBOXTEST"
SECRET = "kvbox/secret+key=with/odd~chars"
HOST = "127.0.0.1:9000"
CREDS = Credentials(AK, SECRET)


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


_key_chars = st.sampled_from(list("abcXYZ019-_.~ +%/=&?#!$'()*,;:@[]^`{}|\"<>\\éü日本😀"))
keys = st.text(_key_chars, min_size=1, max_size=30).filter(lambda k: not k.startswith("/"))
_names = st.sampled_from(
    ["acl", "versionId", "uploadId", "partNumber", "tagging", "response-content-type",
     "uploads", "delete", "prefix", "max-keys", "x-id", "list-type", "marker"]
)  # fmt: skip
_values = st.text(st.sampled_from(list("ab1-_.~ +%/=é日")), max_size=8)
queries = st.lists(st.tuples(_names, _values, st.booleans()), max_size=5)
_header_values = st.text(st.sampled_from(list("abc XYZ 123 ,;=:/")), max_size=16)
amz_headers = st.lists(
    st.tuples(
        st.sampled_from(["x-amz-meta-a", "X-Amz-Meta-B", "x-amz-meta-b", "X-AMZ-ACL"]),
        _header_values,
    ),
    max_size=4,
)
#: A presigned URL carries one value per name (botocore signs every value of a repeated
#: header but puts only one in the query: such a URL never worked anywhere).
distinct_amz_headers = st.lists(
    st.tuples(st.sampled_from(["x-amz-meta-a", "X-Amz-Meta-B", "X-AMZ-ACL"]), _header_values),
    max_size=3,
    unique_by=lambda pair: pair[0].lower(),
)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(
    method: str, key: str, query: list[tuple[str, str, bool]], vhost: bool
) -> tuple[AWSRequest, str | None]:
    """A botocore request for bucket ``bucket``; (request, auth_path for virtual hosts)."""
    pieces = [
        quote(k, safe="-_.~") + ("" if bare and not v else "=" + quote(v, safe="-_.~"))
        for k, v, bare in query
    ]
    qs = ("?" + "&".join(pieces)) if pieces else ""
    key_path = "/" + quote(key, safe="/~")
    if vhost:
        request = AWSRequest(method=method, url=f"http://bucket.{HOST}{key_path}{qs}")
        request.auth_path = "/bucket" + key_path
    else:
        request = AWSRequest(method=method, url=f"http://{HOST}/bucket{key_path}{qs}")
    return request, ("bucket" if vhost else None)


def seen(request: AWSRequest) -> tuple[str, str, list[tuple[str, str]]]:
    url = urlsplit(request.url)
    return url.path, url.query, [(str(n), str(v)) for n, v in request.headers.items()]


def replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n.lower() == name.lower() else v) for n, v in headers]


@SETTINGS
@given(methods, keys, queries, amz_headers, st.booleans(), st.booleans(), st.booleans())
def test_boto_header_signatures_verify(
    method: str,
    key: str,
    query: list[tuple[str, str, bool]],
    amz: list[tuple[str, str]],
    with_content: bool,
    with_amz_date: bool,
    vhost: bool,
) -> None:
    request, bucket = build(method, key, query, vhost)
    for name, value in amz:
        request.headers[name] = value  # HTTPHeaders appends a repeated name
    if with_content:
        request.headers["Content-Type"] = " text/plain; charset=utf-8 "
        request.headers["Content-MD5"] = "1B2M2Y8AsgTpgAmY7PhCfg=="
    if with_amz_date:
        request.headers["x-amz-date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    HmacV1Auth(CREDS).add_auth(request)
    path, raw_query, headers = seen(request)
    now = parsedate_to_datetime(request.headers["Date"])

    result = sigv2.verify_request(method, path, raw_query, headers, lookup, now, bucket=bucket)
    assert (result.access_key, result.presigned, result.expires_at) == (AK, False, None)
    assert result.payload_mode is sigv4.PayloadMode.UNSIGNED

    def refused(
        error: type[sigv4.AuthError],
        *,
        m: str = method,
        p: str = path,
        q: str = raw_query,
        h: list[tuple[str, str]] = headers,
        b: str | None = bucket,
        lookup_fn: sigv4.SecretLookup = lookup,
        at: datetime = now,
    ) -> None:
        with pytest.raises(error) as info:
            sigv2.verify_request(m, p, q, h, lookup_fn, at, bucket=b)
        assert SECRET not in f"{info.value} {vars(info.value)!r}"

    refused(sigv2.SigV2DoesNotMatch, m="PATCH")
    refused(sigv2.SigV2DoesNotMatch, p=path + "x")
    refused(sigv2.SigV2DoesNotMatch, b="other" if vhost else "bucket")
    refused(sigv2.SigV2DoesNotMatch, q=raw_query + ("&" if raw_query else "") + "acl=x")
    refused(sigv2.SigV2DoesNotMatch, h=[*headers, ("x-amz-meta-added", "1")])
    refused(sigv2.SigV2DoesNotMatch, lookup_fn=lambda _: SECRET + "x")
    refused(sigv4.InvalidAccessKeyId, lookup_fn=lambda _: None)
    # The clock is checked against the signed time, 15 minutes either way (AWS's limit).
    signed_at = parsedate_to_datetime(request.headers.get("x-amz-date") or request.headers["Date"])
    sigv2.verify_request(method, path, raw_query, headers, lookup, signed_at, bucket=bucket)
    refused(sigv4.RequestTimeTooSkewed, at=signed_at + timedelta(minutes=15, seconds=1))
    refused(sigv4.RequestTimeTooSkewed, at=signed_at - timedelta(minutes=15, seconds=1))
    if with_content:
        refused(sigv2.SigV2DoesNotMatch, h=replace(headers, "content-type", "text/html"))
        refused(sigv2.SigV2DoesNotMatch, h=replace(headers, "content-md5", "x"))
    if amz:
        refused(sigv2.SigV2DoesNotMatch, h=replace(headers, amz[0][0], amz[0][1] + "X"))
    signed_params = [k for k, _, _ in query if k in sigv2.SUBRESOURCES]
    if signed_params:  # a signed sub-resource's value is covered...
        refused(sigv2.SigV2DoesNotMatch, q=raw_query.replace(signed_params[0], "zz", 1))
    unsigned = [p for p in raw_query.split("&") if p and p.split("=")[0] not in sigv2.SUBRESOURCES]
    if unsigned:  # ...any other parameter is not (as on AWS)
        sigv2.verify_request(
            method, path, raw_query + "&prefix=other", headers, lookup, now, bucket=bucket
        )


@SETTINGS
@given(
    methods,
    keys,
    queries,
    st.integers(1, 10 * 365 * 86400),
    distinct_amz_headers,
    st.booleans(),
    st.booleans(),
)
def test_boto_presigned_urls_verify(
    method: str,
    key: str,
    query: list[tuple[str, str, bool]],
    expires: int,
    amz: list[tuple[str, str]],
    with_type: bool,
    vhost: bool,
) -> None:
    request, bucket = build(method, key, query, vhost)
    for name, value in amz:
        request.headers[name] = value.strip()
    if with_type:
        request.headers["Content-Type"] = "text/plain"
    HmacV1QueryAuth(CREDS, expires=expires).add_auth(request)
    # What a user does with the URL: send it with none of the headers it was signed with.
    path, raw_query, _ = seen(request)
    headers = [("Host", HOST)]
    expires_at = int(dict(p.split("=", 1) for p in raw_query.split("&") if "=" in p)["Expires"])
    now = datetime.fromtimestamp(expires_at - expires, UTC)

    result = sigv2.verify_presigned(method, path, raw_query, headers, lookup, now, bucket=bucket)
    assert result.presigned and result.access_key == AK
    assert result.expires_at == datetime.fromtimestamp(expires_at, UTC)
    # The headers the URL signed come back, to be applied as the request's own.
    hoisted = dict(result.query_headers)
    assert ("content-type" in hoisted) == with_type
    assert {n.lower() for n, _ in amz} == {n for n in hoisted if n.startswith("x-amz-")}
    assert result.expires_at is not None

    def verify(
        m: str = method,
        p: str = path,
        q: str = raw_query,
        h: list[tuple[str, str]] = headers,
        lookup_fn: sigv4.SecretLookup = lookup,
        at: datetime = now,
    ) -> sigv2.SigV2Result:
        return sigv2.verify_presigned(m, p, q, h, lookup_fn, at, bucket=bucket)

    verify(at=result.expires_at)
    with pytest.raises(sigv4.RequestExpired) as expired:
        verify(at=result.expires_at + timedelta(seconds=1))
    assert str(expired.value) == "Request has expired"
    with pytest.raises(sigv2.SigV2DoesNotMatch):
        verify(p=path + "x")
    with pytest.raises(sigv2.SigV2DoesNotMatch):
        verify(m="PUT" if method != "PUT" else "GET")
    with pytest.raises(sigv2.SigV2DoesNotMatch):  # Expires is signed
        verify(q=raw_query.replace(f"Expires={expires_at}", f"Expires={expires_at + 1}"))
    with pytest.raises(sigv4.InvalidAccessKeyId):
        verify(lookup_fn=lambda _: None)
    if with_type:  # a different Content-Type on the request than the URL signed
        with pytest.raises(sigv2.SigV2DoesNotMatch):
            verify(h=[*headers, ("Content-Type", "text/html")])


def test_boto_presigned_post_signature() -> None:
    """The POST form signer s3-post-acl builds on: botocore's HmacV1PostAuth agrees."""
    from botocore.auth import HmacV1PostAuth

    request = AWSRequest(method="POST", url=f"http://{HOST}/bucket")
    request.context["s3-presign-post-fields"] = {"key": "k"}
    request.context["s3-presign-post-policy"] = {
        "expiration": "2030-01-01T00:00:00Z",
        "conditions": [{"bucket": "bucket"}, ["starts-with", "$key", ""]],
    }
    HmacV1PostAuth(CREDS).add_auth(request)
    fields = request.context["s3-presign-post-fields"]
    assert sigv2.form_signature(SECRET, fields["policy"]) == fields["signature"]
    ok = sigv2.verify_form(AK, fields["policy"], fields["signature"], lookup)
    assert ok.access_key == AK
    with pytest.raises(sigv2.SigV2DoesNotMatch):
        sigv2.verify_form(AK, fields["policy"] + "=", fields["signature"], lookup)
    with pytest.raises(sigv4.InvalidAccessKeyId):
        sigv2.verify_form("nobody", fields["policy"], fields["signature"], lookup)
