"""A platform's base recipe, read from image-builder/, and the key its base is cached under."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import packages
from ..errors import MeshsteadError
from ..resources import ansible_home, image_builder_home

FORMAT = 1  # bump when the build steps in base.py change
# Node platforms (node_platform) -> the base their image is made from.
PLATFORM_BASES = {"amd64": "amd64"}
NO_BASE_YET = {
    "rpi3": "the Raspberry Pi base (rpi) is not built by this version yet",
    "rpi4": "the Raspberry Pi base (rpi) is not built by this version yet",
    "pizero2w": "the Raspberry Pi base (rpi) is not built by this version yet",
    "rpi5": "Debian 12 cannot boot a Raspberry Pi 5",
}


@dataclass(frozen=True)
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

    @property
    def files(self) -> Path:
        """Files copied into every base's root (first-boot program and unit)."""
        return image_builder_home() / "files"

    @property
    def join_package(self) -> Path:
        """The node-side join package, from the join role: a generic image joins with it."""
        return ansible_home() / "roles" / "join" / "files" / "meshstead_join"


def platforms() -> list[str]:
    return sorted(p.stem for p in (image_builder_home() / "platforms").glob("*.yml"))


def load(platform: str) -> Recipe:
    path = image_builder_home() / "platforms" / f"{platform}.yml"
    if not path.is_file():
        raise MeshsteadError("platform", f"no base recipe for {platform!r}; expected one of: "
                             f"{', '.join(platforms())}")
    common = yaml.safe_load((image_builder_home() / "recipe.yml").read_text())
    own = yaml.safe_load(path.read_text())
    wanted = set(common["packages"]) | set(own["packages"]) | set(packages.node_packages())
    return Recipe(platform=platform, suite=common["suite"], arch=own["arch"],
                  ansible_core=str(common["ansible_core"]), mitogen=str(common["mitogen"]),
                  packages=tuple(sorted(wanted)),
                  boot_loader=own["boot_loader"], boot_mount=own["boot_mount"], boot_mib=int(own["boot_mib"]),
                  root_headroom_mib=int(own["root_headroom_mib"]), cmdline=own["cmdline"])


def base_for_node(name: str, node_platform: str) -> str:
    """The base platform of a node, or a one-line reason it has none."""
    if node_platform in PLATFORM_BASES:
        return PLATFORM_BASES[node_platform]
    why = NO_BASE_YET.get(node_platform, "it is not a Debian platform")
    raise MeshsteadError("node", f"node {name} has platform {node_platform}, which has no image base: {why}; "
                         f"expected a node of platform {', '.join(sorted(PLATFORM_BASES))}")


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
    blob = json.dumps([FORMAT, recipe.__dict__, files, suite_date(recipe.suite)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
