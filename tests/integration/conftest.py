"""The provisioned 3-node lab the lab tests of this package share: made,
booted and provisioned once (several minutes), taken down at the end, by the
`meshstead` of the built wheel installed into a fresh virtualenv (not
editable), run from a directory outside the checkout: what a user installs
is what every lab test of this package runs."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_home, init_site, run_cli, use_cli
from wizard import labsite
from wizard.lab import Lab
from wizard.load import load_site

# What a build from a checkout must not pick up: setuptools keeps build/
# between builds, so the wheel is built from a clean copy.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                    ".ruff_cache", ".pytest_cache", ".hypothesis", "inventory")


@pytest.fixture(scope="package")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                           str(base / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = (base / "dist").glob("meshstead-*.whl")
    return built


@pytest.fixture(scope="package")
def installed(wheel, tmp_path_factory):
    """A fresh virtualenv with only the wheel (and its dependencies) in it."""
    venv = tmp_path_factory.mktemp("venv") / "meshstead"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv


@pytest.fixture(scope="package")
def elsewhere(installed, tmp_path_factory):
    """run_cli runs the installed `meshstead`, from a directory with no
    ansible.cfg and no playbooks: only what the wheel brought."""
    work = tmp_path_factory.mktemp("elsewhere")
    before = use_cli([str(installed / "bin" / "meshstead")], work)
    yield work
    use_cli(*before)


@pytest.fixture(scope="package")
def lab_site(tmp_path_factory, elsewhere):
    """node1, node2 (hub, dns) and node3, provisioned by `meshstead provision`."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    base = tmp_path_factory.mktemp("integration")
    env = cli_home(base)
    directory = init_site(base, {"name": "itest", "nodes": [
        {"name": "node1"}, {"name": "node2", "roles": ["hub", "dns"]}, {"name": "node3"}]}, env)
    # The admin's key where a person keeps it (HOME is base): the lab reaches a
    # node that joined by invite as a real node, with the site's admin key.
    (base / ".ssh").mkdir(mode=0o700)
    for suffix in ("", ".pub"):
        shutil.copy2(base / f"admin{suffix}", base / ".ssh" / f"id_ed25519{suffix}")
    site = load_site(directory)
    lab = Lab(labsite.lab_name(site))
    try:
        started = time.monotonic()
        up = run_cli("lab", "up", "--site", directory, env=env, timeout=1800)
        assert up.returncode == 0, up.stderr
        print(f"lab up: {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        first = run_cli("provision", "--site", directory, env=env, timeout=1800)
        print(f"first provision: {time.monotonic() - started:.1f} s")
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        yield {"dir": directory, "env": env, "lab": lab, "site": site, "first": first}
    finally:
        run_cli("lab", "down", "--site", directory, env=env, timeout=600)


# test_join_lab.py leaves its joined node in every node's roster applier (the
# nodes keep it until `node import`), so the modules that compare a node with
# what the controller's inventory alone renders (test_site_lab.py's `identity
# export`) run before it, and the blank node's join after it. The phone's
# visit comes before the joins, which change the inventory without a
# provision: it meets the site as provisioned. The rest keep their order.
# The import of the blank node (test_joined_node_provision_lab.py) comes
# last: from then on every provision runs the roles on it too.
FIRST = {"test_site_lab.py": 0, "test_phone_lab.py": 1, "test_join_lab.py": 2, "test_blank_join_lab.py": 3}
LAST = {"test_site_remove_lab.py": 1, "test_joined_node_provision_lab.py": 2}


def _order(item) -> int:
    return FIRST.get(item.path.name, len(FIRST)) + LAST.get(item.path.name, 0) * 100


def pytest_collection_modifyitems(config, items):
    slots = [i for i, item in enumerate(items) if item.path.parent.name == "integration"]
    ordered = sorted((items[i] for i in slots), key=_order)
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item
