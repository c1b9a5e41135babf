"""The playbooks and roles as a reviewer sees them: lint-clean and parseable."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_cli

BIN = Path(sys.executable).parent


def test_ansible_lint_production_profile():
    proc = subprocess.run([str(BIN / "ansible-lint"), "--profile", "production", "playbooks", "roles"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_site_playbook_syntax(tmp_path, admin_key):
    site = tmp_path / "site"
    assert run_cli("init", site, "--defaults", "--set", f"admin_ssh_key={admin_key}").returncode == 0
    assert run_cli("node", "add", "a", "--role", "hub", "--site", site).returncode == 0
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(site / "hosts.yml"),
                           str(ROOT / "playbooks" / "site.yml")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff():
    proc = subprocess.run([str(BIN / "ruff"), "check", "wizard", "tests", "benchmarks", "plugins", "roles",
                           "image-builder/files/usr/lib/meshstead/firstboot"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
