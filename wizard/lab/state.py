"""Where a lab keeps its files, and its state.json (written atomically).

The state file records every PID, namespace and directory `up` created, so
`down` removes exactly those and nothing else, even after a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def lab_root() -> Path:
    return Path(os.environ.get("MESHSTEAD_LAB_ROOT", "/var/lib/meshstead/lab"))


def empty_state(name: str) -> dict[str, Any]:
    return {"format": 1, "name": name, "netns": None, "nodes": {}, "probes": {}}


def load(path: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return empty_state(name)


def save(path: Path, state: dict[str, Any]) -> None:
    """Write temp file, fsync, rename: a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
