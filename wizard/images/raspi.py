"""The Raspberry Pi's boot partition, as Debian's raspi-firmware fills it.

raspi-firmware's kernel and initramfs hooks copy the Pi's boot firmware, the
kernel, the initrd and the Broadcom device trees into /boot/firmware, and
write config.txt and cmdline.txt from /etc/default/raspi-firmware (again on
every kernel update on the node, so the settings go there, not into
cmdline.txt). That directory is then the FAT partition's content."""

from pathlib import Path

from ..errors import MeshsteadError

SETTINGS = "/etc/default/raspi-firmware"
# What a Pi needs to boot at all: its firmware (bootcode.bin for a Pi 3's
# ROM, start*.elf), the settings, and a device tree of each model we claim.
REQUIRED = ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat", "config.txt", "cmdline.txt",
            "bcm2837-rpi-3-b.dtb", "bcm2837-rpi-zero-2-w.dtb", "bcm2711-rpi-4-b.dtb")


def customize_hooks(settings: tuple[tuple[str, str], ...]) -> list[str]:
    """Settings appended to raspi-firmware's file (its last assignment wins),
    before the one initramfs run whose hook writes cmdline.txt from them."""
    return [f"printf '%s=\"%s\"\\n' {key} '{value}' >> \"$1{SETTINGS}\"" for key, value in settings]


def boot_files(tree: Path, boot_mount: str) -> dict[str, Path]:
    firmware = tree / boot_mount.lstrip("/")
    found = {p.name: p for p in sorted(firmware.iterdir()) if p.is_file()} if firmware.is_dir() else {}
    missing = [name for name in REQUIRED if name not in found]
    if not any(name.startswith("vmlinuz-") for name in found):
        missing.append("vmlinuz-*")
    if not any(name.startswith("initrd.img-") for name in found):
        missing.append("initrd.img-*")
    if missing:
        raise MeshsteadError("image", f"raspi-firmware left no {', '.join(missing)} in {boot_mount}; "
                             f"expected the Pi's boot files there (see the build log)")
    return found
