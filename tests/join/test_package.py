"""The node-side package: what it may import, one address arithmetic with the
wizard, the identity names of wizard/identity, the kit it accepts, its commands."""

import ast
import ipaddress
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.join.helpers import free_port, make_hub, snapshot
from wizard import nodeside
from wizard.identity import PRIVATE_NODE_VARS, PUBLIC_NODE_VARS
from wizard.invites import token
from wizard.model import Node, Settings, Site

PACKAGE = ROOT / "roles" / "join" / "files" / "meshstead_join"
addresses = nodeside.module("addresses")
identity = nodeside.module("identity")
kit = nodeside.module("kit")


def test_the_package_needs_only_what_a_node_image_ships():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        absolute = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        absolute |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        assert absolute - set(sys.stdlib_module_names) <= {"cryptography", "yaml"}, path.relative_to(PACKAGE)


def test_the_wizard_s_token_is_the_package_s():
    assert Path(token.__file__) == PACKAGE / "token.py"
    assert token.InviteError is nodeside.module("token").InviteError


def _reference(plan: str, ula: str, index: int) -> dict:
    """The plan as docs/inventory.md states it, computed the long way."""
    plan, ula = ipaddress.IPv4Network(plan), ipaddress.IPv6Network(ula)
    quarters = list(plan.subnets(prefixlen_diff=2))
    half = list(plan.subnets(prefixlen_diff=1))[1]
    result = {"node_mesh_ipv4": str(quarters[0][index]),
              "node_mesh_ipv6": str(ipaddress.IPv6Network((int(ula.network_address), 64))[index]),
              "node_overlay_ipv4": str(quarters[1][index]),
              "node_overlay_ipv6": str(ipaddress.IPv6Network((int(ula.network_address) + (1 << 64), 64))[index])}
    if index < 128:
        result["node_client_ipv4_net"] = str(list(half.subnets(prefixlen_diff=7))[index])
    return result


@pytest.mark.parametrize("plan", ["10.42.0.0/16", "10.99.4.0/22", "172.20.0.0/14"])
def test_the_wizard_and_a_hub_give_a_node_the_same_addresses(plan):
    ula = "fd12:3456:789a::/48"
    settings = Settings.from_vars({
        "meshstead_site_id": "x", "site_name": "s", "site_domain": "s.internal", "site_country": "DE",
        "site_mesh_mode": "80211s", "site_mesh_band": "2.4", "site_mesh_channel": 1, "site_mesh_id": "m",
        "site_mesh_mtu": 1500, "site_overlay": [], "site_services": [], "site_ipv4_plan": plan,
        "site_ipv6_ula": ula, "site_admin_user": "mesh", "site_admin_ssh_keys": [], "site_signing_public_key": ""})
    site = Site(settings)
    for index in (1, 2, 77, 127, 128, settings.max_nodes):
        wizard = site.addresses(Node("n", index, "rpi4", []))
        hub = addresses.node_addresses(ipaddress.IPv4Network(plan), ipaddress.IPv6Network(ula), index)
        assert wizard == hub == _reference(plan, ula, index), index
    assert settings.max_nodes == ipaddress.IPv4Network(plan).num_addresses // 4 - 3


def test_the_identity_names_are_wizard_identity_s():
    assert identity.PUBLIC_VARS == PUBLIC_NODE_VARS
    assert identity.PRIVATE_VARS == PRIVATE_NODE_VARS
    assert list(identity.CHECKS) == list(nodeside.module("keys").PUBLIC_VARS)  # every program is checked


def test_a_kit_with_a_node_s_private_keys_is_refused(base_site, tmp_path):
    hub = make_hub(base_site, tmp_path)
    assert set(kit.load(hub.kit_dir).nodes) == {"hilltop", "cabin"}
    (hub.kit_dir / "host_vars" / "cabin" / "secrets.yml").write_text("vault_tinc_private_key: x\n")
    with pytest.raises(kit.KitError, match="cabin/secrets.yml is in the kit"):
        kit.load(hub.kit_dir)


def test_the_commands_serve_and_join(base_site, identities, tmp_path):
    """`python3 -m meshstead_join serve` and `join` as a node runs them: the join
    starts before the hub listens, and gets in by retrying."""
    port = free_port()
    hub = make_hub(base_site, tmp_path, port=port)
    text = hub.invite("garden")
    (tmp_path / "identity.yml").write_text(yaml.safe_dump(identities[0]))
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    command = [sys.executable, "-m", "meshstead_join"]
    joining = subprocess.Popen([*command, "join", "--file", "/dev/stdin", "--identity", tmp_path / "identity.yml",
                                "--deadline", "60", "--out", tmp_path / "answer.json"], stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    joining.stdin.write(text)
    joining.stdin.close()
    time.sleep(1.5)
    serving = subprocess.Popen([*command, "serve", "--kit", hub.kit_dir, "--state", hub.state_dir, "--cert",
                                hub.cert, "--key", hub.key, "--listen", f"127.0.0.1:{port}"],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert joining.wait(timeout=60) == 0, joining.stderr.read()
        assert "joined as garden (index 3" in joining.stderr.read()
        answer = yaml.safe_load((tmp_path / "answer.json").read_text())
        assert answer["node"]["node_index"] == 3 and (tmp_path / "answer.json").stat().st_mode & 0o077 == 0
        # The same invite again: one line naming the problem, exit 1, nothing recorded.
        before = snapshot(hub.state_dir)
        again = subprocess.run([*command, "join", text, "--identity", tmp_path / "identity.yml", "--deadline", "10"],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert again.returncode == 1 and again.stderr.startswith("meshstead-join: used: invite ")
        assert again.stderr.count("\n") == 1 and snapshot(hub.state_dir) == before
    finally:
        serving.terminate()
        serving.wait(timeout=10)
    assert "admitted garden (index 3)" in serving.stderr.read()


def test_wizard_identity_is_the_package_s_key_generation():
    """One copy: the wizard's modules are the node-side package's own objects."""
    from wizard.identity import encoding, join, nncp, ssh, syncthing, tinc, yggdrasil
    for name, module in {"encoding": encoding, "join": join, "nncp": nncp, "ssh": ssh, "syncthing": syncthing,
                         "tinc": tinc, "yggdrasil": yggdrasil}.items():
        assert module is nodeside.module(f"keys.{name}"), name
        assert Path(module.__file__) == PACKAGE / "keys" / f"{name}.py"
    assert nodeside.module("keys").PUBLIC_VARS is __import__("wizard.identity").identity.PUBLIC_VARS


def test_a_fresh_worker_process_can_run_the_wizard_s_generate(tmp_path):
    """generate_many's pool pickles `generate` by name; a worker started afresh
    (spawn, forkserver) must find it without the nodeside loader having run."""
    import pickle

    from wizard.identity import node as node_identity
    script = ("import pickle, sys; generate = pickle.loads(sys.stdin.buffer.read()); "
              f"public, private = generate('w.test.internal'); print(sorted(public) == {sorted(PUBLIC_NODE_VARS)!r})")
    done = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(node_identity.generate),
                          capture_output=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == b"True", done.stderr.decode()


def test_the_command_check_validates_a_hub_s_files(base_site, tmp_path):
    """`check` is what the join role validates with before a file replaces a
    live one: the kit loads, the certificate and the key have the hub's pin and
    make a TLS pair; each problem is one line and exit 1."""
    hub = make_hub(base_site, tmp_path)
    opened = hub.opened()
    pin = opened.site.nodes["hilltop"].public["join_pin"]
    other_pin = opened.site.nodes["cabin"].public["join_pin"]
    other_cert = tmp_path / "cabin.crt"
    other_cert.write_text(opened.site.nodes["cabin"].public["join_tls_cert"])
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}

    def check(*args):
        done = subprocess.run([sys.executable, "-m", "meshstead_join", "check", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.stderr.count("\n") == 1, done.stderr
        return done.returncode, done.stderr

    code, said = check("--kit", hub.kit_dir, "--cert", hub.cert, "--key", hub.key, "--pin", pin)
    assert code == 0 and said.endswith(": ok\n") and "2 nodes" in said
    assert check("--key", hub.key, "--pin", other_pin)[1].startswith("meshstead-join: check: the key ")
    assert check("--cert", other_cert, "--pin", pin)[0] == 1
    assert check("--cert", other_cert, "--key", hub.key)[0] == 1  # not a pair
    assert check("--key", hub.cert)[0] == 1  # not a key
    assert check("--cert", hub.cert, "--pin", "not-a-pin!")[0] == 1
    (hub.kit_dir / "host_vars" / "cabin" / "vault.yml").write_text("x: 1\n")
    code, said = check("--kit", hub.kit_dir)
    assert code == 1 and "cabin/vault.yml is in the kit" in said


def test_packed_roles_are_the_same_bytes_for_the_same_files_and_leave_out_caches(tmp_path):
    """An unchanged site must leave a hub's kit unchanged (the join role's kit
    version hashes the packed roles), and no cache or test reaches a node."""
    pack = nodeside.module("pack")
    home = tmp_path / "home"
    for name in ("ansible.cfg", "playbooks/site.yml", "roles/x/tasks/main.yml", "roles/x/molecule/default/a.yml",
                 "plugins/strategy/s.py", "plugins/strategy/__pycache__/s.pyc", "roles/.hidden"):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(name)
    first = pack.pack(home)
    time.sleep(1.1)
    os.utime(home / "ansible.cfg")
    out = tmp_path / "out.tar.gz"
    done = subprocess.run([sys.executable, "-m", "meshstead_join", "pack", "--home", home, "--out", out],
                          env={**os.environ, "PYTHONPATH": str(ROOT / "roles/join/files")},
                          capture_output=True, text=True, check=True)
    assert out.read_bytes() == first and done.stdout.strip() == pack.digest(first)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "roles/x/tasks/main.yml" in names and "plugins/strategy/s.py" in names
    assert not [n for n in names if "molecule" in n or "__pycache__" in n or ".hidden" in n]
    (home / "roles/x/tasks/main.yml").write_text("changed")
    assert pack.pack(home) != first
