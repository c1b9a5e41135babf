"""The wheel carries the Ansible content the tool runs.

`meshstead provision` needs ansible.cfg, playbooks/, roles/ and plugins/;
`meshstead image` the recipes in image-builder/. They
stay at the top of the project, where Ansible, ansible-lint and molecule expect
them; building the package copies them into wizard/ansible/, where
wizard.resources.ansible_home() looks first. An editable install copies
nothing: there ansible_home() finds the project root itself.

Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CONTENT = ("ansible.cfg", "playbooks", "roles", "plugins", "image-builder")
# Role test scenarios run from the checkout only; caches are never shipped.
LEFT_OUT = shutil.ignore_patterns("molecule", "__pycache__", "*.pyc", ".*")


class BuildWithAnsibleContent(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "wizard" / "ansible"
        shutil.rmtree(target, ignore_errors=True)  # a rebuild never keeps a removed file
        target.mkdir(parents=True)
        for name in CONTENT:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=LEFT_OUT)
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithAnsibleContent})
