"""The packages a node needs, from one manifest: the roles themselves.

Each role names what it installs in ``roles/<role>/vars/Debian.yml`` (and
what an OpenWrt image adds in ``vars/OpenWrt.yml``)
(``__<role>_packages`` and the like). The lab's apt repository, the radio lab's
node base and the flashable images all take their list from here, so none of
them can miss a package a role installs, and a node in a place without
Internet never needs apt.
"""

import re
from functools import cache

import yaml

from .resources import ansible_home

_PACKAGE_VAR = re.compile(r"^__\w+_packages$")
# What Ansible itself needs on a node to run the roles (the playbook lists the
# installed packages with the apt backend before any role runs).
RUNNER_PACKAGES = ("python3", "python3-apt")


@cache
def role_packages() -> tuple[str, ...]:
    """Every package any role installs on a Debian node, sorted."""
    names: set[str] = set()
    for vars_file in sorted((ansible_home() / "roles").glob("*/vars/Debian.yml")):
        data = yaml.safe_load(vars_file.read_text()) or {}
        for key, value in data.items():
            if _PACKAGE_VAR.match(key) and isinstance(value, list):
                names.update(str(v) for v in value)
    if not names:
        raise RuntimeError(f"no role package lists found under {ansible_home() / 'roles'}")
    return tuple(sorted(names))


def node_packages() -> tuple[str, ...]:
    """What a node holds before the roles run: theirs and what runs them."""
    return tuple(sorted(set(role_packages()) | set(RUNNER_PACKAGES)))


def openwrt_packages(roles) -> tuple[str, ...]:
    """What an OpenWrt image of a node running ``roles`` adds to the
    ImageBuilder's default packages, in role order; "-name" removes one."""
    names: list[str] = []
    for role in roles:
        vars_file = ansible_home() / "roles" / role / "vars" / "OpenWrt.yml"
        data = (yaml.safe_load(vars_file.read_text()) or {}) if vars_file.is_file() else {}
        for key, value in data.items():
            if _PACKAGE_VAR.match(key) and isinstance(value, list):
                names += [str(v) for v in value if str(v) not in names]
    return tuple(names)
