"""The node lab: real Debian bookworm nodes (systemd, sshd, own network) on this host.

    lab = Lab("demo")
    conn = lab.up([LabNodeSpec("node1", ipv4="10.42.0.1/18")], progress=print)
    lab.exec("node1", ["hostname"])
    lab.down()

Needs root.  Modules: rootfs (cached base tree), aptrepo (local package repo),
netns (switch namespace), container (nspawn nodes), ssh (keys, known_hosts,
ProxyCommand), state (state.json), base (what every lab kind shares: its
directory, lock and node connections), lab (the orchestration); radio/ is the
QEMU backend with simulated radios (RadioLab); open_lab picks the right one.
"""

from typing import Any

from . import state
from .errors import LabError
from .lab import Lab, LabNodeSpec


def open_lab(name: str, **kwargs: Any) -> Any:
    """The existing lab `name` as the kind its state.json records: a container
    Lab (no "kind" key) or a radio lab (radio.RadioLab, "kind": "radio")."""
    kind = state.load(state.lab_root() / name / "state.json", name).get("kind", "container")
    if kind == "radio":
        from .radio import RadioLab  # the QEMU backend only when a radio lab exists

        return RadioLab(name, **kwargs)
    if kind != "container":
        raise LabError(f"lab {name}: unknown kind {kind!r} in its state.json")
    return Lab(name, **kwargs)


__all__ = ["Lab", "LabError", "LabNodeSpec", "open_lab"]
