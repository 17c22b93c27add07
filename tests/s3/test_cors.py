"""kvbox.s3.cors: rule matching, preflight answers and actual-request headers, as tables.

The origin cases of ``ORIGIN_RESPONSE`` are ceph/s3-tests' ``test_cors_origin_response``
(run against AWS by that suite): the same four rules and the same verdicts.
"""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvbox.s3 import cors
from kvbox.s3.cors import (
    VARY,
    actual_headers,
    bad_preflight,
    config_of,
    find_rule,
    parse_cors,
    preflight,
    requested_headers,
    wildcard_match,
)
from kvbox.s3.xml import CORSConfiguration, CORSRule


def test_doctests() -> None:
    assert doctest.testmod(cors).failed == 0


# --- wildcard patterns -----------------------------------------------------------------

# (pattern, value, ignore_case, matches)
WILDCARDS: list[tuple[str, str, bool, bool]] = [
    ("*", "", False, True),
    ("*", "http://anything", False, True),
    ("http://a.com", "http://a.com", False, True),
    ("http://a.com", "http://a.com/", False, False),
    ("http://a.com", "http://A.com", False, False),
    ("http://a.com", "https://a.com", False, False),
    ("http://*.a.com", "http://x.a.com", False, True),
    ("http://*.a.com", "http://x.y.a.com", False, True),
    ("http://*.a.com", "http://.a.com", False, True),
    ("http://*.a.com", "http://a.com", False, False),
    ("http://*.a.com", "http://x.a.com.evil", False, False),
    ("start*end", "startend", False, True),
    ("start*end", "start12end", False, True),
    ("start*end", "0start12end", False, False),
    ("prefix*", "prefix", False, True),
    ("*suffix", "foo.suffix", False, True),
    ("*suffix", "foo.suffix.get", False, False),
    # regex metacharacters are literal
    ("http://a.com", "http://aXcom", False, False),
    ("a+b(c)?", "a+b(c)?", False, True),
    ("a+b(c)?", "aab", False, False),
    ("x[1]*", "x[1]yz", False, True),
    # header names: case-insensitive
    ("x-amz-*", "X-Amz-Date", True, True),
    ("x-amz-*", "X-Amz-Date", False, False),
    ("Content-Type", "content-type", True, True),
    ("x-amz-meta-header1", "x-amz-meta-header2", True, False),
    ("*", "anything-at-all", True, True),
    # a newline is just another character for the wildcard, never a line end
    ("a*b", "a\nb", False, True),
    ("ab", "ab\n", False, False),
]


@pytest.mark.parametrize(("pattern", "value", "ignore_case", "expected"), WILDCARDS)
def test_wildcard_match(pattern: str, value: str, ignore_case: bool, expected: bool) -> None:
    assert wildcard_match(pattern, value, ignore_case=ignore_case) is expected


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_wildcard_is_prefix_and_suffix(head: str, middle: str, tail: str) -> None:
    """``head*tail`` matches whatever starts with head and ends with tail, empty middle
    included; without the star only the exact string matches."""
    head, tail = head.replace("*", ""), tail.replace("*", "")
    assert wildcard_match(f"{head}*{tail}", head + middle + tail)
    assert wildcard_match(head + tail, head + tail)


@given(st.text(max_size=30), st.text(max_size=30))
def test_pattern_without_star_is_equality(pattern: str, value: str) -> None:
    pattern = pattern.replace("*", "")
    assert wildcard_match(pattern, value) is (pattern == value)


# (header value, names)
REQUESTED: list[tuple[str | None, list[str]]] = [
    (None, []),
    ("", []),
    ("  ", []),
    ("Content-Type", ["content-type"]),
    ("content-type, X-Amz-Date", ["content-type", "x-amz-date"]),
    ("a,,b , ,C", ["a", "b", "c"]),
]


@pytest.mark.parametrize(("value", "names"), REQUESTED)
def test_requested_headers(value: str | None, names: list[str]) -> None:
    assert requested_headers(value) == names


# --- rule matching -----------------------------------------------------------------

ORIGIN_RESPONSE = CORSConfiguration(
    (
        CORSRule(("GET",), ("*suffix",)),
        CORSRule(("GET",), ("start*end",)),
        CORSRule(("GET",), ("prefix*",)),
        CORSRule(("PUT",), ("*.put",)),
    )
)

# (origin, method, index of the matching rule or None)
ORIGIN_CASES: list[tuple[str, str, int | None]] = [
    ("foo.suffix", "GET", 0),
    ("foo.bar", "GET", None),
    ("foo.suffix.get", "GET", None),
    ("startend", "GET", 1),
    ("start1end", "GET", 1),
    ("start12end", "GET", 1),
    ("0start12end", "GET", None),
    ("prefix", "GET", 2),
    ("prefix.suffix", "GET", 0),  # the first rule wins over the third
    ("bla.prefix", "GET", None),
    ("foo.suffix", "PUT", None),
    ("foo.suffix", "DELETE", None),
    ("foo.put", "PUT", 3),
    ("foo.put", "GET", None),
    ("foo.put", "get", None),  # methods are case-sensitive
]


@pytest.mark.parametrize(("origin", "method", "index"), ORIGIN_CASES)
def test_find_rule_origins(origin: str, method: str, index: int | None) -> None:
    rule = find_rule(ORIGIN_RESPONSE, origin, method)
    assert rule == (None if index is None else ORIGIN_RESPONSE.rules[index])


HEADER_RULES = CORSConfiguration(
    (
        CORSRule(("PUT",), ("http://up.example",), ("content-type", "x-amz-*")),
        CORSRule(("PUT",), ("http://any.example",), ("*",)),
        CORSRule(("PUT",), ("http://none.example",)),
        CORSRule(("GET",), ("*",), ("Authorization",)),
    )
)

# (origin, method, requested headers, index or None)
HEADER_CASES: list[tuple[str, str, list[str], int | None]] = [
    ("http://up.example", "PUT", [], 0),
    ("http://up.example", "PUT", ["content-type"], 0),
    ("http://up.example", "PUT", ["content-type", "x-amz-date", "x-amz-meta-a"], 0),
    ("http://up.example", "PUT", ["content-type", "authorization"], None),
    ("http://up.example", "PUT", ["x-amz"], None),  # "x-amz-*" needs the dash
    ("http://any.example", "PUT", ["whatever", "x-custom"], 1),
    ("http://none.example", "PUT", [], 2),
    ("http://none.example", "PUT", ["content-type"], None),  # no AllowedHeader: none
    ("http://up.example", "GET", ["authorization"], 3),
    ("http://up.example", "GET", ["content-type"], None),
]


@pytest.mark.parametrize(("origin", "method", "headers", "index"), HEADER_CASES)
def test_find_rule_headers(origin: str, method: str, headers: list[str], index: int | None) -> None:
    rule = find_rule(HEADER_RULES, origin, method, headers)
    assert rule == (None if index is None else HEADER_RULES.rules[index])


# --- preflight -----------------------------------------------------------------------

FULL = CORSConfiguration(
    (
        CORSRule(
            ("PUT", "POST", "DELETE"),
            ("http://www.example.com",),
            ("*",),
            ("x-amz-server-side-encryption", "x-amz-request-id"),
            3000,
            "rule1",
        ),
        CORSRule(("GET",), ("*",)),
    )
)


def test_preflight_specific_origin_echoes_it_with_credentials() -> None:
    result = preflight(FULL, "http://www.example.com", "PUT", "Content-Type, X-Amz-Date")
    assert result.allowed and result.status == 200 and result.error is None
    assert dict(result.headers) == {
        "Access-Control-Allow-Origin": "http://www.example.com",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "PUT, POST, DELETE",
        "Access-Control-Allow-Headers": "content-type, x-amz-date",
        "Access-Control-Expose-Headers": "x-amz-server-side-encryption, x-amz-request-id",
        "Access-Control-Max-Age": "3000",
        "Vary": VARY,
    }


def test_preflight_star_origin_answers_star_without_credentials() -> None:
    result = preflight(FULL, "http://elsewhere.example", "GET", None)
    assert dict(result.headers) == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET",
        "Vary": VARY,
    }


def test_preflight_max_age_zero_is_sent() -> None:
    config = CORSConfiguration((CORSRule(("GET",), ("http://a",), max_age_seconds=0),))
    assert preflight(config, "http://a", "GET", None).headers["Access-Control-Max-Age"] == "0"


# (config, origin, method, request headers, status, code, message fragment)
REFUSALS: list[
    tuple[CORSConfiguration | None, str | None, str | None, str | None, int, str, str]
] = [
    (FULL, None, "GET", None, 400, "BadRequest", "Origin request header needed"),
    (FULL, "", "GET", None, 400, "BadRequest", "Origin request header needed"),
    (None, None, "GET", None, 400, "BadRequest", "Origin request header needed"),
    (FULL, "http://a", None, None, 400, "BadRequest", "Access-Control-Request-Method: null"),
    (FULL, "http://a", "PATCH", None, 400, "BadRequest", "Access-Control-Request-Method: PATCH"),
    (FULL, "http://a", "OPTIONS", None, 400, "BadRequest", "Method: OPTIONS"),
    (None, "http://a", "GET", None, 403, "AccessForbidden", "CORS is not enabled for this bucket"),
    (FULL, "http://www.example.com", "HEAD", None, 403, "AccessForbidden", "not allowed"),
    (FULL, "http://other.example", "PUT", None, 403, "AccessForbidden", "not allowed"),
    (FULL, "http://other.example", "GET", "x-amz-date", 403, "AccessForbidden", "not allowed"),
    (ORIGIN_RESPONSE, "foo.bar", "GET", None, 403, "AccessForbidden", "not allowed"),
]


@pytest.mark.parametrize(
    ("config", "origin", "method", "headers", "status", "code", "fragment"), REFUSALS
)
def test_preflight_refusals(
    config: CORSConfiguration | None,
    origin: str | None,
    method: str | None,
    headers: str | None,
    status: int,
    code: str,
    fragment: str,
) -> None:
    result = preflight(config, origin, method, headers)
    assert not result.allowed
    assert result.status == status
    assert result.error is not None and result.error.code == code
    assert fragment in result.error.message
    assert dict(result.headers) == {}


def test_refused_preflight_names_method_and_resource_type() -> None:
    result = preflight(None, "http://a", "PUT", None, resource_type="BUCKET")
    assert result.error is not None
    assert dict(result.error.extra) == {"Method": "PUT", "ResourceType": "BUCKET"}
    assert result.error.message == "CORSResponse: CORS is not enabled for this bucket."
    result = preflight(FULL, "http://nope", "PUT", None)
    assert result.error is not None and result.error.extra["ResourceType"] == "OBJECT"
    assert result.error.message.startswith("CORSResponse: This CORS request is not allowed.")


def test_bad_preflight_is_checked_before_configuration() -> None:
    assert bad_preflight("http://a", "GET") is None
    err = bad_preflight(None, None)
    assert err is not None and "Origin" in err.message  # origin is reported first


@pytest.mark.parametrize(("origin", "method", "index"), ORIGIN_CASES)
def test_preflight_agrees_with_find_rule(origin: str, method: str, index: int | None) -> None:
    """s3-tests' OPTIONS half: 200 with the origin echoed, or 403."""
    result = preflight(ORIGIN_RESPONSE, origin, method, None)
    if index is None:
        expected = 400 if method not in ("GET", "PUT", "POST", "DELETE", "HEAD") else 403
        assert result.status == expected
    else:
        assert result.status == 200
        assert result.headers["Access-Control-Allow-Origin"] == origin
        assert result.headers["Access-Control-Allow-Methods"] == method


# --- actual requests ------------------------------------------------------------------


# (origin, method, requested method, expected allow-origin, expected allow-methods)
ACTUAL: list[tuple[str | None, str, str | None, str | None, str | None]] = [
    (None, "GET", None, None, None),
    ("", "GET", None, None, None),
    ("foo.suffix", "GET", None, "foo.suffix", "GET"),
    ("foo.bar", "GET", None, None, None),
    ("startend", "GET", None, "startend", "GET"),
    ("0start12end", "GET", None, None, None),
    # s3-tests: a PUT carrying Access-Control-Request-Method is matched on that header
    ("foo.suffix", "PUT", "GET", "foo.suffix", "GET"),
    ("foo.suffix", "PUT", "PUT", None, None),
    ("foo.suffix", "PUT", "DELETE", None, None),
    ("foo.suffix", "PUT", None, None, None),
    ("foo.put", "PUT", None, "foo.put", "PUT"),
]


@pytest.mark.parametrize(("origin", "method", "acrm", "allow_origin", "allow_methods"), ACTUAL)
def test_actual_headers(
    origin: str | None,
    method: str,
    acrm: str | None,
    allow_origin: str | None,
    allow_methods: str | None,
) -> None:
    h = actual_headers(ORIGIN_RESPONSE, origin, method, requested_method=acrm)
    assert h.get("Access-Control-Allow-Origin") == allow_origin
    assert h.get("Access-Control-Allow-Methods") == allow_methods
    if allow_origin is None:
        assert h == {}
    else:
        assert h["Vary"] == VARY
        assert h["Access-Control-Allow-Credentials"] == "true"
        assert "Access-Control-Allow-Headers" not in h


def test_actual_headers_star_and_expose() -> None:
    h = actual_headers(FULL, "http://x.example", "GET")
    assert h == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET",
        "Vary": VARY,
    }
    h = actual_headers(FULL, "http://www.example.com", "DELETE")
    assert h["Access-Control-Allow-Origin"] == "http://www.example.com"
    assert h["Access-Control-Expose-Headers"] == "x-amz-server-side-encryption, x-amz-request-id"
    assert h["Access-Control-Max-Age"] == "3000"


def test_no_configuration_no_headers() -> None:
    assert actual_headers(None, "http://a", "GET") == {}


# --- stored configuration --------------------------------------------------------------

XML = (
    '<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>'
    "<AllowedOrigin>http://www.example.com</AllowedOrigin><AllowedMethod>PUT</AllowedMethod>"
    "<AllowedHeader>*</AllowedHeader><MaxAgeSeconds>60</MaxAgeSeconds></CORSRule>"
    "</CORSConfiguration>"
)


def test_config_of_reads_the_stored_xml() -> None:
    assert config_of({}) is None
    assert config_of({"cors": ""}) is None
    config = config_of({"cors": XML, "website": "<x/>"})
    assert config is not None
    assert config.rules[0].allowed_origins == ("http://www.example.com",)
    assert config.rules[0].max_age_seconds == 60
    assert parse_cors(XML) is config  # memoised


def test_round_trip_through_xml() -> None:
    """What PutBucketCors stores (to_xml) parses back to the same rules."""
    text = FULL.to_xml().decode()
    assert parse_cors(text) == FULL
