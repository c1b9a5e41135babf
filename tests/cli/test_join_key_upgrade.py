"""The join key: made once with the node, kept on every later write, and given
to the nodes of a site made before it existed at that site's next write."""

from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import make_site, run_cli, snapshot
from wizard import sites
from wizard.invites import token
from wizard.render import yamlfile
from wizard.vault import Vault

JOIN_PUBLIC = ("join_tls_cert", "join_pin")


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "site", admin_key, nodes=["hilltop --role hub", "cabin"])


def _node_yml(site, name) -> dict:
    return yaml.safe_load((site / f"host_vars/{name}/node.yml").read_text())


def _password(config_home, site) -> bytes:
    site_id = yaml.safe_load((site / "group_vars/all/site.yml").read_text())["meshstead_site_id"]
    return (config_home / "meshstead" / "vault" / f"{site_id}.pass").read_bytes().strip()


def _as_before_join_keys(site, config_home, name, *, joined=False):
    """Rewrite a node's files as a meshstead without join keys wrote them;
    `joined`: as a node that made its own keys (no vault file at all)."""
    path = site / f"host_vars/{name}/node.yml"
    data = {k: v for k, v in _node_yml(site, name).items() if k not in (*JOIN_PUBLIC, "join_tls_key")}
    vault_file = site / f"host_vars/{name}/vault.yml"
    if joined:
        data = {k: v for k, v in data.items() if not str(v).startswith("{{ vault_")}
        vault_file.unlink()
    else:
        vault = Vault(_password(config_home, site))
        secrets = vault.decrypt(vault_file)
        del secrets["vault_join_tls_key"]
        vault_file.write_bytes(vault.encrypt(secrets))
    path.write_bytes(yamlfile.dump(data))


def test_a_later_write_keeps_every_node_s_join_key(site):
    before = {name: _node_yml(site, name)["join_tls_cert"] for name in ("hilltop", "cabin")}
    vaults = {name: (site / f"host_vars/{name}/vault.yml").read_bytes() for name in ("hilltop", "cabin")}
    assert run_cli("node", "add", "barn", "--site", site).returncode == 0
    assert run_cli("init", site, "--set", "country=KE").returncode == 0
    assert {name: _node_yml(site, name)["join_tls_cert"] for name in before} == before
    assert {name: (site / f"host_vars/{name}/vault.yml").read_bytes() for name in vaults} == vaults


def test_an_old_site_gets_join_keys_at_its_next_write_and_keeps_its_other_keys(site, config_home):
    _as_before_join_keys(site, config_home, "hilltop")
    _as_before_join_keys(site, config_home, "cabin", joined=True)
    old = snapshot(site)
    hilltop_before = sites.node_secrets(sites.open_site(site), "hilltop")
    # Reading changes nothing, and an old node's file names no key its vault lacks.
    assert run_cli("identity", "show", "hilltop", "--json", "--site", site).returncode == 0
    assert snapshot(site) == old and "join_tls_key" not in _node_yml(site, "hilltop")

    assert run_cli("node", "add", "barn", "--site", site).returncode == 0
    hilltop = _node_yml(site, "hilltop")
    assert hilltop["join_tls_key"] == "{{ vault_join_tls_key }}"
    secrets = sites.node_secrets(sites.open_site(site), "hilltop")
    assert token.b64url_decode(hilltop["join_pin"]) == token.pin_of_cert(hilltop["join_tls_cert"].encode())
    key = serialization.load_pem_private_key(secrets["join_tls_key"].encode(), None)
    cert = x509.load_pem_x509_certificate(hilltop["join_tls_cert"].encode())
    assert key.public_key() == cert.public_key()
    assert {k: v for k, v in secrets.items() if k != "join_tls_key"} == hilltop_before
    # The node that made its own keys is not given one; its file only gains the mark that it holds them.
    assert not (site / "host_vars/cabin/vault.yml").exists()
    cabin = _node_yml(site, "cabin")
    assert cabin.pop("meshstead_keys_on_node") is True
    assert cabin == yaml.safe_load(old[Path("host_vars/cabin/node.yml")][0])

    # Generated once: the next write keeps it.
    assert run_cli("node", "add", "shed", "--site", site).returncode == 0
    assert _node_yml(site, "hilltop")["join_tls_cert"] == hilltop["join_tls_cert"]
    assert sites.node_secrets(sites.open_site(site), "hilltop")["join_tls_key"] == secrets["join_tls_key"]
