"""The admin key of demo and lab sites: the user's own, else one made for demos."""

import os
import subprocess
from pathlib import Path

from .errors import MeshsteadError


def admin_key() -> str:
    """Path of a public key: ~/.ssh's if there is one, else a demo key kept with meshstead's config."""
    from .questions import find_ssh_key
    found = find_ssh_key()
    if found:
        return found
    key = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "meshstead" / "demo" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshstead-demo",
                                   "-f", str(key)], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise MeshsteadError("ssh-keygen", "not found; expected OpenSSH's client tools installed "
                                 "(Debian: openssh-client), or a key in ~/.ssh") from None
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise MeshsteadError("ssh-keygen", f"could not make a demo key in {key.parent} ({detail})")
    return str(key) + ".pub"
