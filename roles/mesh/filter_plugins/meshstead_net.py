"""Address arithmetic for the mesh role, with Python's ipaddress (ansible-core
has no ipaddr filter without an extra collection)."""

import ipaddress


def meshstead_host(network, n):
    """The n-th address of `network` (negative: from the end, -1 = broadcast)."""
    return str(ipaddress.ip_network(str(network))[int(n)])


def meshstead_netmask(network):
    return str(ipaddress.ip_network(str(network)).netmask)


class FilterModule:
    def filters(self):
        return {"meshstead_host": meshstead_host, "meshstead_netmask": meshstead_netmask}
