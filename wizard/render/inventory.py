"""The site model rendered as an Ansible inventory (see docs/inventory.md)."""

from .. import meshparams, nodeside
from ..identity import PRIVATE_VARS, PUBLIC_VARS
from ..invites import record
from ..model import Node, Site
from . import yamlfile

PUBLIC_MODE = 0o644
SECRET_MODE = 0o600
FORMAT = 1

# The mesh interface every role works on, unless a node's own variables
# (the lab's, or the user's local.yml) say otherwise: batman-adv's.
MESH_INTERFACE = "bat0"
# The groups are the node-side package's (a joining node adds itself with them).
_groups = nodeside.module("groups")
_removed = nodeside.module("removed")
DEBIAN_PLATFORMS = _groups.DEBIAN_PLATFORMS
SERVICE_GROUPS = _groups.SERVICE_GROUPS
ROLE_GROUPS = _groups.ROLE_GROUPS
GROUPS = _groups.GROUPS


def site_vars(site: Site, has_admin_password: bool) -> dict:
    s = site.settings
    data = {
        **s.to_vars(),
        "meshstead_format": FORMAT,
        "meshstead_mesh_interface": MESH_INTERFACE,
        "site_mesh_passphrase": "{{ vault_site_mesh_passphrase }}",
        "site_ap_passphrase": "{{ vault_site_ap_passphrase }}",
        **meshparams.site_vars(s),
        "site_mesh_ipv4_net": str(s.mesh_ipv4_net),
        "site_overlay_ipv4_net": str(s.overlay_ipv4_net),
        "site_client_ipv4_net": str(s.client_ipv4_net),
        "site_mesh_ipv6_net": str(s.ula_subnet(0)),
        "site_overlay_ipv6_net": str(s.ula_subnet(1)),
        "site_syncthing_folders": [
            {"id": "shared", "label": "Shared", "path": "shared"},
            {"id": "nncp-carrier", "label": "NNCP carrier", "path": "nncp-carrier"},
        ],
        # Real nodes are found by name unless connection.yml says otherwise;
        # the site's known_hosts keeps host key checking on.
        "ansible_host": "{{ node_fqdn | default(inventory_hostname) }}",
        "ansible_user": "{{ site_admin_user }}",
        "ansible_ssh_extra_args": "-o UserKnownHostsFile={{ inventory_dir }}/known_hosts",
    }
    if has_admin_password:
        data["site_admin_password_hash"] = "{{ vault_site_admin_password_hash }}"  # noqa: S105 - a reference
    return data


def hosts(site: Site) -> dict:
    data = _groups.empty()
    for node in site.sorted_nodes():
        _groups.add_host(data, node.name, node.platform, node.roles, site.settings.overlay, site.settings.services)
    return data


KEYS_ON_NODE = "meshstead_keys_on_node"


def node_vars(site: Site, node: Node) -> dict:
    data = site.node_facts(node)
    if node.has_secrets:
        # Only the keys the node's vault holds: those of the identities it has
        # (a site opened without its vault has not yet added a newer one).
        data.update({name: "{{ vault_" + name + " }}" for program, names in PRIVATE_VARS.items()
                     if PUBLIC_VARS[program][0] in node.public for name in names})
    else:
        # It joined by invite: its keys never left it, so it configures itself (playbooks/site.yml).
        data[KEYS_ON_NODE] = True
    return data


def known_hosts(site: Site) -> bytes:
    lines = []
    for node in site.sorted_nodes():
        facts = site.node_facts(node)
        names = [node.name, facts["node_fqdn"], facts["node_mesh_ipv4"], facts["node_mesh_ipv6"],
                 facts["node_overlay_ipv4"], facts["node_overlay_ipv6"]]
        if "yggdrasil_address" in facts:
            names.append(facts["yggdrasil_address"])
        key = " ".join(facts["ssh_host_ed25519_public_key"].split()[:2])
        lines.append(f"{','.join(names)} {key}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def render(site: Site, vault, *, site_secrets: dict | None, node_secrets: dict[str, dict]) -> dict:
    """Files to write, relative to the site directory: {path: (bytes, mode)}.

    Vault files are rendered only for secrets held in memory: a node whose
    keys were not loaded keeps its vault file as it is."""
    has_password = bool(site_secrets and site_secrets.get("site_admin_password_hash"))
    files = {
        "hosts.yml": (yamlfile.dump(hosts(site)), PUBLIC_MODE),
        "group_vars/all/site.yml": (yamlfile.dump(site_vars(site, has_password)), PUBLIC_MODE),
        "known_hosts": (known_hosts(site), PUBLIC_MODE),
    }
    if site_secrets is not None:
        files["group_vars/all/vault.yml"] = (
            vault.encrypt({f"vault_{k}": v for k, v in site_secrets.items() if v is not None}), SECRET_MODE)
    if site.invites:
        files["group_vars/all/invites.yml"] = (
            yamlfile.dump({record.VARIABLE: [r.to_var() for r in site.invites]}), PUBLIC_MODE)
    if site.removed:
        files["group_vars/all/removed.yml"] = (
            yamlfile.dump(_removed.variables(site.removed, site.settings.ipv4_plan, site.settings.ipv6_ula)),
            PUBLIC_MODE)
    for node in site.sorted_nodes():
        files[f"host_vars/{node.name}/node.yml"] = (yamlfile.dump(node_vars(site, node)), PUBLIC_MODE)
        if node.name in node_secrets:
            files[f"host_vars/{node.name}/vault.yml"] = (
                vault.encrypt({f"vault_{k}": v for k, v in node_secrets[node.name].items()}), SECRET_MODE)
    return files
