"""Key formats checked against their specifications (the real programs check
them in tests/real)."""

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from wizard.identity import nncp, ssh, syncthing, tinc, yggdrasil
from wizard.identity.encoding import b32_nopad_decode


def test_yggdrasil_known_vector():
    # All-zero key inverts to 256 ones; the reference's byte counter wraps.
    assert str(yggdrasil.address_for_key(bytes(32))) == "200::"
    # Key 0x7f ff.. inverts to 0x80 00..: one leading 1, then the 0 is dropped.
    key = bytes([0x7F]) + b"\xff" * 31
    assert str(yggdrasil.address_for_key(key)) == "201::"


@given(st.binary(min_size=32, max_size=32))
def test_yggdrasil_address_in_range(key):
    address = yggdrasil.address_for_key(key)
    assert address.packed[0] == 0x02
    assert str(yggdrasil.subnet_for_key(key).network_address).startswith("3")


def test_yggdrasil_private_key_is_seed_then_public():
    public, private = yggdrasil.generate()
    raw = bytes.fromhex(private["yggdrasil_private_key"])
    assert len(raw) == 64 and raw[32:].hex() == public["yggdrasil_public_key"]


def test_syncthing_device_id_shape_and_check_digits():
    public, private = syncthing.generate()
    device = public["syncthing_device_id"]
    groups = device.split("-")
    assert len(groups) == 8 and all(len(g) == 7 for g in groups)
    flat = "".join(groups)
    # Each 14-char block ends in the Luhn check of its first 13 chars.
    for i in range(4):
        block = flat[i * 14:(i + 1) * 14]
        assert syncthing._luhn32(block[:13]) == block[13]
    cert = x509.load_pem_x509_certificate(public["syncthing_cert"].encode())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "syncthing"
    assert isinstance(cert.public_key().curve, ec.SECP384R1)
    key = serialization.load_pem_private_key(private["syncthing_key"].encode(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_nncp_id_is_blake2b_of_signpub():
    public, private = nncp.generate()
    signpub = b32_nopad_decode(public["nncp_signpub"])
    assert public["nncp_id"] == nncp.node_id(signpub)
    assert b32_nopad_decode(public["nncp_id"]) == hashlib.blake2b(signpub, digest_size=32).digest()
    assert len(b32_nopad_decode(private["nncp_signprv"])) == 64
    assert "=" not in "".join(public.values()) + "".join(private.values())


def test_tinc_key_is_pkcs1():
    public, private = tinc.generate()
    assert private["tinc_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert public["tinc_public_key"].startswith("-----BEGIN RSA PUBLIC KEY-----")


def test_ssh_fingerprint_format():
    public, private = ssh.generate("root@x")
    assert public["ssh_host_ed25519_public_key"].startswith("ssh-ed25519 ")
    assert public["ssh_host_ed25519_fingerprint"].startswith("SHA256:")
    assert "=" not in public["ssh_host_ed25519_fingerprint"]
    assert "OPENSSH PRIVATE KEY" in private["ssh_host_ed25519_private_key"]


# Device IDs that Syncthing itself made (published by their owners): the check
# characters come from Syncthing's code, not from ours.
SYNCTHING_MADE_IDS = (
    "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2",
    "EVOVAUO-VF5I6RA-XXGFSNX-XWFIWZK-JZJ3WLL-XWNDLUB-VVHIPT4-23BJEAU",
    "3X2GGDV-Y5EJLFV-XIWWOQO-GGLJCG6-MUGM4E7-E5DUAAL-HFLNQ4H-NO4DBQE",
    "MODQKEW-7CWB2L5-E4HLBNF-WSIGX3H-VSDGIMG-32EVWQG-5FIVCQ3-6ERICQI",
)


@pytest.mark.parametrize("device_id", SYNCTHING_MADE_IDS)
def test_luhn_check_characters_match_syncthing(device_id):
    flat = device_id.replace("-", "")
    for i in range(4):
        block, check = flat[i * 14:i * 14 + 13], flat[i * 14 + 13]
        assert syncthing._luhn32(block) == check
        # Luhn mod 32 catches any single changed character.
        changed = ("A" if block[5] != "A" else "B").join((block[:5], block[6:]))
        assert syncthing._luhn32(changed) != check
