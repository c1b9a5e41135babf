"""A platform's base image: Debian with every package a node needs, the Ansible
that applies a seed at first boot, and the first-boot program; no node in it.

Built once per recipe and cached under a key of its inputs (images/recipe.py);
a node's image is a copy with a seed written onto its boot partition
(images/personalise.py). The base is built completely in a temporary
directory and renamed into place, and its checksum is recorded so that a
damaged cached base is refused instead of copied."""

import datetime
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshsteadError
from . import disk, foreign, initramfs, raspi
from .recipe import Recipe, cache_key

Progress = Callable[[str], None]
ANSIBLE_VENV = "/opt/meshstead/ansible"
# The join package a generic image joins with (first boot's `join_package`).
JOIN_PACKAGE = "/usr/lib/meshstead/join"
# The command a person joins a running node with (`meshstead-firstboot --invite TEXT`): the first-boot program.
FIRSTBOOT_COMMAND = ("/usr/sbin/meshstead-firstboot", "/usr/lib/meshstead/firstboot")
ROOT_LABEL = "meshstead-root"
BOOT_LABEL = "MESHBOOT"


def cache_root() -> Path:
    override = os.environ.get("MESHSTEAD_IMAGE_CACHE")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/meshstead/images")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshstead" / "images"


@dataclass(frozen=True)
class Base:
    dir: Path

    @property
    def image(self) -> Path:
        return self.dir / "disk.img"

    @property
    def info(self) -> dict:
        return json.loads((self.dir / "base.json").read_text())

    def damaged(self) -> MeshsteadError:
        return MeshsteadError("base", f"the cached base {self.dir} is damaged (checksum mismatch); expected "
                              f"`meshstead image base --platform {self.info['platform']} --rebuild`")

    def verify(self) -> None:
        """Refuse a cached base whose bytes are not those it was built with."""
        if not self.image.is_file() or disk.sha256(self.image) != self.info["sha256"]:
            raise self.damaged()


def cached(recipe: Recipe) -> Base | None:
    found = cache_root() / f"base-{recipe.platform}-{cache_key(recipe)}"
    return Base(found) if (found / "base.json").is_file() else None


def ensure(recipe: Recipe, progress: Progress, rebuild: bool = False) -> tuple[Base, bool]:
    """The cached base (built first if there is none, or when asked); True if built now."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"base-{recipe.platform}-{cache_key(recipe)}"
    with open(root / f".base-{recipe.platform}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per platform; others wait, then reuse
        # Under the lock, a temporary tree is a killed build's: gone.
        for stale in root.glob(f".base-{recipe.platform}-*"):
            if stale.is_dir():
                subprocess.run(["rm", "-rf", "--one-file-system", str(stale)], check=False)
        if (final / "base.json").is_file() and not rebuild:
            return Base(final), False
        if os.geteuid() != 0:
            raise MeshsteadError("base", "building a base needs root (mmdebstrap --mode=root); "
                                 "expected to run it with sudo")
        disk.require_tools("mmdebstrap", "mke2fs", "mkfs.vfat", "mcopy", "sfdisk", "arch-test")
        foreign.ensure_binfmt(recipe.arch)
        tmp = Path(tempfile.mkdtemp(prefix=f".base-{recipe.platform}-", dir=root))
        try:
            try:
                _build(recipe, tmp, progress)
            except MeshsteadError as exc:
                raise _with_kept_log(exc, tmp, root / f"build-{recipe.platform}.log") from None
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
            # A base is ~2 GB: older ones of the platform (other inputs) go.
            for old in root.glob(f"base-{recipe.platform}-*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)], check=False)
    return Base(final), True


def wheel(project: str, version: str, progress: Progress) -> Path:
    """A pure-Python wheel from the package index, kept beside the bases."""
    wheels = cache_root() / "wheels"
    stem = project.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    progress(f"downloading {project} {version}")
    wheels.mkdir(parents=True, exist_ok=True)
    disk.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--disable-pip-version-check", "-d", str(wheels), f"{project}=={version}"],
             what=f"pip download {project}")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise MeshsteadError("base", f"pip downloaded no wheel of {project} {version}")
    return found[0]


def ansible_wheels(ansible_core: str, mitogen: str, progress: Progress) -> list[Path]:
    return [wheel("ansible-core", ansible_core, progress), wheel("mitogen", mitogen, progress)]


def venv_commands(wheels: list[str]) -> list[str]:
    """Shell commands that install the pinned Ansible in ANSIBLE_VENV from
    `wheels` (paths where the commands run), as the roster role installs it on
    a provisioned node: over Debian's libraries, nothing from the network."""
    return [f"python3 -m venv --system-site-packages {ANSIBLE_VENV}",
            f"{ANSIBLE_VENV}/bin/pip install --quiet --no-index --no-deps --disable-pip-version-check "
            + " ".join(wheels)]


def ansible_venv_hooks(ansible_core: str, mitogen: str, progress: Progress) -> list[str]:
    """mmdebstrap hooks that install the pinned Ansible in the tree being built."""
    wheels = ansible_wheels(ansible_core, mitogen, progress)
    inside = [f"/tmp/{w.name}" for w in wheels]  # noqa: S108 - inside the tree being built
    return [
        *(f"upload {w} {path}" for w, path in zip(wheels, inside, strict=True)),
        *(f'chroot "$1" {command}' for command in venv_commands(inside)),
        *(f'rm -f "$1{path}"' for path in inside),
    ]


def _with_kept_log(exc: MeshsteadError, work: Path, kept: Path) -> MeshsteadError:
    """A failed build's directory goes; its log is kept beside the bases, where the error points."""
    log = work / "mmdebstrap.log"
    if not log.is_file():
        return exc
    shutil.copyfile(log, kept)
    return MeshsteadError(exc.field, exc.message.replace(str(log), str(kept)))


def _build(recipe: Recipe, work: Path, progress: Progress) -> None:
    started = time.monotonic()
    tree = work / "tree"
    built = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    overlay = work / "overlay"
    _write_overlay(overlay, recipe, built)
    hooks = [
        *ansible_venv_hooks(recipe.ansible_core, recipe.mitogen, progress),
        f"sync-in {recipe.files} /",
        f"sync-in {overlay} /",
        f'mkdir -p "$1{JOIN_PACKAGE}/meshstead_join"',  # sync-in copies into an existing directory
        f"sync-in {recipe.join_package} {JOIN_PACKAGE}/meshstead_join",
        f'rm -rf "$1{JOIN_PACKAGE}/meshstead_join/__pycache__"',
        'chmod 755 "$1/usr/lib/meshstead/firstboot"',
        f'ln -sf {FIRSTBOOT_COMMAND[1]} "$1{FIRSTBOOT_COMMAND[0]}"',
        'chroot "$1" systemctl enable meshstead-firstboot.service systemd-networkd.service',
        # sshd has no host key until the seed gives it the site's: the common role enables it then.
        'chroot "$1" systemctl disable ssh.service',
        # Every node gets its own host key from its seed; never the build's.
        'rm -f "$1"/etc/ssh/ssh_host_*',
        ': > "$1/etc/machine-id"',
        # No Internet on site: an unreachable mirror would only make apt wait.
        ': > "$1/etc/apt/sources.list"',
        # systemd never sets the clock earlier than this file's time (no RTC, no network).
        'touch "$1/usr/lib/clock-epoch"',
    ]
    # The boot firmware's settings before the initramfs run, whose hook writes cmdline.txt from them.
    hooks += raspi.customize_hooks(recipe.firmware_settings)
    early: list[str] = []
    if recipe.initramfs_modules:
        early = initramfs.essential_hooks()
        hooks += initramfs.customize_hooks(recipe.initramfs_modules)
    progress(f"installing {len(recipe.packages)} packages and their dependencies (mmdebstrap)")
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", f"--arch={recipe.arch}",
           "--components=main,non-free-firmware", "--include=" + ",".join(recipe.packages)]
    cmd += [f"--essential-hook={hook}" for hook in early]
    cmd += [f"--customize-hook={hook}" for hook in hooks]
    cmd += [recipe.suite, str(tree)]
    disk.run_logged(cmd, work / "mmdebstrap.log", what="mmdebstrap (base)", progress=progress)
    progress("writing the boot and root partitions")
    layout = disk.assemble(recipe, tree, work / "disk.img", boot_label=BOOT_LABEL, root_label=ROOT_LABEL)
    subprocess.run(["rm", "-rf", "--one-file-system", str(tree)], check=True)
    progress("checksumming the base")
    info = {"platform": recipe.platform, "key": work.name, "built": built.isoformat(),
            "suite": recipe.suite, "arch": recipe.arch, "ansible_core": recipe.ansible_core, "mitogen": recipe.mitogen,
            "packages": list(recipe.packages), "sha256": disk.sha256(work / "disk.img"), **layout}
    info["build_seconds"] = round(time.monotonic() - started, 1)
    (work / "base.json").write_text(json.dumps(info, indent=2) + "\n")


def image_config(platform: str, built: datetime.datetime, boot_mount: str) -> str:
    """/etc/meshstead/image.json: how the first-boot program finds the seed and the Ansible to run."""
    return json.dumps({
        "platform": platform, "built": built.isoformat(), "boot_mount": boot_mount,
        "state_dir": "/var/lib/meshstead", "ansible_playbook": f"{ANSIBLE_VENV}/bin/ansible-playbook",
        "grow_root": True, "join_package": JOIN_PACKAGE,
        "join_network": "/etc/systemd/network/90-meshstead-join.network"}, indent=2) + "\n"


HOSTS = """127.0.0.1\tlocalhost
127.0.1.1\tmeshstead
::1\t\tlocalhost ip6-localhost ip6-loopback
ff02::1\t\tip6-allnodes
ff02::2\t\tip6-allrouters
"""


def _write_overlay(overlay: Path, recipe: Recipe, built: datetime.datetime) -> None:
    """Files generated from the recipe, synced into the tree after the shipped ones."""
    etc = overlay / "etc"
    (etc / "meshstead").mkdir(parents=True)
    (etc / "meshstead/image.json").write_text(image_config(recipe.platform, built, recipe.boot_mount))
    # The boot partition is root's only: the seed on it holds private keys until first boot scrubs them.
    (etc / "fstab").write_text(
        f"LABEL={ROOT_LABEL} / ext4 rw,errors=remount-ro 0 1\n"
        f"LABEL={BOOT_LABEL} {recipe.boot_mount} vfat umask=0077,nofail 0 2\n")
    (etc / "hostname").write_text("meshstead\n")
    # Debian's own files for a machine without a network yet, never the build
    # machine's (mmdebstrap copies its resolv.conf): with a name server the site
    # cannot reach, every lookup of the node's own name (Ansible's facts, the
    # hostname module) waited 10 s for it. No server means 127.0.0.1, which
    # answers at once, and once the dns role runs, its dnsmasq.
    (etc / "hosts").write_text(HOSTS)
    (etc / "resolv.conf").write_text("# No name server until the site's dns role configures this node.\n")
    (overlay / recipe.boot_mount.lstrip("/")).mkdir(parents=True)
    (overlay / "var/lib/meshstead").mkdir(parents=True)
    os.chmod(overlay / "var/lib/meshstead", 0o700)
