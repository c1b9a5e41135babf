"""Joining by invite on a provisioned lab (tests/integration/conftest.py):
node2 is the hub, and `meshstead provision` set up its join service with the
join role. The joining side is the package from this repository under
Debian 12's own Python (python3-cryptography 38, python3-yaml), as a node
runs it, in a bare network namespace on the lab's LAN that holds a site
address no node has: a new node on the hub's access point gets one the same
way, by DHCP from the site's ranges, which the firewall admits to the join
port.

Every refusal is checked the same way: exit 1, one line naming the problem
(after the note on the node's own keys), and the hub's state directory
byte for byte as before."""

import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT, run_cli
from tests.labhelpers import applied_roster, last_recap, sh, wait_for
from wizard.invites import token
from wizard.load import load_site

pytestmark = [pytest.mark.integration, pytest.mark.lab]

HUB = "node2"
NODE_PYTHON = "/usr/bin/python3"  # Debian's, with the libraries a node has
PACKAGE_PARENT = ROOT / "roles" / "join" / "files"
HUB_STATE = "/var/lib/meshstead/join-hub"
KIT = "/etc/meshstead/join/kit"


def free_site_address(site, offset: int) -> ipaddress.IPv4Interface:
    """An address of the site's mesh network that no node can have soon: just
    below the highest node index (the last host is the lab controller's)."""
    plan = ipaddress.IPv4Network(site.settings.ipv4_plan)
    net = next(plan.subnets(prefixlen_diff=2))
    return ipaddress.IPv4Interface(f"{net.network_address + net.num_addresses - 3 - offset}/{net.prefixlen}")


@pytest.fixture(scope="module")
def joiner(lab_site):
    """The network namespace the joining side runs in."""
    address = free_site_address(lab_site["site"], 0)
    return lab_site["lab"].attach_probe("joiner", str(address))


@pytest.fixture(scope="module", autouse=True)
def hub_converged_after(lab_site):
    """The invites these tests make change the hub's kit: ship it when they
    are done, so the lab's other tests start from a converged site (the
    provision of test_every_node_learns_the_joined_node_without_provision
    shipped every node's slice after the last invite)."""
    yield
    shipped = run_cli("provision", "--site", lab_site["dir"], "--limit", HUB, "--", "--tags", "join",
                      env=lab_site["env"], timeout=1800)
    assert shipped.returncode == 0, shipped.stdout[-3000:]


def join(netns: str, text: str, state: Path, timeout=120) -> subprocess.CompletedProcess:
    """`python3 -m meshstead_join join` as a blank node runs it: its own keys and
    answer in `state`, the seed in `state/seed`."""
    return subprocess.run(["ip", "netns", "exec", netns, "env", f"PYTHONPATH={PACKAGE_PARENT}",
                           "PYTHONDONTWRITEBYTECODE=1", NODE_PYTHON, "-m", "meshstead_join", "join", text,
                           "--state", str(state), "--seed", str(state / "seed"), "--deadline", "30"],
                          capture_output=True, text=True, timeout=timeout)


def hub_state(lab) -> str:
    """Every file and directory of the hub's record, with mode, size and hash."""
    proc = sh(lab, HUB, f"cd {HUB_STATE} && find . -printf '%p %m %s\\n' | sort && "
                        "find . -type f -exec sha256sum {} + | sort")
    assert proc.returncode == 0 and "./used" in proc.stdout, proc.stderr
    return proc.stdout


def invite(lab_site, name: str, *extra) -> tuple[str, str]:
    """(text, id) of an invite made by `meshstead invite create`."""
    out = lab_site["dir"].parent / "invites"
    made = run_cli("invite", "create", name, "--platform", "amd64", "--out", out, *extra, "--site",
                   lab_site["dir"], env=lab_site["env"])
    assert made.returncode == 0, made.stderr
    text = (out / f"{name}-invite.txt").read_text().strip()
    listed = json.loads(run_cli("invite", "list", "--json", "--site", lab_site["dir"], env=lab_site["env"]).stdout)
    return text, next(r["id"] for r in listed if r["name"] == name)


def assert_refused(proc: subprocess.CompletedProcess, problem: str) -> str:
    """Exit 1 and one line naming the problem; the only other line is the note
    on the node's own keys."""
    lines = proc.stderr.strip().splitlines()
    refusals = [line for line in lines if line.startswith("meshstead-join:")]
    assert proc.returncode == 1, proc.stderr
    assert len(refusals) == 1 and lines[-1] == refusals[0], proc.stderr
    assert refusals[0].startswith(f"meshstead-join: {problem}: "), refusals[0]
    assert all(line.endswith("keys.yml)") for line in lines[:-1]), proc.stderr
    assert "Traceback" not in proc.stderr
    return refusals[0]


def test_the_hub_serves_joins_and_only_the_hub(lab_site):
    lab = lab_site["lab"]
    assert sh(lab, HUB, "systemctl is-active meshstead-join.service").stdout.strip() == "active"
    shown = sh(lab, HUB, "systemctl show -p User -p ProtectSystem -p NoNewPrivileges meshstead-join.service")
    assert sorted(shown.stdout.split()) == ["NoNewPrivileges=yes", "ProtectSystem=strict", "User=meshstead-join"]
    pin = lab_site["site"].nodes[HUB].public["join_pin"]
    checked = sh(lab, HUB, f"meshstead-join check --kit {KIT} --cert /etc/meshstead/join/tls.crt "
                           f"--key /etc/meshstead/join/tls.key --pin {pin}")
    assert checked.returncode == 0 and "3 nodes" in checked.stderr, checked.stderr
    assert sh(lab, HUB, "stat -c '%a %U' /etc/meshstead/join/tls.key").stdout.split() == ["600", "meshstead-join"]
    # The kit: the site's public files and its network-wide secrets; no node's private keys, no signing key.
    files = sh(lab, HUB, f"cd {KIT}/ && find . -type f | sort").stdout.split()
    assert files == ["./ansible.tar.gz", "./group_vars/all/secrets.yml", "./group_vars/all/site.yml",
                     "./host_vars/node1/node.yml", "./host_vars/node2/node.yml", "./host_vars/node3/node.yml",
                     "./hosts.yml"]
    # The roles the hub was provisioned with, packed on the controller from this meshstead's own.
    roles = sh(lab, HUB, f"tar -tzf {KIT}/ansible.tar.gz").stdout.split()
    assert "playbooks/site.yml" in roles and "roles/join/tasks/kit.yml" in roles
    assert not [n for n in roles if "molecule" in n or "__pycache__" in n]
    secrets = sh(lab, HUB, f"cat {KIT}/group_vars/all/secrets.yml").stdout
    assert "vault_site_mesh_passphrase" in secrets and "PRIVATE KEY" not in secrets
    assert sh(lab, HUB, f"grep -rl 'PRIVATE KEY' {KIT}/").stdout == ""
    # Every node has the package and its command; only hubs run the service.
    for node in ("node1", "node3"):
        assert sh(lab, node, "meshstead-join --help").returncode == 0
        assert sh(lab, node, "systemctl is-active meshstead-join.service").stdout.strip() != "active"


def test_a_node_joins_once_with_an_invite(lab_site, joiner, tmp_path):
    lab, site = lab_site["lab"], lab_site["site"]
    text, invite_id = invite(lab_site, "garden")
    state = tmp_path / "garden"
    started = time.monotonic()
    joined = join(joiner, text, state)
    print(f"join: {time.monotonic() - started:.1f} s")
    assert joined.returncode == 0, joined.stderr
    assert "joined as garden (index 4," in joined.stderr
    answer = json.loads((state / "answer.json").read_text())
    assert answer["node"]["node_mesh_ipv4"] == str(ipaddress.IPv4Network(site.settings.ipv4_plan)[4])
    manifest = json.loads((state / "seed" / "seed.json").read_text())
    assert manifest["node"] == "garden" and manifest["site_id"] == site.settings.site_id
    own = state / "seed" / "inventory" / "host_vars" / "garden"
    assert (own / "node.yml").is_file() and (own / "secrets.yml").stat().st_mode & 0o077 == 0
    # The roles it configures itself with are the hub's.
    kit_roles = sh(lab, HUB, f"sha256sum {KIT}/ansible.tar.gz").stdout.split()[0]
    assert hashlib.sha256((state / "seed" / "ansible.tar.gz").read_bytes()).hexdigest() == kit_roles
    recorded = sh(lab, HUB, f"ls {HUB_STATE}/joined {HUB_STATE}/used").stdout.split()
    assert "garden.yml" in recorded and f"{invite_id}.yml" in recorded

    # The same invite again, from the same node (as a retry would be): used.
    before = hub_state(lab)
    again = join(joiner, text, state)
    line = assert_refused(again, "used")
    assert invite_id in line
    assert hub_state(lab) == before
    # And from another node, with the command the join role installed there (README's example).
    elsewhere = sh(lab, "node1", f"meshstead-join join '{text}' --state /tmp/garden --deadline 30")
    assert_refused(elsewhere, "used")
    assert hub_state(lab) == before


def test_a_revoked_invite_is_refused_once_the_hub_has_the_kit(lab_site, joiner, tmp_path):
    """A revocation reaches the hub with the kit, which `provision` ships."""
    lab = lab_site["lab"]
    text, invite_id = invite(lab_site, "orchard")
    revoked = run_cli("invite", "revoke", invite_id, "--site", lab_site["dir"], env=lab_site["env"])
    assert revoked.returncode == 0, revoked.stderr
    started = time.monotonic()
    shipped = run_cli("provision", "--site", lab_site["dir"], "--limit", HUB, "--", "--tags", "join",
                      env=lab_site["env"], timeout=1800)
    print(f"provision --limit {HUB} --tags join: {time.monotonic() - started:.1f} s")
    assert shipped.returncode == 0, shipped.stdout[-3000:]
    assert last_recap(lab_site["env"])[HUB].changed >= 1  # the new kit
    before = hub_state(lab)
    refused = join(joiner, text, tmp_path / "orchard")
    line = assert_refused(refused, "revoked")
    assert invite_id in line
    assert hub_state(lab) == before


ROGUE = r"""
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server = socket.create_server((sys.argv[3], int(sys.argv[4])))
print("ready", flush=True)
raw, _ = server.accept()
got = b""
try:
    with context.wrap_socket(raw, server_side=True) as conn:
        conn.settimeout(20)
        while chunk := conn.recv(65536):
            got += chunk
except (OSError, ssl.SSLError):
    pass
print(len(got), flush=True)
"""


def rogue_key(directory: Path, name: str) -> tuple[Path, Path]:
    """An Ed25519 key and certificate that are not the hub's."""
    key = Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, None))
    cert_file, key_file = directory / "rogue.crt", directory / "rogue.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_an_impersonator_gets_nothing(lab_site, joiner, tmp_path):
    """A server at the invite's endpoint without the hub's key: the node sees
    the wrong pin in the TLS handshake and sends it nothing."""
    lab, site = lab_site["lab"], lab_site["site"]
    address = free_site_address(site, 1)
    rogue_ns = lab.attach_probe("rogue", str(address))
    cert, key = rogue_key(tmp_path, f"{HUB}.{site.settings.domain}")
    text, _ = invite(lab_site, "meadow", "--endpoint", f"{address.ip}:{token.JOIN_PORT}")
    rogue = subprocess.Popen(["ip", "netns", "exec", rogue_ns, NODE_PYTHON, "-c", ROGUE, str(cert), str(key),
                              str(address.ip), str(token.JOIN_PORT)], stdout=subprocess.PIPE, text=True)
    try:
        assert rogue.stdout.readline().strip() == "ready"
        before = hub_state(lab)
        refused = join(joiner, text, tmp_path / "meadow")
        line = assert_refused(refused, "impersonator")
        assert f"{address.ip}:{token.JOIN_PORT}" in line and "nothing was sent" in line
        received = rogue.stdout.readline().strip()
        assert received == "0", f"the impersonator received {received} bytes"
        assert hub_state(lab) == before
        assert not (tmp_path / "meadow" / "answer.json").exists()
    finally:
        rogue.kill()
        rogue.wait(timeout=10)
    assert os.path.exists(tmp_path / "meadow" / "keys.yml")  # made once, kept for a retry


def test_every_node_learns_the_joined_node_without_provision(lab_site):
    """After the join above: the hub published its roster, Syncthing carried
    it to every node, and each node's roster applier ran the roles with
    garden: its tinc host file and its names in DNS are there, with no
    provision. The controller's next provision keeps them (the site playbook
    adds what the nodes took from rosters), changing nothing."""
    lab, site, directory, env = lab_site["lab"], lab_site["site"], lab_site["dir"], lab_site["env"]
    joined = yaml.safe_load(sh(lab, HUB, f"cat {HUB_STATE}/joined/garden.yml").stdout)
    key_line = joined["tinc_public_key"].strip().splitlines()[1]
    domain = site.settings.domain
    started = time.monotonic()
    for node in ("node1", "node2", "node3"):
        assert wait_for(lambda n=node: "garden" in applied_roster(lab, n).get("nodes", {}), 600, 2), \
            (node, sh(lab, node, "journalctl -u meshstead-roster -o cat -n 40 --no-pager").stdout)
        print(f"{node} applied garden {time.monotonic() - started:.1f} s after the check began")
    for node in ("node1", "node2", "node3"):
        host_file = sh(lab, node, f"cat /etc/tinc/{site.settings.name}/hosts/garden").stdout
        assert key_line in host_file, (node, host_file)
        for name, address in ((f"garden.tinc.{domain}", joined["node_overlay_ipv4"]),
                              (f"garden.ygg.{domain}", joined["yggdrasil_address"])):
            found = sh(lab, node, f"getent ahosts {name}").stdout.split()
            assert address in found, (node, name, found)
    # A provision of the site keeps garden (the site playbook adds what the nodes took from rosters).
    # After the other join tests: it ships their invites too, and the no-op provision of
    # test_site_lab.py then shows that a second run changes nothing with garden in it.
    again = run_cli("provision", "--site", directory, env=env, timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:]
    assert set(last_recap(env)) == {"node1", "node2", "node3"}  # garden is not the controller's to contact
    assert key_line in sh(lab, "node1", f"cat /etc/tinc/{site.settings.name}/hosts/garden").stdout
    assert joined["node_overlay_ipv4"] in sh(lab, "node3", f"getent ahosts garden.tinc.{domain}").stdout


def test_node_import_brings_the_joined_node_in_and_provision_tells_its_peers(lab_site):
    """After the join above: the controller reads the hub's record, the
    inventory gets garden without private keys, and provisioning node1 gives
    it garden's tinc host file. The site is put back afterwards: garden is no
    lab node, and the lab's other tests provision the whole site."""
    directory, env, lab = lab_site["dir"], lab_site["env"], lab_site["lab"]
    kept = directory.parent / "site-before-import"
    shutil.copytree(directory, kept)
    try:
        started = time.monotonic()
        imported = run_cli("node", "import", "--site", directory, env=env, timeout=900)
        print(f"node import: {time.monotonic() - started:.1f} s")
        assert imported.returncode == 0, imported.stdout[-2000:] + imported.stderr[-2000:]
        assert "brought 1 node(s) in from node2: garden" in imported.stdout, imported.stdout
        site = load_site(directory)
        garden = site.nodes["garden"]
        assert (garden.index, garden.has_secrets) == (4, False)
        assert not (directory / "host_vars/garden/vault.yml").exists()
        assert next(r for r in site.invites if r.name == "garden").used_by == "garden"
        again = run_cli("node", "import", "--site", directory, env=env, timeout=900)
        assert again.returncode == 0 and "no new node" in again.stdout, again.stdout
        told = run_cli("provision", "--site", directory, "--limit", "node1", "--", "--tags", "tinc", env=env,
                       timeout=1800)
        assert told.returncode == 0, told.stdout[-3000:]
        host_file = sh(lab, "node1", f"cat /etc/tinc/{site.settings.name}/hosts/garden").stdout
        assert garden.public["tinc_public_key"].strip().splitlines()[1] in host_file
    finally:
        shutil.rmtree(directory)
        shutil.move(kept, directory)
        undone = run_cli("provision", "--site", directory, "--limit", "node1", "--", "--tags", "tinc", env=env,
                         timeout=1800)
        assert undone.returncode == 0, undone.stdout[-3000:]
        # tincd re-read its hosts twice: the lab's next tests start once node1's overlay carries again.
        site = load_site(directory)
        for peer in ("node2", "node3"):
            overlay = site.node_facts(site.nodes[peer])["node_overlay_ipv4"]
            assert wait_for(lambda a=overlay: sh(lab, "node1", f"ping -c 1 -W 2 {a}").returncode == 0, 90), peer
