"""The cached base root filesystem every lab node is copied from.

Built once with mmdebstrap and kept under the cache directory, keyed by a hash
of everything that shapes it, so changing the package list or the hooks builds a
new one instead of silently reusing a stale tree.  Node service packages are NOT
included: the roles install them from the lab's local apt repository, as on a
real site.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .host import require_tools, run

SUITE = "bookworm"
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3",
    "python3-apt", "iproute2", "iputils-ping", "sudo",
)

# Node-independent tweaks, applied once to the cached tree (mmdebstrap runs these
# with the tree's path as $1).  They are part of the cache key.
CUSTOMIZE_HOOKS = (
    # networkd configures host0 from the per-node 10-lab.network file.
    'chroot "$1" systemctl enable systemd-networkd.service',
    # Debian's yggdrasil service runs as its own user and must open the TUN device.
    'mkdir -p "$1/etc/tmpfiles.d" && echo "z /dev/net/tun 0666 - - -"'
    ' > "$1/etc/tmpfiles.d/meshstead-lab-tun.conf"',
    # Nodes have no internet: a stale deb.debian.org entry makes apt retry for ~80 s.
    ': > "$1/etc/apt/sources.list"',
    # Every node gets its own (or the site's) host key; never share the build's keys.
    'rm -f "$1"/etc/ssh/ssh_host_*',
    ': > "$1/etc/machine-id"',
)

Progress = Callable[[str], None]


def cache_dir() -> Path:
    return Path(os.environ.get("MESHSTEAD_LAB_CACHE", "/var/cache/meshstead/lab"))


def cache_key() -> str:
    blob = json.dumps([SUITE, "minbase", sorted(BASE_PACKAGES), CUSTOMIZE_HOOKS])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_base_rootfs(progress: Progress) -> Path:
    """Return the cached base tree, building it first if needed."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"rootfs-{SUITE}-{cache_key()}"
    if final.is_dir():
        progress(f"base rootfs: cached {final}")
        return final
    # One builder at a time: parallel labs (or test runs) wait for the first build.
    with open(root / ".rootfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        require_tools("mmdebstrap")
        progress(f"building base rootfs ({SUITE}, ~1 min, cached afterwards)")
        tmp = Path(tempfile.mkdtemp(prefix=".rootfs-build-", dir=root))
        try:
            cmd = ["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root",
                   "--include=" + ",".join(BASE_PACKAGES)]
            cmd += [f"--customize-hook={hook}" for hook in CUSTOMIZE_HOOKS]
            cmd += [SUITE, str(tmp)]
            run(cmd, what="mmdebstrap (base rootfs)")
            # Built completely before it gets its final name: never a half tree.
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
