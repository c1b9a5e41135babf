"""An rpi image booted without a Pi: qemu-system-aarch64 -M virt (TCG) with
the kernel, initrd and cmdline.txt taken from the image's FAT partition and
the image as a virtio disk, behind a qcow2 overlay the size of a small card.

The Pi's own boot stage (firmware, config.txt) is not emulated; everything
from the kernel on is the image's own: its initramfs finds the root by label,
systemd runs the first-boot unit, the roles configure the node. The test and
the benchmark read the result from the console and, after power-off, the
report from the overlay's root file system (debugfs; no mounts)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshsteadError
from . import disk

QEMU = "qemu-system-aarch64"
CARD = "4G"  # the root file system grows into it at first boot
MEMORY_MB = 1536
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
REPORT = "/var/lib/meshstead/firstboot.json"


def partitions(image: Path) -> list[tuple[int, int]]:
    """(offset, size) in bytes of each partition, from the image's table."""
    table = json.loads(disk.run(["sfdisk", "--json", str(image)], what="sfdisk --json").stdout)["partitiontable"]
    sector = table.get("sectorsize", disk.SECTOR)
    return [(p["start"] * sector, p["size"] * sector) for p in table["partitions"]]


def fat_names(image: Path) -> list[str]:
    """Every file on the image's boot partition, as paths from its root."""
    offset = partitions(image)[0][0]
    listing = disk.run(["mdir", "-/", "-b", "-i", f"{image}@@{offset}", "::/"], what="mdir", env=MTOOLS_ENV).stdout
    return sorted(line.removeprefix("::/") for line in listing.splitlines() if line.strip())


# The names of kernel and initrd on the boot partition: Debian's raspi-firmware's by default.
DEBIAN_NAMES = ("vmlinuz-", "initrd.img-")


def boot_files(image: Path, out: Path, names: tuple[str, str] = DEBIAN_NAMES) -> tuple[Path, Path, str]:
    """The kernel, initrd and kernel command line of the image's boot partition
    (kernel and initrd: the last file whose name starts with each of `names`)."""
    offset = partitions(image)[0][0]
    on_card = fat_names(image)
    wanted = []
    for prefix in names:
        found = sorted(n for n in on_card if n.startswith(prefix) and "/" not in n)
        if not found:
            raise MeshsteadError("image", f"{image} has no {prefix}* on its boot partition")
        wanted.append(found[-1])
    for name in (*wanted, "cmdline.txt"):
        disk.run(["mcopy", "-o", "-i", f"{image}@@{offset}", f"::/{name}", str(out / name)],
                 what=f"mcopy {name}", env=MTOOLS_ENV)
    cmdline = (out / "cmdline.txt").read_text().strip()
    return out / wanted[0], out / wanted[1], cmdline


@dataclass
class Guest:
    proc: subprocess.Popen
    work: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def console(self) -> Path:
        return self.work / "console.log"

    @property
    def overlay(self) -> Path:
        return self.work / "card.qcow2"

    def console_text(self) -> str:
        return self.console.read_bytes().decode(errors="replace") if self.console.exists() else ""

    def console_tail(self, lines: int = 30) -> str:
        kept = [x.rstrip() for x in self.console_text().replace("\r", "\n").splitlines() if x.strip()]
        return "\n".join(kept[-lines:])

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, pattern: str, timeout: float) -> re.Match | None:
        """The first console line matching `pattern`, or None when the guest
        stopped or the time ran out."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while time.monotonic() < deadline:
            found = regex.search(self.console_text())
            if found or not self.running():
                return found
            time.sleep(2)
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """Pull the plug: SIGTERM (QEMU exits at once), then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.running():
                return
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)


def start(image: Path, work: Path, *, smp: int = 2, names: tuple[str, str] = DEBIAN_NAMES) -> Guest:
    """Power the image on in the background; the first boot's output goes to work/console.log."""
    disk.require_tools(QEMU, "qemu-img", "mcopy", "sfdisk")
    work.mkdir(parents=True, exist_ok=True)
    kernel, initrd, cmdline = boot_files(image, work, names)
    disk.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.resolve()), "-F", "raw",
              str(work / "card.qcow2"), CARD], what="qemu-img create (overlay)")
    return _launch(work, kernel, initrd, cmdline, smp=smp, append=False)


def restart(guest: Guest, *, smp: int = 2, names: tuple[str, str] = DEBIAN_NAMES) -> Guest:
    """Power the stopped guest on again from the same card, with the kernel
    command line now on its boot partition (as a Pi's firmware reads it at
    every boot); its console goes on in the same log."""
    card = flatten(guest)
    try:
        kernel, initrd, cmdline = boot_files(card, guest.work, names)
    finally:
        card.unlink()
    return _launch(guest.work, kernel, initrd, cmdline, smp=smp, append=True)


def _launch(work: Path, kernel: Path, initrd: Path, cmdline: str, *, smp: int, append: bool) -> Guest:
    overlay, console = work / "card.qcow2", work / "console.log"
    # The Pi's consoles do not exist on virt: its PL011 (ttyAMA0), last so that it is /dev/console.
    kernel_args = f"{cmdline} console=ttyAMA0 panic=-1"
    # A NIC for the roles' eth0; user networking that reaches nothing outside (restrict=on).
    argv = [QEMU, "-M", "virt", "-cpu", "cortex-a53", "-smp", str(smp), "-m", str(MEMORY_MB),
            "-accel", "tcg,thread=multi", "-display", "none", "-monitor", "none", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", kernel_args,
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-nic", "user,model=virtio-net-pci,restrict=on",
            "-device", "virtio-rng-pci",
            "-chardev", f"file,id=console,path={console}" + (",append=on" if append else ""),
            "-serial", "chardev:console"]
    with open(work / "qemu.log", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Guest(proc, work)


def flatten(guest: Guest) -> Path:
    """The stopped guest's card as a raw image (base and overlay), to read with mtools and debugfs."""
    if guest.running():
        raise MeshsteadError("image", "the guest is still running; stop it before reading its card")
    flat = guest.work / "card.raw"
    disk.run(["qemu-img", "convert", "-O", "raw", str(guest.overlay), str(flat)], what="qemu-img convert")
    return flat


def read_root_file(card: Path, path: str) -> str:
    """A file of a card's root file system: the partition cut out, its journal
    replayed (the plug was pulled), then debugfs. Empty if there is no such file."""
    root = card.with_name(card.name + ".root")
    offset, size = partitions(card)[1]
    disk.extract(card, offset, size, root)
    try:
        fsck = subprocess.run(["e2fsck", "-fy", str(root)], capture_output=True, text=True,  # noqa: S603,S607
                              check=False)
        if fsck.returncode > 1:  # 1: errors corrected, as a replayed journal is
            raise MeshsteadError("image", f"e2fsck of the card's root failed: {fsck.stdout.strip()[-300:]}")
        return disk.run(["debugfs", "-R", f"cat {path}", str(root)], what=f"debugfs cat {path}").stdout
    finally:
        root.unlink(missing_ok=True)
