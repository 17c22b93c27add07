"""Object lock as S3 spells it: the XML bodies, the request and response headers.

Layer: s3door (pure functions, no I/O, no clock: ``now_ns`` is an argument; in the door
rather than ``kvbox.s3`` because it speaks the core's lock model). The rule itself --
what a lock forbids -- is ``kvbox.core.lock``; this module only translates between S3's
forms and it, with AWS's errors:

* Put/GetObjectLockConfiguration: ``ObjectLockEnabled`` must be ``Enabled``; a
  ``DefaultRetention`` has a ``Mode`` and exactly one of ``Days`` and ``Years``. A bad
  mode, status or shape is MalformedXML; a period that is not a positive number (or
  is over 100 years) is InvalidArgument.
* Put/GetObjectRetention: ``Mode`` and ``RetainUntilDate`` together; an empty
  ``<Retention/>`` removes a retention (a governance one, with a bypass). Modes are
  upper case exactly, as S3 checks them.
* Put/GetObjectLegalHold: ``Status`` ON or OFF.
* PutObject, CopyObject and CreateMultipartUpload take ``x-amz-object-lock-mode`` and
  ``x-amz-object-lock-retain-until-date`` (both or neither) and
  ``x-amz-object-lock-legal-hold``; GetObject and HeadObject answer them.
* Dates are ISO 8601 with a zone; they are kept to the millisecond and rendered as
  ``2030-01-01T00:00:00.000Z``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from kvbox.core.lock import (
    MAX_DEFAULT_DAYS,
    MAX_DEFAULT_YEARS,
    DefaultRetention,
    LockConfig,
    Mode,
    Retention,
    VersionLock,
    check_future,
)
from kvbox.errors import InvalidArgument
from kvbox.s3.errors import S3Error
from kvbox.s3.xml import (
    MAX_CONFIG_BODY,
    format_timestamp,
)
from kvbox.s3.xml.base import (
    children_of,
    document,
    malformed,
    parse_body,
    serialize,
    single,
    single_text,
)

MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"
#: CreateBucket's switch.
ENABLED_HEADER = "x-amz-bucket-object-lock-enabled"

_INT = re.compile(r"[+-]?[0-9]{1,19}")


def _mode(text: str) -> Mode:
    try:
        return Mode(text.strip())
    except ValueError:
        raise malformed() from None


def _period(text: str, high: int) -> int:
    t = text.strip()
    if _INT.fullmatch(t) is None:
        raise malformed()
    n = int(t)
    if n <= 0:
        raise S3Error(
            "InvalidArgument", "Default retention period must be a positive integer value"
        )
    if n > high:
        raise S3Error("InvalidArgument", "Default retention period is too large.")
    return n


def ns_of(when: datetime) -> int:
    """An aware datetime as ns since the epoch, to the microsecond it carries."""
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def render_date(ns: int) -> str:
    """``2030-01-01T00:00:00.000Z``: S3's form of a retain-until date."""
    return format_timestamp(datetime.fromtimestamp(ns // 1000 / 1e6, UTC))


def parse_date(text: str) -> int:
    """An ISO 8601 date with a zone (``Z`` or an offset), as ns; else ``ValueError``."""
    t = text.strip()
    if not t[:4].isdigit():
        raise ValueError(t)
    when = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(t)
    return ns_of(when.astimezone(UTC))


# --- bucket configuration ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectLockConfiguration:
    """Put/GetObjectLockConfiguration (object lock is on once a configuration exists)."""

    default: DefaultRetention | None = None

    @classmethod
    def from_xml(cls, body: bytes) -> ObjectLockConfiguration:
        root = parse_body(body, "ObjectLockConfiguration", MAX_CONFIG_BODY)
        pairs = children_of(root, ("ObjectLockEnabled", "Rule"))
        if (single_text(pairs, "ObjectLockEnabled") or "").strip() != "Enabled":
            raise malformed()
        rule = single(pairs, "Rule")
        if rule is None:
            return cls()
        dr = single(children_of(rule, ("DefaultRetention",)), "DefaultRetention")
        if dr is None:
            raise malformed()
        fields = children_of(dr, ("Mode", "Days", "Years"))
        mode = single_text(fields, "Mode")
        days = single_text(fields, "Days")
        years = single_text(fields, "Years")
        if mode is None or (days is None) == (years is None):
            raise malformed()  # a mode and exactly one period (AWS answers MalformedXML)
        m = _mode(mode)
        if days is not None:
            return cls(DefaultRetention(m, days=_period(days, MAX_DEFAULT_DAYS)))
        assert years is not None
        return cls(DefaultRetention(m, years=_period(years, MAX_DEFAULT_YEARS)))

    @classmethod
    def of(cls, config: LockConfig) -> ObjectLockConfiguration:
        return cls(config.default)

    @property
    def config(self) -> LockConfig:
        return LockConfig(self.default)

    def to_xml(self) -> bytes:
        b = document("ObjectLockConfiguration")
        b.text("ObjectLockEnabled", "Enabled")
        d = self.default
        if d is not None:
            dr = b.child("Rule").child("DefaultRetention")
            dr.text("Mode", d.mode.value)
            dr.text("Days", d.days)
            dr.text("Years", d.years)
        return serialize(b)


# --- one version ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionBody:
    """Put/GetObjectRetention; ``retention`` None is an empty ``<Retention/>``."""

    retention: Retention | None

    @classmethod
    def from_xml(cls, body: bytes) -> RetentionBody:
        root = parse_body(body, "Retention", MAX_CONFIG_BODY)
        pairs = children_of(root, ("Mode", "RetainUntilDate"))
        mode = single_text(pairs, "Mode")
        until = single_text(pairs, "RetainUntilDate")
        if mode is None and until is None:
            return cls(None)
        if mode is None or until is None:
            raise malformed()
        try:
            until_ns = parse_date(until)
        except ValueError:
            raise malformed() from None
        return cls(Retention(_mode(mode), until_ns))

    def to_xml(self) -> bytes:
        b = document("Retention")
        r = self.retention
        if r is not None:
            b.text("Mode", r.mode.value)
            b.text("RetainUntilDate", render_date(r.until_ns))
        return serialize(b)


@dataclass(frozen=True, slots=True)
class LegalHoldBody:
    """Put/GetObjectLegalHold."""

    on: bool

    @classmethod
    def from_xml(cls, body: bytes) -> LegalHoldBody:
        root = parse_body(body, "LegalHold", MAX_CONFIG_BODY)
        status = single_text(children_of(root, ("Status",)), "Status")
        if status is None or status.strip() not in ("ON", "OFF"):
            raise malformed()
        return cls(status.strip() == "ON")

    def to_xml(self) -> bytes:
        b = document("LegalHold")
        b.text("Status", "ON" if self.on else "OFF")
        return serialize(b)


# --- headers -------------------------------------------------------------------------


def lock_from_headers(headers: Mapping[str, str], now_ns: int) -> VersionLock | None:
    """The lock a PutObject / CopyObject / CreateMultipartUpload asks for in its headers,
    or None when it names none; AWS's InvalidArgument for a bad or half-given one."""
    mode = headers.get(MODE_HEADER)
    until = headers.get(UNTIL_HEADER)
    hold = headers.get(HOLD_HEADER)
    if mode is None and until is None and hold is None:
        return None
    retention = None
    if mode is not None or until is not None:
        if mode is None or until is None:
            raise S3Error(
                "InvalidArgument",
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be "
                "supplied",
            )
        try:
            m = Mode(mode.strip())
        except ValueError:
            raise S3Error(
                "InvalidArgument",
                "Unknown wormMode directive.",
                extra={"ArgumentName": MODE_HEADER, "ArgumentValue": mode},
            ) from None
        try:
            until_ns = parse_date(until)
        except ValueError:
            raise S3Error(
                "InvalidArgument",
                "The retain until date must be provided in ISO 8601 format",
                extra={"ArgumentName": UNTIL_HEADER, "ArgumentValue": until},
            ) from None
        try:
            check_future(until_ns, now_ns)
        except InvalidArgument as exc:
            raise S3Error("InvalidArgument", str(exc)) from None
        retention = Retention(m, until_ns)
    on: bool | None = None
    if hold is not None:
        if hold.strip() not in ("ON", "OFF"):
            raise S3Error(
                "InvalidArgument",
                "Legal Hold must be either of 'ON' or 'OFF'",
                extra={"ArgumentName": HOLD_HEADER, "ArgumentValue": hold},
            )
        on = hold.strip() == "ON"
    return VersionLock(retention, on)


def lock_headers(lk: VersionLock) -> dict[str, str]:
    """The ``x-amz-object-lock-*`` response headers of a version's lock (none if unlocked;
    the legal hold only once one was ever set, ON or OFF, as AWS does)."""
    out: dict[str, str] = {}
    if lk.retention is not None:
        out[MODE_HEADER] = lk.retention.mode.value
        out[UNTIL_HEADER] = render_date(lk.retention.until_ns)
    if lk.legal_hold is not None:
        out[HOLD_HEADER] = "ON" if lk.legal_hold else "OFF"
    return out


def wants_bypass(headers: Mapping[str, str]) -> bool:
    """``x-amz-bypass-governance-retention: true`` (any case), as the SDKs send it."""
    return (headers.get(BYPASS_HEADER) or "").strip().lower() == "true"


def wants_lock(headers: Mapping[str, str]) -> bool:
    """CreateBucket's ``x-amz-bucket-object-lock-enabled: true``."""
    return (headers.get(ENABLED_HEADER) or "").strip().lower() == "true"
