"""The wizard's questions, declared once: name, help, parser, default, when.

Answers come, in order of precedence, from --set flags, the answers file, the
existing site, a prompt (with a terminal) or the default. Every answer, typed
or given, goes through the same parser.
"""

import hashlib
import ipaddress
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import regdb, validate


@dataclass
class Question:
    name: str
    help: str
    parse: Callable
    default: Callable[[dict], object] | None = None  # answers so far -> default
    kind: str = "text"  # text, select, checkbox, password
    choices: tuple = ()
    secret: bool = False  # never written back into an answers file
    optional: bool = False  # may stay empty
    when: Callable[[dict], bool] = field(default=lambda answers: True)
    # Earlier answers the parser reads (it is then called with the answers so
    # far); a kept answer is parsed again, so a changed country re-checks the channel.
    depends: tuple = ()


def random_ipv4_plan(_answers=None) -> str:
    """A random /16 in 10.0.0.0/8, clear of 10.0/16 and 10.1/16."""
    return f"10.{random.SystemRandom().randint(2, 255)}.0.0/16"


def random_ula(_answers=None) -> str:
    """RFC 4193 section 3.2.2: SHA-1 of the time and an EUI-64, low 40 bits."""
    # RFC 4193 names SHA-1; this is not a security use.
    digest = hashlib.sha1(time.time_ns().to_bytes(8, "big") + uuid.getnode().to_bytes(8, "big")  # noqa: S324
                          + secrets.token_bytes(8)).digest()
    global_id = digest[-5:]
    return str(ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 48)))


def find_ssh_key(_answers=None) -> str | None:
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / name
        if path.is_file():
            return str(path)
    return None


def _parse_band(value, answers):
    return validate.mesh_band(answers.get("country", "00"))(value)


def _parse_channel(value, answers):
    return validate.mesh_channel(answers.get("country", "00"), answers.get("mesh_band", "2.4"))(value)


def _default_channel(answers) -> int:
    """The first channel a mesh may use in the country and band (the parser
    explains when there is none)."""
    band = answers.get("mesh_band", "2.4")
    usable = regdb.usable_channels(answers.get("country", "00"), band, validate.CHANNELS[band])
    return usable[0] if usable else validate.CHANNELS[band][0]


QUESTIONS: list[Question] = [
    Question("name", "Site name: a DNS label, also the tinc network name.", validate.dns_label,
             default=lambda a: a.get("_dir_name") or "mesh"),
    Question("domain", "DNS domain for the site's names (kept private to the mesh).", validate.domain,
             default=lambda a: f"{a['name']}.internal"),
    Question("country", "Wi-Fi country (ISO 3166-1 alpha-2) for the regulatory domain; 00 = world, "
             "the most restrictive.", validate.country, default=lambda a: "00"),
    Question("mesh_mode", "Wi-Fi mesh: 802.11s (with SAE encryption) or IBSS for radios without mesh point.",
             validate.choice(validate.MESH_MODES), default=lambda a: "80211s", kind="select",
             choices=validate.MESH_MODES),
    Question("mesh_band", "Wi-Fi band of the mesh, GHz.", _parse_band,
             default=lambda a: "2.4", kind="select", choices=tuple(validate.CHANNELS), depends=("country",)),
    Question("mesh_channel", f"Wi-Fi channel of the mesh, one the country allows a mesh to start on "
             f"(no radar detection, checked against {regdb.NAME}).", _parse_channel,
             default=_default_channel, depends=("country", "mesh_band")),
    Question("mesh_id", "802.11s mesh ID (IBSS: SSID), 1-32 bytes.", validate.mesh_id,
             default=lambda a: f"{a['name']}-mesh"),
    Question("mesh_passphrase", "SAE passphrase of the mesh (empty: generate one).", validate.passphrase,
             default=lambda a: secrets.token_urlsafe(18), kind="password", secret=True),
    Question("mesh_mtu", "MTU of the batman-adv mesh interface.", validate.mtu, default=lambda a: 1500),
    Question("ap_ssid", "Wi-Fi name (SSID) of the nodes' access points for phones and laptops, 1-32 bytes.",
             validate.ssid, default=lambda a: a["name"][:32]),
    Question("ap_passphrase", "WPA2/WPA3 passphrase of the access points (empty: generate one).",
             validate.passphrase, default=lambda a: secrets.token_urlsafe(18), kind="password", secret=True),
    Question("overlay", "Encrypted overlay(s) to run.", validate.subset(validate.OVERLAYS, allow_empty=False),
             default=lambda a: list(validate.OVERLAYS), kind="checkbox", choices=validate.OVERLAYS),
    Question("ipv4_plan", "IPv4 plan of the mesh (a private /16 to /22).", validate.ipv4_plan,
             default=random_ipv4_plan),
    Question("ipv6_ula", "IPv6 unique local /48 of the mesh (RFC 4193).", validate.ipv6_ula,
             default=random_ula),
    Question("admin_user", "Admin account created on every node.", validate.unix_user,
             default=lambda a: "mesh"),
    Question("admin_ssh_key", "Admin SSH public key: a .pub file or the key itself.",
             validate.ssh_public_key, default=find_ssh_key),
    Question("admin_password", "Admin password for the console (empty: none; stored only as a hash).",
             validate.passphrase, kind="password", secret=True, optional=True),
    Question("services", "Services to run on the nodes.", validate.subset(validate.SERVICES),
             default=lambda a: ["syncthing", "nncp"], kind="checkbox", choices=validate.SERVICES),
]

BY_NAME = {q.name: q for q in QUESTIONS}
# Changing these would move every node's addresses or rename the network.
IMMUTABLE = ("name", "ipv4_plan", "ipv6_ula")


def parse_answer(question: Question, value, answers: dict):
    if question.depends:
        return question.parse(value, answers)
    return question.parse(value)
