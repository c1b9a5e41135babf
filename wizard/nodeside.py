"""The node-side join package (roles/join/files/meshstead_join/), loaded from
the role the nodes get: the invite format and the address arithmetic are one
copy for the controller and the nodes, so they cannot drift apart.

The package needs only what a node image ships (the standard library,
`cryptography` 38 and `yaml`), so it cannot import the wizard; the wizard
imports it from the role, as wizard/regdb.py does the mesh role's reader."""

import importlib
import importlib.util
import sys

from .resources import ansible_home

PACKAGE = "meshstead_join"


def package():
    """The package, registered once under its own name, so its modules (and
    their exception classes) are the same objects for every importer."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    init = ansible_home() / "roles" / "join" / "files" / PACKAGE / "__init__.py"
    spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    return module


def module(name: str):
    package()
    return importlib.import_module(f"{PACKAGE}.{name}")
