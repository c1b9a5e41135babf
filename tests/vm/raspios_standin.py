"""A stand-in for a Raspberry Pi OS Lite (bookworm, arm64) image, built from
Debian bookworm arm64 because archive.raspberrypi.com is out of reach here.

It has Raspberry Pi OS's layout, which is what `image build --base` reads
and what its first-boot hook runs in: an MBR with a fixed disk identifier, a
FAT32 `bootfs` partition (config.txt, cmdline.txt with
`root=PARTUUID=<id>-02 rootfstype=ext4 fsck.repair=yes rootwait`, the
kernel and initramfs under the Pi 5's names) mounted at /boot/firmware by
PARTUUID, and an ext4 `rootfs` partition holding a Debian tree with roughly
Raspberry Pi OS Lite's package set (NetworkManager, openssh-server, python3
without the libraries Ansible needs, ...) and interface names (eth0). The kernel is Debian's arm64 one
so that it boots under `qemu-system-aarch64 -M virt`; Raspberry Pi OS's own
first boot (init=/usr/lib/raspberrypi-sys-mods/firstboot: resize, new disk
identifier, user setup) is not there.

Built once (mmdebstrap under qemu-user, a few minutes) and cached beside the
bases under a key of this recipe:
    python3 -m tests.vm.raspios_standin      # prints the image's path
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wizard.images import base as bases
from wizard.images import disk, foreign, initramfs

DISK_ID = "5e3da7a1"
KERNEL, INITRD = "kernel_2712.img", "initramfs_2712"
CMDLINE = f"console=serial0,115200 console=tty1 root=PARTUUID={DISK_ID}-02 rootfstype=ext4 fsck.repair=yes rootwait"
# Raspberry Pi OS bookworm's config.txt, as its images ship it (abridged).
CONFIG = """\
# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[all]
"""
# Raspberry Pi OS Lite's packages that Debian has, and Debian's kernel for QEMU.
PACKAGES = ("systemd-sysv", "udev", "kmod", "dbus", "iproute2", "iputils-ping", "netbase", "network-manager",
            "openssh-server", "sudo", "less", "nano", "vim-tiny", "wpasupplicant", "iw", "wireless-regdb", "rfkill",
            "fake-hwclock", "dosfstools", "parted", "fdisk", "e2fsprogs", "python3", "ca-certificates", "curl",
            "locales", "cron", "avahi-daemon", "systemd-timesyncd", "rsync", "usbutils", "firmware-brcm80211",
            "linux-image-arm64", "initramfs-tools")
MODULES = ("ext4", "crc32c_generic", "vfat", "nls_cp437", "nls_ascii", "virtio_pci", "virtio_mmio", "virtio_blk",
           "virtio_net")
BOOT_MIB = 512
ROOT_HEADROOM_MIB = 768
FORMAT = 2  # bump when the build changes


def key() -> str:
    blob = json.dumps([FORMAT, DISK_ID, CMDLINE, CONFIG, PACKAGES, MODULES, BOOT_MIB, ROOT_HEADROOM_MIB])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached() -> Path | None:
    image = bases.cache_root() / f"raspios-standin-{key()}" / "raspios.img"
    return image if image.is_file() else None


def ensure(progress=print) -> Path:
    """The cached stand-in image, built first if there is none (needs root)."""
    found = cached()
    if found:
        return found
    final = bases.cache_root() / f"raspios-standin-{key()}"
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".raspios-standin-", dir=final.parent))
    try:
        _build(work, progress)
        os.rename(work, final)
        for old in final.parent.glob("raspios-standin-*"):  # ~2 GB each: an older recipe's goes
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if work.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    return final / "raspios.img"


def _build(work: Path, progress) -> None:
    foreign.ensure_binfmt("arm64")
    tree = work / "tree"
    fstab = (f"proc /proc proc defaults 0 0\n"
             f"PARTUUID={DISK_ID}-01 /boot/firmware vfat defaults 0 2\n"
             f"PARTUUID={DISK_ID}-02 / ext4 defaults,noatime 0 1\n")
    hooks = [
        'mkdir -p "$1/boot/firmware"',
        f"printf '{fstab}' > \"$1/etc/fstab\"",
        "echo raspberrypi > \"$1/etc/hostname\"",
        ': > "$1/etc/machine-id"',
        'rm -f "$1"/etc/ssh/ssh_host_*',  # Raspberry Pi OS makes them at its first boot
        # eth0, wlan0: pi-gen runs `raspi-config nonint do_net_names 1`, which masks the
        # default naming policy (before the initramfs, whose udev hook copies the mask).
        'mkdir -p "$1/etc/systemd/network"',
        'ln -sf /dev/null "$1/etc/systemd/network/99-default.link"',
        *initramfs.customize_hooks(MODULES),
    ]
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--arch=arm64", "--components=main,non-free-firmware",
           "--include=" + ",".join(PACKAGES), *(f"--essential-hook={h}" for h in initramfs.essential_hooks()),
           *(f"--customize-hook={h}" for h in hooks), "bookworm", str(tree)]
    progress("mmdebstrap (stand-in)")
    disk.run_logged(cmd, work / "mmdebstrap.log", what="mmdebstrap (stand-in)", progress=progress)
    kernel = sorted((tree / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((tree / "boot").glob("initrd.img-*"))[-1]
    assemble(tree, {"config.txt": CONFIG.encode(), "cmdline.txt": (CMDLINE + "\n").encode(), KERNEL: kernel,
                    INITRD: initrd}, work / "raspios.img", boot_mib=BOOT_MIB, root_headroom_mib=ROOT_HEADROOM_MIB)
    subprocess.run(["rm", "-rf", "--one-file-system", str(tree)], check=True)


def assemble(tree: Path, boot_files: dict, image: Path, *, boot_mib: int, root_headroom_mib: int) -> None:
    """Raspberry Pi OS's disk layout from a root tree and the boot partition's files (also for the fast tests)."""
    work = image.parent
    boot = work / "boot.vfat"
    disk.run(["mkfs.vfat", "-F", "32", "-n", "bootfs", "-C", str(boot), str(boot_mib * 1024)], what="mkfs.vfat")
    disk.copy_into_fat(str(boot), boot_files)
    root = work / "root.ext4"
    root_mib = disk.tree_mib(tree) * 11 // 10 + root_headroom_mib
    disk.run(["mke2fs", "-q", "-t", "ext4", "-L", "rootfs", "-E", "root_owner=0:0", "-d", str(tree), "-F", str(root),
              f"{root_mib}M"], what="mke2fs")
    start = 8192 * disk.SECTOR  # Raspberry Pi OS's first partition starts at 4 MiB
    root_start = start + boot_mib * disk.MIB
    with open(image, "wb") as f:
        f.truncate(root_start + root_mib * disk.MIB)
    table = (f"label: dos\nlabel-id: 0x{DISK_ID}\n"
             f"start={start // disk.SECTOR}, size={boot_mib * disk.MIB // disk.SECTOR}, type=c\n"
             f"start={root_start // disk.SECTOR}, type=83\n")
    disk.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(image)], what="sfdisk", input=table)
    for part, offset in ((boot, start), (root, root_start)):
        disk.run(["dd", f"if={part}", f"of={image}", "bs=4M", f"seek={offset}", "oflag=seek_bytes",
                  "conv=notrunc,sparse", "status=none"], what="dd")
        part.unlink()


if __name__ == "__main__":
    if shutil.which("mmdebstrap") is None:
        sys.exit("needs mmdebstrap")
    print(ensure(lambda msg: print(msg, file=sys.stderr)))
