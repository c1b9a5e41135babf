"""The roles agree with each other and with the project: one license, one
minimum Ansible, one platform, no role dependencies, and every setting
declared in argument_specs and described in the role's README."""

import re
import tomllib

import pytest
import yaml

from tests.conftest import ROOT

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def ansible_core_minimum() -> str:
    pin = next(d for d in PROJECT["dependencies"] if d.startswith("ansible-core"))
    return re.search(r">=\s*([0-9.]+)", pin).group(1)


def load(role: str, path: str):
    return yaml.safe_load((ROOT / "roles" / role / path).read_text())


def test_roles_found():
    assert {"common", "tinc", "yggdrasil", "dns", "syncthing", "nncp", "firewall"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_meta_agrees_with_the_project(role):
    meta = load(role, "meta/main.yml")
    info = meta["galaxy_info"]
    assert meta["dependencies"] == [], "roles never depend on each other; playbooks compose them"
    assert info["role_name"] == role
    assert info["namespace"] == "meshstead"
    assert info["license"] == PROJECT["license"]
    assert info["min_ansible_version"] == ansible_core_minimum()
    assert info["platforms"] == [{"name": "Debian", "versions": ["bookworm"]}]


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_declared_and_documented(role):
    defaults = load(role, "defaults/main.yml") or {}
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    readme = (ROOT / "roles" / role / "README.md").read_text()
    assert not sorted(set(defaults) - set(options)), "defaults missing from meta/argument_specs.yml"
    assert not [name for name in defaults if f"`{name}`" not in readme], "defaults missing from README.md"
    assert all(name.startswith(f"{role}_") for name in defaults)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_guess_nothing_from_facts(role):
    """The mesh interface and everything else a role needs from the node comes
    from the inventory through the playbook, not from facts guessed per role."""
    text = (ROOT / "roles" / role / "defaults" / "main.yml").read_text()
    assert "ansible_facts" not in text
    assert "ansible_default_ipv" not in text


def _argvs(node):
    """Every `argv:` list in a task file, however deep (blocks, loops)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "argv" and isinstance(value, list):
                yield value
            else:
                yield from _argvs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _argvs(item)


@pytest.mark.parametrize("role", ROLES)
def test_every_command_argument_is_a_string(role):
    """YAML reads an unquoted item ending in a colon (`--only-binary=:all:`)
    as a mapping, which Ansible passes on as its Python repr; the command then
    fails only where that task runs, such as on a machine with no cache yet."""
    for path in sorted((ROOT / "roles" / role).glob("**/tasks/*.yml")) + \
            sorted((ROOT / "roles" / role).glob("handlers/*.yml")):
        for argv in _argvs(yaml.safe_load(path.read_text())):
            odd = [item for item in argv if not isinstance(item, str | int | float)]
            assert not odd, f"{path.relative_to(ROOT)}: argv items that are not strings: {odd}"
