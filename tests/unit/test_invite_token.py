"""The invite token (docs/invites.md): what it carries, what it refuses, how big it is."""

import ast
import base64
import hashlib
import ipaddress
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wizard import validate
from wizard.invites import qr, token
from wizard.invites.token import Invite, InviteError

NOW = 1_800_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
V4 = (ipaddress.ip_address("10.42.0.1"), 4801)
V6 = (ipaddress.ip_address("fd12:3456:789a::1"), 9000)


def _invite(name="garden", endpoints=(V4,), platform="rpi4", roles=("hub", "dns"), expires=NOW + 3600):
    return Invite(secret=bytes(range(100, 116)), expires=expires, endpoints=list(endpoints),
                  pin=bytes(range(200, 216)), name=name, platform=platform, roles=list(roles))


def _bytes(text: str) -> bytes:
    return token.b64url_decode(text.removeprefix(token.PREFIX))


def _text(data: bytes) -> str:
    return token.PREFIX + token.b64url(data)


def test_round_trip_gives_back_the_grant():
    text = token.encode(_invite(), KEY)
    invite = token.decode(text, PUBLIC, NOW)
    assert (invite.name, invite.platform, invite.roles) == ("garden", "rpi4", ["hub", "dns"])
    assert invite.endpoints == [V4] and invite.pin == bytes(range(200, 216))
    assert invite.secret == bytes(range(100, 116)) and invite.expires == NOW + 3600
    assert invite.site_tag == hashlib.sha256(PUBLIC).digest()[:4]
    assert token.decode(" " + text + "\n", PUBLIC, NOW).name == "garden"  # as copied from a file


def test_layout_is_the_documented_one():
    data = _bytes(token.encode(_invite(), KEY))
    assert data[0] == 1 and data[1:5] == hashlib.sha256(PUBLIC).digest()[:4]
    assert data[5:21] == bytes(range(100, 116)) and int.from_bytes(data[21:25], "big") == NOW + 3600
    assert data[25] == 0x10 and data[26:32] == bytes([10, 42, 0, 1]) + (4801).to_bytes(2, "big")
    assert data[32:48] == bytes(range(200, 216))
    assert data[48] == 0b101 and data[49] == 1 and data[50:-64] == b"garden"  # hub|dns, rpi4
    KEY.public_key().verify(data[-64:], data[:-64])


def test_ipv4_and_ipv6_endpoints_round_trip():
    invite = token.decode(token.encode(_invite("ap", endpoints=(V6, V4), roles=()), KEY), PUBLIC, NOW)
    assert invite.endpoints == [V4, V6]  # IPv4 first, as documented
    assert invite.roles == []
    assert [token.format_endpoint(e) for e in invite.endpoints] == ["10.42.0.1:4801", "[fd12:3456:789a::1]:9000"]


def test_openwrt_platform_round_trips():
    text = token.encode(_invite("ap", platform="openwrt:ath79/tplink"), KEY)
    assert token.decode(text, PUBLIC, NOW).platform == "openwrt:ath79/tplink"
    with pytest.raises(InviteError) as caught:
        token.encode(_invite("ap", endpoints=(V4, V6), platform="openwrt:ath79/tplink"), KEY)
    assert caught.value.problem == "too_long" and "fewer endpoints" in str(caught.value)


def test_every_changed_byte_is_refused():
    data = _bytes(token.encode(_invite(), KEY))
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            changed = data[:i] + bytes([data[i] ^ flip]) + data[i + 1:]
            with pytest.raises(InviteError):
                token.decode(_text(changed), PUBLIC, NOW)


def test_every_changed_character_is_refused():
    """Also the unused low bits of the last base64url character."""
    text = token.encode(_invite(), KEY)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(text)):
        for char in alphabet:
            if char != text[i]:
                with pytest.raises(InviteError):
                    token.decode(text[:i] + char + text[i + 1:], PUBLIC, NOW)


def test_cut_or_lengthened_invites_are_refused():
    text = token.encode(_invite(), KEY)
    data = _bytes(text)
    for bad in (text[:-1], text[:-4], text + "A", _text(data[:-1]), _text(data + b"\0"), _text(data[:40])):
        with pytest.raises(InviteError):
            token.decode(bad, PUBLIC, NOW)


@pytest.mark.parametrize("text, problem", [
    ("hello", "malformed"),
    ("", "malformed"),
    ("meshstead1:not base64!", "malformed"),
    ("meshstead1:", "malformed"),
    ("meshstead2:AAAA", "version"),
])
def test_text_that_is_not_an_invite(text, problem):
    with pytest.raises(InviteError) as caught:
        token.decode(text, PUBLIC, NOW)
    assert caught.value.problem == problem


def test_each_refusal_is_precise():
    text = token.encode(_invite(), KEY)
    data = bytearray(_bytes(text))
    other = Ed25519PrivateKey.generate()
    other_public = other.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cases = {
        "site": lambda: token.decode(text, other_public, NOW),
        "signature": lambda: token.decode(_text(bytes(data[:-1]) + bytes([data[-1] ^ 1])), PUBLIC, NOW),
        "expired": lambda: token.decode(text, PUBLIC, NOW + 3600),
        "version": lambda: token.decode(_text(bytes([2]) + bytes(data[1:])), PUBLIC, NOW),
    }
    for problem, call in cases.items():
        with pytest.raises(InviteError) as caught:
            call()
        assert caught.value.problem == problem, problem
    with pytest.raises(InviteError, match=r"expired at 2027-01-15T09:00:00Z \(60 min ago\)"):
        token.decode(text, PUBLIC, NOW + 7200)
    assert token.decode(text, PUBLIC, NOW + 3599).name == "garden"  # valid until its last second


def test_longest_name_fits_the_text_limit_and_a_version_10_qr_code():
    longest = token.max_name_length([V4], "amd64")
    assert longest == 27
    text = token.encode(_invite("g" * longest, platform="amd64", roles=()), KEY)
    assert len(text) <= token.MAX_TEXT == 200
    assert qr.code(text).version <= 10
    with pytest.raises(InviteError) as caught:
        token.encode(_invite("g" * (longest + 1), platform="amd64", roles=()), KEY)
    assert caught.value.problem == "too_long" and f"at most {longest} characters" in str(caught.value)
    # The platform or endpoints take the name's room: with both families, a shorter name.
    assert token.max_name_length([V4, V6], "amd64") == longest - 18


def test_typical_invite_size():
    text = token.encode(_invite(), KEY)
    assert len(text) == 171 and qr.code(text).version == 9


def test_id_names_the_invite_without_its_secret():
    invite = _invite()
    assert invite.id == base64.b32encode(hashlib.sha256(invite.secret).digest()[:5]).decode().lower()
    assert len(invite.id) == 8 and invite.secret.hex() not in invite.id
    assert _invite().id == invite.id and Invite(**{**vars(invite), "secret": bytes(16)}).id != invite.id


def test_wire_codes_follow_the_wizard_s_lists_and_only_grow():
    assert token.PLATFORMS == validate.PLATFORMS[:len(token.PLATFORMS)] == ("rpi3", "rpi4", "rpi5", "pizero2w",
                                                                             "amd64")
    assert token.ROLES == validate.NODE_ROLES[:len(token.ROLES)] == ("hub", "gateway", "dns")
    assert set(token.PLATFORMS) == set(validate.PLATFORMS) and set(token.ROLES) == set(validate.NODE_ROLES)


def test_token_needs_only_the_standard_library_and_cryptography():
    """The node side ships this one file."""
    tree = ast.parse(Path(token.__file__).read_text())
    imported = {(node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
                for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names if not (isinstance(node, ast.ImportFrom) and node.level)}
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}
