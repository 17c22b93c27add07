"""Bucket lifecycle as S3 spells it: the configuration XML, its validation, x-amz-expiration.

Layer: s3door (pure functions, no I/O; in the door rather than ``kvbox.s3`` because it
speaks the core's rule model). What a rule *does* is ``kvbox.core.lifecycle.rules``; this
module reads and writes S3's form of it and refuses, with AWS's errors, anything that
could not be stored as a valid rule:

* Shape (unknown or repeated elements, a bad number or status, a Filter with two
  conditions outside ``<And>``, Days with Date, a rule with both a rule-level Prefix and
  a Filter or with neither) is MalformedXML, as S3 validates against its schema.
* Values S3 checks one by one are InvalidArgument with AWS's words: an ID over 255
  characters or used twice, Days / NoncurrentDays / DaysAfterInitiation that are not
  positive, NewerNoncurrentVersions outside 1..100, a Date that is not midnight UTC,
  ExpiredObjectDeleteMarker with Days or Date, sizes that leave nothing between them.
* Combinations S3 refuses as a request are InvalidRequest: a rule with no action, a tag
  filter with AbortIncompleteMultipartUpload or ExpiredObjectDeleteMarker, more than
  1,000 rules.
* Transition and NoncurrentVersionTransition are refused with NotImplemented: kvbox has
  one storage class, and a transition that silently did nothing would be a lie.
* A rule without an ID gets one (as S3 does), so GetBucketLifecycleConfiguration always
  names every rule and ``x-amz-expiration`` can point at it.
"""

from __future__ import annotations

import random
import string
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from kvbox.core.lifecycle.rules import NS_PER_DAY, Filter, FilterForm, LifecycleConfig, Rule
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import (
    MAX_CONFIG_BODY,
    MAX_OBJECT_TAGS,
    Tagging,
    format_timestamp,
)
from kvbox.s3.xml.base import (
    Builder,
    children_of,
    document,
    malformed,
    parse_body,
    parse_int,
    required_text,
    serialize,
    single,
    single_text,
)

#: S3's limits on a lifecycle configuration.
MAX_RULES = 1000
MAX_ID_CHARS = 255
MAX_NEWER_NONCURRENT = 100
#: What GetBucketLifecycleConfiguration answers in ``x-amz-transition-default-minimum-
#: object-size``: the rule AWS applies to new configurations since 2024 (no transitions
#: happen in kvbox, so it only tells clients what they expect to read).
TRANSITION_MINIMUM_SIZE = "all_storage_classes_128K"

_RULE_ELEMENTS = (
    "ID",
    "Prefix",
    "Filter",
    "Status",
    "Expiration",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
    "Transition",
    "NoncurrentVersionTransition",
)
_CONDITIONS = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan")
_SINGLE_FORMS = {
    "Prefix": FilterForm.PREFIX,
    "Tag": FilterForm.TAG,
    "ObjectSizeGreaterThan": FilterForm.SIZE_GT,
    "ObjectSizeLessThan": FilterForm.SIZE_LT,
}


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidArgument", message)


def _positive(text: str, message: str) -> int:
    n = parse_int(text, low=-(2**63), high=2**31 - 1)
    if n <= 0:
        raise _invalid(message)
    return n


def _new_id() -> str:
    """A rule ID like the ones S3 makes up for rules sent without one."""
    return "".join(random.choices(string.ascii_letters + string.digits, k=48))


# --- reading -------------------------------------------------------------------------


def parse_lifecycle(body: bytes) -> LifecycleConfig:
    """A PutBucketLifecycleConfiguration body (or the older PutBucketLifecycle's, whose
    rules have a rule-level Prefix), checked as AWS checks it."""
    root = parse_body(body, "LifecycleConfiguration", MAX_CONFIG_BODY)
    elements = children_of(root, ("Rule",))
    if not elements:
        raise malformed()
    if len(elements) > MAX_RULES:
        raise S3Error("InvalidRequest", f"Lifecycle configuration has more than {MAX_RULES} rules")
    rules = [_rule(el) for _, el in elements]
    seen: set[str] = set()
    for r in rules:
        if r.id in seen:
            raise _invalid("Rule ID must be unique. Found same ID for more than one rule")
        seen.add(r.id)
    return LifecycleConfig(tuple(rules))


def _rule(el: ET.Element) -> Rule:
    pairs = children_of(el, _RULE_ELEMENTS)
    if any(n in ("Transition", "NoncurrentVersionTransition") for n, _ in pairs):
        raise S3Error(
            "NotImplemented",
            "kvbox has one storage class: lifecycle Transition and "
            "NoncurrentVersionTransition actions are not supported",
        )
    rule_id = single_text(pairs, "ID")
    if rule_id is not None and len(rule_id) > MAX_ID_CHARS:
        raise _invalid(f"ID length should not exceed allowed limit of {MAX_ID_CHARS}")
    status = required_text(pairs, "Status").strip()
    if status not in ("Enabled", "Disabled"):
        raise malformed()
    legacy = single_text(pairs, "Prefix")
    filter_el = single(pairs, "Filter")
    if (legacy is None) == (filter_el is None):
        raise malformed()  # exactly one of a rule-level Prefix and a Filter
    flt = Filter(FilterForm.LEGACY_PREFIX, legacy) if legacy is not None else _filter(filter_el)
    days, date_ns, eodm = _expiration(single(pairs, "Expiration"))
    noncurrent_days, newer = _noncurrent(single(pairs, "NoncurrentVersionExpiration"))
    abort = single(pairs, "AbortIncompleteMultipartUpload")
    abort_days = None
    if abort is not None:
        text = required_text(children_of(abort, ("DaysAfterInitiation",)), "DaysAfterInitiation")
        abort_days = _positive(
            text,
            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a "
            "positive integer",
        )
    if (
        days is None
        and date_ns is None
        and eodm is None
        and noncurrent_days is None
        and (abort_days is None)
    ):
        raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
    if flt.tags and abort_days is not None:
        raise S3Error(
            "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags."
        )
    if flt.tags and eodm:
        raise S3Error("InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags.")
    return Rule(
        rule_id if rule_id else _new_id(),
        status == "Enabled",
        flt,
        days,
        date_ns,
        eodm,
        noncurrent_days,
        newer,
        abort_days,
    )


def _filter(el: ET.Element | None) -> Filter:
    assert el is not None
    pairs = children_of(el, (*_CONDITIONS, "And"))
    if not pairs:
        return Filter(FilterForm.EMPTY)
    if len(pairs) > 1:
        raise malformed()  # several conditions go inside <And>
    name, child = pairs[0]
    if name == "And":
        inner = children_of(child, _CONDITIONS)
        if not inner:
            raise malformed()
        return _conditions(FilterForm.AND, inner)
    return _conditions(_SINGLE_FORMS[name], pairs)


def _conditions(form: FilterForm, pairs: list[tuple[str, ET.Element]]) -> Filter:
    prefix = single_text(pairs, "Prefix")
    gt = single_text(pairs, "ObjectSizeGreaterThan")
    lt = single_text(pairs, "ObjectSizeLessThan")
    tags: list[tuple[str, str]] = []
    for name, el in pairs:
        if name == "Tag":
            kv = children_of(el, ("Key", "Value"))
            tags.append((required_text(kv, "Key"), single_text(kv, "Value") or ""))
    if len(tags) > 1 and form is not FilterForm.AND:
        raise malformed()
    Tagging(tuple(tags)).check(max(MAX_OBJECT_TAGS, len(tags)))  # keys, values, duplicates
    size_gt = None if gt is None else parse_int(gt)
    size_lt = None if lt is None else parse_int(lt)
    if size_lt is not None and size_lt <= 0:
        raise _invalid("'ObjectSizeLessThan' must be a positive number")
    if size_gt is not None and size_lt is not None and size_gt >= size_lt:
        raise _invalid("'ObjectSizeGreaterThan' must be less than 'ObjectSizeLessThan'")
    return Filter(form, prefix or "", tuple(tags), size_gt, size_lt)


def _expiration(el: ET.Element | None) -> tuple[int | None, int | None, bool | None]:
    if el is None:
        return None, None, None
    pairs = children_of(el, ("Days", "Date", "ExpiredObjectDeleteMarker"))
    days_text = single_text(pairs, "Days")
    date_text = single_text(pairs, "Date")
    eodm_text = single_text(pairs, "ExpiredObjectDeleteMarker")
    if days_text is not None and date_text is not None:
        raise malformed()
    if days_text is None and date_text is None and eodm_text is None:
        raise malformed()
    if eodm_text is not None and (days_text is not None or date_text is not None):
        raise _invalid(
            "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a "
            "Lifecycle Expiration Policy"
        )
    days = None
    if days_text is not None:
        days = _positive(days_text, "'Days' for Expiration action must be a positive integer")
    date_ns = None if date_text is None else _midnight(date_text)
    eodm = None
    if eodm_text is not None:
        t = eodm_text.strip().lower()
        if t not in ("true", "false"):
            raise malformed()
        eodm = t == "true"
    return days, date_ns, eodm


def _midnight(text: str) -> int:
    t = text.strip()
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid("Invalid date: 'Date' must be in ISO 8601 format") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        raise _invalid("'Date' must be at midnight GMT")
    return int(when.timestamp()) // 86_400 * NS_PER_DAY


def _noncurrent(el: ET.Element | None) -> tuple[int | None, int | None]:
    if el is None:
        return None, None
    pairs = children_of(el, ("NoncurrentDays", "NewerNoncurrentVersions"))
    days = _positive(
        required_text(pairs, "NoncurrentDays"),
        "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer",
    )
    newer_text = single_text(pairs, "NewerNoncurrentVersions")
    newer = None
    if newer_text is not None:
        newer = parse_int(newer_text, low=-(2**63))
        if not 1 <= newer <= MAX_NEWER_NONCURRENT:
            raise _invalid(
                f"'NewerNoncurrentVersions' must be between 1 and {MAX_NEWER_NONCURRENT}"
            )
    return days, newer


# --- writing -------------------------------------------------------------------------


def render_lifecycle(config: LifecycleConfig) -> bytes:
    """GetBucketLifecycleConfiguration: each rule in the shape it was written."""
    b = document("LifecycleConfiguration")
    for r in config.rules:
        el = b.child("Rule")
        el.text("ID", r.id)
        f = r.filter
        if f.form is FilterForm.LEGACY_PREFIX:
            el.text("Prefix", f.prefix)
        else:
            _render_filter(el.child("Filter"), f)
        el.text("Status", "Enabled" if r.enabled else "Disabled")
        if (
            r.expiration_days is not None
            or r.expiration_date_ns is not None
            or (r.expired_object_delete_marker is not None)
        ):
            exp = el.child("Expiration")
            exp.text("Days", r.expiration_days)
            if r.expiration_date_ns is not None:
                exp.text("Date", format_timestamp(_when(r.expiration_date_ns)))
            exp.text("ExpiredObjectDeleteMarker", r.expired_object_delete_marker)
        if r.noncurrent_days is not None:
            nc = el.child("NoncurrentVersionExpiration")
            nc.text("NoncurrentDays", r.noncurrent_days)
            nc.text("NewerNoncurrentVersions", r.newer_noncurrent)
        if r.abort_days is not None:
            el.child("AbortIncompleteMultipartUpload").text("DaysAfterInitiation", r.abort_days)
    return serialize(b)


def _render_filter(b: Builder, f: Filter) -> None:
    if f.form is FilterForm.EMPTY:
        return
    target = b.child("And") if f.form is FilterForm.AND else b
    if f.form in (FilterForm.PREFIX, FilterForm.AND) and (f.prefix or f.form is FilterForm.PREFIX):
        target.text("Prefix", f.prefix)
    for k, v in f.tags:
        t = target.child("Tag")
        t.text("Key", k)
        t.text("Value", v)
    target.text("ObjectSizeGreaterThan", f.size_gt)
    target.text("ObjectSizeLessThan", f.size_lt)


def _when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, UTC)


def expiration_header(when_ns: int, rule_id: str) -> str:
    """``x-amz-expiration``: ``expiry-date="Fri, 23 Dec 2012 00:00:00 GMT", rule-id="..."``.

    >>> expiration_header(1356220800 * 10**9, "photos")
    'expiry-date="Sun, 23 Dec 2012 00:00:00 GMT", rule-id="photos"'
    """
    date = _when(when_ns).strftime("%a, %d %b %Y %H:%M:%S GMT")
    quoted = rule_id.replace("\\", "\\\\").replace('"', '\\"')
    return f'expiry-date="{date}", rule-id="{quoted}"'
