"""Parsers for user input: each takes text (or a value from YAML) and returns the
typed value, or raises ValueError with what was expected."""

import ipaddress
import re
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from . import regdb

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# ISO 3166-1 alpha-2 codes, plus "00": the world regulatory domain (the most
# restrictive, legal everywhere) that Linux uses when no country is set.
COUNTRIES = frozenset("""
00 AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW
BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ
FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ
IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH
MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL
PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD
TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())

CHANNELS = {
    "2.4": tuple(range(1, 15)),  # 14: Japan only (802.11b), as regulatory.db says
    "5": (36, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112, 116, 120, 124, 128, 132, 136, 140, 144,
          149, 153, 157, 161, 165),
}

# Ranges an uplink router commonly uses: a mesh plan inside them would clash
# with the LAN a gateway node is plugged into.
COMMON_UPLINK_RANGES = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/16", "10.1.0.0/16", "192.168.0.0/24", "192.168.1.0/24", "192.168.178.0/24", "172.17.0.0/16"))
MIN_PLAN_PREFIX = 22  # each quarter of the plan must hold a /24 of node addresses

PLATFORMS = ("rpi3", "rpi4", "rpi5", "pizero2w", "amd64")
_OPENWRT = re.compile(r"^openwrt:[a-z0-9_-]+/[a-z0-9_-]+/?[a-z0-9_.,-]*$")
NODE_ROLES = ("hub", "gateway", "dns")
OVERLAYS = ("tinc", "yggdrasil")
SERVICES = ("syncthing", "nncp", "portal", "mail")
MESH_MODES = ("80211s", "ibss")


def dns_label(value) -> str:
    text = str(value).strip()
    if not _LABEL.match(text):
        raise ValueError("expected a DNS label: 1-63 lowercase letters, digits or '-', "
                         "not starting or ending with '-'")
    return text


def domain(value) -> str:
    text = str(value).strip().rstrip(".").lower()
    if len(text) > 200 or not all(_LABEL.match(part) for part in text.split(".")):
        raise ValueError("expected a domain name of DNS labels joined by '.', e.g. mysite.internal")
    return text


def country(value) -> str:
    text = str(value).strip().upper()
    if text not in COUNTRIES:
        raise ValueError("expected an ISO 3166-1 alpha-2 country code such as DE, KE or US (00 = world)")
    return text


def choice(options):
    def parse(value) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return text
    return parse


def subset(options, allow_empty=True):
    def parse(value) -> list[str]:
        items = value if isinstance(value, list) else [v for v in re.split(r"[,\s]+", str(value)) if v]
        items = [str(i).strip().lower() for i in items]
        bad = [i for i in items if i not in options]
        if bad or (not allow_empty and not items):
            raise ValueError(f"expected {'one or more' if not allow_empty else 'any'} of: {', '.join(options)}"
                             + (f" (got {', '.join(bad)})" if bad else ""))
        return [o for o in options if o in items]  # canonical order, no duplicates
    return parse


def ipv4_plan(value) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(str(value).strip())
    except ValueError:
        raise ValueError("expected an IPv4 network such as 10.42.0.0/16 "
                         "(address bits after the prefix must be 0)") from None
    if not net.is_private or not any(net.subnet_of(ipaddress.IPv4Network(r))
                                     for r in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")):
        raise ValueError("expected a private (RFC 1918) range, e.g. 10.42.0.0/16")
    if net.prefixlen > MIN_PLAN_PREFIX:
        raise ValueError(f"/{net.prefixlen} is too small: expected /{MIN_PLAN_PREFIX} or larger, e.g. 10.42.0.0/16")
    for common in COMMON_UPLINK_RANGES:
        if net.overlaps(common):
            raise ValueError(f"overlaps {common}, a range uplink routers commonly use; "
                             "expected a range clear of it, e.g. 10.42.0.0/16")
    return net


def ipv6_ula(value) -> ipaddress.IPv6Network:
    try:
        net = ipaddress.IPv6Network(str(value).strip())
    except ValueError:
        raise ValueError("expected an IPv6 ULA /48 such as fd12:3456:789a::/48") from None
    if net.prefixlen != 48 or not net.subnet_of(ipaddress.IPv6Network("fd00::/8")):
        raise ValueError("expected a /48 inside fd00::/8 (RFC 4193), e.g. fd12:3456:789a::/48")
    return net


def channel_for(band: str):
    def parse(value) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = -1
        if number not in CHANNELS[band]:
            raise ValueError(f"expected a {band} GHz channel: {', '.join(map(str, CHANNELS[band]))}")
        return number
    return parse


def _where(code: str) -> str:
    if code == "00":
        return "the world domain 00"
    if regdb.domain(code) != code:
        return f"country {code} (not in {regdb.NAME}, so the kernel applies the world domain 00)"
    return f"country {code}"


def _runs(numbers) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


_SET_COUNTRY = "set the site's country (--set country=DE, its ISO 3166-1 code)"


def mesh_band(code: str):
    """The band of a mesh in country `code`: one with a channel the regulatory
    database lets a mesh start on."""
    def parse(value) -> str:
        band = choice(tuple(CHANNELS))(value)
        if not regdb.usable_channels(code, band, CHANNELS[band]):
            raise ValueError(f"{_where(code)} allows no mesh on {band} GHz ({regdb.NAME}: every channel needs "
                             f"radar detection or forbids starting a network); expected another band, or "
                             f"{_SET_COUNTRY}")
        return band
    return parse


def mesh_channel(code: str, band: str):
    """A channel of `band` that a mesh may start on in country `code`."""
    plain = channel_for(band)

    def parse(value) -> int:
        number = plain(value)
        reason = regdb.channel_status(code, band, number)
        if reason:
            allowed = regdb.usable_channels(code, band, CHANNELS[band])
            expected = (f"expected one of {_runs(allowed)}" if allowed
                        else f"no {band} GHz channel is; expected another band, or {_SET_COUNTRY}")
            raise ValueError(f"channel {number} is not allowed for a mesh in {_where(code)} "
                             f"({regdb.NAME}: {reason}): {expected}")
        return number
    return parse


def _one_to_32_bytes(value, what: str) -> str:
    text = str(value)
    if not 1 <= len(text.encode()) <= 32:
        raise ValueError(f"expected {what} of 1-32 bytes (UTF-8)")
    return text


def mesh_id(value) -> str:
    return _one_to_32_bytes(value, "a mesh ID")


def ssid(value) -> str:
    return _one_to_32_bytes(value, "a Wi-Fi name (SSID)")


def passphrase(value) -> str:
    """A WPA passphrase (IEEE 802.11 annex M.4): 8-63 characters 32-126, not only spaces."""
    text = str(value)
    if not 8 <= len(text) <= 63 or not all(" " <= c <= "~" for c in text) or not text.strip():
        raise ValueError("expected 8-63 printable characters (ASCII, as WPA requires), not only spaces")
    return text


def mtu(value) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if not 1280 <= number <= 1500:
        raise ValueError("expected a number from 1280 (the IPv6 minimum) to 1500")
    return number


def unix_user(value) -> str:
    text = str(value).strip()
    if not _UNIX_USER.match(text) or text == "root":
        raise ValueError("expected a user name of lowercase letters, digits, '_' or '-' (not root)")
    return text


def ssh_public_key(value) -> str:
    """A literal OpenSSH public key, or the path of a file holding one."""
    text = str(value).strip()
    if not text.startswith(("ssh-", "ecdsa-", "sk-")):
        path = Path(text).expanduser()
        try:
            text = path.read_text().strip().splitlines()[0]
        except (OSError, IndexError, UnicodeDecodeError):
            raise ValueError(f"cannot read an SSH public key from {text!r}: expected a readable .pub file "
                             "or a literal key 'ssh-ed25519 AAAA…'") from None
    try:
        load_ssh_public_key(" ".join(text.split()[:2]).encode())
    except Exception:  # noqa: BLE001 - cryptography raises several types (UnsupportedAlgorithm, ValueError, …)
        raise ValueError("expected an OpenSSH public key such as 'ssh-ed25519 AAAA… comment'") from None
    return text


def platform(value) -> str:
    text = str(value).strip().lower()
    if text not in PLATFORMS and not _OPENWRT.match(text):
        raise ValueError(f"expected one of {', '.join(PLATFORMS)} or openwrt:<target>/<profile>")
    return text
