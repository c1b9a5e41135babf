"""A Raspberry Pi 5's image without a Pi 5 or Raspberry Pi OS: a stand-in
of Raspberry Pi OS Lite's layout, built from Debian bookworm arm64
(tests/vm/raspios_standin.py: archive.raspberrypi.com is out of reach here),
is personalised by `image build NODE --base`, and booted under
qemu-system-aarch64 -M virt (TCG) with the kernel, initrd and cmdline.txt on
its FAT partition, on a network with no route out. The first power-on runs
the firstrun.sh hook from cmdline.txt, which installs what the image lacks
from the card and reboots (QEMU runs with -no-reboot: it exits, and is
started again from the same card with the cmdline.txt now on it); the next
boot's first-boot program configures the node with the site's roles, and
its report says `ok`.

On demand only (marker `slow`; ~7 min to build the stand-in once, ~25 min to boot):
    flock /tmp/meshstead-heavy.lock .venv/bin/pytest -m slow tests/vm/test_raspios_image.py
"""

import time

import pytest

from tests.conftest import run_cli
from tests.vm import raspios_standin
from tests.vm.armboot import assert_first_boot_ok, cabled_site, first_boot_line, power_off, stepper, workspace
from wizard.images import disk, raspios, virt

pytestmark = [pytest.mark.vm, pytest.mark.slow]
TOOLS = ("mmdebstrap", "arch-test", "qemu-system-aarch64", "qemu-img", "mcopy", "debugfs", "e2fsck", "xz")
NAMES = (raspios_standin.KERNEL, raspios_standin.INITRD)
# Under TCG on 2 busy cores: generous, so that a slow host fails only a stuck boot.
HOOK_TIMEOUT = 1800
BOOT_TIMEOUT = 3600


step = stepper("raspios")


def wait_stopped(guest, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while guest.running() and time.monotonic() < deadline:
        time.sleep(2)
    return not guest.running()


@pytest.fixture(scope="module")
def raspios_boot(tmp_path_factory):
    work, env = workspace(tmp_path_factory, "raspios", TOOLS, "building the stand-in needs root (mmdebstrap)")
    with step("build or reuse the Raspberry Pi OS stand-in"):
        standin = raspios_standin.ensure(lambda _message: None)
        before = disk.sha256(standin)
    with step("make a site with a Pi 5 node"):
        site = cabled_site(work, env, "rpi5")
    with step("personalise node cabin from the stand-in (image build --base)"):
        made = run_cli("image", "build", "cabin", "--site", site, "--base", standin, "--out", work / "images",
                       "--raw", env=env, timeout=1800)
        assert made.returncode == 0, (made.stdout + made.stderr)[-2000:]
        print(made.stdout)
        image = work / "images/cabin-rpi5.img"
    guest = None
    try:
        with step("power on: the firstrun hook installs offline and reboots", lambda: guest.console_tail(40)):
            guest = virt.start(image, work / "vm", names=NAMES)
            started = time.monotonic()
            hooked = guest.wait_for(r"meshstead firstrun: (done|failed).*$", HOOK_TIMEOUT)
            assert hooked, "the hook reported nothing" + ("" if guest.running() else " (QEMU exited)")
            assert wait_stopped(guest, 300), "the hook did not reboot"
            assert hooked.group(0).startswith("meshstead firstrun: done"), hooked.group(0)
            hook_seconds = time.monotonic() - started
            print(f"raspios: power-on to the hook's reboot: {hook_seconds:.0f} s")
        with step("second boot: the first boot reports on the console", lambda: guest.console_tail(40)):
            guest = virt.restart(guest, names=NAMES)
            restarted = time.monotonic()
            found = first_boot_line(guest, BOOT_TIMEOUT)
            print(f"raspios: second power-on to `{found.group(0).strip()}`: {time.monotonic() - restarted:.0f} s "
                  f"(from the first power-on: {time.monotonic() - started:.0f} s)")
    finally:
        power_off(guest)
    with step("read the report, fstab and the boot partition from the card"):
        card = virt.flatten(guest)
        result = {"site": site, "standin": standin, "before": before, "console": found.group(0), "guest": guest,
                  "hooked": hooked.group(0), "report": virt.read_root_file(card, virt.REPORT),
                  "fstab": virt.read_root_file(card, "/etc/fstab"),
                  "hook_log": virt.read_root_file(card, "/var/log/meshstead-firstrun.log"),
                  "fat": virt.fat_names(card),
                  "cmdline": raspios.read_fat(f"{card}@@{virt.partitions(card)[0][0]}", "cmdline.txt")}
        card.unlink()
    yield result


def test_the_first_boot_report_is_ok(raspios_boot):
    assert_first_boot_ok(raspios_boot)


def test_the_hook_ran_once_and_left_raspberry_pi_os_s_cmdline_txt(raspios_boot):
    assert raspios_boot["hooked"].startswith("meshstead firstrun: done"), raspios_boot["hook_log"]
    assert raspios_boot["cmdline"].strip() == raspios_standin.CMDLINE
    fat = raspios_boot["fat"]
    assert "firstrun.sh" not in fat and not [n for n in fat if n.startswith("meshstead-setup")], fat
    assert "config.txt" in fat and raspios_standin.KERNEL in fat  # Raspberry Pi OS's own files stay


def test_the_seed_s_private_files_are_gone_from_the_boot_partition(raspios_boot):
    fat = raspios_boot["fat"]
    assert "meshstead/applied.json" in fat and "meshstead/seed.json" not in fat, fat
    assert not [name for name in fat if name.endswith("secrets.yml")], fat


def test_the_boot_partition_is_root_s_only_from_then_on(raspios_boot):
    line = next(x for x in raspios_boot["fstab"].splitlines() if " /boot/firmware " in x)
    assert "umask=0077" in line.split()[3], line


def test_personalising_never_changed_the_downloaded_image(raspios_boot):
    assert disk.sha256(raspios_boot["standin"]) == raspios_boot["before"]
