"""Which node pairs hear each other: the lab's topology, plus links cut by hand.

Positions are the nodes' order in the lab (spec order); pairs are unordered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import LabError

TOPOLOGIES = ("full", "line", "diamond")
Pair = frozenset[str]


def pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every node pair once, in node order."""
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def allowed(names: Sequence[str], topology: str) -> set[Pair]:
    """The pairs `topology` links directly."""
    n = len(names)
    if topology == "full":
        return {frozenset(p) for p in pairs(names)}
    if topology == "line":
        return {frozenset((names[i], names[i + 1])) for i in range(n - 1)}
    if topology == "diamond":
        if n != 4:
            raise LabError(f"topology diamond needs exactly 4 nodes, not {n}")
        return {frozenset((names[a], names[b])) for a, b in ((0, 1), (0, 2), (1, 3), (2, 3))}
    raise LabError(f"unknown topology {topology!r} (one of: {', '.join(TOPOLOGIES)})")


def link_states(names: Sequence[str], topology: str,
                cuts: Iterable[Sequence[str]]) -> list[dict[str, str | None]]:
    """Every pair with state up/down and why it is down (topology wins over a cut)."""
    linked = allowed(names, topology)
    cut = {frozenset(c) for c in cuts}
    out: list[dict[str, str | None]] = []
    for a, b in pairs(names):
        pair = frozenset((a, b))
        reason = "topology" if pair not in linked else "cut" if pair in cut else None
        out.append({"a": a, "b": b, "state": "down" if reason else "up", "reason": reason})
    return out


def blocked_peers(names: Sequence[str], topology: str,
                  cuts: Iterable[Sequence[str]]) -> dict[str, list[str]]:
    """node -> the peers whose frames it must drop."""
    out: dict[str, list[str]] = {n: [] for n in names}
    for link in link_states(names, topology, cuts):
        if link["state"] == "down":
            a, b = str(link["a"]), str(link["b"])
            out[a].append(b)
            out[b].append(a)
    return out
