"""The strategy plugin loads Jinja plugins before Ansible forks its workers."""

import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "strategy" / "meshstead_linear.py"

# Prints how many modules a task's first filter and test lookups import: what
# every forked worker would pay again if the controller had not loaded them.
LOOKUP = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("meshstead_linear", sys.argv[1])
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)
if sys.argv[2] == "preload":
    plugin._load_jinja_plugins()
from ansible.plugins.loader import filter_loader, test_loader
before = set(sys.modules)
assert filter_loader.get("to_nice_yaml") is not None
assert test_loader.get("version") is not None
print(len(set(sys.modules) - before))
"""


def imported_on_lookup(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", LOOKUP, str(PLUGIN), mode],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_lookup_imports_modules_without_preload():
    assert imported_on_lookup("none") > 0


def test_preloaded_plugins_need_no_import():
    assert imported_on_lookup("preload") == 0
