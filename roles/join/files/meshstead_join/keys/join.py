"""The join service's TLS identity: an Ed25519 key and a self-signed
certificate. Every node has one, for when it serves joins as a hub; an invite
carries the certificate's pin, so a joining node talks to that hub and no other.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from ..token import b64url, pin_of_cert

# RFC 5280 4.1.2.5: a certificate with no well-defined expiry. The pin, not the
# dates, is what a joining node trusts.
NO_EXPIRY = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def generate(fqdn: str) -> tuple[dict, dict]:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
        .not_valid_after(NO_EXPIRY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
        .sign(key, None)  # Ed25519 signs without a separate hash
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ({"join_tls_cert": cert_pem.decode(), "join_pin": b64url(pin_of_cert(cert_pem))},
            {"join_tls_key": key_pem.decode()})
