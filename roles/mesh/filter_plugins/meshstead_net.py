"""Address arithmetic for the mesh role, with Python's ipaddress (ansible-core
has no ipaddr filter without an extra collection)."""

import ipaddress


def meshstead_host(network, n):
    """The n-th address of `network` (negative: from the end, -1 = broadcast)."""
    return str(ipaddress.ip_network(str(network))[int(n)])


def meshstead_netmask(network):
    return str(ipaddress.ip_network(str(network)).netmask)


def meshstead_client_routes(hostvars, hosts):
    """A route to each of `hosts`' access point subnets through its mesh
    address: [{destination, gateway}], for hosts that have both."""
    routes = []
    for host in hosts:
        node = hostvars[host]
        if "node_client_ipv4_net" in node and "node_mesh_ipv4" in node:
            routes.append({"destination": str(node["node_client_ipv4_net"]),
                           "gateway": str(node["node_mesh_ipv4"])})
    return routes


class FilterModule:
    def filters(self):
        return {"meshstead_host": meshstead_host, "meshstead_netmask": meshstead_netmask,
                "meshstead_client_routes": meshstead_client_routes}
