"""Which node pairs hear each other: the lab's topology, plus links cut by hand.

Positions are the nodes' order in the lab (spec order); pairs are unordered.
The guest applies it as radio range: mac80211_hwsim delivers a frame only to
radios whose `group` bitmask shares a bit with the sender's, so every pair gets
a bit, set on both radios while the pair is linked, and every node a bit shared
with the spare (client station) radio alone.  Unlinked radios then hear nothing
of each other: no data, no beacons, no SAE or peering frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import LabError

TOPOLOGIES = ("full", "line", "diamond")
GROUP_BITS = 64  # mac80211_hwsim's group is a u64
MAX_NODES = 10  # 45 pair bits + 10 client bits fit; 11 nodes would need 66
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


def radio_groups(names: Sequence[str], topology: str,
                 cuts: Iterable[Sequence[str]]) -> tuple[dict[str, int], int]:
    """node -> its radio's hwsim group mask, and the spare radio's mask.

    Bit i is pair i of `pairs(names)`; bit len(pairs) + k is node k's link to
    the spare radio, which hears every node and lets no two nodes hear each
    other through it.
    """
    if len(names) > MAX_NODES:
        raise LabError(f"a radio lab has at most {MAX_NODES} nodes, not {len(names)} "
                       f"(each radio link is one bit of mac80211_hwsim's {GROUP_BITS}-bit group)")
    masks = {n: 0 for n in names}
    for bit, link in enumerate(link_states(names, topology, cuts)):
        if link["state"] == "up":
            masks[str(link["a"])] |= 1 << bit
            masks[str(link["b"])] |= 1 << bit
    spare = 0
    first_client = len(pairs(names))
    for k, n in enumerate(names):
        masks[n] |= 1 << (first_client + k)
        spare |= 1 << (first_client + k)
    return masks, spare
