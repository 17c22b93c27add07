"""The history checker judges right: clean histories pass, each crafted anomaly is found.

Layer: tests (tests/faults), pure: no processes, no clock. Times are invented numbers, so
every "before"/"concurrent" relation below is exact. Each rule gets a history that must
pass and the histories that must fail it; unknown outcomes may land or not, both pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from faults.history import (
    ABSENT,
    Anomaly,
    History,
    Kind,
    Op,
    Outcome,
    Version,
    check,
    digest,
    report,
)

V = "kv"  # a bucket with versioning on in these tests
U = "plain"  # one without


class Load:
    """A compact way to write a history: one method call per operation."""

    def __init__(self) -> None:
        self.h = History()

    def op(
        self,
        kind: Kind,
        key: str,
        value: str | None,
        start: float,
        end: float,
        outcome: Outcome = "ok",
        *,
        bucket: str = V,
        version: str | None = None,
        expected: str | None = None,
        count: int | None = None,
        group: str | None = None,
        listed: Sequence[Version] = (),
        client: str = "c1",
        gateway: str = "g1",
    ) -> Op:
        return self.h.record(
            client=client,
            gateway=gateway,
            door="kv",
            kind=kind,
            bucket=bucket,
            key=key,
            start=start,
            end=end,
            outcome=outcome,
            digest=None if value is None else d(value),
            version=version,
            expected=expected,
            count=count,
            group=group,
            listed=listed,
        )

    def check(self, final: dict[tuple[str, str], list[Version]]) -> list[Anomaly]:
        return check(self.h, final, versioned={V})


def d(value: str) -> str:
    return digest(value.encode())


def ver(vid: str | None, value: str | None) -> Version:
    return Version(vid, None if value is None else d(value))


def rules(anomalies: list[Anomaly]) -> set[str]:
    return {a.rule for a in anomalies}


def test_a_clean_mixed_history_passes() -> None:
    """Writes on two gateways, reads across them, a CAS chain, a MULTISET, listings."""
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("get", "a", "a1", 2, 3, version="A1", gateway="g2")
    load.op("put", "a", "a2", 2.5, 4, version="A2", gateway="g2")
    load.op("get", "a", "a1", 3.5, 4.5)  # concurrent with a2's write: the old value is fine
    load.op("get", "a", "a2", 5, 6, gateway="g2")
    load.op("list_versions", "a", None, 6, 7, listed=[ver("A2", "a2"), ver("A1", "a1")])
    load.op("cas", "n", "1#c1", 0, 1, version="N1", expected=ABSENT, count=1)
    load.op("cas", "n", "1#c2", 0, 1.2, "fail", expected=ABSENT, count=1, client="c2")
    load.op("cas", "n", "2#c2", 2, 3, version="N2", expected=d("1#c1"), count=2, client="c2")
    load.op("put", "m1", "g-1", 0, 1, group="G", version="M1")
    load.op("put", "m2", "g-2", 0, 1, group="G", version="M2")
    load.op("put", "p", "p1", 0, 1, bucket=U)
    load.op("put", "p", "p2", 2, 3, bucket=U)
    load.op("get", "p", "p2", 4, 5, bucket=U)
    final = {
        (V, "a"): [ver("A2", "a2"), ver("A1", "a1")],
        (V, "n"): [ver("N2", "2#c2"), ver("N1", "1#c1")],
        (V, "m1"): [ver("M1", "g-1")],
        (V, "m2"): [ver("M2", "g-2")],
        (U, "p"): [ver(None, "p2")],
    }
    assert load.check(final) == []


def test_missing_key_in_the_final_state_is_the_tests_error() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1)
    with pytest.raises(ValueError, match="lacks keys"):
        load.check({})


# -- durability --------------------------------------------------------------------


def test_an_acked_write_missing_from_the_versions_is_lost() -> None:
    load = Load()
    w = load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "a2", 2, 3, version="A2")
    found = load.check({(V, "a"): [ver("A2", "a2")]})
    assert rules(found) == {"lost-write"}
    assert found[0].ops[0] == w


def test_an_acked_write_listed_with_other_bytes_is_lost() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "a2", 0, 1, "unknown")
    found = load.check({(V, "a"): [ver("A1", "a2")]})
    assert "lost-write" in rules(found)


def test_unversioned_final_value_older_than_an_acked_write_is_lost() -> None:
    load = Load()
    load.op("put", "p", "p1", 0, 1, bucket=U)
    load.op("put", "p", "p2", 2, 3, bucket=U)
    assert rules(load.check({(U, "p"): [ver(None, "p1")]})) == {"lost-write"}
    assert rules(load.check({(U, "p"): []})) == {"lost-write"}


def test_unversioned_acked_write_replaced_by_a_concurrent_one_is_not_lost() -> None:
    load = Load()
    load.op("put", "p", "p1", 0, 2, bucket=U)
    load.op("put", "p", "p2", 1, 3, bucket=U)  # concurrent: either may commit last
    assert load.check({(U, "p"): [ver(None, "p1")]}) == []
    assert load.check({(U, "p"): [ver(None, "p2")]}) == []


def test_unversioned_acked_write_then_a_delete_is_not_lost() -> None:
    load = Load()
    load.op("put", "p", "p1", 0, 1, bucket=U)
    load.op("delete", "p", None, 2, 3, bucket=U)
    assert load.check({(U, "p"): []}) == []


# -- stale reads -------------------------------------------------------------------


def test_a_read_after_an_ack_returning_the_older_value_is_stale() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "a2", 2, 3, version="A2", gateway="g1")
    r = load.op("get", "a", "a1", 4, 5, gateway="g2")
    found = load.check({(V, "a"): [ver("A2", "a2"), ver("A1", "a1")]})
    assert rules(found) == {"stale-read"}
    assert found[0].ops[0] == r


def test_a_read_older_in_commit_order_than_an_acked_write_is_stale() -> None:
    """a1 and a2 overlap in time, but a2 committed after a1 (final order) and was acked
    before the read started: the read must see a2."""
    load = Load()
    load.op("put", "a", "a1", 0, 3, version="A1")
    load.op("put", "a", "a2", 1, 2, version="A2")
    load.op("get", "a", "a1", 2.5, 4)
    found = load.check({(V, "a"): [ver("A1", "a1"), ver("A2", "a2")]})
    assert rules(found) == set()  # a1 is newest: reading it is right
    found = load.check({(V, "a"): [ver("A2", "a2"), ver("A1", "a1")]})
    assert rules(found) == {"stale-read"}


def test_not_found_after_an_acked_put_is_stale_unless_a_delete_may_be_between() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("get", "a", None, 2, 3)
    assert rules(load.check({(V, "a"): [ver("A1", "a1")]})) == {"stale-read"}
    load.op("delete", "a", None, 1.5, 4, "unknown")
    assert load.check({(V, "a"): [ver("X", None), ver("A1", "a1")]}) == []


def test_a_read_of_a_value_before_its_write_started_is_flagged() -> None:
    load = Load()
    load.op("get", "a", "a1", 0, 1)
    load.op("put", "a", "a1", 2, 3, version="A1")
    assert rules(load.check({(V, "a"): [ver("A1", "a1")]})) == {"stale-read"}


# -- version order -----------------------------------------------------------------


def test_versions_listed_against_real_time_order_are_flagged() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "a2", 2, 3, version="A2")
    found = load.check({(V, "a"): [ver("A1", "a1"), ver("A2", "a2")]})
    assert "version-order" in rules(found)


def test_concurrent_writes_may_commit_in_either_order() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 2, version="A1")
    load.op("put", "a", "a2", 1, 3, version="A2")
    assert load.check({(V, "a"): [ver("A1", "a1"), ver("A2", "a2")]}) == []
    assert load.check({(V, "a"): [ver("A2", "a2"), ver("A1", "a1")]}) == []


def test_a_version_id_given_twice_is_flagged() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 2, version="SAME")
    load.op("put", "a", "a2", 1, 3, version="SAME", gateway="g2")
    found = load.check({(V, "a"): [ver("SAME", "a2"), ver("SAME", "a1")]})
    assert "version-order" in rules(found)
    assert any("twice" in a.detail for a in found)


def test_a_listing_that_orders_versions_otherwise_is_flagged() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 2, version="A1")
    load.op("put", "a", "a2", 1, 3, version="A2")
    load.op("list_versions", "a", None, 4, 5, listed=[ver("A1", "a1"), ver("A2", "a2")])
    found = load.check({(V, "a"): [ver("A2", "a2"), ver("A1", "a1")]})
    assert rules(found) == {"version-order"}


# -- lost updates ------------------------------------------------------------------


def test_two_acked_cas_on_one_expectation_is_a_lost_update() -> None:
    load = Load()
    load.op("cas", "n", "1#c1", 0, 1, version="N1", expected=ABSENT, count=1)
    load.op("cas", "n", "2#c1", 2, 3, version="N2", expected=d("1#c1"), count=2)
    load.op("cas", "n", "2#c2", 2, 3, version="N3", expected=d("1#c1"), count=2, client="c2")
    final = {(V, "n"): [ver("N3", "2#c2"), ver("N2", "2#c1"), ver("N1", "1#c1")]}
    found = load.check(final)
    assert "lost-update" in rules(found)
    assert any(len(a.ops) == 2 for a in found if a.rule == "lost-update")


def test_a_counter_below_its_acked_increments_is_a_lost_update() -> None:
    """Unversioned: only the final number can tell; 3 acked increments, counter 2."""
    load = Load()
    load.op("cas", "n", "1#c1", 0, 1, bucket=U, expected=ABSENT, count=1)
    load.op("cas", "n", "2#c1", 2, 3, bucket=U, expected=d("1#c1"), count=2)
    load.op("cas", "n", "2#c2", 2, 3, bucket=U, expected=d("1#c2x"), count=2, client="c2")
    found = check(load.h, {(U, "n"): [ver(None, "2#c2")]}, versioned=())
    assert "lost-update" in rules(found)
    assert any("counter is 2; 3" in a.detail for a in found)


def test_a_counter_with_unknown_increments_may_count_them_or_not() -> None:
    """c1's second increment gets no answer. Not landed: c2's increment over 1 wins and
    the counter is 2 of 2 acked. Landed: c2's try over 1 conflicts, its retry over c1's
    2 wins, and the counter is 3 of 2 acked + 1 unknown. Both are right."""
    for landed in (False, True):
        load = Load()
        load.op("cas", "n", "1#c1", 0, 1, bucket=U, expected=ABSENT, count=1)
        load.op("cas", "n", "2#c1", 2, 3, "unknown", bucket=U, expected=d("1#c1"), count=2)
        over_one: Outcome = "fail" if landed else "ok"
        load.op("cas", "n", "2#c2", 4, 5, over_one, bucket=U, expected=d("1#c1"), count=2)
        if landed:
            load.op("cas", "n", "3#c2", 6, 7, bucket=U, expected=d("2#c1"), count=3)
        final = ver(None, "3#c2" if landed else "2#c2")
        assert check(load.h, {(U, "n"): [final]}, versioned=()) == []


def test_a_versioned_cas_committed_over_a_version_it_did_not_expect_is_flagged() -> None:
    load = Load()
    load.op("cas", "n", "1#c1", 0, 1, version="N1", expected=ABSENT, count=1)
    load.op("put", "n", "x", 0, 3, "unknown")  # an unconditional write slipped in
    load.op("cas", "n", "2#c1", 2, 3, version="N2", expected=d("1#c1"), count=2)
    final = {(V, "n"): [ver("N2", "2#c1"), ver("NX", "x"), ver("N1", "1#c1")]}
    assert rules(load.check(final)) == {"lost-update"}


# -- phantoms ----------------------------------------------------------------------


def test_a_read_of_a_value_nobody_wrote_is_a_phantom() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("get", "a", "torn", 2, 3)
    assert rules(load.check({(V, "a"): [ver("A1", "a1")]})) == {"phantom"}


def test_a_read_or_a_version_of_a_refused_write_is_a_phantom() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "no", 2, 3, "fail")
    load.op("get", "a", "no", 4, 5)
    found = load.check({(V, "a"): [ver("A9", "no"), ver("A1", "a1")]})
    assert rules(found) == {"phantom"}
    assert all("refused" in a.detail for a in found)
    assert len(found) == 2


def test_a_read_whose_version_id_and_bytes_disagree_is_a_phantom() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "a2", 2, 3, version="A2")
    load.op("get", "a", "a1", 4, 5, version="A2")  # new id, old bytes
    found = load.check({(V, "a"): [ver("A2", "a2"), ver("A1", "a1")]})
    assert "phantom" in rules(found)


# -- unknown outcomes and atomicity ------------------------------------------------


def test_an_unknown_write_may_land_or_not() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1")
    load.op("put", "a", "u", 2, 3, "unknown")
    load.op("get", "a", "u", 10, 11)  # landed after the client gave up: allowed
    assert load.check({(V, "a"): [ver("AU", "u"), ver("A1", "a1")]}) == []
    plain = Load()
    plain.op("put", "a", "a1", 0, 1, version="A1")
    plain.op("put", "a", "u", 2, 3, "unknown")
    plain.op("get", "a", "a1", 10, 11)
    assert plain.check({(V, "a"): [ver("A1", "a1")]}) == []


def test_a_half_applied_multiset_is_flagged() -> None:
    load = Load()
    load.op("put", "m1", "g-1", 0, 1, "unknown", group="G")
    load.op("put", "m2", "g-2", 0, 1, "unknown", group="G")
    assert load.check({(V, "m1"): [], (V, "m2"): []}) == []
    both = {(V, "m1"): [ver("M1", "g-1")], (V, "m2"): [ver("M2", "g-2")]}
    assert load.check(both) == []
    half = {(V, "m1"): [ver("M1", "g-1")], (V, "m2"): []}
    assert rules(load.check(half)) == {"atomicity"}


def test_the_report_names_rule_key_and_operations() -> None:
    load = Load()
    load.op("put", "a", "a1", 0, 1, version="A1", client="writer-7", gateway="gw-b")
    found = load.check({(V, "a"): []})
    text = report(found)
    assert "lost-write on kv/a" in text
    assert "#0 writer-7@gw-b/kv put kv/a" in text
    assert "version=A1" in text
    many = report(found * 25, limit=3)
    assert many.endswith("... and 22 more")


def test_an_operation_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before"):
        Load().op("put", "a", "a1", 2, 1)
