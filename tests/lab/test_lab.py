"""The node lab end to end: real systemd-nspawn nodes, real ssh, real apt."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from wizard.lab import Lab, LabError, LabNodeSpec
from wizard.lab.host import INOTIFY_INSTANCES
from wizard.lab.ssh import ssh_argv
from wizard.lab.state import lab_root

pytestmark = pytest.mark.lab


def ssh(conn: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    argv = ssh_argv(conn, *command)
    # Host key checking must stay on: the lab's args say so and we insist here too.
    assert "StrictHostKeyChecking=yes" in argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_ssh_to_every_node_with_returned_args(lab2):
    lab, specs, conn = lab2
    assert set(conn) == {"node1", "node2"}
    for spec in specs:
        c = conn[spec.name]
        assert c["ansible_host"] == spec.address
        assert c["ansible_user"] == "root"
        assert oct(os.stat(c["ansible_ssh_private_key_file"]).st_mode & 0o777) == "0o600"
        proc = ssh(c, "hostname")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == spec.name


def test_node_carries_the_sites_host_key(lab2, site_host_key, tmp_path):
    lab, _specs, conn = lab2
    key = tmp_path / "k"
    key.write_text(site_host_key)
    key.chmod(0o600)
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                         text=True, check=True).stdout.split()[1]
    known = (lab.dir / "known_hosts").read_text()
    assert f"10.42.0.1 ssh-ed25519 {pub}" in known
    # A wrong known_hosts entry must make ssh refuse (checking is really on).
    bad = tmp_path / "known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()[1]
    bad.write_text(known.replace(pub, other))
    c = dict(conn["node1"])
    c["ansible_ssh_common_args"] = c["ansible_ssh_common_args"].replace(
        str(lab.dir / "known_hosts"), str(bad))
    proc = ssh(c, "true")
    assert proc.returncode != 0
    assert "host key" in proc.stderr.lower() or "HOST IDENTIFICATION" in proc.stderr


def test_nodes_reach_each_other(lab2):
    lab, _specs, _conn = lab2
    assert lab.exec("node1", ["ping", "-c", "1", "-W", "3", "10.42.0.2"]) == 0
    assert lab.exec("node1", ["ping", "-c", "1", "-W", "3", "fd12:3456:789a::2"]) == 0
    # Link-local IPv6 is there for Yggdrasil's multicast discovery.
    out = lab.exec_capture("node2", ["ip", "-6", "addr", "show", "dev", "host0"]).stdout
    assert "fe80::" in out


def test_apt_installs_from_the_local_repo(lab2):
    lab, _specs, _conn = lab2
    res = lab.exec_capture(
        "node2", ["sh", "-c", "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
                  "apt-get install -y -q nncp && command -v nncp-daemon"], timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stdout.strip().endswith("/usr/bin/nncp-daemon")


def test_up_again_is_a_noop(lab2):
    lab, specs, conn = lab2
    before = {s["node"]: s["pid"] for s in lab.status()}
    assert all(s["running"] for s in lab.status())
    again = lab.up(specs)
    assert again == conn
    assert {s["node"]: s["pid"] for s in lab.status()} == before
    state = json.loads((lab.dir / "state.json").read_text())
    assert sorted(state["nodes"]) == ["node1", "node2"]


def test_exec_passes_exit_code_and_output(lab2):
    lab, _specs, _conn = lab2
    assert lab.exec("node1", ["sh", "-c", "exit 7"]) == 7
    res = lab.exec_capture("node2", ["cat", "/etc/hostname"])
    assert (res.returncode, res.stdout) == (0, "node2\n")
    # systemd really is PID 1 inside.
    assert lab.exec_capture("node1", ["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    with pytest.raises(LabError, match="no node"):
        lab.exec("nosuch", ["true"])


def test_killed_node_comes_back(lab2):
    lab, _specs, conn = lab2
    old = {s["node"]: s["pid"] for s in lab.status()}
    lab.exec("node2", ["touch", "/root/survives-reboot"])
    lab.stop_node("node2", force=True)  # a pulled plug, e.g. mid-provision
    status = {s["node"]: s for s in lab.status()}
    assert not status["node2"]["running"]
    assert status["node1"]["running"]
    lab.start_node("node2")
    new = {s["node"]: s["pid"] for s in lab.status()}
    assert new["node2"] != old["node2"] and new["node1"] == old["node1"]
    assert ssh(conn["node2"], "test -e /root/survives-reboot").returncode == 0


def test_probe_outside_site_ranges(lab2):
    lab, _specs, _conn = lab2
    ns = lab.attach_probe("outsider", "192.0.2.10/24")
    assert Path("/run/netns", ns).exists()
    proc = subprocess.run(["ip", "netns", "exec", ns, "nc", "-z", "-w", "5", "10.42.0.1", "22"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # The host's own namespace never gets a lab address.
    assert "10.42.0." not in subprocess.run(["ip", "addr"], capture_output=True,
                                            text=True, check=True).stdout


def test_down_leaves_nothing(fresh_lab):
    lab = fresh_lab
    t0 = time.monotonic()
    lab.up([LabNodeSpec(f"n{i}", ipv4=f"10.42.0.{i}/18") for i in (1, 2, 3)])
    t_up = time.monotonic() - t0
    # Nodes share the host's inotify instances: up raised the limit for them.
    assert int(INOTIFY_INSTANCES.read_text()) >= 128 + 64 * 3
    saved = lab_root() / "inotify-instances.saved"
    original = saved.read_text() if saved.exists() else None
    probe = lab.attach_probe("p", "192.0.2.20/24")
    state = json.loads((lab.dir / "state.json").read_text())
    pids = [n["pid"] for n in state["nodes"].values()]
    pids += [n["init_pid"] for n in state["nodes"].values()]
    t0 = time.monotonic()
    lab.down()
    t_down = time.monotonic() - t0
    print(f"\ntimings: cached up of 3 nodes {t_up:.1f}s, down {t_down:.1f}s")
    assert not lab.dir.exists()
    for ns in (state["netns"], probe):
        assert not Path("/run/netns", ns).exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    if not any(lab_root().glob("*/state.json")):  # the last lab puts the old limit back
        assert not saved.exists()
        if original:
            assert INOTIFY_INSTANCES.read_text() == original
    lab.down()  # twice is fine


def test_clear_errors():
    with pytest.raises(LabError, match="DNS label"):
        Lab("Not_A_Label")
    with pytest.raises(LabError, match="IPv4"):
        LabNodeSpec("n1", ipv4="fd00::1/64")
    with pytest.raises(LabError, match="address"):
        LabNodeSpec("n1")
    if os.geteuid() != 0:
        return
    # Operations on a lab that does not exist fail in one clear line.
    missing = Lab("nonexistent0")
    with pytest.raises(LabError, match="does not exist|no node"):
        missing.start_node("node1")
    missing.down()  # nothing to do, nothing touched
