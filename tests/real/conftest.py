"""Shared fixtures for tests against the real programs: one site made with the
CLI (hub1 as hub, n2, n3), every node's files exported as the roles render them
(`identity export`), shared by all tests of a session so the RSA generation
and exports happen once."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from realkit import NODES, REPO, need


@dataclass
class RealSite:
    root: Path
    directory: Path
    env: dict
    admin_key: str
    password_file: Path
    settings: dict
    facts: dict = field(default_factory=dict)    # node -> `identity show --json`
    exports: dict = field(default_factory=dict)  # node -> `identity export` dir (the node's /)
    nncp: dict = field(default_factory=dict)     # node -> the nncp role's files, spool and incoming in the test tree

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "wizard.cli", *args], cwd=REPO, env=env or self.env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"meshstead {' '.join(args)} -> {result.returncode}\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result


def _base_env(xdg: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MESHSTEAD_SITE", "MESHSTEAD_VAULT_PASSWORD_FILE", "ANSIBLE_CONFIG")}
    env.update(XDG_CONFIG_HOME=str(xdg), STNOUPGRADE="1", NO_COLOR="1", COLUMNS="200",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.fixture(scope="session")
def real_site(tmp_path_factory) -> RealSite:
    need("ssh-keygen")
    root = tmp_path_factory.mktemp("real")
    xdg = root / "xdg"
    xdg.mkdir()
    env = _base_env(xdg)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test", "-f", str(root / "admin")],
                   check=True, timeout=30)
    admin_key = (root / "admin.pub").read_text().strip()
    directory = root / "site"
    site = RealSite(root, directory, env, admin_key, Path(), {})
    site.cli("init", str(directory), "--defaults", "--set", f"admin_ssh_key={admin_key}")
    site.cli("node", "add", "hub1", "--role", "hub", "--site", str(directory))
    site.cli("node", "add", "n2", "--site", str(directory))
    site.cli("node", "add", "n3", "--site", str(directory))
    site.settings = yaml.safe_load((directory / "group_vars/all/site.yml").read_text())
    site.password_file = xdg / "meshstead" / "vault" / f"{site.settings['meshstead_site_id']}.pass"
    assert site.password_file.is_file(), "init did not write the vault password file under $XDG_CONFIG_HOME"
    for name in NODES:
        site.facts[name] = json.loads(site.cli("identity", "show", name, "--json", "--site", str(directory)).stdout)
        target = root / "export" / name
        site.cli("identity", "export", name, "--dir", str(target), "--site", str(directory))
        site.exports[name] = target
        site.nncp[name] = _render_nncp(site, name, root / "nncp" / name)
    return site


def _render_nncp(site: RealSite, name: str, base: Path) -> Path:
    """The nncp role's files for one node, with its spool, log and incoming
    directories (role variables) moved under ``base``: NNCP runs here as the
    test's user, not in the node's /var."""
    from wizard.render.nodefiles import render_node

    for rendered in render_node(site.directory, site.password_file.read_bytes().strip(), name, roles=("nncp",),
                                extra_vars={"nncp_spool_dir": str(base / "spool"),
                                            "nncp_log_file": str(base / "spool" / "log"),
                                            "nncp_incoming_dir": str(base / "incoming")}):
        path = base / rendered.path.relative_to("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered.content)
    (base / "spool").mkdir(exist_ok=True)  # the role creates it with a file task
    return base
