"""The seed a joined node writes from its hub's answer and its own keys: the
layout of docs/seed.md, so the image's first boot checks and applies it as it
does a seed the controller wrote. The node's private keys go only into its
own host_vars/<node>/secrets.yml, under the vault_* names a controller's seed
uses (wizard/images/seed.py)."""

import copy
import datetime
import hashlib
import json
from pathlib import Path

import yaml

from . import groups
from .keys import PRIVATE_NODE_VARS
from .state import write_atomic

FORMAT = 1
# The image's Ansible (wizard/images/base.py's ANSIBLE_VENV; a test holds them equal).
ANSIBLE_PYTHON = "/opt/meshstead/ansible/bin/python"
ANSIBLE_PLAYBOOK = "/opt/meshstead/ansible/bin/ansible-playbook"
# Seconds for Ansible's connection (Mitogen's local interpreter) to start: on an
# emulated or small arm64 CPU it takes longer than Ansible's default 10 s.
FIRSTBOOT_TIMEOUT = 120
TARBALL = "ansible.tar.gz"


def _yaml(data: dict) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).encode()


def hosts(answer: dict) -> dict:
    """The hub's hosts.yml with this node and the nodes joined at that hub
    (which the kit's hosts.yml does not list) added to their groups."""
    site, node = answer["site"], answer["node"]
    data = copy.deepcopy(site.get("hosts") or groups.empty())
    present = groups.listed(data.get("all"))
    overlay, services = site["vars"].get("site_overlay") or [], site["vars"].get("site_services") or []
    nodes = {**site.get("nodes", {}), node["node_name"]: node}
    for name, facts in sorted(nodes.items(), key=lambda item: item[1].get("node_index", 0)):
        if name not in present:
            groups.add_host(data, name, facts["node_platform"], facts.get("node_roles") or [], overlay, services)
    return data


def files(answer: dict, private: dict, tarball: bytes | None = None, python: str = ANSIBLE_PYTHON,
          local: dict | None = None) -> tuple[dict[str, bytes], list[str]]:
    """{path under meshstead/: bytes}, and which of them are private. `local`:
    the node's own settings (a controller's host_vars/<node>/local.yml)."""
    site, node = answer["site"], answer["node"]
    name = node["node_name"]
    out = {"inventory/hosts.yml": _yaml(hosts(answer)),
           "inventory/group_vars/all/site.yml": _yaml(site["vars"])}
    if site.get("local"):
        out["inventory/group_vars/all/local.yml"] = _yaml(site["local"])
    if site.get("removed"):
        out["inventory/group_vars/all/removed.yml"] = _yaml(site["removed"])
    for other, facts in sorted(site.get("nodes", {}).items()):
        if other != name:
            out[f"inventory/host_vars/{other}/node.yml"] = _yaml(facts)
    # Its own node.yml names its private keys as a controller's does: visible
    # names, values from secrets.yml.
    own = {**node, **{var: "{{ vault_" + var + " }}" for var in PRIVATE_NODE_VARS}}
    out[f"inventory/host_vars/{name}/node.yml"] = _yaml(own)
    if local:
        out[f"inventory/host_vars/{name}/local.yml"] = _yaml(local)
    out[f"inventory/host_vars/{name}/firstboot.yml"] = _yaml(
        {"ansible_connection": "local", "ansible_python_interpreter": python, "ansible_timeout": FIRSTBOOT_TIMEOUT})
    if tarball is not None:
        out[TARBALL] = tarball
    secret = {"inventory/group_vars/all/secrets.yml": _yaml(site.get("secrets") or {}),
              f"inventory/host_vars/{name}/secrets.yml": _yaml({f"vault_{k}": private[k] for k in PRIVATE_NODE_VARS})}
    out.update(secret)
    return out, sorted(secret)


def manifest(site_id: str, site_name: str | None, node: str, content: dict[str, bytes], private: list[str],
             made: datetime.datetime) -> bytes:
    """seed.json: one writer for the controller's seeds and a joined node's."""
    return (json.dumps({
        "format": FORMAT, "site_id": site_id, "site_name": site_name, "node": node,
        "made": made.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(content.items())},
        "private": private}, indent=2) + "\n").encode()


def write(directory: Path, answer: dict, private: dict, tarball: bytes | None = None,
          python: str = ANSIBLE_PYTHON, local: dict | None = None) -> list[str]:
    """Write the seed into `directory` (the `meshstead/` directory of
    docs/seed.md); the paths written. seed.json goes first out and last in:
    a first boot never sees a manifest beside files it does not describe."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "seed.json").unlink(missing_ok=True)
    content, secret = files(answer, private, tarball, python, local)
    for rel, data in sorted(content.items()):
        path = directory / rel
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, data, 0o600 if rel in secret else 0o644)
    site_vars = answer["site"]["vars"]
    made = manifest(site_vars["meshstead_site_id"], site_vars.get("site_name"), answer["node"]["node_name"], content,
                    secret, datetime.datetime.now(datetime.UTC))
    write_atomic(directory / "seed.json", made, 0o644)
    return ["seed.json", *sorted(content)]
