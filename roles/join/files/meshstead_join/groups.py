"""Which inventory groups a node is in (docs/inventory.md's hosts.yml): one
copy for the wizard, which renders a site's hosts.yml with it, and for a node
that joins, which adds itself (and the nodes joined at its hub) to the hosts
its hub sent, so its seed's inventory lists it as the controller would."""

DEBIAN_PLATFORMS = ("rpi3", "rpi4", "rpi5", "pizero2w", "amd64")  # the rest are openwrt:<target>/<profile>
ROLE_GROUPS = {"hub": "hubs", "gateway": "gateways", "dns": "dns_servers"}
SERVICE_GROUPS = {"syncthing": "syncthing_nodes", "nncp": "nncp_nodes", "portal": "portal_nodes",
                  "mail": "mail_nodes"}
GROUPS = ("debian", "openwrt", *ROLE_GROUPS.values(), "tinc_nodes", "yggdrasil_nodes", *SERVICE_GROUPS.values())


def empty() -> dict:
    """A hosts.yml with every group and no host (an empty group is `{}`)."""
    return {"all": {"children": {name: {} for name in GROUPS}}}


def node_groups(platform: str, roles, overlay, services) -> list[str]:
    """The groups of a node of `platform` with `roles`, on a site that runs
    the `overlay` networks and the `services`."""
    names = ["debian" if platform in DEBIAN_PLATFORMS else "openwrt"]
    names += [ROLE_GROUPS[role] for role in roles]
    names += [f"{network}_nodes" for network in overlay]
    names += [SERVICE_GROUPS[service] for service in services]
    return names


def add_host(hosts: dict, name: str, platform: str, roles, overlay, services) -> dict:
    """Add the node to `hosts` (a hosts.yml mapping, changed in place and
    returned); a group the mapping lacks is made."""
    children = hosts.setdefault("all", {}).setdefault("children", {})
    for group in node_groups(platform, roles, overlay, services):
        entry = children.get(group) or {}
        children[group] = entry
        members = entry.get("hosts") or {}
        entry["hosts"] = members
        members[name] = None
    return hosts


def listed(group) -> set:
    """Every host of a hosts.yml group and of its children."""
    if not isinstance(group, dict):
        return set()
    names = set(group.get("hosts") or {})
    for child in (group.get("children") or {}).values():
        names |= listed(child)
    return names


def members(hosts: dict, name: str) -> set:
    """The hosts of group `name` of a hosts.yml mapping (none if it lacks the group)."""
    children = ((hosts or {}).get("all") or {}).get("children") or {}
    return listed(children.get(name))
