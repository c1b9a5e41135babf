"""A platform's base recipe, read from image-builder/, and the key its base is cached under."""

import dataclasses
import hashlib
import json
from pathlib import Path

import yaml

from .. import packages
from ..errors import MeshsteadError
from ..resources import ansible_home, image_builder_home

FORMAT = 4  # bump when the build steps (base.py, initramfs.py, raspi.py) change
# Node platforms (node_platform) -> the base their image is made from: one
# arm64 image boots every Pi whose device tree Debian 12's kernel ships.
PLATFORM_BASES = {"amd64": "amd64", "rpi3": "rpi", "rpi4": "rpi", "pizero2w": "rpi"}
# Node platforms whose image is a Raspberry Pi OS image the user downloaded,
# personalised by `image build NODE --base IMAGE` (images/raspios.py).
RASPIOS_PLATFORMS = {"rpi5"}
NO_BASE_YET = {
    "rpi5": "Debian 12 cannot boot a Raspberry Pi 5 (its kernel has no BCM2712 device tree); its image is a "
            "Raspberry Pi OS image you downloaded, personalised by `image build NODE --base raspios.img.xz`",
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    platform: str
    suite: str
    arch: str
    ansible_core: str
    mitogen: str
    packages: tuple[str, ...]
    boot_loader: str
    boot_mount: str
    boot_mib: int
    root_headroom_mib: int
    cmdline: str
    # "gpt", or "dos" where the boot firmware reads only an MBR (a Pi 3's ROM)
    partition_table: str = "gpt"
    # Modules of the one initramfs built at the end (MODULES=list); empty: the
    # packages build theirs as usual (MODULES=most, quick when native).
    initramfs_modules: tuple[str, ...] = ()
    # Settings of the boot firmware package (raspi-firmware's /etc/default file).
    firmware_settings: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> Path:
        """Files copied into every base's root (first-boot program and unit)."""
        return image_builder_home() / "files"

    @property
    def join_package(self) -> Path:
        """The node-side join package, from the join role: a generic image joins with it."""
        return ansible_home() / "roles" / "join" / "files" / "meshstead_join"


def ansible_pins() -> tuple[str, str]:
    """(ansible-core, Mitogen) versions a node runs the roles with: the roster role's."""
    pins = yaml.safe_load((ansible_home() / "roles" / "roster" / "vars" / "main.yml").read_text())
    return str(pins["__roster_ansible_core"]), str(pins["__roster_mitogen"])


def image_packages() -> tuple[str, ...]:
    """What every image holds besides its kernel and boot loader: the roles'
    packages and those of the first boot (recipe.yml)."""
    common = yaml.safe_load((image_builder_home() / "recipe.yml").read_text())
    return tuple(sorted(set(common["packages"]) | set(packages.node_packages())))


def platforms() -> list[str]:
    return sorted(p.stem for p in (image_builder_home() / "platforms").glob("*.yml"))


def load(platform: str) -> Recipe:
    path = image_builder_home() / "platforms" / f"{platform}.yml"
    if not path.is_file():
        raise MeshsteadError("platform", f"no base recipe for {platform!r}; expected one of: "
                             f"{', '.join(platforms())}")
    common = yaml.safe_load((image_builder_home() / "recipe.yml").read_text())
    own = yaml.safe_load(path.read_text())
    # The Ansible a node runs the roles with: the roster role installs the same on provisioned nodes.
    ansible_core, mitogen = ansible_pins()
    wanted = set(own["packages"]) | set(image_packages())
    return Recipe(platform=platform, suite=common["suite"], arch=own["arch"],
                  ansible_core=ansible_core, mitogen=mitogen,
                  packages=tuple(sorted(wanted)),
                  boot_loader=own["boot_loader"], boot_mount=own["boot_mount"], boot_mib=int(own["boot_mib"]),
                  root_headroom_mib=int(own["root_headroom_mib"]), cmdline=own.get("cmdline", ""),
                  partition_table=own.get("partition_table", "gpt"),
                  initramfs_modules=tuple(own.get("initramfs_modules") or ()),
                  firmware_settings=tuple((str(k), str(v)) for k, v in (own.get("firmware_settings") or {}).items()))


def base_for_node(name: str, node_platform: str) -> str:
    """The base platform of a node, or a one-line reason it has none."""
    if node_platform in PLATFORM_BASES:
        return PLATFORM_BASES[node_platform]
    why = NO_BASE_YET.get(node_platform, "it is not a Debian platform")
    raise MeshsteadError("node", f"node {name} has platform {node_platform}, which has no image base: {why}; "
                         f"expected a node of platform {', '.join(sorted(PLATFORM_BASES))}")


def base_platform(platform: str) -> str:
    """The base of a base platform (rpi) or of a node platform (rpi4), or a one-line reason there is none."""
    if platform in platforms():
        return platform
    if platform in PLATFORM_BASES:
        return PLATFORM_BASES[platform]
    why = NO_BASE_YET.get(platform, "it is not a Debian platform")
    raise MeshsteadError("platform", f"{platform} has no image base: {why}; expected one of "
                         f"{', '.join(platforms())}")


def suite_date(suite: str) -> str:
    """The Date of the suite's Release file apt last fetched: which Debian the base is built from."""
    for path in sorted(Path("/var/lib/apt/lists").glob(f"*_dists_{suite}_InRelease")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("Date:"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def cache_key(recipe: Recipe) -> str:
    """Everything that shapes a base: recipe, package list, files, Debian's release date."""
    files = sorted((f"{top.name}/{p.relative_to(top)}", hashlib.sha256(p.read_bytes()).hexdigest())
                   for top in (recipe.files, recipe.join_package)
                   for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    # Settings left at their default are left out: adding one keeps the other platforms' cached bases.
    shaping = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)
               if f.default is dataclasses.MISSING or getattr(recipe, f.name) != f.default}
    blob = json.dumps([FORMAT, shaping, files, suite_date(recipe.suite)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
