"""NNCP identity: X25519 exchange and noise keys, an Ed25519 signing key.

The node id is BLAKE2b-256 of the signing public key; every key is base32
without padding. The signing private key is seed ‖ public (64 bytes).
"""

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .encoding import b32_nopad

_RAW_PUBLIC = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_RAW_PRIVATE = (serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def _x25519() -> tuple[str, str]:
    key = X25519PrivateKey.generate()
    return b32_nopad(key.public_key().public_bytes(*_RAW_PUBLIC)), b32_nopad(key.private_bytes(*_RAW_PRIVATE))


def generate() -> tuple[dict, dict]:
    exchpub, exchprv = _x25519()
    noisepub, noiseprv = _x25519()
    sign = Ed25519PrivateKey.generate()
    signpub_raw = sign.public_key().public_bytes(*_RAW_PUBLIC)
    public = {
        "nncp_id": node_id(signpub_raw),
        "nncp_exchpub": exchpub,
        "nncp_signpub": b32_nopad(signpub_raw),
        "nncp_noisepub": noisepub,
    }
    private = {
        "nncp_exchprv": exchprv,
        "nncp_signprv": b32_nopad(sign.private_bytes(*_RAW_PRIVATE) + signpub_raw),
        "nncp_noiseprv": noiseprv,
    }
    return public, private


def node_id(signpub: bytes) -> str:
    return b32_nopad(hashlib.blake2b(signpub, digest_size=32).digest())
