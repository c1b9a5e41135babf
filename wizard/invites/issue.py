"""Making an invite on the controller: check the grant against the site, sign
it with the site's key, and record it in the site without its secret."""

import datetime
import ipaddress
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..errors import MeshsteadError
from ..model import Node, Site, parse_node
from . import token
from .record import InviteRecord, timestamp

MAX_LIFETIME = datetime.timedelta(days=30)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass
class Made:
    text: str
    invite: token.Invite
    record: InviteRecord


def parse_lifetime(text: str) -> datetime.timedelta:
    match = re.fullmatch(r"(\d+)([mhd])", str(text).strip().lower())
    lifetime = datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}) if match else None
    if lifetime is None or not datetime.timedelta(0) < lifetime <= MAX_LIFETIME:
        raise MeshsteadError("expires", f"{text!r} is not a lifetime from 1m to 30d; expected a number and m, h "
                             "or d, e.g. 30m, 24h, 7d")
    return lifetime


def parse_endpoint(text: str) -> token.Endpoint:
    """ADDR, ADDR:PORT, [IPv6] or [IPv6]:PORT; the join port by default."""
    text = str(text).strip()
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text) or re.fullmatch(r"([0-9.]+)(?::(\d+))?", text)
    address_text, port_text = (match.group(1), match.group(2)) if match else (text, None)
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        address = None
    port = int(port_text) if port_text else token.JOIN_PORT
    if address is None or not 1 <= port <= 65535:
        raise MeshsteadError("endpoint", f"{text!r} is not an address with an optional port; expected e.g. "
                             f"10.42.0.1, 10.42.0.1:{token.JOIN_PORT} or [fd12::1]:{token.JOIN_PORT}")
    return address, port


def choose_hub(site: Site, name: str | None) -> Node:
    hubs = site.hubs()
    if name is None:
        if not hubs:
            raise MeshsteadError("hub", "the site has no hub to serve the join; expected a node with role hub "
                                 "(meshstead node add NAME --role hub)")
        return hubs[0]
    if name not in site.nodes or site.nodes[name] not in hubs:
        raise MeshsteadError("hub", f"{name!r} is not a hub of the site; expected one of: "
                             f"{', '.join(h.name for h in hubs) or '(none: add a node with --role hub)'}")
    return site.nodes[name]


def check_new_name(site: Site, name: str, now: datetime.datetime) -> None:
    if name in site.nodes:
        raise MeshsteadError("name", f"a node named {name!r} already exists; expected a new name")
    if name in site.removed:
        raise MeshsteadError("name", f"{name!r} is a removed node's name (removed at "
                             f"{site.removed[name]['removed_at']}): hubs admit no node by it; expected a new name, "
                             f"or `meshstead node add {name}` to give it to a new node with new keys made here")
    for other in site.invites:
        if other.name == name and other.state(now) == "unused":
            raise MeshsteadError("name", f"invite {other.id} for {name!r} is unused until {other.expires}; "
                                 "expected a new name (or revoke that invite first)")


def create(site: Site, site_secrets: dict, name: str, platform: str, roles: list[str], *,
           lifetime: datetime.timedelta, hub: str | None = None, endpoints: list[str] | None = None,
           now: datetime.datetime | None = None) -> Made:
    """Validate everything, sign, and add the record to `site` (in memory: the caller writes)."""
    now = now or datetime.datetime.now(datetime.UTC)
    name, platform, roles = parse_node(name, platform, roles)
    check_new_name(site, name, now)
    hub_node = choose_hub(site, hub)
    if "join_pin" not in hub_node.public:
        raise MeshsteadError("hub", f"{hub_node.name} has no join key yet; expected a hub the site made "
                             "(open the site with its vault to give it one)")
    parsed = [parse_endpoint(e) for e in endpoints or []]
    if not parsed:
        address = site.node_facts(hub_node)["node_mesh_ipv4"]
        parsed = [(ipaddress.ip_address(address), token.JOIN_PORT)]
    parsed.sort(key=lambda e: e[0].version)  # the order the invite holds them in: IPv4 first
    expires = now + lifetime
    invite = token.Invite(secret=secrets.token_bytes(token.SECRET_BYTES), expires=int(expires.timestamp()),
                          endpoints=parsed, pin=token.b64url_decode(hub_node.public["join_pin"]), name=name,
                          platform=platform, roles=roles)
    key = load_pem_private_key(site_secrets["site_signing_private_key"].encode(), None)
    try:
        text = token.encode(invite, key)
    except token.InviteError as exc:
        shorter = "name" if token.max_name_length(parsed, platform) > 0 else "endpoint"
        raise MeshsteadError(shorter if exc.problem == "too_long" else "invite", str(exc)) from None
    record = InviteRecord(id=invite.id, name=name, platform=platform, roles=roles, hub=hub_node.name,
                          endpoints=[token.format_endpoint(e) for e in parsed], created=timestamp(now),
                          expires=timestamp(invite.expires_at))
    site.invites.append(record)
    return Made(text, invite, record)
