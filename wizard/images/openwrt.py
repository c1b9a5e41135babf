"""An OpenWrt node's image: an ImageBuilder bundle (docs/openwrt.md).

OpenWrt images are made per device by OpenWrt's own ImageBuilder, which
meshstead cannot ship: the bundle is what it needs for one node. ``files/``
is the overlay (the node's first-boot UCI scripts and identity, rendered
from the roles by playbooks/openwrt.yml), ``packages.txt`` the packages the
roles add, ``build.sh`` the exact ``make image`` command. Given an unpacked
ImageBuilder, the command runs there too.

The bundle is written under a temporary name and renamed when complete, so
a failed or killed build leaves nothing under the final name. It holds the
node's private keys: its top directory is 0700 and the private files 0600.
The overlay's own directories stay 0755, because the ImageBuilder copies
them with their modes onto the router's /etc."""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import packages, sites
from ..errors import MeshsteadError
from ..render.nodefiles import NodeFile, render_node
from . import personalise

PLAYBOOK = "openwrt.yml"
PREFIX = "openwrt:"
# Files the ImageBuilder writes beside the images: not images.
# make's own lines, which say nothing of why it failed.
_MAKE_DIRECTORY = re.compile(r"^make(\[\d+\])?: (\*\*\*|Entering directory|Leaving directory)")
_NOT_IMAGES = (".manifest", ".json", ".buildinfo", "sha256sums", ".log", ".txt")


@dataclass(frozen=True)
class Target:
    target: str  # the ImageBuilder's target, e.g. ath79/generic
    profile: str  # the device, e.g. tplink_archer-c7-v2

    @property
    def board(self) -> str:
        return self.target.split("/")[0]


@dataclass(frozen=True)
class Bundle:
    path: Path
    target: Target
    packages: tuple[str, ...]
    private: tuple[str, ...]  # overlay paths of the private files
    images: tuple[Path, ...] = ()


def is_openwrt(platform: str) -> bool:
    return platform.startswith(PREFIX)


def target_of(platform: str) -> Target:
    """openwrt:<target>/<subtarget>/<profile>, or openwrt:<target>/<profile>."""
    *target, profile = platform.removeprefix(PREFIX).split("/")
    return Target("/".join(target), profile)


def bundle_name(node: str) -> str:
    return f"{node}-openwrt"


def make_args(target: Target, package_list, files: str, bin_dir: str | None = None) -> list[str]:
    args = ["image", f"PROFILE={target.profile}", f"PACKAGES={' '.join(package_list)}", f"FILES={files}"]
    return args + ([f"BIN_DIR={bin_dir}"] if bin_dir else [])


def make_command(target: Target, package_list, files: str, imagebuilder: str) -> str:
    return shlex.join(["make", "-C", imagebuilder, *make_args(target, package_list, files)])


def _build_script(node: str, target: Target, package_list) -> str:
    command = shlex.join(["make", "-C", "DIR", *make_args(target, package_list, "FILES")])
    command = command.replace("-C DIR", '-C "$1"').replace("FILES=FILES", 'FILES="$here/files"')
    return (
        "#!/bin/sh\n"
        f"# The OpenWrt image of meshstead node {node}: run with the directory of an\n"
        f"# unpacked OpenWrt ImageBuilder for target {target.target}. The image holds\n"
        "# the node's private keys (files/): keep it like a key, never publish it.\n"
        "set -e\n"
        '[ -f "${1:-}/Makefile" ] || { echo "usage: $0 IMAGEBUILDER_DIR" >&2; exit 2; }\n'
        'here=$(cd "$(dirname "$0")" && pwd)\n'
        f"{command}\n"
    )


def render(opened: sites.Opened, node: str) -> list[NodeFile]:
    return render_node(opened.directory, opened.vault.password, node, playbook=PLAYBOOK)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # private before any byte
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def write_bundle(directory: Path, node: str, target: Target, files: list[NodeFile]) -> Bundle:
    """The bundle's files into ``directory`` (made 0700, must not exist)."""
    directory.mkdir(mode=0o700)
    overlay = directory / "files"
    private = []
    for item in files:
        relative = PurePosixPath(item.path).relative_to("/")
        dest = overlay.joinpath(*relative.parts)
        for parent in reversed(dest.parents):
            if parent.is_relative_to(overlay) and not parent.exists():
                parent.mkdir()
                os.chmod(parent, 0o755)  # noqa: S103 - whatever the umask: they become the router's /etc
        _write(dest, item.content, item.mode)
        if not item.mode & 0o044:
            private.append(str(relative))
    package_list = packages.openwrt_packages(dict.fromkeys(f.role for f in files))
    _write(directory / "packages.txt", "".join(f"{p}\n" for p in package_list).encode(), 0o644)
    _write(directory / "build.sh", _build_script(node, target, package_list).encode(), 0o755)
    return Bundle(directory, target, package_list, tuple(sorted(private)))


def check_imagebuilder(directory: Path, target: Target) -> None:
    """An unpacked ImageBuilder for the node's target: a Makefile, and the
    target's board in its .config (or its target/linux/<board>)."""
    expected = f"expected an unpacked OpenWrt ImageBuilder for {target.target}"
    if not (directory / "Makefile").is_file():
        raise MeshsteadError("imagebuilder", f"{directory} has no Makefile; {expected}")
    config = directory / ".config"
    if config.is_file():
        settings = dict(line.split("=", 1) for line in config.read_text(errors="replace").splitlines()
                        if line.startswith("CONFIG_TARGET_") and "=" in line)
        built_for = "/".join(settings.get(k, "").strip('"') for k in ("CONFIG_TARGET_BOARD",
                                                                      "CONFIG_TARGET_SUBTARGET")).strip("/")
        if built_for and built_for != target.target and built_for.split("/")[0] != target.target:
            raise MeshsteadError("imagebuilder", f"{directory} builds for {built_for}; {expected}")
    elif not (directory / "target" / "linux" / target.board).is_dir():
        raise MeshsteadError("imagebuilder", f"{directory} has no target/linux/{target.board}; {expected}")


def run_imagebuilder(bundle: Bundle, imagebuilder: Path, progress, failed_log: Path) -> tuple[Path, ...]:
    """``make image`` in the ImageBuilder, its images into the bundle's bin/
    (0600); its output in the bundle's build.log, or in ``failed_log`` when it fails."""
    bin_dir = bundle.path / "bin"
    bin_dir.mkdir(mode=0o700)
    log_path = bundle.path / "build.log"
    argv = ["make", "-C", str(imagebuilder),
            *make_args(bundle.target, bundle.packages, str(bundle.path / "files"), str(bin_dir))]
    last = ""
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace")
        except OSError as exc:
            raise MeshsteadError("imagebuilder", f"cannot run make: {exc.strerror}") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if line.strip() and not _MAKE_DIRECTORY.match(line):
                last = line.strip()
                progress(last[:100])
        code = proc.wait()
    if code != 0:
        os.replace(log_path, failed_log)
        raise MeshsteadError("imagebuilder", f"make image failed (exit {code}): {last[:200]} (log: {failed_log})")
    images = []
    for path in sorted(bin_dir.rglob("*")):
        if path.is_file():
            os.chmod(path, 0o600)  # the images hold the overlay's keys
            if not path.name.endswith(_NOT_IMAGES):
                images.append(path)
    if not images:
        raise MeshsteadError("imagebuilder", f"make image made no image in BIN_DIR; last line: {last[:200]}")
    return tuple(images)


def build(opened: sites.Opened, node: str, out: Path, *, imagebuilder: Path | None, progress) -> Bundle:
    target = target_of(sites.get_node(opened.site, node).platform)
    if imagebuilder is not None:
        check_imagebuilder(imagebuilder, target)
    progress("rendering the roles' files")
    files = render(opened, node)  # reads the vault before anything is written
    name = bundle_name(node)
    personalise.remove_stale(out, name)
    partial = out / f".{name}.partial-{os.getpid()}"
    final = out / name
    old = out / f".{name}.old-{os.getpid()}"
    try:
        progress("writing the bundle")
        bundle = write_bundle(partial, node, target, files)
        images: tuple[Path, ...] = ()
        if imagebuilder is not None:
            images = run_imagebuilder(bundle, imagebuilder.resolve(), progress, out / f"{name}.failed.log")
        if final.exists():
            os.rename(final, old)  # a rebuild replaces the bundle whole
        os.rename(partial, final)
    except OSError as exc:
        raise MeshsteadError("out", f"writing the bundle into {out} failed: {exc.strerror}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return Bundle(final, target, bundle.packages, bundle.private,
                  tuple(final / p.relative_to(partial) for p in images))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
