"""The site's removed nodes (group_vars/all/removed.yml, written by
`meshstead node remove`; docs/invites.md, "Revocation"): one copy of the rules
for the controller and the hubs.

    site_removed_nodes:
      cabin:
        node_index: 2
        removed_at: '2026-12-04T09:00:00Z'
        reuse_address: false        # true: `node remove --reuse-address`, the index may be given again
        tinc_public_key: ...        # KEYS: the public identity that never comes back
        ...
        earlier: [...]              # only for a name removed twice: the older removals, same form
    site_removed_addresses: [...]   # what the firewall drops (blocked_addresses)

A removed node's keys are refused for any node, its index is never given
again unless `reuse_address`, and its name is given again only by the
controller (`meshstead node add`), never by invite.

The record of a removal and the addresses it blocks are made here for the
controller (`meshstead node remove`) and for a node's roster applier, which
takes a removal from a hub's roster: both must write the same record, so a
later provision that brings the controller's changes nothing."""

import ipaddress
import re

from . import addresses

VARIABLE = "site_removed_nodes"
ADDRESSES = "site_removed_addresses"
# The public keys that name a node to one program each (the roster's UNIQUE_VARS).
KEYS = ("tinc_public_key", "yggdrasil_public_key", "syncthing_device_id", "nncp_id",
        "ssh_host_ed25519_fingerprint", "join_pin")
# Kept besides the keys: where the firewall must not accept the node from.
ADDRESS_VARS = ("yggdrasil_address", "yggdrasil_subnet")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class RemovedError(ValueError):
    """The record is damaged; one line naming the entry."""


def _entry(name: str, entry) -> None:
    if not isinstance(entry, dict):
        raise RemovedError(f"removed node {name!r} is not a mapping")
    index = entry.get("node_index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 1:
        raise RemovedError(f"removed node {name!r}: node_index is not a whole number above 0")
    if not isinstance(entry.get("removed_at"), str) or not _TIME.match(entry["removed_at"]):
        raise RemovedError(f"removed node {name!r}: removed_at is not UTC ISO 8601 (2026-12-04T09:00:00Z)")
    if not isinstance(entry.get("reuse_address", False), bool):
        raise RemovedError(f"removed node {name!r}: reuse_address is not true or false")
    bad = [k for k in (*KEYS, *ADDRESS_VARS) if k in entry and not isinstance(entry[k], str)]
    if bad:
        raise RemovedError(f"removed node {name!r}: {bad[0]} is not text")
    earlier = entry.get("earlier", [])
    if not isinstance(earlier, list):
        raise RemovedError(f"removed node {name!r}: earlier is not a list")
    for older in earlier:
        if isinstance(older, dict) and "earlier" in older:
            raise RemovedError(f"removed node {name!r}: an earlier removal has its own earlier")
        _entry(name, older)


def check(removed) -> dict:
    """The record as read from YAML (None: no node removed); RemovedError if damaged."""
    if removed is None:
        return {}
    if not isinstance(removed, dict):
        raise RemovedError(f"{VARIABLE} is not a mapping of node names")
    for name, entry in removed.items():
        if not isinstance(name, str) or not _LABEL.match(name):
            raise RemovedError(f"removed node {name!r} is not a DNS label")
        _entry(name, entry)
    return removed


def entries(removed: dict) -> list[tuple[str, dict]]:
    """Every removal, the older ones of a name given twice too: (name, entry)."""
    return [(name, one) for name, entry in sorted(removed.items())
            for one in [*entry.get("earlier", []), entry]]


def indexes(removed: dict, *, reusable: bool | None = None) -> set[int]:
    """Indexes of removed nodes; reusable=False: those never to be given again,
    True: those `--reuse-address` freed, None: all."""
    return {e["node_index"] for _, e in entries(removed)
            if reusable is None or bool(e.get("reuse_address", False)) == reusable}


def was_removed(removed: dict, name: str, index) -> bool:
    """The node of this name and index is a removed one."""
    return any(n == name and e["node_index"] == index for n, e in entries(removed))


def _same(var: str, a: str, b: str) -> bool:
    if var == "tinc_public_key":  # PEM: the same key however its lines are wrapped
        return "".join(a.split()) == "".join(b.split())
    return a.strip().lower() == b.strip().lower()


def clash(public: dict, removed: dict) -> tuple[str, str] | None:
    """(removed node, variable) of the first of `public`'s keys that a removed
    node had; None if none."""
    for name, entry in entries(removed):
        for var in KEYS:
            if isinstance(public.get(var), str) and var in entry and _same(var, public[var], entry[var]):
                return name, var
    return None


def entry_of(node: dict, removed_at: str, reuse_address: bool = False) -> dict:
    """The record of removing a node, from its node.yml variables: its index,
    when, and the public keys and addresses that never come back."""
    return {"node_index": node["node_index"], "removed_at": removed_at, "reuse_address": bool(reuse_address),
            **{k: node[k] for k in (*KEYS, *ADDRESS_VARS) if k in node}}


def with_removal(removed: dict, name: str, entry: dict) -> dict:
    """The record with one more removal (a new mapping); a name removed
    before (and given again by `node add`) keeps its older removals in `earlier`."""
    if name in removed:
        older = removed[name]
        entry = {**entry, "earlier": [*older.get("earlier", []), {k: v for k, v in older.items() if k != "earlier"}]}
    return {**removed, name: entry}


def blocked_addresses(removed: dict, plan: ipaddress.IPv4Network, ula: ipaddress.IPv6Network) -> list[str]:
    """What every node's firewall drops (site_removed_addresses): each removed
    node's Yggdrasil address and subnet (its key's: never another node's), and
    the addresses of its index unless --reuse-address freed them."""
    found: list[str] = []
    for _name, entry in entries(removed):
        if "yggdrasil_address" in entry:
            found.append(f"{entry['yggdrasil_address']}/128")
        if "yggdrasil_subnet" in entry:
            found.append(entry["yggdrasil_subnet"])
        if not entry.get("reuse_address", False):
            held = addresses.node_addresses(plan, ula, entry["node_index"])
            for var in ("node_mesh_ipv4", "node_overlay_ipv4"):
                found.append(f"{held[var]}/32")
            for var in ("node_mesh_ipv6", "node_overlay_ipv6"):
                found.append(f"{held[var]}/128")
    return list(dict.fromkeys(found))


def variables(removed: dict, plan: ipaddress.IPv4Network, ula: ipaddress.IPv6Network) -> dict:
    """removed.yml's variables for the record."""
    return {VARIABLE: removed, ADDRESSES: blocked_addresses(removed, plan, ula)}


def for_roster(removed: dict) -> dict:
    """The roster's `removed`: name -> {"node_index", "at"} of its latest removal."""
    return {name: {"node_index": entry["node_index"], "at": entry["removed_at"]}
            for name, entry in sorted(removed.items())}
