"""The hub's join service: TLS 1.3 with the hub's join key, one request and
one answer per connection (docs/invites.md, "The join protocol").

A request is admitted only if every check passes, in this order, each refusal
with its own problem code: the request's form (request, too_large); the
invite's text, site and signature (malformed, version, site, signature); that
it names this hub (other_hub); expiry (expired); the site's revocation
(revoked); its single use (used); the name (name: a node's, or a removed
node's); the node's public identity (identity: also a removed node's keys); a
free index (full: never a removed node's). Nothing is recorded for a refusal."""

import base64
import datetime
import hmac
import ipaddress
import logging
import socket
import socketserver
import ssl
import time
from pathlib import Path

from . import addresses, identity, kit, removed, roster, token, wire
from .state import State

IO_TIMEOUT = 20  # seconds a connection may take to hand over its request
DRAIN_BYTES = 1024 * 1024  # read of an oversized request before closing, so the refusal arrives

log = logging.getLogger("meshstead_join")


class Refused(Exception):
    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


def refusal(problem: str, message: str) -> dict:
    return {"ok": False, "problem": problem, "message": message}


def timestamp(moment: float) -> str:
    return datetime.datetime.fromtimestamp(int(moment), datetime.UTC).isoformat().replace("+00:00", "Z")


def current(joined: dict, removals: dict) -> dict:
    """The nodes joined here that the site has not removed since (the hub keeps
    its record of every join; the kit says which were removed)."""
    return {name: node for name, node in joined.items()
            if not removed.was_removed(removals, name, node.get("node_index"))}


def public_node(node: dict) -> dict:
    """A node.yml without its references to private keys (a kit's nodes name
    them as '{{ vault_… }}'; a joining node has no vault)."""
    return {k: v for k, v in node.items() if k not in identity.PRIVATE_VARS}


class Hub:
    """The decisions; the server below only carries them."""

    def __init__(self, kit_dir: Path, state_dir: Path, cert_pem: bytes, clock=time.time, key_pem: bytes | None = None):
        self.kit_dir = Path(kit_dir)
        self.state = State(state_dir)
        self.pin = token.pin_of_cert(cert_pem)
        self.clock = clock
        self.key_pem = key_pem  # signs the roster; None: no roster is published

    @property
    def roster_path(self) -> Path:
        """Where the hub's roster is published, in its state: the roster
        applier copies it into the folder that carries it to every node."""
        return self.state.directory / roster.PUBLISHED_FILE

    def publish(self) -> None:
        """The roster after a change of the admitted nodes or the kit; a
        failure is logged, never refuses a join (the nodes learn later)."""
        if self.key_pem is None:
            return
        try:
            published = roster.publish(self.state.directory, self.kit_dir, self.key_pem, self.roster_path,
                                       self.clock())
        except (roster.RosterError, OSError) as exc:
            log.error("roster not published: %s", exc)
            return
        if published.changed:
            log.info("published roster serial %d (%d nodes)", published.serial, published.nodes)

    def start(self) -> kit.Kit:
        """Check the kit and prepare the state; remembers the kit's highest
        index, so a node the controller removes later never has its index given again."""
        loaded = kit.load(self.kit_dir)
        self.state.prepare()
        self.state.note_index(max([*(n["node_index"] for n in loaded.nodes.values()),
                                   *removed.indexes(loaded.removed)], default=0))
        # The kit may have changed what the roster says (the service restarts
        # with each new kit). A hub that admitted no node publishes too once
        # the site removed one: its roster carries the removal to the nodes
        # the controller does not reach.
        if self.roster_path.exists() or self.state.joined() or loaded.removed:
            self.publish()
        return loaded

    def answer(self, request: dict) -> dict:
        try:
            answer = self._admit(request, self.clock())
        except Refused as refused:
            return refusal(refused.problem, str(refused))
        self.publish()
        return answer

    def _admit(self, request: dict, now: float) -> dict:
        text, sent_identity = request.get("invite"), request.get("identity")
        if set(request) != {"invite", "identity"} or not isinstance(text, str) or not isinstance(sent_identity, dict):
            raise Refused("request", "the request is not {\"invite\": text, \"identity\": {public variables}}")
        try:
            site = kit.load(self.kit_dir)
        except kit.KitError as exc:
            log.error("kit unusable: %s", exc)
            raise Refused("kit", "this hub's kit is unusable; the site's admin must provision the hub again") from None
        try:
            invite = token.verify(text, site.signing_public_key)
        except token.InviteError as exc:
            raise Refused(exc.problem, str(exc)) from None
        if not hmac.compare_digest(invite.pin, self.pin):
            raise Refused("other_hub", f"invite {invite.id} names another hub (pin {token.b64url(invite.pin)}, "
                          f"this hub's is {token.b64url(self.pin)}); expected the hub the invite was made for")
        try:
            token.check_expiry(invite, now)
        except token.InviteError as exc:
            raise Refused(exc.problem, str(exc)) from None
        record = site.invites.get(invite.id) or {}
        if record.get("revoked"):
            raise Refused("revoked", f"invite {invite.id} (for {invite.name}) was revoked; expected an invite "
                          "that is not (make a new one)")
        if record.get("used_by"):
            raise Refused("used", f"invite {invite.id} was used by {record['used_by']}; an invite admits one node")
        with self.state.locked():
            used = self.state.used(invite.id)
            if used:
                raise Refused("used", f"invite {invite.id} was used by {used['node']} at {used['at']}; "
                              "an invite admits one node")
            joined = self.state.joined()
            if invite.name in site.nodes or invite.name in current(joined, site.removed):
                raise Refused("name", f"{invite.name!r} is already a node of the site; expected an invite "
                              "for a new name")
            if invite.name in site.removed or invite.name in joined:
                raise Refused("name", f"{invite.name!r} is the name of a node the site removed; a hub admits "
                              "no node by it (the site's admin may give it to a new node with `meshstead node "
                              "add`); expected an invite for a new name")
            try:
                public = identity.check(sent_identity)
            except identity.IdentityError as exc:
                raise Refused("identity", f"the node's identity: {exc}") from None
            found = removed.clash(public, site.removed)
            if found:
                raise Refused("identity", f"the node's identity: its {found[1]} is that of {found[0]}, a node "
                              "the site removed; a removed node's keys never come back")
            index = 1 + max([self.state.highest_index(), *(n["node_index"] for n in site.nodes.values()),
                             *(n["node_index"] for n in joined.values()), *removed.indexes(site.removed)])
            if index > addresses.max_nodes(site.ipv4_plan):
                raise Refused("full", f"the site's plan {site.ipv4_plan} holds no node index {index}; "
                              "expected a larger plan")
            node = {
                "node_name": invite.name,
                "node_index": index,
                "node_fqdn": f"{invite.name}.{site.site['site_domain']}",
                "node_platform": invite.platform,
                "node_roles": list(invite.roles),
                **addresses.node_addresses(site.ipv4_plan, site.ipv6_ula, index),
                **public,
            }
            self.state.record(node, invite.id, timestamp(now))
        peers = {name: public_node(n) for name, n in {**site.nodes, **current(joined, site.removed)}.items()}
        log.info("admitted %s (index %d) with invite %s", invite.name, index, invite.id)
        answer = {"ok": True, "node": node,
                  "site": {"vars": site.site, "secrets": site.secrets, "local": site.local, "hosts": site.hosts,
                           "nodes": peers}}
        if site.removed_vars:
            # The site's removed nodes: the node's firewall drops them, its roster checks refuse them.
            answer["site"]["removed"] = site.removed_vars
        if site.roles is not None:
            # The roles this hub was provisioned with: the node configures itself with them.
            answer["ansible"] = base64.b64encode(site.roles).decode("ascii")
        return answer


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file, key_file)
    return context


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        server: JoinServer = self.server
        self.request.settimeout(IO_TIMEOUT)
        try:
            with server.context.wrap_socket(self.request, server_side=True) as conn:
                self._serve(conn, server.hub)
        except (OSError, ssl.SSLError) as exc:
            log.info("connection from %s ended: %s", self.client_address[0], exc)

    def _serve(self, conn, hub: Hub) -> None:
        try:
            request = wire.receive(conn, wire.MAX_REQUEST)
        except wire.WireError as exc:
            problem = "too_large" if exc.problem == "too_large" else "request"
            log.info("refused %s: %s: %s", self.client_address[0], problem, exc)
            wire.send(conn, refusal(problem, f"the request was refused: {exc}"))
            if exc.problem == "too_large":
                self._drain(conn, exc.length)
            return
        response = hub.answer(request)
        if not response["ok"]:
            log.info("refused %s: %s: %s", self.client_address[0], response["problem"], response["message"])
        wire.send(conn, response)

    @staticmethod
    def _drain(conn, length: int) -> None:
        """Closing with unread data resets the connection, which can discard
        the refusal before the client reads it: read (a bounded part of) the rest."""
        left = min(length, DRAIN_BYTES)
        try:
            while left > 0:
                chunk = conn.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, ssl.SSLError):
            pass


class JoinServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], hub: Hub, context: ssl.SSLContext):
        self.address_family = socket.AF_INET6 if ipaddress.ip_address(listen[0]).version == 6 else socket.AF_INET
        self.hub = hub
        self.context = context
        super().__init__(listen, _Handler)


def serve(kit_dir: Path, state_dir: Path, cert_file: Path, key_file: Path, listen: tuple[str, int],
          clock=time.time) -> JoinServer:
    """A server ready to run (serve_forever); KitError, OSError or
    ssl.SSLError if the kit, the state or the key cannot be used."""
    hub = Hub(kit_dir, state_dir, Path(cert_file).read_bytes(), clock, key_pem=Path(key_file).read_bytes())
    hub.start()
    return JoinServer(listen, hub, server_context(cert_file, key_file))
