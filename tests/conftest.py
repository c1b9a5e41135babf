"""Shared fixtures: every test gets its own config home, so vault password
files never land in the real user's ~/.config."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """`slow` tests run only when asked for by marker (`-m slow`, `-m "vm and slow"`):
    not in `make test`, nor with `-m vm`."""
    if "slow" in (config.option.markexpr or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(autouse=True)
def config_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("MESHSTEAD_SITE", raising=False)
    monkeypatch.delenv("MESHSTEAD_VAULT_PASSWORD_FILE", raising=False)
    return home


@pytest.fixture
def admin_key(tmp_path):
    key = tmp_path / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test", "-f", str(key)], check=True)
    return key.with_suffix(".pub")


# The command run_cli runs, and where: the checkout's, unless a test package
# runs the installed wheel instead (tests/integration, through use_cli).
_CLI = {"argv": [sys.executable, "-m", "wizard.cli"], "cwd": ROOT}


def cli_command() -> tuple[list[str], Path]:
    """The argv prefix of the `meshstead` command the tests run, and its cwd."""
    return list(_CLI["argv"]), _CLI["cwd"]


def use_cli(argv: list[str], cwd: Path) -> tuple[list[str], Path]:
    """Make run_cli run `argv` from `cwd`; returns what it ran before."""
    before = cli_command()
    _CLI.update(argv=list(argv), cwd=cwd)
    return before


def run_cli(*args, input=None, env=None, timeout=120):
    """Run the real command in a subprocess, as a user would.  Without `input`
    stdin is empty, never the caller's (Ansible refuses an inherited
    non-blocking stdin, as a background test run has)."""
    stdin = subprocess.DEVNULL if input is None else None
    argv, cwd = cli_command()
    return subprocess.run([*argv, *map(str, args)], cwd=cwd, input=input, stdin=stdin, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def cli_home(base: Path) -> dict[str, str]:
    """A home of its own under `base` for a module's lab or image site: the env
    for run_cli, also put in os.environ because the in-process lab API and the
    vault read the same config."""
    env = {"XDG_CONFIG_HOME": str(base / "config"), "XDG_CACHE_HOME": str(base / "cache"),
           "HOME": str(base)}
    os.environ.update(env)
    return env


def init_site(base: Path, answers: dict, env: dict[str, str]) -> Path:
    """`meshstead init --answers` of `answers` in base/site, with a fresh admin key."""
    answers_file = base / "answers.yml"
    answers_file.write_text(yaml.safe_dump(answers))
    key = base / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    directory = base / "site"
    made = run_cli("init", directory, "--answers", answers_file, "--set", f"admin_ssh_key={key}.pub", env=env)
    assert made.returncode == 0, made.stderr
    return directory


def make_site(directory, admin_key, *settings, nodes=(), env=None) -> Path:
    """A site made as a user makes one: `init --defaults` with the admin key and
    each setting ("country=DE") as --set, then `node add` for each node, given as
    its name and options ("hub --role hub")."""
    made = run_cli("init", directory, "--defaults", "--set", f"admin_ssh_key={admin_key}",
                   *[arg for setting in settings for arg in ("--set", setting)], env=env)
    assert made.returncode == 0, made.stderr
    for node in nodes:
        added = run_cli("node", "add", *node.split(), "--site", directory, env=env)
        assert added.returncode == 0, added.stderr
    return directory


def assert_one_line_error(result, field):
    """A usage error (exit 2) in one line that names `field`, no traceback."""
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"meshstead: error: {field}"), lines[0]
    assert "Traceback" not in result.stderr


def snapshot(directory: Path) -> dict:
    return {p.relative_to(directory): (p.read_bytes(), p.stat().st_mode) for p in sorted(directory.rglob("*"))
            if p.is_file()}
