"""SSH host identity: an ed25519 host key, so the site knows every node's key
before the node first boots and host key checking never has to be turned off."""

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate(comment: str) -> tuple[dict, dict]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return ({"ssh_host_ed25519_public_key": f"{public} {comment}",
             "ssh_host_ed25519_fingerprint": fingerprint(public)},
            {"ssh_host_ed25519_private_key": private})


def fingerprint(public_line: str) -> str:
    """SHA256:… exactly as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
