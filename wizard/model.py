"""The site model: network-wide settings, nodes, and how addresses are allocated.

Addresses derive from a node's index alone, and an index is never reused or
changed, so a node keeps its addresses for as long as it exists.
"""

import ipaddress
from dataclasses import dataclass, field, fields

from . import validate
from .errors import MeshsteadError
from .nodeside import module

_addresses = module("addresses")
_removed = module("removed")


def _setting(var: str, *, answer: str | None = None, load=str, to_answer=None, from_answer=None,
             missing=None):
    """A site setting: its inventory variable, the question that answers it
    (if any), and how to read it back from YAML. `missing` gives the value for
    a site written before the setting existed, from the settings read so far."""
    return field(metadata={"var": var, "answer": answer, "load": load, "missing": missing,
                           "to_answer": to_answer or (lambda v: v), "from_answer": from_answer or (lambda v: v)})


def _dump(value):
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    return list(value) if isinstance(value, list) else value


@dataclass
class Settings:
    """Network-wide settings, declared once: the wizard fills them from answers,
    the inventory writer dumps them as variables, the loader reads them back."""
    site_id: str = _setting("meshstead_site_id")
    name: str = _setting("site_name", answer="name")
    domain: str = _setting("site_domain", answer="domain")
    country: str = _setting("site_country", answer="country")
    mesh_mode: str = _setting("site_mesh_mode", answer="mesh_mode")
    mesh_band: str = _setting("site_mesh_band", answer="mesh_band")
    mesh_channel: int = _setting("site_mesh_channel", answer="mesh_channel", load=int)
    mesh_id: str = _setting("site_mesh_id", answer="mesh_id")
    mesh_mtu: int = _setting("site_mesh_mtu", answer="mesh_mtu", load=int)
    # Sites made before the nodes had access points: named after the site.
    ap_ssid: str = _setting("site_ap_ssid", answer="ap_ssid", missing=lambda s: s["name"][:32])
    overlay: list[str] = _setting("site_overlay", answer="overlay", load=list)
    services: list[str] = _setting("site_services", answer="services", load=list)
    ipv4_plan: ipaddress.IPv4Network = _setting("site_ipv4_plan", answer="ipv4_plan", load=ipaddress.IPv4Network)
    ipv6_ula: ipaddress.IPv6Network = _setting("site_ipv6_ula", answer="ipv6_ula", load=ipaddress.IPv6Network)
    admin_user: str = _setting("site_admin_user", answer="admin_user")
    # One key is asked for; more may be kept (the first is the answer shown).
    admin_ssh_keys: list[str] = _setting("site_admin_ssh_keys", answer="admin_ssh_key", load=list,
                                         to_answer=lambda keys: keys[0], from_answer=lambda key: [key])
    signing_public_key: str = _setting("site_signing_public_key")

    @classmethod
    def from_answers(cls, answers: dict, **fixed) -> "Settings":
        values = {f.name: f.metadata["from_answer"](answers[f.metadata["answer"]])
                  for f in fields(cls) if f.metadata["answer"]}
        return cls(**values, **fixed)

    def to_answers(self) -> dict:
        return {f.metadata["answer"]: f.metadata["to_answer"](getattr(self, f.name))
                for f in fields(self) if f.metadata["answer"]}

    def to_vars(self) -> dict:
        return {f.metadata["var"]: _dump(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_vars(cls, raw: dict) -> "Settings":
        """Raises KeyError, ValueError or TypeError on a damaged file."""
        values: dict = {}
        for f in fields(cls):
            var, missing = f.metadata["var"], f.metadata["missing"]
            values[f.name] = missing(values) if var not in raw and missing else f.metadata["load"](raw[var])
        return cls(**values)

    # The arithmetic is the join package's (wizard/nodeside.py): a hub that
    # admits a node by invite computes the same addresses.
    @property
    def mesh_ipv4_net(self) -> ipaddress.IPv4Network:
        return _addresses.mesh_ipv4_net(self.ipv4_plan)

    @property
    def overlay_ipv4_net(self) -> ipaddress.IPv4Network:
        return _addresses.overlay_ipv4_net(self.ipv4_plan)

    @property
    def client_ipv4_net(self) -> ipaddress.IPv4Network:
        return _addresses.client_ipv4_net(self.ipv4_plan)

    def client_subnet(self, index: int) -> ipaddress.IPv4Network | None:
        return _addresses.client_subnet(self.ipv4_plan, index)

    def ula_subnet(self, number: int) -> ipaddress.IPv6Network:
        return _addresses.ula_subnet(self.ipv6_ula, number)

    @property
    def max_nodes(self) -> int:
        return _addresses.max_nodes(self.ipv4_plan)


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
    invites: list = field(default_factory=list)  # wizard.invites.record.InviteRecord, oldest first
    # Removed nodes as group_vars/all/removed.yml holds them (meshstead_join.removed).
    removed: dict = field(default_factory=dict)

    def next_index(self) -> int:
        """An index a removed node freed with --reuse-address (the lowest), else
        one above every index ever given: other indexes of removed nodes are
        never given again, so stale peers never meet a stranger at an old address."""
        taken = {n.index for n in self.nodes.values()}
        freed = sorted(_removed.indexes(self.removed, reusable=True) - taken)
        if freed:
            return freed[0]
        return max(taken | _removed.indexes(self.removed), default=0) + 1

    def check_new_node(self, name: str) -> None:
        if name in self.nodes:
            raise MeshsteadError("name", f"a node named {name!r} already exists; expected a new name")
        if self.next_index() > self.settings.max_nodes:
            raise MeshsteadError("ipv4_plan", f"{self.settings.ipv4_plan} holds at most "
                                 f"{self.settings.max_nodes} nodes; expected a larger plan")

    def check_keys(self, name: str, public: dict) -> None:
        """A removed node's keys never come back, for any node."""
        found = _removed.clash(public, self.removed)
        if found:
            raise MeshsteadError(found[1], f"node {name} has a key of {found[0]}, a removed node; expected "
                                 "keys no removed node had (a removed node's keys never come back)")

    def addresses(self, node: Node) -> dict:
        return _addresses.node_addresses(self.settings.ipv4_plan, self.settings.ipv6_ula, node.index)

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
