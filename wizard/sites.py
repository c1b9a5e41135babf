"""What the commands do to a site: init, add nodes, read identities.

Every operation validates everything first, then writes all files at once
(or, with dry_run, only reports what it would write)."""

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from passlib.hash import sha512_crypt

from . import answers as answers_mod
from . import validate
from .errors import MeshsteadError
from .fsutil import FileChange, apply_writes, plan_writes
from .identity import PUBLIC_VARS, signing
from .identity import join as join_identity
from .identity import node as node_identity
from .load import is_site, load_site, previous_answers
from .model import Node, Settings, Site, parse_node
from .questions import BY_NAME, IMMUTABLE
from .render import inventory
from .vault import Vault, new_password, password_file, write_password_file

GROUP_VAULT = Path("group_vars/all/vault.yml")


@dataclass
class Opened:
    """A loaded site with its vault and network-wide secrets."""
    directory: Path
    site: Site
    vault: Vault
    site_secrets: dict
    new_password_file: Path | None = None
    node_secrets: dict = field(default_factory=dict)


def _strip_vault(data: dict) -> dict:
    return {k.removeprefix("vault_"): v for k, v in data.items()}


# Site secrets added after the first sites were made, with the question that
# generates them: a site opened without one gets it generated as a new site
# would, and the next write (init, node add) stores it in the vault.
ADDED_SECRETS = {"site_ap_passphrase": "ap_passphrase"}


# Node identities added after the first sites were made, per program: a node
# whose keys the site holds but that lacks one gets it generated once, as a new
# node would, and the next write stores it beside the keys it already has.
ADDED_IDENTITIES = {"join": join_identity.generate}


def open_site(directory: Path, vault_override: str | None = None) -> Opened:
    site = load_site(directory)
    vault = Vault.from_file(password_file(site.settings.site_id, vault_override))
    site_secrets = _strip_vault(vault.decrypt(directory / GROUP_VAULT))
    for name, question in ADDED_SECRETS.items():
        if name not in site_secrets:
            site_secrets[name] = BY_NAME[question].default({})
    opened = Opened(directory, site, vault, site_secrets)
    _add_missing_identities(opened)
    return opened


def _add_missing_identities(opened: Opened) -> None:
    for node in opened.site.sorted_nodes():
        missing = [program for program in ADDED_IDENTITIES if PUBLIC_VARS[program][0] not in node.public]
        if not node.has_secrets or not missing:
            continue  # a node that made its own keys publishes its own identities
        secrets = node_secrets(opened, node.name)
        for program in missing:
            public, private = ADDED_IDENTITIES[program](opened.site.fqdn(node))
            node.public.update(public)
            secrets.update(private)
        opened.node_secrets[node.name] = secrets


def node_secrets(opened: Opened, name: str) -> dict:
    node = get_node(opened.site, name)
    if not node.has_secrets:
        raise MeshsteadError(name, "this site does not hold the node's private keys (it made its own)")
    return _strip_vault(opened.vault.decrypt(opened.directory / "host_vars" / name / "vault.yml"))


def get_node(site: Site, name: str) -> Node:
    if name not in site.nodes:
        raise MeshsteadError("node", f"no node named {name!r}; expected one of: "
                             f"{', '.join(sorted(site.nodes)) or '(none yet)'}")
    return site.nodes[name]


def _settings_from(answers: dict, site_id: str, signing_public: str) -> Settings:
    return Settings.from_answers(answers, site_id=site_id, signing_public_key=signing_public)


def _hash_password(password: str | None) -> str | None:
    return sha512_crypt.hash(password) if password else None


def init(directory: Path, flags: dict, from_file: dict, *, interactive: bool, asker=None,
         vault_override: str | None = None) -> Opened:
    """Resolve answers into a new site, or update an existing one's settings."""
    answers_mod.check_known(flags, "--set", extra=())
    answers_mod.check_known(from_file, "--answers")
    if is_site(directory):
        opened = open_site(directory, vault_override)
        _update_settings(opened, flags, from_file)
    else:
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise MeshsteadError("site", f"{directory} exists and is not a meshstead site; expected a new "
                                 "or empty directory")
        dir_name = directory.resolve().name
        try:
            context = {"_dir_name": validate.dns_label(dir_name)}
        except ValueError:
            context = {}
        answers = answers_mod.resolve(flags, from_file, {}, interactive=interactive, asker=asker,
                                      context=context)
        site_id = uuid.uuid4().hex
        signing_public, signing_private = signing.generate()
        site = Site(_settings_from(answers, site_id, signing_public["site_signing_public_key"]))
        site_secrets = {"site_mesh_passphrase": answers["mesh_passphrase"],
                        "site_ap_passphrase": answers["ap_passphrase"],
                        "site_admin_password_hash": _hash_password(answers.get("admin_password")),
                        **signing_private}
        pw_path = password_file(site_id, vault_override)
        if pw_path.exists():
            vault = Vault.from_file(pw_path)
            new_pw = None
        else:
            vault, new_pw = Vault(new_password(), pw_path), pw_path
        opened = Opened(directory, site, vault, {k: v for k, v in site_secrets.items() if v is not None}, new_pw)
    for spec in from_file.get("nodes") or []:
        if not isinstance(spec, dict) or "name" not in spec:
            raise MeshsteadError("nodes", "expected a list of {name, platform, roles}")
        name, platform, roles = parse_node(spec["name"], spec.get("platform", "amd64"), spec.get("roles", []))
        existing = opened.site.nodes.get(name)
        if existing and (existing.platform, existing.roles) == (platform, roles):
            continue  # already there, as asked: nothing to do
        add_node(opened, name, platform, roles)
    return opened


def _update_settings(opened: Opened, flags: dict, from_file: dict) -> None:
    site = opened.site
    given = {**{k: v for k, v in from_file.items() if k != "nodes"}, **flags}
    previous = {**previous_answers(site, "site_admin_password_hash" in opened.site_secrets),
                "ap_passphrase": "(kept)"}  # open_site made one if the site had none
    answers = answers_mod.resolve(given, {}, previous, interactive=False)
    for key in IMMUTABLE:
        if key in given and answers[key] != previous[key]:
            raise MeshsteadError(key, f"cannot change on an existing site (it is {previous[key]}); "
                                 "expected the same value or none")
    for secret in ("mesh_passphrase", "ap_passphrase"):
        if secret in given:
            opened.site_secrets[f"site_{secret}"] = answers[secret]
    if "admin_password" in given:
        hashed = _hash_password(answers["admin_password"])
        opened.site_secrets.pop("site_admin_password_hash", None)
        if hashed:
            opened.site_secrets["site_admin_password_hash"] = hashed
    keys = site.settings.admin_ssh_keys
    if "admin_ssh_key" in given and answers["admin_ssh_key"] not in keys:
        keys = [answers["admin_ssh_key"]]
    site.settings = _settings_from(answers, site.settings.site_id, site.settings.signing_public_key)
    site.settings.admin_ssh_keys = keys


def add_node(opened: Opened, name: str, platform: str, roles: list[str]) -> Node:
    return add_nodes(opened, [(name, platform, roles)])[0]


def add_nodes(opened: Opened, specs: list[tuple[str, str, list[str]]], progress=None) -> list[Node]:
    site = opened.site
    nodes = []
    for name, platform, roles in specs:
        site.check_new_node(name)
        node = Node(name=name, index=site.next_index(), platform=platform, roles=roles)
        site.nodes[name] = node
        nodes.append(node)
    results = node_identity.generate_many([site.fqdn(n) for n in nodes], progress)
    for node, (public, private) in zip(nodes, results, strict=True):
        site.check_keys(node.name, public)
        node.public = public
        opened.node_secrets[node.name] = private
    return nodes


def plan(opened: Opened) -> list[FileChange]:
    files = inventory.render(opened.site, opened.vault, site_secrets=opened.site_secrets,
                             node_secrets=opened.node_secrets)
    return plan_writes(opened.directory, files, unchanged=opened.vault.same_content)


def commit(opened: Opened, changes: list[FileChange]) -> None:
    """Write the vault password (new sites only), then every file at once."""
    if opened.new_password_file:
        write_password_file(opened.new_password_file, opened.vault.password)
    try:
        apply_writes(changes)
    except BaseException:
        if opened.new_password_file:
            opened.new_password_file.unlink(missing_ok=True)
        raise
    opened.new_password_file = None
