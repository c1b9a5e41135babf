"""Where the content the tool runs lives: ansible.cfg, playbooks, roles, plugins, and the
image-builder recipes.

In a checkout (or an editable install) that is the project root; a built wheel
carries a copy inside the package."""

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def ansible_home() -> Path:
    """The directory holding ansible.cfg, playbooks/, roles/ and plugins/."""
    override = os.environ.get("MESHSTEAD_HOME")
    if override:
        return Path(override)
    packaged = _PACKAGE / "ansible"
    if (packaged / "ansible.cfg").is_file():
        return packaged
    return _PACKAGE.parent


def image_builder_home() -> Path:
    """The image-builder recipes: package lists, platforms, first-boot files."""
    return ansible_home() / "image-builder"
