"""Files written into a FAT file system with mtools, as onto a card's boot
partition: into directories that are new and into ones the card has."""

import shutil
import subprocess

import pytest

from wizard.images.disk import copy_into_fat

pytestmark = pytest.mark.skipif(not shutil.which("mkfs.vfat") or not shutil.which("mcopy"),
                                reason="needs dosfstools and mtools")
ENV = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}


def _read(image, name) -> bytes:
    return subprocess.run(["mtype", "-i", str(image), f"::/{name}"], capture_output=True, env=ENV,
                          check=True).stdout


def test_files_go_into_new_and_existing_directories(tmp_path):
    image = tmp_path / "boot.vfat"
    subprocess.run(["mkfs.vfat", "-C", str(image), "8192"], capture_output=True, check=True)
    copy_into_fat(str(image), {"meshstead/site.json": b"{}\n", "meshstead/deep/a.txt": b"a"})
    # A second write onto the same card: the directories exist now.
    copy_into_fat(str(image), {"meshstead/invite.txt": b"meshstead1:x\n", "meshstead/site.json": b"{\"v\": 2}\n"})
    assert _read(image, "meshstead/invite.txt") == b"meshstead1:x\n"
    assert _read(image, "meshstead/site.json") == b"{\"v\": 2}\n"
    assert _read(image, "meshstead/deep/a.txt") == b"a"
