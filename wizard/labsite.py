"""The lab seen from a site: which containers to boot for its nodes, and the
lab's own variables written into the site.

The lab owns one file per node, ``host_vars/<node>/lab.yml``, and nothing else
in the site: a user's ``connection.yml`` or ``local.yml`` is never touched."""

import os
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
LAB_HEADER = ("# Written by `meshstead lab up` for this node's lab copy (container or radio node); removed by\n"
              "# `meshstead lab down`. Put your own settings in local.yml or connection.yml.\n")


def lab_vars_path(directory: Path, node: str) -> Path:
    return directory / "host_vars" / node / LAB_FILE


def default_node_names(count: int, radio: bool = False) -> list[str]:
    """node1, node2, … for a container lab; n0, n1, … (as topologies name
    their corners) for a radio lab."""
    return [f"n{i}" for i in range(count)] if radio else [f"node{i}" for i in range(1, count + 1)]


def ensure_site(directory: Path, count: int, admin_key: str, vault_override=None,
                progress=None, radio: bool = False) -> sites.Opened:
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
    specs = [(name, "amd64", DEFAULT_NODE_ROLES if i == 0 else [])
             for i, name in enumerate(default_node_names(count, radio))]
    sites.add_nodes(opened, specs, progress)
    sites.commit(opened, sites.plan(opened))
    return opened


# A radio lab's nodes are reached on a management LAN of their own, so the
# mesh addresses stay on bat0: a /64 of the site's ULA that the plan never
# allocates (subnets 0 and 1 are the mesh's and tinc's).
MANAGEMENT_SUBNET = 0xFFFF


def lab_specs(opened: sites.Opened, count: int | None, radio: bool = False):
    from .lab import LabNodeSpec
    site = opened.site
    nodes = site.sorted_nodes()[:count] if count else site.sorted_nodes()
    specs = []
    for node in nodes:
        facts = site.node_facts(node)
        key = sites.node_secrets(opened, node.name)["ssh_host_ed25519_private_key"]
        if radio:
            management = site.settings.ula_subnet(MANAGEMENT_SUBNET)
            addresses = {"ipv6": f"{management.network_address + node.index}/64"}
        else:
            addresses = {"ipv4": f"{facts['node_mesh_ipv4']}/{site.settings.mesh_ipv4_net.prefixlen}",
                         "ipv6": f"{facts['node_mesh_ipv6']}/64"}
        specs.append(LabNodeSpec(name=node.name, ssh_host_ed25519_key=key, **addresses))
    return specs


LAB_INTERFACE = "host0"  # the container's end of the lab bridge: its "mesh"


def lab_vars(conn: dict, radio: bool = False) -> dict:
    data = {
        **conn,
        # The lab reaches its nodes as root with its own key (real nodes: the
        # admin user with sudo, and no root login at all).
        "common_sshd_permit_root_login": "prohibit-password",
    }
    if radio:
        # A node in an emulated CPU (QEMU without KVM) needs longer than Ansible's
        # 10 s to log in and start Python.
        data["ansible_timeout"] = 120
    else:  # a radio lab node has a real mesh, bat0 as the site says; a container has host0
        data["meshstead_mesh_interface"] = LAB_INTERFACE
        # ... whose addresses the lab itself gives (and needs before Ansible can log in).
        data["meshstead_mesh_link"] = "none"
    return data


def image_node_vars(conn: dict) -> dict:
    """A flashed image booted in the lab is reached like a real node (its admin
    user, no root login), only slower: QEMU without KVM emulates its CPU."""
    return {**conn, "ansible_timeout": 120}


def write_lab_vars(directory: Path, connections: dict[str, dict], radio: bool = False,
                   image: bool = False) -> None:
    def content(conn):
        data = image_node_vars(conn) if image else lab_vars(conn, radio)
        return LAB_HEADER.encode() + yamlfile.dump(data, header=False)
    apply_writes(plan_writes(directory, {
        str(lab_vars_path(Path(), node)): (content(conn), 0o644) for node, conn in connections.items()}))


def admin_identity(site) -> Path | None:
    """The private half of one of the site's admin keys, if this machine has it
    (the demo key, or a key in ~/.ssh); else None and ssh uses the agent."""
    wanted = {" ".join(k.split()[:2]) for k in site.settings.admin_ssh_keys}
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidates = [config / "meshstead" / "demo" / "id_ed25519",
                  *(Path.home() / ".ssh" / n for n in ("id_ed25519", "id_ecdsa", "id_rsa"))]
    for key in candidates:
        pub = key.with_name(key.name + ".pub")
        if key.is_file() and pub.is_file() and " ".join(pub.read_text().split()[:2]) in wanted:
            return key
    return None


def remove_lab_vars(directory: Path, nodes) -> None:
    for node in nodes:
        lab_vars_path(directory, node).unlink(missing_ok=True)
