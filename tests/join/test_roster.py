"""The roster: a real hub publishes the nodes it admitted through real joins,
signed with its join key; a node checks it against the site's inventory (the
controller's site directory, or the hub's kit). Whatever is not the hub's
exact bytes, not a hub's, not this site's or not newer is refused as a whole;
an entry that does not fit the site is refused alone."""

import base64
import json
import os
import subprocess
import sys

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.conftest import ROOT
from tests.join.helpers import client, quick, snapshot
from wizard import nodeside, sites
from wizard.identity import join as join_identity
from wizard.identity import node as node_identity
from wizard.invites import imports

roster = nodeside.module("roster")
State = nodeside.module("state").State
seed = nodeside.module("seed")
NAMES = ("garden", "shed", "orchard")


def _run(*args) -> subprocess.CompletedProcess:
    """The node-side command as a node runs it: the package alone on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "roles" / "join" / "files")}
    return subprocess.run([sys.executable, "-m", "meshstead_join", "roster", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=60)


def _join(hub, identities, count: int, first: int = 0) -> None:
    """Nodes join through the hub with real invites: NAMES[first:first + count]."""
    for i in range(first, first + count):
        client.join(hub.invite(NAMES[i]), identities[i], **quick())


def _publish(hub, out, key=None) -> subprocess.CompletedProcess:
    return _run("publish", "--state", hub.state_dir, "--kit", hub.kit_dir, "--key", key or hub.key, "--out", out)


def _refused(result, problem: str, words: str) -> None:
    """Exit 1 with one line naming the problem."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"meshstead-join: roster: {problem}: "), result.stderr
    assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr


def _opened_roster(data: bytes) -> dict:
    envelope = json.loads(data)
    return json.loads(base64.urlsafe_b64decode(envelope["roster"] + "=" * (-len(envelope["roster"]) % 4)))


def _key_of(hub, node: str):
    return load_pem_private_key(sites.node_secrets(hub.opened(), node)["join_tls_key"].encode(), None)


def _published_path(hub, tmp_path):
    out = tmp_path / "roster.json"
    result = _publish(hub, out)
    assert result.returncode == 0, result.stderr
    return out


def _published(hub, tmp_path) -> bytes:
    return _published_path(hub, tmp_path).read_bytes()


def test_a_node_of_the_site_takes_the_nodes_a_hub_admitted(hub, identities, tmp_path):
    _join(hub, identities, 2)
    out = tmp_path / "roster.json"
    result = _publish(hub, out)
    assert result.returncode == 0, result.stderr
    # The join service published it after each join; publishing again makes the same bytes.
    assert "roster of hilltop: serial 2, 2 nodes (unchanged since the last publish)" in result.stderr
    assert out.stat().st_mode & 0o777 == 0o644
    assert (hub.state_dir / "roster.json").read_bytes() == out.read_bytes()
    document = _opened_roster(out.read_bytes())
    joined = State(hub.state_dir).joined()
    assert set(joined) == {"garden", "shed"}
    assert document == {"format": 1, "site_id": hub.opened().site.settings.site_id, "hub": "hilltop", "serial": 2,
                        "issued": document["issued"], "nodes": joined, "removed": {}}
    for inventory in (hub.site_dir, hub.kit_dir):
        before = snapshot(inventory)
        checked = _run("check", out, "--inventory", inventory)
        assert checked.returncode == 0, checked.stderr
        lines = checked.stdout.splitlines()
        assert lines[0].startswith("roster of hilltop, serial 2, issued ") and lines[0].endswith(
            "2 to add, 0 known, 0 refused")
        assert lines[1:] == [f"add garden: index 3, {joined['garden']['node_mesh_ipv4']}, rpi4, roles dns",
                             f"add shed: index 4, {joined['shed']['node_mesh_ipv4']}, rpi4, roles dns"]
        assert snapshot(inventory) == before
    accepted = roster.check(out.read_bytes(), roster.load_inventory(hub.site_dir))
    assert accepted.added == joined and (accepted.known, accepted.refused) == ([], {})


def test_publishing_again_keeps_the_serial_until_a_node_joins(hub, identities, tmp_path):
    _join(hub, identities, 1)
    out = tmp_path / "roster.json"
    first = _published(hub, tmp_path)
    again = _publish(hub, out)
    assert "serial 1, 1 nodes (unchanged since the last publish)" in again.stderr
    assert out.read_bytes() == first  # the same bytes: a carrier syncs nothing
    _join(hub, identities, 1, first=1)
    newer = _publish(hub, out)
    assert "serial 2, 2 nodes (unchanged since the last publish)" in newer.stderr  # the service's, after the join
    assert (hub.state_dir / "roster.json").read_bytes() == out.read_bytes()
    assert _run("check", out, "--inventory", hub.site_dir, "--after", 1).returncode == 0
    _refused(_run("check", out, "--inventory", hub.site_dir, "--after", 2), "replay",
             "serial 2 is not above 2, the last accepted from hilltop; a replayed or older roster")
    older = tmp_path / "older.json"
    older.write_bytes(first)
    _refused(_run("check", older, "--inventory", hub.site_dir, "--after", 2), "replay", "serial 1 is not above 2")


def _changed(data: bytes, where: str) -> bytes:
    """One byte of the signed document or of the signature changed, the rest as the hub wrote it."""
    envelope = json.loads(data)
    raw = bytearray(base64.urlsafe_b64decode(envelope[where] + "=" * (-len(envelope[where]) % 4)))
    at = raw.find(b"rpi4") if where == "roster" else 10
    raw[at] ^= 0x01  # rpi4 -> spi4: still JSON, still a document
    envelope[where] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("where", ["roster", "signature"])
def test_a_changed_byte_is_refused(hub, identities, tmp_path, where):
    _join(hub, identities, 1)
    path = tmp_path / "changed.json"
    path.write_bytes(_changed(_published(hub, tmp_path), where))
    _refused(_run("check", path, "--inventory", hub.site_dir), "signature",
             "the roster was changed (its signature does not verify with hilltop's join key)")


def test_a_node_that_is_not_a_hub_cannot_publish_or_sign_a_roster(hub, identities, tmp_path):
    _join(hub, identities, 1)
    cabin_key = tmp_path / "cabin.key"
    cabin_key.write_text(sites.node_secrets(hub.opened(), "cabin")["join_tls_key"])
    _refused(_publish(hub, tmp_path / "cabin.json", key=cabin_key), "key",
             "the key is cabin's join key, and cabin is not a hub of the site")
    document = _opened_roster(_published(hub, tmp_path))
    path = tmp_path / "forged.json"
    path.write_bytes(roster.sign({**document, "hub": "cabin"}, _key_of(hub, "cabin")))
    _refused(_run("check", path, "--inventory", hub.site_dir), "hub",
             "signed as cabin's, which is a node of this site but not a hub")
    path.write_bytes(roster.sign(document, _key_of(hub, "cabin")))  # names hilltop, signed by cabin
    _refused(_run("check", path, "--inventory", hub.site_dir), "signature",
             "does not verify with hilltop's join key")


def test_another_site_s_roster_is_refused(hub, identities, tmp_path):
    _join(hub, identities, 1)
    document = {**_opened_roster(_published(hub, tmp_path)), "site_id": "0" * 32}
    other_hub = load_pem_private_key(join_identity.generate("hilltop.other.internal")[1]["join_tls_key"].encode(),
                                     None)
    path = tmp_path / "other.json"
    for key in (other_hub, _key_of(hub, "hilltop")):  # its own hub's key; this hub's (a kit of the other site)
        path.write_bytes(roster.sign(document, key))
        _refused(_run("check", path, "--inventory", hub.site_dir), "site",
                 f"the roster is of another site ('{'0' * 32}'); expected one of site "
                 f"{hub.opened().site.settings.site_id}")


def test_what_is_no_roster_of_this_format_is_refused(hub, identities, tmp_path):
    _join(hub, identities, 1)
    document = _opened_roster(_published(hub, tmp_path))
    key = _key_of(hub, "hilltop")
    path = tmp_path / "bad.json"
    path.write_text("meshstead1:not a roster")
    _refused(_run("check", path, "--inventory", hub.site_dir), "malformed", "not a roster file")
    path.write_bytes(roster.sign({**document, "format": 2}, key))
    _refused(_run("check", path, "--inventory", hub.site_dir), "version", "roster format 2 is not one")
    # Signed, but not the one byte form: a reader must not have to guess what was meant.
    signed = json.dumps(document, indent=1).encode()
    path.write_text(json.dumps({"roster": base64.urlsafe_b64encode(signed).decode().rstrip("="),
                                "signature": base64.urlsafe_b64encode(key.sign(signed)).decode().rstrip("=")}))
    _refused(_run("check", path, "--inventory", hub.site_dir), "malformed", "not the canonical JSON")


def _damage(hub, name: str, **changes) -> None:
    """A record in the hub's state changed behind its back: the hub then signs it."""
    path = hub.state_dir / "joined" / f"{name}.yml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}, sort_keys=False))


def test_an_entry_that_does_not_fit_the_site_is_refused_and_the_rest_taken(hub, identities, tmp_path):
    _join(hub, identities, 3)
    _damage(hub, "garden", nncp_id=identities[1]["nncp_id"])
    _damage(hub, "shed", node_mesh_ipv4="192.0.2.4")
    checked = roster.check(_published(hub, tmp_path), roster.load_inventory(hub.site_dir))
    assert checked.refused == {
        "garden": "its identity: nncp_id is not the id of nncp_signpub (BLAKE2b-256 of it)",
        "shed": "its addresses are not the site's plan for index 4"}
    assert list(checked.added) == ["orchard"] and checked.known == []
    _damage(hub, "orchard", ansible_connection="local")  # what the applier would otherwise hand to Ansible
    _published(hub, tmp_path)
    checked = _run("check", tmp_path / "roster.json", "--inventory", hub.kit_dir)
    assert checked.returncode == 0 and "0 to add, 0 known, 3 refused" in checked.stdout
    assert "refused orchard: it carries ansible_connection, which no roster entry may" in checked.stdout


def test_a_name_or_index_the_inventory_gave_another_node_is_refused(hub, identities, tmp_path):
    _join(hub, identities, 2)
    opened = hub.opened()
    sites.add_node(opened, "garden", "amd64", [])  # index 3: the controller did not know of the joined garden
    sites.add_node(opened, "barn", "amd64", [])  # index 4, shed's
    sites.commit(opened, sites.plan(opened))
    checked = roster.check(_published(hub, tmp_path), roster.load_inventory(hub.site_dir))
    assert checked.refused == {"garden": "the inventory has another node garden (index 3, other keys)",
                               "shed": "its index 4 is barn's"}
    assert (checked.added, checked.known) == ({}, [])


def test_a_node_the_inventory_imported_is_known(hub, identities, tmp_path):
    _join(hub, identities, 2)
    opened = hub.opened()
    imports.merge(opened.site, {"hilltop": State(hub.state_dir).export()})
    sites.commit(opened, sites.plan(opened))
    _damage(hub, "shed", yggdrasil_public_key=identities[2]["yggdrasil_public_key"])
    checked = roster.check(_published(hub, tmp_path), roster.load_inventory(hub.site_dir))
    assert checked.known == ["garden"] and checked.added == {}
    # Imported with other keys: not the same node.
    assert checked.refused == {"shed": "the inventory has another node shed (index 4, other keys)"}


def test_a_joined_node_checks_a_later_roster_against_its_own_seed(hub, identities, tmp_path):
    """The trust root of a node that joined: the inventory in the seed it wrote
    from its hub's answer. It knows itself and learns who joined after it."""
    public, private = node_identity.generate("garden.test.internal")
    answer = client.join(hub.invite("garden"), public, **quick())
    seed.write(tmp_path / "seed", answer, private)
    _join(hub, identities, 1, first=1)
    checked = _run("check", _published_path(hub, tmp_path), "--inventory", tmp_path / "seed")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[1:] == [
        f"add shed: index 4, {State(hub.state_dir).joined()['shed']['node_mesh_ipv4']}, rpi4, roles dns",
        "known garden"]
