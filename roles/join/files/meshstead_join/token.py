"""The invite: a signed, expiring, single-use grant to join one site through
one hub, small enough for a QR code. The byte layout is in docs/invites.md.

Standard library and `cryptography` only, and nothing else of meshstead: the
node side ships this same file to read invites and pin the hub."""

import base64
import binascii
import datetime
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION = 1
PREFIX = f"meshstead{VERSION}:"
MAX_TEXT = 200  # what a phone reads from paper: QR version 10 at level M holds 213 bytes
JOIN_PORT = 4801  # the hubs' join service, unless an endpoint names another port

SITE_TAG_BYTES = 4
SECRET_BYTES = 16
PIN_BYTES = 16
SIGNATURE_BYTES = 64
MAX_ENDPOINTS_PER_FAMILY = 15  # a nibble each
# Codes on the wire: an index into these lists, so they only ever grow at the
# end (wizard/validate.py's PLATFORMS and NODE_ROLES, checked by a test).
PLATFORMS = ("rpi3", "rpi4", "rpi5", "pizero2w", "amd64")
ROLES = ("hub", "gateway", "dns")
OPENWRT_CODE = 0xFF  # then one length byte and "<target>/<profile>"

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_HEAD = struct.Struct(">B4s16sIB")  # version, site tag, secret, expiry, endpoint counts
# Everything but the name and the variable parts: version … counts, pin, roles, platform, signature.
FIXED_BYTES = _HEAD.size + PIN_BYTES + 2 + SIGNATURE_BYTES


class InviteError(ValueError):
    """Why an invite is refused. `problem` is one of: malformed, version,
    site, signature, expired, revoked (known only to the site), too_long, grant."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


Endpoint = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


@dataclass
class Invite:
    secret: bytes
    expires: int  # unix seconds
    endpoints: list[Endpoint]
    pin: bytes  # of the hub's join certificate
    name: str
    platform: str
    roles: list[str] = field(default_factory=list)
    site_tag: bytes = b""

    @property
    def id(self) -> str:
        return invite_id(self.secret)

    @property
    def expires_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.expires, datetime.UTC)


def invite_id(secret: bytes) -> str:
    """Names an invite in lists and revocations without revealing its secret."""
    return base64.b32encode(hashlib.sha256(secret).digest()[:5]).decode().lower()


def site_tag(signing_public_key: bytes) -> bytes:
    return hashlib.sha256(signing_public_key).digest()[:SITE_TAG_BYTES]


def pin(spki_der: bytes) -> bytes:
    """The pin of a join certificate: the first 16 bytes of SHA-256 of its SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).digest()[:PIN_BYTES]


def pin_of_cert(cert_pem: bytes) -> bytes:
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(cert_pem)
    return pin(cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Strict: only the alphabet, and only the one canonical spelling of the
    bytes (a changed unused bit in the last character is a changed invite)."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return data


def _platform_bytes(platform: str) -> bytes:
    if platform in PLATFORMS:
        return bytes([PLATFORMS.index(platform)])
    if platform.startswith("openwrt:"):
        rest = platform.removeprefix("openwrt:").encode("ascii")
        if len(rest) <= 255:
            return bytes([OPENWRT_CODE, len(rest)]) + rest
    raise InviteError("grant", f"platform {platform!r} has no invite code; expected one of "
                      f"{', '.join(PLATFORMS)} or openwrt:<target>/<profile>")


def _grant_bytes(invite: Invite) -> bytes:
    if not _LABEL.match(invite.name):
        raise InviteError("grant", f"name {invite.name!r} is not a DNS label")
    unknown = [r for r in invite.roles if r not in ROLES]
    if unknown:
        raise InviteError("grant", f"role {unknown[0]!r} has no invite code; expected any of {', '.join(ROLES)}")
    mask = sum(1 << ROLES.index(r) for r in set(invite.roles))
    return bytes([mask]) + _platform_bytes(invite.platform) + invite.name.encode("ascii")


def _endpoint_bytes(endpoints: list[Endpoint]) -> tuple[int, bytes]:
    v4 = [e for e in endpoints if e[0].version == 4]
    v6 = [e for e in endpoints if e[0].version == 6]
    if not endpoints or len(v4) > MAX_ENDPOINTS_PER_FAMILY or len(v6) > MAX_ENDPOINTS_PER_FAMILY:
        raise InviteError("grant", f"expected 1 to {MAX_ENDPOINTS_PER_FAMILY} endpoints per address family")
    body = b""
    for address, port in v4 + v6:
        if not 1 <= port <= 65535:
            raise InviteError("grant", f"port {port} of {address} is not 1-65535")
        body += address.packed + struct.pack(">H", port)
    return len(v4) << 4 | len(v6), body


def encode(invite: Invite, signing_key: Ed25519PrivateKey) -> str:
    """The invite as text, signed by the site's key; InviteError if it cannot be one."""
    if len(invite.secret) != SECRET_BYTES or len(invite.pin) != PIN_BYTES:
        raise InviteError("grant", f"expected a {SECRET_BYTES}-byte secret and a {PIN_BYTES}-byte pin")
    if not 0 < invite.expires < 2**32:
        raise InviteError("grant", "expiry is not a time between 1970 and 2106")
    public = signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    counts, endpoints = _endpoint_bytes(invite.endpoints)
    body = (_HEAD.pack(VERSION, site_tag(public), invite.secret, invite.expires, counts) + endpoints
            + invite.pin + _grant_bytes(invite))
    text = PREFIX + b64url(body + signing_key.sign(body))
    if len(text) > MAX_TEXT:
        fits = max_name_length(invite.endpoints, invite.platform)
        raise InviteError("too_long", f"the invite would be {len(text)} characters, more than the {MAX_TEXT} "
                          f"a QR code read from paper holds; shorten the name to at most {fits} characters"
                          if fits > 0 else f"the invite would be {len(text)} characters, more than {MAX_TEXT}; "
                          "give fewer endpoints (or a shorter platform)")
    return text


def max_name_length(endpoints: list[Endpoint], platform: str) -> int:
    """The longest name an invite with these endpoints and platform may grant."""
    budget = (MAX_TEXT - len(PREFIX)) * 6 // 8
    variable = sum(len(a.packed) + 2 for a, _ in endpoints) + len(_platform_bytes(platform)) - 1
    return min(63, budget - FIXED_BYTES - variable)


def _problem_with_prefix(text: str) -> InviteError:
    match = re.match(r"^meshstead(\d+):", text)
    if match:
        return InviteError("version", f"invite format version {match.group(1)} is not one this meshstead reads "
                           f"(it reads version {VERSION}); expected an invite starting with {PREFIX}")
    return InviteError("malformed", f"not a meshstead invite; expected text starting with {PREFIX}")


def decode(text: str, signing_public_key: bytes, now: float) -> Invite:
    """Verify an invite for the site whose signing key is given, at time `now`.
    Checks in an order that makes each refusal precise: form, site, signature,
    then (with the grant known to be the site's) expiry."""
    invite = verify(text, signing_public_key)
    check_expiry(invite, now)
    return invite


def verify(text: str, signing_public_key: bytes) -> Invite:
    """Everything decode checks but the expiry: a hub asks first whether an
    invite is its own, then whether it is still valid."""
    data = _unpack(text)
    tag = data[1:1 + SITE_TAG_BYTES]
    if tag != site_tag(signing_public_key):
        raise InviteError("site", "the invite is for another site (its site tag is not this site's); "
                          "expected an invite made for this site")
    body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    try:
        Ed25519PublicKey.from_public_bytes(signing_public_key).verify(signature, body)
    except InvalidSignature:
        raise InviteError("signature", "the invite was changed (its signature does not match the site's "
                          "signing key); expected it exactly as it was made") from None
    return _fields(data)


def peek(text: str, now: float) -> Invite:
    """The invite's fields and expiry, without the site's key (a node that has
    not met the site yet): nothing it says is trusted until verify()."""
    invite = _fields(_unpack(text))
    check_expiry(invite, now)
    return invite


def check_expiry(invite: Invite, now: float) -> None:
    if invite.expires <= now:
        when = invite.expires_at.isoformat().replace("+00:00", "Z")
        raise InviteError("expired", f"the invite expired at {when} ({_ago(now - invite.expires)} ago); "
                          "expected an unexpired invite (make a new one)")


def _unpack(text: str) -> bytes:
    """The bytes of an invite's text, checked for form and version only."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise _problem_with_prefix(text)
    try:
        data = b64url_decode(text[len(PREFIX):])
    except (ValueError, binascii.Error):
        raise InviteError("malformed", "the invite's text is damaged (not base64url after "
                          f"{PREFIX}); expected it exactly as it was made") from None
    if len(data) < FIXED_BYTES + 1 + 6:
        raise InviteError("malformed", f"the invite is truncated ({len(data)} bytes); expected it whole")
    if data[0] != VERSION:
        raise InviteError("version", f"invite format version {data[0]} is not one this meshstead reads "
                          f"(it reads version {VERSION})")
    return data


def _fields(data: bytes) -> Invite:
    _version, tag, secret, expires, counts = _HEAD.unpack_from(data)
    invite = _parse(data[:-SIGNATURE_BYTES], secret, expires, counts)
    invite.site_tag = tag
    return invite


def _parse(body: bytes, secret: bytes, expires: int, counts: int) -> Invite:
    """The signed body's fields. Signed by the site, so a failure here is a
    writer that does not follow docs/invites.md, not a damaged invite."""
    at = _HEAD.size
    endpoints: list[Endpoint] = []
    try:
        for family, size in ((4, 4), (6, 16)):
            for _ in range(counts >> 4 if family == 4 else counts & 0x0F):
                address = ipaddress.ip_address(body[at:at + size])
                (port,) = struct.unpack_from(">H", body, at + size)
                endpoints.append((address, port))
                at += size + 2
        hub_pin = body[at:at + PIN_BYTES]
        mask, code = body[at + PIN_BYTES], body[at + PIN_BYTES + 1]
        at += PIN_BYTES + 2
        if code == OPENWRT_CODE:
            length = body[at]
            platform = "openwrt:" + body[at + 1:at + 1 + length].decode("ascii")
            at += 1 + length
        else:
            platform = PLATFORMS[code]
        name = body[at:].decode("ascii")
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        raise InviteError("malformed", "the invite's fields do not follow format version 1") from None
    if not endpoints or len(hub_pin) != PIN_BYTES or not _LABEL.match(name) or mask >> len(ROLES):
        raise InviteError("malformed", "the invite's fields do not follow format version 1")
    roles = [r for i, r in enumerate(ROLES) if mask >> i & 1]
    return Invite(secret, expires, endpoints, hub_pin, name, platform, roles)


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def format_endpoint(endpoint: Endpoint) -> str:
    address, port = endpoint
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
