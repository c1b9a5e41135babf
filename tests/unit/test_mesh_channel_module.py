"""The mesh role's channel check, run by Ansible as on a node: it reads a
regulatory.db with the same reader as the wizard and refuses, naming the
variable, what the kernel would not let a mesh start on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from wizard import meshparams, regdb

ROLE = ROOT / "roles" / "mesh"
SHIPPED = ROOT / "wizard" / "data" / "regulatory.db"
SYSTEM = Path("/lib/firmware/regulatory.db")

ALLOWED = [("DE", "2.4", 13), ("US", "5", 36), ("00", "2.4", 6), ("JP", "5", 44)]
REFUSED = [("US", "2.4", 13, "no rule covers 2472 MHz"), ("DE", "5", 52, "radar detection (DFS)"),
           ("00", "2.4", 13, "NO-IR"), ("ZZ", "5", 100, "regulatory domain 00")]  # unlisted: world domain
FRANCE = [("FR", band, c) for band, chans in (("2.4", range(1, 15)), ("5", (36, 52, 100, 149, 165))) for c in chans]


def case(country, band, channel, database=SHIPPED):
    return {"country": country, "channel": channel, "frequency": meshparams.frequency(band, channel),
            "database": str(database)}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """Every case through the module in one Ansible run: {index: result}."""
    tmp = tmp_path_factory.mktemp("channel")
    broken = tmp / "regulatory.db"
    broken.write_bytes(SHIPPED.read_bytes()[:100])
    cases = ([case(*c) for c in ALLOWED] + [case(*c[:3]) for c in REFUSED] + [case(*c) for c in FRANCE]
             + [case("DE", "2.4", 1, broken), case("DE", "2.4", 1, tmp / "absent.db")]
             + ([case("DE", "2.4", 1, SYSTEM)] if SYSTEM.exists() else []))
    out = tmp / "results.json"
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Check", "meshstead_mesh_channel": "{{ item }}", "loop": cases, "register": "checks",
         "ignore_errors": True},
        {"name": "Save", "ansible.builtin.copy": {"content": "{{ checks.results | to_json }}", "dest": str(out),
                                                  "mode": "0600"}}]}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_LIBRARY": str(ROLE / "library"),
           "ANSIBLE_MODULE_UTILS": str(ROLE / "module_utils")}
    env.pop("ANSIBLE_CONFIG", None)  # the module alone, not the project's ansible.cfg
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i", "localhost,",
                           "-e", f"ansible_python_interpreter={sys.executable}", "play.yml"],
                          capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [r["item"] for r in results] == cases
    return results


def test_an_allowed_channel_passes_and_changes_nothing(checked):
    for (country, _band, _channel), result in zip(ALLOWED, checked, strict=False):
        assert not result.get("failed"), result
        assert result["changed"] is False
        assert result["domain"] == regdb.domain(country)


def test_a_refused_channel_fails_naming_the_variable(checked):
    for (country, band, channel, why), result in zip(REFUSED, checked[len(ALLOWED):], strict=False):
        assert result.get("failed") is True, result
        assert result["msg"].startswith(f"mesh_channel {channel} "), result["msg"]
        assert f"mesh_country {country}" in result["msg"] and why in result["msg"], result["msg"]
        # The wizard, with the same file, refuses the same channel.
        assert regdb.channel_status(country, band, channel) is not None


def test_the_module_agrees_with_the_wizard_on_every_channel_in_one_country(checked):
    first = len(ALLOWED) + len(REFUSED)
    verdicts = {(band, ch): not r.get("failed") for (_c, band, ch), r in zip(FRANCE, checked[first:], strict=False)}
    assert verdicts == {(band, ch): regdb.channel_status("FR", band, ch) is None for _c, band, ch in FRANCE}
    assert True in verdicts.values() and False in verdicts.values()


def test_a_missing_or_damaged_database_is_named(checked):
    first = len(ALLOWED) + len(REFUSED) + len(FRANCE)
    for result in checked[first:first + 2]:
        assert result.get("failed") is True
        assert result["item"]["database"] in result["msg"] and "wireless-regdb" in result["msg"]


@pytest.mark.skipif(not SYSTEM.exists(), reason="no wireless-regdb on this machine")
def test_the_systems_own_database_is_read(checked):
    assert not checked[-1].get("failed"), checked[-1]
    assert checked[-1]["item"]["database"] == str(SYSTEM)
