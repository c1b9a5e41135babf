"""The cached QEMU guest image of the radio lab: kernel, initrd and root ext4.

The guest is Debian bookworm (amd64, Debian's stock kernel: it has batman-adv
and mac80211_hwsim).  Inside it, /srv/base holds the node base rootfs that every
node's overlay root sits on: the container lab's base packages plus every node
package (radio-lab nodes have no apt repository), tweaked by the same hooks as
the container lab's rootfs.  The files under guest/ are copied into the image.

Cached under rootfs.cache_dir(), keyed by a hash of every input, built in a
temp dir and renamed into place under a lock, like rootfs.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from ...images import base as image_base
from ...images import recipe as image_recipe
from .. import aptrepo, rootfs
from ..errors import LabError
from ..host import require_tools, run

GUEST_PACKAGES = (
    "systemd-sysv", "udev", "kmod", "dbus", "linux-image-amd64", "systemd-container",
    "iproute2", "iw", "batctl", "openssh-server", "wpasupplicant", "hostapd", "udhcpc",
    "busybox", "wireless-regdb", "dnsutils", "procps", "iputils-ping", "e2fsprogs",
    "util-linux",
)
NODE_BASE_PACKAGES = tuple(sorted(set(rootfs.BASE_PACKAGES) | set(aptrepo.lab_packages())))
# Guest-wide tweaks after the package install; part of the cache key.
GUEST_COMMANDS = (
    ["systemctl", "enable", "systemd-networkd.service", "meshstead-guest.service"],
    # A getty on the serial console hangs up other writers (our console log).
    # Nodes start as a fresh install would: the roles enable the services they
    # run; Debian enables these at install.
    ["systemctl", "--root=/srv/base", "disable", "dnsmasq.service", "hostapd.service",
     "wpa_supplicant.service", "tinc.service"],
    ["systemctl", "mask", "serial-getty@ttyS0.service", "getty@tty1.service",
     "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"],
)
IMAGE_SIZE = "6G"  # sparse; node overlays live on it too (in each lab's qcow2)
FORMAT = 1  # bump when the build steps below change


@dataclass(frozen=True)
class GuestImage:
    dir: Path

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def root(self) -> Path:
        return self.dir / "root.ext4"


def _guest_files() -> list[tuple[str, Traversable]]:
    """(relative target path, resource) for every file shipped under guest/."""
    out: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            elif child.name != "__pycache__":
                out.append((rel, child))

    walk(resources.files(__package__).joinpath("guest"), "")
    return out


def _mode(rel: str) -> int:
    if rel.startswith(("usr/local/sbin/", "usr/local/lib/meshstead/")) and not rel.endswith(".sh"):
        return 0o755
    return 0o644


def tree_key() -> str:
    """The expensive part: both package trees (guest and node base)."""
    blob = json.dumps([FORMAT, rootfs.SUITE, sorted(GUEST_PACKAGES), NODE_BASE_PACKAGES,
                       rootfs.CUSTOMIZE_HOOKS, image_recipe.ansible_pins()])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_key() -> str:
    files = [(rel, hashlib.sha256(res.read_bytes()).hexdigest()) for rel, res in _guest_files()]
    blob = json.dumps([tree_key(), GUEST_COMMANDS, IMAGE_SIZE, files])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached(final: Path, lock_name: str, build, what: str, progress: rootfs.Progress) -> Path:
    """Build `final` with build(tmp) under a lock, in a temp dir renamed into place."""
    if final.is_dir():
        return final
    with open(final.parent / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        progress(what)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-build-", dir=final.parent))
        try:
            build(tmp)
            os.rename(tmp, final)
        except BaseException:
            run(["rm", "-rf", "--one-file-system", str(tmp)], what="remove partial build",
                allow_fail=True)
            raise
    return final


def ensure_guest_image(progress: rootfs.Progress) -> GuestImage:
    """Return the cached guest image, building it first if needed.

    Two cached stages: the package trees (~4 min) and, from them, the image with
    this package's guest/ files (~20 s), so editing a guest script is cheap.
    """
    root = rootfs.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"radio-guest-{rootfs.SUITE}-{cache_key()}"
    if final.is_dir():
        progress(f"radio guest image: cached {final}")
        return GuestImage(final)
    require_tools("mmdebstrap", "mke2fs")
    tree = _cached(root / f"radio-tree-{rootfs.SUITE}-{tree_key()}", ".radio-tree.lock",
                   _build_tree, "building the radio guest's package trees (~4 min, cached)",
                   progress)
    return GuestImage(_cached(final, ".radio-guest.lock", lambda out: _build_image(tree, out),
                              "writing the radio guest image", progress))


def _build_tree(out: Path) -> None:
    tree = out / "tree"
    run(["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root",
         "--include=" + ",".join(GUEST_PACKAGES),
         # The guest's own host key comes from each lab, never from the build.
         '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*',
         rootfs.SUITE, str(tree)], what="mmdebstrap (radio guest)")
    cmd = ["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root",
           "--include=" + ",".join(NODE_BASE_PACKAGES)]
    cmd += [f"--customize-hook={hook}" for hook in rootfs.CUSTOMIZE_HOOKS]
    # The Ansible the roster role installs, as images ship it: in the emulated
    # CPU, installing it at the first provision would take minutes per node.
    cmd += [f"--customize-hook={hook}" for hook in
            image_base.ansible_venv_hooks(*image_recipe.ansible_pins(), lambda _message: None)]
    cmd += [rootfs.SUITE, str(tree / "srv/base")]
    run(cmd, what="mmdebstrap (radio node base)")


def _build_image(cached: Path, out: Path) -> None:
    """The guest/ files and tweaks go on an overlay of the cached tree, which stays pristine."""
    tree = cached / "tree"
    upper, work, merged = out / "upper", out / "work", out / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    run(["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={tree},upperdir={upper},workdir={work}", str(merged)],
        what="mount overlay for the guest image")
    try:
        _customize(merged)
        kernels = sorted((merged / "boot").glob("vmlinuz-*"))
        initrds = sorted((merged / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise LabError("radio guest image: no kernel/initrd in the guest's /boot")
        shutil.copyfile(kernels[-1], out / "vmlinuz")
        shutil.copyfile(initrds[-1], out / "initrd.img")
        run(["mke2fs", "-q", "-t", "ext4", "-L", "meshstead-radio", "-E", "root_owner=0:0",
             "-d", str(merged), "-F", str(out / "root.ext4"), IMAGE_SIZE],
            what="mke2fs (radio guest root)")
    finally:
        run(["umount", str(merged)], what="unmount guest image overlay")
    run(["rm", "-rf", "--one-file-system", str(upper), str(work), str(merged)],
        what="remove guest image overlay")


def _customize(tree: Path) -> None:
    for rel, res in _guest_files():
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(res.read_bytes())
        os.chmod(dest, _mode(rel))
    for argv in GUEST_COMMANDS:
        run(["chroot", str(tree), *argv], what=f"guest image: {' '.join(argv[:2])}")
    (tree / "etc/hostname").write_text("meshstead-radio\n")
    (tree / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (tree / "etc/machine-id").write_text("")
    (tree / "srv/nodes").mkdir(exist_ok=True)
