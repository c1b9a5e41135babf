"""DHCP on a lab's switch, for images that join by invite.

A generic image has no address until it joins: in the field it takes one by
DHCP on eth0 (a home router, a LAN); the lab gives its switch the same, a
dnsmasq in the switch's namespace serving the top of the node subnet, below
the controller's address, where node allocation never goes. Started by the
lab when a generic image boots, stopped (by PID) with the lab."""

import ipaddress
import subprocess
import time
from pathlib import Path

from .errors import LabError
from .netns import BRIDGE

POOL = 16  # addresses: joining nodes at once


def pool(controller: str) -> tuple[str, str, str]:
    """(first, last, netmask) below the controller's address on the switch."""
    iface = ipaddress.ip_interface(controller)
    last = iface.ip - 1
    first = last - (POOL - 1)
    if first <= iface.network.network_address:
        raise LabError(f"the lab's subnet {iface.network} is too small for a DHCP pool of {POOL}")
    return str(first), str(last), str(iface.network.netmask)


def _pid_file(lab_dir: Path) -> Path:
    return lab_dir / "dhcp.pid"


def is_ours(pid: int | None, lab_dir: Path) -> bool:
    if not pid:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"dnsmasq") and f"--pid-file={_pid_file(lab_dir)}".encode() in argv


def start(netns: str, lab_dir: Path, controller: str) -> int:
    first, last, mask = pool(controller)
    pid_file = _pid_file(lab_dir)
    pid_file.unlink(missing_ok=True)
    argv = ["nsenter", f"--net=/run/netns/{netns}", "dnsmasq", "--conf-file=/dev/null", "--port=0",
            f"--interface={BRIDGE}", "--bind-interfaces", "--except-interface=lo",
            f"--dhcp-range={first},{last},{mask},1h", f"--dhcp-leasefile={lab_dir / 'dhcp.leases'}",
            f"--pid-file={pid_file}", f"--log-facility={lab_dir / 'dhcp.log'}", "--log-dhcp"]
    # dnsmasq forks into the background once it serves; an error shows before that.
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)  # noqa: S603
    if done.returncode != 0:
        raise LabError(f"dnsmasq did not start on the lab's switch: {(done.stderr or '').strip()}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        if is_ours(pid, lab_dir):
            return pid
        time.sleep(0.1)
    raise LabError(f"dnsmasq did not write its PID on the lab's switch (see {lab_dir / 'dhcp.log'})")


def stop(pid: int | None, lab_dir: Path) -> None:
    if is_ours(pid, lab_dir):
        subprocess.run(["kill", str(pid)], check=False)  # noqa: S603,S607
        deadline = time.monotonic() + 10
        while is_ours(pid, lab_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_ours(pid, lab_dir):
            subprocess.run(["kill", "-9", str(pid)], check=False)  # noqa: S603,S607
