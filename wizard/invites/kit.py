"""The kit: what the controller gives a hub so it can admit nodes by invite
(docs/invites.md; the hub reads it with roles/join/files/meshstead_join/kit.py).

A seed's inventory (docs/seed.md) without any node's private keys: the site's
own public files byte for byte, and the network-wide secrets that every seed
carries, which a hub hands to the nodes it admits; and the roles, which the
nodes it admits configure themselves with."""

from .. import sites
from ..images.seed import CONTROLLER_ONLY_SECRETS, ansible_tarball, secrets_yaml

SECRETS = "group_vars/all/secrets.yml"


def files(opened: sites.Opened) -> dict[str, bytes]:
    """{path inside the kit: bytes}; the secrets file is the one to write 0600."""
    site_dir = opened.directory
    out = {"hosts.yml": (site_dir / "hosts.yml").read_bytes()}
    for path in sorted((site_dir / "group_vars/all").glob("*.yml")):
        if path.name != "vault.yml":
            out[f"group_vars/all/{path.name}"] = path.read_bytes()
    shared = {k: v for k, v in opened.site_secrets.items() if k not in CONTROLLER_ONLY_SECRETS}
    out[SECRETS] = secrets_yaml(shared)
    for node in opened.site.sorted_nodes():
        out[f"host_vars/{node.name}/node.yml"] = (site_dir / "host_vars" / node.name / "node.yml").read_bytes()
    out["ansible.tar.gz"] = ansible_tarball()
    return out

