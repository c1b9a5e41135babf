"""A joining node's own keys (docs/invites.md): made on the node, once, and
kept in its join state directory; only their public halves are ever sent.

    <state>/keys.yml    public: and private: variables, mode 0600, written whole
    <state>/local.yml   the node's own settings it joined with (the card's local.yml), if any

A controller's inventory holds neither: the node's runs of the roles from
the slice a provision sends it add them (own_vars(), the roster applier).

Made once: a retry after a failed join (no hub answered, a refusal) sends the
same public identity, and a hub that recorded it holds the keys the node has.
A keys file that cannot be read is an error, never a reason to make new keys."""

import contextlib
import fcntl
import os
import re
from pathlib import Path

import yaml

from . import identity
from .keys import PRIVATE_NODE_VARS, PUBLIC_NODE_VARS, node
from .state import write_atomic

KEYS_FILE = "keys.yml"
LOCAL_FILE = "local.yml"


class KeysError(Exception):
    """The kept keys cannot be used; one line naming the file."""


@contextlib.contextmanager
def _locked(directory: Path):
    """Two joins started at once make one set of keys."""
    with open(os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600), "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def read(directory: Path) -> tuple[dict, dict]:
    path = Path(directory) / KEYS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        public, private = data["public"], data["private"]
        public = identity.check(public)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, KeyError, identity.IdentityError) as exc:
        raise KeysError(f"{path} cannot be used ({exc}); expected the keys this node made (move it away only "
                        "if the node never joined with them)") from None
    if not isinstance(private, dict) or set(private) != set(PRIVATE_NODE_VARS):
        raise KeysError(f"{path} does not hold every private key ({', '.join(PRIVATE_NODE_VARS)})")
    return public, private


def load_or_make(directory: Path, label: str) -> tuple[dict, dict, bool]:
    """(public, private, made now). `label` names the node in the keys'
    comments (the SSH key's, the join certificate's name): the invite's
    name, since the site's domain arrives only with the answer."""
    directory = prepare(directory)
    with _locked(directory):
        if (directory / KEYS_FILE).exists():
            return (*read(directory), False)
        public, private = node.generate(label)
        data = yaml.safe_dump({"public": public, "private": private}, sort_keys=False, allow_unicode=True)
        write_atomic(directory / KEYS_FILE, data.encode(), 0o600)
        return public, private, True


def keep_local(directory: Path, local: dict | None) -> None:
    """Keep the settings the node joined with beside its keys (none: none kept)."""
    path = Path(directory) / LOCAL_FILE
    if local:
        write_atomic(path, yaml.safe_dump(local, sort_keys=True).encode(), 0o644)
    else:
        path.unlink(missing_ok=True)


def read_local(path: Path) -> dict:
    """The node's own settings: a YAML mapping of variable names, as a
    controller's host_vars/<node>/local.yml; never its identity. OSError,
    UnicodeDecodeError, yaml.YAMLError, or ValueError naming the problem."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", k)
                                             for k in data):
        raise ValueError(f"{path} is not a YAML mapping of variable names")
    taken = sorted(k for k in data if k in {*PUBLIC_NODE_VARS, *PRIVATE_NODE_VARS} or k.startswith("node_"))
    if taken:
        raise ValueError(f"{path} sets {taken[0]}, which the node's identity or the hub decides")
    return data


def own_vars(directory: Path) -> dict:
    """The variables a node that made its own keys adds to each run of the
    roles on it: its settings, then its private keys (under the roles'
    names). {} on a node whose keys came with its seed or a provision.
    KeysError if they are there and cannot be read."""
    directory = Path(directory)
    if not (directory / KEYS_FILE).is_file():
        return {}
    _public, private = read(directory)
    path = directory / LOCAL_FILE
    try:
        local = read_local(path) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
        raise KeysError(f"{path} cannot be used ({exc}); expected the node's own settings") from None
    return {**local, **private}
