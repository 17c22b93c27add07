"""CORS as S3 applies a bucket's CORSConfiguration: which rule matches, which headers go out.

Layer: s3 protocol (pure; no I/O). Rules, as S3 evaluates them (AWS user guide, "How
does Amazon S3 evaluate the CORS configuration on a bucket?", and the OPTIONS object
appendix of the API reference; the corner cases follow ceph/s3-tests' CORS tests, which
run against AWS):

* Rules are tried in order and the **first** rule that matches wins. A rule matches when
  (1) the Origin matches one of its AllowedOrigin patterns, (2) the method -- the
  Access-Control-Request-Method when the request carries one, else the request's own
  method -- is one of its AllowedMethods, and (3) on a preflight, every name listed in
  Access-Control-Request-Headers matches one of its AllowedHeader patterns.
* A pattern holds at most one ``*`` (``CORSConfiguration.check`` refuses more), which
  stands for any run of characters, the empty one included: ``start*end`` matches
  ``startend``. Origins compare case-sensitively (browsers send them lowercased); header
  names case-insensitively, as HTTP defines them. A rule with no AllowedHeader allows
  no requested header at all.
* What a match sends: Access-Control-Allow-Origin is ``*`` when the rule allows every
  origin (a bare ``*`` among its AllowedOrigins), else the request's Origin echoed, and
  then Access-Control-Allow-Credentials: true as well (S3 never pairs credentials with
  ``*``, which browsers would refuse anyway). Access-Control-Allow-Methods lists the
  rule's methods; Access-Control-Allow-Headers echoes the requested headers, lowercased;
  Access-Control-Expose-Headers and Access-Control-Max-Age come from the rule; Vary
  names the three request headers the answer depends on.
* A preflight (OPTIONS) that cannot be answered: no Origin is 400 BadRequest, a missing
  or unknown Access-Control-Request-Method is 400 BadRequest, a bucket without CORS is
  403 AccessForbidden "CORS is not enabled for this bucket.", and no matching rule is 403
  AccessForbidden with S3's "This CORS request is not allowed" message. A non-preflight
  request that matches nothing simply gets no CORS headers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kvbox.s3.errors import S3Error
from kvbox.s3.xml import CORS_METHODS, CORSConfiguration, CORSRule

#: The request headers a CORS answer depends on: caches must key on all three.
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
#: Parsed configurations kept (by their XML text): the same few buckets' configs are
#: read on every cross-origin request, and parsing one costs more than the match.
PARSE_CACHE_SIZE = 256


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def parse_cors(xml_text: str) -> CORSConfiguration:
    """A bucket's stored ``attrs["cors"]`` as a configuration (memoised: it is immutable).

    The text was validated when it was PUT, so a failure here is a corrupt store and
    surfaces as whatever ``S3Error`` the parser raises.
    """
    return CORSConfiguration.from_xml(xml_text.encode("utf-8"))


def config_of(attrs: Mapping[str, str]) -> CORSConfiguration | None:
    """The CORS configuration kept in a bucket's attrs, or None when it has none."""
    text = attrs.get("cors")
    return parse_cors(text) if text else None


@functools.lru_cache(maxsize=1024)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    head, star, tail = pattern.partition("*")
    body = re.escape(head) + (".*" + re.escape(tail) if star else "")
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Whether ``value`` matches a CORS pattern with at most one ``*`` (any run, even empty).

    >>> [wildcard_match("http://*.example.com", o) for o in ("http://a.example.com",
    ...     "http://example.com", "https://a.example.com")]
    [True, False, False]
    >>> wildcard_match("start*end", "startend")
    True
    >>> wildcard_match("x-amz-*", "X-Amz-Date", ignore_case=True)
    True
    """
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def requested_headers(value: str | None) -> list[str]:
    """Access-Control-Request-Headers as lowercased names (empty items dropped)."""
    if not value:
        return []
    return [name for name in (part.strip().lower() for part in value.split(",")) if name]


def rule_matches(rule: CORSRule, origin: str, method: str, headers: Sequence[str] = ()) -> bool:
    """Whether ``rule`` allows ``origin`` to use ``method`` sending ``headers`` (lowercased)."""
    if method not in rule.allowed_methods:
        return False
    if not any(wildcard_match(p, origin) for p in rule.allowed_origins):
        return False
    return all(
        any(wildcard_match(p, h, ignore_case=True) for p in rule.allowed_headers) for h in headers
    )


def find_rule(
    config: CORSConfiguration, origin: str, method: str, headers: Sequence[str] = ()
) -> CORSRule | None:
    """The first rule that matches (S3 never looks past it), or None."""
    for rule in config.rules:
        if rule_matches(rule, origin, method, headers):
            return rule
    return None


def _answer(rule: CORSRule, origin: str, headers: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if "*" in rule.allowed_origins:
        out["Access-Control-Allow-Origin"] = "*"
    else:
        out["Access-Control-Allow-Origin"] = origin
        out["Access-Control-Allow-Credentials"] = "true"
    out["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if headers:
        out["Access-Control-Allow-Headers"] = ", ".join(headers)
    if rule.expose_headers:
        out["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age_seconds is not None:
        out["Access-Control-Max-Age"] = str(rule.max_age_seconds)
    out["Vary"] = VARY
    return out


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """The answer to an OPTIONS preflight: the CORS headers of a 200, or the S3 error."""

    headers: Mapping[str, str] = field(default_factory=dict)
    error: S3Error | None = None

    @property
    def allowed(self) -> bool:
        return self.error is None

    @property
    def status(self) -> int:
        return 200 if self.error is None else self.error.status


def bad_preflight(origin: str | None, method: str | None) -> S3Error | None:
    """The 400 a preflight gets before any configuration is read, or None if well-formed.

    S3 checks these before it looks at the bucket at all: a preflight without an Origin,
    or asking for a method CORS cannot allow, is malformed whatever the bucket says.
    """
    if not origin:
        return S3Error("BadRequest", "Insufficient information. Origin request header needed.")
    if method not in CORS_METHODS:
        shown = "null" if method is None else method
        return S3Error("BadRequest", f"Invalid Access-Control-Request-Method: {shown}")
    return None


def forbidden(message: str | None, method: str, resource_type: str) -> S3Error:
    """S3's 403 AccessForbidden for a refused preflight, with its Method/ResourceType."""
    extra = {"Method": method, "ResourceType": resource_type}
    return S3Error("AccessForbidden", message, extra=extra)


def preflight(
    config: CORSConfiguration | None,
    origin: str | None,
    method: str | None,
    request_headers: str | None,
    *,
    resource_type: str = "OBJECT",
) -> PreflightResult:
    """Answer an OPTIONS preflight the way S3 does (see the module docstring).

    ``method`` is the Access-Control-Request-Method header and ``request_headers`` the
    Access-Control-Request-Headers header, both as received (None when absent).
    ``resource_type`` ("OBJECT" or "BUCKET") only decorates a 403's XML body.
    """
    bad = bad_preflight(origin, method)
    if bad is not None:
        return PreflightResult(error=bad)
    assert origin is not None and method is not None
    if config is None:
        message = "CORSResponse: CORS is not enabled for this bucket."
        return PreflightResult(error=forbidden(message, method, resource_type))
    headers = requested_headers(request_headers)
    rule = find_rule(config, origin, method, headers)
    if rule is None:
        return PreflightResult(error=forbidden(None, method, resource_type))
    return PreflightResult(_answer(rule, origin, headers))


def actual_headers(
    config: CORSConfiguration | None,
    origin: str | None,
    method: str,
    *,
    requested_method: str | None = None,
) -> dict[str, str]:
    """The CORS headers for a non-preflight response (any status); empty when none apply.

    ``requested_method`` is the request's Access-Control-Request-Method header, if any:
    S3 matches rules against it instead of ``method`` whenever a request carries it.
    Requested headers are not checked here: only a preflight asks about them.
    """
    if config is None or not origin:
        return {}
    rule = find_rule(config, origin, requested_method or method)
    if rule is None:
        return {}
    return _answer(rule, origin, ())
