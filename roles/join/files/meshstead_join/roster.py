"""The roster: a hub's signed list of the nodes it admitted, so that the rest
of the site can learn them without `provision` (docs/invites.md, "The roster").

A hub signs the canonical JSON bytes of the document with its join key (the
key of `join_tls_cert`); a node trusts a roster only through its own
inventory: the signer must be in its `hubs` group, the site its site, the
serial newer than the last one the caller accepted from that hub. Every entry
is then checked as the hub checks a joining node, and against the nodes the
inventory has. Nothing here keeps state but the hub's serial (`publish`)."""

import datetime
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import addresses, groups, identity, kit, removed, token
from .state import State, write_atomic

FORMAT = 1
MAX_BYTES = 64 * 1024 * 1024  # a roster of the largest plan (16381 nodes of ~4 KiB) fits
FIELDS = ("format", "site_id", "hub", "serial", "issued", "nodes", "removed")
NODE_FIELDS = ("node_name", "node_index", "node_fqdn", "node_platform", "node_roles")
# Public variables no two nodes may share: each names a node to one program.
UNIQUE_VARS = ("tinc_public_key", "yggdrasil_public_key", "syncthing_device_id", "nncp_id",
               "ssh_host_ed25519_fingerprint", "join_pin")
SERIAL_FILE = "roster_serial"  # in the hub's state directory
PUBLISHED_FILE = "roster.json"  # the join service's roster, in its state directory
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ISSUED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class RosterError(ValueError):
    """Why a roster is refused as a whole, or cannot be published. `problem`
    is one of: malformed, version, signature, hub, site, replay, inventory
    (checking); kit, key, state (publishing)."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


@dataclass
class Inventory:
    """What a node trusts a roster through: its own inventory. A caller that
    has applied nodes from rosters adds them to `nodes`, so later entries are
    checked against them too."""
    site_id: str
    domain: str
    ipv4_plan: ipaddress.IPv4Network
    ipv6_ula: ipaddress.IPv6Network
    hubs: dict  # name -> its join key (Ed25519PublicKey), or None when the inventory has none
    nodes: dict  # name -> node.yml variables
    removed: dict = field(default_factory=dict)  # removed.yml's site_removed_nodes (meshstead_join.removed)


@dataclass
class Checked:
    hub: str
    serial: int
    issued: str
    added: dict = field(default_factory=dict)  # name -> entry: nodes the inventory lacks, acceptable
    known: list = field(default_factory=list)  # names of entries that are inventory nodes already
    refused: dict = field(default_factory=dict)  # name -> one line: entries not to apply
    removed: dict = field(default_factory=dict)  # name -> {"node_index", "at"}: the site removed them


def canonical(value) -> bytes:
    """The one byte form of a document: what is signed and verified."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def document(site_id: str, hub: str, serial: int, issued: str, nodes: dict, removed: dict | None = None) -> dict:
    return {"format": FORMAT, "site_id": site_id, "hub": hub, "serial": serial, "issued": issued,
            "nodes": nodes, "removed": removed or {}}


def sign(roster: dict, key: Ed25519PrivateKey) -> bytes:
    """The roster file: the canonical bytes and their signature, base64url."""
    signed = canonical(roster)
    envelope = {"roster": token.b64url(signed), "signature": token.b64url(key.sign(signed))}
    return (json.dumps(envelope, sort_keys=True) + "\n").encode()


# -- the trust root ---------------------------------------------------------

def _join_key(node: dict | None):
    try:
        key = x509.load_pem_x509_certificate(node["join_tls_cert"].encode()).public_key()
    except (TypeError, KeyError, AttributeError, ValueError):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def load_inventory(directory: Path) -> Inventory:
    """A node's inventory: the controller's site directory, a kit, or a seed
    (its `inventory/`). Only public files are read."""
    directory = Path(directory)
    if (directory / "seed.json").is_file() and (directory / "inventory").is_dir():
        directory = directory / "inventory"
    try:
        site = kit.read_yaml(directory / kit.SITE, required=True)
        hosts = kit.read_yaml(directory / kit.HOSTS, required=True)
        host_vars = directory / "host_vars"
        nodes = {d.name: kit.read_yaml(d / "node.yml", required=True)
                 for d in sorted(host_vars.iterdir()) if d.is_dir()} if host_vars.is_dir() else {}
        plan = ipaddress.IPv4Network(site["site_ipv4_plan"])
        ula = ipaddress.IPv6Network(site["site_ipv6_ula"])
        site_id, domain = str(site["meshstead_site_id"]), str(site["site_domain"])
        gone = removed.check(kit.read_yaml(directory / kit.REMOVED, required=False).get(removed.VARIABLE))
    except removed.RemovedError as exc:
        raise RosterError("inventory", f"{directory / kit.REMOVED}: {exc}") from None
    except kit.KitError as exc:
        raise RosterError("inventory", str(exc)) from None
    except (KeyError, TypeError, ValueError):
        raise RosterError("inventory", f"{directory / kit.SITE} lacks a usable meshstead_site_id, site_domain, "
                          "site_ipv4_plan or site_ipv6_ula") from None
    hubs = {name: _join_key(nodes.get(name)) for name in sorted(groups.members(hosts, "hubs"))}
    return Inventory(site_id, domain, plan, ula, hubs, nodes, gone)


# -- the document as a whole ----------------------------------------------

def _envelope(data: bytes) -> tuple[bytes, bytes]:
    """(signed bytes, signature) of a roster file."""
    if len(data) > MAX_BYTES:
        raise RosterError("malformed", f"the roster file is {len(data)} bytes, more than {MAX_BYTES}")
    try:
        envelope = json.loads(data)
        if not isinstance(envelope, dict) or set(envelope) != {"roster", "signature"}:
            raise ValueError
        signed, signature = token.b64url_decode(envelope["roster"]), token.b64url_decode(envelope["signature"])
    except (ValueError, TypeError, UnicodeDecodeError):
        raise RosterError("malformed", 'not a roster file; expected JSON {"roster": base64url, "signature": '
                          "base64url}") from None
    if len(signature) != 64:
        raise RosterError("malformed", "the roster's signature is not 64 bytes (Ed25519)")
    return signed, signature


def _claims(signed: bytes) -> dict:
    """What unverified bytes say, used only to word a refusal."""
    try:
        claims = json.loads(signed)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _signer(signed: bytes, signature: bytes, inventory: Inventory) -> str:
    """The hub of the inventory whose join key made the signature. Every
    hub's key is tried, so nothing of the unverified bytes picks the key."""
    for name, key in inventory.hubs.items():
        try:
            if key is not None:
                key.verify(signature, signed)
                return name
        except InvalidSignature:
            continue
    claims = _claims(signed)
    site_id, hub = claims.get("site_id"), claims.get("hub")
    if site_id is not None and site_id != inventory.site_id:
        raise RosterError("site", f"the roster is of another site ({site_id!r}); expected one of site "
                          f"{inventory.site_id}")
    if isinstance(hub, str) and hub not in inventory.hubs:
        what = "a node of this site but not a hub" if hub in inventory.nodes else "no node of this site"
        raise RosterError("hub", f"the roster is signed as {hub}'s, which is {what}; expected a roster of a node "
                          "of the inventory's hubs group")
    if isinstance(hub, str) and inventory.hubs[hub] is None:
        raise RosterError("hub", f"the inventory has no join key (join_tls_cert) of hub {hub}")
    named = f"{hub}'s join key" if isinstance(hub, str) else "the join key of any hub of this site"
    raise RosterError("signature", f"the roster was changed (its signature does not verify with {named}); "
                      "expected it exactly as its hub signed it")


def _form(signed: bytes) -> dict:
    """The verified bytes as a document: the fields it must have, in the one byte form."""
    try:
        roster = json.loads(signed)
    except (ValueError, UnicodeDecodeError):
        roster = None
    if not isinstance(roster, dict) or canonical(roster) != signed:
        raise RosterError("malformed", "the roster's bytes are not the canonical JSON of an object")
    if roster.get("format") != FORMAT:
        raise RosterError("version", f"roster format {roster.get('format')!r} is not one this meshstead reads "
                          f"(it reads format {FORMAT})")
    if set(roster) != set(FIELDS):
        raise RosterError("malformed", f"the roster's fields are {', '.join(sorted(roster))}; expected "
                          f"{', '.join(FIELDS)}")
    serial = roster["serial"]
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise RosterError("malformed", f"the roster's serial {serial!r} is not a whole number above 0")
    if not isinstance(roster["issued"], str) or not _ISSUED.match(roster["issued"]):
        raise RosterError("malformed", "the roster's issued time is not UTC ISO 8601 (2026-12-03T08:55:49Z)")
    if not isinstance(roster["nodes"], dict) or not isinstance(roster["removed"], dict):
        raise RosterError("malformed", "the roster's nodes and removed are not mappings")
    return roster


def _removed(removed: dict) -> dict:
    for name, entry in removed.items():
        whole = isinstance(entry, dict) and set(entry) == {"node_index", "at"}
        if not _LABEL.match(name) or not whole or not isinstance(entry["node_index"], int) \
                or isinstance(entry["node_index"], bool) or not isinstance(entry["at"], str):
            raise RosterError("malformed", f"the roster's removed entry {name!r} is not "
                              '{"node_index": number, "at": time}')
    return removed


# -- each entry --------------------------------------------------------------

class _Refused(Exception):
    """One entry is not to be applied; the rest of the roster stays acceptable."""


def _fields(name: str, entry, inventory: Inventory) -> dict:
    """The entry's own checks, as a hub's for a joining node; the plan's addresses."""
    if not _LABEL.match(name) or not isinstance(entry, dict) or entry.get("node_name") != name:
        raise _Refused("the entry is damaged (no node_name equal to its name, a DNS label)")
    index = entry.get("node_index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 < index <= addresses.max_nodes(
            inventory.ipv4_plan):
        raise _Refused(f"its index {index!r} is not one of the site's plan ({inventory.ipv4_plan})")
    plan = addresses.node_addresses(inventory.ipv4_plan, inventory.ipv6_ula, index)
    expected = {*NODE_FIELDS, *plan, *identity.PUBLIC_VARS}
    extra, missing = sorted(set(entry) - expected), sorted(expected - set(entry))
    if extra or missing:
        raise _Refused(f"it carries {extra[0]}, which no roster entry may" if extra else f"it lacks {missing[0]}")
    try:
        identity.check({k: entry[k] for k in identity.PUBLIC_VARS})
    except identity.IdentityError as exc:
        raise _Refused(f"its identity: {exc}") from None
    if any(entry[k] != v for k, v in plan.items()):
        raise _Refused(f"its addresses are not the site's plan for index {index}")
    if entry["node_fqdn"] != f"{name}.{inventory.domain}":
        raise _Refused(f"its name {entry['node_fqdn']!r} is not {name} in the site's domain {inventory.domain}")
    platform, roles = entry["node_platform"], entry["node_roles"]
    if not isinstance(platform, str) or not (platform in groups.DEBIAN_PLATFORMS or platform.startswith("openwrt:")):
        raise _Refused(f"its platform {platform!r} is not one of {', '.join(groups.DEBIAN_PLATFORMS)} or openwrt:…")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r in groups.ROLE_GROUPS for r in roles):
        raise _Refused(f"its roles {roles!r} are not a list of {', '.join(groups.ROLE_GROUPS)}")
    return entry


def _same_node(entry: dict, node: dict) -> bool:
    """One node: the same index and public identity (the inventory's other
    variables win: it is the source of truth)."""
    return node.get("node_index") == entry["node_index"] and all(
        node.get(k) == entry[k] for k in identity.PUBLIC_VARS)


def _clash(name: str, entry: dict, others: dict) -> bool:
    """True if `others` has this very node; _Refused if another node has its
    name, index or keys."""
    if name in others:
        if _same_node(entry, others[name]):
            return True
        raise _Refused(f"the inventory has another node {name} (index {others[name].get('node_index')}, other keys)")
    for other, node in sorted(others.items()):
        if node.get("node_index") == entry["node_index"]:
            raise _Refused(f"its index {entry['node_index']} is {other}'s")
        shared = [k for k in UNIQUE_VARS if node.get(k) == entry[k]]
        if shared:
            raise _Refused(f"its keys are {other}'s ({shared[0]})")
    return False


def _entries(nodes: dict, inventory: Inventory, checked: Checked) -> None:
    """Sort every entry into added, known or refused; an added entry counts
    against the later ones (by index), as the inventory's nodes do."""
    def order(item):
        index = item[1].get("node_index") if isinstance(item[1], dict) else None
        return (index if isinstance(index, int) else 0, item[0])

    for name, entry in sorted(nodes.items(), key=order):
        try:
            _fields(name, entry, inventory)
            if name in inventory.removed:
                raise _Refused(f"it is a node the site removed ({inventory.removed[name]['removed_at']})")
            gone = removed.clash(entry, inventory.removed)
            if gone:
                raise _Refused(f"its keys are those of {gone[0]}, a node the site removed ({gone[1]})")
            if _clash(name, entry, {**inventory.nodes, **checked.added}):
                checked.known.append(name)
            else:
                checked.added[name] = entry
        except _Refused as refused:
            checked.refused[name] = str(refused)


def check(data: bytes, inventory: Inventory, after: int = 0) -> Checked:
    """A roster file checked against the node's inventory; `after` is the
    serial last accepted from the same hub (0: none). RosterError if the
    roster as a whole is refused."""
    signed, signature = _envelope(data)
    hub = _signer(signed, signature, inventory)
    roster = _form(signed)  # verified: these exact bytes are the hub's
    if roster["hub"] != hub:
        raise RosterError("hub", f"the roster is signed by {hub} but names {roster['hub']!r} as its hub")
    if roster["site_id"] != inventory.site_id:
        raise RosterError("site", f"the roster is of another site ({roster['site_id']!r}); expected one of site "
                          f"{inventory.site_id}")
    if roster["serial"] <= after:
        raise RosterError("replay", f"the roster's serial {roster['serial']} is not above {after}, the last "
                          f"accepted from {hub}; a replayed or older roster")
    checked = Checked(hub, roster["serial"], roster["issued"], removed=_removed(roster["removed"]))
    _entries(roster["nodes"], inventory, checked)
    return checked


# -- the hub's side -----------------------------------------------------------

@dataclass
class Published:
    hub: str
    serial: int
    nodes: int
    changed: bool  # False: the same roster as the last publish, byte for byte


def _hub_key(site: kit.Kit, key_pem: bytes) -> tuple[str, Ed25519PrivateKey]:
    """The kit's hub whose join_pin is the key's."""
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise RosterError("key", "the key is not an Ed25519 private key in PEM (join_tls_key)")
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = token.b64url(token.pin(spki))
    name = next((n for n, node in sorted(site.nodes.items()) if node.get("join_pin") == pin), None)
    if name is None:
        raise RosterError("key", f"the key (pin {pin}) is no node's join key in the kit")
    if name not in groups.members(site.hosts, "hubs"):
        raise RosterError("key", f"the key is {name}'s join key, and {name} is not a hub of the site")
    return name, key


def _last(state: State) -> dict:
    try:
        last = yaml.safe_load((state.directory / SERIAL_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"serial": 0, "issued": None, "sha256": None}
    if not isinstance(last, dict) or not isinstance(last.get("serial"), int):
        raise RosterError("state", f"{state.directory / SERIAL_FILE} is damaged; expected serial, issued, sha256")
    return last


def publish(state_dir: Path, kit_dir: Path, key_pem: bytes, out: Path, now: float) -> Published:
    """Write the hub's roster to `out` (0644: it is public). The serial moves
    only when what the roster says changed; otherwise the same bytes are
    written again (Ed25519 signatures are deterministic), so a carrier that
    syncs the file sees no change."""
    try:
        site = kit.load(kit_dir)
    except kit.KitError as exc:
        raise RosterError("kit", str(exc)) from None
    hub, key = _hub_key(site, key_pem)
    state = State(state_dir)
    if not state.joined_dir.is_dir():
        raise RosterError("state", f"{state_dir} holds no join service's state")
    state.prepare()
    with state.locked():  # no join and no other publish between reading the nodes and the serial
        # The site's removals come with the kit: a removed node leaves the roster's nodes for its removed.
        gone = removed.for_roster(site.removed)
        nodes = {name: node for name, node in state.joined().items()
                 if not removed.was_removed(site.removed, name, node.get("node_index"))}
        content = {"site_id": site.site["meshstead_site_id"], "hub": hub, "nodes": nodes, "removed": gone}
        digest = hashlib.sha256(canonical(content)).hexdigest()
        last = _last(state)
        changed = last["sha256"] != digest
        serial = last["serial"] + 1 if changed else last["serial"]
        issued = _timestamp(now) if changed else last["issued"]
        if changed:
            # Before the file: if the file is then lost, the next publish makes the same bytes again.
            write_atomic(state.directory / SERIAL_FILE, yaml.safe_dump(
                {"serial": serial, "issued": issued, "sha256": digest}, sort_keys=False).encode(), 0o600)
        roster = document(content["site_id"], hub, serial, issued, nodes, gone)
        write_atomic(Path(out), sign(roster, key), 0o644)
    return Published(hub, serial, len(nodes), changed)


def _timestamp(moment: float) -> str:
    return datetime.datetime.fromtimestamp(int(moment), datetime.UTC).isoformat().replace("+00:00", "Z")
