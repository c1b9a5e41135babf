"""`meshstead invite phone`: a hub's Syncthing device ID as the QR code the
Syncthing Android app scans, and a window in which that hub accepts the phone
and shares the carrier folder with it (docs/invites.md, "Phones").

The window is opened on the hub over the connection `provision` uses
(playbooks/phone.yml runs `meshstead-join phone ARGS` there and hands its
answer back), as `node import` reads the hubs; the hub's watcher
(meshstead-phones.service, the join role's) accepts the phone."""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import nodeside, provision, sites
from ..errors import MeshsteadError
from ..model import Node, Site

_groups = nodeside.module("groups")
_phones = nodeside.module("phones")

CARRIER = _phones.CARRIER
SYNCTHING_PORT = 22000  # the syncthing role's syncthing_port
MAX_PHONES = _phones.MAX_PHONES
DEVICE_ID_PATTERN = _phones.DEVICE_ID


@dataclass
class Target:
    hub: Node
    device_id: str
    address: str  # what the phone types: tcp://<the hub's mesh IPv4>:22000
    ssid: str
    folders: list[str]


def site_folders(directory: Path) -> list[str]:
    """The ids of the site's Syncthing folders (site_syncthing_folders)."""
    try:
        data = yaml.safe_load((directory / "group_vars/all/site.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    folders = data.get("site_syncthing_folders") or []
    return [f["id"] for f in folders if isinstance(f, dict) and isinstance(f.get("id"), str)]


def choose(site: Site, directory: Path, hub: str | None, folders: list[str] | None) -> Target:
    """The hub (default: the site's first), which must run Syncthing, and the
    folders a phone gets (default: the carrier folder), each the site's."""
    hubs = site.hubs()
    if hub is None:
        if not hubs:
            raise MeshsteadError("hub", "the site has no hub to let phones in; expected a node with role hub "
                                 "(meshstead node add NAME --role hub)")
        node = hubs[0]
    elif hub in site.nodes and site.nodes[hub] in hubs:
        node = site.nodes[hub]
    else:
        raise MeshsteadError("hub", f"{hub!r} is not a hub of the site; expected one of: "
                             f"{', '.join(h.name for h in hubs) or '(none: add a node with --role hub)'}")
    if "syncthing" not in site.settings.services:
        raise MeshsteadError("hub", f"the site runs no Syncthing (services: {', '.join(site.settings.services) or '-'}"
                             "); expected syncthing among them (meshstead init --set services=syncthing,nncp)")
    device_id = node.public.get("syncthing_device_id")
    if node.platform not in _groups.DEBIAN_PLATFORMS or not isinstance(device_id, str) \
            or not DEVICE_ID_PATTERN.match(device_id):
        raise MeshsteadError("hub", f"{node.name} runs no Syncthing ({node.platform}); expected a Debian hub "
                             f"({', '.join(h.name for h in hubs if h.platform in _groups.DEBIAN_PLATFORMS) or 'none'})")
    known = site_folders(directory)
    chosen = list(dict.fromkeys(folders or [CARRIER]))
    for folder in chosen:
        if folder not in known:
            raise MeshsteadError("folder", f"{folder!r} is not a Syncthing folder of the site; expected one of: "
                                 f"{', '.join(known) or '(none)'}")
    address = site.node_facts(node)["node_mesh_ipv4"]
    return Target(node, device_id, f"tcp://{address}:{SYNCTHING_PORT}", site.settings.ap_ssid, chosen)


def parse_phones(text) -> int:
    try:
        count = int(str(text))
    except ValueError:
        count = 0
    if not 0 < count <= MAX_PHONES:
        raise MeshsteadError("phones", f"{text!r} is not a number of phones from 1 to {MAX_PHONES}")
    return count


def parse_device(text: str) -> str:
    value = str(text).strip().upper()
    if not DEVICE_ID_PATTERN.match(value):
        raise MeshsteadError("remove", f"{text!r} is not a Syncthing device ID; expected 8 groups of 7 letters "
                             "and digits joined by '-' (from `invite phone --list`)")
    return value


@dataclass
class Answer:
    rc: int
    stdout: str
    stderr: str


def on_hub(opened: sites.Opened, hub: str, args: list[str], on_task=None) -> Answer:
    """`meshstead-join phone ARGS` on the hub, over Ansible (playbooks/phone.yml)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshstead"
    log = cache / f"phone-{opened.site.settings.site_id}.log"
    with tempfile.TemporaryDirectory(prefix="meshstead-phone-") as tmp:
        extra = {"meshstead_phone_args": args, "meshstead_phone_out": tmp}
        argv = provision.command(opened.directory, opened.vault.path, playbook="phone.yml", limit=hub,
                                 extra=["-e", json.dumps(extra)])
        outcome = provision.run(argv, log, on_task=on_task, facts_dir=cache / "facts" / opened.site.settings.site_id)
        path = Path(tmp) / f"{hub}.json"
        answer = json.loads(path.read_text()) if path.is_file() else None
    if answer is None:
        why = outcome.failures[0] if outcome.failures else f"ansible-playbook exited {outcome.returncode}"
        raise HubError(f"{hub} did not answer: {why} (log: {outcome.log})")
    result = Answer(int(answer.get("rc", 1)), str(answer.get("stdout") or ""), str(answer.get("stderr") or ""))
    if result.rc != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.rc == 2 and any("invalid choice: 'phone'" in line for line in lines) or not lines:
            raise HubError(f"{hub} has no window for phones yet; expected it provisioned by this meshstead "
                           f"first (meshstead provision --limit {hub} --site {opened.directory})")
        raise HubError(f"{hub}: {lines[-1].removeprefix('meshstead-join: ')}")
    if outcome.failures:  # the command ran, the watcher did not start
        raise HubError(f"{hub}: {outcome.failures[0]} (log: {outcome.log})")
    return result


class HubError(Exception):
    """The hub was not reached, or refused: exit 1, one line."""
