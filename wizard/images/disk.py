"""Disk images without loop devices or mounts: a FAT boot partition made and
filled with mtools, an ext4 root made from a directory by mke2fs -d, a GPT
written by sfdisk, and the partitions copied in at their offsets."""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import MeshsteadError
from . import raspi

MIB = 1024 * 1024
SECTOR = 512
# (boot, root) partition types per table: an EFI system partition on GPT;
# FAT32 with LBA (0c) on an MBR, which a Pi's boot ROM looks for.
PART_TYPES = {"gpt": ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
              "dos": ("c", "83")}
TOOL_PACKAGES = {"mmdebstrap": "mmdebstrap", "mke2fs": "e2fsprogs", "mkfs.vfat": "dosfstools",
                 "mcopy": "mtools", "sfdisk": "fdisk", "zstd": "zstd"}


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        raise MeshsteadError("image", f"missing host tool(s) {', '.join(missing)}; expected them installed: "
                             f"apt-get install {' '.join(pkgs)}")


def run(cmd: Sequence[str], *, what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), check=False, capture_output=True, text=True, **kwargs)  # noqa: S603
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise MeshsteadError("image", f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return proc


def run_logged(cmd: Sequence[str], log: Path, *, what: str, progress: Callable[[str], None]) -> None:
    """A long command whose output goes to a log, each line stamped with the
    seconds since the start (where a slow build spends its time); its last
    line is shown as progress."""
    started = time.monotonic()
    with open(log, "w", buffering=1) as out:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                                text=True)
        last = ""
        for line in proc.stdout:
            out.write(f"{time.monotonic() - started:7.1f} {line}")
            if line.strip():
                last = line.strip()
                progress(f"{what}: {last[:100]}")
        if proc.wait() != 0:
            raise MeshsteadError("image", f"{what} failed: {last} (log: {log})")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def extract(image: Path, offset: int, size: int, out: Path) -> None:
    """Copy `size` bytes at `offset` of `image` into a file of their own."""
    with open(image, "rb") as src, open(out, "wb") as dst:
        src.seek(offset)
        left = size
        while left:
            chunk = src.read(min(4 * MIB, left))
            if not chunk:
                raise MeshsteadError("base", f"{image} is shorter than its partition table says")
            dst.write(chunk)
            left -= len(chunk)


def splice(image: Path, offset: int, part: Path, out_fd: int) -> tuple[str, str]:
    """Write `image` to `out_fd` with `part` in place of its bytes at `offset`,
    in one pass: the SHA-256 of `image` as read (is the cached base intact?)
    and of what was written (the image's checksum). Zero blocks become holes."""
    source, written = hashlib.sha256(), hashlib.sha256()
    zero = bytes(4 * MIB)
    part_size = part.stat().st_size
    with open(image, "rb") as src, open(part, "rb") as replacement, \
            os.fdopen(out_fd, "wb", closefd=False) as dst, ThreadPoolExecutor(1) as hasher:
        position = 0
        while chunk := src.read(4 * MIB if not offset <= position < offset + part_size
                                else min(4 * MIB, offset + part_size - position)):
            if position + len(chunk) > offset and position < offset:
                chunk = chunk[:offset - position]  # stop at the partition's first byte
                src.seek(position + len(chunk))
            data = replacement.read(len(chunk)) if offset <= position < offset + part_size else chunk
            # Two hashes of the same bytes: hashlib lets go of the GIL, so they run on two cores.
            pending = hasher.submit(source.update, chunk)
            written.update(data)
            pending.result()
            if data == zero[:len(data)]:
                dst.seek(len(data), os.SEEK_CUR)
            else:
                dst.write(data)
            position += len(chunk)
        dst.truncate(position)
    return source.hexdigest(), written.hexdigest()


def tree_mib(tree: Path) -> int:
    """What a tree takes on ext4, roughly: file sizes plus a block per inode."""
    total = 0
    for path in tree.rglob("*"):
        st = path.lstat()
        total += st.st_size + 4096
    return total // MIB + 1


def boot_files(recipe, tree: Path) -> dict[str, Path | bytes]:
    """What goes on the boot partition: the boot loader, its entry, kernel and initrd."""
    if recipe.boot_loader == "raspi-firmware":
        return dict(raspi.boot_files(tree, recipe.boot_mount))
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    initrds = sorted((tree / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise MeshsteadError("image", "the base has no kernel or initrd in /boot")
    if recipe.boot_loader != "systemd-boot":
        raise MeshsteadError("image", f"boot loader {recipe.boot_loader!r} is not supported")
    efi = tree / "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    entry = (f"title meshstead\nlinux /vmlinuz\ninitrd /initrd.img\n"
             f"options root=LABEL=meshstead-root rw {recipe.cmdline}\n")
    return {"EFI/BOOT/BOOTX64.EFI": efi, "loader/loader.conf": b"default meshstead.conf\ntimeout 0\n",
            "loader/entries/meshstead.conf": entry.encode(), "vmlinuz": kernels[-1], "initrd.img": initrds[-1]}


def _fat_has_dir(image: str, sub: str) -> bool:
    return subprocess.run(["mdir", "-b", "-i", image, f"::/{sub}"], capture_output=True,  # noqa: S603,S607
                          env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}, check=False).returncode == 0


def copy_into_fat(image: str, files: dict[str, Path | bytes]) -> None:
    """Write files into a FAT file system (a file, or IMG@@OFFSET inside a disk image)."""
    with tempfile.TemporaryDirectory(prefix="meshstead-fat-") as tmp:
        dirs = sorted({str(Path(rel).parent) for rel in files} - {"."})
        made: set[str] = set()
        for d in dirs:
            parts = Path(d).parts
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in made:
                    made.add(sub)
                    if _fat_has_dir(image, sub):  # a card that already has it (e.g. meshstead/)
                        continue
                    run(["mmd", "-D", "s", "-i", image, f"::/{sub}"], what=f"mmd {sub}",
                        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
        for rel, content in files.items():
            source = content if isinstance(content, Path) else Path(tmp) / "f"
            if isinstance(content, bytes):
                source.write_bytes(content)
            run(["mcopy", "-o", "-i", image, str(source), f"::/{rel}"], what=f"mcopy {rel}",
                env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})


def assemble(recipe, tree: Path, out: Path, *, boot_label: str, root_label: str) -> dict:
    """A GPT disk image: the FAT boot partition, then the ext4 root made from `tree`."""
    work = out.parent
    boot = work / "boot.vfat"
    run(["mkfs.vfat", "-F", "32", "-n", boot_label, "-C", str(boot), str(recipe.boot_mib * 1024)],
        what="mkfs.vfat (boot partition)")
    copy_into_fat(str(boot), boot_files(recipe, tree))
    # The boot partition is mounted over these copies: on the root they would only take room.
    hidden = tree / recipe.boot_mount.lstrip("/")
    if hidden.is_dir():
        for path in hidden.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    root = work / "root.ext4"
    root_mib = tree_mib(tree) * 11 // 10 + recipe.root_headroom_mib
    run(["mke2fs", "-q", "-t", "ext4", "-L", root_label, "-E", "root_owner=0:0", "-d", str(tree),
         "-F", str(root), f"{root_mib}M"], what="mke2fs (root partition)")
    boot_start = 1 * MIB
    root_start = boot_start + recipe.boot_mib * MIB
    total = root_start + root_mib * MIB + MIB  # the backup GPT at the end
    with open(out, "wb") as f:
        f.truncate(total)
    boot_type, root_type = PART_TYPES[recipe.partition_table]
    gpt = recipe.partition_table == "gpt"
    table = (f"label: {recipe.partition_table}\n"
             f"start={boot_start // SECTOR}, size={recipe.boot_mib * MIB // SECTOR}, type={boot_type}"
             + (', name="meshstead-boot"\n' if gpt else ", bootable\n")
             + f"start={root_start // SECTOR}, size={root_mib * MIB // SECTOR}, type={root_type}"
             + (', name="meshstead-root"\n' if gpt else "\n"))
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(out)], what="sfdisk", input=table)
    for part, start in ((boot, boot_start), (root, root_start)):
        run(["dd", f"if={part}", f"of={out}", "bs=4M", f"seek={start}", "oflag=seek_bytes",
             "conv=notrunc,sparse", "status=none"], what="dd (partition into disk image)")
        part.unlink()
    return {"size": total, "boot_offset": boot_start, "boot_size": recipe.boot_mib * MIB,
            "root_offset": root_start, "root_size": root_mib * MIB}
