"""`meshstead node import`: the nodes that joined through hubs, into the
inventory, which stays the one source of truth (docs/invites.md, "Bringing
joined nodes in").

Each hub keeps a record of the nodes it admitted (`meshstead-join export`);
playbooks/import.yml reads it from every hub the controller reaches. A joined
node enters the inventory with the index, addresses and public identity the
hub recorded and no private keys (it made its own and keeps them): from then
on `provision` manages it like any other node, and the invite it used is
marked used."""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import nodeside, provision, sites
from ..errors import MeshsteadError
from ..model import Node

_identity = nodeside.module("identity")
_addresses = nodeside.module("addresses")
_removed = nodeside.module("removed")
EXPORT_FIELDS = ("joined", "used")


@dataclass
class Collected:
    records: dict[str, dict]  # hub -> its export
    unreachable: list[str] = field(default_factory=list)  # hubs that did not answer
    log: Path | None = None


@dataclass
class Merged:
    added: list[Node] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # joined nodes the inventory already has
    used: list[str] = field(default_factory=list)  # invite ids newly marked used
    removed: list[str] = field(default_factory=list)  # joined nodes the site has removed since: skipped


def collect(opened: sites.Opened, on_task=None) -> Collected:
    """Every reachable hub's record, through Ansible (the controller's way to the nodes)."""
    hubs = [n.name for n in opened.site.sorted_nodes() if "hub" in n.roles]
    if not hubs:
        raise MeshsteadError("hubs", "the site has no hub; expected a node with the hub role (nodes join through "
                             "hubs)")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshstead"
    log = cache / f"import-{opened.site.settings.site_id}.log"
    with tempfile.TemporaryDirectory(prefix="meshstead-import-") as tmp:
        argv = provision.command(opened.directory, opened.vault.path, playbook="import.yml",
                                 extra=["-e", f"meshstead_import_dir={tmp}"])
        outcome = provision.run(argv, log, on_task=on_task,
                                facts_dir=cache / "facts" / opened.site.settings.site_id)
        records = {}
        for hub in hubs:
            path = Path(tmp) / f"{hub}.json"
            if path.is_file():
                records[hub] = _read(hub, path)
    return Collected(records, [h for h in hubs if h not in records], outcome.log)


def _read(hub: str, path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise MeshsteadError("hub", f"{hub}'s record of joins is not JSON; expected `meshstead-join export`'s") \
            from None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), dict) for k in EXPORT_FIELDS):
        raise MeshsteadError("hub", f"{hub}'s record of joins lacks {' or '.join(EXPORT_FIELDS)}")
    return record


def _check(site, hub: str, name: str, joined: dict) -> Node:
    """The node as the hub recorded it, checked against the site: its identity
    well formed, its addresses the site's plan for its index."""
    where = f"node {name} (joined at {hub})"
    if not isinstance(joined, dict) or joined.get("node_name") != name:
        raise MeshsteadError("hub", f"{where}: the hub's record is damaged")
    try:
        public = _identity.check({k: joined.get(k) for k in _identity.PUBLIC_VARS})
    except _identity.IdentityError as exc:
        raise MeshsteadError("hub", f"{where}: {exc}") from None
    index = joined.get("node_index")
    expected = _addresses.node_addresses(site.settings.ipv4_plan, site.settings.ipv6_ula, index) \
        if isinstance(index, int) and 0 < index <= site.settings.max_nodes else None
    if expected is None or any(joined.get(k) != v for k, v in expected.items()):
        raise MeshsteadError("hub", f"{where}: index {index!r} and its addresses are not this site's plan "
                             f"({site.settings.ipv4_plan}); expected a hub of this site")
    if joined.get("node_fqdn") != f"{name}.{site.settings.domain}":
        raise MeshsteadError("hub", f"{where}: its name {joined.get('node_fqdn')!r} is not in the site's domain")
    return Node(name=name, index=index, platform=joined.get("node_platform"), roles=list(joined.get("node_roles")
                or []), public=public, has_secrets=False)


def merge(site, records: dict[str, dict]) -> Merged:
    """Bring the joined nodes into `site` (in memory; the caller writes it).
    Checks everything first: an error changes nothing."""
    merged = Merged()
    incoming: dict[str, Node] = {}
    for hub, record in sorted(records.items()):
        for name, joined in sorted(record["joined"].items()):
            node = _check(site, hub, name, joined)
            if _removed.was_removed(site.removed, name, node.index):
                if name not in merged.removed:
                    merged.removed.append(name)  # the hub keeps its record; the site removed the node
                continue
            if name in site.removed and name not in site.nodes:
                raise MeshsteadError("name", f"node {name} joined at {hub} under the name of a removed node; "
                                     "expected hubs to refuse it (provision the hub: its kit names the removed "
                                     "nodes)")
            site.check_keys(name, node.public)
            existing = site.nodes.get(name) or incoming.get(name)
            if existing is not None:
                same_keys = all(existing.public.get(k) == node.public[k] for k in _identity.PUBLIC_VARS)
                if existing.has_secrets or existing.index != node.index or not same_keys:
                    raise MeshsteadError("name", f"node {name} joined at {hub}, but the site has another node "
                                         f"{name}; expected one of them removed")
                if name in site.nodes:
                    merged.known.append(name)
                continue
            clash = next((n for n in [*site.nodes.values(), *incoming.values()] if n.index == node.index), None)
            if clash is not None:
                raise MeshsteadError("index", f"node {name} joined at {hub} with index {node.index}, which "
                                     f"{clash.name} has; expected indexes apart (add nodes on the controller "
                                     "only after importing those that joined)")
            incoming[name] = node
    records_by_id = {r.id: r for r in site.invites}
    for _hub, record in sorted(records.items()):
        for invite_id, use in sorted(record["used"].items()):
            invite = records_by_id.get(invite_id)
            if invite is not None and not invite.used_by and isinstance(use, dict):
                invite.used_by, invite.used_at = use.get("node"), use.get("at")
                merged.used.append(invite_id)
    for name, node in sorted(incoming.items(), key=lambda item: item[1].index):
        site.nodes[name] = node
        merged.added.append(node)
    return merged
