"""`provision` manages a node that joined by invite, on the lab the other
modules of this package share (tests/integration/conftest.py): it runs
last, after test_blank_join_lab.py made blank1 the site's node orchard.

`meshstead node import` brings orchard into the inventory with no private
keys (it made its own); the lab writes how it is reached. A change of the
site made on the controller (an extra DNS name) then reaches orchard with
`provision`: the run sends orchard its slice of the inventory and orchard
applies the roles to itself with its own keys, which never leave it. A
second provision changes nothing, on orchard either."""

import re
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.labhelpers import applied_roster, changed_tasks, last_recap, roster_settled, sh, unreached, wait_for
from wizard import reach
from wizard.load import load_site

pytestmark = [pytest.mark.integration, pytest.mark.lab]

NAME = "orchard"
HUB = "node2"
OWN_RUN = "Apply the site's roles on the node, with its own keys"


@pytest.fixture(scope="module")
def imported(lab_site):
    """orchard imported; the nodes that joined at the hub with no machine
    behind them (test_join_lab.py's joins by hand) removed again."""
    lab, directory, env = lab_site["lab"], lab_site["dir"], lab_site["env"]
    running = lab.joined()
    if NAME not in running:
        pytest.skip(f"needs the lab's blank node joined as {NAME} (tests/integration/test_blank_join_lab.py)")
    done = run_cli("node", "import", "--site", directory, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"Lab: {NAME} joined in the lab" in done.stdout, done.stdout
    site = load_site(directory)
    assert not site.nodes[NAME].has_secrets and not (directory / "host_vars" / NAME / "vault.yml").exists()
    assert (directory / "host_vars" / NAME / "lab.yml").is_file()
    for name, node in sorted(site.nodes.items()):
        if not node.has_secrets and name not in running:
            gone = run_cli("node", "remove", name, "--site", directory, env=env)
            assert gone.returncode == 0, gone.stderr
    keys = yaml.safe_load(sh(lab, NAME, "cat /var/lib/meshstead/join/keys.yml").stdout)
    return {"site": load_site(directory), "keys": keys}


def test_provision_brings_a_site_change_to_the_joined_node_with_the_keys_it_made(lab_site, imported):
    lab, directory, env = lab_site["lab"], lab_site["dir"], lab_site["env"]
    site = imported["site"]
    node1 = site.node_facts(site.nodes["node1"])
    printer = f"printer.{site.settings.domain}"
    local = directory / "group_vars" / "all" / "local.yml"
    settings = (yaml.safe_load(local.read_text()) if local.exists() else None) or {}
    settings["dns_extra_hosts"] = [{"address": node1["node_mesh_ipv4"], "names": [printer]}]
    local.write_text(yaml.safe_dump(settings))
    keys_before = sh(lab, NAME, "sha256sum /var/lib/meshstead/join/keys.yml").stdout.split()[0]

    done = run_cli("provision", "--site", directory, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rows = last_recap(env)
    assert rows[NAME].failed == 0 and rows[NAME].changed > 0, rows
    assert f"{NAME}: roster : {OWN_RUN}" in changed_tasks(env), changed_tasks(env)

    # orchard rendered the change itself (its DNS), as node1 did from the controller's run.
    for node in ("node1", NAME):
        looked = sh(lab, node, f"getent hosts {printer}", timeout=15).stdout.split()
        assert looked[:1] == [node1["node_mesh_ipv4"]], (node, looked)
    # ... with its own keys: the same ones, and none of them on the controller.
    assert sh(lab, NAME, "sha256sum /var/lib/meshstead/join/keys.yml").stdout.split()[0] == keys_before
    tinc_key = imported["keys"]["private"]["tinc_private_key"]
    body = [line for line in tinc_key.splitlines() if line and not line.startswith("-----")][1]
    for where in (directory, Path(env["XDG_CACHE_HOME"])):
        leaked = [p for p in where.rglob("*") if p.is_file() and body.encode() in p.read_bytes()]
        assert not leaked, leaked
    assert not re.search(re.escape(body), done.stdout + done.stderr)
    # It still reaches every node by name over both overlays, and they it.
    names = ["node1", "node2", NAME]
    results = reach.matrix(lab, site, within=300, names=names, involving=NAME)
    assert all(results.values()), unreached(lab, results)


def test_a_second_provision_changes_nothing_on_the_joined_node_either(lab_site, imported):
    """Also the no-op check of the site after test_site_remove_lab.py's removal."""
    lab = lab_site["lab"]
    # The last provision's kit may have moved the hub's roster on: the joined
    # node takes it first (its own run of the roles, a minute or more here).
    for node in lab.joined():
        assert wait_for(lambda n=node: roster_settled(lab, n, HUB), 600, 5), (node, applied_roster(lab, node))
    taken = {node: applied_roster(lab, node) for node in lab.joined()}
    done = run_cli("provision", "--site", lab_site["dir"], env=lab_site["env"], timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:]
    rows = last_recap(lab_site["env"])
    assert NAME in rows
    assert all(r.changed == 0 and r.failed == 0 for r in rows.values()), (rows, changed_tasks(lab_site["env"]))
    # The joined node takes nothing new from the roster the hub publishes again.
    time.sleep(20)
    assert {node: applied_roster(lab, node) for node in taken} == taken

