"""How a node's addresses follow from the site's plans and its index: the one
implementation, for the wizard (wizard/model.py) and for a hub that admits a
node by invite, so both give a node the same addresses.

An index is never reused or changed, so a node keeps its addresses for as long
as it exists. docs/inventory.md describes the plan."""

import ipaddress

# Clients of a node's access point: the site's client range is cut into this
# many equal subnets, and node index i takes subnet i (index 0 is never used).
CLIENT_SUBNETS = 128


def mesh_ipv4_net(plan: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The plan's first quarter: node addresses on the mesh (or LAN) interface."""
    return next(plan.subnets(prefixlen_diff=2))


def overlay_ipv4_net(plan: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The second quarter: node addresses inside tinc."""
    return ipaddress.IPv4Network((int(plan.network_address) + plan.num_addresses // 4, plan.prefixlen + 2))


def client_ipv4_net(plan: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The second half: the nodes' client networks."""
    return ipaddress.IPv4Network((int(plan.network_address) + plan.num_addresses // 2, plan.prefixlen + 1))


def client_subnet(plan: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network | None:
    """Node `index`'s share of the client range (its access point's DHCP
    subnet); None for an index past the last share."""
    if not 0 <= index < CLIENT_SUBNETS:
        return None
    whole = client_ipv4_net(plan)
    size = whole.num_addresses // CLIENT_SUBNETS
    return ipaddress.IPv4Network((int(whole.network_address) + index * size,
                                  whole.prefixlen + CLIENT_SUBNETS.bit_length() - 1))


def ula_subnet(ula: ipaddress.IPv6Network, number: int) -> ipaddress.IPv6Network:
    """/64 number `number` of the site's ULA /48: 0 the mesh, 1 the overlay."""
    return ipaddress.IPv6Network((int(ula.network_address) + (number << 64), 64))


def max_nodes(plan: ipaddress.IPv4Network) -> int:
    # Network and broadcast addresses, and the last host address: kept for
    # a controller on the mesh LAN (the lab's switch uses it).
    return mesh_ipv4_net(plan).num_addresses - 3


def node_addresses(plan: ipaddress.IPv4Network, ula: ipaddress.IPv6Network, index: int) -> dict:
    """The node.yml address variables of node `index`."""
    addresses = {
        "node_mesh_ipv4": str(mesh_ipv4_net(plan).network_address + index),
        "node_mesh_ipv6": str(ula_subnet(ula, 0).network_address + index),
        "node_overlay_ipv4": str(overlay_ipv4_net(plan).network_address + index),
        "node_overlay_ipv6": str(ula_subnet(ula, 1).network_address + index),
    }
    client = client_subnet(plan, index)
    if client is not None:
        addresses["node_client_ipv4_net"] = str(client)
    return addresses
