"""Bucket settings: location, versioning, CORS, website, CreateBucket.

Layer: s3 protocol (pure; no I/O). The rules are ``kvbox.s3.xml``'s docstring.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvbox.s3.errors import S3Error
from kvbox.s3.xml.base import (
    CORS_METHODS,
    MAX_CONFIG_BODY,
    MAX_CORS_RULES,
    MAX_ROUTING_RULES,
    children_of,
    document,
    leaf_text,
    malformed,
    parse_body,
    parse_int,
    required_text,
    serialize,
    single,
    single_text,
)

# --- GetBucketLocation ---------------------------------------------------------------


def render_location(region: str | None) -> bytes:
    """GetBucketLocation. us-east-1 (or None) is the empty element, as AWS answers.

    >>> render_location("eu-west-1")
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">eu-west-1</LocationConstraint>'
    """
    b = document("LocationConstraint")
    if region and region != "us-east-1":
        b.content(region)
    return serialize(b)


# --- versioning ----------------------------------------------------------------------


class VersioningStatus(enum.StrEnum):
    ENABLED = "Enabled"
    SUSPENDED = "Suspended"


class MfaDelete(enum.StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class VersioningConfiguration:
    """Put/GetBucketVersioning. A never-versioned bucket renders with no Status."""

    status: VersioningStatus | None = None
    mfa_delete: MfaDelete | None = None

    @classmethod
    def from_xml(cls, body: bytes) -> VersioningConfiguration:
        root = parse_body(body, "VersioningConfiguration", MAX_CONFIG_BODY)
        pairs = children_of(root, ("Status", "MfaDelete"))
        status = single_text(pairs, "Status")
        mfa = single_text(pairs, "MfaDelete")
        try:
            return cls(
                None if status is None else VersioningStatus(status.strip()),
                None if mfa is None else MfaDelete(mfa.strip()),
            )
        except ValueError:
            raise malformed() from None

    def to_xml(self) -> bytes:
        b = document("VersioningConfiguration")
        b.text("Status", None if self.status is None else self.status.value)
        b.text("MfaDelete", None if self.mfa_delete is None else self.mfa_delete.value)
        return serialize(b)


# --- CORS ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CORSRule:
    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CORSConfiguration:
    """Put/GetBucketCors: 1..100 rules, each with methods and origins."""

    rules: tuple[CORSRule, ...]

    @classmethod
    def from_xml(cls, body: bytes) -> CORSConfiguration:
        root = parse_body(body, "CORSConfiguration", MAX_CONFIG_BODY)
        rules: list[CORSRule] = []
        for _, el in children_of(root, ("CORSRule",)):
            pairs = children_of(
                el,
                (
                    "ID",
                    "AllowedMethod",
                    "AllowedOrigin",
                    "AllowedHeader",
                    "ExposeHeader",
                    "MaxAgeSeconds",
                ),
            )

            def many(name: str, pairs: list[tuple[str, ET.Element]] = pairs) -> tuple[str, ...]:
                return tuple(leaf_text(e).strip() for n, e in pairs if n == name)

            max_age = single_text(pairs, "MaxAgeSeconds")
            rule = CORSRule(
                many("AllowedMethod"),
                many("AllowedOrigin"),
                many("AllowedHeader"),
                many("ExposeHeader"),
                None if max_age is None else parse_int(max_age),
                single_text(pairs, "ID"),
            )
            rules.append(rule)
        config = cls(tuple(rules))
        config.check()
        return config

    def check(self) -> None:
        if not self.rules:
            raise malformed()
        if len(self.rules) > MAX_CORS_RULES:
            raise S3Error(
                "InvalidRequest", f"The number of CORS rules should not exceed {MAX_CORS_RULES}"
            )
        for rule in self.rules:
            if not rule.allowed_methods or not rule.allowed_origins:
                raise malformed()
            for method in rule.allowed_methods:
                if method not in CORS_METHODS:
                    raise S3Error(
                        "InvalidRequest",
                        "Found unsupported HTTP method in CORS config. "
                        f"Unsupported method is {method}",
                    )
            for origin in rule.allowed_origins:
                if origin.count("*") > 1:
                    raise S3Error(
                        "InvalidRequest",
                        f'AllowedOrigin "{origin}" can not have more than one wildcard.',
                    )
            for header in rule.allowed_headers:
                if header.count("*") > 1:
                    raise S3Error(
                        "InvalidRequest",
                        f'AllowedHeader "{header}" can not have more than one wildcard.',
                    )
            if rule.id is not None and len(rule.id) > 255:
                raise malformed("The ID of a CORS rule is at most 255 characters")

    def to_xml(self) -> bytes:
        b = document("CORSConfiguration")
        for rule in self.rules:
            r = b.child("CORSRule")
            r.text("ID", rule.id)
            for h in rule.allowed_headers:
                r.text("AllowedHeader", h)
            for m in rule.allowed_methods:
                r.text("AllowedMethod", m)
            for o in rule.allowed_origins:
                r.text("AllowedOrigin", o)
            for h in rule.expose_headers:
                r.text("ExposeHeader", h)
            r.text("MaxAgeSeconds", rule.max_age_seconds)
        return serialize(b)


# --- website -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedirectAllRequestsTo:
    host_name: str
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingCondition:
    key_prefix_equals: str | None = None
    http_error_code_returned_equals: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRedirect:
    host_name: str | None = None
    http_redirect_code: str | None = None
    protocol: str | None = None
    replace_key_prefix_with: str | None = None
    replace_key_with: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRule:
    redirect: RoutingRedirect
    condition: RoutingCondition | None = None


def _bad_website(message: str) -> S3Error:
    return S3Error("InvalidArgument", message)


def _check_protocol(protocol: str | None) -> None:
    if protocol is not None and protocol not in ("http", "https"):
        raise _bad_website(
            "Invalid protocol, protocol can be http or https. If not defined the protocol "
            "will be selected automatically."
        )


@dataclass(frozen=True, slots=True)
class WebsiteConfiguration:
    """Put/GetBucketWebsite: either a redirect of every request, or an index document
    (with an optional error document and routing rules)."""

    index_document: str | None = None
    error_document: str | None = None
    redirect_all_requests_to: RedirectAllRequestsTo | None = None
    routing_rules: tuple[RoutingRule, ...] = ()

    @classmethod
    def from_xml(cls, body: bytes) -> WebsiteConfiguration:
        root = parse_body(body, "WebsiteConfiguration", MAX_CONFIG_BODY)
        pairs = children_of(
            root, ("IndexDocument", "ErrorDocument", "RedirectAllRequestsTo", "RoutingRules")
        )
        index = single(pairs, "IndexDocument")
        error = single(pairs, "ErrorDocument")
        redirect_all = single(pairs, "RedirectAllRequestsTo")
        rules_el = single(pairs, "RoutingRules")
        redirect: RedirectAllRequestsTo | None = None
        if redirect_all is not None:
            r = children_of(redirect_all, ("HostName", "Protocol"))
            redirect = RedirectAllRequestsTo(
                required_text(r, "HostName"), single_text(r, "Protocol")
            )
        rules: list[RoutingRule] = []
        if rules_el is not None:
            for _, rule_el in children_of(rules_el, ("RoutingRule",)):
                rp = children_of(rule_el, ("Condition", "Redirect"))
                redirect_el = single(rp, "Redirect")
                if redirect_el is None:
                    raise malformed()
                d = children_of(
                    redirect_el,
                    (
                        "HostName",
                        "HttpRedirectCode",
                        "Protocol",
                        "ReplaceKeyPrefixWith",
                        "ReplaceKeyWith",
                    ),
                )
                condition: RoutingCondition | None = None
                cond_el = single(rp, "Condition")
                if cond_el is not None:
                    c = children_of(cond_el, ("KeyPrefixEquals", "HttpErrorCodeReturnedEquals"))
                    condition = RoutingCondition(
                        single_text(c, "KeyPrefixEquals"),
                        single_text(c, "HttpErrorCodeReturnedEquals"),
                    )
                rules.append(
                    RoutingRule(
                        RoutingRedirect(
                            single_text(d, "HostName"),
                            single_text(d, "HttpRedirectCode"),
                            single_text(d, "Protocol"),
                            single_text(d, "ReplaceKeyPrefixWith"),
                            single_text(d, "ReplaceKeyWith"),
                        ),
                        condition,
                    )
                )
        suffix: str | None = None
        if index is not None:
            suffix = required_text(children_of(index, ("Suffix",)), "Suffix")
        error_key: str | None = None
        if error is not None:
            error_key = required_text(children_of(error, ("Key",)), "Key")
        config = cls(suffix, error_key, redirect, tuple(rules))
        config.check()
        return config

    def check(self) -> None:
        if self.redirect_all_requests_to is not None:
            if (
                self.index_document is not None
                or self.error_document is not None
                or (self.routing_rules)
            ):
                raise _bad_website(
                    "RedirectAllRequestsTo cannot be provided in conjunction with other "
                    "Routing Rules."
                )
            _check_protocol(self.redirect_all_requests_to.protocol)
            return
        if self.index_document is None:
            raise _bad_website(
                "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo "
                "is empty"
            )
        if not self.index_document or "/" in self.index_document:
            raise _bad_website("The IndexDocument Suffix is not well formed")
        if self.error_document is not None and not self.error_document:
            raise _bad_website("The ErrorDocument Key is not well formed")
        if len(self.routing_rules) > MAX_ROUTING_RULES:
            raise _bad_website(f"The number of routing rules must not exceed {MAX_ROUTING_RULES}")
        for rule in self.routing_rules:
            self._check_rule(rule)

    @staticmethod
    def _check_rule(rule: RoutingRule) -> None:
        d = rule.redirect
        if all(
            v is None
            for v in (
                d.host_name,
                d.http_redirect_code,
                d.protocol,
                d.replace_key_prefix_with,
                d.replace_key_with,
            )
        ):
            raise _bad_website("Redirect must contain at least one of the redirect elements")
        if d.replace_key_prefix_with is not None and d.replace_key_with is not None:
            raise _bad_website("You can only define ReplaceKeyPrefix or ReplaceKey but not both.")
        _check_protocol(d.protocol)
        code = d.http_redirect_code
        if code is not None and not (
            code.isascii()
            and code.isdigit()
            and len(code) == 3
            and code[0] == "3"
            and code != "300"
        ):
            raise _bad_website(
                f"The provided HTTP redirect code ({code}) is not valid. Valid codes are 3XX "
                "except 300."
            )
        c = rule.condition
        if c is not None:
            if c.key_prefix_equals is None and c.http_error_code_returned_equals is None:
                raise _bad_website(
                    "Condition cannot be empty. To redirect all requests without a "
                    "condition, the condition element shouldn't be present."
                )
            err = c.http_error_code_returned_equals
            if err is not None and not (
                err.isascii() and err.isdigit() and len(err) == 3 and err[0] in "45"
            ):
                raise _bad_website(
                    f"The provided HTTP error code ({err}) is not valid. Valid codes are 4XX "
                    "or 5XX."
                )

    def to_xml(self) -> bytes:
        b = document("WebsiteConfiguration")
        if self.redirect_all_requests_to is not None:
            r = b.child("RedirectAllRequestsTo")
            r.text("HostName", self.redirect_all_requests_to.host_name)
            r.text("Protocol", self.redirect_all_requests_to.protocol)
        if self.index_document is not None:
            b.child("IndexDocument").text("Suffix", self.index_document)
        if self.error_document is not None:
            b.child("ErrorDocument").text("Key", self.error_document)
        if self.routing_rules:
            rules = b.child("RoutingRules")
            for rule in self.routing_rules:
                r = rules.child("RoutingRule")
                if rule.condition is not None:
                    c = r.child("Condition")
                    c.text("KeyPrefixEquals", rule.condition.key_prefix_equals)
                    c.text(
                        "HttpErrorCodeReturnedEquals",
                        rule.condition.http_error_code_returned_equals,
                    )
                d = r.child("Redirect")
                d.text("Protocol", rule.redirect.protocol)
                d.text("HostName", rule.redirect.host_name)
                d.text("ReplaceKeyPrefixWith", rule.redirect.replace_key_prefix_with)
                d.text("ReplaceKeyWith", rule.redirect.replace_key_with)
                d.text("HttpRedirectCode", rule.redirect.http_redirect_code)
        return serialize(b)


# --- CreateBucket --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateBucketConfiguration:
    """CreateBucket's optional body; an empty body is ``location_constraint=None``."""

    location_constraint: str | None = None

    @classmethod
    def from_xml(cls, body: bytes) -> CreateBucketConfiguration:
        if not body.strip():
            return cls()
        root = parse_body(body, "CreateBucketConfiguration", MAX_CONFIG_BODY)
        pairs = children_of(root, ("LocationConstraint", "Location", "Bucket", "Tags"))
        for unserved in ("Location", "Bucket", "Tags"):
            if single(pairs, unserved) is not None:
                raise S3Error(
                    "NotImplemented",
                    f"CreateBucketConfiguration/{unserved} is not implemented by kvbox",
                )
        value = single_text(pairs, "LocationConstraint")
        return cls(None if value is None else value.strip())

    def to_xml(self) -> bytes:
        b = document("CreateBucketConfiguration")
        b.text("LocationConstraint", self.location_constraint)
        return serialize(b)
