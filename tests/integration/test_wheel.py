"""The built wheel is the whole tool: it carries the playbooks, roles, plugins
and ansible.cfg, and once installed into a fresh virtualenv (not editable) it
provisions a lab from a directory outside the checkout."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration]

# What a build from a checkout must not pick up: setuptools keeps build/
# between builds, so the wheel is built from a clean copy.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                    ".ruff_cache", ".pytest_cache", ".hypothesis", "inventory")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                           str(base / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = (base / "dist").glob("meshstead-*.whl")
    return built


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


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh virtualenv with only the wheel (and its dependencies) in it."""
    venv = tmp_path_factory.mktemp("venv") / "meshstead"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv


@pytest.mark.lab
def test_installed_wheel_provisions_a_lab_from_anywhere(installed, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    work = tmp_path / "elsewhere"  # no ansible.cfg, no playbooks: only what the wheel brought
    work.mkdir()
    bin_dir = installed / "bin"
    env = {"PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "LANG": "C.UTF-8"}

    def meshstead(*args, timeout=1800):
        return subprocess.run([str(bin_dir / "meshstead"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout)

    where = subprocess.run([str(bin_dir / "python"), "-c", "import wizard.resources as r; print(r.ansible_home())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed) and Path(where, "ansible.cfg").is_file(), where

    up = meshstead("lab", "up", "--nodes", "2", "--site", "site")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        first = meshstead("provision", "--site", "site")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        rows = summary(tmp_path)
        assert sorted(rows) == ["node1", "node2"] and all(r.changed for r in rows.values()), rows
        second = meshstead("provision", "--site", "site")
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        rows = summary(tmp_path)
        assert sorted(rows) == ["node1", "node2"], rows
        assert all(r.changed == 0 and r.failed == 0 and r.unreachable == 0 for r in rows.values()), rows
    finally:
        down = meshstead("lab", "down", "--site", "site", timeout=600)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]


def summary(home: Path) -> dict:
    """Per-host counters of the last run, from the events it kept beside its log."""
    from wizard import provision
    (log,) = (home / "cache" / "meshstead").glob("provision-*.log")
    return provision.summary(provision.events_path(log))
