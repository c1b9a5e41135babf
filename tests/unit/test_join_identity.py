"""The join service's TLS identity and its pin, checked against their definitions."""

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wizard.identity import PRIVATE_VARS, PUBLIC_VARS, join, node
from wizard.invites import token


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_certificate_is_the_key_s_and_the_pin_is_its_spki_hash():
    public, private = join.generate("garden.valley.internal")
    cert = x509.load_pem_x509_certificate(public["join_tls_cert"].encode())
    key = serialization.load_pem_private_key(private["join_tls_key"].encode(), None)
    assert isinstance(key, Ed25519PrivateKey) and isinstance(cert.public_key(), Ed25519PublicKey)
    assert _spki(key.public_key()) == _spki(cert.public_key())
    cert.verify_directly_issued_by(cert)  # self-signed, by this key
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "garden.valley.internal"
    expected = base64.urlsafe_b64encode(hashlib.sha256(_spki(cert.public_key())).digest()[:16]).decode()
    assert public["join_pin"] == expected.rstrip("=") and len(public["join_pin"]) == 22
    assert token.b64url_decode(public["join_pin"]) == token.pin_of_cert(public["join_tls_cert"].encode())


def test_each_generation_is_a_new_key():
    first, second = join.generate("a.b"), join.generate("a.b")
    assert first[0]["join_pin"] != second[0]["join_pin"]


def test_the_contract_names_the_join_identity_and_every_node_gets_it():
    assert PUBLIC_VARS["join"] == ("join_tls_cert", "join_pin")
    assert PRIVATE_VARS["join"] == ("join_tls_key",)
    public, private = node.generate("cabin.valley.internal")
    assert {"join_tls_cert", "join_pin"} <= set(public) and "join_tls_key" in private
    assert "PRIVATE KEY" not in "".join(str(v) for v in public.values())
