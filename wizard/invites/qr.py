"""An invite as a QR code (terminal, PNG, SVG), and back from an image with zbarimg."""

import io
import shutil
import subprocess
from pathlib import Path

import qrcode
from qrcode.image.pure import PyPNGImage
from qrcode.image.svg import SvgPathImage

from ..errors import MeshsteadError
from .token import PREFIX, InviteError

# Level M survives a smudged or creased paper; version 10 (57 modules) is
# still read from a phone screen or a printed page at arm's length.
MAX_VERSION = 10
ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")  # PNG, JPEG, GIF, BMP


def code(text: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECTION, box_size=8, border=4)
    qr.add_data(text)
    qr.make(fit=True)
    if qr.version > MAX_VERSION:
        raise MeshsteadError("name", f"the invite needs a QR code of version {qr.version}, more than "
                             f"{MAX_VERSION}; expected a shorter name or fewer endpoints")
    return qr


def png(qr: qrcode.QRCode) -> bytes:
    buffer = io.BytesIO()
    qr.make_image(image_factory=PyPNGImage).save(buffer)
    return buffer.getvalue()


def svg(qr: qrcode.QRCode) -> bytes:
    return qr.make_image(image_factory=SvgPathImage).to_string(encoding="unicode").encode()


def terminal(qr: qrcode.QRCode) -> str:
    """Half-block characters, dark on light as a camera expects."""
    buffer = io.StringIO()
    qr.print_ascii(out=buffer, invert=True)
    return buffer.getvalue()


def is_image(data: bytes) -> bool:
    return data.startswith(IMAGE_MAGIC)


def read_image(path: Path) -> str:
    """The text of the one invite in a QR image, decoded by zbarimg (zbar-tools).
    An image that holds no invite is an invalid invite (InviteError); an image
    that cannot be read at all is the user's error (MeshsteadError)."""
    if shutil.which("zbarimg") is None:
        raise MeshsteadError("file", "zbarimg is not installed; expected the Debian package zbar-tools "
                             "to read a QR image (or give the invite's .txt)")
    result = subprocess.run(["zbarimg", "--raw", "-q", "-Sdisable", "-Sqrcode.enable", str(path)],
                            capture_output=True, text=True, timeout=60)
    if result.returncode == 4 or (result.returncode == 0 and not result.stdout.strip()):
        raise InviteError("malformed", f"{path} holds no QR code zbarimg can read; expected an invite's QR image")
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise MeshsteadError("file", f"zbarimg cannot read {path} ({detail}); expected a PNG or JPEG image")
    texts = result.stdout.strip().splitlines()
    invites = [t for t in texts if t.startswith(PREFIX[:len("meshstead")])]
    if not invites:
        raise InviteError("malformed", f"{path} is a QR image that is not an invite; expected one made by "
                          "`meshstead invite create`")
    if len(invites) > 1:
        raise InviteError("malformed", f"{path} holds {len(invites)} invites; expected one")
    return invites[0]
