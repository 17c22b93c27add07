"""Lifecycle rules as pure functions: day counting, filters, what is due on a key."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kvbox.core.lifecycle import rules as lc
from kvbox.core.lifecycle.rules import (
    ActionKind,
    Filter,
    FilterForm,
    LifecycleConfig,
    Rule,
    due_at,
    expiration,
    key_actions,
    scan_prefixes,
    upload_due,
)
from kvbox.core.model import ObjectVersion

DAY = lc.NS_PER_DAY


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 10**9  # type: ignore[arg-type,misc]


def version(
    mtime: int,
    *,
    key: str = "logs/a",
    vid: str = "v",
    marker: bool = False,
    size: int = 10,
    tags: dict[str, str] | None = None,
) -> ObjectVersion:
    attrs = {lc.TAG_PREFIX + k: v for k, v in (tags or {}).items()}
    return ObjectVersion(
        "b", key, vid, size=size, mtime_ns=mtime, is_delete_marker=marker, attrs=attrs
    )


def test_days_are_rounded_up_to_midnight_utc_as_aws_counts_them() -> None:
    # The S3 user guide's example: written 15 January 10:30 UTC, 3 days: gone 19 January.
    assert due_at(ns(2014, 1, 15, 10, 30), 3) == ns(2014, 1, 19)
    assert due_at(ns(2014, 1, 15), 3) == ns(2014, 1, 18)  # already midnight: no rounding
    assert due_at(ns(2014, 1, 15, 23, 59, 59), 1) == ns(2014, 1, 17)


@given(st.integers(min_value=0, max_value=2**60), st.integers(min_value=1, max_value=36500))
def test_due_is_a_midnight_at_least_days_later(since: int, days: int) -> None:
    due = due_at(since, days)
    assert due % DAY == 0
    assert since + days * DAY <= due < since + (days + 1) * DAY


def test_filters() -> None:
    f = Filter(FilterForm.AND, "logs/", (("env", "dev"),), size_gt=5, size_lt=100)
    assert f.matches(version(0, tags={"env": "dev"}))
    assert not f.matches(version(0, tags={"env": "prod"}))
    assert not f.matches(version(0, key="img/a", tags={"env": "dev"}))
    assert not f.matches(version(0, size=5, tags={"env": "dev"}))  # strictly greater
    assert not f.matches(version(0, size=100, tags={"env": "dev"}))  # strictly less
    assert not f.matches(version(0, marker=True))  # markers have no tags
    assert Filter(FilterForm.PREFIX, "logs/").matches(version(0, marker=True))
    assert Filter().matches(version(0, key="anything"))


T0 = ns(2024, 3, 1, 12)


def test_current_version_expiry_by_days_and_date() -> None:
    cfg = LifecycleConfig((Rule("d", expiration_days=2),))
    v = version(T0)
    assert key_actions(cfg, [v], ns(2024, 3, 3, 23, 59)) == []
    (a,) = key_actions(cfg, [v], ns(2024, 3, 4))
    assert (a.kind, a.version, a.rule_id) == (ActionKind.EXPIRE_CURRENT, v, "d")
    dated = LifecycleConfig((Rule("x", expiration_date_ns=ns(2024, 6, 1)),))
    assert key_actions(dated, [v], ns(2024, 5, 31)) == []
    assert key_actions(dated, [v], ns(2024, 6, 1))[0].kind is ActionKind.EXPIRE_CURRENT


def test_disabled_and_unmatched_rules_do_nothing() -> None:
    cfg = LifecycleConfig(
        (
            Rule("off", enabled=False, expiration_days=1),
            Rule("other", filter=Filter(FilterForm.PREFIX, "img/"), expiration_days=1),
        )
    )
    assert key_actions(cfg, [version(T0)], T0 + 400 * DAY) == []


def test_noncurrent_versions_count_from_when_they_were_replaced() -> None:
    cfg = LifecycleConfig((Rule("n", noncurrent_days=1),))
    old = version(T0, vid="old")
    new = version(T0 + 10 * DAY, vid="new")  # replaced old ten days later
    assert key_actions(cfg, [new, old], T0 + 10 * DAY) == []
    (a,) = key_actions(cfg, [new, old], ceil(T0 + 11 * DAY))
    assert (a.kind, a.version.version_id) == (ActionKind.EXPIRE_NONCURRENT, "old")


def ceil(t: int) -> int:
    return lc.ceil_midnight(t)


def test_newer_noncurrent_versions_keeps_that_many() -> None:
    cfg = LifecycleConfig((Rule("n", noncurrent_days=1, newer_noncurrent=2),))
    versions = [version(T0 + i * DAY, vid=f"v{i}") for i in range(5, -1, -1)]  # newest first
    due = key_actions(cfg, versions, T0 + 100 * DAY)
    # v5 is current; v4 and v3 are the two newest noncurrent ones kept.
    assert [a.version.version_id for a in due] == ["v2", "v1", "v0"]


def test_expired_object_delete_markers() -> None:
    marker = version(T0, marker=True, vid="m")
    flag = LifecycleConfig((Rule("eodm", expired_object_delete_marker=True),))
    (a,) = key_actions(flag, [marker], T0)
    assert a.kind is ActionKind.REMOVE_DELETE_MARKER
    # Not while noncurrent versions remain behind it.
    assert [x.kind for x in key_actions(flag, [marker, version(T0 - DAY)], T0)] == []
    days = LifecycleConfig((Rule("d", expiration_days=3),))
    assert key_actions(days, [marker], T0 + DAY) == []
    assert key_actions(days, [marker], T0 + 4 * DAY)[0].kind is ActionKind.REMOVE_DELETE_MARKER
    tagged = LifecycleConfig(
        (Rule("t", filter=Filter(FilterForm.TAG, tags=(("a", "b"),)), expiration_days=1),)
    )
    assert key_actions(tagged, [marker], T0 + 10 * DAY) == []


def test_x_amz_expiration_is_the_earliest_rule() -> None:
    cfg = LifecycleConfig(
        (
            Rule("late", expiration_days=30),
            Rule("early", filter=Filter(FilterForm.PREFIX, "logs/"), expiration_days=2),
            Rule("other", filter=Filter(FilterForm.PREFIX, "img/"), expiration_days=1),
            Rule("noncurrent", noncurrent_days=1),
        )
    )
    assert expiration(cfg, version(T0)) == (due_at(T0, 2), "early")
    assert expiration(cfg, version(T0, key="data/x")) == (due_at(T0, 30), "late")
    assert expiration(LifecycleConfig((Rule("n", noncurrent_days=1),)), version(T0)) is None


def test_uploads_are_aborted_by_prefix_rules_only() -> None:
    cfg = LifecycleConfig(
        (
            Rule("tagged", filter=Filter(FilterForm.TAG, tags=(("a", "b"),)), abort_days=1),
            Rule("tmp", filter=Filter(FilterForm.PREFIX, "tmp/"), abort_days=2),
        )
    )
    assert upload_due(cfg, "tmp/x", T0, due_at(T0, 2) - 1) is None
    assert upload_due(cfg, "tmp/x", T0, due_at(T0, 2)) == "tmp"
    assert upload_due(cfg, "keep/x", T0, T0 + 100 * DAY) is None


def test_scan_prefixes_cover_every_rule_once() -> None:
    def rule(p: str) -> Rule:
        return Rule(p, filter=Filter(FilterForm.PREFIX, p), expiration_days=1)

    assert scan_prefixes(LifecycleConfig((rule("a/b"), rule("a/"), rule("c")))) == ["a/", "c"]
    assert scan_prefixes(LifecycleConfig((rule("a/"), rule("")))) == [""]


_text = st.text(max_size=20)
_opt_int = st.one_of(st.none(), st.integers(min_value=1, max_value=10**6))


@given(
    rules=st.lists(
        st.builds(
            Rule,
            id=_text,
            enabled=st.booleans(),
            filter=st.builds(
                Filter,
                form=st.sampled_from(FilterForm),
                prefix=_text,
                tags=st.lists(st.tuples(_text, _text), max_size=3).map(tuple),
                size_gt=_opt_int,
                size_lt=_opt_int,
            ),
            expiration_days=_opt_int,
            expiration_date_ns=st.one_of(st.none(), st.integers(0, 2**60).map(ceil)),
            expired_object_delete_marker=st.one_of(st.none(), st.booleans()),
            noncurrent_days=_opt_int,
            newer_noncurrent=_opt_int,
            abort_days=_opt_int,
        ),
        max_size=4,
    )
)
def test_configuration_round_trips_through_bucket_attrs(rules: list[Rule]) -> None:
    cfg = LifecycleConfig(tuple(rules))
    assert lc._parse(cfg.to_attr()) == cfg
