"""The radio lab backend, proved without Ansible: three nodes in a line, meshed by
hand over their simulated radios (802.11s + batman-adv), links cut and restored,
a node rebooted.  Tests run in file order and share one lab (see conftest)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from wizard.lab import open_lab
from wizard.lab.radio import RadioLab
from wizard.lab.radio.guest import hwsim_macs
from wizard.lab.ssh import ssh_argv

pytestmark = pytest.mark.vm

MESH_SETUP = """set -e
iw dev wlan0 set type mp
ip link set wlan0 mtu 1532
ip link set wlan0 up
iw dev wlan0 mesh join TEST freq 2412 mesh_fwding=0
ip link add bat0 type batadv
ip link set wlan0 master bat0
ip link set bat0 up
batctl meshif bat0 bl 0
ip addr add {addr}/24 dev bat0
"""


def bat_addr(i: int) -> str:
    return f"10.99.0.{i + 1}"


def mac(i: int) -> str:
    return hwsim_macs(i)[0]


def run_in(lab: RadioLab, node: str, script: str, timeout: float = 60) -> str:
    proc = lab.exec_capture(node, ["sh", "-c", script], timeout=timeout)
    assert proc.returncode == 0, f"{node}: {script!r}: {proc.stderr}"
    return proc.stdout


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def neighbour_last_seen(lab: RadioLab, node: str, peer_mac: str) -> float | None:
    """Seconds since `node`'s batman-adv last heard `peer_mac`; None if not a neighbour."""
    out = run_in(lab, node, "batctl meshif bat0 n -H")
    for line in out.splitlines():
        fields = line.split()
        if peer_mac in fields:
            return float(fields[fields.index(peer_mac) + 1].rstrip("s"))
    return None


def next_hop(lab: RadioLab, node: str, dest_mac: str) -> str | None:
    """The best next hop `node` has for originator `dest_mac`."""
    for line in run_in(lab, node, "batctl meshif bat0 o -H").splitlines():
        m = re.match(r"\s*\*\s+(\S+)\s+\S+\s+\(\s*\d+\)\s+(\S+)", line)
        if m and m.group(1) == dest_mac:
            return m.group(2)
    return None


def ssh_node(conn: dict[str, str], command: str) -> subprocess.CompletedProcess:
    """ssh_argv's 5 s connect timeout is tight for a TCG guest on a loaded host: retry twice."""
    for _ in range(3):
        proc = subprocess.run(ssh_argv(conn, command), capture_output=True, text=True,
                              timeout=60, check=False)
        if proc.returncode != 255:
            break
    return proc


def test_nodes_answer_ssh_and_have_wlan0(radio_lab):
    print(f"lab up (cached image) in {radio_lab.up_seconds:.1f}s")
    for i, spec in enumerate(radio_lab.specs):
        proc = ssh_node(radio_lab.conns[spec.name], "hostname; ip -br link show wlan0")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == spec.name
        assert lines[1].split()[0] == "wlan0" and mac(i) in lines[1]


def test_status_links_and_kind(radio_lab):
    lab = radio_lab.lab
    assert [(s["node"], s["running"]) for s in lab.status()] == [
        ("n0", True), ("n1", True), ("n2", True)]
    assert lab.links() == [
        {"a": "n0", "b": "n1", "state": "up", "reason": None},
        {"a": "n0", "b": "n2", "state": "down", "reason": "topology"},
        {"a": "n1", "b": "n2", "state": "up", "reason": None},
    ]
    assert isinstance(open_lab(lab.name), RadioLab)


def test_spare_radio_stays_in_the_guest(radio_lab):
    spare = radio_lab.lab.spare_radio()
    assert spare["phy"] == "phy3" and spare["mac"] == mac(3)
    out = radio_lab.lab.guest_exec_capture(["iw", "dev"], timeout=30).stdout
    assert "phy#3" in out and "phy#0" not in out  # the nodes' radios are in their namespaces


@pytest.fixture(scope="module")
def mesh(radio_lab):
    lab = radio_lab.lab
    start = time.monotonic()
    for i, spec in enumerate(radio_lab.specs):
        run_in(lab, spec.name, MESH_SETUP.format(addr=bat_addr(i)))
    wait_for("n0 routes to n2 via n1", lambda: next_hop(lab, "n0", mac(2)) == mac(1), 90)
    print(f"mesh formed {time.monotonic() - start:.1f}s after setup began")
    return lab


def test_line_topology_routes_through_the_middle(mesh):
    assert next_hop(mesh, "n0", mac(2)) == mac(1)
    assert next_hop(mesh, "n2", mac(0)) == mac(1)
    # n0 and n2 never hear each other directly.
    assert neighbour_last_seen(mesh, "n0", mac(2)) is None
    assert neighbour_last_seen(mesh, "n2", mac(0)) is None
    out = wait_for("ping n0 -> n2 over bat0", lambda: mesh.exec_capture(
        "n0", ["ping", "-c", "2", "-W", "3", bat_addr(2)], timeout=30).returncode == 0, 60)
    assert out


def test_cut_link_and_restore(mesh):
    mesh.link("n0", "n1", False)
    assert {"a": "n0", "b": "n1", "state": "down", "reason": "cut"} in mesh.links()
    start = time.monotonic()

    def silent() -> bool:  # neither side hears the other (batman-adv purges only after 200 s)
        seen = [neighbour_last_seen(mesh, a, mac(b)) for a, b in (("n0", 1), ("n1", 0))]
        return all(s is None or s > 5 for s in seen)

    wait_for("n0 and n1 lose each other", silent, 30)
    assert mesh.exec_capture("n0", ["ping", "-c", "2", "-W", "2", bat_addr(1)],
                             timeout=30).returncode != 0
    print(f"cut took effect in {time.monotonic() - start:.1f}s")
    mesh.link("n0", "n1", True)
    assert {"a": "n0", "b": "n1", "state": "up", "reason": None} in mesh.links()
    start = time.monotonic()
    wait_for("n0 hears n1 again", lambda: (neighbour_last_seen(mesh, "n0", mac(1)) or 99) < 3, 30)
    wait_for("ping n0 -> n1 again", lambda: mesh.exec_capture(
        "n0", ["ping", "-c", "1", "-W", "2", bat_addr(1)], timeout=30).returncode == 0, 30)
    print(f"restore took effect in {time.monotonic() - start:.1f}s")


def stations(lab: RadioLab, node: str) -> str:
    """The 802.11 stations (mesh peers) `node`'s radio knows, whatever their state."""
    return run_in(lab, node, "iw dev wlan0 station dump | grep ^Station || true")


def test_unlinked_radios_hear_nothing_of_each_other(mesh):
    # Not only data: no beacon or peering frame either, so n0 never even lists
    # n2 as a station (as a node out of radio range would not be).
    assert mac(1) in stations(mesh, "n0") and mac(1) in stations(mesh, "n2")
    assert mac(2) not in stations(mesh, "n0")
    assert mac(0) not in stations(mesh, "n2")


def test_spare_radio_hears_every_node(radio_lab, mesh):
    # Joined to the nodes' (open) mesh for a moment, the spare radio peers with
    # every node: a client station can reach any node's access point.
    spare = radio_lab.lab.spare_radio()
    iface = spare["interface"]
    join = (f"ip link set {iface} down; iw dev {iface} set type mp; ip link set {iface} up; "
            f"iw dev {iface} mesh join TEST freq 2412 mesh_fwding=0")
    leave = f"iw dev {iface} mesh leave; ip link set {iface} down; iw dev {iface} set type managed"
    lab = radio_lab.lab
    assert lab.guest_exec_capture(["sh", "-c", join], timeout=60).returncode == 0

    def peers_with_every_node() -> bool:
        out = lab.guest_exec_capture(["iw", "dev", iface, "station", "dump"], timeout=60).stdout
        return all(mac(i) in out for i in range(3))

    try:
        assert wait_for("the spare radio peers with every node", peers_with_every_node, 60, interval=2)
    finally:
        lab.guest_exec_capture(["sh", "-c", leave], timeout=60)


def test_restart_node_gets_radio_and_range_back(radio_lab, mesh):
    lab = radio_lab.lab
    run_in(lab, "n2", "echo provisioned > /etc/meshstead-provisioned")
    start = time.monotonic()
    lab.restart_node("n2")
    print(f"n2 rebooted, sshd back in {time.monotonic() - start:.1f}s")
    proc = ssh_node(radio_lab.conns["n2"], "cat /etc/meshstead-provisioned; ip -br link show wlan0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "provisioned"  # the node's disk survives its reboot
    assert mac(2) in proc.stdout  # a fresh wlan0 on its own radio
    # The topology still holds: the re-made mesh hears n1 and never n0.
    run_in(lab, "n2", MESH_SETUP.format(addr=bat_addr(2)))
    wait_for("n2 hears n1 again", lambda: (neighbour_last_seen(lab, "n2", mac(1)) or 99) < 3, 60)
    wait_for("n2 routes to n0 via n1", lambda: next_hop(lab, "n2", mac(0)) == mac(1), 60)
    assert mac(0) not in stations(lab, "n2")
