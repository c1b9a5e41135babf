"""tinc 1.0 identity: an RSA key pair (tinc 1.0 knows no other key type)."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048  # what `tincd -K` makes by default


def generate() -> tuple[dict, dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, "RSA PRIVATE KEY"
        serialization.NoEncryption(),
    ).decode()
    return {"tinc_public_key": public_pem(key.public_key())}, {"tinc_private_key": private_pem}


def public_pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
