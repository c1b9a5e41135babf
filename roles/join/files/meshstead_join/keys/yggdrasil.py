"""Yggdrasil identity: an ed25519 key; the node's address is derived from it.

The private key format (hex of seed ‖ public key) is read by 0.4 and 0.5 alike.
"""

import ipaddress

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate() -> tuple[dict, dict]:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(*_RAW)
    return public_facts(public), {"yggdrasil_private_key": (seed + public).hex()}


def public_facts(public: bytes) -> dict:
    address = address_for_key(public)
    return {
        "yggdrasil_public_key": public.hex(),
        "yggdrasil_address": str(address),
        "yggdrasil_subnet": str(subnet_for_key(public)),
    }


def public_key_from_private(private_hex: str) -> bytes:
    return bytes.fromhex(private_hex)[32:]


def address_for_key(public: bytes) -> ipaddress.IPv6Address:
    """Invert the key's bits; count and drop the leading ones and the 0 after
    them; the address is 0x02, that count, then the next 14 bytes of bits."""
    bits = int.from_bytes(bytes(~b & 0xFF for b in public), "big")
    width = len(public) * 8
    ones = 0
    while ones < width and bits >> (width - 1 - ones) & 1:
        ones += 1
    rest_width = max(width - ones - 1, 0)
    rest = bits & ((1 << rest_width) - 1)
    count = min(rest_width // 8, 14)  # whole bytes only, as the reference does
    tail = (rest >> (rest_width - 8 * count)).to_bytes(count, "big") + bytes(14 - count)
    # The reference counts in a byte: 256 ones (an all-zero key) wraps to 0.
    return ipaddress.IPv6Address(bytes([0x02, ones & 0xFF]) + tail)


def subnet_for_key(public: bytes) -> ipaddress.IPv6Network:
    prefix = bytearray(address_for_key(public).packed[:8])
    prefix[0] |= 0x01
    return ipaddress.IPv6Network((bytes(prefix) + bytes(8), 64))
