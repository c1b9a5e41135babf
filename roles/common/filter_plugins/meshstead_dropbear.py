"""The site's SSH host key in dropbear's own format, for OpenWrt routers.

dropbear reads neither OpenSSH keys nor PEM (only its dropbearconvert does,
which OpenWrt does not install): an ed25519 host key file is the string
"ssh-ed25519" then a string of the 32-byte seed and the 32-byte public key,
each string a 4-byte big-endian length and the bytes (dropbear's
buf_put_ed25519_priv_key)."""

import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def dropbear_ed25519(openssh_private_key: str) -> bytes:
    key = serialization.load_ssh_private_key(str(openssh_private_key).strip().encode() + b"\n", password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("expected an OpenSSH ed25519 private key")
    raw = serialization.Encoding.Raw
    seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return _string(b"ssh-ed25519") + _string(seed + public)


def meshstead_dropbear_ed25519_printf(openssh_private_key: str) -> str:
    """The key file as a POSIX printf format of octal escapes only (no % and no
    quote in it), so a first-boot shell script can write the binary file."""
    return "".join(f"\\{byte:03o}" for byte in dropbear_ed25519(openssh_private_key))


class FilterModule:
    def filters(self):
        return {"meshstead_dropbear_ed25519_printf": meshstead_dropbear_ed25519_printf}
