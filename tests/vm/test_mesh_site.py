"""A whole site on a 4-node radio lab in a diamond (n0–n1–n3 and n0–n2–n3, no
n0–n3), provisioned by `meshstead provision` with the same site playbook as
real nodes: batman-adv over 802.11s with SAE on simulated radios, the overlays,
DNS and the access point on top, checked from inside the nodes."""

import ipaddress
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import cli_home, init_site, run_cli
from tests.labhelpers import last_recap, sh, unreached, wait_for
from tests.vm.conftest import full_only
from wizard import labsite, reach, sites
from wizard.lab import open_lab
from wizard.lab.netns import NETNS_DIR
from wizard.load import load_site

# About 20-27 minutes on 2 cores (the emulated CPU makes every Ansible task ~10x
# slower); CI runs it without the second provision, the reboot, the wrong
# SAE passphrase and IBSS tests (MESHSTEAD_VM_FULL=1 runs them; the mesh
# role's own scenario, MESHSTEAD_MOLECULE_ROLES=mesh, also checks a second
# run). MESHSTEAD_VM_SITE=0 leaves it out of a local vm run.
pytestmark = [pytest.mark.vm, pytest.mark.skipif(
    os.environ.get("MESHSTEAD_VM_SITE") == "0",
    reason="the whole radio site (~20-27 min) is left out: MESHSTEAD_VM_SITE=0")]

NODES = ["n0", "n1", "n2", "n3"]
# CI's reduced run leaves out the join service and the roster applier (100 s
# of the emulated nodes' 400 s first provision, all of it systemd units and
# copies): the container lab runs both (tests/integration); the full run
# provisions every role here too.
FIRST_RUN = [] if os.environ.get("MESHSTEAD_VM_FULL") == "1" else ["--", "--skip-tags", "join,roster"]


def provision_site(mesh_site, *extra, timeout=3600):
    started = time.monotonic()
    proc = run_cli("provision", "--site", mesh_site["dir"], *extra, env=mesh_site["env"], timeout=timeout)
    print(f"provision {' '.join(extra)}: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def radio_mac(lab, node) -> str:
    return sh(lab, node, "cat /sys/class/net/wlan0/address").stdout.strip()


def originators(lab, node) -> dict[str, str]:
    """batman-adv's best next hop per originator, as `batctl o` shows it."""
    table = sh(lab, node, "batctl meshif bat0 o -H").stdout
    best = {}
    for line in table.splitlines():
        fields = re.findall(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}", line)
        if line.lstrip().startswith("*") and len(fields) >= 2:
            best[fields[0]] = fields[1]
    return best


def neighbours(lab, node, heard_within: float = 5.0) -> set[str]:
    """batman-adv neighbours heard from in the last seconds (a lost one stays
    listed, ageing, for 200 s)."""
    table = sh(lab, node, "batctl meshif bat0 n -H").stdout
    return {m.group(1) for m in re.finditer(r"([0-9a-f]{2}(?::[0-9a-f]{2}){5})\s+(\d+\.\d+)s", table)
            if float(m.group(2)) <= heard_within}


def failure_report(item) -> str:
    """Added to a failed test's report (tests/vm/conftest.py) to be read on
    another machine: the guest's and each node's mesh state if they still
    answer, the host's load and disk, and the guest's serial console, which
    the host keeps (a kernel panic, the OOM killer, hung tasks)."""
    lab, lines = item.funcargs["mesh_site"]["lab"], 60

    def ask(what, run):
        try:
            proc = run()
            return [f"=== {what}", (proc.stdout + proc.stderr).rstrip()]
        except Exception as exc:  # noqa: BLE001 - a report, whatever the guest's state
            return [f"=== {what}", f"no answer: {exc}"]

    parts = ask("guest", lambda: lab.guest_exec_capture(
        ["sh", "-c", "uptime; free -m; systemctl --failed --no-legend; ps -eo rss,comm --sort=-rss | head -8"],
        timeout=30))
    mesh = ("iw dev wlan0 station dump | grep -E '^Station|mesh plink'; batctl meshif bat0 n -H; "
            "journalctl -q --no-pager -n 8 -u meshstead-mesh -o short-monotonic; "
            "journalctl -q --no-pager -n 4 -t mesh-guard -o short-monotonic")
    for node in NODES:
        parts += ask(node, lambda node=node: sh(lab, node, mesh, timeout=30))
    # Whether the guest still answers on its link, and at which MAC: an
    # unreachable guest and a dead sshd read alike from ssh. Inside ask(): a
    # lab whose state is gone must not break the report.
    parts += ask("host", lambda: subprocess.run(
        ["sh", "-c", f"uptime; df -h {lab.dir}; ps -eo pcpu,rss,etime,comm --sort=-pcpu | head -8; "
                     f"ip -n {lab.netns} neigh; nsenter --net={NETNS_DIR / lab.netns} "
                     f"ping -c 2 -W 2 {lab._load()['guest_address']}"],
        capture_output=True, text=True, check=False))
    for log in ("qemu.log", "console.log"):
        path = lab.dir / log
        parts += [f"=== {path} (last {lines} lines)",
                  *(path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(none)"])]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def mesh_site(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the radio lab needs root")
    base = tmp_path_factory.mktemp("meshsite")
    env = cli_home(base)
    # The mesh and what runs on it, without Syncthing and NNCP: every task costs
    # ten times more on an emulated CPU, and those two are tested on containers.
    directory = init_site(base, {"name": "radio", "services": [], "nodes": [
        {"name": "n0", "roles": ["hub", "dns"]}, {"name": "n1"}, {"name": "n2"}, {"name": "n3"}]}, env)
    try:
        started = time.monotonic()
        up = run_cli("lab", "up", "--radio", "--topology", "diamond", "--site", directory,
                     env=env, timeout=3600)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-4000:]
        print(f"radio lab up (guest boot to every node's sshd): {time.monotonic() - started:.1f} s")
        site = load_site(directory)
        lab = open_lab(labsite.lab_name(site))
        assert sorted(site.nodes) == NODES
        first = provision_site({"dir": directory, "env": env}, *FIRST_RUN)
        yield {"dir": directory, "env": env, "lab": lab, "site": site, "first": first,
               "macs": {n: radio_mac(lab, n) for n in NODES}}
    finally:
        # MESHSTEAD_VM_KEEP=1 leaves the lab up to read a failure on the nodes
        # (`meshstead lab exec`); `meshstead lab down --site DIR` ends it.
        if os.environ.get("MESHSTEAD_VM_KEEP") == "1":
            print(f"lab kept up: meshstead lab down --site {directory} (XDG_CONFIG_HOME={env['XDG_CONFIG_HOME']})")
        else:
            down = run_cli("lab", "down", "--site", directory, env=env, timeout=600)
            print("lab down:", down.returncode, down.stderr[-500:])


@full_only
def test_a_second_provision_changes_nothing(mesh_site):
    provision_site(mesh_site)
    recap = last_recap(mesh_site["env"])
    assert sorted(recap) == NODES
    changed = {host: r.changed for host, r in recap.items() if r.changed}
    assert not changed, f"second run changed: {changed}"


def test_batman_reaches_n3_from_n0_only_through_n1_or_n2(mesh_site):
    lab, macs = mesh_site["lab"], mesh_site["macs"]
    # Up to 5 minutes: a peering that a busy emulated CPU left stuck is restarted
    # by the mesh role's guard (90 s after wpa_supplicant's start, then ~30 s to form).
    started = time.monotonic()
    seen = wait_for(lambda: macs["n3"] in originators(lab, "n0"), 300, interval=2)
    restarts = {n: sh(lab, n, "journalctl -q -o cat -t mesh-guard --no-pager | grep -c restarting || true")
                .stdout.strip() for n in NODES}
    print(f"batman: n0 learnt n3 {seen - started:.1f} s after the second provision" if seen else
          "batman: n0 never learnt n3", f"(mesh guard restarts so far: {restarts})")
    assert seen, f"n0 never learnt n3: {sh(lab, 'n0', 'batctl meshif bat0 o').stdout}"
    assert originators(lab, "n0")[macs["n3"]] in (macs["n1"], macs["n2"])
    assert macs["n3"] not in neighbours(lab, "n0", heard_within=1e9)  # never heard directly


def test_two_hops_by_name_and_every_overlay_on_the_mesh(mesh_site):
    lab, site = mesh_site["lab"], mesh_site["site"]
    n3 = site.node_facts(site.nodes["n3"])
    assert wait_for(lambda: sh(lab, "n0", f"ping -c 1 -W 2 {n3['node_mesh_ipv4']}").returncode == 0, 90), \
        "n0 cannot ping n3's mesh address over two hops"
    resolved = sh(lab, "n0", f"getent ahostsv4 n3.{site.settings.domain}").stdout
    assert n3["node_mesh_ipv4"] in resolved
    # The overlays run on bat0: tinc's hub address and Yggdrasil's multicast are the mesh's.
    assert "bat0" in sh(lab, "n1", "cat /etc/yggdrasil/yggdrasil.conf").stdout
    results = reach.matrix(lab, site, within=90)
    assert len(results) == 4 * 3 * 2
    assert all(results.values()), unreached(lab, results)


def test_the_mesh_heals_when_the_next_hop_goes(mesh_site):
    lab, macs, site = mesh_site["lab"], mesh_site["macs"], mesh_site["site"]
    name_of = {mac: node for node, mac in macs.items()}
    target = site.node_facts(site.nodes["n3"])["node_mesh_ipv4"]
    # The whole diamond first: a peering a busy host's emulated CPU left stuck
    # comes back through the mesh guard within minutes (as in the batman test).
    assert wait_for(lambda: macs["n3"] in originators(lab, "n0"), 300, interval=2), \
        f"n0 does not know n3 before the cut: {sh(lab, 'n0', 'batctl meshif bat0 o').stdout}"
    hop = name_of[originators(lab, "n0")[macs["n3"]]]
    other = "n2" if hop == "n1" else "n1"
    pings = {}
    pinger = threading.Thread(target=lambda: pings.update(
        out=sh(lab, "n0", f"ping -D -i 0.2 -c 150 -W 1 {target}", timeout=120).stdout))
    pinger.start()
    time.sleep(5)
    cut, cut_mono = time.time(), time.monotonic()
    lab.link("n0", hop, up=False)
    try:
        switched = wait_for(lambda: originators(lab, "n0").get(macs["n3"]) == macs[other], 60, interval=0.3)
        pinger.join()
    finally:
        lab.link("n0", hop, up=True)
    assert switched, f"n0 never routed to n3 through {other}"
    replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\].*bytes from", pings["out"], re.M)]
    after = [t for t in replies if t > cut]
    assert after, "no reply after the cut: traffic did not continue through the other branch"
    outage = max(b - a for a, b in zip(replies, replies[1:], strict=False) if b > cut)
    print(f"heal: next hop {hop} cut; n0 routes via {other} {switched - cut_mono:.1f} s later; "
          f"longest ping gap {outage:.1f} s; {len(replies)}/150 replies")


@full_only
def test_a_wrong_sae_passphrase_never_makes_a_neighbour(mesh_site):
    lab = mesh_site["lab"]
    conf = "/etc/meshstead/mesh/wpa_supplicant.conf"
    assert sh(lab, "n3", f"cp -p {conf} /root/good.conf && "
                         f"sed -i 's/^\\tsae_password=.*/\\tsae_password=\"not-the-site-passphrase\"/' {conf} && "
                         "systemctl restart meshstead-mesh").returncode == 0
    try:
        time.sleep(10)  # neighbours heard before the restart age past heard_within
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert not neighbours(lab, "n3"), "a node with the wrong passphrase got a batman-adv neighbour"
            time.sleep(3)
    finally:
        sh(lab, "n3", f"cp -p /root/good.conf {conf} && systemctl restart meshstead-mesh")
        # Its neighbours block a peer that failed SAE three times (wpa_supplicant's
        # MESH-SAE-AUTH-BLOCKED, 10 s doubling up to 300 s, kept for as long as the
        # station entry lives): a restart forgets it. n0 never hears n3.
        for peer in ("n1", "n2"):
            sh(lab, peer, "systemctl restart meshstead-mesh")
    assert wait_for(lambda: neighbours(lab, "n3"), 120, interval=3), "with the right passphrase again: no neighbour"


@full_only
def test_bat0_comes_back_after_a_reboot(mesh_site):
    lab, site = mesh_site["lab"], mesh_site["site"]
    n3 = site.node_facts(site.nodes["n3"])
    lab.restart_node("n3")
    back = time.monotonic()
    addrs = lambda: sh(lab, "n3", "ip -o addr show dev bat0").stdout  # noqa: E731
    assert wait_for(lambda: f" {n3['node_mesh_ipv4']}/" in addrs() and f" {n3['node_mesh_ipv6']}/" in addrs(), 120)
    # The booting node's SAE handshakes compete with its boot for the emulated
    # CPU and can outlast wpa_supplicant's 10-s SAE timer; the peer is then backed
    # off (10 s, doubling). Rounds of 5 reboots measured n0 reaching n3 6-13 s
    # after n3's sshd on a quiet host, 12-91 s with the host's cores kept busy.
    reached = wait_for(lambda: all(sh(lab, "n0", f"ping -c 1 -W 2 {site.node_facts(site.nodes[n])['node_mesh_ipv4']}")
                                   .returncode == 0 for n in ("n3", "n1", "n2")), 300, interval=2)
    if reached:
        print(f"reboot: n0 reaches n1, n2 and n3 {reached - back:.1f} s after n3's sshd")
    assert reached, \
        "n0 cannot reach the rebooted n3 (or lost n1/n2): " + "".join(
            sh(lab, node, f"echo == {node}; iw dev wlan0 station dump | grep -E 'Station|plink|inactive'; "
                          "batctl meshif bat0 n; journalctl -u meshstead-mesh -n 15 --no-pager -o cat").stdout
            for node in ("n3", "n1", "n2"))


def test_a_phone_joins_the_access_point_gets_a_lease_resolves_names_and_reaches_every_node(mesh_site):
    lab, site = mesh_site["lab"], mesh_site["site"]
    vault = Path(mesh_site["env"]["XDG_CONFIG_HOME"]) / "meshstead" / "vault" / f"{site.settings.site_id}.pass"
    secrets = sites.open_site(mesh_site["dir"], str(vault)).site_secrets
    phy = lab.spare_radio()["phy"]
    mesh_ipv4s = [site.node_facts(site.nodes[n])["node_mesh_ipv4"] for n in NODES]
    conf = ("ctrl_interface=/run/msphone-wpa\nnetwork={\n"
            f"  ssid=\"{site.settings.ap_ssid}\"\n  key_mgmt=SAE\n  ieee80211w=2\n"
            f"  sae_password=\"{secrets['site_ap_passphrase']}\"\n}}\n")
    script = f"""set -e
ip netns add msphone
mkdir -p /etc/netns/msphone && : > /etc/netns/msphone/resolv.conf
iw phy {phy} set netns name msphone
dev=$(ip netns exec msphone ls /sys/class/net | grep -v '^lo$' | head -1)
ip netns exec msphone ip link set lo up
cat > /tmp/msphone.conf <<'EOF'
{conf}EOF
ip netns exec msphone wpa_supplicant -B -i $dev -c /tmp/msphone.conf -P /run/msphone-wpa.pid
for i in $(seq 60); do
  ip netns exec msphone wpa_cli -p /run/msphone-wpa -i $dev status 2>/dev/null | grep -q wpa_state=COMPLETED && break
  sleep 1
done
ip netns exec msphone wpa_cli -p /run/msphone-wpa -i $dev status | grep -E '^(ssid|wpa_state|key_mgmt)='
ip netns exec msphone udhcpc -i $dev -n -q -t 10 -s /etc/udhcpc/default.script
ip netns exec msphone ip -4 -o addr show dev $dev
ip netns exec msphone cat /etc/resolv.conf
ip netns exec msphone ip -4 route show default
for addr in {" ".join(mesh_ipv4s)}; do
  ip netns exec msphone ping -c 1 -W 3 $addr >/dev/null && echo "reached $addr" || echo "unreached $addr"
done
ip netns exec msphone dig +short n3.{site.settings.domain}
"""
    try:
        proc = lab.guest_exec_capture(["sh", "-c", script], timeout=300)
    finally:
        lab.guest_exec_capture(["sh", "-c", "kill $(cat /run/msphone-wpa.pid) 2>/dev/null; "
                                "ip netns del msphone; rm -rf /etc/netns/msphone"], timeout=60)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "wpa_state=COMPLETED" in out and "key_mgmt=SAE" in out
    leased = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert leased, out
    assert ipaddress.ip_address(leased.group(1)) in site.settings.client_ipv4_net
    # Routed through its access point's node, the phone reaches every node's mesh address.
    assert set(re.findall(r"^reached (\S+)$", out, re.M)) == set(mesh_ipv4s), out
    # The last line is dig's answer, from the resolver the lease named.
    assert out.strip().splitlines()[-1] == site.node_facts(site.nodes["n3"])["node_mesh_ipv4"]


@full_only
def test_ibss_forms_the_same_mesh(mesh_site):
    # Last: the lab goes down after it, so nothing provisions 802.11s back.
    lab, site, macs = mesh_site["lab"], mesh_site["site"], mesh_site["macs"]
    target = site.node_facts(site.nodes["n3"])["node_mesh_ipv4"]
    provision_site(mesh_site, "--", "--tags", "mesh", "-e", "mesh_mode=ibss")
    assert "type IBSS" in sh(lab, "n0", "iw dev wlan0 info").stdout
    assert wait_for(lambda: originators(lab, "n0").get(macs["n3"]) in (macs["n1"], macs["n2"]), 120, 2), \
        "IBSS: n0 does not reach n3 through n1 or n2: " + sh(
            lab, "n0", "iw dev wlan0 info; iw dev wlan0 station dump; batctl meshif bat0 n; "
            "journalctl -u meshstead-mesh -n 20 --no-pager -o cat").stdout
    assert wait_for(lambda: sh(lab, "n0", f"ping -c 1 -W 2 {target}").returncode == 0, 60)
