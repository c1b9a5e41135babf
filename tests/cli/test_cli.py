"""The command as a user runs it: exit codes, one-line errors, nothing half-written."""

import json

import pytest
import yaml

from tests.conftest import assert_one_line_error, make_site, run_cli, snapshot


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "mysite", admin_key,
                     nodes=["hilltop --role hub --platform rpi4", "cabin --platform rpi3"])


def test_init_writes_inventory_with_secret_modes(site, config_home):
    site_vars = yaml.safe_load((site / "group_vars/all/site.yml").read_text())
    assert site_vars["site_name"] == "mysite"
    assert site_vars["site_domain"] == "mysite.internal"
    assert (site / "group_vars/all/vault.yml").stat().st_mode & 0o777 == 0o600
    assert (site / "host_vars/cabin/vault.yml").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    password = config_home / "meshstead" / "vault" / f"{site_vars['meshstead_site_id']}.pass"
    assert password.stat().st_mode & 0o777 == 0o600
    assert (password.parent.stat().st_mode & 0o777) == 0o700
    assert not any(site.rglob("*.pass"))
    # The passphrase and private keys never appear in clear text in the site.
    text = "".join(p.read_text() for p in site.rglob("*.yml"))
    assert "PRIVATE KEY" not in text


def test_node_list_json_and_table(site):
    rows = json.loads(run_cli("node", "list", "--json", "--site", site).stdout)
    assert [r["name"] for r in rows] == ["hilltop", "cabin"]
    assert rows[0]["roles"] == ["hub"] and rows[1]["platform"] == "rpi3"
    assert rows[1]["mesh_ipv4"].endswith(".2")
    table = run_cli("node", "list", "--site", site, env={"COLUMNS": "200"}).stdout
    assert "hilltop.mysite.internal" in table and "cabin" in table


def test_site_from_environment(site):
    result = run_cli("identity", "show", "cabin", "--json", env={"MESHSTEAD_SITE": str(site)})
    facts = json.loads(result.stdout)
    assert facts["node_fqdn"] == "cabin.mysite.internal"
    assert not any("prv" in k or "private" in k for k in facts)


def test_rerun_changes_nothing(site):
    before = snapshot(site)
    result = run_cli("init", site, "--defaults")
    assert result.returncode == 0 and "Nothing to change" in result.stdout
    assert snapshot(site) == before


def test_settings_update_keeps_keys(site):
    before = snapshot(site)
    result = run_cli("init", site, "--set", "country=KE")
    assert result.returncode == 0, result.stderr
    after = snapshot(site)
    assert yaml.safe_load((site / "group_vars/all/site.yml").read_text())["site_country"] == "KE"
    changed = {str(p) for p in after if after[p] != before.get(p)}
    assert changed == {"group_vars/all/site.yml"}


def test_dry_run_writes_nothing(tmp_path, admin_key, config_home):
    target = tmp_path / "dry"
    result = run_cli("init", target, "--defaults", "--dry-run", "--set", f"admin_ssh_key={admin_key}")
    assert result.returncode == 0
    assert "would change" in result.stdout and "hosts.yml" in result.stdout
    assert not target.exists()
    assert not (config_home / "meshstead").exists()


def test_answers_file_with_nodes(tmp_path, admin_key):
    answers = tmp_path / "answers.yml"
    answers.write_text(yaml.safe_dump({
        "name": "valley", "country": "ke", "overlay": ["yggdrasil"], "ipv4_plan": "10.77.0.0/16",
        "admin_ssh_key": str(admin_key),
        "nodes": [{"name": "a", "platform": "rpi4", "roles": ["hub", "dns"]}, {"name": "b"}]}))
    directory = tmp_path / "site"
    assert run_cli("init", directory, "--answers", answers).returncode == 0
    rows = json.loads(run_cli("node", "list", "--json", "--site", directory).stdout)
    assert [(r["name"], r["mesh_ipv4"]) for r in rows] == [("a", "10.77.0.1"), ("b", "10.77.0.2")]
    hosts = yaml.safe_load((directory / "hosts.yml").read_text())["all"]["children"]
    assert list(hosts["dns_servers"]["hosts"]) == ["a"] and hosts["tinc_nodes"] == {}
    # Same answers again: nothing changes, no key is regenerated.
    before = snapshot(directory)
    assert run_cli("init", directory, "--answers", answers).returncode == 0
    assert snapshot(directory) == before


def test_init_with_many_nodes_makes_their_keys_in_a_process_pool(tmp_path, admin_key):
    """Four or more nodes at once go through generate_many's process pool,
    whose workers run the node-side package's key generation."""
    answers = tmp_path / "answers.yml"
    names = [f"n{i}" for i in range(1, 6)]
    answers.write_text(yaml.safe_dump({"name": "many", "country": "de", "admin_ssh_key": str(admin_key),
                                       "nodes": [{"name": name} for name in names]}))
    directory = tmp_path / "site"
    made = run_cli("init", directory, "--answers", answers)
    assert made.returncode == 0, made.stderr
    nodes = [yaml.safe_load((directory / "host_vars" / name / "node.yml").read_text()) for name in names]
    assert len({node["tinc_public_key"] for node in nodes}) == len({node["join_pin"] for node in nodes}) == 5
    assert all(node["ssh_host_ed25519_public_key"].endswith(f"root@{node['node_fqdn']}") for node in nodes)


@pytest.mark.parametrize("args, field", [
    (["--set", "country=XX"], "country"),
    (["--set", "name=Bad_Name"], "name"),
    (["--set", "ipv4_plan=10.0.0.0/16"], "ipv4_plan"),
    (["--set", "ipv4_plan=10.9.0.0/24"], "ipv4_plan"),
    (["--set", "admin_ssh_key=/nonexistent.pub"], "admin_ssh_key"),
    (["--set", "mesh_channel=99"], "mesh_channel"),
    (["--set", "colour=blue"], "colour"),
    (["--set", "overlay=wireguard"], "overlay"),
])
def test_bad_init_input(tmp_path, admin_key, args, field, config_home):
    target = tmp_path / "new"
    result = run_cli("init", target, "--defaults", "--set", f"admin_ssh_key={admin_key}", *args)
    assert_one_line_error(result, field)
    assert not target.exists()
    assert not (config_home / "meshstead").exists()


def test_missing_required_answer_without_terminal(tmp_path):
    result = run_cli("init", tmp_path / "new", "--defaults", env={"HOME": str(tmp_path)})
    assert_one_line_error(result, "admin_ssh_key")
    assert "--set admin_ssh_key=" in result.stderr


@pytest.mark.parametrize("args, field", [
    (["node", "add", "cabin"], "name: a node named 'cabin' already exists"),
    (["node", "add", "Bad"], "name"),
    (["node", "add", "x", "--platform", "rpi2"], "platform"),
    (["node", "add", "x", "--role", "boss"], "role"),
    (["identity", "show", "nope"], "node"),
])
def test_bad_node_input_changes_nothing(site, args, field):
    before = snapshot(site)
    assert_one_line_error(run_cli(*args, "--site", site), field)
    assert snapshot(site) == before


def test_immutable_setting(site):
    before = snapshot(site)
    assert_one_line_error(run_cli("init", site, "--set", "ipv4_plan=10.99.0.0/16"), "ipv4_plan")
    assert snapshot(site) == before


def test_not_a_site(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    assert_one_line_error(run_cli("node", "list", "--site", tmp_path / "junk"), "site")
    assert_one_line_error(run_cli("init", tmp_path / "junk", "--defaults"), "site")


def test_wrong_or_corrupt_vault(site, tmp_path):
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-password\n")
    before = snapshot(site)
    result = run_cli("node", "add", "x", "--site", site, "--vault-password-file", wrong)
    assert_one_line_error(result, str(site / "group_vars/all/vault.yml"))
    assert "cannot decrypt" in result.stderr
    vault = site / "host_vars/cabin/vault.yml"
    vault.write_text(vault.read_text()[:200])
    damaged = snapshot(site)
    result = run_cli("identity", "export", "cabin", "--dir", tmp_path / "out", "--site", site)
    assert_one_line_error(result, str(vault))
    assert snapshot(site) == damaged and before != damaged
    assert not (tmp_path / "out").exists()


def test_export_is_what_the_roles_render(site, tmp_path):
    """The export is the roles' templates rendered for the node, at the node's paths and modes."""
    out = tmp_path / "out"
    assert run_cli("identity", "export", "cabin", "--dir", out, "--site", site).returncode == 0
    st = out / "var/lib/syncthing/.config/syncthing"
    assert (st / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (st / "cert.pem").stat().st_mode & 0o777 == 0o644
    assert (out / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    assert (out / "etc/yggdrasil/yggdrasil.conf").stat().st_mode & 0o777 == 0o640
    net = out / "etc/tinc/mysite"
    assert sorted(p.name for p in (net / "hosts").iterdir()) == ["cabin", "hilltop"]
    assert "Address = " in (net / "hosts" / "hilltop").read_text()
    conf = (net / "tinc.conf").read_text()
    assert "StrictSubnets = yes" in conf and "Name = cabin" in conf and "ConnectTo = hilltop" in conf
    ygg = json.loads((out / "etc/yggdrasil/yggdrasil.conf").read_text())
    assert ygg["MulticastInterfaces"][0]["Regex"] == "^bat0$"  # the site's mesh interface
    assert (net / "rsa_key.priv").stat().st_mode & 0o777 == 0o600


def test_provision_refuses_wrong_vault_and_unknown_host(site, tmp_path):
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("nope\n")
    assert_one_line_error(run_cli("provision", "--site", site, "--vault-password-file", wrong),
                          str(site / "group_vars/all/vault.yml"))
    result = run_cli("provision", "--site", site, "--limit", "ghost")
    assert_one_line_error(result, "limit")
    assert "ghost" in result.stderr


def test_dry_run_lists_and_writes_nothing_where_offered(site, tmp_path):
    before = snapshot(site)
    added = run_cli("node", "add", "barn", "--site", site, "--dry-run")
    assert added.returncode == 0, added.stderr
    assert "host_vars/barn/vault.yml" in added.stdout and "would change" in added.stdout
    assert snapshot(site) == before
    out = tmp_path / "export"
    exported = run_cli("identity", "export", "cabin", "--dir", out, "--site", site, "--dry-run")
    assert exported.returncode == 0, exported.stderr
    assert "etc/tinc/mysite/tinc.conf" in exported.stdout and "would change" in exported.stdout
    assert not out.exists()


@pytest.mark.parametrize("argv", [["lab", "down"], ["lab", "up"], ["lab", "status"], ["provision"], ["demo"],
                                  ["node", "list"], ["identity", "show", "cabin"]])
def test_dry_run_is_refused_where_it_would_not_be_honoured(site, argv):
    result = run_cli(*argv, "--site", site, "--dry-run")
    assert result.returncode == 2
    assert "unrecognized arguments: --dry-run" in result.stderr


def test_options_before_the_double_dash_are_meshstead_s():
    from wizard.cli import parse
    args = parse(["lab", "exec", "node1", "--site", "demo/", "--", "getent", "-s", "files", "hosts", "x"])
    assert (args.node, args.site, args.passthrough) == ("node1", "demo/", ["getent", "-s", "files", "hosts", "x"])
    args = parse(["provision", "--site", "s", "--", "--tags", "dns", "--site", "not-ours"])
    assert args.site == "s" and args.passthrough == ["--tags", "dns", "--site", "not-ours"]
    with pytest.raises(SystemExit):
        parse(["node", "list", "--", "extra"])  # a command that passes nothing on takes nothing after --


def test_a_reader_that_goes_away_is_not_an_error(site):
    """`meshstead node list --json | head -1`: the pipe closes early; no traceback, no error line."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    proc = subprocess.Popen([sys.executable, "-m", "wizard.cli", "node", "list", "--json", "--site", str(site)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the command writes a byte
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


@pytest.mark.parametrize("extra", [["--blank", "0"], ["--blank", "1", "--radio"]])
def test_blank_nodes_are_asked_for_as_a_count_of_containers(site, extra):
    before = snapshot(site)
    result = run_cli("lab", "up", "--site", site, *extra)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("meshstead: error: blank: adds blank container nodes"), \
        result.stderr
    assert snapshot(site) == before
