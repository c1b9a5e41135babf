"""The hub's own record of what it admitted (docs/invites.md):

    lock                      held while a join is decided and recorded
    highest_index             the highest node index this hub has seen in a kit or given
    joined/<name>.yml         the node.yml variables of each node that joined here
    used/<invite id>.yml      node, index and time of each invite used here

Every file is written whole (temporary file, fsync, rename), and a join is
recorded before it is answered: a hub that loses power has either recorded a
join or not answered it."""

import contextlib
import fcntl
import os
from pathlib import Path

import yaml


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class State:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.joined_dir = self.directory / "joined"
        self.used_dir = self.directory / "used"

    def prepare(self) -> None:
        for directory in (self.directory, self.joined_dir, self.used_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        (self.directory / "lock").touch(mode=0o600)

    @contextlib.contextmanager
    def locked(self):
        """One join at a time, across threads and processes: flock locks an
        open file description, and every caller opens its own."""
        with open(self.directory / "lock", "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def joined(self) -> dict:
        nodes = {}
        for path in sorted(self.joined_dir.glob("*.yml")):
            nodes[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
        return nodes

    def used(self, invite_id: str) -> dict | None:
        try:
            return yaml.safe_load((self.used_dir / f"{invite_id}.yml").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def used_all(self) -> dict:
        return {path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))
                for path in sorted(self.used_dir.glob("*.yml"))}

    def export(self) -> dict:
        """What the controller's `node import` reads: the nodes admitted here
        and the invites they used."""
        return {"joined": self.joined(), "used": self.used_all(), "highest_index": self.highest_index()}

    def highest_index(self) -> int:
        try:
            return int((self.directory / "highest_index").read_text())
        except FileNotFoundError:
            return 0

    def note_index(self, index: int) -> None:
        if index > self.highest_index():
            write_atomic(self.directory / "highest_index", f"{index}\n".encode())

    def record(self, node: dict, invite_id: str, at: str) -> None:
        """The node first, then the invite's use: a power cut between them
        leaves the name taken, so the invite cannot admit a second node."""
        write_atomic(self.joined_dir / f"{node['node_name']}.yml",
                     yaml.safe_dump(node, sort_keys=False, allow_unicode=True).encode())
        write_atomic(self.used_dir / f"{invite_id}.yml",
                     yaml.safe_dump({"node": node["node_name"], "index": node["node_index"], "at": at},
                                    sort_keys=False).encode())
        self.note_index(node["node_index"])
