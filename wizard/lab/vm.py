"""A flashed image booted as a lab node: QEMU (UEFI firmware, TCG) on the lab's
switch, its disk a copy of the image as if written to a card.

Nothing lab-specific goes into the image: the node is reached the way a real
one is, as the site's admin user over SSH (with the site's host key), once its
first boot has configured it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .errors import LabError
from .host import run
from .netns import NETNS_DIR, create_tap

QEMU = "qemu-system-x86_64"
FIRMWARE_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
FIRMWARE_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MEMORY_MB = 1536
SMP = 2
CARD_BYTES = 4 * 2**30  # a small SD card: the root file system grows into it at first boot


def tap_name(node: str) -> str:
    return ("vt-" + node)[:15]


def mac(lab: str, node: str) -> str:
    digest = hashlib.sha256(f"{lab}/{node}".encode()).digest()
    return "52:54:01:" + ":".join(f"{b:02x}" for b in digest[:3])


def process_name(lab: str, node: str) -> str:
    return f"meshstead-vm-{lab}-{node}"


def _boot_offset(image: Path) -> int:
    table = json.loads(run(["sfdisk", "--json", str(image)], what="reading the image's partition table").stdout)
    parts = table["partitiontable"]["partitions"]
    return parts[0]["start"] * table["partitiontable"].get("sectorsize", 512)


def read_card_file(image: Path, name: str, offset: int | None = None) -> str | None:
    """A file of the image's boot partition (e.g. meshstead/seed.json), or None."""
    offset = _boot_offset(image) if offset is None else offset
    proc = subprocess.run(["mtype", "-i", f"{image}@@{offset}", f"::/{name}"],  # noqa: S603
                          capture_output=True, text=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
                          check=False)
    return proc.stdout if proc.returncode == 0 else None


def image_seed(image: Path) -> dict | None:
    """The seed manifest on an image's boot partition (None: a generic image)."""
    offset = _boot_offset(image)
    for name in ("seed.json", "applied.json"):
        text = read_card_file(image, f"meshstead/{name}", offset)
        if text is not None:
            return json.loads(text)
    return None


def write_onto_card(card: Path, files: dict[str, bytes]) -> None:
    """Put files onto a card's boot partition, as a person would on a computer."""
    from ..images.disk import copy_into_fat
    copy_into_fat(f"{card}@@{_boot_offset(card)}", files)


def write_card(image: Path, card: Path) -> None:
    """Copy (and decompress) the image onto the node's "card", then size it like one."""
    tmp = card.with_name(card.name + ".partial")
    if image.name.endswith(".zst"):
        run(["zstd", "-q", "-d", "-f", "-o", str(tmp), str(image)], what="decompressing the image")
    else:
        run(["cp", "--sparse=always", str(image), str(tmp)], what="copying the image")
    os.chmod(tmp, 0o600)
    if tmp.stat().st_size < CARD_BYTES:
        os.truncate(tmp, CARD_BYTES)
    os.rename(tmp, card)


def start(lab: str, node: str, node_dir: Path, netns: str) -> int:
    """Power the node on: QEMU in the switch namespace, in the background; its PID."""
    if not FIRMWARE_CODE.is_file():
        raise LabError(f"UEFI firmware {FIRMWARE_CODE} is missing: apt-get install ovmf")
    firmware_vars = node_dir / "efivars.fd"
    if not firmware_vars.exists():
        shutil.copyfile(FIRMWARE_VARS, firmware_vars)
    tap = tap_name(node)
    create_tap(netns, tap)
    argv = [
        "nsenter", f"--net={NETNS_DIR / netns}", QEMU, "-name", process_name(lab, node),
        "-M", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(SMP), "-m", str(MEMORY_MB),
        "-display", "none", "-monitor", "none",
        "-drive", f"if=pflash,format=raw,readonly=on,file={FIRMWARE_CODE}",
        "-drive", f"if=pflash,format=raw,file={firmware_vars}",
        "-drive", f"file={node_dir / 'card.img'},if=virtio,format=raw",
        "-netdev", f"tap,id=lab,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=lab,mac={mac(lab, node)}",
        "-device", "virtio-rng-pci",
        "-chardev", f"file,id=console,path={node_dir / 'console.log'},append=on", "-serial", "chardev:console",
    ]
    with open(node_dir / "qemu.log", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def is_ours(pid: int | None, lab: str, node: str) -> bool:
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X"):
        return False
    return process_name(lab, node).encode() in argv


def stop(pid: int | None, lab: str, node: str, timeout: float = 10.0) -> None:
    """Pull the plug: SIGTERM (QEMU exits at once), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_ours(pid, lab, node):
            return
        os.kill(pid, sig)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while is_ours(pid, lab, node) and time.monotonic() < deadline:
            time.sleep(0.2)
    if is_ours(pid, lab, node):
        raise LabError(f"QEMU process {pid} of node {node} did not exit")


def console_tail(node_dir: Path, lines: int = 1) -> str:
    log = node_dir / "console.log"
    if not log.exists():
        return ""
    text = log.read_bytes()[-8192:].decode(errors="replace")
    kept = [x.strip() for x in text.replace("\r", "\n").splitlines() if x.strip()]
    return "\n".join(kept[-lines:])
