"""A Raspberry Pi 5's image: a Raspberry Pi OS (bookworm, arm64) image the
user downloaded, personalised without root or mounts so that the node
configures itself at first boot, offline, with the same seed and roles as
meshstead's own images.

Everything goes onto the FAT boot partition (mtools), which Raspberry Pi OS
mounts at /boot/firmware: the seed (images/seed.py), the hook
(image-builder/raspios/firstrun.sh) appended to cmdline.txt as Raspberry Pi
Imager appends its customisation, and in meshstead-setup/ what Raspberry Pi
OS lacks: the .debs of the node's packages that the image does not have
(images/debs.py, worked out from the image's own dpkg status), the pinned
Ansible's wheels, and root.tar with the first-boot program and unit, the
join package and /etc/meshstead/image.json. The hook installs them, then
the first boot proper takes the seed. docs/seed.md tells the sequence."""

import contextlib
import datetime
import io
import json
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshsteadError
from ..resources import image_builder_home
from . import debs, disk, personalise, recipe, seed, virt
from .base import ANSIBLE_VENV, FIRSTBOOT_COMMAND, JOIN_PACKAGE, ansible_wheels, image_config, venv_commands

BOOT_MOUNT = "/boot/firmware"
SETUP_DIR = "meshstead-setup"
FIRSTRUN = "firstrun.sh"
# What Raspberry Pi Imager appends to cmdline.txt for its firstrun.sh, with
# the path where bookworm mounts the boot partition (Imager writes /boot/,
# which raspberrypi-sys-mods' initramfs rewrites to /boot/firmware/).
HOOK = (f"systemd.run={BOOT_MOUNT}/{FIRSTRUN}", "systemd.run_success_action=reboot",
        "systemd.unit=kernel-command-line.target")
ARCH = "arm64"
XZ_MAGIC = b"\xfd7zXZ\x00"
FAT_TYPES = {"b", "c"}  # FAT32 (CHS, LBA) in an MBR
EXPECTED = "expected a Raspberry Pi OS (bookworm, arm64, Lite) image as downloaded (.img.xz or .img)"


@dataclass(frozen=True)
class Layout:
    boot_offset: int
    root_offset: int

    def fat(self, image: Path) -> str:
        return f"{image}@@{self.boot_offset}"


def firstrun_script() -> Path:
    return image_builder_home() / "raspios" / FIRSTRUN


def _refuse(path: Path, why: str) -> MeshsteadError:
    return MeshsteadError("base", f"{path} {why}; {EXPECTED}")


def is_xz(path: Path) -> bool:
    """Whether --base is compressed (by its first bytes; also a refusal of an unreadable file)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(XZ_MAGIC)) == XZ_MAGIC
    except OSError as exc:
        raise MeshsteadError("base", f"cannot read {path}: {exc.strerror}; {EXPECTED}") from None


def layout(image: Path, shown: Path) -> Layout:
    """Raspberry Pi OS's layout: an MBR, a FAT boot partition with cmdline.txt
    and config.txt, then the root file system. `shown` is the name in errors."""
    proc = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,  # noqa: S603,S607
                          check=False)
    try:
        table = json.loads(proc.stdout)["partitiontable"]
    except (ValueError, KeyError):
        raise _refuse(shown, "has no partition table") from None
    parts = table.get("partitions") or []
    if table.get("label") != "dos" or len(parts) < 2 or parts[0].get("type") not in FAT_TYPES:
        raise _refuse(shown, "has no FAT boot partition first in an MBR (Raspberry Pi OS's layout)")
    sector = table.get("sectorsize", disk.SECTOR)
    found = Layout(parts[0]["start"] * sector, parts[1]["start"] * sector)
    names = _fat_names(found.fat(image))
    missing = [name for name in ("cmdline.txt", "config.txt") if name not in names]
    if missing:
        raise _refuse(shown, f"has no {' and no '.join(missing)} on its FAT boot partition")
    return found


def _fat_names(fat: str) -> set[str]:
    proc = subprocess.run(["mdir", "-b", "-i", fat, "::/"], capture_output=True, text=True,  # noqa: S603,S607
                          env=virt.MTOOLS_ENV, check=False)
    return {line.removeprefix("::/").lower() for line in proc.stdout.splitlines() if line.strip()}


def read_fat(fat: str, name: str) -> str:
    return disk.run(["mtype", "-i", fat, f"::/{name}"], what=f"mtype {name}", env=virt.MTOOLS_ENV).stdout


def dpkg_status(image: Path, found: Layout, shown: Path) -> bytes:
    """/var/lib/dpkg/status of the image's root file system, read by debugfs at its offset (no mount)."""
    proc = subprocess.run(["debugfs", "-R", "cat /var/lib/dpkg/status",  # noqa: S603,S607
                           f"{image}?offset={found.root_offset}"], capture_output=True, check=False)
    if proc.returncode != 0 or b"Package: " not in proc.stdout:
        raise _refuse(shown, "has no Debian root file system (ext4 with /var/lib/dpkg/status) after its boot "
                             "partition")
    return proc.stdout


def architecture(status: bytes) -> str:
    """The image's architecture: that of its dpkg."""
    return next((fields.get("Architecture", "unknown") for fields in debs.stanzas(status)
                 if fields.get("Package") == "dpkg"), "unknown")


def hooked_cmdline(cmdline: str, shown: Path) -> str:
    """cmdline.txt (one line) with the hook appended, as Imager appends its own."""
    line = cmdline.strip()
    if "\n" in line:
        raise _refuse(shown, "has a cmdline.txt of more than one line")
    if "systemd.run=" in line:
        raise _refuse(shown, f"already runs something at first boot (cmdline.txt: {line[-80:]!r}); "
                             "it was customised (e.g. by Raspberry Pi Imager)")
    return f"{line} {' '.join(HOOK)}\n"


def root_tar(built: datetime.datetime) -> bytes:
    """The files the hook unpacks into /: the image builder's files/ (first-boot
    program, unit), the join package, image.json and the meshstead-firstboot
    command, owned by root. No directories of Raspberry Pi OS's: they keep
    their owner and mode."""
    moment = built.timestamp()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes, mode: int = 0o644, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, moment, len(data), link
            tar.addfile(info, io.BytesIO(data))

        rpi = recipe.load("rpi")  # the files every base has
        files = rpi.files
        for path in sorted(p for p in files.rglob("*") if p.is_file()):
            rel = path.relative_to(files).as_posix()
            add(rel, path.read_bytes(), 0o755 if rel == "usr/lib/meshstead/firstboot" else 0o644)
        join = rpi.join_package
        for path in sorted(p for p in join.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            add(f"{JOIN_PACKAGE.lstrip('/')}/meshstead_join/{path.relative_to(join).as_posix()}", path.read_bytes())
        add("etc/meshstead/image.json", image_config("raspios", built, BOOT_MOUNT).encode())
        # systemd never sets the clock earlier than this file's time (no RTC, no network).
        add("usr/lib/clock-epoch", b"")
        add("var/lib/meshstead", b"", 0o700, tarfile.DIRTYPE)
        add(FIRSTBOOT_COMMAND[0].lstrip("/"), b"", 0o777, tarfile.SYMTYPE, FIRSTBOOT_COMMAND[1])
    return buffer.getvalue()


def venv_script(wheels: list[Path]) -> bytes:
    inside = [f"{BOOT_MOUNT}/{SETUP_DIR}/wheels/{w.name}" for w in wheels]
    return ("# The pinned Ansible in " + ANSIBLE_VENV + ", from the wheels beside this file.\nset -e\n"
            + "".join(f"{command}\n" for command in venv_commands(inside))).encode()


def card_files(cmdline: str, carried: list[Path], wheels: list[Path], built: datetime.datetime,
               seeded: dict[str, bytes], shown: Path) -> dict[str, Path | bytes]:
    """Everything written onto the boot partition."""
    return {
        f"{SETUP_DIR}/root.tar": root_tar(built),
        f"{SETUP_DIR}/venv.sh": venv_script(wheels),
        **{f"{SETUP_DIR}/wheels/{w.name}": w for w in wheels},
        **{f"{SETUP_DIR}/debs/{d.name}": d for d in carried},
        **seeded,
        FIRSTRUN: firstrun_script(),
        "cmdline.txt": hooked_cmdline(cmdline, shown).encode(),
    }


def _unpack(source: Path, xz: bool, target: Path) -> None:
    """The image, uncompressed, into `target` (which exists, 0600)."""
    if not xz:
        disk.run(["cp", "--sparse=always", str(source), str(target)], what="cp (base)")
        return
    with open(target, "wb") as out:
        proc = subprocess.run(["xz", "-dc", "-T0", str(source)], stdout=out, stderr=subprocess.PIPE,  # noqa: S603,S607
                              check=False)
    if proc.returncode != 0:
        error = proc.stderr.decode(errors="replace").strip().splitlines()
        raise MeshsteadError("base", f"cannot decompress {source}: {error[-1] if error else 'xz failed'}; {EXPECTED}")


def _check(image: Path, shown: Path) -> tuple[Layout, bytes, str]:
    """Layout, dpkg status and cmdline.txt of a Raspberry Pi OS arm64 image, or a one-line refusal."""
    found = layout(image, shown)
    status = dpkg_status(image, found, shown)
    arch = architecture(status)
    if arch != ARCH:
        raise _refuse(shown, f"is a Raspberry Pi OS image for {arch}, not arm64")
    cmdline = read_fat(found.fat(image), "cmdline.txt")
    hooked_cmdline(cmdline, shown)  # a customised image is refused before anything is downloaded
    return found, status, cmdline


def build(base_image: Path, opened, node: str, out: Path, *, raw: bool, progress) -> personalise.Built:
    """NODE-rpi5.img(.zst): the Raspberry Pi OS image with the node's seed and all it needs offline."""
    started = time.monotonic()
    seeded = seed.seed(opened, node)  # validates the node and reads its secrets before writing anything
    disk.require_tools("mcopy", "mtype", "mdir", "sfdisk", "debugfs", "xz", *(() if raw else ("zstd",)))
    xz = is_xz(base_image)
    checked = None if xz else _check(base_image, base_image)  # an .img is checked before anything is written
    made_out = not out.exists()
    name = personalise.image_name(node, "rpi5", raw)
    personalise.check_out_dir(out)
    partial = personalise.partial_path(out, name)
    raw_partial = out / f"{partial.name}.raw"
    try:
        personalise.create_private(raw_partial)
        if xz:
            progress(f"decompressing {base_image.name}")
            _unpack(base_image, True, raw_partial)
            checked = _check(raw_partial, base_image)
        found, status, cmdline = checked
        carried = debs.ensure(status, recipe.image_packages(), suite=recipe.load("rpi").suite, arch=ARCH,
                              progress=progress)
        wheels = ansible_wheels(*recipe.ansible_pins(), progress)
        if not xz:
            progress(f"copying {base_image.name}")
            _unpack(base_image, False, raw_partial)
        progress("writing the seed and the first-boot payload onto the boot partition")
        built = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        disk.copy_into_fat(found.fat(raw_partial),
                           card_files(cmdline, debs.files(carried), wheels, built, seeded, base_image))
        progress("checksumming the image")
        final, digest = personalise.publish(raw_partial, partial, name, out, raw=raw,
                                            digest=disk.sha256(raw_partial), mode=0o600, progress=progress)
    except OSError as exc:
        raise MeshsteadError("out", f"writing the image into {out} failed: {exc.strerror}") from None
    except MeshsteadError:
        if made_out:  # bad input leaves nothing behind, not even the directory made for it
            for leftover in personalise.leftovers(partial):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    finally:
        for leftover in personalise.leftovers(partial):
            leftover.unlink(missing_ok=True)
    return personalise.Built(final, final.stat().st_size, digest, time.monotonic() - started, private=True)
