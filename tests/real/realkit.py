"""Helpers shared by the real-program tests and their conftest (tests/real is on sys.path)."""

import hashlib
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODES = ("hub1", "n2", "n3")
# Where the syncthing role puts the node's certificate (syncthing_config_dir).
SYNCTHING_DIR = "var/lib/syncthing/.config/syncthing"


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 (and mode) of every file under root, by relative path."""
    return {str(p.relative_to(root)): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_mode:o}"
            for p in sorted(root.rglob("*")) if p.is_file()}
