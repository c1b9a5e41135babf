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
    site_removed_addresses: [...]   # what the firewall drops (the wizard derives it)

A removed node's keys are refused for any node, its index is never given
again unless `reuse_address`, and its name is given again only by the
controller (`meshstead node add`), never by invite."""

import re

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


def for_roster(removed: dict) -> dict:
    """The roster's `removed`: name -> {"node_index", "at"} of its latest removal."""
    return {name: {"node_index": entry["node_index"], "at": entry["removed_at"]}
            for name, entry in sorted(removed.items())}
