"""The image's first-boot program (image-builder/files/usr/lib/meshstead/firstboot)
on seeds laid out as docs/seed.md describes, from sites made by the wizard,
applied with a real ansible-playbook on this machine (connection local)."""

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, make_site, snapshot
from wizard import sites

FIRSTBOOT = ROOT / "image-builder/files/usr/lib/meshstead/firstboot"
PLAYBOOK_PROGRAM = Path(sys.executable).parent / "ansible-playbook"

ANSIBLE_CFG = """\
[defaults]
callback_plugins = plugins/callback
callbacks_enabled = meshstead_events
# As the project's own: linear, through Mitogen where it is installed (the image has it).
strategy_plugins = plugins/strategy
strategy = meshstead_linear
retry_files_enabled = False
"""

# What the node's roles see: its name, and its private keys through node.yml's
# visible names (vault_* values from secrets.yml).
PLAYBOOK = """\
- name: Configure Debian nodes
  hosts: all
  gather_facts: false
  tasks:
    - name: Write what the roles see
      ansible.builtin.copy:
        dest: "{{ firstboot_test_out }}"
        content: >-
          {{ node_name }} {{ meshstead_site_id }} {{ ssh_host_ed25519_private_key.splitlines()[0] }}
          {{ roster_roles_archive }}
        mode: "0600"

    - name: Fail and be rescued
      block:
        - name: Fail inside a block
          ansible.builtin.fail:
            msg: rescued later
      rescue:
        - name: Rescue
          ansible.builtin.debug:
            msg: rescued
"""

FAILING_TASK = """
    - name: Refuse on purpose
      ansible.builtin.fail:
        msg: the test says no
"""


def ansible_tarball(playbook: str) -> bytes:
    tree = {"ansible.cfg": ANSIBLE_CFG, "playbooks/site.yml": playbook,
            "plugins/callback/meshstead_events.py": (ROOT / "plugins/callback/meshstead_events.py").read_text(),
            "plugins/strategy/meshstead_linear.py": (ROOT / "plugins/strategy/meshstead_linear.py").read_text()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in tree.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class SiteData:
    directory: Path
    site_id: str
    name: str
    site_secrets: dict
    node_secrets: dict  # node -> its private variables (without vault_)


def read_site(directory: Path) -> SiteData:
    opened = sites.open_site(directory)
    settings = opened.site.settings
    return SiteData(directory, settings.site_id, settings.name, opened.site_secrets,
                    {name: sites.node_secrets(opened, name) for name in opened.site.nodes})


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two sites, made once: "valley" (cabin, barn) and "ridge" (cabin)."""
    base = tmp_path_factory.mktemp("sites")
    key = base / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@test", "-f", str(key)], check=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(base / "config"))
        env = {"XDG_CONFIG_HOME": str(base / "config")}
        valley = make_site(base / "valley", key.with_suffix(".pub"), nodes=["cabin", "barn --role hub"], env=env)
        ridge = make_site(base / "ridge", key.with_suffix(".pub"), nodes=["cabin"], env=env)
        return {"valley": read_site(valley), "ridge": read_site(ridge),
                "passing": ansible_tarball(PLAYBOOK), "failing": ansible_tarball(PLAYBOOK + FAILING_TASK)}


# --- the seed, as docs/seed.md lays it out ------------------------------------

def vault_names(secrets: dict) -> str:
    return yaml.safe_dump({f"vault_{name}": value for name, value in secrets.items()})


def write_manifest(seed: Path, site: SiteData, node: str, **overrides) -> bytes:
    """seed.json over every other file of the seed, as it now is."""
    files = {path.relative_to(seed).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted(seed.rglob("*")) if path.is_file() and path.name not in ("seed.json", "applied.json")}
    manifest = {"format": 1, "site_id": site.site_id, "site_name": site.name, "node": node,
                "made": "2026-12-03T06:00:00Z", "files": files,
                "private": ["inventory/group_vars/all/secrets.yml", f"inventory/host_vars/{node}/secrets.yml"],
                **overrides}
    data = json.dumps(manifest, indent=1).encode()
    (seed / "seed.json").write_bytes(data)
    return data


def write_seed(boot: Path, site: SiteData, node: str, tarball: bytes, out: Path) -> Path:
    seed = boot / "meshstead"

    def put(name: str, data: str | bytes) -> None:
        path = seed / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    put("ansible.tar.gz", tarball)
    put("inventory/hosts.yml", (site.directory / "hosts.yml").read_bytes())
    put("inventory/group_vars/all/site.yml", (site.directory / "group_vars/all/site.yml").read_bytes())
    put("inventory/group_vars/all/secrets.yml",
        vault_names({k: v for k, v in site.site_secrets.items() if k != "site_signing_private_key"}))
    for node_yml in sorted(site.directory.glob("host_vars/*/node.yml")):
        put(f"inventory/host_vars/{node_yml.parent.name}/node.yml", node_yml.read_bytes())
    put(f"inventory/host_vars/{node}/secrets.yml", vault_names(site.node_secrets[node]))
    put(f"inventory/host_vars/{node}/firstboot.yml", yaml.safe_dump(
        {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
         "firstboot_test_out": str(out)}))
    write_manifest(seed, site, node)
    return seed


# --- one boot -----------------------------------------------------------------

@dataclass
class Node:
    boot: Path
    state: Path
    out: Path  # what the test playbook writes
    config: Path

    @property
    def seed(self) -> Path:
        return self.boot / "meshstead"

    def report(self) -> dict:
        return json.loads((self.state / "firstboot.json").read_text())

    def boot_once(self) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSTEAD_EVENTS")}
        return subprocess.run([sys.executable, str(FIRSTBOOT), "--config", str(self.config)], env=env,
                              capture_output=True, text=True, timeout=120)


def make_node(tmp_path: Path, playbook_program=PLAYBOOK_PROGRAM) -> Node:
    boot, state = tmp_path / "boot", tmp_path / "state"
    boot.mkdir()
    config = tmp_path / "image.json"
    config.write_text(json.dumps({"platform": "amd64", "boot_mount": str(boot), "state_dir": str(state),
                                  "ansible_playbook": str(playbook_program), "grow_root": False}))
    return Node(boot, state, tmp_path / "configured", config)


@pytest.fixture
def node(tmp_path):
    return make_node(tmp_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_refused(result, node: Node, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [message], result.stdout + result.stderr
    report = node.report()
    assert (report["status"], report["error"]) == ("setup", message)
    assert not node.out.exists()  # no roles ran


# --- tests --------------------------------------------------------------------

def test_a_good_seed_is_taken_applied_and_scrubbed_and_a_second_boot_changes_nothing(made, node):
    valley = made["valley"]
    write_seed(node.boot, valley, "cabin", made["passing"], node.out)
    manifest_bytes = (node.seed / "seed.json").read_bytes()
    public_before = {p: d for p, d in snapshot(node.seed).items() if not str(p).endswith("secrets.yml")}

    result = node.boot_once()
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout.splitlines()
    assert said[0].startswith("first boot: configuring node cabin with the site's roles (log: ")
    assert said[1].startswith("first boot: ok (node cabin, ")
    report = node.report()
    assert report["status"] == "ok"
    assert (report["node"], report["site_id"]) == ("cabin", valley.site_id)
    assert report["seed"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert (report["failed_tasks"], report["error"]) == ([], None)  # the rescued failure is not one
    assert report["started"] <= report["finished"] and report["duration_s"] >= 0
    assert list(report) == ["status", "node", "site_id", "seed", "started", "finished", "duration_s",
                            "failed_tasks", "error"]
    assert mode(node.state / "firstboot.json") == 0o644
    # The roles ran for this node, with its private keys.
    # ... and were handed the packed roles they run from, the seed's, to keep.
    archive = node.state / "seed" / "ansible.tar.gz"
    assert node.out.read_text() == f"cabin {valley.site_id} -----BEGIN OPENSSH PRIVATE KEY----- {archive}"
    assert archive.read_bytes() == made["passing"]

    # The node's copy: root only, the whole seed.
    copy = node.state / "seed"
    assert (copy / "seed.json").read_bytes() == manifest_bytes
    assert yaml.safe_load((copy / "inventory/host_vars/cabin/secrets.yml").read_text()) == \
        {f"vault_{k}": v for k, v in valley.node_secrets["cabin"].items()}
    assert mode(copy) == 0o700
    for path in copy.rglob("*"):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    # The card: private files gone, the rest as it was, the manifest renamed.
    after = snapshot(node.seed)
    assert not [p for p in after if str(p).endswith("secrets.yml")]
    assert not (node.seed / "seed.json").exists()
    assert (node.seed / "applied.json").read_bytes() == manifest_bytes
    assert {p: d for p, d in after.items() if p != Path("applied.json")} == \
        {p: d for p, d in public_before.items() if p != Path("seed.json")}

    # A second boot does nothing at all, not even to the report.
    state_before, boot_before = snapshot(node.state), snapshot(node.boot)
    again = node.boot_once()
    assert (again.returncode, again.stdout) == (0, "first boot: done (node cabin)\n")
    assert snapshot(node.state) == state_before
    assert snapshot(node.boot) == boot_before

    # A card of another site is refused: the node stays valley's.
    (node.seed / "applied.json").unlink()
    ridge = made["ridge"]
    write_seed(node.boot, ridge, "cabin", made["passing"], node.out)
    boot_before = snapshot(node.boot)
    node.out.unlink()
    refused = node.boot_once()
    assert_refused(refused, node, f"seed: this node belongs to site {valley.name} ({valley.site_id}), "
                                  f"the seed is for site {ridge.name} ({ridge.site_id})")
    assert node.report()["site_id"] == valley.site_id
    assert snapshot(node.boot) == boot_before
    assert (node.state / "seed/seed.json").read_bytes() == manifest_bytes


def test_a_failed_run_lists_its_task_and_the_next_boot_runs_again(made, node):
    write_seed(node.boot, made["valley"], "cabin", made["failing"], node.out)
    result = node.boot_once()
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "first boot: failed (node cabin): [Refuse on purpose] the test says no"
    report = node.report()
    assert report["status"] == "failed"
    assert report["failed_tasks"] == [{"task": "Refuse on purpose", "msg": "the test says no"}]
    assert "Refuse on purpose" in (node.state / "firstboot.log").read_text()
    assert (node.seed / "applied.json").exists()

    # The next boot runs again from the node's copy (here with roles that work).
    (node.state / "seed/ansible.tar.gz").write_bytes(made["passing"])
    node.out.unlink()
    again = node.boot_once()
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[0] == "first boot: running the roles again from the seed taken before (node cabin)"
    report = node.report()
    assert (report["status"], report["failed_tasks"]) == ("ok", [])
    assert node.out.read_text().startswith("cabin ")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def swap_yaml(path: Path, **values) -> None:
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **values}))


def drop_yaml(path: Path, *names) -> None:
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if k not in names}))


def take_barns(seed: Path, made: dict, name: str) -> None:
    """Cabin's secrets.yml with one private key of barn's, in a whole seed."""
    barns = made["valley"].node_secrets["barn"][name]
    swap_yaml(seed / "inventory/host_vars/cabin/secrets.yml", **{f"vault_{name}": barns})
    write_manifest(seed, made["valley"], "cabin")


# Each case damages a good seed of valley's cabin, then says what the refusal reads.
# Cases that end in `rewrite` make the manifest match the damaged files again:
# those seeds are whole, but wrong.
REFUSALS = {
    "truncated file": lambda seed, m: (
        truncate(seed / "inventory/hosts.yml"),
        "seed: inventory/hosts.yml is truncated or changed (sha256 mismatch)"),
    "missing private file": lambda seed, m: (
        (seed / "inventory/host_vars/cabin/secrets.yml").unlink(),
        "seed: inventory/host_vars/cabin/secrets.yml is missing (the seed is truncated)"),
    "private file not in files": lambda seed, m: (
        write_manifest(seed, m["valley"], "cabin", private=["inventory/extra.yml"]),
        "seed: private file inventory/extra.yml is not among the seed's files (the seed is truncated)"),
    "manifest not JSON": lambda seed, m: (
        truncate(seed / "seed.json"), None),
    "another format": lambda seed, m: (
        write_manifest(seed, m["valley"], "cabin", format=2),
        "seed: seed.json has format 2; this image reads format 1"),
    "node not in the inventory": lambda seed, m: (
        write_manifest(seed, m["valley"], "shed", private=["inventory/host_vars/cabin/secrets.yml"]),
        "seed: node shed is not in inventory/hosts.yml"),
    "site.yml of another site": lambda seed, m: (
        (seed / "inventory/group_vars/all/site.yml").write_bytes(
            (m["ridge"].directory / "group_vars/all/site.yml").read_bytes()),
        write_manifest(seed, m["valley"], "cabin"),
        f"seed: seed.json is for site {m['valley'].site_id} but the inventory is site {m['ridge'].site_id}"),
    "node.yml of another site": lambda seed, m: (
        (seed / "inventory/host_vars/cabin/node.yml").write_bytes(
            (m["ridge"].directory / "host_vars/cabin/node.yml").read_bytes()),
        write_manifest(seed, m["valley"], "cabin"),
        "seed: the ssh private key does not match ssh_host_ed25519_public_key of node cabin"),
    "node.yml of another node": lambda seed, m: (
        (seed / "inventory/host_vars/cabin/node.yml").write_bytes(
            (m["valley"].directory / "host_vars/barn/node.yml").read_bytes()),
        write_manifest(seed, m["valley"], "cabin"),
        "seed: inventory/host_vars/cabin/node.yml is node barn's, not cabin's"),
    "secrets.yml of another node": lambda seed, m: (
        (seed / "inventory/host_vars/cabin/secrets.yml").write_text(vault_names(m["valley"].node_secrets["barn"])),
        write_manifest(seed, m["valley"], "cabin"),
        "seed: the ssh private key does not match ssh_host_ed25519_public_key of node cabin"),
    "tinc key of another node": lambda seed, m: (
        take_barns(seed, m, "tinc_private_key"),
        "seed: the tinc private key does not match tinc_public_key of node cabin"),
    "yggdrasil key of another node": lambda seed, m: (
        take_barns(seed, m, "yggdrasil_private_key"),
        "seed: the yggdrasil private key does not match yggdrasil_public_key of node cabin"),
    "syncthing key of another node": lambda seed, m: (
        take_barns(seed, m, "syncthing_key"),
        "seed: the syncthing private key does not match syncthing_cert of node cabin"),
    "a private key without its public one": lambda seed, m: (
        drop_yaml(seed / "inventory/host_vars/cabin/node.yml", "tinc_public_key"),
        write_manifest(seed, m["valley"], "cabin"),
        "seed: node cabin has vault_tinc_private_key but no tinc_public_key"),
    "a public key without its private one": lambda seed, m: (
        drop_yaml(seed / "inventory/host_vars/cabin/secrets.yml", "vault_syncthing_key"),
        write_manifest(seed, m["valley"], "cabin"),
        "seed: node cabin has syncthing_cert but no vault_syncthing_key"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_bad_seed_is_refused_in_one_line_and_touches_nothing(made, node, case):
    write_seed(node.boot, made["valley"], "cabin", made["passing"], node.out)
    *_, message = REFUSALS[case](node.seed, made)
    boot_before = snapshot(node.boot)
    result = node.boot_once()
    if message is None:  # the JSON parser's own words follow
        message = result.stdout.strip()
        assert message.startswith("seed: seed.json cannot be read as JSON (")
    assert_refused(result, node, message)
    assert snapshot(node.boot) == boot_before
    assert sorted(p.name for p in node.state.iterdir()) == ["firstboot.json", "firstboot.lock"]  # the lock is no state
    assert node.report()["site_id"] is None  # the refused seed did not make the node the site's


def test_a_program_the_site_does_not_run_needs_neither_key(made, tmp_path):
    node = make_node(tmp_path, playbook_program="/bin/true")
    write_seed(node.boot, made["valley"], "cabin", made["passing"], node.out)
    drop_yaml(node.seed / "inventory/host_vars/cabin/node.yml", "tinc_public_key")
    drop_yaml(node.seed / "inventory/host_vars/cabin/secrets.yml", "vault_tinc_private_key")
    write_manifest(node.seed, made["valley"], "cabin")
    result = node.boot_once()
    assert result.returncode == 0, result.stdout + result.stderr
    assert node.report()["status"] == "ok"


def test_a_boot_cut_off_after_the_copy_finishes_the_scrub_and_the_run(made, tmp_path):
    node = make_node(tmp_path, playbook_program="/bin/true")
    seed = write_seed(node.boot, made["valley"], "cabin", made["passing"], node.out)
    group_secrets = (seed / "inventory/group_vars/all/secrets.yml").read_bytes()
    assert node.boot_once().returncode == 0
    # As a power cut after the copy and the first private file's scrub leaves the card.
    (seed / "applied.json").rename(seed / "seed.json")
    (seed / "inventory/group_vars/all/secrets.yml").write_bytes(group_secrets)
    result = node.boot_once()
    assert result.returncode == 0, result.stdout + result.stderr
    assert node.report()["status"] == "ok"
    assert not list(seed.rglob("secrets.yml"))
    assert sorted(p.name for p in seed.iterdir()) == ["ansible.tar.gz", "applied.json", "inventory"]


def test_roles_that_would_unpack_outside_their_directory_are_not_run(made, tmp_path):
    node = make_node(tmp_path, playbook_program="/bin/true")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(tarfile.TarInfo("../escaped"), io.BytesIO())
    write_seed(node.boot, made["valley"], "cabin", buffer.getvalue(), node.out)
    result = node.boot_once()
    assert result.returncode == 1
    report = node.report()
    assert report["status"] == "failed"
    assert report["error"].startswith("the roles could not be run: ansible.tar.gz holds '../escaped'")
    assert not (tmp_path / "state/escaped").exists()


def test_without_a_seed_the_node_waits_and_takes_a_corrected_seed_later(made, node):
    result = node.boot_once()
    assert (result.returncode, node.report()["status"]) == (0, "waiting")
    assert result.stdout.startswith("first boot: waiting for a seed")
    before = snapshot(node.state)
    assert node.boot_once().returncode == 0
    assert snapshot(node.state) == before

    # A seed of the wrong node is refused; the corrected one replaces it on the card.
    write_seed(node.boot, made["valley"], "cabin", made["passing"], node.out)
    write_manifest(node.seed, made["valley"], "barn")
    assert node.boot_once().returncode == 1
    assert node.report()["status"] == "setup"
    write_manifest(node.seed, made["valley"], "cabin")
    result = node.boot_once()
    assert result.returncode == 0, result.stdout + result.stderr
    report = node.report()
    assert (report["status"], report["node"], report["error"]) == ("ok", "cabin", None)
    assert node.out.read_text().startswith("cabin ")
