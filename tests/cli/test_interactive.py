"""The wizard in a real terminal: prompts answered as a person would."""

import sys

import pexpect
import yaml

from tests.conftest import ROOT

ENTER = "\r"


def test_wizard_prompts_in_a_terminal(tmp_path, admin_key):
    directory = tmp_path / "valley"
    child = pexpect.spawn(sys.executable, ["-m", "wizard.cli", "init", str(directory)], cwd=str(ROOT),
                          env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "TERM": "xterm",
                               "PATH": "/usr/bin:/bin"}, encoding="utf-8", timeout=30, dimensions=(40, 160))
    child.expect("name:")
    child.send(ENTER)  # default: the directory's name
    child.expect("domain:")
    child.send(ENTER)
    child.expect(r"country:.*\[00\]")  # the default is shown, not pre-filled: typing replaces it
    child.send("xx" + ENTER)  # an invalid answer is refused in place...
    child.expect("ISO 3166")
    child.send("\x7f\x7fke" + ENTER)  # ...and a valid one accepted
    child.expect("mesh_mode:")
    child.send(ENTER)
    child.expect("mesh_band:")
    child.send(ENTER)
    child.expect("mesh_channel:")
    child.send("14" + ENTER)  # Japan's only: refused in place, with what Kenya allows
    child.expect("expected one of 1-13")
    child.send("\x7f\x7f6" + ENTER)
    child.expect("mesh_id:")
    child.send(ENTER)
    child.expect("mesh_passphrase:")
    child.send("correct horse battery" + ENTER)
    child.expect("mesh_mtu:")
    child.send(ENTER)
    child.expect(r"ap_ssid:.*\[valley\]")
    child.send(ENTER)
    child.expect("ap_passphrase:")
    child.send(ENTER)  # empty: generated
    child.expect("overlay:")
    child.send(ENTER)
    child.expect("ipv4_plan:")
    child.send("10.77.0.0/16" + ENTER)
    child.expect("ipv6_ula:")
    child.send(ENTER)
    child.expect("admin_user:")
    child.send(ENTER)
    child.expect("admin_ssh_key:")
    child.send(str(admin_key) + ENTER)
    child.expect("admin_password:")
    child.send(ENTER)
    child.expect("services:")
    child.send(ENTER)
    child.expect(r"Next: meshstead node add")  # a newcomer is told what to do next
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    settings = yaml.safe_load((directory / "group_vars/all/site.yml").read_text())
    assert settings["site_name"] == "valley"
    assert settings["site_country"] == "KE"
    assert settings["site_mesh_channel"] == 6
    assert settings["site_ap_ssid"] == "valley"
    assert settings["site_ipv4_plan"] == "10.77.0.0/16"
    assert settings["site_admin_ssh_keys"] == [admin_key.read_text().strip()]
    assert "site_admin_password_hash" not in settings
    assert "correct horse" not in "".join(p.read_text() for p in directory.rglob("*.yml"))
