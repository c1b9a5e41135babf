"""A joining node's own keys (docs/invites.md): made on the node, once, and
kept in its join state directory; only their public halves are ever sent.

    <state>/keys.yml    public: and private: variables, mode 0600, written whole

Made once: a retry after a failed join (no hub answered, a refusal) sends the
same public identity, and a hub that recorded it holds the keys the node has.
A keys file that cannot be read is an error, never a reason to make new keys."""

import contextlib
import fcntl
import os
from pathlib import Path

import yaml

from . import identity
from .keys import PRIVATE_NODE_VARS, node
from .state import write_atomic

KEYS_FILE = "keys.yml"


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
