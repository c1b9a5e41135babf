"""The public identity a joining node sends: each variable's form, and where
one variable derives from another (a pin, a fingerprint, an id), that they
agree. The names are the keys package's PUBLIC_NODE_VARS.

A node sends only public keys; nothing here sees a private one."""

import base64
import binascii
import hashlib
import ipaddress
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from . import keys, token

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DEVICE_ID = re.compile(r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$")
_B32_KEY = re.compile(r"^[A-Z2-7]{52}$")  # 32 bytes, base32 without padding
_YGGDRASIL = ipaddress.IPv6Network("200::/7")
MIN_RSA_BITS = 2048


class IdentityError(ValueError):
    """One line naming the variable and what it should be."""


def _b32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _b32_nopad(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def _cert(name: str, text: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise IdentityError(f"{name} is not a PEM certificate") from None


def _tinc(v: dict) -> None:
    try:
        key = serialization.load_pem_public_key(v["tinc_public_key"].encode())
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise IdentityError(f"tinc_public_key is not an RSA public key (PEM) of at least {MIN_RSA_BITS} bits")


def _yggdrasil(v: dict) -> None:
    if not _HEX64.match(v["yggdrasil_public_key"]):
        raise IdentityError("yggdrasil_public_key is not 64 lowercase hex digits (an Ed25519 public key)")
    try:
        address = ipaddress.IPv6Address(v["yggdrasil_address"])
        subnet = ipaddress.IPv6Network(v["yggdrasil_subnet"])
    except ValueError:
        raise IdentityError("yggdrasil_address / yggdrasil_subnet are not an IPv6 address and network") from None
    if address not in _YGGDRASIL or address.packed[0] != 0x02:
        raise IdentityError("yggdrasil_address is not a Yggdrasil node address (200::/8)")
    if subnet.prefixlen != 64 or subnet.network_address.packed[0] != 0x03 \
            or subnet.network_address.packed[1:8] != address.packed[1:8]:
        raise IdentityError("yggdrasil_subnet is not the /64 (300::/8) of yggdrasil_address")


def _syncthing(v: dict) -> None:
    if not _DEVICE_ID.match(v["syncthing_device_id"]):
        raise IdentityError("syncthing_device_id is not a Syncthing device ID (8 dashed groups of 7 base32 "
                            "characters)")
    cert = _cert("syncthing_cert", v["syncthing_cert"])
    # The ID is base32 of SHA-256 of the certificate, with a check character
    # after every 13: drop those and compare the rest.
    chars = v["syncthing_device_id"].replace("-", "")
    data = "".join(chars[i:i + 13] for i in range(0, 56, 14))
    if data != _b32_nopad(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()):
        raise IdentityError("syncthing_device_id is not the device ID of syncthing_cert")


def _nncp(v: dict) -> None:
    for name in ("nncp_id", "nncp_exchpub", "nncp_signpub", "nncp_noisepub"):
        if not _B32_KEY.match(v[name]):
            raise IdentityError(f"{name} is not 32 bytes in base32 without padding (52 characters A-Z, 2-7)")
    if v["nncp_id"] != _b32_nopad(hashlib.blake2b(_b32(v["nncp_signpub"]), digest_size=32).digest()):
        raise IdentityError("nncp_id is not the id of nncp_signpub (BLAKE2b-256 of it)")


def _ssh(v: dict) -> None:
    fields = v["ssh_host_ed25519_public_key"].split()
    try:
        key = serialization.load_ssh_public_key(" ".join(fields[:2]).encode())
        blob = base64.b64decode(fields[1], validate=True)
    except (ValueError, IndexError, binascii.Error):
        key = None
    if fields[:1] != ["ssh-ed25519"] or not isinstance(key, ed25519.Ed25519PublicKey):
        raise IdentityError("ssh_host_ed25519_public_key is not an OpenSSH line 'ssh-ed25519 AAAA… [comment]'")
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    if v["ssh_host_ed25519_fingerprint"] != expected:
        raise IdentityError("ssh_host_ed25519_fingerprint is not the fingerprint of ssh_host_ed25519_public_key")


def _join(v: dict) -> None:
    cert = _cert("join_tls_cert", v["join_tls_cert"])
    if not isinstance(cert.public_key(), ed25519.Ed25519PublicKey):
        raise IdentityError("join_tls_cert does not hold an Ed25519 key")
    if v["join_pin"] != token.b64url(token.pin_of_cert(v["join_tls_cert"].encode())):
        raise IdentityError("join_pin is not the pin of join_tls_cert")


# Program -> the check of its public variables; the names are the keys
# package's contract, the one the wizard and a node that makes its keys use.
CHECKS = {"tinc": _tinc, "yggdrasil": _yggdrasil, "syncthing": _syncthing, "nncp": _nncp, "ssh": _ssh,
          "join": _join}
PUBLIC_VARS = keys.PUBLIC_NODE_VARS
# Private keys never travel; a kit's node.yml names them (as vault references),
# and the answer leaves them out.
PRIVATE_VARS = keys.PRIVATE_NODE_VARS


def check(identity) -> dict:
    """The identity, every public variable present and well formed, nothing
    else; IdentityError naming the first that is not."""
    if not isinstance(identity, dict):
        raise IdentityError("the identity is not a mapping of public variables")
    unexpected = sorted(set(identity) - set(PUBLIC_VARS))
    if unexpected:
        raise IdentityError(f"{unexpected[0]} is not a public identity variable; expected only "
                            f"{', '.join(PUBLIC_VARS)}")
    missing = [name for name in PUBLIC_VARS if name not in identity]
    if missing:
        raise IdentityError(f"{missing[0]} is missing; a node sends all of {', '.join(PUBLIC_VARS)}")
    not_text = [name for name in PUBLIC_VARS if not isinstance(identity[name], str)]
    if not_text:
        raise IdentityError(f"{not_text[0]} is not text")
    for check_program in CHECKS.values():
        check_program(identity)
    return {name: identity[name] for name in PUBLIC_VARS}
