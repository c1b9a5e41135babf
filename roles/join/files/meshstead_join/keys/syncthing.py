"""Syncthing identity: an ECDSA P-384 certificate; the device ID is its hash."""

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .encoding import b32_nopad

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def generate() -> tuple[dict, dict]:
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Syncthing"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Automatically Generated"),
        x509.NameAttribute(NameOID.COMMON_NAME, "syncthing"),
    ])
    # Mirrors what `syncthing generate` makes, so peers see nothing unusual.
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=20 * 365))
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("syncthing")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return ({"syncthing_device_id": device_id_from_cert(cert_pem), "syncthing_cert": cert_pem},
            {"syncthing_key": key_pem})


def device_id_from_cert(cert_pem: str) -> str:
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    return device_id(hashlib.sha256(der).digest())


def device_id(digest: bytes) -> str:
    """base32 of the hash, a Luhn mod 32 check char after each 13-char block,
    shown in dashed groups of 7."""
    raw = b32_nopad(digest)
    blocks = [raw[i:i + 13] for i in range(0, 52, 13)]
    checked = "".join(block + _luhn32(block) for block in blocks)
    return "-".join(checked[i:i + 7] for i in range(0, len(checked), 7))


def _luhn32(block: str) -> str:
    factor, total = 1, 0
    for char in block:
        addend = factor * _ALPHABET.index(char)
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return _ALPHABET[(32 - total % 32) % 32]
