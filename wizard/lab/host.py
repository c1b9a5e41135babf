"""Host checks and process helpers shared by the lab modules."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import LabError

# Host program -> Debian package that ships it, so errors can say what to install.
TOOL_PACKAGES = {
    "mmdebstrap": "mmdebstrap",
    "systemd-nspawn": "systemd-container",
    "apt-ftparchive": "apt-utils",
    "apt-get": "apt",
    "apt-cache": "apt",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "nc": "netcat-openbsd",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the node lab needs root (namespaces, systemd-nspawn): run it with sudo")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        raise LabError(
            f"missing host tool(s) {', '.join(missing)}: apt-get install {' '.join(pkgs)}"
        )


def run(cmd: Sequence[str], *, what: str, allow_fail: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """Run a host command; on failure raise LabError with its last stderr line.

    allow_fail=True returns the result whatever the exit code (for probes).
    """
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    proc = subprocess.run(list(cmd), check=False, **kwargs)  # noqa: S603 - fixed argv, no shell
    if proc.returncode != 0 and not allow_fail:
        err = (proc.stderr or "").strip().splitlines()
        tail = err[-1] if err else f"exit code {proc.returncode}"
        raise LabError(f"{what} failed: {tail}")
    return proc


# Lab nodes share the host kernel and, without user namespaces, the inotify
# instances of its root user (128 by default). Each node's systemd, journald,
# dnsmasq, Syncthing and .path units hold several, so around eight nodes the
# kernel refuses new ones and units fail to start. `lab up` raises the limit
# for the nodes it boots and the last `lab down` puts the old value back.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_NODE = 64


def raise_inotify_instances(nodes: int, saved: Path) -> None:
    wanted = 128 + INOTIFY_PER_NODE * nodes
    current = int(INOTIFY_INSTANCES.read_text())
    if current >= wanted:
        return
    if not saved.exists():
        saved.write_text(f"{current}\n")
    INOTIFY_INSTANCES.write_text(f"{wanted}\n")


def restore_inotify_instances(saved: Path) -> None:
    if saved.exists():
        INOTIFY_INSTANCES.write_text(saved.read_text())
        saved.unlink()
