"""Atomic, all-or-nothing writes of a set of files."""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FileChange:
    path: Path
    content: bytes
    mode: int
    action: str  # "create" or "update"


def plan_writes(root: Path, files: dict[str, tuple[bytes, int]], unchanged=None) -> list[FileChange]:
    """Compare wanted files with disk; ``unchanged(path, content)`` may declare a
    file equal by meaning (vault files differ byte-wise on every encryption)."""
    changes = []
    for rel, (content, mode) in sorted(files.items()):
        path = root / rel
        if path.exists():
            current = path.read_bytes()
            if current == content or (unchanged and unchanged(path, current, content)):
                continue
            changes.append(FileChange(path, content, mode, "update"))
        else:
            changes.append(FileChange(path, content, mode, "create"))
    return changes


def apply_writes(changes: list[FileChange]) -> None:
    """Write every file to a temporary sibling first, then rename them all:
    a failure before the renames leaves the old files untouched."""
    old_umask = os.umask(0o077)
    temps: list[tuple[str, Path]] = []
    made_dirs: list[Path] = []
    try:
        for change in changes:
            for parent in reversed(change.path.parents):
                if not parent.exists():
                    parent.mkdir(mode=0o755 if change.mode & 0o044 else 0o700)
                    made_dirs.append(parent)
            fd, tmp = tempfile.mkstemp(dir=change.path.parent, prefix=f".{change.path.name}.")
            temps.append((tmp, change.path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(change.content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, change.mode)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        for directory in reversed(made_dirs):
            try:
                directory.rmdir()
            except OSError:
                pass
        raise
    finally:
        os.umask(old_umask)
    for tmp, path in temps:
        os.replace(tmp, path)
