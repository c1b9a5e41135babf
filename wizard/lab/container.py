"""One lab node: a copy of the base rootfs booted with systemd-nspawn.

systemd runs as PID 1 inside, so services, networkd and sshd behave as on a
Pi.  nspawn is started through `nsenter --net=` into the switch namespace (not
`ip netns exec`, which remounts /sys and makes nspawn fail), and plugs the
node's host0 into the lab bridge.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .aptrepo import REPO_MOUNT, SOURCES_LINE
from .errors import LabError
from .host import run
from .netns import BRIDGE, NETNS_DIR

# A clean PATH inside nodes: the host's (a venv, /snap…) means nothing there.
NODE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root", "LANG=C.UTF-8", "USER=root", "LOGNAME=root"]


def copy_rootfs(base: Path, dest: Path) -> None:
    """Copy the cached tree (reflinks where the filesystem has them)."""
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        run(["rm", "-rf", "--one-file-system", str(tmp)], what="remove partial copy")
    run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], what="copy base rootfs")
    os.rename(tmp, dest)


def configure(rootfs: Path, hostname: str, ipv4: str | None, ipv6: str | None) -> None:
    """Per-node identity and network; rewritten on every `up` (cheap, idempotent)."""
    etc = rootfs / "etc"
    (etc / "hostname").write_text(hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    hosts += f"127.0.1.1\t{hostname}\n"
    (etc / "hosts").write_text(hosts)
    # Empty machine-id: systemd makes a fresh one at boot instead of sharing the build's.
    if not (etc / "machine-id").exists():
        (etc / "machine-id").write_text("")
    net = ["[Match]", "Name=host0", "", "[Network]",
           # Link-local IPv6 for Yggdrasil's multicast peer discovery.
           "LinkLocalAddressing=ipv6", "IPv6AcceptRA=no"]
    if ipv4:
        net.append(f"Address={ipaddress.ip_interface(ipv4)}")
    if ipv6:
        # Lab addresses are unique by construction: without duplicate address
        # detection the address is usable at boot, not seconds later.
        net += ["", "[Address]", f"Address={ipaddress.ip_interface(ipv6)}", "DuplicateAddressDetection=none"]
    # 10-* sorts before the image's 80-container-host0.network, which would win otherwise.
    (etc / "systemd/network").mkdir(parents=True, exist_ok=True)
    (etc / "systemd/network/10-lab.network").write_text("\n".join(net) + "\n")
    (etc / "apt/sources.list").write_text("")
    (etc / "apt/sources.list.d/meshstead-lab.list").write_text(SOURCES_LINE)


def boot(rootfs: Path, machine: str, switch: str, repo: Path, log: Path) -> int:
    """Start the node in the background; return the nspawn PID."""
    cmd = ["nsenter", f"--net={NETNS_DIR / switch}", "systemd-nspawn",
           "-D", str(rootfs), "--boot", "--register=no", "--keep-unit",
           f"--machine={machine}", f"--network-bridge={BRIDGE}",
           "--console=read-only", "--link-journal=no",
           f"--bind-ro={repo}:{REPO_MOUNT}"]
    with open(log, "ab") as out:
        # Own session: the node outlives the CLI process that started it.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def host_veth(log: Path, machine: str) -> str | None:
    """Name of the node's veth end on the switch, as nspawn chose it.

    nspawn hashes names longer than 15 characters and says so in its output.
    """
    wanted = f"vb-{machine}"
    renamed = re.findall(r"Network interface name '([^']+)' has been changed to '([^']+)'",
                         log.read_text(errors="replace"))
    for orig, new in reversed(renamed):
        if orig == wanted:
            return new
    return wanted if len(wanted) <= 15 else None


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields after "(comm)"


def _reap(pid: int) -> None:
    """Collect our own exited child so its PID does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_ours(pid: int | None, machine: str) -> bool:
    """True if `pid` is alive and still the nspawn we started for `machine`.

    Checking the command line guards against killing a recycled PID.
    """
    if not pid:
        return False
    _reap(pid)
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"systemd-nspawn" in argv[0] and f"--machine={machine}".encode() in argv


def init_pid(nspawn_pid: int, timeout: float = 10.0) -> int:
    """The container's PID 1 (as seen from the host): the child of nspawn."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return int(child)
            except OSError:
                continue
        if time.monotonic() > deadline:
            raise LabError(
                f"node process {nspawn_pid} has no running systemd (see its console.log)")
        time.sleep(0.1)


def request_poweroff(pid: int | None, machine: str) -> None:
    """Ask a node to shut down without waiting (so several nodes stop in parallel)."""
    if pid is not None and is_ours(pid, machine):
        os.kill(pid, signal.SIGTERM)


def stop(pid: int | None, machine: str, init: int | None, timeout: float = 20.0,
         force: bool = False) -> None:
    """Power the node off (SIGTERM to nspawn asks PID 1 to shut down), else kill.

    Only the recorded PIDs are signalled, and only while they are still ours.
    """
    if pid is None or not is_ours(pid, machine):
        return
    if not force:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not is_ours(pid, machine):
                return
            time.sleep(0.2)
    # Killing PID 1 of the node's PID namespace takes every process inside with it.
    if init and _is_child_of(init, pid):
        os.kill(init, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_ours(pid, machine) and time.monotonic() < deadline:
        time.sleep(0.1)


def _is_child_of(pid: int, parent: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[1] == str(parent)


def nsenter_argv(init: int, command: Sequence[str]) -> list[str]:
    return ["nsenter", f"--target={init}", "--mount", "--uts", "--ipc", "--net", "--pid",
            "--cgroup", "--", "/usr/bin/env", "-i", *NODE_ENV,
            *([f"TERM={os.environ['TERM']}"] if "TERM" in os.environ else []), *command]
