"""A node's image: a copy of its platform's base with the node's seed written
onto the boot partition (or, for a generic image, the site's public
description and perhaps an invite). No root, no mounts, seconds instead of a
rebuild.

The image is written under a temporary name and renamed only when complete,
so a killed or failed build never leaves a file under the final name; it is
0600 from its first byte because a seed holds the node's private keys (and an
invite is a bearer secret); a generic image without an invite is 0644."""

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshsteadError
from . import disk, seed
from .base import Base


@dataclass(frozen=True)
class Built:
    path: Path
    size: int
    sha256: str
    seconds: float
    private: bool


def image_name(node: str, platform: str, raw: bool) -> str:
    return f"{node}-{platform}.img" + ("" if raw else ".zst")


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MeshsteadError("out", f"cannot make {out}: {exc.strerror}; expected a writable directory") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise MeshsteadError("out", f"{out} is not writable; expected a writable directory")


def remove_stale(out: Path, name: str) -> None:
    """Partial files (or bundle directories) of builds that were killed."""
    for stale in out.glob(f".{name}.partial-*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(stale.name.rsplit("-", 1)[1].split(".")[0])
            os.kill(pid, 0)
            continue  # that build is still running
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def partial_path(out: Path, name: str) -> Path:
    """Every temporary file of a build is .NAME.partial-PID*: a killed build's are found and removed by the next."""
    remove_stale(out, name)
    return out / f".{name}.partial-{os.getpid()}"


def create_private(path: Path) -> None:
    """An empty file that is 0600 before it holds any byte."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def publish(raw_partial: Path, partial: Path, name: str, out: Path, *, raw: bool, digest: str, mode: int,
            progress) -> tuple[Path, str]:
    """The finished raw image under its final name (compressed unless `raw`), with its .sha256."""
    if raw:
        os.rename(raw_partial, partial)
    else:
        progress("compressing (zstd)")
        disk.run(["zstd", "-q", "-T0", "-3", "--rm", "-o", str(partial), str(raw_partial)], what="zstd")
        digest = disk.sha256(partial)
    os.chmod(partial, mode)
    final = out / name
    sums_partial = out / f"{partial.name}.sha256"
    sums_partial.write_text(f"{digest}  {name}\n")
    os.rename(partial, final)
    os.rename(sums_partial, out / f"{name}.sha256")
    return final, digest


def leftovers(partial: Path) -> list[Path]:
    return [partial, partial.with_name(f"{partial.name}.raw"), partial.with_name(f"{partial.name}.sha256")]


def build(base: Base, opened, node: str, out: Path, *, raw: bool, progress) -> Built:
    """A node's image: the base with the node's seed."""
    files = seed.seed(opened, node)  # validates the node and reads its secrets before writing anything
    return write(base, files, image_name(node, base.info["platform"], raw), out, raw=raw, progress=progress)


def write(base: Base, files: dict[str, bytes], name: str, out: Path, *, raw: bool, progress,
          private: bool = True) -> Built:
    """The base with `files` written onto its boot partition, as out/name."""
    started = time.monotonic()
    check_out_dir(out)
    disk.require_tools("mcopy", *(() if raw else ("zstd",)))
    info = base.info
    partial = partial_path(out, name)
    raw_partial = out / f"{partial.name}.raw"
    fat = out / f"{partial.name}.boot"
    try:
        # The seed goes into a copy of the boot partition alone (256 MiB), which
        # then replaces the base's in one pass that also checks the base.
        progress("writing the seed onto the boot partition")
        create_private(fat)
        disk.extract(base.image, info["boot_offset"], info["boot_size"], fat)
        disk.copy_into_fat(str(fat), files)
        progress("copying the base with the seeded boot partition")
        fd = os.open(raw_partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            base_sha, digest = disk.splice(base.image, info["boot_offset"], fat, fd)
        finally:
            os.close(fd)
        if base_sha != info["sha256"]:
            raise base.damaged()
        final, digest = publish(raw_partial, partial, name, out, raw=raw, digest=digest,
                                mode=0o600 if private else 0o644, progress=progress)
    except OSError as exc:
        raise MeshsteadError("out", f"writing the image into {out} failed: {exc.strerror}") from None
    except subprocess.SubprocessError as exc:
        raise MeshsteadError("image", f"building the image failed: {exc}") from None
    finally:
        for leftover in (fat, *leftovers(partial)):
            leftover.unlink(missing_ok=True)
    return Built(final, final.stat().st_size, digest, time.monotonic() - started, private=private)
