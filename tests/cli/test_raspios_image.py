"""A Raspberry Pi 5's image from a Raspberry Pi OS image, without booting
it: small images of Raspberry Pi OS's layout (tests/vm/raspios_standin.py
assembles them, as it does the stand-in the slow test boots) are refused
when they are not what `--base` expects, and personalised when they are:
what goes onto the FAT partition, and that nothing else changes. The
download of the .debs is the cached one (a stand-in .deb): no network."""

import dataclasses
import io
import json
import shutil
import subprocess
import tarfile

import pytest

from tests.conftest import assert_one_line_error, make_site, run_cli
from tests.vm import raspios_standin
from wizard import sites
from wizard.images import base as bases
from wizard.images import debs, disk, raspios, recipe, virt

TOOLS = ("mkfs.vfat", "mke2fs", "mcopy", "mdir", "mtype", "sfdisk", "debugfs", "xz")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason=f"needs {', '.join(TOOLS)} (make setup installs them)")
STATUS = """\
Package: dpkg
Status: install ok installed
Architecture: {arch}
Version: 1.21.22

Package: python3
Status: install ok installed
Architecture: {arch}
Version: 3.11.2-1+b1

Package: tinc
Status: deinstall ok config-files
Architecture: {arch}
Version: 1.0.36-2
"""


@dataclasses.dataclass
class Card:
    image: object
    cmdline: str


def raspios_image(directory, arch="arm64", boot=None) -> Card:
    """A small image of Raspberry Pi OS's layout with a dpkg status of `arch`."""
    tree = directory / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text(STATUS.format(arch=arch))
    (tree / "boot/firmware").mkdir(parents=True)
    cmdline = raspios_standin.CMDLINE + " quiet init=/usr/lib/raspberrypi-sys-mods/firstboot"
    files = boot if boot is not None else {"config.txt": raspios_standin.CONFIG.encode(),
                                           "cmdline.txt": f"{cmdline}\n".encode(), "kernel_2712.img": b"kernel"}
    image = directory / "raspios.img"
    raspios_standin.assemble(tree, files, image, boot_mib=64, root_headroom_mib=4)
    return Card(image, cmdline)


@pytest.fixture
def site(tmp_path, admin_key):
    return make_site(tmp_path / "field", admin_key, "services=",
                     nodes=["hub --role hub", "cabin --platform rpi5", "den --platform rpi4"])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache that has the download already: a stand-in .deb and the wheels."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MESHSTEAD_IMAGE_CACHE", str(root))
    (root / "wheels").mkdir(parents=True)
    for project, version in zip(("ansible_core", "mitogen"), recipe.ansible_pins(), strict=True):
        (root / "wheels" / f"{project}-{version}-py3-none-any.whl").write_bytes(b"wheel")
    return root


def card_text(image, name: str) -> bytes:
    offset = virt.partitions(image)[0][0]
    return subprocess.run(["mtype", "-i", f"{image}@@{offset}", f"::/{name}"], capture_output=True,
                          env=virt.MTOOLS_ENV, check=True).stdout


# --- bad input: one line naming --base, nothing written --------------------------

def test_base_for_a_node_that_is_not_a_pi_5_says_what_that_node_uses(site, tmp_path):
    card = raspios_image(tmp_path)
    result = run_cli("image", "build", "den", "--site", site, "--base", card.image, "--out", tmp_path / "out")
    assert_one_line_error(result, "base")
    assert "image base --platform rpi" in result.stderr and "rpi5" in result.stderr
    result = run_cli("image", "build", "--generic", "--platform", "rpi", "--site", site, "--base", card.image,
                     "--out", tmp_path / "out")
    assert_one_line_error(result, "base")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["missing", "not an image", "no cmdline.txt", "armhf", "armhf.xz", "truncated xz"])
def test_a_base_that_is_not_raspberry_pi_os_arm64_is_refused_and_nothing_is_written(site, tmp_path, cache, kind):
    work = tmp_path / "made"
    work.mkdir()
    if kind == "missing":
        base, expected = tmp_path / "nowhere.img.xz", "cannot read"
    elif kind == "not an image":
        base, expected = tmp_path / "notes.img", "no partition table"
        base.write_bytes(b"hello\n" * 1000)
    elif kind == "no cmdline.txt":
        base = raspios_image(work, boot={"config.txt": b"arm_64bit=1\n"}).image
        expected = "no cmdline.txt"
    else:
        base, expected = raspios_image(work, arch="armhf").image, "for armhf, not arm64"
        if kind.endswith("xz"):
            subprocess.run(["xz", "-0", "-T2", str(base)], check=True)
            base = base.with_name(base.name + ".xz")
        if kind == "truncated xz":
            base.write_bytes(base.read_bytes()[:4096])
            expected = "cannot decompress"
    result = run_cli("image", "build", "cabin", "--site", site, "--base", base, "--out", tmp_path / "out")
    assert_one_line_error(result, "base")
    assert expected in result.stderr and "expected a Raspberry Pi OS" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
    assert not list(cache.glob("debs-*"))  # refused before any download


def test_a_base_customised_already_is_refused(site, tmp_path, cache):
    line = raspios_standin.CMDLINE + " systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot"
    card = raspios_image(tmp_path, boot={"config.txt": b"", "cmdline.txt": f"{line}\n".encode()})
    result = run_cli("image", "build", "cabin", "--site", site, "--base", card.image, "--out", tmp_path / "out")
    assert_one_line_error(result, "base")
    assert "already runs something at first boot" in result.stderr


def test_only_what_the_image_has_not_installed_is_asked_of_apt():
    status = STATUS.format(arch="arm64").encode()
    assert debs.installed(status) == {"dpkg", "python3"}  # tinc's config files are not tinc
    assert raspios.architecture(status) == "arm64"


# --- what goes onto the FAT partition ---------------------------------------------

@pytest.fixture
def built(site, tmp_path, cache):
    card = raspios_image(tmp_path)
    # The download this image would need, as a previous build left it in the cache.
    status = raspios.dpkg_status(card.image, raspios.layout(card.image, card.image), card.image)
    carried = debs.cached_dir(status, recipe.image_packages(), suite=recipe.load("rpi").suite, arch="arm64")
    carried.mkdir(parents=True)
    (carried / "tinc_1.0.36-2_arm64.deb").write_bytes(b"!<arch>\nstand-in\n")
    (carried / "debs.json").write_text("{}")
    before = disk.sha256(card.image)
    result = raspios.build(card.image, sites.open_site(site), "cabin", tmp_path / "out", raw=True,
                           progress=lambda _m: None)
    return {"card": card, "result": result, "before": before, "site": site}


def test_the_image_is_private_complete_and_the_downloaded_base_unchanged(built):
    image = built["result"].path
    assert image.name == "cabin-rpi5.img" and image.stat().st_mode & 0o777 == 0o600
    assert (image.parent / "cabin-rpi5.img.sha256").read_text().split()[0] == disk.sha256(image)
    assert disk.sha256(built["card"].image) == built["before"]
    assert sorted(p.name for p in image.parent.iterdir()) == ["cabin-rpi5.img", "cabin-rpi5.img.sha256"]
    # Only the boot partition differs: the root file system is Raspberry Pi OS's, byte for byte.
    boot_offset, boot_size = virt.partitions(image)[0]
    with open(built["card"].image, "rb") as a, open(image, "rb") as b:
        assert a.read(boot_offset) == b.read(boot_offset)
        a.seek(boot_offset + boot_size)
        b.seek(boot_offset + boot_size)
        assert a.read() == b.read()


def test_cmdline_txt_gets_imager_s_hook_on_its_one_line(built):
    cmdline = card_text(built["result"].path, "cmdline.txt").decode()
    assert cmdline == (f"{built['card'].cmdline} systemd.run=/boot/firmware/firstrun.sh "
                       "systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n")
    # raspberrypi-sys-mods' initramfs rewrites only Imager's /boot/firstrun.sh: this path it leaves alone.
    assert "systemd.run=/boot/firstrun.sh" not in cmdline


def test_the_hook_is_the_image_builder_s_script_and_its_cmdline_edit_undoes_the_hook(built, tmp_path):
    script = card_text(built["result"].path, "firstrun.sh")
    assert script == raspios.firstrun_script().read_bytes()
    for shell in ("sh", "dash", "bash"):
        if shutil.which(shell):
            parsed = subprocess.run([shell, "-n"], input=script, capture_output=True, check=False)
            assert parsed.returncode == 0, (shell, parsed.stderr)
    assert f'\nHOOK="{" ".join(raspios.HOOK)}"\n' in script.decode()
    # The script's own unhook() on a copy of the card's cmdline.txt gives back Raspberry Pi OS's line.
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    (firmware / "cmdline.txt").write_bytes(card_text(built["result"].path, "cmdline.txt"))
    text = script.decode().replace("FIRMWARE=/boot/firmware", f"FIRMWARE={firmware}")
    functions = text[:text.index("umask 022")]
    subprocess.run(["sh", "-c", functions + "\nunhook"], check=True)
    assert (firmware / "cmdline.txt").read_text() == f"{built['card'].cmdline}\n"


def test_the_payload_carries_debs_wheels_venv_and_the_first_boot_program(built):
    image = built["result"].path
    names = set(virt.fat_names(image))
    assert "meshstead-setup/debs/tinc_1.0.36-2_arm64.deb" in names
    pins = recipe.ansible_pins()
    assert f"meshstead-setup/wheels/ansible_core-{pins[0]}-py3-none-any.whl" in names
    venv = card_text(image, "meshstead-setup/venv.sh").decode()
    assert f"{bases.ANSIBLE_VENV}/bin/pip install" in venv and "--no-index" in venv
    assert f"/boot/firmware/meshstead-setup/wheels/mitogen-{pins[1]}-py3-none-any.whl" in venv
    assert subprocess.run(["sh", "-n"], input=venv.encode(), check=False).returncode == 0
    with tarfile.open(fileobj=io.BytesIO(card_text(image, "meshstead-setup/root.tar"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    shipped = recipe.load("rpi").files
    firstboot = members["usr/lib/meshstead/firstboot"]
    assert firstboot.mode == 0o755 and firstboot.uid == firstboot.gid == 0
    for path in shipped.rglob("*"):
        if path.is_file():
            assert path.relative_to(shipped).as_posix() in members
    assert "usr/lib/meshstead/join/meshstead_join/__main__.py" in members
    assert members["usr/sbin/meshstead-firstboot"].linkname == "/usr/lib/meshstead/firstboot"
    assert not [n for n in members if "__pycache__" in n]
    # Directories of Raspberry Pi OS are never in it (their owner and mode stay), only meshstead's state.
    assert [n for n, m in members.items() if m.isdir()] == ["var/lib/meshstead"]


def test_the_seed_is_the_node_s_and_holds_no_other_node_s_secret(built):
    image = built["result"].path
    manifest = json.loads(card_text(image, "meshstead/seed.json"))
    assert manifest["node"] == "cabin"
    names = set(virt.fat_names(image))
    assert "meshstead/inventory/host_vars/cabin/secrets.yml" in names
    assert not [n for n in names if "secrets.yml" in n and "/cabin/" not in n and "group_vars" not in n]
    opened = sites.open_site(built["site"])
    others = [str(v) for n in ("hub", "den") for v in sites.node_secrets(opened, n).values() if v]
    data = image.read_bytes()
    assert others and not [s for s in others if s.encode() in data]


def test_image_json_tells_the_first_boot_where_raspberry_pi_os_mounts_the_card(built):
    with tarfile.open(fileobj=io.BytesIO(card_text(built["result"].path, "meshstead-setup/root.tar"))) as tar:
        config = json.loads(tar.extractfile("etc/meshstead/image.json").read())
    assert config["boot_mount"] == "/boot/firmware"
    assert config["ansible_playbook"] == f"{bases.ANSIBLE_VENV}/bin/ansible-playbook"
