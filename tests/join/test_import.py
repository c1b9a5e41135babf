"""`node import`'s merge: the nodes a real hub admitted (its own export of
its state), brought into the real site, which then renders them as nodes
without private keys; whatever does not fit the site is refused, changing
nothing."""

import pytest
import yaml

from tests.join.helpers import client, quick, snapshot
from wizard import sites
from wizard.errors import MeshsteadError
from wizard.invites import imports, token
from wizard.load import load_site
from wizard.nodeside import module

State = module("state").State


def _joined(hub, identities, names=("garden",)) -> dict:
    for name, identity in zip(names, identities, strict=False):
        client.join(hub.invite(name), identity, **quick())
    return {"hilltop": State(hub.state_dir).export()}


def _import(hub, records) -> imports.Merged:
    opened = hub.opened()
    merged = imports.merge(opened.site, records)
    sites.commit(opened, sites.plan(opened))
    return merged


def test_a_joined_node_enters_the_inventory_without_private_keys(hub, identities):
    text = hub.invite("garden")
    client.join(text, identities[0], **quick())
    records = {"hilltop": State(hub.state_dir).export()}
    merged = _import(hub, records)
    assert [n.name for n in merged.added] == ["garden"]
    site = load_site(hub.site_dir)
    garden = site.nodes["garden"]
    recorded = records["hilltop"]["joined"]["garden"]
    assert (garden.index, garden.platform, garden.roles, garden.has_secrets) == (3, "rpi4", ["dns"], False)
    assert site.node_facts(garden) == recorded  # index, addresses and identity as the hub gave them
    assert not (hub.site_dir / "host_vars/garden/vault.yml").exists()
    node_yml = yaml.safe_load((hub.site_dir / "host_vars/garden/node.yml").read_text())
    assert node_yml["meshstead_keys_on_node"] is True and "tinc_private_key" not in node_yml
    hosts = (hub.site_dir / "hosts.yml").read_text()
    assert "garden" in hosts
    invite = next(r for r in site.invites if r.id == token.decode(text, hub.site_key(), 0).id)
    assert invite.used_by == "garden" and invite.used_at == records["hilltop"]["used"][invite.id]["at"]
    # Again: nothing new, nothing written.
    before = snapshot(hub.site_dir)
    again = _import(hub, {"hilltop": State(hub.state_dir).export()})
    assert (again.added, again.known, again.used) == ([], ["garden"], [])
    assert snapshot(hub.site_dir) == before


def test_an_index_the_controller_gave_meanwhile_is_refused(hub, identities):
    records = _joined(hub, identities)
    opened = hub.opened()
    sites.add_node(opened, "shed", "amd64", [])  # index 3 too: the controller did not know of garden
    sites.commit(opened, sites.plan(opened))
    before = snapshot(hub.site_dir)
    with pytest.raises(MeshsteadError, match="node garden joined at hilltop with index 3, which shed has"):
        _import(hub, records)
    assert snapshot(hub.site_dir) == before


def test_a_record_that_is_not_this_site_s_plan_is_refused(hub, identities):
    records = _joined(hub, identities)
    records["hilltop"]["joined"]["garden"]["node_mesh_ipv4"] = "192.0.2.7"
    with pytest.raises(MeshsteadError, match="index 3 and its addresses are not this site's plan"):
        imports.merge(hub.opened().site, records)
    records = _joined(hub, identities[1:], names=("orchard",))
    records["hilltop"]["joined"]["orchard"]["tinc_public_key"] = "not a key"
    with pytest.raises(MeshsteadError, match="node orchard \\(joined at hilltop\\): tinc_public_key"):
        imports.merge(hub.opened().site, records)
