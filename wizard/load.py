"""Read a site back from its inventory: the inventory is the only store."""

from pathlib import Path

import yaml

from .errors import MeshsteadError
from .identity import PRIVATE_NODE_VARS
from .invites import record
from .model import Node, Settings, Site
from .nodeside import module

_removed = module("removed")

SITE_FILE = Path("group_vars/all/site.yml")
INVITES_FILE = Path("group_vars/all/invites.yml")
REMOVED_FILE = Path("group_vars/all/removed.yml")
_NODE_FIELDS = ("node_name", "node_index", "node_fqdn", "node_platform", "node_roles", "node_mesh_ipv4",
                "node_mesh_ipv6", "node_overlay_ipv4", "node_overlay_ipv6", "meshstead_keys_on_node")


def is_site(directory: Path) -> bool:
    return (directory / SITE_FILE).is_file()


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MeshsteadError(str(path), f"cannot read ({str(exc).splitlines()[0]}); expected a meshstead "
                             "generated YAML file") from None
    if not isinstance(data, dict):
        raise MeshsteadError(str(path), "expected a YAML mapping")
    return data


def load_site(directory: Path) -> Site:
    if not is_site(directory):
        raise MeshsteadError("site", f"{directory} is not a meshstead site (no {SITE_FILE}); expected a "
                             "directory made by `meshstead init` (see --site or $MESHSTEAD_SITE)")
    raw = _yaml(directory / SITE_FILE)
    try:
        settings = Settings.from_vars(raw)
    except (KeyError, ValueError, TypeError) as exc:
        raise MeshsteadError(str(directory / SITE_FILE), f"damaged or foreign file ({exc}); expected the "
                             "file meshstead generated") from None
    site = Site(settings)
    hosts = _yaml(directory / "hosts.yml")
    children = (hosts.get("all") or {}).get("children") or {}
    names = [n for group in ("debian", "openwrt") for n in ((children.get(group) or {}).get("hosts") or {})]
    for name in names:
        node_dir = directory / "host_vars" / name
        data = _yaml(node_dir / "node.yml")
        public = {k: v for k, v in data.items() if k not in _NODE_FIELDS and k not in PRIVATE_NODE_VARS}
        site.nodes[name] = Node(name=name, index=int(data["node_index"]), platform=data["node_platform"],
                                roles=list(data["node_roles"]), public=public,
                                has_secrets=(node_dir / "vault.yml").exists())
    site.invites = _invites(directory / INVITES_FILE)
    site.removed = _removed_nodes(directory / REMOVED_FILE)
    return site


def _removed_nodes(path: Path) -> dict:
    if not path.exists():
        return {}  # no node removed yet
    try:
        return _removed.check(_yaml(path).get(_removed.VARIABLE))
    except _removed.RemovedError as exc:
        raise MeshsteadError(str(path), f"damaged or foreign file ({exc}); expected the file meshstead "
                             "generated") from None


def _invites(path: Path) -> list:
    if not path.exists():
        return []  # a site that has made no invite yet
    try:
        return [record.InviteRecord.from_var(raw) for raw in _yaml(path)[record.VARIABLE] or []]
    except (KeyError, ValueError, TypeError) as exc:
        raise MeshsteadError(str(path), f"damaged or foreign file ({exc}); expected the file meshstead "
                             "generated") from None


def previous_answers(site: Site, has_password: bool) -> dict:
    """The existing site's settings as answers, so a re-run asks nothing new."""
    return {**site.settings.to_answers(), "mesh_passphrase": "(kept)",
            "admin_password": "(kept)" if has_password else None}
