"""Lifecycle rules: which versions and uploads a bucket's configuration expires, and when.

Layer: core (pure: no I/O, no clock; ``now_ns`` is an argument). Rules:

* The configuration is kept in ``Bucket.attrs[ATTR]`` as JSON (``LifecycleConfig``), so
  the background worker (``kvbox.core.lifecycle.worker``) reads it without knowing S3;
  the S3 door parses and renders the XML (``kvbox.s3door.lifecycle``) and checks it with
  AWS's errors before it is stored, so what is stored is always valid.
* Days are counted as AWS counts them (S3 user guide, "Lifecycle rules: based on an
  object's age"): the number of days is added to the object's creation time (for
  noncurrent versions: the time it became noncurrent, which is when the next newer
  version was written) and the result is rounded *up* to the next midnight UTC. So an
  object written on 15 January at 10:30 UTC with ``Days`` 3 expires on 19 January at
  00:00 UTC. A ``Date`` is a midnight UTC already.
* What the rules decide here is only "due or not"; the worker applies it through the
  Store, where object lock has the last word (``kvbox.core.lock``): a version that lock
  protects is skipped and stays, and it is looked at again on the next pass.
* Delete markers and multipart uploads have no tags and no size: a rule whose filter
  names tags or sizes applies to object versions only, never to them.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from kvbox.core.model import Bucket, ObjectVersion

#: ``Bucket.attrs`` entry holding a bucket's lifecycle configuration (JSON).
ATTR: Final = "lifecycle"
#: How object tags are kept in a version's attrs: one ``tag:<key>`` entry per tag. The S3
#: door writes them (``kvbox.s3door.handlers.common.TAG``); tag filters read them here.
TAG_PREFIX: Final = "tag:"
NS_PER_DAY: Final = 86_400 * 1_000_000_000


def ceil_midnight(ns: int) -> int:
    """The first midnight UTC at or after ``ns``.

    >>> ceil_midnight(0), ceil_midnight(1), ceil_midnight(NS_PER_DAY)
    (0, 86400000000000, 86400000000000)
    """
    return -(-ns // NS_PER_DAY) * NS_PER_DAY


def due_at(since_ns: int, days: int) -> int:
    """When something that started at ``since_ns`` is ``days`` old, AWS-style: the sum
    rounded up to the next midnight UTC (see the module docstring)."""
    return ceil_midnight(since_ns + days * NS_PER_DAY)


class FilterForm(enum.StrEnum):
    """How the filter was written, so GetBucketLifecycleConfiguration returns it in the
    same shape: the old rule-level ``<Prefix>``, an empty ``<Filter/>``, one condition,
    or ``<And>``."""

    LEGACY_PREFIX = "legacy-prefix"
    EMPTY = "empty"
    PREFIX = "prefix"
    TAG = "tag"
    SIZE_GT = "size-gt"
    SIZE_LT = "size-lt"
    AND = "and"


@dataclass(frozen=True, slots=True)
class Filter:
    """Conditions an object version must all meet (an AND of what is set)."""

    form: FilterForm = FilterForm.EMPTY
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None
    size_lt: int | None = None

    @property
    def objects_only(self) -> bool:
        """Names tags or sizes: applies to object versions, never to delete markers or
        multipart uploads, which have neither."""
        return bool(self.tags) or self.size_gt is not None or self.size_lt is not None

    def matches_key(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def matches(self, v: ObjectVersion) -> bool:
        if not v.key.startswith(self.prefix):
            return False
        if v.is_delete_marker:
            return not self.objects_only
        if self.size_gt is not None and not v.size > self.size_gt:
            return False
        if self.size_lt is not None and not v.size < self.size_lt:
            return False
        attrs = v.attrs
        return all(attrs.get(TAG_PREFIX + k) == value for k, value in self.tags)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; the actions that are None (or False) are not part of it."""

    id: str
    enabled: bool = True
    filter: Filter = field(default_factory=Filter)
    expiration_days: int | None = None
    #: A midnight UTC, ns since the epoch.
    expiration_date_ns: int | None = None
    expired_object_delete_marker: bool | None = None
    noncurrent_days: int | None = None
    newer_noncurrent: int | None = None
    abort_days: int | None = None

    def current_expiry(self, v: ObjectVersion) -> int | None:
        """When this rule expires ``v`` as the current version (None: it does not)."""
        if not self.enabled or v.is_delete_marker or not self.filter.matches(v):
            return None
        if self.expiration_days is not None:
            return due_at(v.mtime_ns, self.expiration_days)
        return self.expiration_date_ns


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    rules: tuple[Rule, ...] = ()

    def to_attr(self) -> str:
        return json.dumps([_rule_doc(r) for r in self.rules], sort_keys=True)

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)


def _rule_doc(r: Rule) -> dict[str, object]:
    f = r.filter
    doc: dict[str, object] = {
        "id": r.id,
        "enabled": r.enabled,
        "form": f.form.value,
        "prefix": f.prefix,
        "tags": [list(t) for t in f.tags],
    }
    optional = {
        "size_gt": f.size_gt,
        "size_lt": f.size_lt,
        "expiration_days": r.expiration_days,
        "expiration_date_ns": r.expiration_date_ns,
        "expired_object_delete_marker": r.expired_object_delete_marker,
        "noncurrent_days": r.noncurrent_days,
        "newer_noncurrent": r.newer_noncurrent,
        "abort_days": r.abort_days,
    }
    doc.update((k, v) for k, v in optional.items() if v is not None)
    return doc


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> LifecycleConfig:
    rules = []
    for d in json.loads(text):
        f = Filter(
            FilterForm(d["form"]),
            d["prefix"],
            tuple((k, v) for k, v in d["tags"]),
            d.get("size_gt"),
            d.get("size_lt"),
        )
        rules.append(
            Rule(
                d["id"],
                d["enabled"],
                f,
                d.get("expiration_days"),
                d.get("expiration_date_ns"),
                d.get("expired_object_delete_marker"),
                d.get("noncurrent_days"),
                d.get("newer_noncurrent"),
                d.get("abort_days"),
            )
        )
    return LifecycleConfig(tuple(rules))


def config_of(bucket: Bucket | None) -> LifecycleConfig | None:
    """The bucket's lifecycle configuration, or None (cached by the stored text)."""
    if bucket is None:
        return None
    text = bucket.attrs.get(ATTR)
    return None if text is None else _parse(text)


# --- what is due ---------------------------------------------------------------------


class ActionKind(enum.StrEnum):
    #: The current version's time is up: a versionless delete (a delete marker where
    #: versioning is on or suspended; the object itself where it never was).
    EXPIRE_CURRENT = "expire-current"
    #: The key's only version left is a delete marker: remove it.
    REMOVE_DELETE_MARKER = "remove-delete-marker"
    #: A noncurrent version (or delete marker) is old enough: remove it for good.
    EXPIRE_NONCURRENT = "expire-noncurrent"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    version: ObjectVersion
    rule_id: str


def key_actions(
    config: LifecycleConfig, versions: Sequence[ObjectVersion], now_ns: int
) -> list[Action]:
    """What is due on one key at ``now_ns``. ``versions`` are all its versions, newest
    first (markers included); at most one action per version, the first rule that makes
    it due winning."""
    if not versions:
        return []
    rules = config.enabled_rules
    out: list[Action] = []
    current = versions[0]
    if current.is_delete_marker:
        if len(versions) == 1:
            for r in rules:
                if _marker_expired(r, current, now_ns):
                    out.append(Action(ActionKind.REMOVE_DELETE_MARKER, current, r.id))
                    break
    else:
        for r in rules:
            expiry = r.current_expiry(current)
            if expiry is not None and expiry <= now_ns:
                out.append(Action(ActionKind.EXPIRE_CURRENT, current, r.id))
                break
    for i in range(1, len(versions)):
        v = versions[i]
        since = versions[i - 1].mtime_ns  # it became noncurrent when the next was written
        newer = i - 1  # noncurrent versions newer than this one
        for r in rules:
            if r.noncurrent_days is None or not r.filter.matches(v):
                continue
            if r.newer_noncurrent is not None and newer < r.newer_noncurrent:
                continue
            if due_at(since, r.noncurrent_days) <= now_ns:
                out.append(Action(ActionKind.EXPIRE_NONCURRENT, v, r.id))
                break
    return out


def _marker_expired(r: Rule, marker: ObjectVersion, now_ns: int) -> bool:
    """An expired object delete marker (the key's only version) goes with
    ``ExpiredObjectDeleteMarker``, or with ``Expiration``/``Days`` once it is that old
    (AWS: a Days rule cleans up such markers by itself)."""
    if not r.filter.matches(marker):
        return False
    if r.expired_object_delete_marker:
        return True
    return r.expiration_days is not None and due_at(marker.mtime_ns, r.expiration_days) <= now_ns


def expiration(config: LifecycleConfig, current: ObjectVersion) -> tuple[int, str] | None:
    """(when, rule id) the current version ``current`` expires, for ``x-amz-expiration``:
    the earliest of the enabled rules that expire it; None if none does."""
    best: tuple[int, str] | None = None
    for r in config.enabled_rules:
        when = r.current_expiry(current)
        if when is not None and (best is None or when < best[0]):
            best = (when, r.id)
    return best


def upload_due(config: LifecycleConfig, key: str, initiated_ns: int, now_ns: int) -> str | None:
    """The id of a rule that aborts a multipart upload of ``key`` started at
    ``initiated_ns`` by ``now_ns``, or None."""
    for r in config.enabled_rules:
        if r.abort_days is None or r.filter.objects_only or not r.filter.matches_key(key):
            continue
        if due_at(initiated_ns, r.abort_days) <= now_ns:
            return r.id
    return None


def scan_prefixes(config: LifecycleConfig) -> list[str]:
    """The fewest key prefixes whose keys cover every enabled rule: [""] when a rule
    applies to the whole bucket. A pass lists only these ranges."""
    prefixes = sorted({r.filter.prefix for r in config.enabled_rules})
    out: list[str] = []
    for p in prefixes:
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return out


def tags_of(attrs: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    return ((k[len(TAG_PREFIX) :], v) for k, v in attrs.items() if k.startswith(TAG_PREFIX))
