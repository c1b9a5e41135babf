"""The shipped regulatory.db read as the kernel reads it, against what
wireless-regdb's db.txt (and `iw reg get` on a kernel with the file) says."""

import hashlib
import struct
import tomllib

import pytest

from tests.conftest import ROOT
from wizard import regdb
from wizard.regdb import AUTO_BW, DFS, NO_IR, NO_OFDM, NO_OUTDOOR

CHANNELS = {"2.4": range(1, 15), "5": (36, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112, 116, 120, 124, 128,
                                     132, 136, 140, 144, 149, 153, 157, 161, 165)}


def mhz(start, end, flags=0):
    return (int(start * 1000), int(end * 1000), flags)


def below_6ghz(country):
    return [r for r in regdb.rules(country) if 2_000_000 < r[0] < 5_900_000]


def test_the_shipped_file_is_the_release_named():
    data = (ROOT / "wizard/data/regulatory.db").read_bytes()
    assert hashlib.sha256(data).hexdigest() == regdb.SHA256
    assert data[:4] == b"RGDB" and struct.unpack(">I", data[4:8]) == (20,)
    assert regdb.VERSION in (ROOT / "wizard/data/regulatory.db.LICENSE").read_text()


def test_the_wheel_carries_the_database():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"data/regulatory.db", "data/regulatory.db.LICENSE"} <= set(package_data["wizard"])


# db.txt, 2.4 and 5 GHz: "country 00: DFS-UNSET" (PASSIVE-SCAN, as iw shows it, is NO-IR).
WORLD = [mhz(2402, 2472), mhz(2457, 2482, NO_IR | AUTO_BW), mhz(2474, 2494, NO_IR | NO_OFDM),
         mhz(5170, 5250, NO_IR | AUTO_BW), mhz(5250, 5330, NO_IR | DFS | AUTO_BW), mhz(5490, 5730, NO_IR | DFS),
         mhz(5735, 5835, NO_IR)]
# "country DE: DFS-ETSI": (2400 - 2483.5 @ 40), (100 mW); (5150 - 5250 @ 80), (200 mW), NO-OUTDOOR,
# AUTO-BW; (5250 - 5350 @ 80), (100 mW), NO-OUTDOOR, DFS, AUTO-BW; (5470 - 5725 @ 160), (500 mW), DFS;
# (5725 - 5875 @ 80), (25 mW)
GERMANY = [mhz(2400, 2483.5), mhz(5150, 5250, NO_OUTDOOR | AUTO_BW), mhz(5250, 5350, NO_OUTDOOR | DFS | AUTO_BW),
           mhz(5470, 5725, DFS), mhz(5725, 5875)]
# "country JP: DFS-JP": (2402 - 2482 @ 40); (2474 - 2494 @ 20), NO-OFDM; (4910 - 4990 @ 40);
# (5170 - 5250 @ 80), AUTO-BW; (5250 - 5330 @ 80), DFS, AUTO-BW; (5490 - 5730 @ 160), DFS
JAPAN = [mhz(2402, 2482), mhz(2474, 2494, NO_OFDM), mhz(4910, 4990), mhz(5170, 5250, AUTO_BW),
         mhz(5250, 5330, DFS | AUTO_BW), mhz(5490, 5730, DFS)]
# "country US: DFS-FCC": (2400 - 2472 @ 40), (30); (5150 - 5250 @ 80), AUTO-BW; (5250 - 5350 @ 80),
# DFS, AUTO-BW; (5470 - 5730 @ 160), DFS; (5730 - 5850 @ 80), AUTO-BW;
# (5850 - 5895 @ 40), NO-OUTDOOR, AUTO-BW, NO-IR
UNITED_STATES = [mhz(2400, 2472), mhz(5150, 5250, AUTO_BW), mhz(5250, 5350, DFS | AUTO_BW), mhz(5470, 5730, DFS),
                 mhz(5730, 5850, AUTO_BW), mhz(5850, 5895, NO_OUTDOOR | AUTO_BW | NO_IR)]


@pytest.mark.parametrize("country, expected", [("00", WORLD), ("DE", GERMANY), ("JP", JAPAN),
                                               ("US", UNITED_STATES)])
def test_rules_are_db_txt_s(country, expected):
    assert below_6ghz(country) == expected


def usable(country, band):
    return regdb.usable_channels(country, band, CHANNELS[band])


def test_2_4_ghz_per_country():
    assert usable("US", "2.4") == list(range(1, 12))
    assert usable("DE", "2.4") == list(range(1, 14))
    assert usable("JP", "2.4") == list(range(1, 15))  # 14: Japan's, 802.11b only (NO-OFDM)
    assert usable("00", "2.4") == list(range(1, 12))


def test_the_world_domain_starts_no_mesh_on_12_13_or_5_ghz():
    for channel in (12, 13, 14):
        assert "NO-IR" in regdb.channel_status("00", "2.4", channel)
    assert usable("00", "5") == []
    assert "NO-IR" in regdb.channel_status("00", "5", 36)


def test_5_ghz_needs_no_radar_detection():
    assert regdb.channel_status("DE", "5", 36) is None
    assert "DFS" in regdb.channel_status("DE", "5", 52)
    assert "DFS" in regdb.channel_status("DE", "5", 100)
    assert usable("DE", "5") == [36, 40, 44, 48, 149, 153, 157, 161, 165]
    assert usable("JP", "5") == [36, 40, 44, 48]  # nothing above 5730 MHz in Japan
    assert usable("US", "5") == [36, 40, 44, 48, 149, 153, 157, 161, 165]


def test_a_channel_outside_every_rule():
    assert regdb.channel_status("US", "2.4", 13) == "no rule covers 2472 MHz"
    assert regdb.channel_status("DE", "2.4", 14) == "no rule covers 2484 MHz"


def test_a_country_the_database_lacks_gets_the_world_domain():
    assert "ZM" not in regdb.countries()
    assert regdb.domain("ZM") == "00"
    assert usable("ZM", "2.4") == usable("00", "2.4")


def test_a_damaged_file_is_refused():
    data = (ROOT / "wizard/data/regulatory.db").read_bytes()
    with pytest.raises(regdb.RegdbError, match="format 20"):
        regdb.parse(b"XXXX" + data[4:])
    with pytest.raises(regdb.RegdbError, match="damaged"):
        regdb.parse(data[:100])
    assert regdb.parse(data)["DE"] == regdb.database()["DE"]
