"""Every command in a broken environment: a missing program, a path that cannot
be written, a damaged site, a failing subprocess. Each ends in one line naming
what is wrong, a non-zero exit, no traceback, and the site left as it was."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_site, run_cli, snapshot


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A site with two nodes, and the config home holding its vault password."""
    root = tmp_path_factory.mktemp("broken")
    config = root / "config"
    key = root / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {"XDG_CONFIG_HOME": str(config)}
    site = make_site(root / "site", f"{key}.pub", nodes=["n1", "n2"], env=env)
    return root, site, config


def _copy(built, tmp_path):
    _root, site, config = built
    shutil.copytree(site, tmp_path / "site")
    shutil.copytree(config, tmp_path / "config")
    return tmp_path / "site", tmp_path / "config"


def _a_file(tmp_path):
    path = tmp_path / "not-a-directory"
    path.write_text("x\n")
    return path


# (case, how the environment is broken, command line)
CASES = [
    ("init: config home is a file", "config_is_file", ["init", "{new}", "--defaults", "--set", "admin_ssh_key={key}"]),
    ("init: answers file missing", None, ["init", "{new}", "--answers", "{tmp}/missing.yml"]),
    ("init: site path is a file", None, ["init", "{file}/site", "--defaults", "--set", "admin_ssh_key={key}"]),
    ("node add: vault password gone", "no_password", ["node", "add", "n3", "--site", "{site}"]),
    ("node add: vault password unreadable", "password_is_dir", ["node", "add", "n3", "--site", "{site}"]),
    ("node list: site damaged", "damage_site", ["node", "list", "--site", "{site}"]),
    ("identity show: hosts.yml missing", "no_hosts", ["identity", "show", "n1", "--site", "{site}"]),
    ("identity export: target under a file", None, ["identity", "export", "n1", "--dir", "{file}/out",
                                                    "--site", "{site}"]),
    ("identity export: vault damaged", "damage_vault", ["identity", "export", "n1", "--dir", "{tmp}/out",
                                                       "--site", "{site}"]),
    ("invite create: vault password gone", "no_password", ["invite", "create", "x", "--site", "{site}",
                                                          "--out", "{tmp}/out"]),
    ("invite check: zbarimg missing", "no_programs_png", ["invite", "check", "--file", "{tmp}/q.png",
                                                          "--site", "{site}"]),
    ("invite list: invites damaged", "damage_invites", ["invite", "list", "--site", "{site}"]),
    ("invite revoke: invites damaged", "damage_invites", ["invite", "revoke", "abc", "--site", "{site}"]),
    ("lab up: programs missing", "no_programs", ["lab", "up", "--site", "{site}"]),
    ("lab status: not a site", None, ["lab", "status", "--site", "{tmp}"]),
    ("lab down: not a site", None, ["lab", "down", "--site", "{tmp}"]),
    ("lab exec: no lab", None, ["lab", "exec", "n1", "--site", "{site}", "--", "true"]),
    ("provision: cache is a file", "cache_is_file", ["provision", "--site", "{site}"]),
    ("provision: unknown host", None, ["provision", "--site", "{site}", "--limit", "nowhere"]),
    ("demo: no ssh-keygen", "no_programs_no_key", ["demo", "--site", "{new}"]),
    ("demo: key directory under a file", "config_is_file_no_key", ["demo", "--site", "{new}"]),
]


@pytest.mark.parametrize("case,breakage,argv", CASES, ids=[c[0] for c in CASES])
def test_every_command_fails_in_one_line(built, tmp_path, case, breakage, argv):
    site, config = _copy(built, tmp_path)
    env = {"XDG_CONFIG_HOME": str(config), "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    a_file = _a_file(tmp_path)
    password = next((config / "meshstead" / "vault").glob("*.pass"))
    if breakage in ("config_is_file", "config_is_file_no_key"):
        env["XDG_CONFIG_HOME"] = str(a_file)
    elif breakage == "no_password":
        password.unlink()
    elif breakage == "password_is_dir":
        password.unlink()
        password.mkdir()
    elif breakage == "damage_site":
        (site / "group_vars/all/site.yml").write_text("site_name: [unclosed\n")
    elif breakage == "no_hosts":
        (site / "hosts.yml").unlink()
    elif breakage == "damage_vault":
        (site / "host_vars/n1/vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\nnot hex at all\n")
    elif breakage == "damage_invites":
        (site / "group_vars/all/invites.yml").write_text("site_invites:\n- {id: abc}\n")
    elif breakage in ("no_programs", "no_programs_no_key", "no_programs_png"):
        env["PATH"] = str(tmp_path / "empty-bin")
        (tmp_path / "q.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    elif breakage == "cache_is_file":
        env["XDG_CACHE_HOME"] = str(a_file)
    before = snapshot(site)
    args = [a.format(site=site, new=tmp_path / "new", tmp=tmp_path, file=a_file, key=f"{built[0]}/admin.pub")
            for a in argv]
    # run_cli starts Python by its full path: a PATH without programs does not hide it.
    result = run_cli(*args, env=env)
    assert result.returncode != 0, (case, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (case, result.stderr)
    assert lines[0].startswith("meshstead: error: "), (case, lines[0])
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in lines[0], (case, lines[0])
    assert snapshot(site) == before, case
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir()), case


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB file system: too small for a node's export."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)], check=True)
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_is_one_line_and_leaves_no_partial_files(built, tmp_path, tiny_disk):
    site, config = _copy(built, tmp_path)
    (tiny_disk / "filler").write_bytes(b"\0" * 60 * 1024)
    result = run_cli("identity", "export", "n1", "--dir", tiny_disk / "out", "--site", site,
                     env={"XDG_CONFIG_HOME": str(config)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    # All or nothing: no file of the export, not even a temporary one, stays behind.
    assert sorted(p.name for p in tiny_disk.rglob("*") if p.is_file()) == ["filler"]


def _as_nobody(*args, env):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("switching to an unprivileged user needs root and setpriv")
    import sys
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                           "-m", "wizard.cli", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd="/")


@pytest.fixture
def open_dir(request):
    """A directory every user may traverse (pytest's own tmp directories are root's 0700)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="meshstead-perm-", dir="/tmp"))
    path.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def test_no_permission_is_one_line(built, open_dir):
    _root, site, config = built
    shutil.copytree(site, open_dir / "site")
    shutil.copy(built[0] / "admin.pub", open_dir / "admin.pub")
    (open_dir / "admin.pub").chmod(0o644)
    locked = open_dir / "locked"
    locked.mkdir(mode=0o755)  # root's: nobody may not write here
    home = open_dir / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "PYTHONPATH": str(Path.cwd())}
    cases = (
        (["init", locked / "site", "--defaults", "--set", f"admin_ssh_key={open_dir}/admin.pub"], env,
         "permission denied"),
        (["lab", "up", "--site", open_dir / "site"], env, "root"),
        # A home directory Ansible cannot make its temp directory in.
        (["node", "list", "--site", open_dir / "site"], {**env, "HOME": str(locked)}, "ansible:"),
    )
    for argv, case_env, expect in cases:
        result = _as_nobody(*argv, env=case_env)
        if "No module named" in result.stderr:
            pytest.skip("the package is not readable by an unprivileged user here")
        assert result.returncode != 0, argv
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("meshstead: error: "), (argv, result.stderr)
        assert expect in lines[0].lower(), lines[0]
        assert "Traceback" not in result.stderr
    assert not (locked / "site").exists()
