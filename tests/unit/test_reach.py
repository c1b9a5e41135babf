"""The pairs a reach check pings: one per ordered pair of nodes and overlay,
by the overlay's DNS name of the destination."""

from types import SimpleNamespace

from wizard import reach

SITE = SimpleNamespace(settings=SimpleNamespace(overlay=["tinc", "yggdrasil"], domain="demo.internal"),
                       sorted_nodes=lambda: [SimpleNamespace(name="a"), SimpleNamespace(name="b"),
                                             SimpleNamespace(name="c")])


def test_every_ordered_pair_on_every_overlay_by_name():
    found = reach.pairs(SITE)
    assert len(found) == 3 * 2 * 2
    assert ("a", "b", "tinc", "b.tinc.demo.internal") in found
    assert ("b", "a", "yggdrasil", "a.ygg.demo.internal") in found
    assert not [p for p in found if p[0] == p[1]]


def test_involving_keeps_the_pairs_to_and_from_one_node_of_the_names_given():
    found = reach.pairs(SITE, names=["a", "b", "new"], involving="new")
    assert sorted((src, dst) for src, dst, overlay, _ in found if overlay == "tinc") == \
        [("a", "new"), ("b", "new"), ("new", "a"), ("new", "b")]
    assert len(found) == 8
