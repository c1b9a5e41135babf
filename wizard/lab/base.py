"""What every kind of lab shares: its name, its directory with state.json and
the lock, and the SSH connection vars of its nodes.

Lab (node containers) and radio.RadioLab (a QEMU guest) build on LabBase.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import ssh, state
from .errors import LabError

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
SSH_TIMEOUT = 180.0  # generous: a busy 2-core CI host boots nodes slowly


def _check_label(kind: str, value: str, maxlen: int) -> None:
    if len(value) > maxlen or not LABEL.match(value):
        raise LabError(f"{kind} {value!r} must be a DNS label of at most {maxlen} characters "
                       "(a-z, 0-9, '-')")


class LabBase:
    """A named lab whose state lives in $MESHSTEAD_LAB_ROOT/<name>/
    (default /var/lib/meshstead/lab), reached through the switch namespace
    mslab-<name>."""

    def __init__(self, name: str = "default", ssh_timeout: float = SSH_TIMEOUT) -> None:
        _check_label("lab name", name, 20)
        self.name = name
        self.ssh_timeout = ssh_timeout
        self.dir = state.lab_root() / name
        self.state_file = self.dir / "state.json"
        self.known_hosts = self.dir / "known_hosts"
        self.netns = f"mslab-{name}"

    def _load(self) -> dict[str, Any]:
        return state.load(self.state_file, self.name)

    def _save(self, st: dict[str, Any]) -> None:
        state.save(self.state_file, st)

    @contextmanager
    def _locked(self, create: bool = True) -> Iterator[bool]:
        """Serialise operations on this lab (two `up`s must not race)."""
        if not self.dir.exists():
            if not create:
                yield False
                return
            self.dir.mkdir(parents=True, mode=0o700)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield True

    def _node(self, st: dict[str, Any], node: str) -> dict[str, Any]:
        try:
            return st["nodes"][node]
        except KeyError:
            raise LabError(f"lab {self.name} has no node {node!r}") from None

    def _conn(self, st: dict[str, Any], node: str) -> dict[str, str]:
        return {
            "ansible_host": st["nodes"][node]["address"],
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.dir / "id_ed25519"),
            "ansible_ssh_common_args": ssh.common_args(self.netns, self.known_hosts),
        }

    def connection(self, node: str) -> dict[str, str]:
        """Connection vars for one node of an existing lab."""
        st = self._load()
        self._node(st, node)
        return self._conn(st, node)
