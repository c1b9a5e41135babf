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
