"""A blank lab node: a container that holds what the generic amd64 image
holds, and nothing of any site, until an invite makes it a node.

Its tree is the amd64 base's own root file system (the image a person
flashes), taken once from the cached base and kept beside the lab's other
trees, keyed by the base it came from. Only what a container does not have
is changed: no partitions to mount or grow, and its link is host0 (nspawn's
end of the lab switch), not eth0. The lab's node hooks (rootfs.py) then run
on it as on every lab tree. Its "card" is the directory the boot partition
would be mounted on: an invite put there joins at boot, as on a card, and
`meshstead-firstboot --invite TEXT` joins a running one."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import LabError
from .host import run
from .rootfs import CUSTOMIZE_HOOKS, cache_dir

LINK = "host0"
FORMAT = 1  # bump when adapt() changes
BOOT_MOUNT = "/boot/efi"  # the amd64 base's (image-builder/platforms/amd64.yml)


def ensure_tree(progress: Callable[[str], None]) -> Path:
    """The cached blank tree, made from the (cached or built) amd64 base."""
    from ..errors import MeshsteadError
    from ..images import base, recipe
    try:
        built, _ = base.ensure(recipe.load("amd64"), progress)
    except MeshsteadError as exc:
        raise LabError(f"the amd64 base for blank nodes: {exc.message}") from None
    key = hashlib.sha256(json.dumps([FORMAT, built.dir.name, CUSTOMIZE_HOOKS]).encode()).hexdigest()[:16]
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"blank-{key}"
    if final.is_dir():
        return final
    with open(root / ".blank.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        progress("taking the blank node's tree from the amd64 base (once)")
        tmp = Path(tempfile.mkdtemp(prefix=".blank-", dir=root))
        try:
            _copy_root(built.image, built.info["root_offset"], built.info["root_size"], tmp / "tree")
            adapt(tmp / "tree")
            os.rename(tmp / "tree", final)
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)], check=False)  # noqa: S603,S607
        for old in root.glob("blank-*"):
            if old != final:
                subprocess.run(["rm", "-rf", "--one-file-system", str(old)], check=False)  # noqa: S603,S607
    return final


def _copy_root(image: Path, offset: int, size: int, tree: Path) -> None:
    """The image's root partition, read-only through a loop device, copied
    with owners, modes, set-uid bits and capabilities as the image has them."""
    mnt = tree.with_name("mnt")
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-o", f"ro,loop,offset={offset},sizelimit={size}",  # noqa: S603,S607
                              "-t", "ext4", str(image), str(mnt)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        raise LabError(f"cannot mount the amd64 base's root file system: {mounted.stderr.strip()}; "
                       "expected loop devices on this host (modprobe loop)")
    try:
        run(["cp", "-a", f"{mnt}/.", str(tree)], what="copying the base's root file system")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)  # noqa: S603,S607


def adapt(tree: Path) -> None:
    """What a container is not: a disk with partitions, a machine with eth0."""
    # No partitions to mount: the "card" is a plain directory.
    (tree / "etc/fstab").write_text("")
    config_path = tree / "etc/meshstead/image.json"
    config = json.loads(config_path.read_text())
    if config.get("boot_mount") != BOOT_MOUNT:
        raise LabError(f"the amd64 base's boot partition is at {config.get('boot_mount')}, expected {BOOT_MOUNT}")
    config["grow_root"] = False  # no partition to grow
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    # The join's DHCP on the container's link; systemd's own file for host0
    # would match before it and stay after the roles dropped it.
    join_network = tree / config["join_network"].lstrip("/")
    join_network.write_text(join_network.read_text().replace("Name=eth0", f"Name={LINK}"))
    masked = tree / "etc/systemd/network/80-container-host0.network"
    masked.unlink(missing_ok=True)
    masked.symlink_to("/dev/null")
    for hook in CUSTOMIZE_HOOKS:
        run(["sh", "-c", hook, "sh", str(tree)], what="the lab's node hooks")


def card(rootfs: Path) -> Path:
    """Where the node's boot partition would be: the invite and local.yml go here."""
    return rootfs / BOOT_MOUNT.lstrip("/") / "meshstead"


def write_card(rootfs: Path, files: dict[str, bytes]) -> None:
    """Files onto the node's card, as a person would (root's only, like the FAT mount)."""
    where = card(rootfs)
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        path = where / name
        path.write_bytes(data)
        path.chmod(0o600)


def report(rootfs: Path) -> dict:
    """The node's first-boot report (firstboot.json), read from the host side."""
    try:
        found = json.loads((rootfs / "var/lib/meshstead/firstboot.json").read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def joined_as(rootfs: Path) -> str | None:
    """The site node a blank node became, once its first boot is ok."""
    found = report(rootfs)
    return found.get("node") if found.get("status") == "ok" else None


__all__ = ["LINK", "card", "ensure_tree", "joined_as", "report", "write_card"]
