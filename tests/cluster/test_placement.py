"""Rendezvous placement (``kvbox.cluster.placement``): the same answer everywhere, and
the least movement when the node set changes."""

from __future__ import annotations

import hashlib

from kvbox.cluster.placement import place, ranked

NODES = [f"bn-{i:02d}" for i in range(6)]
CHUNKS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(600)]


def test_placement_is_a_function_of_the_node_set_only() -> None:
    for c in CHUNKS[:50]:
        assert place(c, NODES, 3) == place(c, list(reversed(NODES)), 3)
        assert len(set(place(c, NODES, 3))) == 3
        assert ranked(c, NODES)[:3] == place(c, NODES, 3)
    assert place(CHUNKS[0], NODES[:2], 3) == ranked(CHUNKS[0], NODES[:2])


def test_load_spreads_evenly() -> None:
    counts = dict.fromkeys(NODES, 0)
    for c in CHUNKS:
        for n in place(c, NODES, 3):
            counts[n] += 1
    expected = len(CHUNKS) * 3 / len(NODES)
    assert all(0.75 * expected < v < 1.25 * expected for v in counts.values()), counts


def test_a_new_node_takes_only_its_share_and_a_lost_one_moves_only_its_chunks() -> None:
    grown = [*NODES, "bn-new"]
    moved = 0
    for c in CHUNKS:
        before, after = set(place(c, NODES, 3)), set(place(c, grown, 3))
        assert len(after - before) <= 1 and (after - before) <= {"bn-new"}
        moved += len(after - before)
    assert moved < len(CHUNKS) * 3 / len(grown) * 1.3
    for c in CHUNKS:
        old = place(c, NODES, 3)
        new = place(c, [n for n in NODES if n != "bn-03"], 3)
        if "bn-03" not in old:
            assert new == old
        else:
            assert set(old) - {"bn-03"} < set(new)
