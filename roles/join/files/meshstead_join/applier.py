"""The roster applier (docs/invites.md, "Applying rosters"): a node checks the
rosters its hubs publish against its own inventory and, when they bring nodes
it does not know, applies the site's roles to itself with those nodes added:
the same roles and templates `provision` runs, run locally, so a tinc host
file, a DNS name or a Syncthing device of a joined node is written by the one
renderer there is.

A roster also lists the nodes the site removed. One that is a node of the
slice (same name and index) is taken out as `meshstead node remove` and a
provision take it out: the roles run with an inventory without it and with
its removal recorded (removed.yml, made by the code the controller writes it
with), so every role drops it, and a later provision that brings the
controller's removed.yml changes nothing.

What it works with, all on the node (the roster role puts them there):

    <site>/inventory/            the node's slice of the site inventory, as a seed holds it
    <site>/ansible/              the roles and playbooks (ansible.tar.gz, unpacked)
    <folder>/roster-<hub>.json   the rosters, carried by a Syncthing folder every node shares
    <state>/applied.json         what was applied: per hub the serial and the file's SHA-256,
                                 the nodes taken from rosters, the slice's nodes the rosters
                                 removed, the inventory they were applied with
    <state>/inventory/           with removals: the slice without the removed nodes (its other
                                 files linked) and removed.yml with their removals
    <state>/roster.yml           those nodes as an inventory, beside the site's
    <state>/nodes.json           the same, name -> {groups, vars}: the site playbook adds
                                 them to a provision's run, which then renders what the
                                 applier rendered (they are not the controller's until
                                 `meshstead node import`)

A roster is taken only when the run of the roles with it succeeded: a failed
run leaves applied.json as it was, and the next trigger (a new file, the
timer) tries again.

A node that joined by invite holds its own keys, which the controller never
has: a provision sends it a new slice (without its keys) and leaves
<state>/requested; the applier then runs the roles with the slice, the
node's keys and the settings it joined with (ownkeys.own_vars(), host
variables of <state>/roster.yml), and removes the request once the run
succeeded. Every run on such a node adds them: the slice has no keys."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import groups, kit, removed, roster
from .state import write_atomic

STATE_FILE = "applied.json"
OVERLAY_FILE = "roster.yml"
RUN_INVENTORY = "inventory"  # the slice without the nodes rosters removed, when they removed any
NODES_FILE = "nodes.json"
LOG_FILE = "apply.log"
REQUEST_FILE = "requested"  # a provision sent a slice that the roles have not run with yet
# What the node's own runs leave to the controller: the hub's kit and this
# slice come from the controller's inventory, not from rosters, and a run
# from an older slice must never put back an older kit (a revocation).
SKIPPED_TAGS = "join,roster"
# A provision's request: the slice is the controller's newest, so the node's
# own run also installs the join package from it (and, on a hub that joined,
# the kit); the slice itself is the provision's.
REQUESTED_SKIPPED_TAGS = "roster"
RUNS = 3  # runs in a row at most, while the slice or the folder changes under a run
PREFIX, SUFFIX = "roster-", ".json"


@dataclass
class Outcome:
    taken: dict = field(default_factory=dict)  # hub -> serial of a roster taken this time
    added: list = field(default_factory=list)  # names of nodes new to this node
    dropped: list = field(default_factory=list)  # names no longer taken from rosters (imported, removed)
    removed: list = field(default_factory=list)  # nodes of the slice a roster removed, new this time
    messages: list = field(default_factory=list)  # one line per refused roster or entry
    ran: bool = False  # the roles ran
    returncode: int = 0


def roster_file(hub: str) -> str:
    return f"{PREFIX}{hub}{SUFFIX}"


def load_state(state_dir: Path) -> dict:
    try:
        state = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"hubs": {}, "nodes": {}, "removed": {}, "inventory": None}
    if isinstance(state, dict):
        state.setdefault("removed", {})  # a state written before rosters removed the slice's nodes
    if not isinstance(state, dict) or not isinstance(state.get("hubs"), dict) \
            or not isinstance(state.get("nodes"), dict) or not isinstance(state["removed"], dict):
        raise roster.RosterError("state", f"{Path(state_dir) / STATE_FILE} is damaged; expected hubs, nodes "
                                 "and removed")
    return state


def inventory_digest(directory: Path) -> str:
    """The site inventory the roles last ran with: a provision that rewrote it
    (and ran the roles without the nodes from rosters) calls for a run with them."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def publish_own(hub_roster: Path, folder: Path, hub: str) -> bool:
    """A hub's own roster (the join service writes it in its state) into the
    carrier folder, owned like the folder so Syncthing can send it. Written
    beside it and renamed: Syncthing never sends half a file."""
    try:
        data = hub_roster.read_bytes()
    except FileNotFoundError:
        return False
    target = folder / roster_file(hub)
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    owner = folder.stat()
    tmp = folder.parent / f".{folder.name}.{roster_file(hub)}.tmp"
    write_atomic(tmp, data, 0o664)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    os.replace(tmp, target)
    return True


def _with_nodes(inventory: roster.Inventory, nodes: dict) -> roster.Inventory:
    return dataclasses.replace(inventory, nodes={**nodes, **inventory.nodes})


def applies(inventory: roster.Inventory, name: str, index) -> bool:
    """A removal a roster names means something to the slice: it lists that
    node (that name and index), and its own removed.yml lacks that removal
    (otherwise the node it lists is a later one the site gave the name to)."""
    node = inventory.nodes.get(name)
    return node is not None and node.get("node_index") == index \
        and not removed.was_removed(inventory.removed, name, index)


def removal_record(inventory: roster.Inventory, gone: dict) -> dict:
    """The slice's site_removed_nodes with the removals taken from rosters, as
    `meshstead node remove` records them: the keys from the node's own
    node.yml in the slice. A roster does not say --reuse-address, so the
    index's addresses are blocked until a provision brings the site's record."""
    record = inventory.removed
    # In the order the site removed them, as the controller appends them: the
    # roles see the same record, in the same order.
    for name, taken in sorted(gone.items(), key=lambda item: (item[1]["at"], item[0])):
        record = removed.with_removal(record, name, removed.entry_of(inventory.nodes[name], taken["at"]))
    return record


def without(inventory: roster.Inventory, gone: dict) -> roster.Inventory:
    """The slice as a provision after those removals would have it: without
    the nodes (a removed hub's key signs no roster any more), with their removals."""
    return dataclasses.replace(inventory, nodes={n: v for n, v in inventory.nodes.items() if n not in gone},
                               hubs={n: k for n, k in inventory.hubs.items() if n not in gone},
                               removed=removal_record(inventory, gone))


def _refusal(name: str, index, signer: str, node: str, listed: dict) -> str | None:
    """Why a roster's removal of a node this node knows (`listed`: its
    variables) is not taken; None: it is."""
    if name == node:
        # It cannot render the site without itself (the run is limited to
        # it); the others drop it, and it is wiped or given back by the admin.
        return "it is this node; a node does not take itself out"
    if name == signer:
        return "the roster's own hub; a hub's kit never lists the hub itself as removed"
    if listed.get("node_index") != index:
        return f"its index {index} is not that of {name} here (index {listed.get('node_index')})"
    return None


def _take_removals(checked: roster.Checked, where: str, inventory: roster.Inventory, node: str,
                   nodes: dict, gone: dict, outcome: Outcome) -> None:
    """The roster's removals of nodes this node knows: one taken from a
    roster leaves `nodes`, one of the slice joins `gone` (name -> node_index,
    at, hub)."""
    for name, entry in sorted(checked.removed.items()):
        index = entry["node_index"]
        if name in nodes:
            listed = nodes[name]
        elif name in gone or name not in inventory.nodes or removed.was_removed(inventory.removed, name, index):
            # Taken already; no node here (most are: a roster lists every
            # removal the site ever made); or the slice records that removal
            # itself, and its node of that name is a later one.
            continue
        else:
            listed = inventory.nodes[name]
        why = _refusal(name, index, checked.hub, node, listed)
        if why:
            outcome.messages.append(f"{where}: refused the removal of {name}: {why}")
        elif name in nodes:
            del nodes[name]
        else:
            gone[name] = {"node_index": index, "at": entry["at"], "hub": checked.hub}


def collect(folder: Path, inventory: roster.Inventory, state: dict, node: str,
            outcome: Outcome) -> tuple[dict, dict, dict]:
    """(hubs, nodes, gone) as they would be with every acceptable roster of
    the folder taken: per hub {serial, sha256}; name -> entry of the nodes the
    site inventory lacks; name -> {node_index, at, hub} of the slice's nodes
    the rosters removed."""
    hubs = {hub: dict(seen) for hub, seen in state["hubs"].items()}
    nodes = dict(state["nodes"])
    # A provision that brought the site's own record of a removal: the slice has it now.
    gone = {name: dict(taken) for name, taken in state["removed"].items()
            if applies(inventory, name, taken["node_index"])}
    for path in sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []:
        named = path.name[len(PREFIX):-len(SUFFIX)]
        try:
            data = path.read_bytes()
        except OSError as exc:
            outcome.messages.append(f"{path.name}: cannot be read: {exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        seen = hubs.get(named, {"serial": 0, "sha256": None})
        if seen["sha256"] == digest:
            continue  # taken already
        try:
            checked = roster.check(data, _with_nodes(without(inventory, gone), nodes), seen["serial"])
        except roster.RosterError as exc:
            outcome.messages.append(f"{path.name}: refused: {exc.problem}: {exc}")
            continue
        if checked.hub != named:
            outcome.messages.append(f"{path.name}: refused: hub: it holds {checked.hub}'s roster")
            continue
        hubs[named] = {"serial": checked.serial, "sha256": digest}
        outcome.taken[named] = checked.serial
        outcome.messages += [f"{path.name}: refused {name}: {why}" for name, why in sorted(checked.refused.items())]
        for name, entry in checked.added.items():
            nodes[name] = entry
        _take_removals(checked, path.name, inventory, node, nodes, gone, outcome)
    # The site inventory wins: an imported node is the controller's now; and
    # a node it records as removed (a provision brought the removal before
    # the roster with it arrived) is kept from no roster taken earlier.
    for name in [n for n, entry in nodes.items()
                 if n in inventory.nodes or removed.was_removed(inventory.removed, n, entry.get("node_index"))]:
        del nodes[name]
    return hubs, nodes, gone


def node_groups(nodes: dict, site_vars: dict) -> dict:
    """name -> the groups hosts.yml would list the node in."""
    networks, services = site_vars.get("site_overlay") or [], site_vars.get("site_services") or []
    return {name: groups.node_groups(entry["node_platform"], entry["node_roles"], networks, services)
            for name, entry in sorted(nodes.items())}


def overlay(nodes: dict, site_vars: dict, node: str | None = None, own: dict | None = None) -> dict:
    """The nodes taken from rosters as an inventory file: their groups, as
    hosts.yml would list them, and their variables as host variables; and
    `own` as host variables of `node` itself (below its host_vars files,
    so a controller's local.yml for it wins over the settings it joined with)."""
    hosts = {"all": {"hosts": {name: dict(entry) for name, entry in sorted(nodes.items())}, "children": {}}}
    for name, names in node_groups(nodes, site_vars).items():
        for group in names:
            hosts["all"]["children"].setdefault(group, {"hosts": {}})["hosts"][name] = None
    if own:
        hosts["all"]["hosts"][node] = dict(own)
    return hosts


def _without_hosts(group, names) -> None:
    """Take `names` out of a hosts.yml group and its children, in place; a
    group left empty is `{}`, as the wizard writes it."""
    if not isinstance(group, dict):
        return
    members = group.get("hosts")
    if isinstance(members, dict):
        for name in names:
            members.pop(name, None)
        if not members:
            del group["hosts"]
    for child in (group.get("children") or {}).values():
        _without_hosts(child, names)


def write_run_inventory(slice_dir: Path, target: Path, inventory: roster.Inventory, gone: dict) -> None:
    """The slice without the nodes in `gone`, as the controller's inventory is
    after `meshstead node remove` (Ansible cannot take a host out of an
    inventory source): hosts.yml without them, removed.yml with their
    removals, every other file of the slice linked, their host_vars left out."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    for path in sorted(p for p in slice_dir.rglob("*") if not p.is_dir()):
        rel = path.relative_to(slice_dir)
        if str(rel) in (kit.HOSTS, kit.REMOVED) or (rel.parts[0] == "host_vars" and rel.parts[1] in gone):
            continue
        (target / rel).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (target / rel).symlink_to(path)
    # In the slice's order: the roles render peers in the order of the groups.
    try:
        hosts = kit.read_yaml(slice_dir / kit.HOSTS, required=True)
    except kit.KitError as exc:
        raise roster.RosterError("inventory", str(exc)) from None
    _without_hosts(hosts.get("all"), gone)
    write_atomic(target / kit.HOSTS, yaml.safe_dump(hosts, sort_keys=False).encode(), 0o600)
    record = removal_record(inventory, gone)
    write_atomic(target / kit.REMOVED, yaml.safe_dump(
        removed.variables(record, inventory.ipv4_plan, inventory.ipv6_ula), sort_keys=False).encode(), 0o600)


def run_roles(site_dir: Path, state_dir: Path, node: str, ansible_playbook: str, inventory: Path,
              skipped: str = SKIPPED_TAGS) -> int:
    """The site playbook for this node alone, locally, with the roster's
    nodes beside the site's; `inventory`: the slice, or the run's without
    the nodes rosters removed."""
    tree, home = site_dir / "ansible", state_dir / "ansible-home"
    env = {**os.environ, "ANSIBLE_CONFIG": str(tree / "ansible.cfg"), "ANSIBLE_HOME": str(home),
           "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp")}
    for name in ("MESHSTEAD_EVENTS", "MESHSTEAD_EVENTS_FD"):
        env.pop(name, None)
    argv = [ansible_playbook, "-i", str(inventory), "-i", str(state_dir / OVERLAY_FILE),
            "-c", "local", "--limit", node, "--skip-tags", skipped, str(tree / "playbooks" / "site.yml")]
    fd = os.open(state_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as log:
        log.write(" ".join(argv) + "\n")
        log.flush()
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=tree).returncode


def _inputs(site_dir: Path, folder: Path, hub_roster: tuple[Path, str] | None) -> str:
    """What a run depends on: the slice and the rosters (a provision or Syncthing may change them during it)."""
    digest = hashlib.sha256(inventory_digest(site_dir / "inventory").encode())
    paths = sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []
    for path in paths + ([hub_roster[0]] if hub_roster else []):
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()


def apply(site_dir: Path, state_dir: Path, folder: Path, node: str, ansible_playbook: str,
          hub_roster: tuple[Path, str] | None = None, own: dict | None = None) -> Outcome:
    """Take what the folder's rosters add and run the roles with it when the
    node's view of the site changed, or a provision asked for a run; again
    (up to RUNS times) when the slice or a roster changed during a run,
    which the run may have missed. `own`: the variables of a node that holds
    its own keys (ownkeys.own_vars()). RosterError if the inventory or the
    state cannot be read."""
    site_dir, state_dir, folder = Path(site_dir), Path(state_dir), Path(folder)
    outcome = Outcome()
    for _ in range(RUNS):
        before = _inputs(site_dir, folder, hub_roster)
        once = _apply_once(site_dir, state_dir, folder, node, ansible_playbook, hub_roster, own or {})
        outcome.taken.update(once.taken)
        outcome.added = sorted(set(outcome.added) | set(once.added))
        outcome.dropped = sorted(set(outcome.dropped) | set(once.dropped))
        outcome.removed = sorted(set(outcome.removed) | set(once.removed))
        outcome.messages += once.messages
        outcome.ran = outcome.ran or once.ran
        outcome.returncode = once.returncode
        if once.returncode != 0 or not once.ran or _inputs(site_dir, folder, hub_roster) == before:
            break
    return outcome


def _apply_once(site_dir: Path, state_dir: Path, folder: Path, node: str, ansible_playbook: str,
                hub_roster: tuple[Path, str] | None, own: dict) -> Outcome:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    outcome = Outcome()
    if hub_roster is not None and folder.is_dir():
        publish_own(hub_roster[0], folder, hub_roster[1])
    inventory = roster.load_inventory(site_dir / "inventory")
    state = load_state(state_dir)
    hubs, nodes, gone = collect(folder, inventory, state, node, outcome)
    outcome.added = sorted(set(nodes) - set(state["nodes"]))
    outcome.dropped = sorted(set(state["nodes"]) - set(nodes))
    outcome.removed = sorted(set(gone) - set(state["removed"]))
    digest = inventory_digest(site_dir / "inventory")
    request = state_dir / REQUEST_FILE
    requested = request.exists()
    # Nothing from rosters, nothing applied before and no request: the site's own run stands.
    changed = requested or nodes != state["nodes"] or gone != state["removed"] \
        or (bool(nodes or gone) and digest != state.get("inventory"))
    if changed:
        run_inventory = _run_inventory(site_dir / "inventory", state_dir / RUN_INVENTORY, inventory, gone)
        site_vars = yaml.safe_load((site_dir / "inventory" / "group_vars" / "all" / "site.yml").read_text()) or {}
        # 0600: with a node's own keys in it.
        write_atomic(state_dir / OVERLAY_FILE,
                     yaml.safe_dump(overlay(nodes, site_vars, node, own), sort_keys=True).encode(), 0o600)
        listed = {name: {"groups": names, "vars": nodes[name]} for name, names in node_groups(nodes, site_vars).items()}
        write_atomic(state_dir / NODES_FILE, json.dumps(listed, sort_keys=True).encode(), 0o600)
        outcome.ran = True
        outcome.returncode = run_roles(site_dir, state_dir, node, ansible_playbook, run_inventory,
                                       REQUESTED_SKIPPED_TAGS if requested else SKIPPED_TAGS)
        if outcome.returncode != 0:
            return outcome
        request.unlink(missing_ok=True)
    new_state = {"hubs": hubs, "nodes": nodes, "removed": gone,
                 "inventory": digest if changed or state.get("inventory") else None}
    if new_state != state:
        write_atomic(state_dir / STATE_FILE, json.dumps(new_state, sort_keys=True, indent=1).encode(), 0o600)
    return outcome


def _run_inventory(slice_dir: Path, target: Path, inventory: roster.Inventory, gone: dict) -> Path:
    """The inventory the roles run with: the slice itself, or without the nodes rosters removed."""
    if not gone:
        shutil.rmtree(target, ignore_errors=True)
        return slice_dir
    write_run_inventory(slice_dir, target, inventory, gone)
    return target


def clear(state_dir: Path) -> None:
    """Forget every roster taken (a hub that lost its state starts again at serial 1)."""
    shutil.rmtree(state_dir, ignore_errors=True)
