import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wizard import validate


@pytest.mark.parametrize("name", ["a", "node-1", "x" * 63, "0cabin"])
def test_dns_label_accepts(name):
    assert validate.dns_label(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "x" * 64, "a.b", "ü"])
def test_dns_label_rejects(name):
    with pytest.raises(ValueError, match="DNS label"):
        validate.dns_label(name)


@given(st.text(max_size=70))
def test_dns_label_result_is_always_a_valid_label(text):
    try:
        label = validate.dns_label(text)
    except ValueError:
        return
    assert 1 <= len(label) <= 63 and label[0] != "-" and label[-1] != "-"
    assert all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in label)


def test_country():
    assert validate.country("ke") == "KE"
    assert validate.country("00") == "00"
    for bad in ("XX", "DEU", "", "1"):
        with pytest.raises(ValueError, match="ISO 3166"):
            validate.country(bad)


@pytest.mark.parametrize("plan, message", [
    ("10.0.0.0/16", "overlaps 10.0.0.0/16"),
    ("10.1.0.0/16", "overlaps"),
    ("192.168.1.0/24", "too small"),
    ("10.42.0.0/23", "too small"),
    ("8.8.0.0/16", "private"),
    ("10.42.0.1/16", "IPv4 network"),
    ("banana", "IPv4 network"),
])
def test_ipv4_plan_rejects(plan, message):
    with pytest.raises(ValueError, match=message):
        validate.ipv4_plan(plan)


def test_ipv4_plan_accepts_small_and_large():
    assert validate.ipv4_plan("10.42.0.0/22") == ipaddress.ip_network("10.42.0.0/22")
    assert validate.ipv4_plan("172.20.0.0/14").prefixlen == 14


def test_ula():
    assert validate.ipv6_ula("fd12:3456:789a::/48").prefixlen == 48
    for bad in ("fd12:3456:789a::/64", "2001:db8::/48", "fc00::/48"):
        with pytest.raises(ValueError, match="/48"):
            validate.ipv6_ula(bad)


def test_channel_depends_on_band():
    assert validate.channel_for("2.4")("6") == 6
    assert validate.channel_for("5")("36") == 36
    with pytest.raises(ValueError, match="5 GHz"):
        validate.channel_for("5")("6")


def test_ssh_key_from_file_and_literal(admin_key, tmp_path):
    text = admin_key.read_text().strip()
    assert validate.ssh_public_key(str(admin_key)) == text
    assert validate.ssh_public_key(text) == text
    with pytest.raises(ValueError, match="cannot read"):
        validate.ssh_public_key(str(tmp_path / "missing.pub"))
    with pytest.raises(ValueError, match="OpenSSH public key"):
        validate.ssh_public_key("ssh-ed25519 not-base64")


def test_platforms():
    assert validate.platform("openwrt:ramips/mt7621/tplink_archer-a6-v3") .startswith("openwrt:")
    assert validate.platform("rpi4") == "rpi4"
    with pytest.raises(ValueError, match="openwrt"):
        validate.platform("rpi2")


def test_subset_keeps_canonical_order():
    parse = validate.subset(validate.OVERLAYS, allow_empty=False)
    assert parse("yggdrasil,tinc") == ["tinc", "yggdrasil"]
    with pytest.raises(ValueError, match="one or more"):
        parse("")
    with pytest.raises(ValueError, match="got wireguard"):
        parse("wireguard")


def test_mesh_channel_follows_the_country():
    assert validate.mesh_channel("DE", "2.4")("13") == 13
    assert validate.mesh_channel("JP", "2.4")("14") == 14
    with pytest.raises(ValueError, match=r"channel 13 is not allowed for a mesh in country US "
                                         r"\(regulatory.db 2026.09.03: no rule covers 2472 MHz\): "
                                         r"expected one of 1-11$"):
        validate.mesh_channel("US", "2.4")("13")
    with pytest.raises(ValueError, match=r"DFS.*expected one of 36, 40, 44, 48, 149, 153, 157, 161, 165$"):
        validate.mesh_channel("DE", "5")("52")
    with pytest.raises(ValueError, match="world domain 00.*NO-IR.*expected one of 1-11"):
        validate.mesh_channel("00", "2.4")("12")
    with pytest.raises(ValueError, match=r"no 5 GHz channel is; expected another band, or set the site's country"):
        validate.mesh_channel("00", "5")("36")
    with pytest.raises(ValueError, match="expected a 2.4 GHz channel"):  # not a channel at all
        validate.mesh_channel("DE", "2.4")("15")


def test_mesh_band_needs_a_channel_the_country_allows():
    assert validate.mesh_band("DE")("5") == "5"
    assert validate.mesh_band("00")("2.4") == "2.4"
    with pytest.raises(ValueError, match=r"world domain 00 allows no mesh on 5 GHz.*--set country="):
        validate.mesh_band("00")("5")
    with pytest.raises(ValueError, match=r"country ZM \(not in regulatory.db 2026.09.03, so the kernel applies "
                                         r"the world domain 00\) allows no mesh on 5 GHz"):
        validate.mesh_band("ZM")("5")


def test_ssid_and_mesh_id_are_1_to_32_bytes():
    assert validate.ssid("Dorfnetz Süd") == "Dorfnetz Süd"
    assert validate.ssid("x" * 32) == "x" * 32
    for bad in ("", "x" * 33, "ü" * 17):  # 17 x 2 bytes
        with pytest.raises(ValueError, match=r"expected a Wi-Fi name \(SSID\) of 1-32 bytes"):
            validate.ssid(bad)
        with pytest.raises(ValueError, match="expected a mesh ID of 1-32 bytes"):
            validate.mesh_id(bad)


def test_passphrase_refuses_short_long_blank_and_non_ascii():
    assert validate.passphrase("correct horse") == "correct horse"
    assert validate.passphrase(" ~" * 4) == " ~ ~ ~ ~"
    for bad in ("", "short", "x" * 64, " " * 8, "\t" * 10, "new\nline!", "Grüße an alle"):
        with pytest.raises(ValueError, match="expected 8-63 printable characters"):
            validate.passphrase(bad)
