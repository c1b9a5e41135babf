"""The radio lab's QEMU guest: its disk, its tap on the lab switch, the QEMU
process, and SSH into the guest itself.

QEMU runs under TCG (the host's KVM cannot run Debian's stock kernel) inside the
lab's switch namespace, where it opens a tap plugged into the lab bridge.  The
host hands the guest the lab's description and the nodes' seed files through a
9p share.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import LabError
from ..host import run
from ..netns import NETNS_DIR
from .guestimage import GuestImage

TAP = "rtap0"  # one per switch namespace, so a fixed name never clashes
MEMORY_MB = 3072
SMP = 2
SHARE_TAG = "meshstead"
QEMU = "qemu-system-x86_64"


def hwsim_macs(index: int) -> tuple[str, str]:
    """The two addresses mac80211_hwsim gives radio `index` (the second is the
    first with the locally-administered 0x40 bit, used by a second interface)."""
    tail = f"00:00:{index >> 8:02x}:{index & 0xff:02x}:00"
    return f"02:{tail}", f"42:{tail}"


def create_overlay(image: GuestImage, overlay: Path) -> None:
    """The lab's own copy-on-write disk over the cached image (which stays pristine)."""
    if overlay.exists():
        return
    tmp = overlay.with_name(overlay.name + ".partial")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.root), "-F", "raw", str(tmp)],
        what="qemu-img create (guest disk overlay)")
    os.rename(tmp, overlay)


def guest_mac(lab: str) -> str:
    """A stable locally-administered MAC for the guest's NIC, derived from the lab name."""
    digest = hashlib.sha256(lab.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def qemu_argv(lab: str, image: GuestImage, labdir: Path) -> list[str]:
    append = " ".join([
        "root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "panic=-1",
        "systemd.show_status=1", "mitigations=off",
    ])
    return [
        QEMU, "-name", f"meshstead-radio-{lab}",
        "-M", "q35", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", str(SMP), "-m", str(MEMORY_MB),
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
        "-drive", f"file={labdir / 'disk.qcow2'},if=virtio,format=qcow2",
        "-netdev", f"tap,id=lab,ifname={TAP},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=lab,mac={guest_mac(lab)}",
        "-device", "virtio-rng-pci",
        "-virtfs", f"local,path={labdir / 'share'},mount_tag={SHARE_TAG},security_model=none,id=share",
        "-chardev", f"file,id=console,path={labdir / 'console.log'},append=on",
        "-serial", "chardev:console",
    ]


def start(lab: str, image: GuestImage, labdir: Path, netns: str) -> subprocess.Popen:
    """Start QEMU in the background inside the switch namespace.

    nsenter execs QEMU, so the child's PID is QEMU's own."""
    cmd = ["nsenter", f"--net={NETNS_DIR / netns}", *qemu_argv(lab, image, labdir)]
    with open(labdir / "qemu.log", "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Stop a QEMU this process started (its own child: no PID guessing)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def is_ours(pid: int | None, lab: str) -> bool:
    """True if `pid` is alive and still the QEMU we started for `lab`."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    for _ in range(10):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # An empty command line is a process between nsenter and QEMU's exec:
        # read again rather than take it for someone else's.
        if argv != [b""]:
            break
        time.sleep(0.05)
    if stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X"):
        return False
    # Right after start the process may still be nsenter, about to exec QEMU.
    program = argv[0].rsplit(b"/", 1)[-1]
    return program in (QEMU.encode(), b"nsenter") and f"meshstead-radio-{lab}".encode() in argv


def kill(pid: int | None, lab: str, timeout: float) -> None:
    """Wait up to `timeout` for QEMU to exit, then SIGTERM, then SIGKILL."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if not is_ours(pid, lab):
            return
        if sig is not None:
            os.kill(pid, sig)  # type: ignore[arg-type]
        deadline = time.monotonic() + (timeout if sig is None else 10)
        while is_ours(pid, lab) and time.monotonic() < deadline:
            time.sleep(0.2)
    if is_ours(pid, lab):
        raise LabError(f"QEMU process {pid} did not exit; lab dir kept")


class GuestSSH:
    """SSH into the guest itself (root, the lab's key), multiplexed over one
    connection: a TCG guest makes every fresh handshake slow."""

    def __init__(self, labdir: Path, netns: str, address: str) -> None:
        self.labdir = labdir
        self.netns = netns
        self.address = address

    def argv(self, command: Sequence[str] | None = None, tty: bool = False,
             timeout: float = 10) -> list[str]:
        opts = [
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}",
            "-o", f"ProxyCommand=nsenter --net={NETNS_DIR / self.netns} nc %h %p",
            "-o", f"UserKnownHostsFile={self.labdir / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.labdir / 'guest-ssh.sock'}",
            "-o", "ControlPersist=300", "-o", "ServerAliveInterval=15",
            "-i", str(self.labdir / "id_ed25519"),
        ]
        if tty:
            opts.append("-t")
        remote = [shlex.join(command)] if command is not None else []
        return ["ssh", *opts, f"root@{self.address}", *remote]

    def run(self, command: Sequence[str], timeout: float | None = 60, input: str | None = None,
            ) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(command), capture_output=True, text=True,  # noqa: S603
                              input=input, timeout=timeout, check=False)

    def check(self, command: Sequence[str], what: str, timeout: float | None = 60) -> str:
        try:
            proc = self.run(command, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"{what}: no answer from the guest within {timeout:.0f}s") from None
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(f"{what} failed: {err[-1] if err else f'exit code {proc.returncode}'}")
        return proc.stdout

    def wait(self, timeout: float, alive: Callable[[], bool]) -> None:
        """Until the guest's sshd lets us in; raises if `alive()` turns false."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise LabError("the guest's QEMU exited")
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.run(["true"], timeout=20).returncode == 0:
                    return
            time.sleep(1)
        raise LabError(f"the guest's sshd did not answer within {timeout:.0f}s")

    def close(self) -> None:
        """Stop the multiplexing master (it would otherwise linger for ControlPersist)."""
        if (self.labdir / "guest-ssh.sock").exists():
            subprocess.run([*self.argv()[:-1], "-O", "exit", f"root@{self.address}"],  # noqa: S603
                           capture_output=True, timeout=10, check=False)
