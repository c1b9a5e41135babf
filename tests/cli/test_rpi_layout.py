"""The rpi layout without building the rpi base: a small disk made by the
base's own assembly step (MBR, FAT boot partition with the files raspi-firmware
leaves, ext4 root by label) from a stand-in tree, then personalised as a
node's image is. The seed lands on the FAT partition beside the Pi's boot
files, and the base's bytes never change. The slow test boots the real one."""

import dataclasses
import json
import shutil

import pytest

from tests.conftest import assert_one_line_error, make_site, run_cli
from wizard import sites
from wizard.images import base as bases
from wizard.images import disk, personalise, raspi, recipe, virt

TOOLS = ("mkfs.vfat", "mke2fs", "mcopy", "mdir", "sfdisk")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason=f"needs {', '.join(TOOLS)} (make setup installs them)")
KERNEL = "vmlinuz-6.1.0-99-arm64"


@pytest.fixture
def rpi_base(tmp_path):
    """A base of the rpi recipe's layout: the boot files are stand-ins, the assembly is real."""
    wanted = dataclasses.replace(recipe.load("rpi"), boot_mib=64, root_headroom_mib=8)
    tree = tmp_path / "tree"
    firmware = tree / "boot/firmware"
    firmware.mkdir(parents=True)
    for name in (*raspi.REQUIRED, KERNEL, "initrd.img-6.1.0-99-arm64"):
        (firmware / name).write_bytes(f"stand-in {name}\n".encode())
    (tree / "etc").mkdir()
    (tree / "etc/hostname").write_text("meshstead\n")
    work = tmp_path / "base"
    work.mkdir()
    layout = disk.assemble(wanted, tree, work / "disk.img", boot_label=bases.BOOT_LABEL, root_label=bases.ROOT_LABEL)
    info = {"platform": "rpi", "sha256": disk.sha256(work / "disk.img"), **layout}
    (work / "base.json").write_text(json.dumps(info))
    return bases.Base(work), tree


def test_the_boot_files_go_onto_an_mbr_fat_partition_and_leave_the_root(rpi_base):
    base, tree = rpi_base
    table = json.loads(disk.run(["sfdisk", "--json", str(base.image)], what="sfdisk").stdout)["partitiontable"]
    assert table["label"] == "dos"  # a Pi 3's boot ROM reads only an MBR
    assert [p["type"] for p in table["partitions"]] == ["c", "83"]
    assert table["partitions"][0].get("bootable") is True
    names = virt.fat_names(base.image)
    assert set(raspi.REQUIRED) | {KERNEL} <= set(names)
    assert list((tree / "boot/firmware").iterdir()) == []  # hidden under the mounted boot partition anyway


def test_a_tree_without_the_pi_s_boot_files_is_refused(tmp_path):
    firmware = tmp_path / "boot/firmware"
    firmware.mkdir(parents=True)
    (firmware / "config.txt").write_text("")
    with pytest.raises(Exception, match=r"no bootcode\.bin, start\.elf.*vmlinuz-\*, initrd\.img-\*"):
        raspi.boot_files(tmp_path, "/boot/firmware")


def test_personalising_writes_the_seed_beside_the_boot_files_and_never_changes_the_base(rpi_base, tmp_path,
                                                                                         admin_key):
    base, _ = rpi_base
    site = make_site(tmp_path / "field", admin_key, "services=", nodes=["hub --role hub", "cabin --platform rpi4"])
    before = disk.sha256(base.image)
    built = personalise.build(base, sites.open_site(site), "cabin", tmp_path / "out", raw=True,
                              progress=lambda _m: None)
    assert built.path.name == "cabin-rpi.img" and built.path.stat().st_mode & 0o777 == 0o600
    assert disk.sha256(base.image) == before == base.info["sha256"]
    base.verify()
    names = virt.fat_names(built.path)
    assert {"meshstead/seed.json", "meshstead/inventory/host_vars/cabin/secrets.yml"} <= set(names)
    assert set(raspi.REQUIRED) | {KERNEL} <= set(names)
    offset = virt.partitions(built.path)[0][0]
    manifest = json.loads(disk.run(["mtype", "-i", f"{built.path}@@{offset}", "::/meshstead/seed.json"],
                                   what="mtype", env=virt.MTOOLS_ENV).stdout)
    assert manifest["node"] == "cabin"
    # Only the boot partition differs from the base.
    with open(base.image, "rb") as a, open(built.path, "rb") as b:
        a.seek(base.info["root_offset"])
        b.seek(base.info["root_offset"])
        assert a.read() == b.read()
    # The lab boots PCs (UEFI): a Pi's image is refused in one line, before any lab exists.
    try:
        refused = run_cli("lab", "boot", built.path, "--site", site, timeout=600)
    finally:
        run_cli("lab", "down", "--site", site, timeout=600)  # were it not refused, no lab is left up
    assert_one_line_error(refused, "image")
    assert "rpi4 node cabin" in refused.stderr
