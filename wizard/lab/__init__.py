"""The node lab: real Debian bookworm nodes (systemd, sshd, own network) on this host.

    lab = Lab("demo")
    conn = lab.up([LabNodeSpec("node1", ipv4="10.42.0.1/18")], progress=print)
    lab.exec("node1", ["hostname"])
    lab.down()

Needs root.  Modules: rootfs (cached base tree), aptrepo (local package repo),
netns (switch namespace), container (nspawn nodes), ssh (keys, known_hosts,
ProxyCommand), state (state.json), lab (the orchestration).
"""

from .errors import LabError
from .lab import Lab, LabNodeSpec

__all__ = ["Lab", "LabError", "LabNodeSpec"]
