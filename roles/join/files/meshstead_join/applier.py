"""The roster applier (docs/invites.md, "Applying rosters"): a node checks the
rosters its hubs publish against its own inventory and, when they bring nodes
it does not know, applies the site's roles to itself with those nodes added:
the same roles and templates `provision` runs, run locally, so a tinc host
file, a DNS name or a Syncthing device of a joined node is written by the one
renderer there is.

What it works with, all on the node (the roster role puts them there):

    <site>/inventory/            the node's slice of the site inventory, as a seed holds it
    <site>/ansible/              the roles and playbooks (ansible.tar.gz, unpacked)
    <folder>/roster-<hub>.json   the rosters, carried by a Syncthing folder every node shares
    <state>/applied.json         what was applied: per hub the serial and the file's SHA-256,
                                 the nodes taken from rosters, the inventory they were applied with
    <state>/roster.yml           those nodes as an inventory, beside the site's
    <state>/nodes.json           the same, name -> {groups, vars}: the site playbook adds
                                 them to a provision's run, which then renders what the
                                 applier rendered (they are not the controller's until
                                 `meshstead node import`)

A roster is taken only when the run of the roles with it succeeded: a failed
run leaves applied.json as it was, and the next trigger (a new file, the
timer) tries again."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import groups, roster
from .state import write_atomic

STATE_FILE = "applied.json"
OVERLAY_FILE = "roster.yml"
NODES_FILE = "nodes.json"
LOG_FILE = "apply.log"
# What the node's own runs leave to the controller: the hub's kit and this
# slice come from the controller's inventory, not from rosters, and a run
# from an older slice must never put back an older kit (a revocation).
SKIPPED_TAGS = "join,roster"
RUNS = 3  # runs in a row at most, while the slice or the folder changes under a run
PREFIX, SUFFIX = "roster-", ".json"


@dataclass
class Outcome:
    taken: dict = field(default_factory=dict)  # hub -> serial of a roster taken this time
    added: list = field(default_factory=list)  # names of nodes new to this node
    dropped: list = field(default_factory=list)  # names no longer taken from rosters (imported, removed)
    messages: list = field(default_factory=list)  # one line per refused roster or entry
    ran: bool = False  # the roles ran
    returncode: int = 0


def roster_file(hub: str) -> str:
    return f"{PREFIX}{hub}{SUFFIX}"


def load_state(state_dir: Path) -> dict:
    try:
        state = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"hubs": {}, "nodes": {}, "inventory": None}
    if not isinstance(state, dict) or not isinstance(state.get("hubs"), dict) \
            or not isinstance(state.get("nodes"), dict):
        raise roster.RosterError("state", f"{Path(state_dir) / STATE_FILE} is damaged; expected hubs and nodes")
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


def collect(folder: Path, inventory: roster.Inventory, state: dict, outcome: Outcome) -> tuple[dict, dict]:
    """(hubs, nodes) as they would be with every acceptable roster of the
    folder taken: per hub {serial, sha256}; name -> entry of the nodes the
    site inventory lacks."""
    hubs = {hub: dict(seen) for hub, seen in state["hubs"].items()}
    nodes = dict(state["nodes"])
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
            checked = roster.check(data, _with_nodes(inventory, nodes), seen["serial"])
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
        for name in checked.removed:
            if name in nodes:
                del nodes[name]
    # The site inventory wins: an imported node is the controller's now.
    for name in [n for n in nodes if n in inventory.nodes]:
        del nodes[name]
    return hubs, nodes


def node_groups(nodes: dict, site_vars: dict) -> dict:
    """name -> the groups hosts.yml would list the node in."""
    networks, services = site_vars.get("site_overlay") or [], site_vars.get("site_services") or []
    return {name: groups.node_groups(entry["node_platform"], entry["node_roles"], networks, services)
            for name, entry in sorted(nodes.items())}


def overlay(nodes: dict, site_vars: dict) -> dict:
    """The nodes taken from rosters as an inventory file: their groups, as
    hosts.yml would list them, and their variables as host variables."""
    hosts = {"all": {"hosts": {name: dict(entry) for name, entry in sorted(nodes.items())}, "children": {}}}
    for name, names in node_groups(nodes, site_vars).items():
        for group in names:
            hosts["all"]["children"].setdefault(group, {"hosts": {}})["hosts"][name] = None
    return hosts


def run_roles(site_dir: Path, state_dir: Path, node: str, ansible_playbook: str) -> int:
    """The site playbook for this node alone, locally, with the roster's nodes beside the site's."""
    tree, home = site_dir / "ansible", state_dir / "ansible-home"
    env = {**os.environ, "ANSIBLE_CONFIG": str(tree / "ansible.cfg"), "ANSIBLE_HOME": str(home),
           "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp")}
    for name in ("MESHSTEAD_EVENTS", "MESHSTEAD_EVENTS_FD"):
        env.pop(name, None)
    argv = [ansible_playbook, "-i", str(site_dir / "inventory"), "-i", str(state_dir / OVERLAY_FILE),
            "-c", "local", "--limit", node, "--skip-tags", SKIPPED_TAGS, str(tree / "playbooks" / "site.yml")]
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
          hub_roster: tuple[Path, str] | None = None) -> Outcome:
    """Take what the folder's rosters add and run the roles with it when the
    node's view of the site changed; again (up to RUNS times) when the slice
    or a roster changed during a run, which the run may have missed.
    RosterError if the inventory or the state cannot be read."""
    site_dir, state_dir, folder = Path(site_dir), Path(state_dir), Path(folder)
    outcome = Outcome()
    for _ in range(RUNS):
        before = _inputs(site_dir, folder, hub_roster)
        once = _apply_once(site_dir, state_dir, folder, node, ansible_playbook, hub_roster)
        outcome.taken.update(once.taken)
        outcome.added = sorted(set(outcome.added) | set(once.added))
        outcome.dropped = sorted(set(outcome.dropped) | set(once.dropped))
        outcome.messages += once.messages
        outcome.ran = outcome.ran or once.ran
        outcome.returncode = once.returncode
        if once.returncode != 0 or not once.ran or _inputs(site_dir, folder, hub_roster) == before:
            break
    return outcome


def _apply_once(site_dir: Path, state_dir: Path, folder: Path, node: str, ansible_playbook: str,
                hub_roster: tuple[Path, str] | None) -> Outcome:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    outcome = Outcome()
    if hub_roster is not None and folder.is_dir():
        publish_own(hub_roster[0], folder, hub_roster[1])
    inventory = roster.load_inventory(site_dir / "inventory")
    state = load_state(state_dir)
    hubs, nodes = collect(folder, inventory, state, outcome)
    outcome.added = sorted(set(nodes) - set(state["nodes"]))
    outcome.dropped = sorted(set(state["nodes"]) - set(nodes))
    digest = inventory_digest(site_dir / "inventory")
    # Nothing from rosters and nothing applied before: the site's own run stands.
    changed = nodes != state["nodes"] or (bool(nodes) and digest != state.get("inventory"))
    if changed:
        site_vars = yaml.safe_load((site_dir / "inventory" / "group_vars" / "all" / "site.yml").read_text()) or {}
        write_atomic(state_dir / OVERLAY_FILE, yaml.safe_dump(overlay(nodes, site_vars), sort_keys=True).encode(),
                     0o600)
        listed = {name: {"groups": names, "vars": nodes[name]} for name, names in node_groups(nodes, site_vars).items()}
        write_atomic(state_dir / NODES_FILE, json.dumps(listed, sort_keys=True).encode(), 0o600)
        outcome.ran = True
        outcome.returncode = run_roles(site_dir, state_dir, node, ansible_playbook)
        if outcome.returncode != 0:
            return outcome
    new_state = {"hubs": hubs, "nodes": nodes, "inventory": digest if changed or state.get("inventory") else None}
    if new_state != state:
        write_atomic(state_dir / STATE_FILE, json.dumps(new_state, sort_keys=True, indent=1).encode(), 0o600)
    return outcome


def clear(state_dir: Path) -> None:
    """Forget every roster taken (a hub that lost its state starts again at serial 1)."""
    shutil.rmtree(state_dir, ignore_errors=True)
