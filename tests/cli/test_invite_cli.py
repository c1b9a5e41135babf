"""`meshstead invite`: as a user runs it. Invalid invites exit 1 with one line,
usage errors 2, and neither changes the site."""

import base64
import datetime
import ipaddress
import json
import secrets
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.conftest import assert_one_line_error, make_site, run_cli, snapshot
from wizard import sites
from wizard.invites import token

INVITES = Path("group_vars/all/invites.yml")


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "site", admin_key, nodes=["hilltop --role hub", "cabin"])


def _create(site, out, *args):
    result = run_cli("invite", "create", *args, "--site", site, "--out", out)
    assert result.returncode == 0, result.stderr
    name = args[0]
    return (out / f"{name}-invite.txt").read_text().strip(), result


def _records(site) -> list[dict]:
    return yaml.safe_load((site / INVITES).read_text())["site_invites"]


def _changed(before: dict, after: dict) -> set[str]:
    return {str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def _signed(site, **fields) -> str:
    """An invite made with the site's own key, as `invite create` would not make it."""
    opened = sites.open_site(site)
    key = load_pem_private_key(opened.site_secrets["site_signing_private_key"].encode(), None)
    hub = opened.site.nodes["hilltop"]
    invite = token.Invite(**{"secret": secrets.token_bytes(16), "expires": 2_000_000_000,
                             "endpoints": [(ipaddress.ip_address("10.1.2.3"), 4801)],
                             "pin": token.b64url_decode(hub.public["join_pin"]), "name": "late",
                             "platform": "rpi4", "roles": [], **fields})
    return token.encode(invite, key)


def test_create_writes_the_invite_0600_and_records_it_without_its_secret(site, tmp_path):
    out = tmp_path / "out"
    before = snapshot(site)
    text, result = _create(site, out, "garden", "--platform", "rpi4", "--role", "gateway,dns", "--expires", "7d")
    assert _changed(before, snapshot(site)) == {str(INVITES)}
    for suffix in ("png", "svg", "txt"):
        assert (out / f"garden-invite.{suffix}").stat().st_mode & 0o777 == 0o600
    assert (out / "garden-invite.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (out / "garden-invite.svg").read_bytes()
    assert text.startswith("meshstead1:") and len(text) <= 200
    assert text in result.stdout.splitlines()  # the line to copy, on its own
    invite = token.decode(text, _public(site), datetime.datetime.now(datetime.UTC).timestamp())
    hub = yaml.safe_load((site / "host_vars/hilltop/node.yml").read_text())
    assert invite.pin == token.b64url_decode(hub["join_pin"])
    assert [token.format_endpoint(e) for e in invite.endpoints] == [f"{hub['node_mesh_ipv4']}:4801"]
    (record,) = _records(site)
    assert record["id"] == invite.id and record["id"] in result.stdout and "Next:" in result.stdout
    assert {k: record[k] for k in ("name", "platform", "roles", "hub", "revoked", "used_by")} == {
        "name": "garden", "platform": "rpi4", "roles": ["gateway", "dns"], "hub": "hilltop", "revoked": False,
        "used_by": None}
    lifetime = datetime.datetime.fromisoformat(record["expires"]) - datetime.datetime.fromisoformat(
        record["created"])
    assert lifetime == datetime.timedelta(days=7) and record["expires"] in result.stdout
    # Neither the secret nor the invite itself is anywhere in the site.
    site_text = b"".join(p.read_bytes() for p in site.rglob("*") if p.is_file())
    for secret in (invite.secret, invite.secret.hex().encode(), token.b64url(invite.secret).encode(),
                   text.encode(), text.removeprefix("meshstead1:")[:40].encode()):
        assert secret not in site_text


def test_create_with_endpoints_and_a_hub(site, tmp_path, admin_key):
    run_cli("node", "add", "school", "--role", "hub", "--site", site)
    text, _ = _create(site, tmp_path, "barn", "--hub", "school", "--endpoint", "192.168.5.7:9000",
                      "--endpoint", "[fd00::7]", "--expires", "30m")
    (record,) = _records(site)
    assert record["hub"] == "school" and record["endpoints"] == ["192.168.5.7:9000", "[fd00::7]:4801"]
    checked = run_cli("invite", "check", text, "--site", site)
    assert checked.returncode == 0, checked.stderr
    assert "school" in checked.stdout and "[fd00::7]:4801" in checked.stdout


def test_check_shows_what_a_valid_invite_grants_and_changes_nothing(site, tmp_path):
    text, _ = _create(site, tmp_path, "garden", "--platform", "rpi3", "--role", "dns")
    before = snapshot(site)
    for args in ([text], ["--file", tmp_path / "garden-invite.txt"]):
        result = run_cli("invite", "check", *args, "--site", site)
        assert result.returncode == 0, result.stderr
        lines = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in result.stdout.splitlines()[1:]}
        assert lines["name"] == "garden" and lines["platform"] == "rpi3" and lines["roles"] == "dns"
        assert lines["hub"] == "hilltop" and lines["state"] == "unused" and lines["id"] == _records(site)[0]["id"]
        assert lines["endpoints"].endswith(":4801") and lines["expires"] == _records(site)[0]["expires"]
    assert snapshot(site) == before


def test_each_invalid_invite_exits_1_with_one_line_naming_the_problem(site, tmp_path):
    text, _ = _create(site, tmp_path, "garden")
    invite_id = _records(site)[0]["id"]
    # Made by another site's key: everything else as a real invite.
    foreign = token.encode(token.decode(_signed(site), _public(site), 0), Ed25519PrivateKey.generate())
    cut = len("meshstead1:") + 30
    tampered = text[:cut] + ("A" if text[cut] != "A" else "B") + text[cut + 1:]
    past = int(datetime.datetime.now(datetime.UTC).timestamp()) - 7200
    cases = {
        "expired at": _signed(site, expires=past),
        "was changed": tampered,
        "for another site": foreign,
        "not a meshstead invite": "hello",
        "format version 2": "meshstead2:AAAA",
    }
    before = snapshot(site)
    for problem, bad in cases.items():
        result = run_cli("invite", "check", bad, "--site", site)
        assert result.returncode == 1, (problem, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("meshstead: error: invite: "), (problem, result.stderr)
        assert problem in lines[0] and not result.stdout and "Traceback" not in result.stderr
    assert snapshot(site) == before
    assert run_cli("invite", "revoke", invite_id, "--site", site).returncode == 0
    result = run_cli("invite", "check", text, "--site", site)
    assert result.returncode == 1 and "revoked" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _public(site) -> bytes:
    return base64.b64decode(yaml.safe_load((site / "group_vars/all/site.yml").read_text())[
        "site_signing_public_key"])


def test_list_shows_each_state(site, tmp_path):
    _create(site, tmp_path, "a")
    _create(site, tmp_path, "b")
    first, second = (r["id"] for r in _records(site))
    assert run_cli("invite", "revoke", first, "--site", site).returncode == 0
    # Time passes for b: its record says it expired an hour ago.
    data = yaml.safe_load((site / INVITES).read_text())
    data["site_invites"][1]["expires"] = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
                                          ).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    (site / INVITES).write_text(yaml.safe_dump(data))
    _create(site, tmp_path, "b")  # an expired invite's name is free again
    rows = json.loads(run_cli("invite", "list", "--json", "--site", site).stdout)
    assert [(r["name"], r["state"]) for r in rows] == [("a", "revoked"), ("b", "expired"), ("b", "unused")]
    assert rows[0]["id"] == first and rows[1]["id"] == second and "secret" not in json.dumps(rows)
    table = run_cli("invite", "list", "--site", site, env={"COLUMNS": "200"}).stdout
    assert first in table and "revoked" in table and "expired" in table and "unused" in table


def test_revoke_marks_only_that_record_and_refuses_twice_or_unknown(site, tmp_path):
    _create(site, tmp_path, "a")
    _create(site, tmp_path, "b")
    first, second = (r["id"] for r in _records(site))
    before = snapshot(site)
    result = run_cli("invite", "revoke", first.upper(), "--site", site)
    assert result.returncode == 0, result.stderr
    assert _changed(before, snapshot(site)) == {str(INVITES)}
    assert [r["revoked"] for r in _records(site)] == [True, False]
    revoked = snapshot(site)
    assert_one_line_error(run_cli("invite", "revoke", first, "--site", site), "id")
    assert_one_line_error(run_cli("invite", "revoke", "zzzzzzzz", "--site", site), "id")
    assert snapshot(site) == revoked and second


def test_create_refusals_write_nothing(site, tmp_path, admin_key):
    out = tmp_path / "out"
    _create(site, out, "garden")
    before, files = snapshot(site), snapshot(out)
    for args, field in [
        (["cabin"], "name"),  # a node of the site
        (["garden"], "name"),  # an unused invite's name
        (["Bad_Name"], "name"),
        (["x" * 28], "name"),  # too long for the QR code
        (["x", "--expires", "0m"], "expires"),
        (["x", "--expires", "31d"], "expires"),
        (["x", "--expires", "soon"], "expires"),
        (["x", "--hub", "cabin"], "hub"),  # not a hub
        (["x", "--hub", "nowhere"], "hub"),
        (["x", "--endpoint", "10.1.2"], "endpoint"),
        (["x", "--platform", "vax"], "platform"),
        (["x", "--role", "boss"], "role"),
    ]:
        result = run_cli("invite", "create", *args, "--site", site, "--out", out / "new")
        assert_one_line_error(result, field)
        assert snapshot(site) == before and snapshot(out) == files, args
    lonely = make_site(tmp_path / "lonely", admin_key, nodes=["cabin"])
    lonely_before = snapshot(lonely)
    assert_one_line_error(run_cli("invite", "create", "x", "--site", lonely, "--out", out / "new"), "hub")
    assert snapshot(lonely) == lonely_before and not (out / "new").exists()


def test_check_needs_one_invite_and_no_vault(site, tmp_path, config_home):
    text, _ = _create(site, tmp_path, "garden")
    assert_one_line_error(run_cli("invite", "check", "--site", site), "invite")
    assert_one_line_error(run_cli("invite", "check", text, "--file", tmp_path / "garden-invite.txt",
                                  "--site", site), "invite")
    for password in (config_home / "meshstead" / "vault").iterdir():
        password.unlink()  # offline and public: the vault is not needed
    assert run_cli("invite", "check", text, "--site", site).returncode == 0
    assert run_cli("invite", "list", "--site", site).returncode == 0


def test_node_import_without_a_hub_is_one_error_and_writes_nothing(tmp_path, admin_key):
    hubless = make_site(tmp_path / "hubless", admin_key, nodes=["cabin"])
    before = snapshot(hubless)
    assert_one_line_error(run_cli("node", "import", "--site", hubless), "hubs")
    assert snapshot(hubless) == before


def test_node_import_with_its_hubs_unreachable_says_so_and_writes_nothing(site, tmp_path):
    """hilltop has no address anyone answers at: the import warns, exits 1 and changes nothing."""
    before = snapshot(site)
    result = run_cli("node", "import", "--site", site, env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
                     timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hub hilltop did not answer" in result.stderr
    assert snapshot(site) == before
