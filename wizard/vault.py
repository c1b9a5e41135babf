"""ansible-vault files, encrypted in-process with Ansible's own library, and the
vault password file, kept outside the site directory."""

import os
import secrets
from pathlib import Path

import yaml
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, VaultSecret

from .errors import MeshsteadError


def default_password_file(site_id: str) -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "meshstead" / "vault" / f"{site_id}.pass"


def password_file(site_id: str, override: str | None = None) -> Path:
    chosen = override or os.environ.get("MESHSTEAD_VAULT_PASSWORD_FILE")
    return Path(chosen).expanduser() if chosen else default_password_file(site_id)


def new_password() -> bytes:
    return secrets.token_urlsafe(32).encode()


def write_password_file(path: Path, password: bytes) -> None:
    """0600 in a 0700 directory; never overwrites an existing file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(password + b"\n")


class Vault:
    def __init__(self, password: bytes, path: Path | None = None):
        self.path = path
        self.password = password
        self._lib = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])

    @classmethod
    def from_file(cls, path: Path) -> "Vault":
        try:
            password = path.read_bytes().strip()
        except OSError as exc:
            raise MeshsteadError("vault_password_file", f"cannot read {path} ({exc.strerror}); expected the "
                                 "site's vault password file (see --vault-password-file)") from None
        if not password:
            raise MeshsteadError("vault_password_file", f"{path} is empty; expected the site's vault password")
        return cls(password, path)

    def encrypt(self, data: dict) -> bytes:
        return self._lib.encrypt(yaml.safe_dump(data, sort_keys=True)) if data else b""

    def decrypt(self, path: Path) -> dict:
        try:
            plain = self._lib.decrypt(path.read_bytes())
        except (AnsibleError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MeshsteadError(str(path), f"cannot decrypt ({first}); expected a vault file "
                                 "readable with the site's vault password") from None
        data = yaml.safe_load(plain)
        if not isinstance(data, dict):
            raise MeshsteadError(str(path), "decrypted to something other than a mapping; the file is damaged")
        return data

    def same_content(self, path: Path, current: bytes, wanted: bytes) -> bool:
        """Vault ciphertext is salted: compare by meaning so re-runs change nothing."""
        try:
            return yaml.safe_load(self._lib.decrypt(current)) == yaml.safe_load(self._lib.decrypt(wanted))
        except (AnsibleError, ValueError):
            return False
