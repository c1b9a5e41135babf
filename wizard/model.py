"""The site model: network-wide settings, nodes, and how addresses are allocated.

Addresses derive from a node's index alone, and an index is never reused or
changed, so a node keeps its addresses for as long as it exists.
"""

import ipaddress
from dataclasses import dataclass, field

from . import validate
from .errors import MeshsteadError


@dataclass
class Settings:
    site_id: str
    name: str
    domain: str
    country: str
    mesh_mode: str
    mesh_band: str
    mesh_channel: int
    mesh_id: str
    mesh_mtu: int
    overlay: list[str]
    services: list[str]
    ipv4_plan: ipaddress.IPv4Network
    ipv6_ula: ipaddress.IPv6Network
    admin_user: str
    admin_ssh_keys: list[str]
    signing_public_key: str

    @property
    def ipv4_quarters(self) -> list[ipaddress.IPv4Network]:
        return list(self.ipv4_plan.subnets(prefixlen_diff=2))

    @property
    def mesh_ipv4_net(self) -> ipaddress.IPv4Network:
        return self.ipv4_quarters[0]

    @property
    def overlay_ipv4_net(self) -> ipaddress.IPv4Network:
        return self.ipv4_quarters[1]

    @property
    def client_ipv4_net(self) -> ipaddress.IPv4Network:
        return list(self.ipv4_plan.subnets(prefixlen_diff=1))[1]

    def ula_subnet(self, number: int) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network((int(self.ipv6_ula.network_address) + (number << 64), 64))

    @property
    def max_nodes(self) -> int:
        # Network and broadcast addresses, and the last host address: kept for
        # a controller on the mesh LAN (the lab's switch uses it).
        return self.mesh_ipv4_net.num_addresses - 3


@dataclass
class Node:
    name: str
    index: int
    platform: str
    roles: list[str]
    public: dict = field(default_factory=dict)  # public identity, inventory variable names
    has_secrets: bool = True  # False for a node that made its own keys (joined by invite)


@dataclass
class Site:
    settings: Settings
    nodes: dict[str, Node] = field(default_factory=dict)

    def next_index(self) -> int:
        """The smallest index never used; indexes of removed nodes are not
        reused while a higher one exists, so stale peers never meet a stranger."""
        return max((n.index for n in self.nodes.values()), default=0) + 1

    def check_new_node(self, name: str) -> None:
        if name in self.nodes:
            raise MeshsteadError("name", f"a node named {name!r} already exists; expected a new name")
        if self.next_index() > self.settings.max_nodes:
            raise MeshsteadError("ipv4_plan", f"{self.settings.ipv4_plan} holds at most "
                                 f"{self.settings.max_nodes} nodes; expected a larger plan")

    def addresses(self, node: Node) -> dict:
        s = self.settings
        return {
            "node_mesh_ipv4": str(s.mesh_ipv4_net.network_address + node.index),
            "node_mesh_ipv6": str(s.ula_subnet(0).network_address + node.index),
            "node_overlay_ipv4": str(s.overlay_ipv4_net.network_address + node.index),
            "node_overlay_ipv6": str(s.ula_subnet(1).network_address + node.index),
        }

    def fqdn(self, node: Node) -> str:
        return f"{node.name}.{self.settings.domain}"

    def node_facts(self, node: Node) -> dict:
        """Everything public about a node, as inventory variables."""
        return {
            "node_name": node.name,
            "node_index": node.index,
            "node_fqdn": self.fqdn(node),
            "node_platform": node.platform,
            "node_roles": list(node.roles),
            **self.addresses(node),
            **node.public,
        }

    def hubs(self) -> list[Node]:
        return [n for n in self.sorted_nodes() if "hub" in n.roles]

    def sorted_nodes(self) -> list[Node]:
        return sorted(self.nodes.values(), key=lambda n: n.index)


def parse_node(name: str, platform: str, roles) -> tuple[str, str, list[str]]:
    """Validate a node's user-given fields; raise naming the field."""
    try:
        name = validate.dns_label(name)
    except ValueError as exc:
        raise MeshsteadError("name", str(exc)) from None
    try:
        platform = validate.platform(platform)
    except ValueError as exc:
        raise MeshsteadError("platform", str(exc)) from None
    try:
        roles = validate.subset(validate.NODE_ROLES)(roles or [])
    except ValueError as exc:
        raise MeshsteadError("role", str(exc)) from None
    return name, platform, roles
