"""Building a base of another architecture: mmdebstrap runs its packages'
scripts under qemu-user, which the kernel starts through binfmt_misc."""

import subprocess
from pathlib import Path

from ..errors import MeshsteadError

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Debian's architecture -> qemu-user's name for it
QEMU_NAMES = {"arm64": "aarch64", "armhf": "arm", "amd64": "x86_64"}


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def ensure_binfmt(arch: str) -> None:
    """Register qemu-user for `arch` with the kernel if it is not (a host
    without binfmt-support or systemd-binfmt, or a container)."""
    if arch == host_arch():
        return
    name = QEMU_NAMES.get(arch, arch)
    conf = Path(f"/usr/lib/binfmt.d/qemu-{name}.conf")
    if not conf.is_file():
        raise MeshsteadError("base", f"building an {arch} base needs qemu-user; expected it installed: "
                             "apt-get install qemu-user-static arch-test")
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=False,
                       capture_output=True)
    if not (BINFMT / f"qemu-{name}").exists():
        try:
            (BINFMT / "register").write_text(conf.read_text().strip() + "\n")
        except OSError as exc:
            raise MeshsteadError("base", f"cannot register qemu-{name} with binfmt_misc: {exc.strerror}; "
                                 f"expected `mount -t binfmt_misc binfmt_misc {BINFMT}` to work") from None
    # mmdebstrap checks the same way before it starts.
    if subprocess.run(["arch-test", arch], capture_output=True, check=False).returncode != 0:
        raise MeshsteadError("base", f"this host cannot run {arch} programs although qemu-{name} is registered; "
                             "expected `arch-test " + arch + "` to succeed")
