"""`meshstead identity show|export`."""

import json
from pathlib import Path

from .. import sites
from ..fsutil import apply_writes, plan_writes
from .output import add_dry_run_option, add_vault_option, out, show_changes, site_dir


def cmd_identity_show(args) -> None:
    from ..load import load_site
    site = load_site(site_dir(args))
    facts = site.node_facts(sites.get_node(site, args.name))
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            out.print(f"[bold]{key}[/]: {value}")


def cmd_identity_export(args) -> None:
    """The files the roles would write on the node, at their paths under --dir."""
    from ..render.nodefiles import render_node
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    # Reading the node's vault first names the file when it is missing or damaged,
    # and refuses a node that made its own keys: it has nothing to export here.
    sites.node_secrets(opened, args.name)
    target = Path(args.dir).resolve()
    rendered = render_node(opened.directory, opened.vault.password, args.name)
    changes = plan_writes(target, {str(f.path.relative_to("/")): (f.content, f.mode) for f in rendered})
    if not args.dry_run:
        apply_writes(changes)
    show_changes(changes, args.dry_run, target)


def register(sub, site_option) -> None:
    ident = sub.add_parser("identity", help="node identities").add_subparsers(dest="identity_command",
                                                                               required=True)
    show = ident.add_parser("show", parents=[site_option], help="a node's public identity")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_identity_show)
    exp = ident.add_parser("export", parents=[site_option],
                           help="write the files the roles would put on the node, under a directory")
    exp.add_argument("name")
    exp.add_argument("--dir", required=True, help="directory that stands for the node's / (etc/tinc/…)")
    add_vault_option(exp)
    add_dry_run_option(exp)
    exp.set_defaults(func=cmd_identity_export)
