"""A joining node makes its own keys with the node-side package, keeps them,
sends only their public halves, and writes a seed the image's first boot
accepts; under the venv's Python and under Debian 12's python3 with its
python3-cryptography 38, which is what a node has."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.join.helpers import free_port, make_hub, service
from wizard import nodeside
from wizard.identity import PRIVATE_NODE_VARS, PUBLIC_NODE_VARS
from wizard.images.base import ANSIBLE_VENV

PACKAGE_ROOT = ROOT / "roles" / "join" / "files"
FIRSTBOOT = ROOT / "image-builder/files/usr/lib/meshstead/firstboot"
DEBIAN_PYTHON = "/usr/bin/python3"
ownkeys = nodeside.module("ownkeys")
seed = nodeside.module("seed")
groups = nodeside.module("groups")


def _debian_python() -> str:
    """Debian 12's python3 with python3-cryptography 38 and python3-yaml, or skip."""
    probe = "import cryptography, yaml; print(cryptography.__version__)"
    try:
        version = subprocess.run([DEBIAN_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30,
                                 check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"{DEBIAN_PYTHON} lacks cryptography or yaml (apt-get install python3-cryptography python3-yaml)")
    if version.split(".")[0] != "38":
        pytest.skip(f"{DEBIAN_PYTHON} has cryptography {version}, not Debian 12's 38")
    return DEBIAN_PYTHON


@pytest.fixture(params=["venv", "debian"])
def python(request) -> str:
    return sys.executable if request.param == "venv" else _debian_python()


def run_node(python: str, *args, cwd: Path, stdin: str | None = None, timeout: float = 120):
    """`python3 -m meshstead_join …` as a node runs it: only the package on the path."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    return subprocess.run([python, "-m", "meshstead_join", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


CHECK_SEED = """
import importlib.util, sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
loader = SourceFileLoader("firstboot", sys.argv[1])
firstboot = importlib.util.module_from_spec(importlib.util.spec_from_loader("firstboot", loader))
loader.exec_module(firstboot)
try:
    manifest = firstboot.check_seed(Path(sys.argv[2]), Path(sys.argv[3]), {})
except firstboot.Refused as refused:
    print(refused)
    sys.exit(1)
print(manifest["node"], manifest["site_id"])
"""


def firstboot_check(python: str, seed_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The image's own check of a seed (docs/seed.md, first boot step 1)."""
    state = tmp_path / "firstboot-state"
    state.mkdir(exist_ok=True)
    return subprocess.run([python, "-c", CHECK_SEED, FIRSTBOOT, seed_dir, state], capture_output=True, text=True,
                          timeout=60)


def tiny_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"- name: Nothing\n  hosts: all\n  tasks: []\n"
        info = tarfile.TarInfo("playbooks/site.yml")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def hub_requests(hub, monkeypatch):
    """Every request the hub received, as it received it."""
    received = []
    answer = service.Hub.answer

    def recording(self, request):
        received.append(json.loads(json.dumps(request)))
        return answer(self, request)

    monkeypatch.setattr(service.Hub, "answer", recording)
    return received


def _private_values(state: Path) -> list[str]:
    private = yaml.safe_load((state / ownkeys.KEYS_FILE).read_text())["private"]
    return [line for value in private.values() for line in value.splitlines() if len(line) > 20]


def test_the_node_makes_its_keys_sends_the_public_ones_and_writes_a_seed(hub, hub_requests, python, tmp_path):
    text = hub.invite("garden")
    state, seed_dir, tarball = tmp_path / "node-state", tmp_path / "boot" / "meshstead", tmp_path / "ansible.tar.gz"
    tarball.write_bytes(tiny_tarball())
    result = run_node(python, "join", "--file", "/dev/stdin", "--state", state, "--seed", seed_dir, "--ansible",
                      tarball, "--deadline", "30", cwd=tmp_path, stdin=text)
    assert result.returncode == 0, result.stderr
    assert "made the node's own keys" in result.stderr and f"wrote the seed to {seed_dir}" in result.stderr
    assert result.stdout == ""  # the answer holds secrets: into the state directory, not onto a terminal

    # Kept: root only, written whole, every private key; the public ones are what the hub holds.
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / ownkeys.KEYS_FILE).stat().st_mode & 0o777 == 0o600
    assert (state / "answer.json").stat().st_mode & 0o777 == 0o600
    kept = yaml.safe_load((state / ownkeys.KEYS_FILE).read_text())
    assert set(kept["public"]) == set(PUBLIC_NODE_VARS) and set(kept["private"]) == set(PRIVATE_NODE_VARS)
    assert not list(state.glob(".*.tmp"))

    # The hub got the public identity and nothing of the private keys.
    assert len(hub_requests) == 1
    assert hub_requests[0] == {"invite": text.strip(), "identity": kept["public"]}
    sent = json.dumps(hub_requests[0])
    assert "PRIVATE KEY" not in sent
    assert not [line for line in _private_values(state) if line in sent]
    recorded = yaml.safe_load((hub.state_dir / "joined" / "garden.yml").read_text())
    assert {k: recorded[k] for k in PUBLIC_NODE_VARS} == kept["public"]

    # The seed: docs/seed.md's layout, which the image's first boot accepts.
    manifest = json.loads((seed_dir / "seed.json").read_text())
    assert manifest["node"] == "garden" and manifest["format"] == 1
    listed = {str(p.relative_to(seed_dir)) for p in seed_dir.rglob("*") if p.is_file()} - {"seed.json"}
    assert set(manifest["files"]) == listed
    assert manifest["private"] == ["inventory/group_vars/all/secrets.yml", "inventory/host_vars/garden/secrets.yml"]
    for rel in manifest["private"]:
        assert (seed_dir / rel).stat().st_mode & 0o777 == 0o600
    secrets = yaml.safe_load((seed_dir / "inventory/host_vars/garden/secrets.yml").read_text())
    assert secrets == {f"vault_{k}": v for k, v in kept["private"].items()}
    own = yaml.safe_load((seed_dir / "inventory/host_vars/garden/node.yml").read_text())
    assert own["tinc_private_key"] == "{{ vault_tinc_private_key }}" and own["node_index"] == 3
    assert {"hilltop", "cabin"} <= {p.name for p in (seed_dir / "inventory/host_vars").iterdir()}
    hosts = yaml.safe_load((seed_dir / "inventory/hosts.yml").read_text())
    assert "garden" in hosts["all"]["children"]["debian"]["hosts"]
    assert "garden" in hosts["all"]["children"]["dns_servers"]["hosts"]
    checked = firstboot_check(python, seed_dir, tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.split() == ["garden", manifest["site_id"]]


def test_a_retry_reuses_the_keys_it_made(base_site, tmp_path):
    """No hub at first: the keys made for the first try are the ones the join
    sends when the hub is up, and a refused retry after it keeps them."""
    port = free_port()
    made = make_hub(base_site, tmp_path, port=port)
    text = made.invite("garden")
    state = tmp_path / "node-state"
    first = run_node(sys.executable, "join", text, "--state", state, "--deadline", "1", cwd=tmp_path)
    assert first.returncode == 1 and "meshstead-join: unreachable: " in first.stderr, first.stderr
    assert "made the node's own keys" in first.stderr
    keys = (state / ownkeys.KEYS_FILE).read_bytes()

    server = service.serve(made.kit_dir, made.state_dir, made.cert, made.key, ("127.0.0.1", port))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        second = run_node(sys.executable, "join", text, "--state", state, "--deadline", "30", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert "using the node's own keys" in second.stderr
        third = run_node(sys.executable, "join", text, "--state", state, "--deadline", "10", cwd=tmp_path)
        assert third.returncode == 1 and "meshstead-join: used: " in third.stderr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert (state / ownkeys.KEYS_FILE).read_bytes() == keys
    recorded = yaml.safe_load((made.state_dir / "joined" / "garden.yml").read_text())
    assert {k: recorded[k] for k in PUBLIC_NODE_VARS} == yaml.safe_load(keys)["public"]


def test_keys_are_made_once_and_a_damaged_keys_file_is_never_replaced(tmp_path):
    public, private, made = ownkeys.load_or_make(tmp_path / "s", "garden")
    assert made and ownkeys.load_or_make(tmp_path / "s", "other") == (public, private, False)
    path = tmp_path / "s" / ownkeys.KEYS_FILE
    damaged = path.read_text().replace(public["join_pin"], "AAAA")
    path.write_text(damaged)
    with pytest.raises(ownkeys.KeysError, match="keys.yml cannot be used .*join_pin"):
        ownkeys.load_or_make(tmp_path / "s", "garden")
    assert path.read_text() == damaged


def test_an_invalid_invite_makes_no_keys(tmp_path):
    result = run_node(sys.executable, "join", "meshstead1:AAAA", "--state", tmp_path / "s", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("meshstead-join: malformed: ")
    assert not (tmp_path / "s").exists()


def test_the_seed_carries_the_roles_the_hub_sends(hub, tmp_path):
    state, seed_dir = tmp_path / "node-state", tmp_path / "seed"
    result = run_node(sys.executable, "join", hub.invite("garden"), "--state", state, "--seed", seed_dir,
                      "--deadline", "30", cwd=tmp_path)
    assert result.returncode == 0 and "without ansible.tar.gz" not in result.stderr, result.stderr
    assert (seed_dir / "ansible.tar.gz").read_bytes() == (hub.kit_dir / "ansible.tar.gz").read_bytes()
    assert firstboot_check(sys.executable, seed_dir, tmp_path).returncode == 0


def test_without_roles_from_the_hub_first_boot_refuses_the_seed_naming_them(hub, tmp_path):
    """A hub whose kit has no roles (provisioned before kits carried them)."""
    (hub.kit_dir / "ansible.tar.gz").unlink()
    hub.write_kit = lambda: None  # keep the kit as it is while the invite is made
    state, seed_dir = tmp_path / "node-state", tmp_path / "seed"
    result = run_node(sys.executable, "join", hub.invite("garden"), "--state", state, "--seed", seed_dir,
                      "--deadline", "30", cwd=tmp_path)
    assert result.returncode == 0 and "(without ansible.tar.gz: the hub sent no roles)" in result.stderr
    checked = firstboot_check(sys.executable, seed_dir, tmp_path)
    assert checked.returncode == 1 and checked.stdout.strip() == "seed: ansible.tar.gz is missing (the seed is " \
        "truncated)"


def test_first_boot_refuses_a_seed_whose_keys_were_swapped(hub, tmp_path):
    """The check in the test above is not a formality: another node's keys fail it."""
    state, seed_dir = tmp_path / "node-state", tmp_path / "seed"
    tarball = tmp_path / "ansible.tar.gz"
    tarball.write_bytes(tiny_tarball())
    assert run_node(sys.executable, "join", hub.invite("garden"), "--state", state, "--seed", seed_dir,
                    "--ansible", tarball, "--deadline", "30", cwd=tmp_path).returncode == 0
    answer = json.loads((state / "answer.json").read_text())
    _, others = ownkeys.load_or_make(tmp_path / "other", "other")[:2]
    shutil.rmtree(seed_dir)
    seed.write(seed_dir, answer, others, tiny_tarball())
    checked = firstboot_check(sys.executable, seed_dir, tmp_path)
    assert checked.returncode == 1 and "private key does not match" in checked.stdout


def test_a_joined_node_s_hosts_are_the_controller_s(hub):
    """Adding a node to the kit's hosts.yml gives what the wizard renders: take
    cabin out of the controller's hosts.yml, add it back as a node does."""
    kit_hosts = yaml.safe_load((hub.kit_dir / "hosts.yml").read_text())
    site_vars = yaml.safe_load((hub.kit_dir / "group_vars/all/site.yml").read_text())
    cabin = yaml.safe_load((hub.kit_dir / "host_vars/cabin/node.yml").read_text())
    without = json.loads(json.dumps(kit_hosts))
    for group in without["all"]["children"].values():
        (group.get("hosts") or {}).pop("cabin", None)
        if group.get("hosts") == {}:
            group.clear()
    assert without != kit_hosts
    answer = {"node": cabin, "site": {"vars": site_vars, "hosts": without, "nodes": {}}}
    assert seed.hosts(answer) == kit_hosts


def test_the_seed_names_the_image_s_python():
    assert seed.ANSIBLE_PYTHON == f"{ANSIBLE_VENV}/bin/python"


# --- the real programs, on keys made by Debian 12's python3 ------------------------------------------------

MAKE_KEYS = """
import json
from meshstead_join.keys import node
print(json.dumps([node.generate(name) for name in ("garden.example", "shed.example")]))
"""


@pytest.fixture(scope="module")
def debian_keys() -> list[tuple[dict, dict]]:
    """Two nodes' keys, as Debian 12's python3 makes them on a node."""
    python = _debian_python()
    done = subprocess.run([python, "-c", MAKE_KEYS], capture_output=True, text=True, check=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})
    return [tuple(pair) for pair in json.loads(done.stdout)]


def _need(program: str) -> None:
    if not shutil.which(program):
        pytest.skip(f"{program} is not installed")


def test_debian_made_keys_are_a_valid_identity(debian_keys):
    for public, private in debian_keys:
        assert nodeside.module("identity").check(public) == public
        assert set(private) == set(PRIVATE_NODE_VARS)


@pytest.mark.real
def test_yggdrasil_derives_the_address_of_debian_made_keys(debian_keys, tmp_path):
    _need("yggdrasil")
    public, private = debian_keys[0]
    conf = tmp_path / "yggdrasil.conf"
    conf.write_text(json.dumps({"PrivateKey": private["yggdrasil_private_key"]}))
    address = subprocess.run(["yggdrasil", "-useconffile", conf, "-address"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert address == public["yggdrasil_address"]


@pytest.mark.real
def test_ssh_keygen_reads_debian_made_host_keys(debian_keys, tmp_path):
    _need("ssh-keygen")
    public, private = debian_keys[0]
    key = tmp_path / "ssh_host_ed25519_key"
    key.write_text(private["ssh_host_ed25519_private_key"])
    key.chmod(0o600)
    (tmp_path / "ssh_host_ed25519_key.pub").write_text(public["ssh_host_ed25519_public_key"] + "\n")
    derived = subprocess.run(["ssh-keygen", "-y", "-f", key], capture_output=True, text=True, check=True).stdout
    assert derived.split()[:2] == public["ssh_host_ed25519_public_key"].split()[:2]
    line = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert line[1] == public["ssh_host_ed25519_fingerprint"]


@pytest.mark.real
def test_an_nncp_packet_travels_between_debian_made_identities(debian_keys, tmp_path):
    """Encrypted to the one's exchange key, signed by the other's: every NNCP key is used."""
    for program in ("nncp-file", "nncp-xfer", "nncp-toss"):
        _need(program)
    keys = [{name.removeprefix("nncp_"): value for name, value in {**public, **private}.items()
             if name.startswith("nncp_")} for public, private in debian_keys]
    public = ("id", "exchpub", "signpub", "noisepub")
    configs = []
    for me, other, name, other_name in ((keys[0], keys[1], "garden", "shed"), (keys[1], keys[0], "shed", "garden")):
        home = tmp_path / name
        (home / "spool").mkdir(parents=True)
        (home / "incoming").mkdir()
        config = {"spool": str(home / "spool"), "log": str(home / "log"), "self": me,
                  "neigh": {"self": {k: me[k] for k in public},
                            other_name: {**{k: other[k] for k in public}, "incoming": str(home / "incoming")}}}
        (home / "nncp.hjson").write_text(json.dumps(config))
        configs.append(home / "nncp.hjson")
    payload = tmp_path / "hello.bin"
    payload.write_bytes(os.urandom(1024))
    carrier = tmp_path / "carrier"
    carrier.mkdir()
    for argv in (["nncp-file", "-quiet", "-cfg", configs[0], payload, "shed:hello.bin"],
                 ["nncp-xfer", "-quiet", "-cfg", configs[0], "-mkdir", "-tx", carrier],
                 ["nncp-xfer", "-quiet", "-cfg", configs[1], "-rx", carrier],
                 ["nncp-toss", "-quiet", "-cfg", configs[1]]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
    assert (tmp_path / "shed" / "incoming" / "hello.bin").read_bytes() == payload.read_bytes()
