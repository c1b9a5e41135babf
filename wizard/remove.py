"""`meshstead node remove`: take a node out of the site (docs/invites.md,
"Revocation").

The inventory stays the one record: the node leaves hosts.yml and known_hosts,
its host_vars directory goes (its vault with its private keys too: a removed
node's keys are not kept), and group_vars/all/removed.yml records its index,
when, and the public keys that must never come back. The next `provision`
takes it out everywhere; hubs learn it with their kit."""

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import nodeside
from .errors import MeshsteadError
from .fsutil import FileChange, plan_writes
from .invites.record import InviteRecord, timestamp
from .model import Site
from .render import inventory
from .sites import get_node

_removed = nodeside.module("removed")


@dataclass
class Removal:
    name: str
    index: int
    changes: list[FileChange]  # the site's files that change
    deleted: list[Path]  # the node's files, all of host_vars/<name>/
    revoked: list[InviteRecord] = field(default_factory=list)  # unused invites through it (a hub)
    finished: bool = False  # only the files an interrupted removal left were still there


def _files_of(directory: Path, name: str) -> list[Path]:
    node_dir = directory / "host_vars" / name
    if not node_dir.is_dir():
        return []
    return sorted(p for p in node_dir.rglob("*") if not p.is_dir() or p.is_symlink())


def _check_hubs(site: Site, name: str) -> None:
    node = site.nodes[name]
    others = [n.name for n in site.sorted_nodes() if n.name != name]
    if "hub" in node.roles and others and not any("hub" in site.nodes[n].roles for n in others):
        raise MeshsteadError("node", f"{name} is the site's last hub, and {len(others)} node(s) need one (tinc "
                             "and Yggdrasil peer through hubs, NNCP calls them, joins go through them); expected "
                             "another hub first (meshstead node add NAME --role hub), or the other nodes removed "
                             "first")


def remove(directory: Path, site: Site, name: str, *, reuse_address: bool = False,
           now: datetime.datetime | None = None) -> Removal:
    """Take `name` out of `site` (in memory) and plan the files; the caller
    writes them (apply) or only shows them (dry run). Checks everything first."""
    now = now or datetime.datetime.now(datetime.UTC)
    if name not in site.nodes and name in site.removed:
        leftovers = _files_of(directory, name)
        if not leftovers:
            raise MeshsteadError("node", f"{name} was removed at {site.removed[name]['removed_at']}; expected a "
                                 "node of the site")
        # A removal cut short after the site's files were written: finish it.
        index = site.removed[name]["node_index"]
        return Removal(name, index, [], leftovers, finished=True)
    node = get_node(site, name)
    _check_hubs(site, name)
    # The record a node's roster applier writes too, when a hub's roster brings it this removal.
    entry = _removed.entry_of(site.node_facts(node), timestamp(now), reuse_address)
    site.removed = _removed.with_removal(site.removed, name, entry)
    del site.nodes[name]
    revoked = []
    for invite in site.invites:
        if invite.hub == name and invite.state(now) == "unused":
            invite.revoked = True  # its hub is gone, and the pin it names is a removed node's
            revoked.append(invite)
    files = inventory.render(site, None, site_secrets=None, node_secrets={})
    return Removal(name, node.index, plan_writes(directory, files), _files_of(directory, name), revoked)


def delete(directory: Path, removal: Removal) -> None:
    """The node's files, then its directory (after the site's files are written:
    a removal cut short in between is finished by running it again)."""
    for path in removal.deleted:
        path.unlink(missing_ok=True)
    node_dir = directory / "host_vars" / removal.name
    for sub in sorted((p for p in node_dir.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        sub.rmdir()
    if node_dir.is_dir():
        node_dir.rmdir()
    fd = os.open(directory / "host_vars", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
