"""Encodings shared by several programs' key formats."""

import base64


def b32_nopad(data: bytes) -> str:
    """RFC 4648 base32 without padding, as NNCP and Syncthing print keys."""
    return base64.b32encode(data).decode("ascii").rstrip("=")


def b32_nopad_decode(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))
