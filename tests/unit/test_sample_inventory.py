"""inventory/sample: a site as the wizard writes it, without any private material."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT
from wizard.identity import PRIVATE_NODE_VARS
from wizard.load import load_site

SAMPLE = ROOT / "inventory" / "sample"
BIN = Path(sys.executable).parent
SECRET = re.compile(r"PRIVATE KEY|\$ANSIBLE_VAULT|BEGIN OPENSSH|PRIVATE-KEY")


def test_sample_loads_as_a_site_without_private_keys():
    site = load_site(SAMPLE)
    assert sorted(site.nodes) == ["cabin", "hilltop", "school"]
    assert not any(node.has_secrets for node in site.nodes.values())
    assert site.nodes["hilltop"].roles == ["hub", "dns"]


def test_sample_holds_no_private_material():
    files = [p for p in SAMPLE.rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if p.name == "vault.yml" or p.suffix in (".pass", ".key", ".pem")]
    assert not [p for p in files if SECRET.search(p.read_text())]
    for node_file in SAMPLE.glob("host_vars/*/node.yml"):
        data = yaml.safe_load(node_file.read_text())
        for name in PRIVATE_NODE_VARS:  # named only, the value lives in the (absent) vault
            assert data.get(name, f"{{{{ vault_{name} }}}}") == f"{{{{ vault_{name} }}}}", (node_file, name)
    site_vars = yaml.safe_load((SAMPLE / "group_vars/all/site.yml").read_text())
    assert site_vars["site_mesh_passphrase"] == "{{ vault_site_mesh_passphrase }}"
    assert site_vars["site_ap_passphrase"] == "{{ vault_site_ap_passphrase }}"


def test_git_keeps_vault_files_out_of_the_sample():
    ignored = subprocess.run(["git", "check-ignore", "-q", "inventory/sample/host_vars/hilltop/vault.yml"],
                             cwd=ROOT, capture_output=True)
    kept = subprocess.run(["git", "check-ignore", "-q", "inventory/sample/host_vars/hilltop/node.yml"],
                          cwd=ROOT, capture_output=True)
    if ignored.returncode == 128:  # not a git checkout (an unpacked source tree)
        return
    assert (ignored.returncode, kept.returncode) == (0, 1)


def test_ansible_reads_the_sample_without_a_vault_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if "VAULT" not in k}
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(SAMPLE / "hosts.yml"), "--list"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert sorted(listed["debian"]["hosts"]) == ["cabin", "hilltop", "school"]
    assert listed["hubs"]["hosts"] == ["hilltop"] and listed["gateways"]["hosts"] == ["school"]
    hilltop = listed["_meta"]["hostvars"]["hilltop"]
    assert hilltop["node_fqdn"] == "hilltop.valley.internal"
    assert hilltop["site_name"] == "valley"


def test_sample_is_what_the_wizard_writes_today():
    """Re-rendered from its own data, the sample comes out byte for byte: a
    change of the inventory format shows here until the sample is made anew
    (inventory/sample/README.md says how)."""
    from wizard.render import inventory

    site = load_site(SAMPLE)
    for node in site.nodes.values():
        node.has_secrets = True  # made with keys; only the vault files were left out
    rendered = inventory.render(site, vault=None, site_secrets=None, node_secrets={})
    assert set(rendered) == {str(p.relative_to(SAMPLE)) for p in SAMPLE.rglob("*.yml")
                             if p.name not in ("answers.yml", "local.yml")} | {"known_hosts"}  # yours, not ours
    for rel, (content, _mode) in rendered.items():
        assert (SAMPLE / rel).read_bytes() == content, rel
