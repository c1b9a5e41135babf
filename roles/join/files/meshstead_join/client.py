"""The joining node's side: hand the invite and the node's public identity to
the hub the invite names, and take its answer (docs/invites.md).

The hub is trusted by the invite's pin alone: the client accepts any
certificate, computes the pin of its public key and sends nothing unless it is
the invite's. The node's private keys never leave it."""

import base64
import hmac
import socket
import ssl
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import pack, token, wire

DEADLINE = 120  # seconds to keep trying before giving up
FIRST_DELAY = 1.0  # seconds between rounds of tries, doubling
MAX_DELAY = 16.0
ATTEMPT_TIMEOUT = 10.0  # one connection: connect, handshake, request and answer


class JoinError(Exception):
    """Why a join did not happen: `problem` is one of the hub's codes, or
    impersonator, unreachable, answer (a hub answer that makes no sense), or an
    invite problem found before any network (malformed, version, expired)."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


class _NoAnswer(Exception):
    pass


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # No CA and no name: the invite's pin is the only trust, checked below.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer_pin(conn: ssl.SSLSocket) -> bytes:
    cert = x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))
    return token.pin(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))


def _exchange(endpoint: token.Endpoint, expected_pin: bytes, request: bytes, timeout: float) -> dict:
    address, port = endpoint
    where = token.format_endpoint(endpoint)
    try:
        with socket.create_connection((str(address), port), timeout=timeout) as raw, \
                _context().wrap_socket(raw) as conn:
            got = peer_pin(conn)
            if not hmac.compare_digest(got, expected_pin):
                raise JoinError("impersonator", f"the server at {where} does not hold the key of the invite's hub "
                                f"(pin {token.b64url(got)}, expected {token.b64url(expected_pin)}); nothing was "
                                "sent to it")
            conn.sendall(request)
            return wire.receive(conn, wire.MAX_RESPONSE)
    except (OSError, ssl.SSLError, ValueError) as exc:
        if isinstance(exc, JoinError):
            raise
        raise _NoAnswer(f"{where}: {exc}") from None


def _check_answer(answer: dict, invite: token.Invite, text: str, identity: dict) -> dict:
    if answer.get("ok") is False:
        problem, message = answer.get("problem"), answer.get("message")
        if not isinstance(problem, str) or not isinstance(message, str):
            raise JoinError("answer", "the hub refused the join without saying why")
        raise JoinError(problem, message)
    node, site = answer.get("node"), answer.get("site")
    if answer.get("ok") is not True or not isinstance(node, dict) or not isinstance(site, dict) \
            or not isinstance(site.get("vars"), dict):
        raise JoinError("answer", "the hub's answer is not {ok, node, site}")
    if node.get("node_name") != invite.name:
        raise JoinError("answer", f"the hub admitted {node.get('node_name')!r}, not {invite.name!r} as the invite "
                        "grants")
    # The node's seed pairs its private keys with the node.yml the hub sent.
    changed = sorted(name for name, value in identity.items() if node.get(name) != value) \
        if isinstance(identity, dict) else []
    if changed:
        raise JoinError("answer", f"the hub's answer does not carry the identity the node sent ({changed[0]})")
    roles = answer.get("ansible")
    if roles is not None:
        try:
            if not pack.looks_packed(base64.b64decode(roles, validate=True)):
                raise ValueError("not gzip")
        except (ValueError, TypeError) as exc:
            raise JoinError("answer", f"the hub's roles (ansible) are not a base64 ansible.tar.gz ({exc})") from None
    # The node learns the site's key from the hub: the invite must be that site's.
    try:
        token.verify(text, base64.b64decode(site["vars"].get("site_signing_public_key", "")))
    except (token.InviteError, ValueError, TypeError) as exc:
        raise JoinError("answer", f"the invite is not signed by the site the hub serves ({exc})") from None
    return answer


def roles(answer: dict) -> bytes | None:
    """The ansible.tar.gz the hub sent with its answer, if it did."""
    return base64.b64decode(answer["ansible"]) if answer.get("ansible") is not None else None


def join(text: str, identity: dict, now: float | None = None, *, site_key: bytes | None = None,
         deadline: float = DEADLINE, first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY,
         attempt_timeout: float = ATTEMPT_TIMEOUT, clock=time.monotonic, sleep=time.sleep) -> dict:
    """Join the site the invite is for; the hub's answer ({ok, node, site}).
    Raises JoinError. With the site's signing key known (`site_key`), the
    invite is verified before any network; otherwise its form and expiry are,
    and its signature against the key the hub answers with."""
    now = time.time() if now is None else now
    text = text.strip()
    try:
        invite = token.decode(text, site_key, now) if site_key else token.peek(text, now)
    except token.InviteError as exc:
        raise JoinError(exc.problem, str(exc)) from None
    request = wire.encode({"invite": text, "identity": identity})
    if len(request) - 4 > wire.MAX_REQUEST:
        raise JoinError("too_large", f"the identity makes a request of {len(request) - 4} bytes, more than the "
                        f"{wire.MAX_REQUEST} a hub reads")
    started = clock()
    delay = first_delay
    while True:
        for endpoint in invite.endpoints:
            left = deadline - (clock() - started)
            if left <= 0:
                break
            try:
                answer = _exchange(endpoint, invite.pin, request, min(attempt_timeout, left))
            except _NoAnswer:
                continue
            return _check_answer(answer, invite, text, identity)
        left = deadline - (clock() - started)
        if left <= 0:
            break
        sleep(min(delay, left))
        delay = min(delay * 2, max_delay)
    where = ", ".join(token.format_endpoint(e) for e in invite.endpoints)
    raise JoinError("unreachable", f"no hub answered at {where} for {round(clock() - started)} s; expected the "
                    "invite's hub to be on and reachable (check the node's network)")
