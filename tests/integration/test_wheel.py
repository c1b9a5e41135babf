"""The built wheel is the whole tool: it carries the playbooks, roles, plugins
and ansible.cfg. Installed into a fresh virtualenv (not editable), it is
the `meshstead` every lab test of this package runs, from a directory outside
the checkout (tests/integration/conftest.py)."""

import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_command

pytestmark = [pytest.mark.integration]


def content_files(top: Path) -> set[str]:
    """The Ansible content and image recipes a wheel must carry, as wizard/ansible/ paths."""
    files = {"ansible.cfg"}
    for name in ("playbooks", "roles", "plugins", "image-builder"):
        files |= {str(p.relative_to(top)) for p in (top / name).rglob("*")
                  if p.is_file() and "molecule" not in p.parts and "__pycache__" not in p.parts}
    return files


def test_wheel_carries_the_ansible_content(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    carried = {n.removeprefix("wizard/ansible/") for n in names if n.startswith("wizard/ansible/")}
    assert carried == content_files(ROOT)
    assert not [n for n in names if "molecule" in n or "__pycache__" in n or n.startswith(("tests/", "inventory/"))]
    assert "wizard/cli.py" in names


def test_the_lab_tests_run_the_installed_wheel_from_outside_the_checkout(installed, elsewhere):
    argv, cwd = cli_command()
    assert argv == [str(installed / "bin" / "meshstead")] and cwd == elsewhere
    assert not cwd.is_relative_to(ROOT) and not (cwd / "ansible.cfg").exists()
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import wizard.resources as r; print(r.ansible_home())"],
                           cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed) and Path(where, "ansible.cfg").is_file(), where
