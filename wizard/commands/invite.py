"""`meshstead invite create|check|list|revoke`: invites to join the site by QR code."""

import datetime
import json
from pathlib import Path

from rich.table import Table

from .. import sites
from ..errors import MeshsteadError
from ..fsutil import apply_writes, plan_writes
from ..invites import issue, qr, record, token, verify
from .output import add_vault_option, err, out, site_dir

INVITE_MODE = 0o600  # an invite is a bearer secret until it expires


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _roles(args) -> list[str]:
    return [r for item in args.role or [] for r in item.split(",") if r]


def cmd_create(args) -> None:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    made = issue.create(opened.site, opened.site_secrets, args.name, args.platform, _roles(args),
                        lifetime=issue.parse_lifetime(args.expires), hub=args.hub, endpoints=args.endpoint)
    code = qr.code(made.text)
    name = made.record.name
    target = Path(args.out).resolve()
    files = {f"{name}-invite.png": (qr.png(code), INVITE_MODE), f"{name}-invite.svg": (qr.svg(code), INVITE_MODE),
             f"{name}-invite.txt": ((made.text + "\n").encode(), INVITE_MODE)}
    # The record and the invite's files at once: never an invite the site does not know of.
    apply_writes(sites.plan(opened) + plan_writes(target, files))
    out.file.write(qr.terminal(code))
    out.print(made.text, markup=False, highlight=False)
    out.print(f"Invite [bold]{made.record.id}[/] for {name} ({made.record.platform}"
              f"{', ' + ','.join(made.record.roles) if made.record.roles else ''}) through hub {made.record.hub} "
              f"at {', '.join(made.record.endpoints)}; expires {made.record.expires}")
    out.print(f"{len(made.text)} characters, QR version {code.version}; written (0600, keep it like a key) to "
              f"{target}/{name}-invite.{{png,svg,txt}}", highlight=False)
    out.print(f"Next: give it to whoever sets up {name}; check it with `meshstead invite check --file "
              f"{target}/{name}-invite.txt --site {opened.directory}`, withdraw it with "
              f"`meshstead invite revoke {made.record.id} --site {opened.directory}`", markup=False, highlight=False)


def _invite_text(args) -> str:
    if (args.text is None) == (args.file is None):
        raise MeshsteadError("invite", "expected the invite's text or --file PATH (one of them)")
    if args.text is not None:
        return args.text
    path = Path(args.file)
    data = path.read_bytes()
    if qr.is_image(data):
        return qr.read_image(path)
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise token.InviteError("malformed", f"{path} is neither an invite's text nor an image; expected "
                                "NAME-invite.txt or NAME-invite.png") from None


def cmd_check(args) -> int:
    from ..load import load_site
    site = load_site(site_dir(args))
    try:
        checked = verify.check(site, _invite_text(args))
    except token.InviteError as exc:
        err.print(f"meshstead: error: invite: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    invite = checked.invite
    hub = checked.hub.name if checked.hub else f"not a node of this site (pin {token.b64url(invite.pin)})"
    rows = [("id", invite.id), ("name", invite.name), ("platform", invite.platform),
            ("roles", ",".join(invite.roles) or "-"), ("hub", hub),
            ("endpoints", ", ".join(token.format_endpoint(e) for e in invite.endpoints)),
            ("expires", record.timestamp(invite.expires_at)),
            ("state", checked.record.state(_now()) if checked.record else "not in this site's records")]
    out.print(f"Valid invite of site {site.settings.name}:", highlight=False)
    for key, value in rows:
        out.print(f"  {key:10} {value}", markup=False, highlight=False)
    return 0


def invite_rows(site, now: datetime.datetime) -> list[dict]:
    return [{**r.to_var(), "state": r.state(now)} for r in site.invites]


def cmd_list(args) -> None:
    from ..load import load_site
    site = load_site(site_dir(args))
    rows = invite_rows(site, _now())
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{site.settings.name}: {len(rows)} invite(s)")
    for column in ("id", "name", "platform", "roles", "hub", "created", "expires", "state"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["id"], r["name"], r["platform"], ",".join(r["roles"]) or "-", r["hub"], r["created"],
                      r["expires"], r["state"])
    out.print(table)


def cmd_revoke(args) -> None:
    from ..load import load_site
    from ..render import inventory
    site = load_site(site_dir(args))
    revoked = record.revoke(site.invites, args.id)
    # Only the public files: the vault is not needed to revoke, and not touched.
    files = inventory.render(site, None, site_secrets=None, node_secrets={})
    apply_writes(plan_writes(site_dir(args), files))
    out.print(f"Revoked invite {revoked.id} for {revoked.name}: `invite check` refuses it, and hubs will read "
              "it from group_vars/all/invites.yml once they serve joins (not built yet)", markup=False,
              highlight=False)


PHONE_MODE = 0o644  # a device ID is no secret: it is what the phone is told to trust


def _phone_files(target) -> tuple:
    """The QR code of the hub's device ID (what the app's scanner reads) and its files."""
    code = qr.code(target.device_id)
    stem = f"{target.hub.name}-phone"
    return code, {f"{stem}.png": (qr.png(code), PHONE_MODE), f"{stem}.svg": (qr.svg(code), PHONE_MODE),
                  f"{stem}.txt": ((target.device_id + "\n").encode(), PHONE_MODE)}


def _phone_steps(target, window: str) -> list[str]:
    """What the person does in the Syncthing Android app, in order (README, "Invite a phone")."""
    folders = ", ".join(target.folders)
    return [
        f'1. Join the Wi-Fi "{target.ssid}" (the site\'s access points; its passphrase from the site\'s admin).',
        "2. Syncthing app: Devices tab, + (Add Device), the QR icon beside Device ID: scan this code.",
        f"3. Name: {target.hub.name}. Addresses: replace dynamic with {target.address}. Introducer: on.",
        "4. Tap the check mark (Add).",
        f'5. Within a minute a notification: Device "{target.hub.name}" wants to share folder …: Accept,'
        f" choose a directory, tap the check mark (Create). Folders: {folders}.",
        f"The hub lets the phone in {window}; it stays until removed.",
    ]


def cmd_phone(args) -> int:
    from ..invites import phone
    from ..load import load_site
    directory = site_dir(args)
    site = load_site(directory)
    target = phone.choose(site, directory, args.hub, args.folder)
    lifetime = issue.parse_lifetime(args.expires or "1h")
    count = phone.parse_phones(args.phones or "1")
    if args.json and not args.list:
        raise MeshsteadError("json", "only --list prints JSON; expected --list --json")
    managing = args.list or args.close or args.remove
    # An option that would do nothing in this run is refused, not ignored.
    unused = [("expires", args.expires), ("phones", args.phones)] if managing or args.no_window else []
    unused += [("folder", args.folder), ("out", args.out)] if managing else []
    mode = "--no-window" if args.no_window else "--list, --close or --remove"
    for name, value in unused:
        if value is not None:
            raise MeshsteadError(name, f"--{name} has no use with {mode}; expected it only when "
                                 + ("a window is opened" if name in ("expires", "phones") else "the QR code is made"))
    if managing:
        return _phone_manage(args, phone, target)
    out_dir = Path(args.out or ".").resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise MeshsteadError("out", f"{out_dir} is not a directory; expected a directory for the QR files")
    code, files = _phone_files(target)
    window = "only when a window is open (this run opened none: --no-window)"
    if not args.no_window:
        opened = sites.open_site(directory, args.vault_password_file)
        seconds = int(lifetime.total_seconds())
        hub_args = ["open", "--seconds", str(seconds), "--phones", str(count)]
        hub_args += [a for folder in target.folders for a in ("--folder", folder)]
        try:
            with err.status(f"Phone: opening the window on {target.hub.name}") as status:
                answer = phone.on_hub(opened, target.hub.name, hub_args,
                                      on_task=lambda t: status.update(f"Phone: {t}"))
            hub_said = json.loads(answer.stdout)
        except phone.HubError as exc:
            err.print(f"meshstead: error: hub: {exc}", markup=False, highlight=False, soft_wrap=True)
            return 1
        except ValueError:
            err.print(f"meshstead: error: hub: {target.hub.name} answered no window; expected JSON from "
                      "`meshstead-join phone open`", markup=False, highlight=False)
            return 1
        if hub_said.get("device_id") != target.device_id:
            err.print(f"meshstead: error: hub: {target.hub.name}'s Syncthing runs as {hub_said.get('device_id')}, "
                      f"the site has {target.device_id}; expected the site's (meshstead provision --limit "
                      f"{target.hub.name})", markup=False, highlight=False)
            return 1
        window = (f"until {hub_said['until']} by its clock ({count} phone{'s' if count > 1 else ''}; "
                  f"{', '.join(hub_said['folders'])})")
    apply_writes(plan_writes(out_dir, files))
    out.file.write(qr.terminal(code))
    out.print(target.device_id, markup=False, highlight=False)
    out.print(f"Phone: {target.hub.name}'s Syncthing device ID above; type {target.address} as its address",
              markup=False, highlight=False)
    for line in _phone_steps(target, window):
        out.print(line, markup=False, highlight=False)
    out.print(f"Written to {out_dir}/{target.hub.name}-phone.{{png,svg,txt}}", markup=False, highlight=False)
    out.print(f"Next: see the phones with `meshstead invite phone --list --hub {target.hub.name} --site {directory}`;"
              f" take one out with --remove DEVICE_ID", markup=False, highlight=False)
    return 0


def _phone_manage(args, phone, target) -> int:
    """--list, --close, --remove: the hub's phones and window."""
    device = phone.parse_device(args.remove) if args.remove else None
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    hub_args = ["list"] if args.list else ["close"] if args.close else ["remove", device]
    try:
        with err.status(f"Phone: reading {target.hub.name}") as status:
            answer = phone.on_hub(opened, target.hub.name, hub_args, on_task=lambda t: status.update(f"Phone: {t}"))
    except phone.HubError as exc:
        err.print(f"meshstead: error: hub: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    if not args.list:
        out.print(f"{target.hub.name}: {answer.stderr.strip()}", markup=False, highlight=False)
        return 0
    listed = json.loads(answer.stdout)
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    table = Table(title=f"{target.hub.name}: {len(listed['phones'])} phone(s)")
    for column in ("name", "device id", "folders", "accepted", "announced as"):
        table.add_column(column, overflow="fold")
    for p in listed["phones"]:
        table.add_row(p["name"], p["id"], ",".join(p["folders"]), p["accepted"], p["announced"] or "-")
    out.print(table)
    window = listed.get("window")
    if window:
        state = "open" if window["open"] else "closed"
        out.print(f"Last window: {window['opened']} to {window['until']}, {state}, {len(window['accepted'])} of "
                  f"{window['phones']} accepted", highlight=False)
    return 0


def register(sub, site_option) -> None:
    invite = sub.add_parser("invite", help="invites to join the site by QR code").add_subparsers(
        dest="invite_command", required=True)
    create = invite.add_parser("create", parents=[site_option], help="sign an invite for a new node: QR code "
                               "in the terminal, NAME-invite.png, .svg and .txt")
    create.add_argument("name", help="the new node's name")
    create.add_argument("--platform", default="amd64", help="rpi3, rpi4, rpi5, pizero2w, amd64, "
                        "openwrt:<target>/<profile>")
    create.add_argument("--role", action="append", help="hub, gateway, dns (repeatable or comma-separated)")
    create.add_argument("--expires", default="24h", help="lifetime: 30m, 24h, 7d, … at most 30d (default 24h)")
    create.add_argument("--hub", help="the hub that serves the join (default: the site's first hub)")
    create.add_argument("--endpoint", action="append", metavar="ADDR[:PORT]", help="where the node reaches "
                        f"the hub (repeatable; default: the hub's mesh IPv4, port {token.JOIN_PORT})")
    create.add_argument("--out", default=".", help="directory for the invite's files (default: here)")
    add_vault_option(create)
    create.set_defaults(func=cmd_create)
    check = invite.add_parser("check", parents=[site_option], help="verify an invite offline and show what it "
                              "grants (exit 0 valid, 1 not)")
    check.add_argument("text", nargs="?", help="the invite's text (meshstead1:…)")
    check.add_argument("--file", help="the invite's .txt, or its QR image (read with zbarimg)")
    check.set_defaults(func=cmd_check)
    lst = invite.add_parser("list", parents=[site_option], help="the site's invites and their state")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(func=cmd_list)
    revoke = invite.add_parser("revoke", parents=[site_option], help="withdraw an unused invite")
    revoke.add_argument("id", help="the invite's id (from create or list)")
    revoke.set_defaults(func=cmd_revoke)
    phone = invite.add_parser("phone", parents=[site_option], help="let a phone carry the carrier folder: the "
                              "hub's Syncthing device ID as a QR code, and a window in which the hub accepts it")
    phone.add_argument("--hub", help="the hub the phone syncs with (default: the site's first hub)")
    phone.add_argument("--expires", help="how long the hub accepts a phone: 30m, 1h, 2d, … at most "
                       "30d (default 1h)")
    phone.add_argument("--phones", help="how many phones the window lets in (default 1)")
    phone.add_argument("--folder", action="append", help="a site folder the phone gets (repeatable; default "
                       "nncp-carrier)")
    phone.add_argument("--out", help="directory for HUB-phone.png, .svg and .txt (default: here)")
    what = phone.add_mutually_exclusive_group()
    what.add_argument("--no-window", action="store_true", help="only the QR code and what to type; the hub is "
                      "not contacted")
    what.add_argument("--list", action="store_true", help="the phones the hub accepted, and its last window")
    what.add_argument("--close", action="store_true", help="close the hub's window now")
    what.add_argument("--remove", metavar="DEVICE_ID", help="take a phone out of the hub's Syncthing")
    phone.add_argument("--json", action="store_true", help="with --list: print JSON")
    add_vault_option(phone)
    phone.set_defaults(func=cmd_phone)
