"""The Raspberry Pi image without a Pi: the rpi base is built (or taken from
the cache), a node's image is personalised, and it boots under
qemu-system-aarch64 -M virt (TCG) from the kernel and initrd on its own FAT
partition, its root by label on a virtio disk. The first boot configures the
node with the site's roles and no network, and its report says `ok`.

On demand only (marker `slow`; ~10 min to build the base, ~20 min to boot):
    flock /tmp/meshstead-heavy.lock .venv/bin/pytest -m slow tests/vm/test_rpi_image.py
"""

import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.vm.armboot import assert_first_boot_ok, cabled_site, first_boot_line, power_off, stepper, workspace
from wizard.images import base as bases
from wizard.images import disk, recipe, virt

pytestmark = [pytest.mark.vm, pytest.mark.slow]
TOOLS = ("mmdebstrap", "arch-test", "qemu-system-aarch64", "qemu-img", "mcopy", "debugfs", "e2fsck")
# Under TCG on 2 busy cores: generous, so that a slow host fails only a stuck boot.
BOOT_TIMEOUT = 3600


step = stepper("rpi")


def cli(env, *args, timeout=3600):
    proc = run_cli(*args, env=env, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
    return proc


@pytest.fixture(scope="module")
def rpi_boot(tmp_path_factory):
    work, env = workspace(tmp_path_factory, "rpi", TOOLS, "building a base needs root")
    with step("make a site with a Pi 4 node"):
        site = cabled_site(work, env, "rpi4")
    with step("build or reuse the rpi base"):
        cached = bases.cached(recipe.load("rpi")) is not None
        out = cli(env, "image", "base", "--platform", "rpi").stdout
        base = bases.Base(Path(out.strip()).parent)
        print(f"rpi base {'cached' if cached else 'built'}: {base.info.get('build_seconds')} s as recorded, "
              f"{base.info['size'] / 2**30:.2f} GiB")
        before = disk.sha256(base.image)
    with step("personalise node cabin"):
        cli(env, "image", "build", "cabin", "--site", site, "--out", work / "images", "--raw")
        image = work / "images/cabin-rpi.img"
        assert image.is_file()
    guest = None
    try:
        with step("start qemu-system-aarch64 -M virt"):
            guest = virt.start(image, work / "vm")
        started = time.monotonic()
        with step("first boot reports on the console", lambda: guest.console_tail(40)):
            found = first_boot_line(guest, BOOT_TIMEOUT)
        print(f"rpi: power-on to `{found.group(0).strip()}`: {time.monotonic() - started:.0f} s")
    finally:
        power_off(guest)
    with step("read the report and the boot partition from the card"):
        card = virt.flatten(guest)
        report_text = virt.read_root_file(card, virt.REPORT)
        fat = virt.fat_names(card)
        card.unlink()
    yield {"site": site, "base": base, "base_sha": before, "console": found.group(0), "report": report_text,
           "fat": fat, "guest": guest}


def test_the_first_boot_report_is_ok(rpi_boot):
    assert_first_boot_ok(rpi_boot)


def test_the_kernel_found_its_root_by_label_and_grew_it(rpi_boot):
    console = rpi_boot["guest"].console_text()
    assert "root=LABEL=meshstead-root" in console  # the command line is the image's cmdline.txt
    assert "the root file system was not grown" not in console


def test_the_seed_s_private_files_are_gone_from_the_boot_partition(rpi_boot):
    fat = rpi_boot["fat"]
    assert "meshstead/applied.json" in fat and "meshstead/seed.json" not in fat, fat
    assert not [name for name in fat if name.endswith("secrets.yml")], fat
    assert "config.txt" in fat and "bcm2711-rpi-4-b.dtb" in fat  # the Pi's own files stay


def test_personalising_never_changed_the_cached_base(rpi_boot):
    assert disk.sha256(rpi_boot["base"].image) == rpi_boot["base_sha"]
    rpi_boot["base"].verify()
