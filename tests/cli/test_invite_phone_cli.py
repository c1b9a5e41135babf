"""`meshstead invite phone`: the hub's Syncthing device ID as a QR code and
what the person types, as a user runs it. Usage errors exit 2 with one line
naming the field, a hub that does not answer exits 1, and neither writes a
file or changes the site. (The window on a real hub: tests/real for the
node side with the real Syncthing, tests/integration/test_phone_lab.py end
to end.)"""

import ipaddress

import pytest
import yaml

from tests.conftest import assert_one_line_error, make_site, run_cli, snapshot


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "site", admin_key, nodes=["hilltop --role hub", "cabin", "ridge --role hub"])


def _node(site, name) -> dict:
    return yaml.safe_load((site / "host_vars" / name / "node.yml").read_text())


def test_no_window_prints_the_qr_and_what_to_type_and_writes_the_files(site, tmp_path):
    out = tmp_path / "out"
    before = snapshot(site)
    result = run_cli("invite", "phone", "--no-window", "--site", site, "--out", out, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    hub = _node(site, "hilltop")  # the site's first hub
    device_id = hub["syncthing_device_id"]
    lines = result.stdout.splitlines()
    assert "▀" in result.stdout or "▄" in result.stdout  # the QR code, in half blocks
    assert device_id in lines
    address = f"tcp://{hub['node_mesh_ipv4']}:22000"
    assert f"Addresses: replace dynamic with {address}. Introducer: on." in result.stdout
    ssid = yaml.safe_load((site / "group_vars/all/site.yml").read_text())["site_ap_ssid"]
    assert f'Join the Wi-Fi "{ssid}"' in result.stdout
    assert "Folders: nncp-carrier." in result.stdout
    assert "only when a window is open (this run opened none: --no-window)" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["hilltop-phone.png", "hilltop-phone.svg", "hilltop-phone.txt"]
    assert (out / "hilltop-phone.txt").read_text() == device_id + "\n"
    assert (out / "hilltop-phone.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (out / "hilltop-phone.svg").read_bytes()
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())  # a device ID is public
    assert snapshot(site) == before


def test_another_hub_and_folders(site, tmp_path):
    out = tmp_path / "out"
    result = run_cli("invite", "phone", "--no-window", "--hub", "ridge", "--folder", "nncp-carrier", "--folder",
                     "shared", "--site", site, "--out", out)
    assert result.returncode == 0, result.stderr
    ridge = _node(site, "ridge")
    assert (out / "ridge-phone.txt").read_text().strip() == ridge["syncthing_device_id"]
    assert f"tcp://{ipaddress.ip_address(ridge['node_mesh_ipv4'])}:22000" in result.stdout
    assert "Folders: nncp-carrier, shared." in result.stdout


def test_refusals_name_the_field_and_write_nothing(site, tmp_path, admin_key):
    out = tmp_path / "out"
    (tmp_path / "afile").write_text("not a directory")
    before = snapshot(site)
    for args, field in [
        (["--hub", "cabin"], "hub"),  # not a hub
        (["--hub", "nowhere"], "hub"),
        (["--expires", "0m"], "expires"),
        (["--expires", "31d"], "expires"),
        (["--expires", "soon"], "expires"),
        (["--phones", "0"], "phones"),
        (["--phones", "many"], "phones"),
        (["--folder", "photos"], "folder"),  # not a folder of the site
        (["--remove", "ABC"], "remove"),
        (["--json"], "json"),  # only with --list
        (["--no-window", "--expires", "2h"], "expires"),  # would do nothing: refused, not ignored
        (["--list", "--phones", "2"], "phones"),
        (["--list", "--out", out], "out"),
        (["--remove", "ABC", "--folder", "shared"], "folder"),
        (["--out", tmp_path / "afile"], "out"),
    ]:
        where = [] if {"--out", "--list", "--remove"} & set(args) else ["--out", out]
        result = run_cli("invite", "phone", *args, "--site", site, *where)
        assert_one_line_error(result, field)
        assert snapshot(site) == before and not out.exists(), args
    both = run_cli("invite", "phone", "--no-window", "--list", "--site", site)
    assert both.returncode == 2 and "not allowed with" in both.stderr


@pytest.mark.parametrize("case", ["no hub", "no syncthing", "openwrt hub"])
def test_a_hub_that_cannot_take_phones_is_one_error(tmp_path, admin_key, case):
    settings, nodes = {
        "no hub": ((), ["cabin"]),
        "no syncthing": (("services=nncp",), ["hilltop --role hub"]),
        "openwrt hub": ((), ["ap --platform openwrt:ath79/generic --role hub"]),
    }[case]
    other = make_site(tmp_path / "other", admin_key, *settings, nodes=nodes)
    before = snapshot(other)
    result = run_cli("invite", "phone", "--no-window", "--site", other, "--out", tmp_path / "out")
    assert_one_line_error(result, "hub")
    assert {"no hub": "has no hub", "no syncthing": "runs no Syncthing",
            "openwrt hub": "ap runs no Syncthing"}[case] in result.stderr
    assert snapshot(other) == before and not (tmp_path / "out").exists()


def test_a_hub_that_does_not_answer_is_exit_1_and_writes_nothing(site, tmp_path):
    """hilltop has no address anyone answers at: no window, so no QR either."""
    before = snapshot(site)
    result = run_cli("invite", "phone", "--expires", "30m", "--site", site, "--out", tmp_path / "out",
                     env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshstead: error: hub: hilltop did not answer: "), lines
    assert "Traceback" not in result.stderr
    assert snapshot(site) == before and not (tmp_path / "out").exists()
    listed = run_cli("invite", "phone", "--list", "--site", site, env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
                     timeout=300)
    assert listed.returncode == 1 and "hilltop did not answer" in listed.stderr
