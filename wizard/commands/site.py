"""`meshstead init`: create a site, or change its settings."""

from pathlib import Path

from .. import sites
from ..answers import has_terminal, load_answers_file, parse_set_flags
from ..load import is_site
from .output import add_dry_run_option, add_vault_option, out, show_changes, site_dir


def finish(opened: sites.Opened, dry_run: bool) -> None:
    """Write (or, with dry_run, only list) what the site's files should now hold."""
    changes = sites.plan(opened)
    if not dry_run:
        sites.commit(opened, changes)
    show_changes(changes, dry_run, opened.directory)


def cmd_init(args) -> None:
    directory = Path(args.directory) if args.directory else site_dir(args)
    interactive = has_terminal() and not args.defaults
    asker = None
    if interactive:
        from ..prompt import ask
        asker = ask
    new = not is_site(directory)
    opened = sites.init(directory, parse_set_flags(args.set), load_answers_file(args.answers),
                        interactive=interactive, asker=asker, vault_override=args.vault_password_file)
    finish(opened, args.dry_run)
    if args.dry_run:
        return
    if opened.vault.path:
        out.print(f"Site [bold]{opened.site.settings.name}[/] in {directory} "
                  f"(vault password: {opened.vault.path}; back it up, keep it private).")
    if new:
        where = f" --site {directory}"
        step = (f"meshstead node add NAME --platform rpi4 --role hub{where}" if not opened.site.nodes
                else f"meshstead lab up{where}   (try it on this machine)  or  meshstead provision{where}")
        out.print(f"Next: {step}")


def register(sub, site_option) -> None:
    init = sub.add_parser("init", parents=[site_option], help="create a site (or update its settings)")
    init.add_argument("directory", nargs="?", help="site directory to create")
    init.add_argument("--defaults", action="store_true", help="take defaults instead of asking")
    init.add_argument("--answers", help="YAML file of answers (may list nodes:)")
    init.add_argument("--set", action="append", metavar="KEY=VALUE", help="answer a question (repeatable)")
    add_vault_option(init)
    add_dry_run_option(init)
    init.set_defaults(func=cmd_init)
