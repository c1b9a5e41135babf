"""One initramfs per base, made once at the end of the build from a fixed
module list. Under qemu-user every initramfs run is slow (~7 min for
MODULES=most), and the kernel and firmware packages each ask for one: the
real update-initramfs is diverted while they install (a no-op stands in),
then put back and run once. Pre-writing initramfs-tools' conffiles instead
would stop dpkg at a conffile prompt."""

from collections.abc import Sequence

UPDATE = "/usr/sbin/update-initramfs"


def essential_hooks() -> list[str]:
    """mmdebstrap --essential-hook: before the kernel and initramfs-tools install."""
    return [f'chroot "$1" dpkg-divert --quiet --local --rename --add {UPDATE}',
            f"printf '#!/bin/sh\\nexit 0\\n' > \"$1{UPDATE}\"",
            f'chmod 755 "$1{UPDATE}"']


def customize_hooks(modules: Sequence[str]) -> list[str]:
    """mmdebstrap --customize-hook: every package is in; the one real run."""
    return [
        # conf.d is read after initramfs.conf (a conffile, left as Debian ships it). The root is
        # always ext4 (disk.assemble): named, because the fsck hook cannot find LABEL=meshstead-root
        # in a build tree, and without fsck.ext4 in the initramfs the root is never checked.
        "printf 'MODULES=list\\nFSTYPE=ext4\\n' > \"$1/etc/initramfs-tools/conf.d/meshstead\"",
        f"printf '%s\\n' {' '.join(modules)} >> \"$1/etc/initramfs-tools/modules\"",
        f'rm -f "$1{UPDATE}"',
        f'chroot "$1" dpkg-divert --quiet --local --rename --remove {UPDATE}',
        'chroot "$1" update-initramfs -c -k all',
    ]
