"""A node's seed: its slice of the site inventory, as docs/seed.md describes.

The public files are the site's own, byte for byte; the node's private keys and
the network-wide secrets are its vault files decrypted under the same
`vault_*` names, so the roles at first boot see what `meshstead provision`
gives them. Nothing of another node's secrets, and never the site's signing key
(only the controller signs invites)."""

import datetime

from .. import nodeside, sites
from ..render import yamlfile
from ..resources import ansible_home
from .base import ANSIBLE_VENV

# seed.json is written by the node-side package's seed.py, which a joined node writes its seed with.
_node_seed = nodeside.module("seed")
_pack = nodeside.module("pack")
FORMAT = _node_seed.FORMAT
SEED_DIR = "meshstead"
# Only the controller holds these: they are never written into a seed.
CONTROLLER_ONLY_SECRETS = {"site_signing_private_key"}
# Files of a node's host_vars a seed carries: the generated identity and the site's own settings;
# never connection.yml (how the controller reaches it) or the lab's lab.yml.
NODE_FILES = ("node.yml", "local.yml")
FIRSTBOOT_TIMEOUT = _node_seed.FIRSTBOOT_TIMEOUT


def secrets_yaml(secrets: dict) -> bytes:
    return yamlfile.dump({f"vault_{k}": v for k, v in secrets.items() if v is not None}, header=False)


def ansible_tarball() -> bytes:
    """The roles and playbook the node applies, as this meshstead has them (no tests, no caches)."""
    return _pack.pack(ansible_home())


def files(opened: sites.Opened, node: str) -> tuple[dict[str, bytes], list[str]]:
    """{path under meshstead/: bytes} of the node's seed, and which of them are private."""
    sites.get_node(opened.site, node)
    site_dir = opened.directory
    out: dict[str, bytes] = {"inventory/hosts.yml": (site_dir / "hosts.yml").read_bytes()}
    for path in sorted((site_dir / "group_vars/all").glob("*.yml")):
        if path.name != "vault.yml":
            out[f"inventory/group_vars/all/{path.name}"] = path.read_bytes()
    shared = {k: v for k, v in opened.site_secrets.items() if k not in CONTROLLER_ONLY_SECRETS}
    private = {"inventory/group_vars/all/secrets.yml": secrets_yaml(shared)}
    for other in opened.site.sorted_nodes():
        for name in NODE_FILES:
            path = site_dir / "host_vars" / other.name / name
            if path.is_file():
                out[f"inventory/host_vars/{other.name}/{name}"] = path.read_bytes()
    private[f"inventory/host_vars/{node}/secrets.yml"] = secrets_yaml(sites.node_secrets(opened, node))
    # ansible_timeout: Mitogen's local interpreter must start within it, and on a Pi Zero 2 W or
    # an emulated CPU that takes longer than Ansible's 10 s (facts failed with "Connection timed out").
    out[f"inventory/host_vars/{node}/firstboot.yml"] = yamlfile.dump(
        {"ansible_connection": "local", "ansible_python_interpreter": f"{ANSIBLE_VENV}/bin/python",
         "ansible_timeout": FIRSTBOOT_TIMEOUT}, header=False)
    out["ansible.tar.gz"] = ansible_tarball()
    out.update(private)
    return out, sorted(private)


def manifest(opened: sites.Opened, node: str, content: dict[str, bytes], private: list[str]) -> bytes:
    settings = opened.site.settings
    return _node_seed.manifest(settings.site_id, settings.name, node, content, private,
                               datetime.datetime.now(datetime.UTC))


def seed(opened: sites.Opened, node: str) -> dict[str, bytes]:
    """Every file of the seed, relative to the boot partition's root."""
    content, private = files(opened, node)
    all_files = {f"{SEED_DIR}/{rel}": data for rel, data in content.items()}
    all_files[f"{SEED_DIR}/seed.json"] = manifest(opened, node, content, private)
    return all_files
