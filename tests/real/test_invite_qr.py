"""The invite's QR image, read by a real decoder: zbarimg (Debian's zbar-tools)."""

import io
import shutil
import subprocess

import pytest
import qrcode
from qrcode.image.pure import PyPNGImage
from realkit import need

pytestmark = pytest.mark.real


@pytest.fixture
def site(real_site, tmp_path):
    """A copy of the session's site (same vault password): its invites stay here."""
    need("zbarimg")
    copy = tmp_path / "site"
    shutil.copytree(real_site.directory, copy)
    return real_site, copy


def test_zbarimg_reads_the_png_back_into_the_exact_text(site, tmp_path):
    real_site, directory = site
    out = tmp_path / "out"
    real_site.cli("invite", "create", "garden", "--platform", "rpi4", "--role", "dns", "--site", str(directory),
                  "--out", str(out))
    text = (out / "garden-invite.txt").read_text().strip()
    decoded = subprocess.run(["zbarimg", "--raw", "-q", str(out / "garden-invite.png")], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert decoded.rstrip("\n") == text
    checked = real_site.cli("invite", "check", "--file", str(out / "garden-invite.png"), "--site", str(directory))
    assert "garden" in checked.stdout


def test_an_image_without_an_invite_is_refused_in_one_line(site, tmp_path):
    real_site, directory = site
    other = tmp_path / "other.png"
    buffer = io.BytesIO()
    qrcode.make("https://example.org/", image_factory=PyPNGImage).save(buffer)
    other.write_bytes(buffer.getvalue())
    blank = tmp_path / "blank.png"
    buffer = io.BytesIO()
    qrcode.make("x", image_factory=PyPNGImage, box_size=1, border=40).save(buffer)  # too small to read
    blank.write_bytes(buffer.getvalue())
    for image, problem in ((other, "is a QR image that is not an invite"), (blank, "holds no QR code")):
        result = real_site.cli("invite", "check", "--file", str(image), "--site", str(directory), check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and problem in lines[0], result.stderr
