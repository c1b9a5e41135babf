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

from . import validate


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


def _parse_channel(value, answers):
    return validate.channel_for(answers.get("mesh_band", "2.4"))(value)


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
    Question("mesh_band", "Wi-Fi band of the mesh, GHz.", validate.choice(tuple(validate.CHANNELS)),
             default=lambda a: "2.4", kind="select", choices=tuple(validate.CHANNELS)),
    Question("mesh_channel", "Wi-Fi channel of the mesh.", _parse_channel,
             default=lambda a: 1 if a.get("mesh_band", "2.4") == "2.4" else 36),
    Question("mesh_id", "802.11s mesh ID (IBSS: SSID), 1-32 bytes.", validate.mesh_id,
             default=lambda a: f"{a['name']}-mesh"),
    Question("mesh_passphrase", "SAE passphrase of the mesh (empty: generate one).", validate.passphrase,
             default=lambda a: secrets.token_urlsafe(18), kind="password", secret=True),
    Question("mesh_mtu", "MTU of the batman-adv mesh interface.", validate.mtu, default=lambda a: 1500),
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
    if question.parse is _parse_channel:
        return _parse_channel(value, answers)
    return question.parse(value)
