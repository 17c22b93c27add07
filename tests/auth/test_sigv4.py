"""SigV4 parsing, canonical forms and every refusal, with the S3 code each maps to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.auth import sigv4
from kvbox.errors import KvboxError, wire

AK = "AKIDEXAMPLE"
SECRET = "s3cr3t/with+odd=chars"
NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
HOST = "127.0.0.1:9000"


def lookup(access_key: str) -> str | None:
    return SECRET if access_key == AK else None


def signed(
    method: str = "GET",
    path: str = "/bucket/key",
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | None = None,
    payload_hash: str = sigv4.EMPTY_SHA256,
    now: datetime = NOW,
    region: str = "us-east-1",
) -> list[tuple[str, str]]:
    base = [("Host", HOST), *(headers or [])]
    return base + sigv4.sign_request(
        method,
        path,
        query or [],
        base,
        payload_hash,
        access_key=AK,
        secret_key=SECRET,
        now=now,
        region=region,
    )


def verify(
    headers: list[tuple[str, str]],
    *,
    method: str = "GET",
    path: str = "/bucket/key",
    query: list[tuple[str, str]] | None = None,
    now: datetime = NOW,
    region: str | None = None,
    require_signed_amz_headers: bool = True,
) -> sigv4.AuthResult:
    return sigv4.verify_request(
        method,
        path,
        query or [],
        headers,
        None,
        lookup,
        now,
        region=region,
        require_signed_amz_headers=require_signed_amz_headers,
    )


def replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n.lower() == name else v) for n, v in headers]


def assert_no_secret(exc: BaseException) -> None:
    key = sigv4.signing_key(SECRET, "20240101", "us-east-1", "s3")
    text = f"{exc} {exc!r} {vars(exc)!r}"
    assert SECRET not in text
    assert key.hex() not in text


# --- canonical forms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/test$file.text", "/test%24file.text"),
        ("/b/a%20b", "/b/a%20b"),
        ("/b/a b", "/b/a%20b"),
        ("/b/%7Etilde~", "/b/~tilde~"),
        ("/b/plus+%2B", "/b/plus%2B%2B"),
        ("/b/a%2Fb", "/b/a%2Fb"),  # an encoded slash inside a key stays encoded
        ("/b//double/./dot/../", "/b//double/./dot/../"),  # S3: never normalized
        ("/b/%C3%A9t%c3%a9", "/b/%C3%A9t%C3%A9"),
        ("/b/été", "/b/%C3%A9t%C3%A9"),
        ("/b/100%", "/b/100%25"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw) == canonical


def test_parse_query_string_keeps_raw_pairs() -> None:
    assert sigv4.parse_query_string("") == []
    assert sigv4.parse_query_string("acl") == [("acl", "")]
    assert sigv4.parse_query_string("a=1&&b=&c=x%20y=z") == [
        ("a", "1"),
        ("b", ""),
        ("c", "x%20y=z"),
    ]


def test_canonical_query_string_sorts_and_reencodes() -> None:
    query = [("prefix", "a b"), ("acl", ""), ("max-keys", "2"), ("a", "2"), ("a", "1")]
    assert sigv4.canonical_query_string(query) == "a=1&a=2&acl=&max-keys=2&prefix=a%20b"
    assert sigv4.canonical_query_string([("k", "x+y"), ("k2", "%7e%2b")]) == "k=x%2By&k2=~%2B"
    assert sigv4.canonical_query_string([("é", "ü")]) == "%C3%A9=%C3%BC"


def test_canonical_headers_trim_and_join() -> None:
    headers = [
        ("X-Amz-Meta-A", "  two   spaces\tand tab  "),
        ("x-amz-meta-a", "second"),
        ("Host", "h"),
    ]
    assert sigv4.canonical_headers(headers, ["x-amz-meta-a", "host"]) == (
        "host:h\nx-amz-meta-a:two spaces and tab,second\n"
    )
    assert sigv4.canonical_headers([], ["missing"]) == "missing:\n"


# --- parsing the Authorization header --------------------------------------------------


def test_parse_authorization_accepts_both_separators_and_any_order() -> None:
    sig = "a" * 64
    spaced = (
        f"AWS4-HMAC-SHA256 Credential={AK}/20240101/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={sig}"
    )
    tight = (
        f"AWS4-HMAC-SHA256 Signature={sig},SignedHeaders=host;x-amz-date,"
        f"Credential={AK}/20240101/us-east-1/s3/aws4_request"
    )
    for value in (spaced, tight):
        parsed = sigv4.parse_authorization(value)
        assert parsed.credential == sigv4.Credential(
            AK, sigv4.CredentialScope("20240101", "us-east-1", "s3")
        )
        assert parsed.signed_headers == ("host", "x-amz-date")
        assert parsed.signature == sig


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("AWS AKID:c2lnbmF0dXJl", sigv4.UnsupportedAuthMechanism),
        ("AWS4-ECDSA-P256-SHA256 Credential=x", sigv4.UnsupportedAuthMechanism),
        ("Bearer token", sigv4.InvalidAuthArgument),
        ("AWS4-HMAC-SHA256", sigv4.AuthorizationHeaderMalformed),
        (
            "AWS4-HMAC-SHA256 Credential=a/20240101/r/s3/aws4_request",
            sigv4.AuthorizationHeaderMalformed,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20240101/r/s3/aws4_request, SignedHeaders=host, "
            "Signature=x, Signature=y",
            sigv4.AuthorizationHeaderMalformed,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20240101/r/s3/aws4_request, SignedHeaders=host, "
            "Signature=x, Extra=1",
            sigv4.AuthorizationHeaderMalformed,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20240101/r/s3, SignedHeaders=host, Signature=x",
            sigv4.AuthorizationHeaderMalformed,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/2024-01-01/r/s3/aws4_request, SignedHeaders=host, "
            "Signature=x",
            sigv4.AuthorizationHeaderMalformed,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20240101/r/s3/aws5_request, SignedHeaders=host, "
            "Signature=x",
            sigv4.AuthorizationHeaderMalformed,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20240101/r/s3/aws4_request, SignedHeaders=Host;, "
            "Signature=x",
            sigv4.AuthorizationHeaderMalformed,
        ),
        ("AWS4-HMAC-SHA256 " + "x" * 20_000, sigv4.AuthorizationHeaderMalformed),
    ],
)
def test_parse_authorization_refusals(value: str, error: type[sigv4.AuthError]) -> None:
    with pytest.raises(error):
        sigv4.parse_authorization(value)


# --- verify_request -------------------------------------------------------------------


def test_round_trip_and_result() -> None:
    headers = signed(headers=[("x-amz-meta-color", "blue")])
    result = verify(headers)
    assert result.access_key == AK
    assert result.signed_headers == (
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-meta-color",
    )
    assert result.payload_mode is sigv4.PayloadMode.SHA256
    assert result.expected_sha256 == sigv4.EMPTY_SHA256
    assert result.request_time == NOW
    assert result.signing_key.hex() not in repr(result)
    signer = result.chunk_signer()
    assert signer.amz_date == "20240101T120000Z"
    assert signer.scope == "20240101/us-east-1/s3/aws4_request"


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (sigv4.AccessDenied, "AccessDenied", 403),
        (sigv4.RequestExpired, "AccessDenied", 403),
        (sigv4.RequestNotYetValid, "AccessDenied", 403),
        (sigv4.InvalidAccessKeyId, "InvalidAccessKeyId", 403),
        (sigv4.SignatureDoesNotMatch, "SignatureDoesNotMatch", 403),
        (sigv4.RequestTimeTooSkewed, "RequestTimeTooSkewed", 403),
        (sigv4.AuthorizationHeaderMalformed, "AuthorizationHeaderMalformed", 400),
        (sigv4.AuthorizationQueryParametersError, "AuthorizationQueryParametersError", 400),
        (sigv4.InvalidAuthArgument, "InvalidArgument", 400),
        (sigv4.UnsupportedAuthMechanism, "InvalidRequest", 400),
        (sigv4.ContentSHA256Mismatch, "XAmzContentSHA256Mismatch", 400),
    ],
)
def test_error_tree_maps_onto_s3_codes(
    error: type[sigv4.AuthError], code: str, status: int
) -> None:
    assert issubclass(error, sigv4.AuthError)
    assert issubclass(error, KvboxError)
    assert (wire(error).s3, wire(error).status) == (code, status)


def test_skew_limit_is_fifteen_minutes_both_ways() -> None:
    headers = signed()
    verify(headers, now=NOW + sigv4.MAX_SKEW)
    verify(headers, now=NOW - sigv4.MAX_SKEW)
    for now in (NOW + sigv4.MAX_SKEW + timedelta(seconds=1), NOW - timedelta(minutes=16)):
        with pytest.raises(sigv4.RequestTimeTooSkewed) as info:
            verify(headers, now=now)
        assert info.value.request_time == NOW
        assert_no_secret(info.value)


def test_missing_or_bad_date() -> None:
    headers = [(n, v) for n, v in signed() if n != "x-amz-date"]
    with pytest.raises(sigv4.AccessDenied, match="valid Date or x-amz-date"):
        verify(headers)
    with pytest.raises(sigv4.AccessDenied, match="valid Date or x-amz-date"):
        verify(replace(signed(), "x-amz-date", "2024-01-01T12:00:00Z"))


def test_no_or_duplicate_authorization_header() -> None:
    headers = signed()
    with pytest.raises(sigv4.AccessDenied):
        verify([(n, v) for n, v in headers if n != "Authorization"])
    auth = dict(headers)["Authorization"]
    with pytest.raises(sigv4.AuthorizationHeaderMalformed):
        verify([*headers, ("authorization", auth)])


def test_scope_checks() -> None:
    headers = signed()
    auth = dict(headers)["Authorization"]
    wrong_date = replace(headers, "authorization", auth.replace("/20240101/", "/20240102/"))
    with pytest.raises(sigv4.AuthorizationHeaderMalformed, match="Date is not the same"):
        verify(wrong_date)
    with pytest.raises(
        sigv4.AuthorizationHeaderMalformed, match="region 'us-east-1' is wrong"
    ) as info:
        verify(headers, region="eu-west-1")
    assert info.value.region == "eu-west-1"
    verify(headers, region="us-east-1")
    other = replace(headers, "authorization", auth.replace("/s3/", "/iam/"))
    with pytest.raises(sigv4.AuthorizationHeaderMalformed, match="service"):
        verify(other)


def test_host_must_be_signed_and_amz_headers_too() -> None:
    base = [("x-amz-meta-a", "1")]
    headers = signed(headers=base)
    no_host = replace(headers, "authorization", dict(headers)["Authorization"].replace("host;", ""))
    with pytest.raises(sigv4.AccessDenied, match="Host"):
        verify(no_host)
    extra = [*headers, ("X-Amz-Meta-Sneaky", "x"), ("x-amz-tagging", "a=b")]
    with pytest.raises(sigv4.AccessDenied) as info:
        verify(extra)
    assert info.value.headers_not_signed == ("x-amz-meta-sneaky", "x-amz-tagging")
    # The rule can be relaxed; the signature still covers what was signed.
    assert verify(extra, require_signed_amz_headers=False).access_key == AK
    # Headers outside x-amz-* may stay unsigned (User-Agent, Accept...).
    verify([*headers, ("User-Agent", "curl")])


def test_unknown_key_and_wrong_secret() -> None:
    headers = signed()
    auth = dict(headers)["Authorization"]
    with pytest.raises(sigv4.InvalidAccessKeyId) as info:
        verify(replace(headers, "authorization", auth.replace(AK, "AKNOBODY")))
    assert info.value.access_key == "AKNOBODY"
    with pytest.raises(sigv4.SignatureDoesNotMatch) as mismatch:
        sigv4.verify_request("GET", "/bucket/key", [], headers, None, lambda _: "other", NOW)
    exc = mismatch.value
    assert exc.access_key == AK
    assert exc.string_to_sign.startswith("AWS4-HMAC-SHA256\n20240101T120000Z\n")
    assert exc.canonical_request.startswith("GET\n/bucket/key\n")
    assert_no_secret(exc)


@pytest.mark.parametrize("bad", ["", "z" * 64, "é" * 64, "A" * 64, "a" * 63])
def test_garbage_signatures_mismatch_without_crashing(bad: str) -> None:
    headers = signed()
    auth = dict(headers)["Authorization"]
    forged = auth[: auth.index("Signature=") + len("Signature=")] + bad
    with pytest.raises(sigv4.SignatureDoesNotMatch):
        verify(replace(headers, "authorization", forged))


def test_payload_hash_forms() -> None:
    for value in (
        sigv4.UNSIGNED_PAYLOAD,
        sigv4.STREAMING_SIGNED,
        sigv4.STREAMING_SIGNED_TRAILER,
        sigv4.STREAMING_UNSIGNED_TRAILER,
        "ab" * 32,
    ):
        result = verify(signed(method="PUT", payload_hash=value), method="PUT")
        assert result.payload_hash == value
        assert result.payload_mode.streaming == value.startswith("STREAMING")
    with pytest.raises(sigv4.InvalidAuthArgument):
        verify(
            replace(signed(), "x-amz-content-sha256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD")
        )
    with pytest.raises(ValueError):
        signed(payload_hash="nonsense")


def test_absent_content_sha256_means_empty_body() -> None:
    # Signed with the empty-body hash but without sending the header (some clients).
    base = [("Host", HOST), ("x-amz-date", "20240101T120000Z")]
    canonical = sigv4.canonical_request(
        "GET", "/b/k", [], base, ["host", "x-amz-date"], sigv4.EMPTY_SHA256
    )
    scope = sigv4.CredentialScope("20240101", "us-east-1", "s3")
    key = sigv4.signing_key(SECRET, "20240101", "us-east-1", "s3")
    sig = sigv4.signature(key, sigv4.string_to_sign("20240101T120000Z", scope, canonical))
    auth = (
        f"AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"
    )
    result = verify([*base, ("Authorization", auth)], path="/b/k")
    assert result.expected_sha256 == sigv4.EMPTY_SHA256


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        verify(signed(), now=datetime(2024, 1, 1, 12))


# --- presigned URLs -------------------------------------------------------------------


def presigned(
    expires: int = 3600, query: list[tuple[str, str]] | None = None
) -> tuple[str, list[tuple[str, str]]]:
    url = sigv4.presign_url(
        "GET",
        "http",
        HOST,
        "/bucket/my%20key",
        query or [],
        access_key=AK,
        secret_key=SECRET,
        now=NOW,
        expires=expires,
        region="us-east-1",
    )
    parts = urlsplit(url)
    return parts.path, sigv4.parse_query_string(parts.query)


def verify_presigned(
    query: list[tuple[str, str]], now: datetime = NOW, path: str = "/bucket/my%20key"
) -> sigv4.AuthResult:
    return sigv4.verify_presigned("GET", path, query, [("Host", HOST)], lookup, now)


def test_presigned_round_trip_and_expiry() -> None:
    path, query = presigned(query=[("versionId", "v1"), ("response-content-type", "text%2Fplain")])
    result = verify_presigned(query, path=path)
    assert result.presigned and result.expires_at == NOW + timedelta(hours=1)
    verify_presigned(query, now=NOW + timedelta(hours=1))
    with pytest.raises(sigv4.RequestExpired) as info:
        verify_presigned(query, now=NOW + timedelta(hours=1, seconds=1))
    assert_no_secret(info.value)
    # Dated in the future beyond the allowed skew: not valid yet.
    with pytest.raises(sigv4.RequestNotYetValid):
        verify_presigned(query, now=NOW - timedelta(minutes=16))
    verify_presigned(query, now=NOW - timedelta(minutes=14))


def test_presigned_tampering() -> None:
    _, query = presigned()
    longer = [(k, "7200" if k == "X-Amz-Expires" else v) for k, v in query]
    with pytest.raises(sigv4.SignatureDoesNotMatch):
        verify_presigned(longer)
    with pytest.raises(sigv4.SignatureDoesNotMatch):
        verify_presigned(query, path="/bucket/other")
    with pytest.raises(sigv4.SignatureDoesNotMatch):
        verify_presigned([*query, ("extra", "1")])


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        ("604801", "X-Amz-Expires must be less than a week"),
        ("-1", "X-Amz-Expires must be non-negative"),
        ("-604801", "X-Amz-Expires must be non-negative"),
        ("abc", "X-Amz-Expires should be a number"),
        ("1.5", "X-Amz-Expires should be a number"),
        ("--1", "X-Amz-Expires should be a number"),
        ("9" * 20, "X-Amz-Expires should be a number"),
    ],
)
def test_presigned_expires_range(expires: str, message: str) -> None:
    _, query = presigned()
    bad = [(k, expires if k == "X-Amz-Expires" else v) for k, v in query]
    with pytest.raises(sigv4.AuthorizationQueryParametersError, match=message):
        verify_presigned(bad)


def test_presigned_for_zero_seconds_has_expired_when_used() -> None:
    # X-Amz-Expires=0 parses (AWS documents 1 as the least useful value): a URL that
    # lives zero seconds is expired whenever it arrives, even within its own second.
    _, query = presigned()
    zero = [(k, "0" if k == "X-Amz-Expires" else v) for k, v in query]
    with pytest.raises(sigv4.RequestExpired):
        verify_presigned(zero, now=NOW)


def test_presigned_expires_up_to_a_week() -> None:
    _, query = presigned(expires=sigv4.MAX_PRESIGNED_EXPIRES)
    verify_presigned(query, now=NOW + timedelta(days=7))
    with pytest.raises(ValueError):
        presigned(expires=sigv4.MAX_PRESIGNED_EXPIRES + 1)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda q: [(k, v) for k, v in q if k != "X-Amz-Date"],
        lambda q: [(k, v) for k, v in q if k != "X-Amz-SignedHeaders"],
        lambda q: [*q, ("X-Amz-Date", "20240101T120000Z")],
        lambda q: [(k, "AWS4-HMAC-SHA512" if k == "X-Amz-Algorithm" else v) for k, v in q],
        lambda q: [(k, "2024-01-01" if k == "X-Amz-Date" else v) for k, v in q],
        lambda q: [(k, "AK%2Fbad" if k == "X-Amz-Credential" else v) for k, v in q],
    ],
)
def test_presigned_parameter_errors(mutate: object) -> None:
    _, query = presigned()
    assert callable(mutate)
    with pytest.raises(sigv4.AuthorizationQueryParametersError):
        verify_presigned(mutate(query))


def test_presigned_streaming_payload_is_refused() -> None:
    _, query = presigned(query=[("X-Amz-Content-Sha256", sigv4.STREAMING_SIGNED)])
    with pytest.raises(sigv4.InvalidAuthArgument):
        verify_presigned(query)


def test_authenticate_dispatch() -> None:
    assert sigv4.authenticate("GET", "/b/k", [], [("Host", HOST)], lookup, NOW) is None
    _, query = presigned()
    with pytest.raises(sigv4.InvalidAuthArgument, match="Only one auth mechanism"):
        sigv4.authenticate("GET", "/bucket/my%20key", query, signed(), lookup, NOW)
    v2 = [("AWSAccessKeyId", AK), ("Expires", "1700000000"), ("Signature", "abc")]
    with pytest.raises(sigv4.UnsupportedAuthMechanism):
        sigv4.authenticate("GET", "/b/k", v2, [("Host", HOST)], lookup, NOW)


def test_sign_request_needs_host() -> None:
    with pytest.raises(ValueError, match="host"):
        sigv4.sign_request(
            "GET",
            "/",
            [],
            [],
            sigv4.EMPTY_SHA256,
            access_key=AK,
            secret_key=SECRET,
            now=NOW,
            region="r",
        )


# --- hostile input --------------------------------------------------------------------

_any_text = st.text(st.characters(exclude_categories=()), max_size=30)
_pieces = st.sampled_from(
    [
        "",
        AK,
        "20240101",
        "20240101T120000Z",
        "us-east-1",
        "s3",
        "aws4_request",
        "host",
        "/",
        ";",
        ",",
        "=",
        "%",
        "%zz",
        "\udcff",
        "é",
    ]
)
_fragment = st.lists(_pieces | _any_text, max_size=5).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["GET", "PUT", "", "g\u00e9t"]),
    _fragment,
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "X-Amz-Algorithm",
                    "X-Amz-Credential",
                    "X-Amz-Date",
                    "X-Amz-Expires",
                    "X-Amz-SignedHeaders",
                    "X-Amz-Signature",
                    "X-Amz-Content-Sha256",
                ]
            )
            | _fragment,
            _fragment,
        ),
        max_size=8,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "host",
                    "x-amz-date",
                    "date",
                    "x-amz-content-sha256",
                    "authorization",
                    "x-amz-meta-a",
                ]
            )
            | _fragment,
            _fragment,
        ),
        max_size=6,
    ),
    st.lists(_fragment, min_size=4, max_size=4)
    | st.builds(
        lambda *p: ["/".join(p[:5]), p[5], p[6], ""],
        *[_pieces] * 7,
    ),
    st.booleans(),
)
def test_hostile_input_only_raises_auth_errors(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    parts: list[str],
    with_auth: bool,
) -> None:
    if with_auth:
        credential, signed_headers, sig, extra = parts
        headers = [
            *headers,
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={credential}, "
                f"SignedHeaders={signed_headers}, Signature={sig}{extra}",
            ),
        ]
    try:
        sigv4.authenticate(method, path, query, headers, lookup, NOW)
    except sigv4.AuthError as exc:
        assert_no_secret(exc)


def test_exported_members() -> None:
    import kvbox.auth

    assert sorted(kvbox.auth.__all__) == sorted(sigv4.__all__)
    for name in sigv4.__all__:
        assert getattr(kvbox.auth, name) is getattr(sigv4, name)
    # The package's namespace: what it exports, its stage modules, and nothing else.
    public = {n for n in vars(sigv4) if not n.startswith("_") and n.isidentifier()}
    stages = {"base", "canonical", "parse", "verify", "sign", "annotations"}
    assert public - stages == set(sigv4.__all__)
