"""The roster applier on a node (cabin): real joins at a real hub (hilltop)
make its roster; the applier takes it from the folder and runs the real
ansible-playbook, locally, with the node's inventory and the nodes the roster
adds. A probe playbook in place of the site's records what Ansible saw: the
groups and variables the roles would render from. With a third node, barn,
the site's removal of one of the node's own inventory nodes reaches it through
the hub's roster."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT, run_cli
from tests.join.helpers import client, quick, service
from wizard import nodeside, sites
from wizard.images import seed as image_seed
from wizard.invites import imports

applier = nodeside.module("applier")
ownkeys = nodeside.module("ownkeys")
PRIVATE_NODE_VARS = nodeside.module("keys").PRIVATE_NODE_VARS
roster = nodeside.module("roster")
State = nodeside.module("state").State
NODE = "cabin"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PROBE = """\
- name: What the roles would see
  hosts: all
  gather_facts: false
  tasks:
    - name: Fail when asked to
      ansible.builtin.fail:
        msg: the probe was told to fail
      when: lookup('ansible.builtin.env', 'PROBE_FAIL', default='') != ''
    - name: Record the groups and the hosts' variables
      ansible.builtin.copy:
        content: "{{ {'groups': groups, 'nodes': dict(groups['all'] | zip(groups['all'] | map('extract', hostvars)
                     | map(attribute='node_index'))), 'connection': ansible_connection,
                     'own_key': vault_tinc_private_key is defined,
                     'tinc_key': tinc_private_key | default(None),
                     'mesh_interface': meshstead_mesh_interface | default(None),
                     'skipped': ansible_skip_tags | sort,
                     'removed': site_removed_nodes | default({}),
                     'blocked': site_removed_addresses | default([])} | to_json }}"
        dest: "{{ playbook_dir }}/../seen.json"
        mode: "0600"
"""


def _run(site: Path, state: Path, folder: Path, *extra, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "roles" / "join" / "files"), **(env or {})}
    argv = [sys.executable, "-m", "meshstead_join", "roster", "apply", "--folder", str(folder), "--node", NODE,
            "--site", str(site), "--state", str(state), "--ansible-playbook", ANSIBLE_PLAYBOOK, *map(str, extra)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def _write_slice(hub, site: Path) -> None:
    """cabin's slice of the hub's site, as the roster role writes it at a provision (in place of the last)."""
    shutil.rmtree(site / "inventory", ignore_errors=True)
    files, _ = image_seed.files(hub.opened(), NODE)
    for rel, data in files.items():
        if rel.startswith("inventory/"):
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (site / "inventory/host_vars" / NODE / "firstboot.yml").unlink()
    (site / "inventory/host_vars" / NODE / "self.yml").write_text(yaml.safe_dump(
        {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}))


@pytest.fixture
def node(hub, tmp_path):
    """cabin's slice of the site as the roster role writes it, the probe as its roles, an empty folder."""
    site = tmp_path / "node" / "site"
    _write_slice(hub, site)
    (site / "ansible/playbooks").mkdir(parents=True)
    (site / "ansible/ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (site / "ansible/playbooks/site.yml").write_text(PROBE)
    folder = tmp_path / "node" / "folder"
    folder.mkdir()
    return {"site": site, "state": tmp_path / "node" / "state", "folder": folder,
            "seen": site / "ansible" / "seen.json"}


def _carry(hub, node) -> None:
    """What Syncthing does: the hub's roster arrives in the node's folder."""
    shutil.copyfile(hub.state_dir / "roster.json", node["folder"] / "roster-hilltop.json")


def _carry_and_apply(hub, node) -> subprocess.CompletedProcess:
    """The hub's roster arrives and the node's applier runs, successfully."""
    _carry(hub, node)
    done = _run(node["site"], node["state"], node["folder"])
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _seen(node) -> dict:
    seen = json.loads(node["seen"].read_text())
    node["seen"].unlink()
    return seen


def test_the_roles_run_with_the_nodes_the_roster_adds_and_once_only(hub, identities, node):
    for i, name in enumerate(("garden", "shed")):
        client.join(hub.invite(name), identities[i], **quick())
    done = _carry_and_apply(hub, node)
    assert "took the roster of hilltop, serial 2" in done.stdout
    assert "nodes from rosters: added garden, shed; dropped none" in done.stdout
    seen = _seen(node)
    # The hub gave them indexes 3 and 4; they are in the groups the roles render peers from.
    assert seen["nodes"] == {"hilltop": 1, "cabin": 2, "garden": 3, "shed": 4}
    assert {"garden", "shed"} <= set(seen["groups"]["tinc_nodes"]) & set(seen["groups"]["dns_servers"])
    assert seen["connection"] == "local" and seen["own_key"]
    applied = json.loads((node["state"] / "applied.json").read_text())
    assert applied["hubs"]["hilltop"]["serial"] == 2 and sorted(applied["nodes"]) == ["garden", "shed"]
    assert (node["state"] / "applied.json").stat().st_mode & 0o777 == 0o600
    # What a provision's run adds to its inventory (playbooks/site.yml).
    listed = json.loads((node["state"] / "nodes.json").read_text())
    assert listed["garden"]["vars"]["node_index"] == 3 and set(listed) == {"garden", "shed"}
    assert set(listed["garden"]["groups"]) == set(seen["groups"]) & {
        g for g, members in seen["groups"].items() if "garden" in members} - {"all", "ungrouped"}
    # Nothing new: the roles do not run again.
    again = _run(node["site"], node["state"], node["folder"])
    assert again.returncode == 0 and "nothing to apply" in again.stdout, again.stdout + again.stderr
    assert not node["seen"].exists()
    # A third join: the next roster adds orchard only.
    client.join(hub.invite("orchard"), identities[2], **quick())
    _carry(hub, node)
    third = _run(node["site"], node["state"], node["folder"])
    assert "took the roster of hilltop, serial 3" in third.stdout and "added orchard;" in third.stdout, third.stdout
    assert _seen(node)["nodes"]["orchard"] == 5


def test_a_failed_run_takes_nothing_and_the_next_try_takes_it(hub, identities, node):
    client.join(hub.invite("garden"), identities[0], **quick())
    _carry(hub, node)
    done = _run(node["site"], node["state"], node["folder"], env={"PROBE_FAIL": "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the roles failed" in done.stderr and "the rosters are taken at the next try" in done.stderr
    assert not (node["state"] / "applied.json").exists()
    assert "the probe was told to fail" in (node["state"] / "apply.log").read_text()
    retried = _run(node["site"], node["state"], node["folder"])
    assert retried.returncode == 0 and "added garden" in retried.stdout, retried.stdout + retried.stderr
    assert _seen(node)["nodes"]["garden"] == 3


def test_a_changed_roster_is_refused_and_applies_nothing(hub, identities, node):
    client.join(hub.invite("garden"), identities[0], **quick())
    data = bytearray((hub.state_dir / "roster.json").read_bytes())
    data[-10] ^= 1  # in the signature's base64
    (node["folder"] / "roster-hilltop.json").write_bytes(bytes(data))
    done = _run(node["site"], node["state"], node["folder"])
    assert done.returncode == 0, done.stderr
    assert "roster-hilltop.json: refused: " in done.stderr and "nothing to apply" in done.stdout
    assert not node["seen"].exists() and not (node["state"] / "applied.json").exists()


def test_a_roster_under_another_hubs_name_is_refused(hub, identities, node):
    client.join(hub.invite("garden"), identities[0], **quick())
    shutil.copyfile(hub.state_dir / "roster.json", node["folder"] / "roster-cabin.json")
    done = _run(node["site"], node["state"], node["folder"])
    assert "roster-cabin.json: refused: hub: it holds hilltop's roster" in done.stderr, done.stderr
    assert "nothing to apply" in done.stdout


def test_the_inventory_wins_once_a_node_is_imported_and_a_provision_calls_for_a_run(hub, identities, node):
    client.join(hub.invite("garden"), identities[0], **quick())
    _carry(hub, node)
    assert _run(node["site"], node["state"], node["folder"]).returncode == 0
    _seen(node)
    # `node import` and a provision put garden into the node's own inventory.
    joined = yaml.safe_load((hub.state_dir / "joined" / "garden.yml").read_text())
    (node["site"] / "inventory/host_vars/garden").mkdir()
    (node["site"] / "inventory/host_vars/garden/node.yml").write_text(yaml.safe_dump(joined))
    hosts = yaml.safe_load((node["site"] / "inventory/hosts.yml").read_text())
    for group in ("debian", "dns_servers", "tinc_nodes"):
        entry = hosts["all"]["children"].get(group) or {}
        entry.setdefault("hosts", {})["garden"] = None
        hosts["all"]["children"][group] = entry
    (node["site"] / "inventory/hosts.yml").write_text(yaml.safe_dump(hosts))
    done = _run(node["site"], node["state"], node["folder"])
    assert done.returncode == 0 and "dropped garden" in done.stdout, done.stdout + done.stderr
    assert _seen(node)["nodes"]["garden"] == 3
    assert json.loads((node["state"] / "applied.json").read_text())["nodes"] == {}


def test_a_hub_copies_its_own_roster_into_the_folder_as_syncthing_may_send_it(hub, identities, node):
    client.join(hub.invite("garden"), identities[0], **quick())
    done = _run(node["site"], node["state"], node["folder"], "--hub-roster", hub.state_dir / "roster.json",
                "--hub", "hilltop")
    assert done.returncode == 0, done.stderr
    carried = node["folder"] / "roster-hilltop.json"
    assert carried.read_bytes() == (hub.state_dir / "roster.json").read_bytes()
    assert carried.stat().st_mode & 0o777 == 0o664
    assert not [p for p in node["folder"].parent.iterdir() if p.name.endswith(".tmp")]
    assert "added garden" in done.stdout


@pytest.fixture
def barn(hub):
    """A third node of the site (index 3), added on the controller and known to the hub's kit."""
    opened = hub.opened()
    sites.add_node(opened, "barn", "amd64", [])
    sites.commit(opened, sites.plan(opened))
    hub.write_kit()
    return yaml.safe_load((hub.site_dir / "host_vars/barn/node.yml").read_text())


@pytest.fixture
def barn_node(barn, node, hub):
    """cabin's slice with barn in it: cabin was provisioned while barn was a node."""
    _write_slice(hub, node["site"])
    return node


def _remove_and_restart(hub, name: str) -> dict:
    """`meshstead node remove`, then what a provision of the hub does: the new kit,
    and the join service restarted with it. The controller's removed.yml."""
    result = run_cli("node", "remove", name, "--site", hub.site_dir)
    assert result.returncode == 0, result.stderr
    hub.write_kit()
    service.Hub(hub.kit_dir, hub.state_dir, hub.cert.read_bytes(), key_pem=hub.key.read_bytes()).start()
    return yaml.safe_load((hub.site_dir / "group_vars/all/removed.yml").read_text())


def _in_groups(seen: dict, name: str) -> list:
    return sorted(group for group, members in seen["groups"].items() if name in members)


def test_a_removal_reaches_the_slice_s_own_nodes_through_a_hub_that_admitted_none(hub, barn, barn_node):
    node = barn_node
    first = _run(node["site"], node["state"], node["folder"])
    assert "nothing to apply" in first.stdout, first.stdout + first.stderr
    # The hub admitted nobody; its restart with the new kit publishes the removal all the same.
    recorded = _remove_and_restart(hub, "barn")
    done = _carry_and_apply(hub, node)
    assert "took the roster of hilltop, serial 1" in done.stdout
    assert "removed by rosters: barn" in done.stdout
    seen = _seen(node)
    assert seen["nodes"] == {"hilltop": 1, "cabin": 2} and _in_groups(seen, "barn") == []
    # Exactly what the controller wrote for the removal: every role drops barn as a provision would.
    assert seen["removed"] == recorded["site_removed_nodes"]
    assert seen["blocked"] == recorded["site_removed_addresses"]
    assert f"{barn['node_mesh_ipv4']}/32" in seen["blocked"] and f"{barn['yggdrasil_address']}/128" in seen["blocked"]
    assert seen["connection"] == "local" and seen["own_key"]
    applied = json.loads((node["state"] / "applied.json").read_text())
    assert applied["removed"] == {"barn": {"node_index": 3, "at": recorded["site_removed_nodes"]["barn"]["removed_at"],
                                           "hub": "hilltop"}}
    assert "barn" not in json.loads((node["state"] / "nodes.json").read_text())
    # Taken: the roles do not run again for it.
    again = _run(node["site"], node["state"], node["folder"])
    assert "nothing to apply" in again.stdout and "removed by rosters" not in again.stdout, again.stdout
    assert not node["seen"].exists()
    # A provision brings the controller's inventory: the site's own record gives the same run.
    _write_slice(hub, node["site"])
    provisioned = _run(node["site"], node["state"], node["folder"])
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    assert _seen(node) == seen
    assert json.loads((node["state"] / "applied.json").read_text())["removed"] == {}
    assert not (node["state"] / "inventory").exists()


def test_a_removal_of_a_joined_node_and_of_an_inventory_node_in_one_roster(hub, identities, barn, barn_node):
    node = barn_node
    client.join(hub.invite("garden"), identities[0], **quick())
    _carry(hub, node)
    assert "added garden" in _run(node["site"], node["state"], node["folder"]).stdout
    assert _seen(node)["nodes"]["garden"] == 4
    opened = hub.opened()
    imports.merge(opened.site, {"hilltop": State(hub.state_dir).export()})
    sites.commit(opened, sites.plan(opened))
    _remove_and_restart(hub, "garden")
    recorded = _remove_and_restart(hub, "barn")
    done = _carry_and_apply(hub, node)
    assert "dropped garden" in done.stdout and "removed by rosters: barn" in done.stdout, done.stdout
    seen = _seen(node)
    assert seen["nodes"] == {"hilltop": 1, "cabin": 2}
    # garden never was in the slice: only barn's removal is recorded (the slice's own record lacks garden's too).
    assert list(seen["removed"]) == ["barn"] and seen["removed"]["barn"] == recorded["site_removed_nodes"]["barn"]
    assert json.loads((node["state"] / "nodes.json").read_text()) == {}


def _signed_roster(hub, node, serial: int, removed: dict) -> None:
    """A roster hilltop signs with its join key, removing `removed`, in the node's folder."""
    site_id = yaml.safe_load((hub.site_dir / "group_vars/all/site.yml").read_text())["meshstead_site_id"]
    key = serialization.load_pem_private_key(hub.key.read_bytes(), None)
    document = roster.document(site_id, "hilltop", serial, "2026-12-04T09:00:00Z", {}, removed)
    (node["folder"] / "roster-hilltop.json").write_bytes(roster.sign(document, key))


@pytest.mark.parametrize("removed, refusal", [
    ({"nowhere": {"node_index": 9, "at": "2026-12-04T09:00:00Z"}}, None),
    ({"barn": {"node_index": 7, "at": "2026-12-04T09:00:00Z"}}, "its index 7 is not that of barn here (index 3)"),
    ({"cabin": {"node_index": 2, "at": "2026-12-04T09:00:00Z"}}, "it is this node"),
    ({"hilltop": {"node_index": 1, "at": "2026-12-04T09:00:00Z"}}, "the roster's own hub"),
])
def test_a_removal_of_an_unknown_name_a_wrong_index_the_node_itself_or_its_hub_changes_nothing(
        hub, barn, barn_node, removed, refusal):
    node = barn_node
    _signed_roster(hub, node, 1, removed)
    done = _run(node["site"], node["state"], node["folder"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "took the roster of hilltop, serial 1" in done.stdout and "nothing to apply" in done.stdout, done.stdout
    name = next(iter(removed))
    if refusal:
        assert f"roster-hilltop.json: refused the removal of {name}: {refusal}" in done.stderr, done.stderr
    else:
        assert "refused" not in done.stderr, done.stderr
    assert not node["seen"].exists()
    assert json.loads((node["state"] / "applied.json").read_text())["removed"] == {}


def _provision_view(node) -> dict:
    """What a provision's run sees on this node: site.yml's own tasks that add
    the nodes taken from rosters (read from the playbook, as they are), then
    the probe's record, run with the node's slice as the inventory."""
    play = next(p for p in yaml.safe_load((ROOT / "playbooks/site.yml").read_text()) if p.get("pre_tasks"))
    wanted = ("Read the nodes this node took from its hubs' rosters", "Add the nodes taken from rosters to this run")
    probe = yaml.safe_load(PROBE)[0]
    probe["vars"] = {"meshstead_roster_nodes_file": str(node["state"] / applier.NODES_FILE)}
    probe["tasks"] = [t for t in play["pre_tasks"] if t["name"] in wanted] + probe["tasks"][1:]
    assert len(probe["tasks"]) == 3
    playbook = node["site"] / "ansible/playbooks/provision.yml"
    playbook.write_text(yaml.safe_dump([probe], sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(node["site"] / "ansible/ansible.cfg")}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(node["site"] / "inventory"), "-c", "local", "--limit", NODE,
                           str(playbook)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return _seen(node)


def test_a_provision_keeps_the_nodes_taken_from_rosters_but_never_one_the_site_removed(hub, identities, node):
    client.join(hub.invite("garden"), identities[0], **quick())
    assert "added garden" in _carry_and_apply(hub, node).stdout
    _seen(node)
    assert _in_groups(_provision_view(node), "garden") != []
    # The controller imports garden and removes it; the provision comes before cabin took the roster with the
    # removal, so cabin's nodes.json still lists garden.
    opened = hub.opened()
    imports.merge(opened.site, {"hilltop": State(hub.state_dir).export()})
    sites.commit(opened, sites.plan(opened))
    _remove_and_restart(hub, "garden")
    _write_slice(hub, node["site"])
    assert "garden" in json.loads((node["state"] / applier.NODES_FILE).read_text())
    seen = _provision_view(node)
    assert _in_groups(seen, "garden") == [] and "garden" in seen["removed"]
    # The applier after that provision, before the roster with the removal arrives: the slice's own
    # record of the removal takes garden out of what cabin took from rosters, or cabin would render
    # it again and the next provision would take it out again.
    done = _run(node["site"], node["state"], node["folder"])
    assert done.returncode == 0 and "dropped garden" in done.stdout, done.stdout + done.stderr
    assert "garden" not in json.loads((node["state"] / applier.NODES_FILE).read_text())
    assert _in_groups(_seen(node), "garden") == []


def _as_a_provision_sends_it(node) -> None:
    """cabin's slice as a provision sends it to a node that joined by
    invite: no private keys (the controller has none) and a request to run."""
    own = node["site"] / "inventory" / "host_vars" / NODE
    facts = yaml.safe_load((own / "node.yml").read_text())
    facts = {k: v for k, v in facts.items() if k not in PRIVATE_NODE_VARS}
    (own / "node.yml").write_text(yaml.safe_dump({**facts, "meshstead_keys_on_node": True}))
    (own / "secrets.yml").write_text("{}\n")
    node["state"].mkdir(parents=True, exist_ok=True)
    (node["state"] / applier.REQUEST_FILE).touch()


def test_a_node_with_its_own_keys_runs_the_roles_a_provision_asks_for_with_them(node, tmp_path):
    joined = tmp_path / "join"
    _public, private, _made = ownkeys.load_or_make(joined, NODE)
    ownkeys.keep_local(joined, {"meshstead_mesh_interface": "eth0"})
    assert (joined / ownkeys.LOCAL_FILE).stat().st_mode & 0o777 == 0o644
    _as_a_provision_sends_it(node)
    # No roster and nothing applied before: only the request makes the run; it
    # fails, the request stays for the next try.
    failed = _run(node["site"], node["state"], node["folder"], "--own", joined, env={"PROBE_FAIL": "1"})
    assert failed.returncode == 1 and "the roles failed" in failed.stderr, failed.stdout + failed.stderr
    assert (node["state"] / applier.REQUEST_FILE).exists()
    done = _run(node["site"], node["state"], node["folder"], "--own", joined)
    assert done.returncode == 0 and "applied the roles" in done.stdout, done.stdout + done.stderr
    seen = _seen(node)
    # Its own key and the settings it joined with; the join role runs from the provision's slice.
    assert seen["tinc_key"] == private["tinc_private_key"] and seen["mesh_interface"] == "eth0"
    assert seen["skipped"] == ["roster"]
    assert not (node["state"] / applier.REQUEST_FILE).exists()
    assert (node["state"] / applier.OVERLAY_FILE).stat().st_mode & 0o777 == 0o600
    # Done: the next start runs nothing.
    again = _run(node["site"], node["state"], node["folder"], "--own", joined)
    assert "nothing to apply" in again.stdout and not node["seen"].exists(), again.stdout
    # A controller's local.yml for the node wins over the settings it joined with;
    # a run that rosters start skips the join role too.
    (node["site"] / "inventory" / "host_vars" / NODE / "local.yml").write_text("meshstead_mesh_interface: wlan0\n")
    (node["state"] / applier.REQUEST_FILE).touch()
    _run(node["site"], node["state"], node["folder"], "--own", joined)
    assert _seen(node)["mesh_interface"] == "wlan0"


def test_a_node_whose_keys_came_with_its_seed_adds_nothing_of_its_own(node, tmp_path):
    (node["state"]).mkdir(parents=True)
    (node["state"] / applier.REQUEST_FILE).touch()
    done = _run(node["site"], node["state"], node["folder"], "--own", tmp_path / "no-join-state")
    assert done.returncode == 0, done.stdout + done.stderr
    overlay = yaml.safe_load((node["state"] / applier.OVERLAY_FILE).read_text())
    assert NODE not in overlay["all"]["hosts"]
    assert _seen(node)["own_key"]  # from the slice, as a provision of a node with a vault writes it


def test_unreadable_own_keys_are_one_line_and_run_nothing(node, tmp_path):
    joined = tmp_path / "join"
    joined.mkdir()
    (joined / ownkeys.KEYS_FILE).write_text("public: {}\n")
    _as_a_provision_sends_it(node)
    done = _run(node["site"], node["state"], node["folder"], "--own", joined)
    assert done.returncode == 1 and not node["seen"].exists()
    assert len(done.stderr.strip().splitlines()) == 1 and "keys.yml cannot be used" in done.stderr, done.stderr
