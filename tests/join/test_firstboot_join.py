"""A node with no seed and an invite on its boot partition (a generic image):
the image's first-boot program joins through a real hub on 127.0.0.1, writes
the seed from the hub's answer, takes it and applies the roles the hub sent.

The hub's kit carries a harmless playbook instead of the site's roles: the
real ones would configure this machine."""

import base64
import fcntl
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import ROOT
from tests.unit.test_firstboot import ansible_tarball
from wizard.images import generic
from wizard.load import load_site

FIRSTBOOT = ROOT / "image-builder/files/usr/lib/meshstead/firstboot"

PLAYBOOK = """\
- name: Configure Debian nodes
  hosts: all
  gather_facts: false
  tasks:
    - name: Write what the roles see
      ansible.builtin.copy:
        dest: "{{ lookup('ansible.builtin.env', 'FIRSTBOOT_TEST_OUT') }}"
        content: "{{ node_name }} {{ node_index }} {{ meshstead_site_id }}
          {{ ssh_host_ed25519_private_key.splitlines()[0] }}\\n"
        mode: "0600"
"""


class Card:
    """A node's boot partition and state directory, and one boot of it."""

    def __init__(self, root: Path, deadline: int = 20):
        self.boot, self.state, self.out = root / "boot", root / "state", root / "configured"
        (self.boot / "meshstead").mkdir(parents=True)
        self.config = root / "image.json"
        self.config.write_text(json.dumps({
            "platform": "amd64", "boot_mount": str(self.boot), "state_dir": str(self.state),
            "ansible_playbook": str(Path(sys.executable).parent / "ansible-playbook"), "grow_root": False,
            "join_package": str(ROOT / "roles/join/files"), "join_deadline_s": deadline}))

    def write(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            (self.boot / name).parent.mkdir(parents=True, exist_ok=True)
            (self.boot / name).write_bytes(data)

    @property
    def invite(self) -> Path:
        return self.boot / "meshstead" / "invite.txt"

    def report(self) -> dict:
        return json.loads((self.state / "firstboot.json").read_text())

    def boot_once(self, *extra: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSTEAD_EVENTS")}
        env["FIRSTBOOT_TEST_OUT"] = str(self.out)
        return subprocess.run([sys.executable, str(FIRSTBOOT), "--config", str(self.config), *extra], env=env,
                              capture_output=True, text=True, timeout=180)


def invite_with_test_roles(hub, name: str, **options) -> str:
    """An invite, and the harmless playbook in the kit that making it rewrote."""
    text = hub.invite(name, **options)
    (hub.kit_dir / "ansible.tar.gz").write_bytes(ansible_tarball(PLAYBOOK))
    return text


def test_an_invite_on_the_card_joins_and_configures_the_node(hub, tmp_path):
    card = Card(tmp_path / "card")
    # The card as `image build --generic --invite` writes it.
    text = invite_with_test_roles(hub, "garden")
    card.write(generic.files(load_site(hub.site_dir), text))
    assert card.invite.read_text() == text + "\n"

    first = card.boot_once()
    assert first.returncode == 0, first.stdout + first.stderr
    report = card.report()
    assert (report["status"], report["node"], report["failed_tasks"]) == ("ok", "garden", []), report
    joined = yaml.safe_load((hub.state_dir / "joined" / "garden.yml").read_text())
    site_id = hub.opened().site.settings.site_id
    # The roles ran with the index the hub gave and the node's own key, which never left it.
    name, index, seen_site, key_line = card.out.read_text().split(None, 3)
    assert (name, int(index), seen_site) == ("garden", joined["node_index"], site_id)
    assert key_line.strip() == "-----BEGIN OPENSSH PRIVATE KEY-----"
    keys = card.state / "join" / "keys.yml"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert yaml.safe_load(keys.read_text())["public"]["ssh_host_ed25519_public_key"] == \
        joined["ssh_host_ed25519_public_key"]
    assert "joined as garden" in first.stdout
    # The invite is used: it is gone from the card, and the seed's private files from the join's copy.
    assert not card.invite.exists()
    assert not (card.state / "join/seed/seed.json").exists()
    assert not list((card.state / "join/seed").rglob("secrets.yml"))

    configured = card.out.stat().st_mtime_ns
    again = card.boot_once()
    assert again.returncode == 0 and "first boot: done (node garden)" in again.stdout, again.stdout
    assert card.out.stat().st_mtime_ns == configured


def test_a_refused_join_configures_nothing_and_keeps_the_invite(hub, tmp_path):
    text = invite_with_test_roles(hub, "orchard")
    first, second = Card(tmp_path / "a"), Card(tmp_path / "b")
    for card in (first, second):
        card.invite.write_text(text)
    assert first.boot_once().returncode == 0

    refused = second.boot_once()
    assert refused.returncode == 1
    report = second.report()
    assert report["status"] == "setup" and report["error"].startswith("join: used: invite "), report
    assert refused.stdout.splitlines()[-1] == report["error"]
    assert not second.out.exists() and not (second.state / "seed").exists()
    # Kept: a person can see what was refused and put a new invite in its place.
    assert second.invite.read_text() == text


def test_no_hub_answering_is_reported_and_the_next_boot_tries_again(hub, tmp_path):
    text = invite_with_test_roles(hub, "meadow", endpoints=["127.0.0.1:9"])  # nothing listens there
    card = Card(tmp_path / "card", deadline=2)
    card.invite.write_text(text)
    result = card.boot_once()
    assert result.returncode == 1
    report = card.report()
    assert report["status"] == "setup" and report["error"].startswith("join: unreachable: no hub answered at "
                                                                      "127.0.0.1:9"), report
    assert not card.out.exists() and card.invite.exists()
    # The keys are made once: the next boot sends the same public identity.
    keys = (card.state / "join" / "keys.yml").read_bytes()
    assert card.boot_once().returncode == 1
    assert (card.state / "join" / "keys.yml").read_bytes() == keys


def test_another_site_s_invite_is_refused_before_any_network(hub, tmp_path):
    """The generic image's site.json names its site: an invite of another
    site is refused offline, and the hub never hears of the node."""
    text = invite_with_test_roles(hub, "glade")
    card = Card(tmp_path / "card")
    description = generic.site_description(load_site(hub.site_dir))
    other_key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    description["site_signing_public_key"] = base64.b64encode(other_key).decode()
    card.write({"meshstead/site.json": json.dumps(description).encode(), "meshstead/invite.txt": text.encode()})
    before = sorted(p.relative_to(hub.state_dir) for p in hub.state_dir.rglob("*"))
    result = card.boot_once()
    assert result.returncode == 1
    assert card.report()["error"].startswith("join: site: "), card.report()
    assert sorted(p.relative_to(hub.state_dir) for p in hub.state_dir.rglob("*")) == before
    assert not (card.state / "join" / "keys.yml").exists()  # an invite refused offline makes no keys


def test_the_node_s_own_settings_on_the_card_reach_its_seed(hub, tmp_path):
    text = invite_with_test_roles(hub, "ridge")
    card = Card(tmp_path / "card")
    card.write({"meshstead/invite.txt": text.encode(),
                "meshstead/local.yml": b"meshstead_mesh_interface: eth0\n"})
    assert card.boot_once().returncode == 0, card.report()
    local = card.state / "seed/inventory/host_vars/ridge/local.yml"
    assert yaml.safe_load(local.read_text()) == {"meshstead_mesh_interface": "eth0"}
    # Kept beside its keys: the node's runs from a provision's slice, which has no local.yml of it, take them.
    kept = card.state / "join" / "local.yml"
    assert yaml.safe_load(kept.read_text()) == {"meshstead_mesh_interface": "eth0"}


def test_settings_that_are_the_hub_s_to_decide_are_refused_before_joining(hub, tmp_path):
    text = invite_with_test_roles(hub, "ledge")
    card = Card(tmp_path / "card")
    card.write({"meshstead/invite.txt": text.encode(), "meshstead/local.yml": b"node_mesh_ipv4: 10.0.0.9\n"})
    assert card.boot_once().returncode == 1
    assert card.report()["error"] == f"join: local: {card.boot / 'meshstead/local.yml'} sets node_mesh_ipv4, " \
        "which the node's identity or the hub decides"
    assert not (hub.state_dir / "joined" / "ledge.yml").exists()


def test_a_running_node_joins_with_the_invite_given_on_its_command_line(hub, tmp_path):
    """`meshstead-firstboot --invite TEXT` on a node that waits (booted with
    no seed and no invite): the same join as a card's invite; then it is a
    node of the site and refuses another invite, changing nothing."""
    card = Card(tmp_path / "card")
    waiting = card.boot_once()
    assert waiting.returncode == 0 and card.report()["status"] == "waiting", waiting.stdout
    text = invite_with_test_roles(hub, "garden")
    (tmp_path / "garden-invite.txt").write_text(text + "\n")

    joined = card.boot_once("--invite", str(tmp_path / "garden-invite.txt"))
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert (card.report()["status"], card.report()["node"]) == ("ok", "garden")
    assert not card.invite.exists()  # used: wiped where it was put
    configured = card.out.stat().st_mtime_ns

    other = invite_with_test_roles(hub, "orchard")
    refused = card.boot_once("--invite", other)
    assert refused.returncode == 1
    assert refused.stdout.strip() == ("join: this node is already node garden of site "
                                      f"{card.report()['site_id']}; expected a node that has not joined a site")
    assert not card.invite.exists() and card.out.stat().st_mtime_ns == configured
    assert "orchard" not in {p.stem for p in (hub.state_dir / "joined").iterdir()}


def test_one_first_boot_runs_at_a_time(hub, tmp_path):
    card = Card(tmp_path / "card")
    card.state.mkdir()
    with open(card.state / "firstboot.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = card.boot_once("--invite", "meshstead1:whatever")
    assert busy.returncode == 1 and "already running" in busy.stdout, busy.stdout
    assert not card.invite.exists()
