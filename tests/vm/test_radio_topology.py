"""Which pairs each radio-lab topology links (pure; no guest needed)."""

from __future__ import annotations

import pytest

from wizard.lab import LabError
from wizard.lab.radio import topology

NODES = ["a", "b", "c", "d"]


def down(topo: str, cuts=()) -> set[tuple[str, str, str]]:
    return {(x["a"], x["b"], x["reason"]) for x in topology.link_states(NODES, topo, cuts)
            if x["state"] == "down"}


def test_full_line_diamond():
    assert down("full") == set()
    assert down("line") == {("a", "c", "topology"), ("a", "d", "topology"), ("b", "d", "topology")}
    # diamond: a-b, a-c, b-d, c-d; never a-d or b-c.
    assert down("diamond") == {("a", "d", "topology"), ("b", "c", "topology")}


def test_cuts_are_symmetric_and_topology_wins():
    assert down("line", [["b", "a"]]) == {("a", "b", "cut"), ("a", "c", "topology"),
                                          ("a", "d", "topology"), ("b", "d", "topology")}
    assert down("line", [["a", "c"]]) == down("line")
    blocked = topology.blocked_peers(NODES, "diamond", [["a", "b"]])
    assert blocked == {"a": ["b", "d"], "b": ["a", "c"], "c": ["b"], "d": ["a"]}


def test_radio_groups_share_a_bit_exactly_where_linked():
    cuts = [["a", "b"]]
    masks, spare = topology.radio_groups(NODES, "diamond", cuts)
    linked = {frozenset((x["a"], x["b"])) for x in topology.link_states(NODES, "diamond", cuts)
              if x["state"] == "up"}
    assert linked == {frozenset("ac"), frozenset("bd"), frozenset("cd")}
    for a, b in topology.pairs(NODES):
        assert bool(masks[a] & masks[b]) == (frozenset((a, b)) in linked), (a, b)
    # The spare radio hears every node, and bridges no two of them.
    assert all(masks[n] & spare for n in NODES)
    assert len({masks[n] & spare for n in NODES}) == len(NODES)
    assert max([*masks.values(), spare]) < 1 << topology.GROUP_BITS


def test_radio_groups_fit_64_bits_up_to_the_limit():
    names = [f"n{i}" for i in range(topology.MAX_NODES)]
    masks, spare = topology.radio_groups(names, "full", [])
    assert max([*masks.values(), spare]).bit_length() <= topology.GROUP_BITS
    with pytest.raises(LabError, match="at most 10 nodes"):
        topology.radio_groups([*names, "extra"], "full", [])


def test_bad_topologies():
    with pytest.raises(LabError, match="exactly 4 nodes"):
        topology.allowed(NODES[:3], "diamond")
    with pytest.raises(LabError, match="unknown topology"):
        topology.allowed(NODES, "ring")
