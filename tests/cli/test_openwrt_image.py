"""`meshstead image build` of an OpenWrt node: the ImageBuilder bundle.

No OpenWrt runs here: the bundle is compared with checked-in golden files
(key material masked), its first-boot scripts are parsed by POSIX shells and
run against a stub `uci` that records what they set, every `uci set` is
checked against the options OpenWrt's packages read, and `--imagebuilder` runs
a stand-in ImageBuilder whose Makefile records how it was called.
Regenerate the golden files with MESHSTEAD_UPDATE_GOLDEN=1."""

import os
import shlex
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT, assert_one_line_error, init_site, run_cli
from wizard import sites
from wizard.errors import MeshsteadError
from wizard.images import openwrt

HERE = Path(__file__).parent
GOLDEN = HERE / "golden" / "openwrt" / "ap-openwrt"
ANSWERS = HERE / "golden" / "openwrt-answers.yml"
SCRIPTS = ("80-meshstead-system", "81-meshstead-mesh", "82-meshstead-tinc", "83-meshstead-yggdrasil")

# The UCI options the scripts may set, by config and section type, as
# OpenWrt's packages read them: netifd's protocol handlers (batman-adv's
# batadv.sh and batadv_hardif.sh, yggdrasil.sh, static and none), the
# wireless wifi-device/wifi-iface options of mac80211.sh and hostapd.sh,
# system, dropbear, firewall zones, tinc's init script.
_IFACE = {"proto", "device", "mtu"}
UCI_OPTIONS = {
    ("system", "system"): {"hostname", "zonename", "timezone"},
    ("dropbear", "dropbear"): {"Port", "PasswordAuth", "RootPasswordAuth"},
    ("firewall", "zone"): {"name", "input", "output", "forward", "network"},
    ("wireless", "wifi-device"): {"country", "band", "channel", "disabled"},
    ("wireless", "wifi-iface"): {"device", "network", "mode", "mesh_id", "mesh_fwding", "encryption", "key",
                                 "ssid", "bssid"},
    ("network", "interface/batadv"): _IFACE | {"routing_algo", "orig_interval", "aggregated_ogms",
                                               "bridge_loop_avoidance", "distributed_arp_table", "hop_penalty",
                                               "gw_mode", "gw_bandwidth"},
    ("network", "interface/batadv_hardif"): _IFACE | {"master"},
    ("network", "interface/static"): _IFACE | {"ipaddr", "ip6addr"},
    ("network", "interface/none"): _IFACE,
    ("network", "interface/yggdrasil"): _IFACE | {"private_key", "node_info", "node_info_privacy",
                                                  "listen_address", "allowed_public_key"},
    ("network", "yggdrasil_ygg0_peer"): {"address"},
    ("network", "yggdrasil_ygg0_interface"): {"interface", "beacon", "listen", "port"},
    ("tinc", "tinc-net"): {"enabled"},
}
# Sections that exist before the scripts run (anonymous, or made by `wifi config`).
EXISTING = {"system.@system[0]": "system", "dropbear.@dropbear[0]": "dropbear", "wireless.radio0": "wifi-device"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("openwrt")
    env = {"XDG_CONFIG_HOME": str(base / "config"), "HOME": str(base)}
    return init_site(base, yaml.safe_load(ANSWERS.read_text()), env), env


@pytest.fixture(scope="module")
def bundle(site, tmp_path_factory):
    directory, env = site
    out = tmp_path_factory.mktemp("images")
    result = run_cli("image", "build", "ap", "--site", directory, "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    assert f"OpenWrt bundle for ap: {out / 'ap-openwrt'}" in result.stdout
    return out / "ap-openwrt", result.stdout


def _secrets(directory: Path, env: dict) -> dict[str, str]:
    """Every key and certificate of the site, named, to mask in the bundle."""
    os.environ.update(env)
    opened = sites.open_site(directory)
    named: dict[str, str] = {}
    for node in opened.site.sorted_nodes():
        public = yaml.safe_load((directory / "host_vars" / node.name / "node.yml").read_text())
        values = {**{k: v for k, v in public.items() if isinstance(v, str) and "{{" not in v and len(v) >= 40},
                  **sites.node_secrets(opened, node.name)}
        for name, value in values.items():
            named[f"{node.name} {name}"] = str(value)
        key = sites.node_secrets(opened, node.name)["ssh_host_ed25519_private_key"]
        named[f"{node.name} dropbear host key"] = "".join(f"\\{b:03o}" for b in _dropbear(key))
    for number, key in enumerate(yaml.safe_load((directory / "group_vars/all/site.yml").read_text())
                                 ["site_admin_ssh_keys"]):
        named[f"admin key {number}"] = key
    return named


def _dropbear(openssh_key: str) -> bytes:
    """dropbear's ed25519 key file, built here from its format (string
    "ssh-ed25519", string seed||public), not by the role's filter."""
    key = serialization.load_ssh_private_key(openssh_key.encode(), password=None)
    raw = serialization.Encoding.Raw
    seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return b"".join(struct.pack(">I", len(part)) + part for part in (b"ssh-ed25519", seed + public))


def _masked(text: str, secrets: dict[str, str]) -> str:
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        for variant in sorted({value, value.strip(), value.strip().lower()}, key=len, reverse=True):
            if len(variant) >= 40:
                text = text.replace(variant, f"<{name}>")
    return text


def _tree(directory: Path, secrets: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {str(p.relative_to(directory)): (_masked(p.read_text(), secrets), oct(stat.S_IMODE(p.stat().st_mode)))
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_bundle_matches_the_golden_files(site, bundle):
    directory, env = site
    got = _tree(bundle[0], _secrets(directory, env))
    if os.environ.get("MESHSTEAD_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, (text, _mode) in got.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text)
        (GOLDEN.parent / "modes.yml").write_text(yaml.safe_dump({rel: mode for rel, (_, mode) in got.items()}))
    modes = yaml.safe_load((GOLDEN.parent / "modes.yml").read_text())
    want = {str(p.relative_to(GOLDEN)): (p.read_text(), modes[str(p.relative_to(GOLDEN))])
            for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], rel
    # Nothing of the key material is left unmasked in the golden files.
    assert "PRIVATE KEY" not in "".join(text for text, _ in want.values())


def test_private_files_are_private_and_the_overlay_keeps_etc_readable(bundle):
    path, stdout = bundle
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for script in SCRIPTS:
        assert stat.S_IMODE((path / "files/etc/uci-defaults" / script).stat().st_mode) == 0o600
    assert stat.S_IMODE((path / "files/etc/tinc/valley/rsa_key.priv").stat().st_mode) == 0o600
    # The ImageBuilder copies directories with their modes onto the router.
    for directory in (path / "files").rglob("*"):
        if directory.is_dir():
            assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
    assert "private keys" in stdout and "0700/0600" in stdout


def test_the_printed_command_is_the_make_image_command(bundle):
    path, stdout = bundle
    listed = (path / "packages.txt").read_text().split()
    line = next(line.strip() for line in stdout.splitlines() if line.strip().startswith("make "))
    argv = shlex.split(line)
    assert argv[:4] == ["make", "-C", "IMAGEBUILDER", "image"]
    assert dict(a.split("=", 1) for a in argv[4:]) == {
        "PROFILE": "tplink_archer-c7-v2", "PACKAGES": " ".join(listed), "FILES": str((path / "files").resolve())}
    assert {"kmod-batman-adv", "wpad-mbedtls", "tinc", "yggdrasil"} <= set(listed)
    # syncthing is a site service, but not on OpenWrt nodes (docs/openwrt.md).
    assert not [p for p in listed if "syncthing" in p]


@pytest.mark.parametrize("shell", ["dash", "busybox", "bash"])
def test_the_first_boot_scripts_are_posix_shell(bundle, shell):
    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed")
    argv = {"busybox": ["busybox", "sh", "-n"], "bash": ["bash", "--posix", "-n"]}.get(shell, [shell, "-n"])
    for script in (bundle[0] / "files/etc/uci-defaults").iterdir():
        result = subprocess.run([*argv, str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
    for hook in ("tinc-up", "tinc-down"):
        assert subprocess.run(["dash", "-n", str(bundle[0] / "files/etc/tinc/valley" / hook)]).returncode == 0


def _run_scripts(bundle_path: Path, tmp_path: Path) -> list[list[str]]:
    """Run the scripts in order, as OpenWrt does (each sourced in a subshell,
    removed when it succeeds), with a `uci` that records its arguments and
    answers `get` for the sections that exist; the paths they write under /etc
    are moved under tmp_path."""
    stub = tmp_path / "bin"
    stub.mkdir()
    calls = tmp_path / "calls"
    (stub / "uci").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\037" "$a"; done >> "$UCI_CALLS"\n'
                              'echo >> "$UCI_CALLS"\n[ "$1" = -q ] && shift\n'
                              '[ "$1" = get ] && { [ "$2" = wireless.radio0 ] || exit 1; }\nexit 0\n')
    (stub / "wifi").write_text("#!/bin/sh\nexit 0\n")
    (stub / "logger").write_text("#!/bin/sh\nexit 0\n")
    for tool in stub.iterdir():
        tool.chmod(0o755)
    root = tmp_path / "root"
    (root / "dropbear").mkdir(parents=True)
    (root / "shadow").write_text("root:::0:99999:7:::\n")
    work = tmp_path / "uci-defaults"
    work.mkdir()
    for script in sorted((bundle_path / "files/etc/uci-defaults").iterdir()):
        text = script.read_text().replace("/etc/dropbear/", f"{root}/dropbear/")
        text = text.replace("/etc/shadow", f"{root}/shadow")
        (work / script.name).write_text(text)
    runner = 'cd "$1"; for f in *; do ( . "./$f" ) && rm -f "$f"; done'
    env = {"PATH": f"{stub}:/usr/bin:/bin", "UCI_CALLS": str(calls)}
    subprocess.run(["dash", "-c", runner, "sh", str(work)], env=env, check=True)
    assert not list(work.iterdir()), "a script failed and would run again at the next boot"
    return [line.split("\x1f")[:-1] for line in calls.read_text().splitlines()]


def test_the_scripts_set_only_options_openwrt_reads(bundle, tmp_path):
    sections = dict(EXISTING)
    protos: dict[str, str] = {}
    for argv in _run_scripts(bundle[0], tmp_path):
        argv = [a for a in argv if a != "-q"]
        if argv[0] not in ("set", "add_list"):
            continue
        key, value = argv[1].split("=", 1)
        parts = key.rsplit(".", 1) if key.count(".") == 2 or "@" in key else [key]
        if len(parts) == 1:  # a section: set config.name=type
            sections[key] = value
            continue
        section, option = parts
        if option == "proto":
            protos[section] = value
        kind = sections[section] + (f"/{protos[section]}" if section in protos else "")
        if kind == "interface" and option == "proto":
            continue
        config = section.split(".")[0]
        assert option in UCI_OPTIONS[(config, kind)], f"{key}: not an option of {config} {kind}"


def test_the_scripts_set_the_site_s_values_exactly(site, bundle, tmp_path):
    directory, env = site
    calls = [a for a in _run_scripts(bundle[0], tmp_path) if a and a[0] == "set"]
    values = dict(argv[1].split("=", 1) for argv in calls)
    # Quoting survives a passphrase with quotes, $ and backslash.
    assert values["wireless.meshstead_mesh.key"] == yaml.safe_load(ANSWERS.read_text())["mesh_passphrase"]
    assert values["wireless.meshstead_mesh.mode"] == "mesh" and values["wireless.meshstead_mesh.encryption"] == "sae"
    assert values["wireless.meshstead_mesh.mesh_fwding"] == "0"
    assert values["wireless.radio0.country"] == "KE" and values["wireless.radio0.channel"] == "6"
    node = yaml.safe_load((directory / "host_vars/ap/node.yml").read_text())
    assert values["network.meshstead.ipaddr"] == f"{node['node_mesh_ipv4']}/18"
    assert values["network.meshstead.ip6addr"] == f"{node['node_mesh_ipv6']}/64"
    assert values["network.meshstead_radio.mtu"] == "1532" and values["network.bat0.gw_mode"] == "server"
    os.environ.update(env)
    secrets = sites.node_secrets(sites.open_site(directory), "ap")
    assert values["network.ygg0.private_key"] == secrets["yggdrasil_private_key"].lower()
    assert values["system.@system[0].hostname"] == "ap"


def test_the_host_key_script_writes_dropbear_s_format(site, bundle, tmp_path):
    directory, env = site
    _run_scripts(bundle[0], tmp_path)
    written = (tmp_path / "root/dropbear/dropbear_ed25519_host_key").read_bytes()
    os.environ.update(env)
    key = sites.node_secrets(sites.open_site(directory), "ap")["ssh_host_ed25519_private_key"]
    assert written == _dropbear(key)
    if shutil.which("dropbearkey"):  # dropbear's own reading of it, where installed
        shown = subprocess.run(["dropbearkey", "-y", "-f", str(tmp_path / "root/dropbear/dropbear_ed25519_host_key")],
                               capture_output=True, text=True, check=True).stdout
        public = yaml.safe_load((directory / "host_vars/ap/node.yml").read_text())["ssh_host_ed25519_public_key"]
        assert public.split()[1] in shown


FAKE_MAKEFILE = """\
# A stand-in ImageBuilder: records how it was called, "builds" an image of the overlay.
image:
\t@echo "Building images for ath79 - generic"
\t@printf 'PROFILE=%s\\nPACKAGES=%s\\nFILES=%s\\n' "$(PROFILE)" "$(PACKAGES)" "$(FILES)" > $(CALLED)
\t@[ "$(PROFILE)" != fail ] || { echo "Error: no such profile"; exit 1; }
\ttar -C $(FILES) -cf $(BIN_DIR)/openwrt-ath79-generic-$(PROFILE)-squashfs-sysupgrade.bin .
\t@echo '{}' > $(BIN_DIR)/profiles.json
"""


@pytest.fixture
def imagebuilder(tmp_path):
    directory = tmp_path / "openwrt-imagebuilder-23.05.5-ath79-generic.Linux-x86_64"
    directory.mkdir()
    (directory / "Makefile").write_text(FAKE_MAKEFILE.replace("$(CALLED)", str(tmp_path / "called.txt")))
    (directory / ".config").write_text('CONFIG_TARGET_BOARD="ath79"\nCONFIG_TARGET_SUBTARGET="generic"\n')
    return directory


def test_imagebuilder_runs_make_image_with_the_bundle(site, tmp_path, imagebuilder):
    directory, env = site
    out = tmp_path / "out"
    result = run_cli("image", "build", "ap", "--site", directory, "--out", out, "--imagebuilder", imagebuilder,
                     env=env)
    assert result.returncode == 0, result.stderr
    bundle = out / "ap-openwrt"
    called = dict(line.split("=", 1) for line in (tmp_path / "called.txt").read_text().splitlines())
    assert called["PROFILE"] == "tplink_archer-c7-v2"
    assert called["PACKAGES"] == " ".join((bundle / "packages.txt").read_text().split())
    # make ran on the bundle before it got its final name.
    assert Path(called["FILES"]).parent.name.startswith(".ap-openwrt.partial-")
    assert Path(called["FILES"]).name == "files" and Path(called["FILES"]).parent.parent == out
    image = bundle / "bin/openwrt-ath79-generic-tplink_archer-c7-v2-squashfs-sysupgrade.bin"
    assert f"Image for ap: {image}" in result.stdout and "sha256" in result.stdout
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    assert "profiles.json" not in result.stdout
    listed = subprocess.run(["tar", "-tf", str(image)], capture_output=True, text=True, check=True).stdout
    assert "./etc/uci-defaults/81-meshstead-mesh" in listed.splitlines()
    assert "Building images" in (bundle / "build.log").read_text()


def test_a_failing_imagebuilder_leaves_nothing_under_the_final_name(site, tmp_path, imagebuilder):
    directory, env = site
    node_yml = directory / "host_vars/ap/node.yml"
    out = tmp_path / "out"
    # A make that fails: the profile "fail" (the stand-in's error).
    text = imagebuilder.joinpath("Makefile").read_text().replace('"$(PROFILE)" != fail', '"$(PROFILE)" = fail')
    imagebuilder.joinpath("Makefile").write_text(text)
    result = run_cli("image", "build", "ap", "--site", directory, "--out", out, "--imagebuilder", imagebuilder,
                     env=env)
    assert_one_line_error(result, "imagebuilder")
    assert "make image failed" in result.stderr and "no such profile" in result.stderr
    # Only make's log, beside where the bundle would be.
    assert [p.name for p in out.iterdir()] == ["ap-openwrt.failed.log"]
    assert node_yml.is_file()


@pytest.mark.parametrize("broken, why", [("no makefile", "has no Makefile"),
                                         ("other target", "builds for ramips/mt7621")])
def test_something_that_is_not_the_node_s_imagebuilder_is_refused(site, tmp_path, imagebuilder, broken, why):
    directory, env = site
    if broken == "no makefile":
        (imagebuilder / "Makefile").unlink()
    else:
        (imagebuilder / ".config").write_text('CONFIG_TARGET_BOARD="ramips"\nCONFIG_TARGET_SUBTARGET="mt7621"\n')
    result = run_cli("image", "build", "ap", "--site", directory, "--out", tmp_path / "out", "--imagebuilder",
                     imagebuilder, env=env)
    assert_one_line_error(result, "imagebuilder")
    assert why in result.stderr and "ath79/generic" in result.stderr
    assert not list((tmp_path / "out").iterdir())


def test_bad_input_is_one_line(site, tmp_path, imagebuilder):
    directory, env = site
    assert_one_line_error(run_cli("image", "build", "nosuch", "--site", directory, "--out", tmp_path / "o",
                                  env=env), "node")
    assert_one_line_error(run_cli("image", "build", "ap", "--site", directory, "--out", tmp_path / "o", "--raw",
                                  env=env), "raw")
    assert_one_line_error(run_cli("image", "build", "cabin", "--site", directory, "--out", tmp_path / "o",
                                  "--imagebuilder", imagebuilder, env=env), "imagebuilder")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(run_cli("image", "build", "ap", "--site", directory, "--out", blocker / "x", env=env),
                          "out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_directory_is_refused(site, tmp_path):
    directory, env = site
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_one_line_error(run_cli("image", "build", "ap", "--site", directory, "--out", locked, env=env), "out")


def test_a_full_disk_leaves_the_previous_bundle_and_no_partial(site, tmp_path, monkeypatch):
    directory, env = site
    os.environ.update(env)
    opened = sites.open_site(directory)
    out = tmp_path / "out"
    out.mkdir()
    openwrt.build(opened, "ap", out, imagebuilder=None, progress=lambda msg: None)
    before = (out / "ap-openwrt/packages.txt").read_bytes()
    real_write = openwrt._write

    def full(path, data, mode):
        if path.name == "build.sh":
            raise OSError(28, "No space left on device")
        real_write(path, data, mode)

    monkeypatch.setattr(openwrt, "_write", full)
    with pytest.raises(MeshsteadError, match="No space left on device") as raised:
        openwrt.build(opened, "ap", out, imagebuilder=None, progress=lambda msg: None)
    assert raised.value.field == "out"
    assert sorted(p.name for p in out.iterdir()) == ["ap-openwrt"]
    assert (out / "ap-openwrt/packages.txt").read_bytes() == before


def test_the_platform_names_the_imagebuilder_target_and_profile():
    assert openwrt.target_of("openwrt:ramips/mt7621/tplink_archer-a6-v3") == openwrt.Target(
        "ramips/mt7621", "tplink_archer-a6-v3")
    assert openwrt.target_of("openwrt:x86/generic") == openwrt.Target("x86", "generic")
    assert ROOT.joinpath("playbooks", openwrt.PLAYBOOK).is_file()


def test_a_killed_builds_partial_bundle_goes_and_a_running_ones_stays(site, tmp_path):
    directory, env = site
    os.environ.update(env)
    opened = sites.open_site(directory)
    out = tmp_path / "out"
    killed = out / ".ap-openwrt.partial-999999999"  # no such process
    running = out / f".ap-openwrt.partial-{os.getppid()}"
    for partial in (killed, running):
        (partial / "files").mkdir(parents=True)
    openwrt.build(opened, "ap", out, imagebuilder=None, progress=lambda msg: None)
    assert sorted(p.name for p in out.iterdir()) == sorted(["ap-openwrt", running.name])
