"""Object lock: the one rule that says whether a version may be removed or its lock changed.

Layer: core (pure: no I/O, no clock; ``now_ns`` is always an argument). Rules:

* Every path that can remove a version -- S3 DeleteObject and DeleteObjects by version,
  lifecycle expiry, GW-KV, admin tools, ``kvbox fsck --repair`` -- asks ``removal_refusal``
  (or ``check_removal``) before it removes anything, and every change of a version's
  retention or legal hold asks ``check_change``. Nothing else decides it, so no path can
  drift from the others (users report another server that accepts object lock and then
  lets deletes through; kvbox must not).
* A version is protected while it has a legal hold, or a retention whose date is still in
  the future. A COMPLIANCE retention protects it from everyone until that date and can
  only be extended; a GOVERNANCE retention can be overridden (removed, shortened, the
  version deleted) only with ``bypass_governance``, which the front door grants when the
  request asks for it (``x-amz-bypass-governance-retention: true``) *and* the principal
  holds ``s3:BypassGovernanceRetention``. A legal hold is never bypassed: it is lifted
  with PutObjectLegalHold, which needs its own permission.
* Delete markers are never protected (S3 keeps no lock on them).
* Where the settings live: a bucket's configuration is ``Bucket.attrs[CONFIG_ATTR]`` (JSON:
  whether lock is on, and the default retention); a version's lock is three entries of
  its attrs (``MODE_ATTR``, ``UNTIL_ATTR``, ``HOLD_ATTR``). Both survive every other
  attrs change untouched because the metadata rules carry them over.
* Where the rule is applied: inside the metadata transaction that makes the change
  (``kvbox.core.meta.rules``: ``DeleteOp``, ``SetAttrsOp`` with a ``LockChange``, new
  versions' default retention, versioning and configuration changes), so the version
  judged is the version changed, even with several gateways on one database.
* A bucket with object lock always has versioning enabled, so a write never replaces a
  version there (S3's null-version overwrite happens only in unversioned or suspended
  buckets): a new write is a new version, never an overwrite of a protected one.

Time: "Days" and "Years" of a default retention are whole days of 86,400 seconds; a year
is 365 days (S3 documents neither leap days nor calendar arithmetic for it).
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from kvbox.core.model import Bucket, ObjectVersion, Versioning
from kvbox.errors import InvalidArgument, InvalidBucketState, ObjectLocked

#: ``Bucket.attrs`` entry of a bucket with object lock: ``{"enabled": true}`` plus, when a
#: default retention is set, ``"mode"`` and ``"days"`` or ``"years"``.
CONFIG_ATTR: Final = "object-lock"
#: Version attrs: the retention mode, its date (ns since the epoch, decimal) and the legal
#: hold ("ON" or "OFF" once one was set; S3 tells "never set" apart from "OFF").
MODE_ATTR: Final = "lock-mode"
UNTIL_ATTR: Final = "lock-until"
HOLD_ATTR: Final = "lock-hold"
LOCK_ATTRS: Final = (MODE_ATTR, UNTIL_ATTR, HOLD_ATTR)

NS_PER_DAY: Final = 86_400 * 1_000_000_000
DAYS_PER_YEAR: Final = 365
#: The longest default retention S3 accepts: 100 years (36,500 days).
MAX_DEFAULT_DAYS: Final = 36_500
MAX_DEFAULT_YEARS: Final = 100


class Mode(enum.StrEnum):
    """The two retention modes, spelled as S3 spells them."""

    GOVERNANCE = "GOVERNANCE"
    COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class Retention:
    mode: Mode
    until_ns: int

    def active(self, now_ns: int) -> bool:
        return self.until_ns > now_ns


@dataclass(frozen=True, slots=True)
class VersionLock:
    """The lock of one version, as its attrs hold it. ``legal_hold`` None: never set."""

    retention: Retention | None = None
    legal_hold: bool | None = None

    @classmethod
    def of(cls, attrs: Mapping[str, str]) -> VersionLock:
        mode = attrs.get(MODE_ATTR)
        until = attrs.get(UNTIL_ATTR)
        retention = None
        if mode is not None and until is not None:
            retention = Retention(Mode(mode), int(until))
        hold = attrs.get(HOLD_ATTR)
        return cls(retention, None if hold is None else hold == "ON")

    def attrs(self) -> dict[str, str]:
        """The attrs entries that store this lock (none for an unlocked version)."""
        out: dict[str, str] = {}
        if self.retention is not None:
            out[MODE_ATTR] = self.retention.mode.value
            out[UNTIL_ATTR] = str(self.retention.until_ns)
        if self.legal_hold is not None:
            out[HOLD_ATTR] = "ON" if self.legal_hold else "OFF"
        return out

    def protects(self, now_ns: int) -> bool:
        return self.legal_hold is True or (
            self.retention is not None and self.retention.active(now_ns)
        )


@dataclass(frozen=True, slots=True)
class DefaultRetention:
    """A bucket's default retention: exactly one of ``days`` and ``years``."""

    mode: Mode
    days: int | None = None
    years: int | None = None

    def __post_init__(self) -> None:
        if (self.days is None) == (self.years is None):
            raise InvalidArgument("a default retention has either days or years")
        if self.days is not None and not 0 < self.days <= MAX_DEFAULT_DAYS:
            raise InvalidArgument("Default retention period must be a positive integer value")
        if self.years is not None and not 0 < self.years <= MAX_DEFAULT_YEARS:
            raise InvalidArgument("Default retention period must be a positive integer value")

    def until(self, now_ns: int) -> int:
        days = self.days if self.days is not None else (self.years or 0) * DAYS_PER_YEAR
        return now_ns + days * NS_PER_DAY


@dataclass(frozen=True, slots=True)
class LockConfig:
    """A bucket's object lock configuration (object lock on, maybe a default retention)."""

    default: DefaultRetention | None = None

    def to_attr(self) -> str:
        doc: dict[str, object] = {"enabled": True}
        d = self.default
        if d is not None:
            doc["mode"] = d.mode.value
            if d.days is not None:
                doc["days"] = d.days
            else:
                doc["years"] = d.years
        return json.dumps(doc, sort_keys=True)

    def new_version_lock(self, given: VersionLock, now_ns: int) -> VersionLock:
        """The lock a new version gets: what the write asked for, and the default
        retention when the write named no retention of its own."""
        if given.retention is not None or self.default is None:
            return given
        until = self.default.until(now_ns)
        return VersionLock(Retention(self.default.mode, until), given.legal_hold)


@functools.lru_cache(maxsize=1024)
def _parse_config(text: str) -> LockConfig:
    doc = json.loads(text)
    mode = doc.get("mode")
    if mode is None:
        return LockConfig()
    return LockConfig(DefaultRetention(Mode(mode), doc.get("days"), doc.get("years")))


def config_of(bucket: Bucket | None) -> LockConfig | None:
    """The bucket's object lock configuration, or None when object lock is off.

    Cached by the stored text: a write into a bucket with object lock asks on every PUT.
    """
    if bucket is None:
        return None
    text = bucket.attrs.get(CONFIG_ATTR)
    return None if text is None else _parse_config(text)


def has_lock_attrs(attrs: Mapping[str, str]) -> bool:
    return MODE_ATTR in attrs or UNTIL_ATTR in attrs or HOLD_ATTR in attrs


def without_lock(attrs: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if k not in LOCK_ATTRS}


class Keep(enum.Enum):
    """``KEEP``: leave a version's retention as it is (None already means "remove it")."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


# --- the rule ------------------------------------------------------------------------


def removal_refusal(v: ObjectVersion, now_ns: int, *, bypass_governance: bool) -> str | None:
    """Why ``v`` may not be removed now (a sentence for logs and errors), or None.

    >>> from kvbox.core.model import ObjectVersion
    >>> locked = VersionLock(Retention(Mode.GOVERNANCE, 2_000)).attrs()
    >>> v = ObjectVersion("b", "k", "v1", attrs=locked)
    >>> removal_refusal(v, 1_000, bypass_governance=False)
    'the version is under a GOVERNANCE retention'
    >>> removal_refusal(v, 1_000, bypass_governance=True) is None
    True
    >>> removal_refusal(v, 3_000, bypass_governance=False) is None  # retention passed
    True
    """
    if v.is_delete_marker or not v.attrs or not has_lock_attrs(v.attrs):
        return None
    lock = VersionLock.of(v.attrs)
    if lock.legal_hold is True:
        return "the version is under a legal hold"
    r = lock.retention
    if r is None or not r.active(now_ns):
        return None
    if r.mode is Mode.COMPLIANCE:
        return "the version is under a COMPLIANCE retention"
    if bypass_governance:
        return None
    return "the version is under a GOVERNANCE retention"


def check_removal(v: ObjectVersion, now_ns: int, *, bypass_governance: bool) -> None:
    """Raise ``ObjectLocked`` unless ``v`` may be removed now."""
    why = removal_refusal(v, now_ns, bypass_governance=bypass_governance)
    if why is not None:
        raise ObjectLocked(f"{v.bucket}/{v.key} version {v.version_id}: {why}")


def check_future(until_ns: int, now_ns: int) -> None:
    """A retention being set must end in the future (S3's "retain until date must be in
    the future")."""
    if until_ns <= now_ns:
        raise InvalidArgument("The retain until date must be in the future!")


def check_change(
    current: VersionLock,
    retention: Retention | None,
    now_ns: int,
    *,
    bypass_governance: bool,
) -> None:
    """May a version's retention go from ``current.retention`` to ``retention`` (None:
    removed)? Raises ``ObjectLocked`` when not, ``InvalidArgument`` for a date in the past.

    An expired retention is no retention. COMPLIANCE: only the same mode with the same or
    a later date. GOVERNANCE: the same mode with the same or a later date, or anything at
    all with ``bypass_governance``. The legal hold does not matter here: it is set and
    lifted on its own.
    """
    if retention is not None:
        check_future(retention.until_ns, now_ns)
    old = current.retention
    if old is None or not old.active(now_ns):
        return
    extends = (
        retention is not None and retention.mode is old.mode and retention.until_ns >= old.until_ns
    )
    if extends:
        return
    if old.mode is Mode.COMPLIANCE:
        raise ObjectLocked("a COMPLIANCE retention can only be extended")
    if not bypass_governance:
        raise ObjectLocked(
            "a GOVERNANCE retention can only be extended without bypassing governance mode"
        )


@dataclass(frozen=True, slots=True)
class LockChange:
    """A change of one version's retention (``KEEP``: leave it; None: remove it) and/or
    legal hold (None: leave it), judged at ``now_ns`` (``SetAttrsOp.lock_change``)."""

    retention: Retention | Keep | None = KEEP
    legal_hold: bool | None = None
    bypass_governance: bool = False
    now_ns: int = 0

    def applied(self, attrs: Mapping[str, str]) -> dict[str, str]:
        """The version's attrs ``attrs`` with this change made; ``ObjectLocked`` (or
        ``InvalidArgument``) when ``check_change`` refuses it."""
        current = VersionLock.of(attrs)
        retention = current.retention
        if not isinstance(self.retention, Keep):
            check_change(
                current, self.retention, self.now_ns, bypass_governance=self.bypass_governance
            )
            retention = self.retention
        hold = current.legal_hold if self.legal_hold is None else self.legal_hold
        out = without_lock(attrs)
        out.update(VersionLock(retention, hold).attrs())
        return out


def new_version_attrs(bucket: Bucket, attrs: Mapping[str, str], now_ns: int) -> Mapping[str, str]:
    """A new version's attrs in ``bucket``: lock entries are refused without object lock,
    and the default retention is added where the write named no retention."""
    config = config_of(bucket)
    if config is None:
        if attrs and has_lock_attrs(attrs):
            raise InvalidArgument("object lock settings in a bucket without object lock")
        return attrs
    given = VersionLock.of(attrs)
    wanted = config.new_version_lock(given, now_ns)
    if wanted == given:
        return attrs
    return {**attrs, **wanted.attrs()}


def rewritten_attrs(
    bucket: Bucket, stored: Mapping[str, str], attrs: Mapping[str, str]
) -> Mapping[str, str]:
    """A stored version's attrs replaced by ``attrs`` (tags, ACL): its lock entries are
    carried over whatever ``attrs`` holds (only a ``LockChange`` changes them), so such a
    rewrite can neither drop nor forge a retention."""
    if config_of(bucket) is None:
        if attrs and has_lock_attrs(attrs):
            raise InvalidArgument("object lock settings in a bucket without object lock")
        return attrs
    kept = without_lock(attrs)
    kept.update(VersionLock.of(stored).attrs())
    return kept


def check_versioning(bucket: Bucket, state: Versioning) -> None:
    """S3 never lets a bucket with object lock leave versioning ENABLED."""
    if state is not Versioning.ENABLED and config_of(bucket) is not None:
        raise InvalidBucketState(
            "An Object Lock configuration is present on this bucket, so the versioning "
            "state cannot be changed."
        )


def check_config_change(bucket: Bucket, changes: Mapping[str, str | None]) -> None:
    """Object lock is turned on only in a bucket with versioning ENABLED (S3: else
    ``InvalidBucketState``), and never off again."""
    if CONFIG_ATTR not in changes:
        return
    if changes[CONFIG_ATTR] is None:
        if CONFIG_ATTR in bucket.attrs:
            raise InvalidBucketState("object lock cannot be turned off once on")
        return
    if bucket.versioning is not Versioning.ENABLED:
        raise InvalidBucketState(
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
        )
