"""The Wi-Fi settings through the command: the regulatory database decides the
channel, the access points get a name and a passphrase kept in the vault."""

import pytest
import yaml

from tests.conftest import assert_one_line_error, make_site, run_cli, snapshot
from wizard import sites
from wizard.vault import Vault, password_file

SITE_VARS = "group_vars/all/site.yml"
GROUP_VAULT = "group_vars/all/vault.yml"


def site_vars(directory):
    return yaml.safe_load((directory / SITE_VARS).read_text())


def vault_of(directory):
    site_id = site_vars(directory)["meshstead_site_id"]
    vault = Vault.from_file(password_file(site_id))
    return vault, vault.decrypt(directory / GROUP_VAULT)


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "hill", admin_key, "country=DE", "mesh_channel=13")


@pytest.mark.parametrize("args, field, says", [
    (["--set", "country=US", "--set", "mesh_channel=13"], "mesh_channel",
     "channel 13 is not allowed for a mesh in country US (regulatory.db 2026.09.03: no rule covers 2472 MHz): "
     "expected one of 1-11"),
    (["--set", "mesh_channel=12"], "mesh_channel", "world domain 00"),
    (["--set", "country=DE", "--set", "mesh_channel=14"], "mesh_channel", "expected one of 1-13"),
    (["--set", "mesh_band=5"], "mesh_band", "set the site's country (--set country="),
    (["--set", "country=DE", "--set", "mesh_band=5", "--set", "mesh_channel=52"], "mesh_channel",
     "radar detection (DFS)"),
    (["--set", "mesh_id=" + "m" * 33], "mesh_id", "expected a mesh ID of 1-32 bytes"),
    (["--set", "mesh_passphrase=short"], "mesh_passphrase", "expected 8-63 printable characters"),
    (["--set", "mesh_mtu=1279"], "mesh_mtu", "1280"),
    (["--set", "mesh_mtu=1501"], "mesh_mtu", "1500"),
    (["--set", "ap_ssid=" + "s" * 33], "ap_ssid", "expected a Wi-Fi name (SSID) of 1-32 bytes"),
    (["--set", "ap_passphrase="], "ap_passphrase", "expected 8-63 printable characters"),
    (["--set", "ap_passphrase=         "], "ap_passphrase", "expected 8-63 printable characters"),
    (["--set", "ap_passphrase=short"], "ap_passphrase", "expected 8-63 printable characters"),
])
def test_bad_wifi_input(tmp_path, admin_key, config_home, args, field, says):
    target = tmp_path / "new"
    result = run_cli("init", target, "--defaults", "--set", f"admin_ssh_key={admin_key}", *args)
    assert_one_line_error(result, field)
    assert says in result.stderr
    assert not target.exists()
    assert not (config_home / "meshstead").exists()


def test_an_answers_file_may_not_give_an_empty_ap_passphrase(tmp_path, admin_key, config_home):
    answers = tmp_path / "answers.yml"
    answers.write_text(yaml.safe_dump({"admin_ssh_key": str(admin_key), "ap_passphrase": ""}))
    result = run_cli("init", tmp_path / "new", "--answers", answers)
    assert_one_line_error(result, "ap_passphrase")
    assert not (tmp_path / "new").exists()


def test_a_new_site_s_access_points(site):
    settings = site_vars(site)
    assert settings["site_country"] == "DE" and settings["site_mesh_channel"] == 13
    assert settings["site_ap_ssid"] == "hill"
    assert settings["site_ap_passphrase"] == "{{ vault_site_ap_passphrase }}"
    _vault, secrets = vault_of(site)
    generated = secrets["vault_site_ap_passphrase"]
    assert 8 <= len(generated) <= 63 and generated != secrets["vault_site_mesh_passphrase"]
    assert generated not in "".join(p.read_text() for p in site.rglob("*.yml"))


def test_5_ghz_with_a_country(tmp_path, admin_key):
    directory = make_site(tmp_path / "five", admin_key, "country=JP", "mesh_band=5")
    settings = site_vars(directory)
    assert (settings["site_mesh_channel"], settings["site_mesh_frequency"]) == (36, 5180)  # the first allowed


def test_a_new_country_re_checks_the_kept_channel(site):
    before = snapshot(site)
    result = run_cli("init", site, "--set", "country=US")
    assert_one_line_error(result, "mesh_channel")
    assert "channel 13 is not allowed for a mesh in country US" in result.stderr
    assert_one_line_error(run_cli("init", site, "--set", "country=00"), "mesh_channel")
    assert snapshot(site) == before
    # With a channel the new country allows, the change goes through.
    result = run_cli("init", site, "--set", "country=US", "--set", "mesh_channel=11")
    assert result.returncode == 0, result.stderr
    assert (site_vars(site)["site_country"], site_vars(site)["site_mesh_channel"]) == ("US", 11)


def test_a_new_band_re_checks_the_kept_channel(site):
    before = snapshot(site)
    result = run_cli("init", site, "--set", "mesh_band=5")
    assert_one_line_error(result, "mesh_channel")  # 13 is no 5 GHz channel
    assert snapshot(site) == before
    result = run_cli("init", site, "--set", "mesh_band=5", "--set", "mesh_channel=36")
    assert result.returncode == 0, result.stderr
    assert site_vars(site)["site_mesh_frequency"] == 5180


def test_ap_settings_change_on_an_existing_site(site):
    _vault, old = vault_of(site)
    result = run_cli("init", site, "--set", "ap_ssid=Hill Wi-Fi", "--set", "ap_passphrase=open sesame 42")
    assert result.returncode == 0, result.stderr
    assert site_vars(site)["site_ap_ssid"] == "Hill Wi-Fi"
    _vault, new = vault_of(site)
    assert new["vault_site_ap_passphrase"] == "open sesame 42"
    assert new["vault_site_mesh_passphrase"] == old["vault_site_mesh_passphrase"]
    before = snapshot(site)
    assert_one_line_error(run_cli("init", site, "--set", "ap_passphrase="), "ap_passphrase")
    assert snapshot(site) == before


def make_old(directory):
    """The site as meshstead wrote it before the access point settings."""
    text = (directory / SITE_VARS).read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("site_ap_")]
    (directory / SITE_VARS).write_text("".join(lines))
    vault, secrets = vault_of(directory)
    del secrets["vault_site_ap_passphrase"]
    (directory / GROUP_VAULT).write_bytes(vault.encrypt(secrets))
    return secrets


def test_a_site_from_before_access_points_gets_them_on_the_next_init(site):
    old_secrets = make_old(site)
    assert "site_ap_ssid" not in site_vars(site)
    listed = run_cli("node", "list", "--site", site)
    assert listed.returncode == 0, listed.stderr
    before = snapshot(site)
    result = run_cli("init", site)
    assert result.returncode == 0, result.stderr
    after = snapshot(site)
    assert {str(p) for p in after if after[p] != before.get(p)} == {SITE_VARS, GROUP_VAULT}
    assert site_vars(site)["site_ap_ssid"] == "hill"
    _vault, secrets = vault_of(site)
    assert len(secrets.pop("vault_site_ap_passphrase")) >= 8
    assert secrets == old_secrets  # nothing else regenerated
    again = run_cli("init", site)
    assert again.returncode == 0 and "Nothing to change" in again.stdout


def test_adding_a_node_to_a_site_from_before_completes_its_vault(site):
    make_old(site)
    assert run_cli("node", "add", "barn", "--site", site).returncode == 0
    _vault, secrets = vault_of(site)
    assert "vault_site_ap_passphrase" in secrets  # site.yml refers to it: it must exist
    assert site_vars(site)["site_ap_passphrase"] == "{{ vault_site_ap_passphrase }}"
    assert sites.open_site(site).site_secrets["site_ap_passphrase"] == secrets["vault_site_ap_passphrase"]
