"""ansible.tar.gz: the roles and playbook a node applies its seed with
(docs/seed.md), packed from an Ansible home (the directory holding
ansible.cfg, playbooks/, roles/ and plugins/).

One packer for the controller (image seeds, through wizard/images/seed.py) and
the hubs (the join role packs the roles a hub was provisioned with into its
kit, and the hub hands them to the nodes that join). The same files give the
same bytes: names sorted, owners, times and the gzip header fixed, so an
unchanged site leaves a hub's kit unchanged."""

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

CONTENT = ("ansible.cfg", "playbooks", "roles", "plugins")
FILE = "ansible.tar.gz"


def _skipped(relative: Path) -> bool:
    parts = relative.parts
    return "__pycache__" in parts or "molecule" in parts or any(p.startswith(".") for p in parts)


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if info.isfile():
        with open(path, "rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)


def pack(home: Path) -> bytes:
    home = Path(home)
    missing = [name for name in CONTENT if not (home / name).exists()]
    if missing:
        raise FileNotFoundError(f"{home} has no {', '.join(missing)}; expected an Ansible home with "
                                f"{', '.join(CONTENT)}")
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in CONTENT:
            root = home / top
            paths = [root] + (sorted(root.rglob("*")) if root.is_dir() else [])
            for path in paths:
                relative = path.relative_to(home)
                if not _skipped(relative):
                    _add(tar, path, relative.as_posix())
    return raw.getvalue()


def looks_packed(data: bytes) -> bool:
    """Gzip's magic: what a kit and an answer check their roles by before a node unpacks them."""
    return data[:2] == b"\x1f\x8b"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
