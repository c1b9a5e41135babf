"""RadioLab: lab nodes with simulated radios, inside one QEMU guest.

The host's kernel has no batman-adv or mac80211_hwsim, so the nodes run in a
TCG guest with Debian's stock kernel: one systemd-nspawn container per node
(its own systemd as PID 1, root an overlay on the image's node base), each
owning one mac80211_hwsim radio as wlan0.  The guest sits on the lab's switch
like a node container would, so the controller reaches every node by SSH
exactly as in the container lab; the public API is the container Lab's.

State lives in $MESHSTEAD_LAB_ROOT/<name>/ with "kind": "radio" in state.json;
everything `up` creates is recorded there so `down` removes exactly that.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import container, netns, ssh, state
from ..base import SSH_TIMEOUT, LabBase
from ..errors import LabError
from ..host import require_root, require_tools, run
from ..lab import LabNodeSpec, _refuse_if_mounted
from . import guest, guestimage
from . import topology as topo

HOST_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mke2fs", "ip", "nsenter", "nc",
              "ssh", "ssh-keygen")
BOOT_TIMEOUT = 300.0  # TCG boot to the guest's sshd: ~30-60 s, far more on a busy host
NODE_TIMEOUT = 240.0  # the nodes' units active (radio moved in)
POWEROFF_TIMEOUT = 60.0
LIB = "/usr/local/lib/meshstead"

Progress = Callable[[str], None]


class RadioLab(LabBase):
    """A lab of nodes with one mac80211_hwsim radio each (wlan0), in a QEMU guest."""

    def __init__(self, name: str = "default", ssh_timeout: float = SSH_TIMEOUT) -> None:
        super().__init__(name, ssh_timeout)
        self.share = self.dir / "share"  # what the guest reads from the host

    # -- helpers ---------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        st = state.load(self.state_file, self.name)
        st.setdefault("kind", "radio")
        if st["kind"] != "radio":
            raise LabError(f"lab {self.name} is a {st['kind']} lab, not a radio lab")
        return st

    def _ssh(self, st: dict[str, Any]) -> guest.GuestSSH:
        if not st.get("guest_address"):
            raise LabError(f"lab {self.name} has no guest: run up first")
        return guest.GuestSSH(self.dir, self.netns, st["guest_address"])

    def _running(self, st: dict[str, Any]) -> bool:
        return guest.is_ours(st.get("qemu_pid"), self.name)

    def _require_running(self, st: dict[str, Any]) -> guest.GuestSSH:
        if not self._running(st):
            raise LabError(f"the guest of radio lab {self.name} is not running: run up")
        return self._ssh(st)

    @staticmethod
    def _order(st: dict[str, Any]) -> list[str]:
        return sorted(st["nodes"], key=lambda n: st["nodes"][n]["radio"])

    # -- the share: what the guest learns from the host ------------------------

    def _write_share(self, st: dict[str, Any], key: Path) -> None:
        g = self.share / "guest"
        g.mkdir(parents=True, exist_ok=True)
        (g / "radios").write_text(f"{st['radios']}\n")
        net = ["[Match]", "Name=br0", "", "[Network]", "LinkLocalAddressing=ipv6",
               "IPv6AcceptRA=no", "ConfigureWithoutCarrier=yes"]
        for addr in st["guest_addresses"]:
            net += ["", "[Address]", f"Address={addr}", "DuplicateAddressDetection=none"]
        (g / "20-br0.network").write_text("\n".join(net) + "\n")
        (g / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        hostkey = g / "ssh_host_ed25519_key"
        if not hostkey.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@meshstead-radio",
                     "-f", str(hostkey)], what="ssh-keygen guest host key")
        self._write_topology(st)

    def _write_topology(self, st: dict[str, Any]) -> None:
        """Which radios hear each other (topology.radio_groups), for the guest's radio-range."""
        order = self._order(st)
        blocked = topo.blocked_peers(order, st["topology"], st["cuts"])
        masks, spare = topo.radio_groups(order, st["topology"], st["cuts"])
        groups = {st["nodes"][n]["radio"]: masks[n] for n in order}
        groups[st["radios"] - 1] = spare
        for node in order:
            d = self.share / "nodes" / node
            d.mkdir(parents=True, exist_ok=True)
            (d / "radio").write_text(f"{st['nodes'][node]['radio']}\n")
        g = self.share / "guest"
        g.mkdir(parents=True, exist_ok=True)
        tmp = g / "groups.tmp"
        tmp.write_text("".join(f"{k} {mask:x}\n" for k, mask in sorted(groups.items())))
        tmp.replace(g / "groups")  # the guest never reads half a file
        lab = {"name": self.name, "topology": st["topology"], "cuts": st["cuts"],
               "guest_addresses": st["guest_addresses"], "spare_radio": st["radios"] - 1,
               "spare_group": f"{spare:x}",
               "nodes": {n: {"radio": st["nodes"][n]["radio"], "ipv4": st["nodes"][n]["ipv4"],
                             "ipv6": st["nodes"][n]["ipv6"],
                             "macs": list(guest.hwsim_macs(st["nodes"][n]["radio"])),
                             "group": f"{masks[n]:x}", "blocked": blocked[n]} for n in order},
               "links": topo.link_states(order, st["topology"], st["cuts"])}
        (self.share / "lab.json").write_text(json.dumps(lab, indent=2, sort_keys=True) + "\n")

    def _write_seed(self, spec: LabNodeSpec, key: Path) -> str:
        """The node's identity files, applied by the guest on the node's next start."""
        d = self.share / "nodes" / spec.name
        seed = d / "seed"
        for sub, mode in (("etc", 0o755), ("etc/ssh", 0o755), ("etc/systemd", 0o755),
                          ("etc/systemd/network", 0o755), ("etc/apt", 0o755),
                          ("etc/apt/sources.list.d", 0o755), ("root", 0o700)):
            (seed / sub).mkdir(parents=True, exist_ok=True)
            (seed / sub).chmod(mode)
        mid = seed / "etc/machine-id"
        if not mid.exists():
            mid.write_text(secrets.token_hex(16) + "\n")
        container.configure(seed, spec.name, spec.ipv4, spec.ipv6)
        # No package repository in the radio lab: the node base has every package.
        (seed / "etc/apt/sources.list.d/meshstead-lab.list").unlink(missing_ok=True)
        host_key = ssh.install_host_key(seed, spec.ssh_host_ed25519_key)
        ssh.install_authorized_key(seed, key)
        digest = hashlib.sha256()
        for f in sorted(p for p in seed.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(seed)).encode() + b"\0" + f.read_bytes() + b"\0")
        (d / "stamp").write_text(digest.hexdigest() + "\n")
        return host_key

    # -- guest and nodes -------------------------------------------------------

    def _boot_guest(self, st: dict[str, Any], image: guestimage.GuestImage,
                    say: Progress) -> None:
        """Start QEMU and wait for the guest's sshd: one retry (TCG hangs now and then)."""
        gssh = self._ssh(st)
        for attempt in (1, 2):
            say(f"booting the radio guest (attempt {attempt}, TCG: about a minute)")
            netns.create_tap(self.netns, guest.TAP)
            qemu = guest.start(self.name, image, self.dir, self.netns)
            st["qemu_pid"] = qemu.pid
            self._save(st)  # recorded before anything can fail, so down() finds it
            try:
                gssh.wait(BOOT_TIMEOUT, lambda q=qemu: q.poll() is None)
                return
            except LabError as err:
                gssh.close()
                # Our own child: stopped by its handle, never left running
                # beside the retry (two QEMUs cannot share the disk).
                guest.stop(qemu)
                qlog = (self.dir / "qemu.log").read_text(errors="replace").strip().splitlines()
                exc = f"{err}: {qlog[-1]}" if qlog else str(err)
                if attempt == 2:
                    raise LabError(f"radio lab {self.name}: guest boot failed twice ({exc}); "
                                   f"console: {self.dir / 'console.log'}") from None
                say(f"guest boot failed ({exc}); retrying once")

    def _start_nodes(self, st: dict[str, Any], nodes: Sequence[str], say: Progress) -> None:
        """Start the nodes' units in the guest and wait until each has its radio."""
        gssh = self._ssh(st)
        units = [f"meshstead-node@{n}.service" for n in nodes]
        say("starting nodes " + ", ".join(nodes))
        gssh.check(["systemctl", "start", "--no-block", *units], what="start node units")
        failed = self._wait_active(gssh, nodes, NODE_TIMEOUT)
        if failed:
            say(f"node start failed on {', '.join(failed)}; retrying once")
            gssh.check(["systemctl", "reset-failed", *[f"meshstead-node@{n}.service" for n in failed]],
                       what="reset failed node units")
            gssh.check(["systemctl", "restart", "--no-block",
                        *[f"meshstead-node@{n}.service" for n in failed]], what="restart node units")
            failed = self._wait_active(gssh, failed, NODE_TIMEOUT)
        if failed:
            n = failed[0]
            log = gssh.run(["journalctl", "-b", "-q", "-n", "5", "--no-pager", "-u",
                            f"meshstead-node@{n}.service"]).stdout.strip().splitlines()
            raise LabError(f"node {n} did not start in the radio guest: "
                           f"{log[-1] if log else 'no journal'}")

    def _wait_active(self, gssh: guest.GuestSSH, nodes: Sequence[str], timeout: float) -> list[str]:
        """The nodes whose unit is not active after `timeout` (failed ones at once)."""
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        while pending:
            proc = gssh.run(["systemctl", "is-active", *[f"meshstead-node@{n}.service" for n in pending]],
                            timeout=60)
            states = proc.stdout.split()
            if len(states) == len(pending):
                if any(s == "failed" for s in states):
                    return [n for n, s in zip(pending, states, strict=True) if s != "active"]
                pending = [n for n, s in zip(pending, states, strict=True) if s != "active"]
            if not pending or time.monotonic() > deadline:
                return pending
            time.sleep(1)
        return []

    def _wait_node_ssh(self, st: dict[str, Any], nodes: Sequence[str], say: Progress) -> None:
        conns = {n: self._conn(st, n) for n in nodes}
        say("waiting for sshd on " + ", ".join(nodes))
        try:
            ssh.wait_for_ssh(conns, self.ssh_timeout)
            return
        except LabError as exc:
            say(f"{exc}; restarting those nodes once")
        bad = [n for n in nodes
               if subprocess.run(ssh.ssh_argv(conns[n], "true"), capture_output=True,  # noqa: S603
                                 timeout=30, check=False).returncode != 0]
        gssh = self._ssh(st)
        gssh.check(["systemctl", "restart", *[f"meshstead-node@{n}.service" for n in bad]],
                   what="restart nodes without sshd", timeout=NODE_TIMEOUT)
        ssh.wait_for_ssh({n: conns[n] for n in bad}, self.ssh_timeout)

    # -- public API ------------------------------------------------------------

    def up(self, specs: Sequence[LabNodeSpec], topology: str = "full",
           progress: Progress | None = None) -> dict[str, dict[str, str]]:
        """Boot (or resume) the guest with one node per spec; Ansible connection vars per node.

        Idempotent: a running guest and its running nodes are left alone.  A
        running guest cannot take new nodes (its radios are fixed at boot).
        """
        say = progress or (lambda _msg: None)
        require_root()
        require_tools(*HOST_TOOLS)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise LabError(f"duplicate node names in {names}")
        image = guestimage.ensure_guest_image(say)
        with self._locked():
            st = self._load()
            st["kind"] = "radio"
            running = self._running(st)
            new = [n for n in names if n not in st["nodes"]]
            if running and new:
                raise LabError(f"radio lab {self.name} is running without node(s) {', '.join(new)}: "
                               "its radios are fixed at boot; run down first")
            for spec in specs:
                rec = st["nodes"].setdefault(spec.name, {"radio": len(st["nodes"])})
                rec.update(address=spec.address, ipv4=spec.ipv4, ipv6=spec.ipv6)
            order = self._order(st)
            topo.allowed(order, topology)  # validates before any change
            topo.radio_groups(order, topology, [])
            st["topology"] = topology
            st.setdefault("cuts", [])
            st["radios"] = len(order) + 1  # the last one is the spare for a client station
            st["image"] = str(image.dir)
            if st["netns"] is None:
                st["netns"] = self.netns
            self._save(st)
            say(f"network namespace {self.netns}")
            netns.create_switch(self.netns)
            ifaces = [a for r in st["nodes"].values() for a in (r["ipv4"], r["ipv6"]) if a]
            try:
                st["controller_addresses"] = netns.controller_addresses(ifaces)
                st["guest_addresses"] = _guest_addresses(ifaces)
            except ValueError as exc:
                raise LabError(f"lab {self.name}: {exc}") from None
            first = ipaddress.ip_interface(st["nodes"][order[0]]["ipv4"] or st["nodes"][order[0]]["ipv6"])
            st["guest_address"] = next(str(ipaddress.ip_interface(a).ip) for a in st["guest_addresses"]
                                       if ipaddress.ip_interface(a).network == first.network)
            self._save(st)
            netns.set_addresses(self.netns, st["controller_addresses"])
            key = ssh.ensure_controller_key(self.dir)
            for spec in specs:
                st["nodes"][spec.name]["host_key"] = self._write_seed(spec, key)
            self._write_share(st, key)
            self._save(st)
            ssh.write_known_hosts(self.known_hosts, {
                **{r["address"]: r["host_key"] for r in st["nodes"].values()},
                st["guest_address"]: _pubkey(self.share / "guest/ssh_host_ed25519_key.pub")})
            if not running:
                guest.create_overlay(image, self.dir / "disk.qcow2")
                self._boot_guest(st, image, say)
            else:
                say("radio guest already running")
                # Topology may have changed: re-apply the radios' range.
                self._ssh(st).check([f"{LIB}/radio-range"], what="apply radio range")
            self._start_nodes(st, names, say)
            self._wait_node_ssh(st, names, say)
            return {n: self._conn(st, n) for n in names}

    def status(self) -> list[dict[str, Any]]:
        st = self._load()
        order = sorted(st["nodes"])
        active = ["inactive"] * len(order)
        if order and self._running(st):
            proc = self._ssh(st).run(["systemctl", "is-active",
                                      *[f"meshstead-node@{n}.service" for n in order]], timeout=60)
            if len(proc.stdout.split()) == len(order):
                active = proc.stdout.split()
        return [{"node": n, "pid": None, "address": st["nodes"][n]["address"],
                 "running": a == "active", "radio": f"phy{st['nodes'][n]['radio']}"}
                for n, a in zip(order, active, strict=True)]

    def links(self) -> list[dict[str, Any]]:
        st = self._load()
        return topo.link_states(self._order(st), st["topology"], st["cuts"])

    def link(self, a: str, b: str, up: bool) -> None:
        """Cut (up=False) or restore the radio link between two nodes, both directions.

        A link the topology blocks stays down whatever is asked here.
        """
        require_root()
        with self._locked(create=False) as exists:
            if not exists:
                raise LabError(f"lab {self.name} does not exist: run up first")
            st = self._load()
            self._node(st, a)
            self._node(st, b)
            if a == b:
                raise LabError(f"a link needs two different nodes, not {a} twice")
            pair = sorted((a, b))
            cuts = [c for c in st["cuts"] if sorted(c) != pair]
            if not up:
                cuts.append(pair)
            st["cuts"] = cuts
            self._save(st)
            self._write_topology(st)
            if self._running(st):
                self._ssh(st).check([f"{LIB}/radio-range"], what=f"radio range for {a}-{b}")

    def _node_argv(self, node: str, command: Sequence[str]) -> tuple[guest.GuestSSH, list[str]]:
        st = self._load()
        self._node(st, node)
        return self._require_running(st), ["/usr/local/sbin/meshstead-node-exec", node, *command]

    def exec(self, node: str, command: Sequence[str]) -> int:
        """Run `command` as root inside `node` (stdio passed through); its exit code."""
        require_root()
        gssh, argv = self._node_argv(node, command)
        return subprocess.run(gssh.argv(argv, tty=sys.stdin.isatty()), check=False).returncode  # noqa: S603

    def exec_capture(self, node: str, command: Sequence[str], input: str | None = None,
                     timeout: float | None = None) -> subprocess.CompletedProcess:
        """Like exec, but returns the CompletedProcess with text stdout/stderr."""
        require_root()
        gssh, argv = self._node_argv(node, command)
        return gssh.run(argv, timeout=timeout, input=input)

    def guest_exec_capture(self, command: Sequence[str],
                           timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run `command` in the guest itself (its own namespaces; the spare radio lives there)."""
        require_root()
        return self._require_running(self._load()).run(command, timeout=timeout)

    def restart_node(self, node: str) -> None:
        """Reboot the node's own systemd (nspawn exits 133, its unit starts it again
        with its radio) and wait for its sshd."""
        require_root()
        st = self._load()
        self._node(st, node)
        gssh = self._require_running(st)
        old = gssh.run(["/usr/local/sbin/meshstead-node-leader", node], timeout=30).stdout.strip()
        gssh.run(["/usr/local/sbin/meshstead-node-exec", node, "systemctl", "reboot"], timeout=60)
        deadline = time.monotonic() + NODE_TIMEOUT
        while True:
            now = gssh.run(["sh", "-c", f"systemctl is-active meshstead-node@{node}.service >/dev/null "
                                        f"&& /usr/local/sbin/meshstead-node-leader {node}"], timeout=60)
            if now.returncode == 0 and now.stdout.strip() not in ("", old):
                break
            if time.monotonic() > deadline:
                raise LabError(f"node {node} did not come back from its reboot within "
                               f"{NODE_TIMEOUT:.0f}s")
            time.sleep(1)
        self._wait_node_ssh(st, [node], lambda _m: None)

    def start_node(self, node: str) -> None:
        require_root()
        st = self._load()
        self._node(st, node)
        self._require_running(st)
        self._start_nodes(st, [node], lambda _m: None)
        self._wait_node_ssh(st, [node], lambda _m: None)

    def stop_node(self, node: str, force: bool = False) -> None:
        require_root()
        st = self._load()
        self._node(st, node)
        gssh = self._require_running(st)
        cmd = (["systemctl", "kill", "--signal=SIGKILL", f"meshstead-node@{node}.service"] if force
               else ["systemctl", "stop", f"meshstead-node@{node}.service"])
        gssh.check(cmd, what=f"stop node {node}", timeout=NODE_TIMEOUT)

    def spare_radio(self) -> dict[str, str]:
        """The radio left in the guest's own namespace for a client station."""
        st = self._load()
        gssh = self._require_running(st)
        index = st["radios"] - 1
        ifaces = gssh.check(["sh", "-c", f". {LIB}/common.sh; phy_netdevs {index}"],
                            what="spare radio lookup").split()
        return {"phy": f"phy{index}", "mac": guest.hwsim_macs(index)[0],
                "interface": ifaces[0] if ifaces else ""}

    def down(self) -> None:
        """Power the guest off (QEMU killed by its recorded PID after a timeout),
        delete the switch namespace (and with it the tap) and the lab dir."""
        require_root()
        with self._locked(create=False) as exists:
            if not exists:
                return
            st = self._load()
            pid = st.get("qemu_pid")
            if self._running(st) and st.get("guest_address"):
                gssh = self._ssh(st)
                try:
                    gssh.run(["systemctl", "poweroff", "--no-block"], timeout=20)
                except subprocess.TimeoutExpired:
                    pass
                gssh.close()
            guest.kill(pid, self.name, timeout=POWEROFF_TIMEOUT)
            if st.get("netns"):
                netns.delete(st["netns"])
            _refuse_if_mounted(self.dir)
            for sub in ("share", "disk.qcow2"):
                path = self.dir / sub
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            shutil.rmtree(self.dir)


def _guest_addresses(node_ifaces: list[str]) -> list[str]:
    """The guest's own address in every node subnet: the one below the controller's."""
    ifaces = [ipaddress.ip_interface(a) for a in node_ifaces]
    taken = {i.ip for i in ifaces}
    out = []
    for net in sorted({i.network for i in ifaces}, key=str):
        addr = net.broadcast_address - (2 if net.version == 4 else 1)
        if net.num_addresses < 8 or addr in taken:
            raise ValueError(f"no free guest address in {net} (uses {addr})")
        out.append(f"{addr}/{net.prefixlen}")
    return out


def _pubkey(path: Path) -> str:
    return " ".join(path.read_text().split()[:2])
