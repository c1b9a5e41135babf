"""The kit: what the controller gives a hub to admit nodes with (docs/invites.md).

The site's inventory as a seed has it (docs/seed.md), without any node's
private keys:

    hosts.yml                          the site's groups
    group_vars/all/site.yml            network-wide settings, the site's signing public key
    group_vars/all/secrets.yml         network-wide secrets (vault_site_*), as every node's seed has them
    group_vars/all/local.yml           the site's own role settings (if it has them)
    group_vars/all/invites.yml         the invites the site made, without their secrets (if any)
    group_vars/all/removed.yml         the nodes the site removed (if any)
    host_vars/<node>/node.yml          every node's public identity and addresses
    ansible.tar.gz                     the roles the hub was provisioned with, for the nodes it admits

A kit holding a node's private keys (host_vars/<node>/secrets.yml or
vault.yml) is refused: a hub has no use for them."""

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import pack, removed

SITE = "group_vars/all/site.yml"
SECRETS = "group_vars/all/secrets.yml"
LOCAL = "group_vars/all/local.yml"
INVITES = "group_vars/all/invites.yml"
REMOVED = "group_vars/all/removed.yml"
HOSTS = "hosts.yml"
ROLES = "ansible.tar.gz"
PRIVATE_FILES = ("secrets.yml", "vault.yml")
# What addresses and the answer need from site.yml.
SITE_VARS = ("meshstead_site_id", "site_name", "site_domain", "site_ipv4_plan", "site_ipv6_ula",
             "site_signing_public_key")


class KitError(ValueError):
    """The kit cannot be used; one line naming the file and what is wrong."""


@dataclass
class Kit:
    site: dict  # site.yml's variables
    signing_public_key: bytes  # raw Ed25519
    ipv4_plan: ipaddress.IPv4Network
    ipv6_ula: ipaddress.IPv6Network
    nodes: dict  # name -> node.yml variables
    invites: dict = field(default_factory=dict)  # id -> the site's record
    secrets: dict = field(default_factory=dict)
    local: dict = field(default_factory=dict)
    hosts: dict = field(default_factory=dict)
    roles: bytes | None = None  # ansible.tar.gz, when the kit has it
    removed: dict = field(default_factory=dict)  # name -> removal (meshstead_join.removed)
    removed_vars: dict = field(default_factory=dict)  # removed.yml as a whole, for the nodes it admits


def read_yaml(path: Path, *, required: bool) -> dict:
    """A YAML mapping of the site's inventory; KitError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise KitError(f"{path} is missing; expected a kit as docs/invites.md describes") from None
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise KitError(f"{path} cannot be read ({type(exc).__name__}); expected a YAML mapping") from None
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise KitError(f"{path} is not a YAML mapping")
    return data


def load(directory: Path) -> Kit:
    directory = Path(directory)
    site = read_yaml(directory / SITE, required=True)
    missing = [name for name in SITE_VARS if name not in site]
    if missing:
        raise KitError(f"{directory / SITE} lacks {', '.join(missing)}")
    try:
        key = base64.b64decode(site["site_signing_public_key"], validate=True)
        plan = ipaddress.IPv4Network(site["site_ipv4_plan"])
        ula = ipaddress.IPv6Network(site["site_ipv6_ula"])
    except (ValueError, TypeError, binascii.Error):
        raise KitError(f"{directory / SITE}: site_signing_public_key, site_ipv4_plan or site_ipv6_ula is "
                       "damaged") from None
    if len(key) != 32:
        raise KitError(f"{directory / SITE}: site_signing_public_key is not an Ed25519 public key")
    nodes = {}
    host_vars = directory / "host_vars"
    for node_dir in sorted(host_vars.iterdir()) if host_vars.is_dir() else []:
        private = [name for name in PRIVATE_FILES if (node_dir / name).exists()]
        if private:
            raise KitError(f"{node_dir / private[0]} is in the kit; expected no node's private keys in a kit")
        node = read_yaml(node_dir / "node.yml", required=True)
        if node.get("node_name") != node_dir.name or not isinstance(node.get("node_index"), int):
            raise KitError(f"{node_dir / 'node.yml'} lacks node_name {node_dir.name!r} or its node_index")
        nodes[node_dir.name] = node
    records = read_yaml(directory / INVITES, required=False).get("site_invites") or []
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str)
                                                for r in records):
        raise KitError(f"{directory / INVITES}: site_invites is not a list of invites with ids")
    removed_vars = read_yaml(directory / REMOVED, required=False)
    try:
        removals = removed.check(removed_vars.get(removed.VARIABLE))
    except removed.RemovedError as exc:
        raise KitError(f"{directory / REMOVED}: {exc}") from None
    try:
        roles = (directory / ROLES).read_bytes()
    except FileNotFoundError:
        roles = None
    except OSError as exc:
        raise KitError(f"{directory / ROLES} cannot be read ({exc.strerror})") from None
    if roles is not None and not pack.looks_packed(roles):
        raise KitError(f"{directory / ROLES} is not a gzip file; expected the roles as ansible.tar.gz")
    return Kit(site=site, signing_public_key=key, ipv4_plan=plan, ipv6_ula=ula, nodes=nodes,
               invites={r["id"]: r for r in records}, secrets=read_yaml(directory / SECRETS, required=False),
               local=read_yaml(directory / LOCAL, required=False), hosts=read_yaml(directory / HOSTS, required=False),
               roles=roles, removed=removals, removed_vars=removed_vars)
