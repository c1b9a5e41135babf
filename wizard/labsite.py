"""The lab seen from a site: which containers to boot for its nodes, and the
lab's own variables written into the site.

The lab owns one file per node, ``host_vars/<node>/lab.yml``, and nothing else
in the site: a user's ``connection.yml`` or ``local.yml`` is never touched."""

from pathlib import Path

from . import sites
from .errors import MeshsteadError
from .fsutil import apply_writes, plan_writes
from .render import yamlfile

DEFAULT_NODE_ROLES = ["hub", "dns"]  # the first lab node; the others are plain nodes


def lab_name(opened_or_site) -> str:
    settings = getattr(opened_or_site, "site", opened_or_site).settings
    return f"{settings.name[:11].rstrip('-')}-{settings.site_id[:8]}"


LAB_FILE = "lab.yml"
LAB_HEADER = ("# Written by `meshstead lab up` for the lab's container of this node; removed by\n"
              "# `meshstead lab down`. Put your own settings in local.yml or connection.yml.\n")


def lab_vars_path(directory: Path, node: str) -> Path:
    return directory / "host_vars" / node / LAB_FILE


def ensure_site(directory: Path, count: int, admin_key: str, vault_override=None,
                progress=None) -> sites.Opened:
    """Open the site, or make a default one with ``count`` nodes."""
    from .load import is_site
    if is_site(directory):
        opened = sites.open_site(directory, vault_override)
        if count and len(opened.site.nodes) < count:
            raise MeshsteadError("nodes", f"the site has {len(opened.site.nodes)} node(s), fewer than {count}; "
                                 "add nodes with `meshstead node add`")
        return opened
    opened = sites.init(directory, {"admin_ssh_key": admin_key}, {}, interactive=False,
                        vault_override=vault_override)
    specs = [(f"node{i}", "amd64", DEFAULT_NODE_ROLES if i == 1 else []) for i in range(1, count + 1)]
    sites.add_nodes(opened, specs, progress)
    sites.commit(opened, sites.plan(opened))
    return opened


def lab_specs(opened: sites.Opened, count: int | None):
    from .lab import LabNodeSpec
    site = opened.site
    nodes = site.sorted_nodes()[:count] if count else site.sorted_nodes()
    specs = []
    for node in nodes:
        facts = site.node_facts(node)
        key = sites.node_secrets(opened, node.name)["ssh_host_ed25519_private_key"]
        specs.append(LabNodeSpec(
            name=node.name,
            ipv4=f"{facts['node_mesh_ipv4']}/{site.settings.mesh_ipv4_net.prefixlen}",
            ipv6=f"{facts['node_mesh_ipv6']}/64",
            ssh_host_ed25519_key=key))
    return specs


LAB_INTERFACE = "host0"  # the container's end of the lab bridge: its "mesh"


def lab_vars(conn: dict) -> dict:
    return {
        **conn,
        "meshstead_mesh_interface": LAB_INTERFACE,
        # The lab reaches its nodes as root with its own key (real nodes: the
        # admin user with sudo, and no root login at all).
        "common_sshd_permit_root_login": "prohibit-password",
    }


def write_lab_vars(directory: Path, connections: dict[str, dict]) -> None:
    apply_writes(plan_writes(directory, {
        str(lab_vars_path(Path(), node)): (LAB_HEADER.encode() + yamlfile.dump(lab_vars(conn), header=False), 0o644)
        for node, conn in connections.items()}))


def remove_lab_vars(directory: Path, nodes) -> None:
    for node in nodes:
        lab_vars_path(directory, node).unlink(missing_ok=True)
