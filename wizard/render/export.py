"""A node's identity as the files each real program reads.

Paths inside the export are self-contained (spool, log, tinc scripts), so the
exported tree runs as it is; the roles render the same data for installed nodes."""

import json

from ..identity import tinc
from ..model import Node, Site

PRIVATE = 0o600
PUBLIC = 0o644
SCRIPT = 0o755
YGGDRASIL_PORT = 12345
NNCP_PORT = 5400


def _overlay_address(site: Site, facts: dict) -> str:
    if "tinc" in site.settings.overlay:
        return facts["node_overlay_ipv4"]
    return f"[{facts['yggdrasil_address']}]"


def yggdrasil_conf(site: Site, node: Node, secrets: dict) -> dict:
    hubs = [site.node_facts(h) for h in site.hubs() if h.name != node.name]
    return {
        "PrivateKey": secrets["yggdrasil_private_key"],
        "Peers": [f"tcp://{h['node_mesh_ipv4']}:{YGGDRASIL_PORT}" for h in hubs],
        "Listen": [f"tcp://[::]:{YGGDRASIL_PORT}"],
        "AdminListen": "none",
        "MulticastInterfaces": [],
        "AllowedPublicKeys": [n.public["yggdrasil_public_key"] for n in site.sorted_nodes()],
        "IfName": "auto",
        "IfMTU": 65535,
        "NodeInfoPrivacy": True,
        "NodeInfo": {"name": node.name},
    }


def nncp_conf(site: Site, node: Node, secrets: dict, base: str) -> dict:
    facts = site.node_facts(node)
    neigh = {}
    for other in site.sorted_nodes():
        if other.name == node.name:
            continue
        of = site.node_facts(other)
        neigh[other.name] = {
            "id": of["nncp_id"], "exchpub": of["nncp_exchpub"], "signpub": of["nncp_signpub"],
            "noisepub": of["nncp_noisepub"],
            "addrs": {"overlay": f"{_overlay_address(site, of)}:{NNCP_PORT}"},
            "incoming": f"{base}/nncp/incoming/{other.name}",
        }
    neigh["self"] = {"id": facts["nncp_id"], "exchpub": facts["nncp_exchpub"],
                     "signpub": facts["nncp_signpub"], "noisepub": facts["nncp_noisepub"]}
    return {
        "spool": f"{base}/nncp/spool",
        "log": f"{base}/nncp/log",
        "umask": "022",
        "self": {"id": facts["nncp_id"], "exchpub": facts["nncp_exchpub"], "exchprv": secrets["nncp_exchprv"],
                 "signpub": facts["nncp_signpub"], "signprv": secrets["nncp_signprv"],
                 "noisepub": facts["nncp_noisepub"], "noiseprv": secrets["nncp_noiseprv"]},
        "neigh": neigh,
    }


def tinc_files(site: Site, node: Node, secrets: dict) -> dict:
    net = site.settings.name
    s = site.settings
    facts = site.node_facts(node)
    hubs = [h for h in site.hubs() if h.name != node.name] or (
        [] if node.index == min(n.index for n in site.nodes.values()) else [site.sorted_nodes()[0]])
    conf = [f"Name = {tinc.node_name(node.name)}", "Mode = router", "AddressFamily = any",
            f"Interface = tinc-{net[:10]}"] + [f"ConnectTo = {tinc.node_name(h.name)}" for h in hubs]
    files = {
        f"tinc/{net}/tinc.conf": ("\n".join(conf) + "\n", PUBLIC),
        f"tinc/{net}/rsa_key.priv": (secrets["tinc_private_key"], PRIVATE),
        f"tinc/{net}/tinc-up": (
            "#!/bin/sh\n"
            f"ip addr add {facts['node_overlay_ipv4']}/{s.overlay_ipv4_net.prefixlen} dev \"$INTERFACE\"\n"
            f"ip addr add {facts['node_overlay_ipv6']}/64 dev \"$INTERFACE\"\n"
            "ip link set \"$INTERFACE\" up\n", SCRIPT),
        f"tinc/{net}/tinc-down": ("#!/bin/sh\nip link set \"$INTERFACE\" down\n", SCRIPT),
    }
    for other in site.sorted_nodes():
        of = site.node_facts(other)
        address = of["node_mesh_ipv4"] if "hub" in other.roles or other in hubs else None
        files[f"tinc/{net}/hosts/{tinc.node_name(other.name)}"] = (tinc.host_file(
            of["tinc_public_key"], [f"{of['node_overlay_ipv4']}/32", f"{of['node_overlay_ipv6']}/128"],
            address), PUBLIC)
    return files


def export(site: Site, node: Node, secrets: dict, base: str) -> dict:
    """{relative path: (text, mode)} for one node; ``base`` is the export's absolute path."""
    facts = site.node_facts(node)
    files = {
        "yggdrasil.conf": (json.dumps(yggdrasil_conf(site, node, secrets), indent=2) + "\n", PRIVATE),
        "syncthing/cert.pem": (facts["syncthing_cert"], PUBLIC),
        "syncthing/key.pem": (secrets["syncthing_key"], PRIVATE),
        "nncp.hjson": (json.dumps(nncp_conf(site, node, secrets, base), indent=2) + "\n", PRIVATE),
        # NNCP refuses to run without an existing spool directory ("Can not stat spool").
        "nncp/spool/.keep": ("", PRIVATE),
        "ssh/ssh_host_ed25519_key": (secrets["ssh_host_ed25519_private_key"], PRIVATE),
        "ssh/ssh_host_ed25519_key.pub": (facts["ssh_host_ed25519_public_key"] + "\n", PUBLIC),
    }
    files.update(tinc_files(site, node, secrets))
    return files
