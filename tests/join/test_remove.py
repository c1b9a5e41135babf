"""A removed node at the hub: the kit carries group_vars/all/removed.yml, and
a real hub on loopback refuses the removed node's name and keys, never gives
its index again, and leaves it out of its answers and its roster; `node
import` skips it."""

import pytest
import yaml

from tests.conftest import run_cli
from tests.join.helpers import client, quick, snapshot
from tests.join.test_join import _refused, _signed
from wizard import sites
from wizard.errors import MeshsteadError
from wizard.invites import imports
from wizard.load import load_site
from wizard.nodeside import module

State = module("state").State
roster = module("roster")
seed = module("seed")
PRIVATE_NODE_VARS = module("keys").PRIVATE_NODE_VARS


def _remove(hub, name, *args) -> None:
    """`meshstead node remove` on the hub's site, then the hub gets the new kit (as `provision` ships it)."""
    result = run_cli("node", "remove", name, *args, "--site", hub.site_dir)
    assert result.returncode == 0, result.stderr
    hub.write_kit()


def _joined_and_imported(hub, identity, name="garden") -> dict:
    client.join(hub.invite(name), identity, **quick())
    records = {"hilltop": State(hub.state_dir).export()}
    opened = hub.opened()
    imports.merge(opened.site, records)
    sites.commit(opened, sites.plan(opened))
    return records


def test_an_index_of_a_node_removed_before_the_hub_saw_it_is_never_given(hub, identities):
    opened = hub.opened()
    sites.add_node(opened, "shed", "amd64", [])  # index 3, in no kit the hub had
    sites.commit(opened, sites.plan(opened))
    _remove(hub, "shed")
    assert (hub.kit_dir / "group_vars/all/removed.yml").is_file()
    answer = client.join(hub.invite("garden"), identities[0], **quick())
    assert answer["node"]["node_index"] == 4
    assert "shed" not in answer["site"]["nodes"]
    # The node learns the removals with the site: its seed carries removed.yml (its firewall drops them).
    recorded = yaml.safe_load((hub.site_dir / "group_vars/all/removed.yml").read_text())
    assert answer["site"]["removed"] == recorded
    files, _private = seed.files(answer, {var: "x" for var in PRIVATE_NODE_VARS})
    assert yaml.safe_load(files["inventory/group_vars/all/removed.yml"]) == recorded


def test_a_removed_node_s_name_and_keys_are_refused(hub, identities):
    _joined_and_imported(hub, identities[0])
    _remove(hub, "garden")
    by_name = _refused(hub, _signed(hub, "garden"), identities[1], "name")
    assert "'garden' is the name of a node the site removed" in by_name
    # Its keys under another name: the node kept them (keys.yml) and joins again.
    for var in ("tinc_public_key", "syncthing_device_id", "join_pin"):
        mixed = {**identities[1]}
        for kept in (var, *{"syncthing_device_id": ("syncthing_cert",),
                            "join_pin": ("join_tls_cert",)}.get(var, ())):
            mixed[kept] = identities[0][kept]
        message = _refused(hub, hub.invite(f"x{len(var)}"), mixed, "identity")
        assert f"its {var} is that of garden, a node the site removed" in message
    # A new node with keys of its own gets an index above garden's, and does not see garden.
    answer = client.join(hub.invite("orchard"), identities[2], **quick())
    assert answer["node"]["node_index"] == 4
    assert "garden" not in answer["site"]["nodes"]


def test_the_roster_leaves_a_removed_node_out_and_names_it_removed(hub, identities, tmp_path):
    client.join(hub.invite("garden"), identities[0], **quick())
    client.join(hub.invite("shed"), identities[1], **quick())
    out = tmp_path / "roster.json"
    key = hub.key.read_bytes()
    first = roster.publish(hub.state_dir, hub.kit_dir, key, out, 0)
    assert (first.serial, first.nodes) == (2, 2)  # the join service published after each join
    stale = out.read_bytes()  # what a hub not provisioned since the removal would still publish
    opened = hub.opened()
    imports.merge(opened.site, {"hilltop": State(hub.state_dir).export()})
    sites.commit(opened, sites.plan(opened))
    _remove(hub, "garden")
    second = roster.publish(hub.state_dir, hub.kit_dir, key, out, 0)
    assert (second.serial, second.nodes, second.changed) == (3, 1, True)
    removed_at = load_site(hub.site_dir).removed["garden"]["removed_at"]
    checked = roster.check(out.read_bytes(), roster.load_inventory(hub.site_dir), after=2)
    assert checked.removed == {"garden": {"node_index": 3, "at": removed_at}}
    assert checked.known == ["shed"] and "garden" not in checked.added
    again = roster.publish(hub.state_dir, hub.kit_dir, key, out, 0)
    assert again.changed is False
    # A node whose inventory has the removal takes the removed node from no roster.
    inventory = roster.load_inventory(hub.site_dir)
    old = roster.check(stale, inventory)
    assert old.refused["garden"].startswith(f"it is a node the site removed ({removed_at})")
    renamed = roster.Inventory(inventory.site_id, inventory.domain, inventory.ipv4_plan, inventory.ipv6_ula,
                               inventory.hubs, {k: v for k, v in inventory.nodes.items() if k != "shed"},
                               {"orchard": inventory.removed["garden"]})
    assert roster.check(stale, renamed).refused["garden"].startswith("its keys are those of orchard")


def test_import_skips_a_node_the_site_removed_and_refuses_its_keys_elsewhere(hub, identities):
    records = _joined_and_imported(hub, identities[0])
    _remove(hub, "garden")
    before = snapshot(hub.site_dir)
    opened = hub.opened()
    merged = imports.merge(opened.site, records)
    assert (merged.added, merged.removed) == ([], ["garden"])
    assert "garden" not in opened.site.nodes
    sites.commit(opened, sites.plan(opened))
    assert snapshot(hub.site_dir) == before
    # A hub that had not had the new kit admitted garden's keys under another name: refused, nothing written.
    shed = {**records["hilltop"]["joined"]["garden"], "node_name": "shed", "node_fqdn": "shed."
            + load_site(hub.site_dir).settings.domain}
    records["hilltop"]["joined"] = {"shed": shed}
    with pytest.raises(MeshsteadError, match="^tinc_public_key: node shed has a key of garden, a removed node"):
        imports.merge(hub.opened().site, records)
    assert snapshot(hub.site_dir) == before


def test_a_damaged_record_of_removals_makes_the_kit_unusable(hub, identities):
    _joined_and_imported(hub, identities[0])
    _remove(hub, "garden")
    text = hub.invite("orchard")  # writes the kit: damage it after
    path = hub.kit_dir / "group_vars/all/removed.yml"
    data = yaml.safe_load(path.read_text())
    data["site_removed_nodes"]["garden"]["node_index"] = "three"
    path.write_text(yaml.safe_dump(data))
    message = _refused(hub, text, identities[1], "kit")
    assert "provision the hub again" in message
