"""Helpers of the join tests: the hub's files, invites, raw clients, an impersonator."""

import base64
import contextlib
import datetime
import shutil
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from wizard import nodeside, sites
from wizard.fsutil import apply_writes
from wizard.identity import join as join_identity
from wizard.invites import issue, kit

service = nodeside.module("service")
client = nodeside.module("client")
wire = nodeside.module("wire")


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@dataclass
class Hub:
    site_dir: Path
    password: Path
    kit_dir: Path
    state_dir: Path
    cert: Path
    key: Path
    port: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def opened(self) -> sites.Opened:
        return sites.open_site(self.site_dir, str(self.password))

    def write_kit(self) -> None:
        shutil.rmtree(self.kit_dir, ignore_errors=True)
        for rel, data in kit.files(self.opened()).items():
            path = self.kit_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def invite(self, name: str, *, lifetime="1h", hub="hilltop", endpoints=None, now=None) -> str:
        """An invite made as `meshstead invite create` makes it, recorded in the site and its kit."""
        opened = self.opened()
        made = issue.create(opened.site, opened.site_secrets, name, "rpi4", ["dns"],
                            lifetime=issue.parse_lifetime(lifetime), hub=hub,
                            endpoints=endpoints or [self.endpoint], now=now)
        apply_writes(sites.plan(opened))
        self.write_kit()
        return made.text

    def site_key(self) -> bytes:
        return base64.b64decode(self.opened().site.settings.signing_public_key)


def make_hub(base_site, tmp_path: Path, port: int = 0) -> Hub:
    source, password = base_site
    site_dir = tmp_path / "site"
    shutil.copytree(source, site_dir)
    opened = sites.open_site(site_dir, str(password))
    cert, key = tmp_path / "join.crt", tmp_path / "join.key"
    cert.write_text(opened.site.nodes["hilltop"].public["join_tls_cert"])
    key.write_text(sites.node_secrets(opened, "hilltop")["join_tls_key"])
    key.chmod(0o600)
    hub = Hub(site_dir, password, tmp_path / "kit", tmp_path / "state", cert, key, port)
    hub.write_kit()
    return hub


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_exchange(port: int, payload: bytes) -> dict:
    """Talk to a hub as a client that skips the pin check: what the hub itself refuses."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw) as conn:
        conn.sendall(payload)
        return wire.receive(conn, wire.MAX_RESPONSE)


@contextlib.contextmanager


def impersonator(tmp_path: Path):
    """A TLS server with a join key of its own that records what it is sent."""
    public, private = join_identity.generate("evil.test.internal")
    cert, key = tmp_path / "evil.crt", tmp_path / "evil.key"
    cert.write_text(public["join_tls_cert"])
    key.write_text(private["join_tls_key"])
    context = service.server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    done = threading.Event()

    def run():
        try:
            sock, _ = listener.accept()
            sock.settimeout(10)
            with context.wrap_socket(sock, server_side=True) as conn:
                while chunk := conn.recv(65536):
                    received.append(chunk)
        except (OSError, ssl.SSLError):
            pass
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received, done
    finally:
        listener.close()
        thread.join(timeout=10)


def past(hours: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours)


def quick(**kwargs) -> dict:
    """Join options for tests: give up fast."""
    return {"deadline": 5, "first_delay": 0.05, **kwargs}
