"""A node's files as the roles write them, rendered on the controller.

The role templates are the only source of what a node runs. This module does
not know any config format: it walks the plays of playbooks/site.yml that apply
to the node, and for each of their roles the file-writing tasks (`template`,
and `copy` with `content`), and renders them with Ansible's own templating and
the variables Ansible itself would give the task (inventory, vault, role
defaults and vars, the playbook's role parameters, platform vars files). Tasks
that run programs, or whose condition depends on the node's state (a
registered result), are not files and are skipped; so are copies of the
node's own files and placeholders written only where the node has none.

Used by `identity export` (playbooks/site.yml) and by OpenWrt image bundles
(playbooks/openwrt.yml, whose plays import each role's tasks/openwrt.yml).
"""

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import MeshsteadError
from ..resources import ansible_home

FILE_ACTIONS = ("template", "copy")
_plugins_ready = False
# The facts the roles' platform vars files are chosen by (first_found on
# os_family); nothing is gathered from the node, so they follow its platform.
PLATFORM_FACTS = {"os_family": "Debian", "distribution": "Debian", "system": "Linux"}
OPENWRT_FACTS = {"os_family": "OpenWrt", "distribution": "OpenWrt", "system": "Linux"}
SITE_PLAYBOOK = "site.yml"


@dataclass(frozen=True)
class NodeFile:
    path: PurePosixPath  # absolute path on the node
    content: bytes
    mode: int
    role: str


def _short(action: str) -> str:
    return action.rsplit(".", 1)[-1]


def _mode(value) -> int:
    if value is None:
        return 0o644
    return int(str(value), 8) if not isinstance(value, int) else value


def _tasks(blocks):
    """Every task of a list of blocks, nested blocks included, in order."""
    for block in blocks:
        for entry in block.block + block.rescue + block.always:
            if hasattr(entry, "block"):
                yield from _tasks([entry])
            else:
                yield entry


class _Renderer:
    def __init__(self, site_dir: Path, password: bytes, extra_vars: dict | None):
        from ansible import constants as C  # noqa: N812 - Ansible's own spelling
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.vault import VaultSecret
        from ansible.plugins.loader import init_plugin_loader
        from ansible.vars.hostvars import HostVars
        from ansible.vars.manager import VariableManager

        global _plugins_ready
        if not _plugins_ready:  # what ansible-playbook does first: tasks resolve their actions through it
            init_plugin_loader()
            _plugins_ready = True

        home = ansible_home()
        # Roles are found where the tool keeps them, whatever the ansible.cfg in use.
        C.DEFAULT_ROLES_PATH = [str(home / "roles")]
        self.home = home
        self.loader = DataLoader()
        self.loader.set_vault_secrets([(C.DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])
        self.inventory = InventoryManager(loader=self.loader, sources=[str(site_dir / "hosts.yml")])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        # Peers' data (hostvars[peer]) as a run sees it.
        self.variables._hostvars = HostVars(inventory=self.inventory, variable_manager=self.variables,
                                            loader=self.loader)
        self.extra_vars = dict(extra_vars or {})

    def templar(self, variables: dict):
        from ansible.template import Templar
        return Templar(loader=self.loader, variables=variables)

    def render(self, node: str, roles: tuple[str, ...] | None, playbook_name: str) -> list[NodeFile]:
        from ansible.playbook import Playbook

        host = self.inventory.get_host(node)
        if host is None:
            raise MeshsteadError("node", f"{node} is not in the site's inventory")
        self.facts = OPENWRT_FACTS if "openwrt" in {g.name for g in host.get_groups()} else PLATFORM_FACTS
        playbook = Playbook.load(str(self.home / "playbooks" / playbook_name), variable_manager=self.variables,
                                 loader=self.loader)
        files: list[NodeFile] = []
        for play in playbook.get_plays():
            if host not in self.inventory.get_hosts(play.hosts):
                continue
            for role in play.get_roles():
                if role.from_include or (roles is not None and role.get_name() not in roles):
                    continue  # an imported role's tasks are the play's (below)
                files += self._role_files(play, host, role)
            files += self._imported_files(play, host, roles)
        return files

    def _imported_files(self, play, host, roles) -> list[NodeFile]:
        """Files of the roles a play's tasks import (import_role), each under its
        import's condition: their tasks carry it."""
        files: list[NodeFile] = []
        chunk: list = []
        for task in _tasks(play.tasks):
            role = task._role
            if role is None or (roles is not None and role.get_name() not in roles):
                continue
            if chunk and chunk[0]._role is not role:
                files += self._file_tasks(play, host, chunk[0]._role, chunk)
                chunk = []
            chunk.append(task)
        if chunk:
            files += self._file_tasks(play, host, chunk[0]._role, chunk)
        return files

    def _vars(self, play, host, task, included: dict) -> dict:
        variables = self.variables.get_vars(play=play, host=host, task=task)
        facts = dict(variables.get("ansible_facts") or {})
        for key, value in self.facts.items():
            facts.setdefault(key, value)
        variables["ansible_facts"] = facts
        variables.update(included)
        variables.update(task.vars)  # task vars outrank include_vars, as in a run
        variables.update(self.extra_vars)
        return variables

    def _applies(self, templar, conditions) -> bool | None:
        """True/False, or None when the condition needs the node's state."""
        from ansible.errors import AnsibleError
        try:
            return all(templar.evaluate_conditional(c) for c in conditions)
        except AnsibleError:
            return None

    def _role_files(self, play, host, role) -> list[NodeFile]:
        tasks = list(_tasks(role.compile(play=play)))
        if tasks:
            # The role's condition in the playbook (`when:` on the role).
            templar = self.templar(self._vars(play, host, tasks[0], {}))
            if not self._applies(templar, role.when or []):
                return []
        return self._file_tasks(play, host, role, tasks)

    def _file_tasks(self, play, host, role, tasks) -> list[NodeFile]:
        """The files the file-writing tasks among ``tasks`` (one role's, in order) write."""
        included: dict = {}
        files = []
        for task in tasks:
            variables = self._vars(play, host, task, included)
            templar = self.templar(variables)
            action = _short(task.action)
            if action == "include_vars":
                included.update(self._include_vars(templar, task))
                continue
            if action not in FILE_ACTIONS:
                continue
            if action == "copy" and "content" not in task.args:
                continue  # copies a file of the node's: not ours to render
            if action == "copy" and str(task.args.get("force", True)).lower() in ("false", "no", "0"):
                continue  # a placeholder written only where the node has none: the node's file wins
            if self._applies(templar, task.when or []) is not True:
                continue
            items = [None]
            loop_var = "item"
            if task.loop is not None:
                items = templar.template(task.loop)
                if task.loop_control and task.loop_control.loop_var:
                    loop_var = task.loop_control.loop_var
            for item in items:
                scope = dict(variables)
                if task.loop is not None:
                    scope[loop_var] = item
                files.append(self._file(role, task, action, scope))
        return files

    def _include_vars(self, templar, task) -> dict:
        source = templar.template(task.args.get("_raw_params") or task.args.get("file"))
        data = self.loader.load_from_file(str(source), cache="none", trusted_as_template=True) or {}
        return dict(data)

    def _file(self, role, task, action, scope) -> NodeFile:
        from ansible.template import _template_vars as template_vars
        from ansible.template import trust_as_template

        templar = self.templar(scope)
        args = templar.template(task.args)
        dest = PurePosixPath(str(args["dest"]))
        if action == "copy":
            content = str(args["content"])
        else:
            source = Path(role._role_path) / "templates" / str(args["src"])
            text = trust_as_template(self.loader.get_text_file_contents(str(source)))
            scope = {**scope, **template_vars.generate_ansible_template_vars(
                path=str(args["src"]), fullpath=str(source), dest_path=str(dest),
                include_ansible_managed="ansible_managed" not in scope)}
            data_templar = templar.copy_with_new_env(searchpath=[str(source.parent)], available_variables=scope)
            # The template action's defaults (trim_blocks on): the same bytes as on the node.
            content = data_templar.template(text, escape_backslashes=False,
                                            overrides={"trim_blocks": bool(args.get("trim_blocks", True)),
                                                       "lstrip_blocks": bool(args.get("lstrip_blocks", False))})
            content = "" if content is None else str(content)
        return NodeFile(dest, content.encode(), _mode(args.get("mode")), role.get_name())


def render_node(site_dir: Path, password: bytes, node: str, *, roles: tuple[str, ...] | None = None,
                extra_vars: dict | None = None, playbook: str = SITE_PLAYBOOK) -> list[NodeFile]:
    """Every file the roles of ``playbook`` (under playbooks/) would write on
    ``node``, in task order."""
    from ansible.errors import AnsibleError

    os.environ.setdefault("ANSIBLE_CONFIG", str(ansible_home() / "ansible.cfg"))
    try:
        return _Renderer(site_dir, password, extra_vars).render(node, roles, playbook)
    except AnsibleError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeshsteadError(node, f"cannot render the roles' files ({first})") from None
