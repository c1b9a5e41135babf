"""The lab's network: a "switch" namespace with a bridge, plus probe namespaces.

Lab addresses exist only inside these namespaces, never in the host's own, so a
lab cannot clash with (or leak onto) the host's networks.  The host reaches the
nodes by entering the switch namespace (see ssh.py's ProxyCommand).
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from .host import run

BRIDGE = "br0"  # one per switch namespace, so a fixed name never clashes
NETNS_DIR = Path("/run/netns")


def exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def create_switch(netns: str) -> None:
    """Create the namespace and its bridge; a no-op if both already exist."""
    if not exists(netns):
        run(["ip", "netns", "add", netns], what=f"ip netns add {netns}")
    ip = ["ip", "-n", netns]
    run([*ip, "link", "set", "lo", "up"], what="lo up")
    probe = run([*ip, "-o", "link", "show", "dev", BRIDGE], what="bridge lookup", allow_fail=True)
    if probe.returncode != 0:
        # Snooping off: Yggdrasil's link-local multicast discovery must always flood.
        run([*ip, "link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0"],
            what="create lab bridge")
    run([*ip, "link", "set", BRIDGE, "up"], what="bridge up")


def create_tap(netns: str, tap: str) -> None:
    """A tap device for a QEMU guest, plugged into the switch (kept if it exists)."""
    ip = ["ip", "-n", netns]
    if run([*ip, "link", "show", "dev", tap], what="tap lookup", allow_fail=True).returncode:
        run([*ip, "tuntap", "add", "dev", tap, "mode", "tap"], what=f"create tap {tap}")
    run([*ip, "link", "set", tap, "master", BRIDGE, "up"], what=f"plug tap {tap} into the lab bridge")


def controller_addresses(node_ifaces: list[str]) -> list[str]:
    """One address per node subnet for the switch's bridge: the subnet's last host.

    The controller's SSH (nc in the switch namespace) needs an on-link address
    to reach the nodes; the top of the range is where node allocation never goes.
    """
    ifaces = [ipaddress.ip_interface(a) for a in node_ifaces]
    taken = {i.ip for i in ifaces}
    out = []
    for net in sorted({i.network for i in ifaces}, key=str):
        last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
        if net.prefixlen >= (31 if net.version == 4 else 127) or last in taken:
            raise ValueError(f"no free controller address in {net} (uses {last})")
        out.append(f"{last}/{net.prefixlen}")
    return out


def set_addresses(netns: str, addresses: list[str]) -> None:
    for addr in addresses:
        extra = ["nodad"] if ipaddress.ip_interface(addr).version == 6 else []
        run(["ip", "-n", netns, "addr", "replace", addr, "dev", BRIDGE, *extra],
            what=f"controller address {addr}")


def link_exists(netns: str, ifname: str) -> bool:
    return run(["ip", "-n", netns, "link", "show", "dev", ifname], what="link lookup",
               allow_fail=True).returncode == 0


def remove_stale_link(netns: str, ifname: str, timeout: float = 30.0) -> None:
    """Wait for a dead node's veth to go (the kernel frees its namespace lazily),
    deleting it ourselves if it lingers; nspawn cannot boot while the name exists."""
    deadline = time.monotonic() + timeout
    while link_exists(netns, ifname):
        if time.monotonic() > deadline:
            run(["ip", "-n", netns, "link", "del", ifname], what=f"remove stale {ifname}",
                allow_fail=True)
            return
        time.sleep(0.2)


def delete(netns: str) -> None:
    if exists(netns):
        run(["ip", "netns", "del", netns], what=f"ip netns del {netns}")


def attach_probe(switch: str, netns: str, veth: str, address: str,
                 lab_nets: list[str]) -> None:
    """A bare namespace with one veth into the switch bridge and `address` on it.

    On-link routes to the lab's node subnets let it talk to nodes directly, as a
    stranger plugged into the same LAN would.
    """
    iface = ipaddress.ip_interface(address)  # validates before touching anything
    if not exists(netns):
        run(["ip", "netns", "add", netns], what=f"ip netns add {netns}")
    ip = ["ip", "-n", netns]
    run([*ip, "link", "set", "lo", "up"], what="lo up")
    if run([*ip, "link", "show", "dev", "eth0"], what="probe lookup", allow_fail=True).returncode:
        run(["ip", "-n", switch, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
             "netns", netns], what="create probe veth")
        run(["ip", "-n", switch, "link", "set", veth, "master", BRIDGE, "up"],
            what="attach probe to bridge")
        run([*ip, "addr", "add", str(iface), "dev", "eth0"], what="probe address")
        run([*ip, "link", "set", "eth0", "up"], what="probe link up")
    for net in lab_nets:
        if ipaddress.ip_network(net).version == iface.version:
            run([*ip, "route", "replace", net, "dev", "eth0"], what=f"probe route {net}")
