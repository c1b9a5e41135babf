"""`meshstead image` refuses what it cannot do in one line, before any build,
and a node's seed carries only that node's secrets (the VM test boots it)."""

import json
import os

import pytest
import yaml

from tests.conftest import assert_one_line_error, make_site, run_cli
from wizard import sites
from wizard.images import recipe, seed


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "field", admin_key, "services=", nodes=["hub --role hub", "cabin",
                                                                        "attic --platform rpi5"])


def test_an_unknown_node_is_one_error(site, tmp_path):
    assert_one_line_error(run_cli("image", "build", "nosuch", "--site", site, "--out", tmp_path / "out"), "node")
    assert not (tmp_path / "out").exists()


def test_a_pi_5_node_without_base_is_asked_for_a_raspberry_pi_os_image(site, tmp_path):
    result = run_cli("image", "build", "attic", "--site", site, "--out", tmp_path / "out")
    assert_one_line_error(result, "base")
    assert "rpi5" in result.stderr and "Raspberry Pi 5" in result.stderr and "--base" in result.stderr
    assert "Raspberry Pi OS" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_directory_is_refused_before_the_base(site, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = run_cli("image", "build", "cabin", "--site", site, "--out", locked)
    assert_one_line_error(result, "out")
    assert "Base" not in result.stderr


def test_an_out_path_that_cannot_be_a_directory_is_refused_before_the_base(site, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("image", "build", "cabin", "--site", site, "--out", blocker / "images")
    assert_one_line_error(result, "out")
    assert "Base" not in result.stderr


def test_an_unknown_platform_base_is_refused(site):
    assert_one_line_error(run_cli("image", "base", "--platform", "sparc"), "platform")


def test_the_pi_5_has_no_base_and_the_error_names_base():
    result = run_cli("image", "base", "--platform", "rpi5")
    assert_one_line_error(result, "platform")
    assert "Raspberry Pi 5" in result.stderr and "--base" in result.stderr


def test_pi_node_platforms_map_to_the_rpi_base():
    assert {recipe.base_platform(p) for p in ("rpi", "rpi3", "rpi4", "pizero2w")} == {"rpi"}
    assert recipe.base_for_node("cabin", "pizero2w") == "rpi"


def test_a_seed_holds_its_node_s_secrets_and_no_one_else_s(site):
    opened = sites.open_site(site)
    files = seed.seed(opened, "cabin")
    manifest = json.loads(files["meshstead/seed.json"])
    assert manifest["node"] == "cabin" and manifest["site_id"] == opened.site.settings.site_id
    assert manifest["private"] == ["inventory/group_vars/all/secrets.yml", "inventory/host_vars/cabin/secrets.yml"]
    assert not [p for p in files if "vault" in p or p.endswith(("connection.yml", "lab.yml"))]
    assert not [p for p in files if p.startswith("meshstead/inventory/host_vars/hub/") and "secrets" in p]
    shared = yaml.safe_load(files["meshstead/inventory/group_vars/all/secrets.yml"])
    assert "vault_site_signing_private_key" not in shared and "vault_site_mesh_passphrase" in shared
    mine = yaml.safe_load(files["meshstead/inventory/host_vars/cabin/secrets.yml"])
    assert mine["vault_ssh_host_ed25519_private_key"] == sites.node_secrets(opened, "cabin")[
        "ssh_host_ed25519_private_key"]
    # The public files are the site's own, byte for byte.
    assert files["meshstead/inventory/host_vars/hub/node.yml"] == (site / "host_vars/hub/node.yml").read_bytes()


def test_a_generic_image_is_asked_for_with_its_platform_and_without_a_node(site, tmp_path):
    out = tmp_path / "out"
    for argv, field in (((), "platform"), (("cabin", "--platform", "amd64"), "generic")):
        assert_one_line_error(run_cli("image", "build", "--generic", *argv, "--site", site, "--out", out), field)
    assert_one_line_error(run_cli("image", "build", "cabin", "--invite", tmp_path / "x", "--site", site,
                                  "--out", out), "generic")
    assert_one_line_error(run_cli("image", "build", "--site", site, "--out", out), "node")
    assert not out.exists()


def test_a_generic_image_takes_only_a_valid_invite_of_its_site(site, tmp_path, admin_key):
    other = make_site(tmp_path / "other", admin_key, "services=", nodes=["hub --role hub"])
    made = run_cli("invite", "create", "garden", "--platform", "amd64", "--site", other, "--out", tmp_path / "inv")
    assert made.returncode == 0, made.stderr
    text = next((tmp_path / "inv").glob("*.txt"))
    result = run_cli("image", "build", "--generic", "--platform", "amd64", "--invite", text, "--site", site,
                     "--out", tmp_path / "out")
    assert_one_line_error(result, "invite")
    assert "another site" in result.stderr and "Base" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_generic_card_holds_the_site_s_public_description_and_no_secret(site):
    from wizard.images import generic
    from wizard.load import load_site
    files = generic.files(load_site(site))
    described = json.loads(files["meshstead/site.json"])
    assert described["site_signing_public_key"] == load_site(site).settings.signing_public_key
    assert set(files) == {"meshstead/site.json", "meshstead/README.txt"}
    opened = sites.open_site(site)
    secrets = [str(v) for v in opened.site_secrets.values() if v]
    secrets += [str(v) for n in opened.site.nodes for v in sites.node_secrets(opened, n).values() if v]
    card = b"".join(files.values()).decode()
    assert len(secrets) > 5 and not [s for s in secrets if s in card]
