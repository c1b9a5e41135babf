"""python3 -m meshstead_join serve|join|check|export|pack|roster|phone: the hub's
service, the joining node's client, the check of a hub's files before they
replace live ones, the hub's record for `node import`, the packer of the roles
for a hub's kit, the hub's signed roster (publish, check), and the hub's
window for phones (open, watch, close, list, remove), as commands. Exit 0 on
success, 1 with one line on stderr when the join is refused or cannot be made
(or a file does not check), 2 for usage errors."""

import argparse
import base64
import ipaddress
import json
import logging
import os
import re
import ssl
import sys
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import applier, client, kit, ownkeys, pack, phones, roster, seed, service, token
from .state import State, write_atomic

PROG = "meshstead-join"
STATE = Path("/var/lib/meshstead/join")  # the node's own keys and its last answer, root only
HUB_STATE = Path("/var/lib/meshstead/join-hub")  # a hub's record of the nodes it admitted (the join role's)
SITE = Path("/var/lib/meshstead/site")  # the node's inventory and roles (the roster role's)
APPLIED = Path("/var/lib/meshstead/roster")  # what the roster applier took


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT or [IPv6]:PORT; the join port when PORT is left out."""
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text) or re.fullmatch(r"([0-9.]+)(?::(\d+))?", text)
    try:
        address = ipaddress.ip_address(match.group(1)) if match else None
    except ValueError:
        address = None
    port = int(match.group(2)) if match and match.group(2) else token.JOIN_PORT
    if address is None or not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT or [IPv6]:PORT")
    return str(address), port


def _serve(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        server = service.serve(args.kit, args.state, args.cert, args.key, args.listen)
    except (kit.KitError, OSError, ssl.SSLError, ValueError) as exc:
        print(f"{PROG}: cannot serve joins: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    logging.info("serving joins at %s", token.format_endpoint((ipaddress.ip_address(host), port)))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _site_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise argparse.ArgumentTypeError("expected the site's Ed25519 public key in base64 (site_signing_public_key)")
    return key


def _check_pin(what: str, got: bytes, expected: str | None) -> None:
    if expected is not None and got != token.b64url_decode(expected):
        raise ValueError(f"{what} has pin {token.b64url(got)}, expected {expected} (join_pin)")


def _check(args) -> int:
    """What a hub's service would load, checked without serving: the kit, the
    join certificate and key (each against the pin the site's invites name,
    and against each other)."""
    found = []
    try:
        if args.pin is not None:
            token.b64url_decode(args.pin)
        if args.kit:
            loaded = kit.load(args.kit)
            found.append(f"the kit of site {loaded.site['site_name']} ({len(loaded.nodes)} nodes, "
                         f"{len(loaded.invites)} invites)")
        if args.cert:
            _check_pin(f"the certificate {args.cert}", token.pin_of_cert(args.cert.read_bytes()), args.pin)
            found.append("the certificate")
        if args.key:
            key = serialization.load_pem_private_key(args.key.read_bytes(), None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{args.key} is not an Ed25519 private key")
            spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            _check_pin(f"the key {args.key}", token.pin(spki), args.pin)
            found.append("the key")
        if args.cert and args.key:
            service.server_context(args.cert, args.key)  # the pair TLS would serve
    except (kit.KitError, OSError, ssl.SSLError, ValueError, TypeError) as exc:
        print(f"{PROG}: check: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: check: {', '.join(found) or 'nothing given'}: ok", file=sys.stderr)
    return 0


def _identity(args, text: str):
    """(public identity to send, private keys or None): from --identity, or
    the node's own keys, made once in the state directory."""
    if args.identity:
        return yaml.safe_load(args.identity.read_text(encoding="utf-8")), None
    # A malformed or expired invite (or, with the site's key, another site's) makes no keys.
    invite = token.decode(text.strip(), args.site_key, time.time()) if args.site_key \
        else token.peek(text.strip(), time.time())
    public, private, made = ownkeys.load_or_make(args.state, invite.name)
    where = args.state / ownkeys.KEYS_FILE
    print(f"{'made the node' if made else 'using the node'}'s own keys ({where})", file=sys.stderr)
    return public, private


def _join(args) -> int:
    try:
        text = args.file.read_text(encoding="utf-8") if args.file else args.invite
        # Read before the join: a hub answers a join once.
        tarball = args.ansible.read_bytes() if args.ansible else None
        local = ownkeys.read_local(args.local) if args.local else None
        identity, private = _identity(args, text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"{PROG}: cannot read the invite, the identity, the roles, the local settings or the node's keys: "
              f"{exc}", file=sys.stderr)
        return 2
    except token.InviteError as exc:
        print(f"{PROG}: {exc.problem}: {exc}", file=sys.stderr)
        return 1
    except ownkeys.KeysError as exc:
        print(f"{PROG}: keys: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # the local settings (after the errors above, which are ValueErrors too)
        print(f"{PROG}: local: {exc}", file=sys.stderr)
        return 2
    try:
        answer = client.join(text, identity, deadline=args.deadline, site_key=args.site_key)
    except client.JoinError as exc:
        print(f"{PROG}: {exc.problem}: {exc}", file=sys.stderr)
        return 1
    data = (json.dumps(answer, indent=1, ensure_ascii=False) + "\n").encode()
    node = answer["node"]
    print(f"joined as {node['node_name']} (index {node['node_index']}, {node['node_mesh_ipv4']})", file=sys.stderr)
    if private is not None:
        # Kept before anything else: the hub answers a join once.
        write_atomic(args.state / "answer.json", data, 0o600)
        ownkeys.keep_local(args.state, local)
        seed_dir = args.seed or args.state / "seed"
        tarball = tarball or client.roles(answer)
        try:
            seed.write(seed_dir, answer, private, tarball, args.python, local)
        except OSError as exc:
            print(f"{PROG}: seed: cannot write the seed to {seed_dir}: {exc} (the answer is in "
                  f"{args.state / 'answer.json'})", file=sys.stderr)
            return 1
        print(f"wrote the seed to {seed_dir}" + ("" if tarball else " (without ansible.tar.gz: the hub sent no "
                                                  "roles)"), file=sys.stderr)
    if args.out:
        write_atomic(args.out, data, 0o600)  # the answer holds the site's network-wide secrets
    elif private is None:
        os.write(sys.stdout.fileno(), data)
    return 0


def _export(args) -> int:
    """A hub's record of the nodes it admitted, as JSON, for `meshstead node import`."""
    state = State(args.state)
    if not state.joined_dir.is_dir():
        print(f"{PROG}: export: {args.state} holds no join service's state", file=sys.stderr)
        return 1
    try:
        print(json.dumps(state.export(), indent=1, sort_keys=True))
    except (OSError, yaml.YAMLError) as exc:
        print(f"{PROG}: export: {exc}", file=sys.stderr)
        return 1
    return 0


def _pack(args) -> int:
    """The roles of an Ansible home as ansible.tar.gz; prints its sha256."""
    try:
        data = pack.pack(args.home)
        write_atomic(args.out, data, 0o644)
    except OSError as exc:
        print(f"{PROG}: pack: {exc}", file=sys.stderr)
        return 1
    print(pack.digest(data))
    return 0


def _roster_call(call):
    """(what `call` returns, 0), or (None, 1) after one line on stderr."""
    try:
        return call(), 0
    except roster.RosterError as exc:
        print(f"{PROG}: roster: {exc.problem}: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"{PROG}: roster: {exc}", file=sys.stderr)
    return None, 1


def _roster_publish(args) -> int:
    """The hub's roster of the nodes it admitted, signed with its join key."""
    published, failed = _roster_call(
        lambda: roster.publish(args.state, args.kit, args.key.read_bytes(), args.out, time.time()))
    if failed:
        return failed
    how = "changed" if published.changed else "unchanged since the last publish"
    print(f"roster of {published.hub}: serial {published.serial}, {published.nodes} nodes ({how}), written to "
          f"{args.out}", file=sys.stderr)
    return 0


def _roster_summary(checked: roster.Checked) -> list[str]:
    lines = [f"roster of {checked.hub}, serial {checked.serial}, issued {checked.issued}: {len(checked.added)} to "
             f"add, {len(checked.known)} known, {len(checked.refused)} refused"]
    lines += [f"add {name}: index {entry['node_index']}, {entry['node_mesh_ipv4']}, {entry['node_platform']}"
              + (f", roles {' '.join(entry['node_roles'])}" if entry["node_roles"] else "")
              for name, entry in checked.added.items()]
    lines += [f"known {name}" for name in checked.known]
    lines += [f"refused {name}: {reason}" for name, reason in checked.refused.items()]
    lines += [f"removed {name}: index {entry['node_index']} at {entry['at']}"
              for name, entry in checked.removed.items()]
    return lines


def _roster_check(args) -> int:
    """What a node would take from a roster: exit 0 and a summary, or 1 and
    the problem. Refused entries are listed; they do not refuse the roster."""
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"{PROG}: roster: cannot read the roster: {exc}", file=sys.stderr)
        return 2
    try:
        checked = roster.check(data, roster.load_inventory(args.inventory), args.after)
    except roster.RosterError as exc:
        print(f"{PROG}: roster: {exc.problem}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(_roster_summary(checked)))
    return 0


def _roster_apply(args) -> int:
    """Take the rosters of the folder; run the roles when they change what this node knows."""
    hub_roster = (args.hub_roster, args.hub) if args.hub_roster else None
    try:
        own = ownkeys.own_vars(args.own)
    except ownkeys.KeysError as exc:
        print(f"{PROG}: roster: keys: {exc}", file=sys.stderr)
        return 1
    outcome, failed = _roster_call(
        lambda: applier.apply(args.site, args.state, args.folder, args.node, args.ansible_playbook, hub_roster, own))
    if failed:
        return failed
    for line in outcome.messages:
        print(line, file=sys.stderr)
    for hub, serial in sorted(outcome.taken.items()):
        print(f"took the roster of {hub}, serial {serial}")
    if outcome.added or outcome.dropped:
        print(f"nodes from rosters: added {', '.join(outcome.added) or 'none'}; "
              f"dropped {', '.join(outcome.dropped) or 'none'}")
    if outcome.removed:
        print(f"removed by rosters: {', '.join(outcome.removed)} (the roles run without them)")
    if outcome.ran and outcome.returncode != 0:
        print(f"{PROG}: roster: the roles failed (exit status {outcome.returncode}; see "
              f"{args.state / applier.LOG_FILE}); the rosters are taken at the next try", file=sys.stderr)
        return 1
    print("applied the roles" if outcome.ran else "nothing to apply")
    return 0


def _serial(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a serial (a whole number, 0 or more)")
    return int(text)


def _roster_commands(commands) -> None:
    parser = commands.add_parser("roster", help="publish a hub's signed roster of the nodes it admitted, or check "
                                 "one against a node's inventory")
    actions = parser.add_subparsers(dest="roster_command", required=True)
    publish = actions.add_parser("publish", help="write this hub's roster, signed with its join key")
    publish.add_argument("--state", type=Path, default=HUB_STATE,
                         help=f"the hub's record of joins (default {HUB_STATE})")
    publish.add_argument("--kit", type=Path, required=True, help="the hub's kit: the site and the hub's name")
    publish.add_argument("--key", type=Path, required=True, help="the hub's join key (join_tls_key)")
    publish.add_argument("--out", type=Path, required=True, help="where to write the roster (JSON, mode 0644)")
    checker = actions.add_parser("check", help="check a roster against a node's inventory, changing nothing")
    checker.add_argument("file", type=Path, help="the roster file")
    checker.add_argument("--inventory", type=Path, required=True,
                         help="the node's inventory: a site directory, a kit or a seed")
    checker.add_argument("--after", type=_serial, default=0,
                         help="the serial last accepted from the roster's hub (default 0: none)")
    apply = actions.add_parser("apply", help="take the rosters of the folder and apply the roles with the nodes "
                               "they add (the meshstead-roster service)")
    apply.add_argument("--folder", type=Path, required=True, help="the folder that carries roster-<hub>.json")
    apply.add_argument("--node", required=True, help="this node's name")
    apply.add_argument("--site", type=Path, default=SITE,
                       help=f"the node's inventory/ and ansible/ (default {SITE})")
    apply.add_argument("--state", type=Path, default=APPLIED, help=f"what was taken (default {APPLIED})")
    apply.add_argument("--ansible-playbook", default=seed.ANSIBLE_PLAYBOOK,
                       help=f"the ansible-playbook to run the roles with (default {seed.ANSIBLE_PLAYBOOK})")
    apply.add_argument("--hub-roster", type=Path,
                       help="on a hub: its own roster (the join service's), copied into the folder first")
    apply.add_argument("--hub", help="on a hub: its name, with --hub-roster")
    apply.add_argument("--own", type=Path, default=STATE,
                       help=f"where a node that joined by invite keeps its own keys and settings (default {STATE})")


def _phone(args) -> int:
    """A hub's window for phones (phones.py): one line on stderr for a refusal,
    JSON on stdout for `open` and `list`."""
    state = phones.Phones(args.state)
    try:
        if args.phone_command == "list":
            window = state.window()
            print(json.dumps({"phones": state.record(), "window": window and {
                "opened": phones.timestamp(window["opened"]), "until": phones.timestamp(window["until"]),
                "phones": window["phones"], "accepted": window["accepted"], "folders": window["folders"],
                "open": state.is_open(window, time.time())}}, indent=1, sort_keys=True))
            return 0
        if args.phone_command == "close":
            closed = state.close(time.time())
            print("closed the window for phones" if closed else "no window for phones was open", file=sys.stderr)
            return 0
        if args.phone_command == "watch" and not state.is_open(state.window(), time.time()):
            print("no window for phones is open", file=sys.stderr)  # a boot after the window: nothing to do
            return 0
        api = phones.Syncthing(args.config)
        if args.phone_command == "open":
            opened = state.open(api, args.seconds, args.phones, args.folder or [phones.CARRIER], time.time(),
                                phones.site_devices(args.kit, args.hub_state))
            print(json.dumps(opened, indent=1, sort_keys=True))
            print(f"phones may join until {opened['until']} (up to {args.phones}; "
                  f"{', '.join(opened['folders'])})", file=sys.stderr)
            return 0
        if args.phone_command == "remove":
            if not phones.DEVICE_ID.match(args.device):
                print(f"{PROG}: phone: device: {args.device!r} is not a Syncthing device ID; expected "
                      "XXXXXXX-XXXXXXX-… (8 groups of 7)", file=sys.stderr)
                return 2
            removed = state.remove(api, args.device)
            print(f"removed {args.device}" if removed else f"{args.device} is no phone of this hub",
                  file=sys.stderr)
            return 0 if removed else 1
        return state.watch(api, log=lambda line: print(line, file=sys.stderr, flush=True))
    except phones.PhoneError as exc:
        print(f"{PROG}: phone: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: phone: {exc}", file=sys.stderr)
        return 1


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _phone_commands(commands) -> None:
    parser = commands.add_parser("phone", help="a hub's window in which phones (Syncthing devices) are let in "
                                 "and given the carrier folder")
    actions = parser.add_subparsers(dest="phone_command", required=True)
    opener = actions.add_parser("open", help="open a window: the devices that try to connect inside it are "
                                "accepted (the watcher, meshstead-phones.service, does it)")
    opener.add_argument("--seconds", type=_positive, required=True, help="how long, by this node's clock")
    opener.add_argument("--phones", type=_positive, default=1, help="how many phones it lets in (default 1)")
    opener.add_argument("--folder", action="append", help=f"a folder to share (repeatable; default {phones.CARRIER})")
    opener.add_argument("--kit", type=Path, default=phones.KIT, help="the hub's kit: its nodes are never phones")
    opener.add_argument("--hub-state", type=Path, default=HUB_STATE,
                        help="the hub's record of joins: its nodes are never phones")
    actions.add_parser("watch", help="accept phones until the window closes")
    actions.add_parser("close", help="close the window now")
    actions.add_parser("list", help="the phones accepted here and the last window (JSON)")
    remover = actions.add_parser("remove", help="take a phone out of Syncthing and of the record")
    remover.add_argument("device", help="its Syncthing device ID")
    for action in actions.choices.values():
        action.add_argument("--state", type=Path, default=phones.STATE,
                            help=f"the record of phones and windows (default {phones.STATE})")
        action.add_argument("--config", type=Path, default=phones.SYNCTHING_CONFIG,
                            help=f"Syncthing's config.xml: its API address and key (default {phones.SYNCTHING_CONFIG})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Join a meshstead site by invite.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve joins on a hub")
    serve.add_argument("--kit", type=Path, required=True, help="the kit the controller gave this hub")
    serve.add_argument("--state", type=Path, required=True, help="this hub's record of joins")
    serve.add_argument("--cert", type=Path, required=True, help="the hub's join certificate (join_tls_cert)")
    serve.add_argument("--key", type=Path, required=True, help="its private key (join_tls_key)")
    serve.add_argument("--listen", type=parse_listen, default=("::", token.JOIN_PORT),
                       help=f"ADDR:PORT or [IPv6]:PORT (default [::]:{token.JOIN_PORT})")
    join = commands.add_parser("join", help="join the site an invite is for")
    source = join.add_mutually_exclusive_group(required=True)
    source.add_argument("invite", nargs="?", help="the invite's text")
    source.add_argument("--file", type=Path, help="a file holding the invite's text")
    join.add_argument("--identity", type=Path,
                      help="YAML of the node's public identity variables (default: the node makes its own keys "
                           "and keeps them in --state)")
    join.add_argument("--state", type=Path, default=STATE,
                      help=f"where the node keeps its own keys and the answer (default {STATE})")
    join.add_argument("--seed", type=Path,
                      help="write the seed (docs/seed.md's meshstead/ directory) here (default STATE/seed)")
    join.add_argument("--ansible", type=Path,
                      help="an ansible.tar.gz to put into the seed instead of the roles the hub sends")
    join.add_argument("--local", type=Path,
                      help="YAML of the node's own settings for the seed (host_vars/<node>/local.yml), e.g. "
                           "meshstead_mesh_interface: eth0 for a node on a cable")
    join.add_argument("--python", default=seed.ANSIBLE_PYTHON,
                      help=f"the Python the seed's Ansible runs modules with (default {seed.ANSIBLE_PYTHON})")
    join.add_argument("--site-key", type=_site_key,
                      help="the site's signing public key (base64, site_signing_public_key): the invite is "
                           "checked against it before any network")
    join.add_argument("--deadline", type=float, default=client.DEADLINE,
                      help=f"seconds to keep trying (default {client.DEADLINE})")
    join.add_argument("--out", type=Path, help="write the answer (JSON, mode 0600) here instead of stdout")
    check = commands.add_parser("check", help="check a hub's kit, join certificate and key without serving")
    check.add_argument("--kit", type=Path, help="a kit (docs/invites.md)")
    check.add_argument("--cert", type=Path, help="the hub's join certificate (join_tls_cert)")
    check.add_argument("--key", type=Path, help="its private key (join_tls_key)")
    check.add_argument("--pin", help="the pin the certificate and the key must have (join_pin)")
    export = commands.add_parser("export", help="print the nodes this hub admitted (JSON), for node import")
    export.add_argument("--state", type=Path, default=HUB_STATE,
                        help=f"the hub's record of joins (default {HUB_STATE})")
    packer = commands.add_parser("pack", help="pack an Ansible home's roles as the ansible.tar.gz of seeds and kits")
    packer.add_argument("--home", type=Path, required=True,
                        help="the directory holding ansible.cfg, playbooks/, roles/ and plugins/")
    packer.add_argument("--out", type=Path, required=True, help="where to write ansible.tar.gz")
    _roster_commands(commands)
    _phone_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "join" and args.identity and (args.seed or args.ansible):
        parser.error("--seed and --ansible need the node's own keys (leave out --identity)")
    if args.command == "join" and args.identity and args.python != seed.ANSIBLE_PYTHON:
        parser.error("--python needs the node's own keys (leave out --identity)")
    if args.command == "check" and not (args.kit or args.cert or args.key):
        parser.error("check needs --kit, --cert or --key")
    if args.command == "roster":
        if args.roster_command == "apply" and bool(args.hub_roster) != bool(args.hub):
            parser.error("--hub-roster and --hub go together")
        return {"publish": _roster_publish, "check": _roster_check,
                "apply": _roster_apply}[args.roster_command](args)
    if args.command == "phone":
        return _phone(args)
    return {"serve": _serve, "join": _join, "check": _check, "export": _export, "pack": _pack}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
