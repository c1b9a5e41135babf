"""The pairs a reach check pings: one per ordered pair of nodes and overlay,
by the overlay's DNS name of the destination."""

import subprocess
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


class FlakyLab:
    """Answers a ping to `late` only from its `answers_after`-th try on, and
    never one to `dead`: what an overlay does while a peer reconnects."""

    def __init__(self, late, answers_after, dead=None, hangs=None):
        self.late, self.answers_after, self.dead, self.hangs, self.tries = late, answers_after, dead, hangs, {}

    def exec_capture(self, node, argv, timeout):
        target = argv[-1]
        self.tries[(node, target)] = self.tries.get((node, target), 0) + 1
        if target == self.hangs:
            raise subprocess.TimeoutExpired(argv, timeout)
        ok = target != self.dead and (target != self.late or self.tries[(node, target)] >= self.answers_after)
        return SimpleNamespace(returncode=0 if ok else 1)


def test_a_pair_that_answers_late_in_the_window_counts_and_only_failures_are_pinged_again():
    lab = FlakyLab("b.tinc.demo.internal", answers_after=3)
    results = reach.matrix(lab, SITE, within=30, names=["a", "b"])
    assert all(results.values()), results
    assert lab.tries[("a", "b.tinc.demo.internal")] == 3
    assert lab.tries[("b", "a.tinc.demo.internal")] == 1


def test_a_pair_that_never_answers_fails_once_the_window_is_over():
    lab = FlakyLab(None, 0, dead="a.ygg.demo.internal")
    results = reach.matrix(lab, SITE, within=2, names=["a", "b"])
    assert results == {("a", "b", "tinc"): True, ("b", "a", "tinc"): True,
                       ("a", "b", "yggdrasil"): True, ("b", "a", "yggdrasil"): False}
    assert lab.tries[("b", "a.ygg.demo.internal")] >= 2


def test_a_ping_cut_off_by_its_timeout_is_unreached_and_the_others_still_count():
    lab = FlakyLab("b.ygg.demo.internal", answers_after=2, hangs="b.tinc.demo.internal")
    results = reach.matrix(lab, SITE, within=2, names=["a", "b"])
    assert results == {("a", "b", "tinc"): False, ("b", "a", "tinc"): True,
                       ("a", "b", "yggdrasil"): True, ("b", "a", "yggdrasil"): True}
    assert lab.tries[("a", "b.tinc.demo.internal")] >= 2
