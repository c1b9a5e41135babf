"""Removing a node from a provisioned site, on the lab the other modules of
this package share (tests/integration/conftest.py): this module runs last on
it, since node3 stays out of the site afterwards.

`meshstead node remove node3`, then `provision` of the rest. node3 itself is
left running as it was (a lost or stolen node is not provisioned again): from
there it reaches no node over tinc, Yggdrasil, Syncthing or NNCP, and its name
no longer resolves on the others. That a provision after it changes nothing
is checked by test_joined_node_provision_lab.py's second provision, which
runs on the same site after this module."""

import json
import time

import pytest

from tests.conftest import run_cli
from tests.labhelpers import applied_roster, last_recap, sh, unreached, wait_for
from wizard import reach
from wizard.load import load_site

pytestmark = [pytest.mark.integration, pytest.mark.lab]

GONE, STAYING = "node3", ("node1", "node2")

# Syncthing's REST API on a node, with the API key of its own config.xml: the
# devices it runs with, and which of them are connected.
SYNCTHING = """
import json, re, urllib.request
key = re.search(r"<apikey>([^<]+)</apikey>",
                open("/var/lib/syncthing/.config/syncthing/config.xml").read()).group(1)
def get(path):
    request = urllib.request.Request("http://127.0.0.1:8384" + path, headers={"X-API-Key": key})
    return json.load(urllib.request.urlopen(request, timeout=10))
print(json.dumps({"devices": [d["deviceID"] for d in get("/rest/config")["devices"]],
                  "connected": [d for d, c in get("/rest/system/connections")["connections"].items()
                                if c["connected"]]}))
"""


def syncthing(lab, node) -> dict:
    proc = lab.exec_capture(node, ["python3", "-c", SYNCTHING], timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def removed(lab_site):
    """node3's facts, taken before `node remove` and a provision of the rest."""
    lab, directory, env = lab_site["lab"], lab_site["dir"], lab_site["env"]
    site = load_site(directory)
    facts = {name: site.node_facts(node) for name, node in site.nodes.items()}
    # Before: node3 is a peer like any other.
    assert wait_for(lambda: reach.pings(lab, GONE, facts["node1"]["node_overlay_ipv4"]), 60)
    assert wait_for(lambda: reach.pings(lab, GONE, facts["node1"]["yggdrasil_address"]), 60)
    started = time.monotonic()
    result = run_cli("node", "remove", GONE, "--site", directory, env=env)
    assert result.returncode == 0, result.stderr
    assert f"Next: meshstead provision --site {directory}" in result.stdout
    provisioned = run_cli("provision", "--site", directory, env=env, timeout=1800)
    print(f"node remove + provision: {time.monotonic() - started:.1f} s")
    assert provisioned.returncode == 0, provisioned.stdout[-4000:] + provisioned.stderr[-2000:]
    assert set(last_recap(env)) == set(STAYING)
    # A node that joined by invite and was never provisioned (the blank node of
    # test_blank_join_lab.py, when it ran) takes the removal from its hub's roster.
    for node in joined(lab):
        took = wait_for(lambda n=node: GONE in applied_roster(lab, n).get("removed", {}), 300)
        assert took, sh(lab, node, "journalctl -u meshstead-roster -n 40 --no-pager").stdout
        print(f"{node} took the removal from the roster: {took - started:.1f} s after node remove")
    return facts


def joined(lab) -> list[str]:
    """The lab's nodes that joined by invite and run as site nodes."""
    return [row["joined_as"] for row in lab.status() if row.get("joined_as")]


def test_the_removed_node_reaches_no_node_over_tinc_or_yggdrasil(lab_site, removed):
    lab, domain = lab_site["lab"], lab_site["site"].settings.domain
    for node in STAYING:
        assert sh(lab, node, f"test ! -e /etc/tinc/itest/hosts/{GONE}").returncode == 0
        config = json.loads(sh(lab, node, "cat /etc/yggdrasil/yggdrasil.conf").stdout)
        assert removed[GONE]["yggdrasil_public_key"] not in config["AllowedPublicKeys"]
    targets = [removed[n][var] for n in STAYING for var in ("node_overlay_ipv4", "yggdrasil_address")]
    # node3 keeps its old configuration, and keeps trying: nothing gets through, for as long as we look.
    assert wait_for(lambda: not any(reach.pings(lab, GONE, t) for t in targets), 60), "node3 still reaches a node"
    time.sleep(10)
    assert not any(reach.pings(lab, GONE, t) for t in targets)
    # The others still reach each other, by name.
    results = reach.matrix(lab, load_site(lab_site["dir"]), within=30)
    assert len(results) == 2 * 1 * 2, results
    assert all(results.values()), unreached(lab, results)
    assert reach.pings(lab, "node1", f"node2.tinc.{domain}")


def test_the_removed_node_is_no_syncthing_device_or_nncp_neighbour(lab_site, removed):
    lab = lab_site["lab"]
    device = removed[GONE]["syncthing_device_id"]
    for node in (*STAYING, *joined(lab)):
        running = syncthing(lab, node)
        assert device not in running["devices"] and device not in running["connected"], node
        assert GONE not in sh(lab, node, "cat /etc/nncp.hjson").stdout
    # node3 may still count a connection as open whose other end is gone (the peer's FIN went to
    # the overlay node3 left): what counts is that no file crosses, in either direction.
    token = f"{time.time_ns()}"
    for node in ("node1", GONE):
        path = f"/var/lib/syncthing/shared/from-{node}-{token}.txt"
        assert sh(lab, node, f"echo {token} > {path} && chown syncthing: {path}").returncode == 0
    assert wait_for(lambda: sh(lab, "node2", f"test -e /var/lib/syncthing/shared/from-node1-{token}.txt")
                    .returncode == 0, 120), "the others no longer sync"
    time.sleep(15)  # the sync above took its time; node3 had as long and more
    assert sh(lab, GONE, f"test -e /var/lib/syncthing/shared/from-node1-{token}.txt").returncode != 0
    for node in STAYING:
        assert sh(lab, node, f"test -e /var/lib/syncthing/shared/from-{GONE}-{token}.txt").returncode != 0, node
    for node in STAYING:
        call = sh(lab, GONE, f"timeout 20 runuser -u nncp -- nncp-call -onlinedeadline 1 {node}", timeout=60)
        assert call.returncode != 0, call.stdout + call.stderr


def test_the_removed_name_no_longer_resolves(lab_site, removed):
    lab, domain = lab_site["lab"], lab_site["site"].settings.domain
    for node in STAYING:
        for name in (f"{GONE}.{domain}", f"{GONE}.tinc.{domain}", f"{GONE}.ygg.{domain}"):
            assert sh(lab, node, f"getent hosts {name}").returncode == 2, (node, name)
        assert GONE not in sh(lab, node, f"getent hosts {removed[GONE]['node_mesh_ipv4']}").stdout


def test_a_joined_node_shuts_the_removed_node_out(lab_site, removed):
    lab = lab_site["lab"]
    nodes = joined(lab)
    if not nodes:
        pytest.skip("no node joined by invite on this lab (test_blank_join_lab.py did not run)")
    for node in nodes:
        assert sh(lab, node, f"test ! -e /etc/tinc/itest/hosts/{GONE}").returncode == 0, node
        ruleset = sh(lab, node, "nft list ruleset").stdout
        for var in ("node_overlay_ipv4", "yggdrasil_address"):
            assert removed[GONE][var] in ruleset, (node, var)
        address = sh(lab, node, "ip -4 -o addr show dev tinc-itest").stdout.split()[3].split("/")[0]
        assert wait_for(lambda a=address: not reach.pings(lab, GONE, a), 60), f"node3 still reaches {node}"

