"""The Lab: a named set of node containers on one private switch."""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import aptrepo, blank, container, dhcp, host, netns, rootfs, ssh, state, vm
from .base import LabBase, _check_label
from .errors import LabError
from .host import require_root, require_tools


def _inotify_saved() -> Path:
    """The host's inotify limit before the first lab raised it."""
    return state.lab_root() / "inotify-instances.saved"


HOST_TOOLS = ("systemd-nspawn", "ip", "nsenter", "nc", "ssh", "ssh-keygen")


@dataclass(frozen=True)
class LabNodeSpec:
    """One node: its inventory name, lab addresses (CIDR) and optional site host key."""

    name: str
    ipv4: str | None = None
    ipv6: str | None = None
    ssh_host_ed25519_key: str | None = None  # OpenSSH PEM; None: the lab makes one

    def __post_init__(self) -> None:
        _check_label("node name", self.name, 40)
        if not (self.ipv4 or self.ipv6):
            raise LabError(f"node {self.name}: needs an ipv4 or ipv6 address")
        for addr, version in ((self.ipv4, 4), (self.ipv6, 6)):
            if addr is None:
                continue
            try:
                iface = ipaddress.ip_interface(addr)
            except ValueError as exc:
                raise LabError(f"node {self.name}: bad address {addr!r}: {exc}") from None
            if iface.version != version or "/" not in addr:
                raise LabError(f"node {self.name}: {addr!r} is not an IPv{version} address/prefix")

    @property
    def address(self) -> str:
        return str(ipaddress.ip_interface(self.ipv4 or self.ipv6).ip)


class Lab(LabBase):
    """A lab of Debian bookworm node containers.

    Everything `up` creates is recorded in the lab's state.json so `down` can
    remove exactly that.
    """

    # -- helpers ---------------------------------------------------------------

    def _machine(self, node: str) -> str:
        return f"{self.name}-{node}"

    def _boot(self, st: dict[str, Any], node: str, progress: Callable[[str], None]) -> None:
        rec = st["nodes"][node]
        machine = self._machine(node)
        if container.is_ours(rec.get("pid"), machine):
            return
        log = self.dir / "nodes" / node / "console.log"
        if rec.get("veth"):
            netns.remove_stale_link(self.netns, rec["veth"])
        progress(f"booting {node}")
        pid = container.boot(Path(rec["rootfs"]), machine, self.netns, Path(st["repo"]), log)
        rec["pid"], rec["init_pid"] = pid, None
        self._save(st)  # recorded before anything can fail, so down() finds it
        try:
            rec["init_pid"] = container.init_pid(pid)
        except LabError:
            lines = log.read_text(errors="replace").strip().splitlines() or ["(empty log)"]
            # nspawn's own error, not its trailing cleanup chatter.
            cause = next((x for x in reversed(lines) if x.startswith("Failed")), lines[-1])
            raise LabError(f"node {node} did not boot: {cause} (full log: {log})") from None
        rec["veth"] = container.host_veth(log, machine)
        self._save(st)

    # -- public API ------------------------------------------------------------

    def up(self, specs: Sequence[LabNodeSpec],
           progress: Callable[[str], None] | None = None) -> dict[str, dict[str, str]]:
        """Create or resume the lab; return Ansible connection vars per node.

        Idempotent: running nodes are left alone, stopped ones are booted again on
        their existing disk, new specs are added.
        """
        say = progress or (lambda _msg: None)
        require_root()
        require_tools(*HOST_TOOLS)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise LabError(f"duplicate node names in {names}")
        base = rootfs.ensure_base_rootfs(say)
        repo = aptrepo.ensure_repo(say)
        with self._locked():
            st = self._load()
            st["repo"] = str(repo)
            if st["netns"] is None:
                st["netns"] = self.netns
                self._save(st)
            say(f"network namespace {self.netns}")
            netns.create_switch(self.netns)
            addrs = {n: (r["ipv4"], r["ipv6"]) for n, r in st["nodes"].items()}
            addrs.update({s.name: (s.ipv4, s.ipv6) for s in specs})
            node_ifaces = [a for pair in addrs.values() for a in pair if a]
            try:
                st["controller_addresses"] = netns.controller_addresses(node_ifaces)
            except ValueError as exc:
                raise LabError(f"lab {self.name}: {exc}") from None
            netns.set_addresses(self.netns, st["controller_addresses"])
            key = ssh.ensure_controller_key(self.dir)
            for spec in specs:
                node_dir = self.dir / "nodes" / spec.name
                rec = st["nodes"].setdefault(spec.name, {"rootfs": str(node_dir / "rootfs")})
                rec.update(address=spec.address, ipv4=spec.ipv4, ipv6=spec.ipv6,
                           machine=self._machine(spec.name))
                self._save(st)
                root = Path(rec["rootfs"])
                _copy_tree(base, root, lambda n=spec.name: say(f"copying rootfs for {n}"))
                container.configure(root, spec.name, spec.ipv4, spec.ipv6)
                rec["host_key"] = ssh.install_host_key(root, spec.ssh_host_ed25519_key)
                ssh.install_authorized_key(root, key)
            self._save(st)
            self._write_known_hosts(st)
            running_nodes = sum(1 for _ in state.lab_root().glob("*/nodes/*"))
            host.raise_inotify_instances(running_nodes, _inotify_saved())
            for spec in specs:
                self._boot(st, spec.name, say)
            conns = {s.name: self._conn(st, s.name) for s in specs}
            say("waiting for sshd on " + ", ".join(names))
            ssh.wait_for_ssh(conns, self.ssh_timeout)
            return conns

    def add_blanks(self, count: int, card_files: dict[str, bytes] | None = None,
                   progress: Callable[[str], None] | None = None) -> list[str]:
        """Blank nodes blank1…blank<count> beside the site's (blank.py): each
        takes an address by DHCP on the switch and waits for an invite.
        `card_files` go onto a new node's card (e.g. its local.yml).
        Idempotent, like up(); the lab's site nodes must be up first."""
        say = progress or (lambda _msg: None)
        require_root()
        require_tools(*HOST_TOOLS, "dnsmasq", "mount")
        tree = blank.ensure_tree(say)
        repo = aptrepo.ensure_repo(say)
        names = [f"blank{i}" for i in range(1, count + 1)]
        with self._locked():
            st = self._load()
            if not st.get("controller_addresses"):
                raise LabError(f"lab {self.name} has no switch yet; expected `lab up` of the site's nodes first")
            st.setdefault("repo", str(repo))
            for name in names:
                node_dir = self.dir / "nodes" / name
                rec = st["nodes"].setdefault(name, {
                    "kind": "blank", "rootfs": str(node_dir / "rootfs"), "address": None, "ipv4": None,
                    "ipv6": None, "host_key": None, "machine": self._machine(name)})
                if rec.get("kind") != "blank":
                    raise LabError(f"lab {self.name} already has a node {name} that is not blank")
                self._save(st)
                root = Path(rec["rootfs"])
                if _copy_tree(tree, root, lambda n=name: say(f"copying the blank tree for {n}")):
                    blank.write_card(root, card_files or {})
            if not dhcp.is_ours(st.get("dhcp_pid"), self.dir):
                say("serving DHCP on the lab's switch")
                v4 = next(a for a in st["controller_addresses"] if ipaddress.ip_interface(a).version == 4)
                st["dhcp_pid"] = dhcp.start(self.netns, self.dir, v4)
                self._save(st)
            host.raise_inotify_instances(sum(1 for _ in state.lab_root().glob("*/nodes/*")), _inotify_saved())
            for name in names:
                self._boot(st, name, say)
            say("waiting for " + ", ".join(names) + " to boot")
            deadline = time.monotonic() + self.ssh_timeout
            for name in names:
                # Its first boot has looked at the card: waiting for an invite, or joined.
                while blank.report(Path(st["nodes"][name]["rootfs"])).get("status") is None:
                    if time.monotonic() > deadline or not self._running(name, st["nodes"][name]):
                        raise LabError(f"blank node {name} did not finish booting (see "
                                       f"{self.dir / 'nodes' / name / 'console.log'})")
                    time.sleep(0.5)
        return names

    def _resolve(self, st: dict[str, Any], node: str) -> str:
        """A lab node's name; a blank node also answers to the site node it became."""
        if node in st["nodes"]:
            return node
        for name, rec in st["nodes"].items():
            if rec.get("kind") == "blank" and blank.joined_as(Path(rec["rootfs"])) == node:
                return name
        raise LabError(f"lab {self.name} has no node {node!r}")

    def _node(self, st: dict[str, Any], node: str) -> dict[str, Any]:
        return st["nodes"][self._resolve(st, node)]

    def _running(self, node: str, rec: dict[str, Any]) -> bool:
        if rec.get("kind") == "vm":
            return vm.is_ours(rec.get("pid"), self.name, node)
        return container.is_ours(rec.get("pid"), rec["machine"])

    def status(self) -> list[dict[str, Any]]:
        st = self._load()
        rows = [{"node": n, "pid": r.get("pid"), "address": r["address"], "kind": r.get("kind", "container"),
                 "running": self._running(n, r)}
                for n, r in sorted(st["nodes"].items())]
        for row in rows:
            if row["kind"] == "blank":
                report = blank.report(Path(st["nodes"][row["node"]]["rootfs"]))
                row["first_boot"] = report.get("status")
                row["joined_as"] = report.get("node") if report.get("status") == "ok" else None
        return rows

    def boot_image(self, node: str, image: Path, *, ipv4: str | None, ipv6: str | None, host_key: str | None,
                   user: str, identity: Path | None, progress: Callable[[str], None] | None = None,
                   card_files: dict[str, bytes] | None = None) -> dict[str, str]:
        """Boot a flashed image as lab node `node` on the lab's switch (the lab is
        made if it does not exist); its connection vars, as the site's admin.
        A node that joins by invite has no address yet (ipv4 None): it takes
        one by DHCP from the switch, and set_address() records the one it joined
        with. `card_files` are written onto its card's boot partition."""
        say = progress or (lambda _msg: None)
        require_root()
        require_tools("ip", "nsenter", "nc", "ssh", vm.QEMU)
        with self._locked():
            st = self._load()
            if node in st["nodes"] and st["nodes"][node].get("kind") != "vm":
                raise LabError(f"lab {self.name} already has a container node {node}")
            if st["netns"] is None:
                st["netns"] = self.netns
                self._save(st)
            netns.create_switch(self.netns)
            addrs = [a for r in st["nodes"].values() for a in (r["ipv4"], r["ipv6"]) if a]
            try:
                st["controller_addresses"] = netns.controller_addresses([*addrs, *(a for a in (ipv4, ipv6) if a)])
            except ValueError as exc:
                raise LabError(f"lab {self.name}: {exc}") from None
            netns.set_addresses(self.netns, st["controller_addresses"])
            node_dir = self.dir / "nodes" / node
            rec = st["nodes"].get(node)
            if rec and vm.is_ours(rec.get("pid"), self.name, node):
                vm.stop(rec["pid"], self.name, node)
            node_dir.mkdir(parents=True, exist_ok=True)
            say(f"writing {image.name} to {node}'s card")
            vm.write_card(image, node_dir / "card.img")
            if card_files:
                vm.write_onto_card(node_dir / "card.img", card_files)
            (node_dir / "console.log").unlink(missing_ok=True)
            (node_dir / "efivars.fd").unlink(missing_ok=True)
            address = str(ipaddress.ip_interface(ipv4).ip) if ipv4 else None
            rec = {"kind": "vm", "address": address, "ipv4": ipv4, "ipv6": ipv6, "host_key": host_key,
                   "user": user, "identity": str(identity) if identity else None, "pid": None,
                   "machine": vm.process_name(self.name, node)}
            st["nodes"][node] = rec
            self._save(st)
            self._write_known_hosts(st)
            if ipv4 is None and not dhcp.is_ours(st.get("dhcp_pid"), self.dir):
                say("serving DHCP on the lab's switch")
                v4 = next(a for a in st["controller_addresses"] if ipaddress.ip_interface(a).version == 4)
                st["dhcp_pid"] = dhcp.start(self.netns, self.dir, v4)
                self._save(st)
            say(f"powering {node} on")
            rec["pid"] = vm.start(self.name, node, node_dir, self.netns)
            self._save(st)  # recorded before anything can fail, so down() finds it
            return self._conn(st, node)

    def set_address(self, node: str, *, ipv4: str, ipv6: str, host_key: str, user: str | None = None,
                    identity: Path | None = None) -> dict[str, str]:
        """Record the addresses and host key a node that joined by invite was
        given; its connection vars. A blank node (named by the site node it
        became) is then reached as a real node is, by `user` with `identity`:
        the roles it joined with allow no root login."""
        require_root()
        with self._locked(create=False):
            st = self._load()
            name = self._resolve(st, node)
            rec = st["nodes"][name]
            rec.update(address=str(ipaddress.ip_interface(ipv4).ip), ipv4=ipv4, ipv6=ipv6, host_key=host_key)
            if rec.get("kind") == "blank":
                rec.update(user=user, identity=str(identity) if identity else None)
            self._save(st)
            self._write_known_hosts(st)
            return self._conn(st, name)

    def joined(self) -> dict[str, str]:
        """Site node -> lab node, for the lab's nodes that joined by invite
        (a blank node's first boot, or an image booted with an invite) and
        are running."""
        st = self._load()
        found = {}
        for name, rec in st["nodes"].items():
            if rec.get("kind") == "blank":
                became = blank.joined_as(Path(rec["rootfs"]))
            else:  # a VM is named by its site node; one that joins has an address once admitted
                became = name if rec.get("kind") == "vm" and rec.get("address") else None
            if became and self._running(name, rec):
                found[became] = name
        return found

    def _write_known_hosts(self, st: dict[str, Any]) -> None:
        """Every node's host key at its address (a node joining by invite has none yet)."""
        ssh.write_known_hosts(self.known_hosts, {r["address"]: r["host_key"] for r in st["nodes"].values()
                                                 if r["address"]})

    def console(self, node: str, lines: int = 1) -> str:
        """The last lines a VM node wrote to its serial console."""
        return vm.console_tail(self.dir / "nodes" / node, lines)

    def _conn(self, st: dict[str, Any], node: str) -> dict[str, str]:
        rec = st["nodes"][node]
        if not rec.get("user"):  # a container node: root, with the lab's key
            return super()._conn(st, node)
        conn = {"ansible_host": rec["address"], "ansible_user": rec["user"],
                "ansible_ssh_common_args": ssh.common_args(self.netns, self.known_hosts)}
        if rec.get("identity"):
            conn["ansible_ssh_private_key_file"] = rec["identity"]
        return conn

    def start_node(self, node: str) -> None:
        """Boot a stopped node again (its disk is kept) and wait for sshd."""
        require_root()
        with self._locked(create=False) as exists:
            if not exists:
                raise LabError(f"lab {self.name} does not exist: run up first")
            st = self._load()
            node = self._resolve(st, node)
            rec = self._node(st, node)
            if rec.get("kind") == "vm":
                if not vm.is_ours(rec.get("pid"), self.name, node):
                    rec["pid"] = vm.start(self.name, node, self.dir / "nodes" / node, self.netns)
                    self._save(st)
                ssh.wait_for_ssh({node: self._conn(st, node)}, self.ssh_timeout)
                return
            self._boot(st, node, lambda _m: None)
            ssh.wait_for_ssh({node: self._conn(st, node)}, self.ssh_timeout)

    def stop_node(self, node: str, force: bool = False) -> None:
        """Power a node off; force=True kills it at once (a pulled plug)."""
        require_root()
        st = self._load()
        rec = self._node(st, node)
        if rec.get("kind") == "vm":
            vm.stop(rec.get("pid"), self.name, node)
            return
        container.stop(rec.get("pid"), rec["machine"], rec.get("init_pid"), force=force)

    def _init_pid(self, node: str) -> int:
        st = self._load()
        rec = self._node(st, node)
        if not container.is_ours(rec.get("pid"), rec["machine"]):
            raise LabError(f"node {node} of lab {self.name} is not running")
        return container.init_pid(rec["pid"])

    def _argv(self, node: str, command: Sequence[str]) -> list[str]:
        st = self._load()
        rec = self._node(st, node)
        if rec.get("kind") == "vm":
            if not vm.is_ours(rec.get("pid"), self.name, node):
                raise LabError(f"node {node} of lab {self.name} is not running")
            if not rec.get("address"):
                raise LabError(f"node {node} of lab {self.name} has no address yet (it is joining by invite)")
            # As on a real node: the admin user, root through sudo.
            return vm_ssh_argv(self._conn(st, node), ["sudo", "--", *command])
        return container.nsenter_argv(self._init_pid(node), command)

    def exec(self, node: str, command: Sequence[str]) -> int:
        """Run `command` as root inside `node` (stdio passed through); its exit code."""
        require_root()
        return subprocess.run(self._argv(node, command), check=False).returncode  # noqa: S603

    def exec_capture(self, node: str, command: Sequence[str], input: str | None = None,
                     timeout: float | None = None) -> subprocess.CompletedProcess:
        """Like exec, but returns the CompletedProcess with text stdout/stderr."""
        require_root()
        argv = self._argv(node, command)
        return subprocess.run(argv, capture_output=True, text=True, input=input,  # noqa: S603
                              timeout=timeout, check=False)

    def attach_probe(self, name: str, address: str) -> str:
        """A bare namespace on the lab switch with `address` (CIDR); returns its name.

        For firewall tests: traffic from an address outside the site's ranges.
        Run programs in it with `ip netns exec <name> …`.
        """
        require_root()
        _check_label("probe name", name, 11)  # veth "vp-<name>" must fit in 15 chars
        with self._locked(create=False) as exists:
            if not exists:
                raise LabError(f"lab {self.name} does not exist: run up first")
            st = self._load()
            ns = f"{self.netns}-{name}"
            st["probes"][name] = {"netns": ns, "address": address}
            self._save(st)
            try:
                iface = ipaddress.ip_interface(address)
            except ValueError as exc:
                raise LabError(f"probe {name}: bad address {address!r}: {exc}") from None
            nets = [str(ipaddress.ip_interface(a).network)
                    for a in st.get("controller_addresses", [])]
            netns.attach_probe(self.netns, ns, f"vp-{name}", address, nets)
            # Nodes have no default route; give running ones an on-link route back
            # (a real LAN's gateway would), so only their firewall decides.
            for node, rec in containers_of(st).items():
                if container.is_ours(rec.get("pid"), rec["machine"]):
                    self.exec_capture(node, ["ip", "route", "replace", str(iface.network),
                                             "dev", "host0"], timeout=10)
            return ns

    def down(self) -> None:
        """Stop the recorded nodes, delete the recorded namespaces and the lab dir."""
        require_root()
        with self._locked(create=False) as exists:
            if not exists:
                return
            st = self._load()
            machines = {n: r for n, r in st["nodes"].items() if r.get("kind") == "vm"}
            containers = {n: r for n, r in st["nodes"].items() if r.get("kind") != "vm"}
            for node, rec in machines.items():
                vm.stop(rec.get("pid"), self.name, node)
            for rec in containers.values():
                container.request_poweroff(rec.get("pid"), rec["machine"])
            # Lab nodes are disposable: one shared 10 s grace period, then SIGKILL.
            deadline = time.monotonic() + 10
            for rec in containers.values():
                container.stop(rec.get("pid"), rec["machine"], rec.get("init_pid"),
                               timeout=max(0.0, deadline - time.monotonic()))
            for node, rec in st["nodes"].items():
                if self._running(node, rec):
                    raise LabError(f"node process {rec['pid']} did not exit; lab dir kept")
            dhcp.stop(st.get("dhcp_pid"), self.dir)
            for probe in st["probes"].values():
                netns.delete(probe["netns"])
            if st["netns"]:
                netns.delete(st["netns"])
            _refuse_if_mounted(self.dir)
            # Node trees first, state.json last: an interrupted down can be rerun.
            shutil.rmtree(self.dir / "nodes", ignore_errors=True)
            shutil.rmtree(self.dir)
        if not any(state.lab_root().glob("*/state.json")):
            host.restore_inotify_instances(_inotify_saved())


def _copy_tree(tree: Path, root: Path, announce: Callable[[], None]) -> bool:
    """A node's own copy of a cached tree, unless it has one; True if copied now."""
    if root.exists():
        return False
    announce()
    root.parent.mkdir(parents=True, exist_ok=True)
    container.copy_rootfs(tree, root)
    return True


def containers_of(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in st["nodes"].items() if r.get("kind") != "vm"}


def vm_ssh_argv(conn: dict[str, str], command: Sequence[str]) -> list[str]:
    key = ["-i", conn["ansible_ssh_private_key_file"]] if "ansible_ssh_private_key_file" in conn else []
    return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", *key,
            *shlex.split(conn["ansible_ssh_common_args"]),
            f"{conn['ansible_user']}@{conn['ansible_host']}", shlex.join(command)]


def _refuse_if_mounted(path: Path) -> None:
    """Never rm -rf through a mount (a node's bind-mounted repo, a /proc…)."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mnt = line.split()[4]
            if (mnt + "/").startswith(prefix):
                raise LabError(f"{mnt} is still mounted; unmount it, then run down again")


__all__ = ["Lab", "LabError", "LabNodeSpec"]
