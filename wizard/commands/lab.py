"""`meshstead lab up|status|down|exec`: the site's nodes as local containers."""

from rich.table import Table

from .. import demokey, labsite
from ..errors import MeshsteadError
from .output import add_vault_option, err, out, progress_bar, site_dir


def lab_for(site):
    from ..lab import Lab
    return Lab(labsite.lab_name(site))


def lab_up(opened, count):
    lab = lab_for(opened.site)
    with err.status("Lab: starting") as status:
        conns = lab.up(labsite.lab_specs(opened, count), progress=lambda msg: status.update(f"Lab: {msg}"))
    labsite.write_lab_vars(opened.directory, conns)
    err.print(f"Lab {lab.name}: {len(conns)} node(s) up; their lab settings are in "
              f"host_vars/*/{labsite.LAB_FILE}")
    return lab


def cmd_lab_up(args) -> None:
    from ..load import is_site
    directory = site_dir(args)
    if not is_site(directory):
        with progress_bar("Generating identities", args.nodes or 3) as step:
            opened = labsite.ensure_site(directory, args.nodes or 3, demokey.admin_key(), args.vault_password_file,
                                         step)
        out.print(f"Made a default site in {directory}.")
    else:
        opened = labsite.ensure_site(directory, args.nodes, "", args.vault_password_file)
    lab_up(opened, args.nodes)
    out.print(f"Next: meshstead provision --site {directory}")


def _site_and_lab(args):
    from ..load import load_site
    site = load_site(site_dir(args))
    return site, lab_for(site)


def cmd_lab_status(args) -> None:
    _site, lab = _site_and_lab(args)
    rows = lab.status()
    if not rows:
        out.print(f"Lab {lab.name}: not running.")
        return
    table = Table(title=f"Lab {lab.name}")
    for column in ("node", "address", "pid", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["node"], row["address"], str(row["pid"]),
                      "[green]running[/]" if row["running"] else "[red]stopped[/]")
    out.print(table)


def cmd_lab_down(args) -> None:
    site, lab = _site_and_lab(args)
    lab.down()
    labsite.remove_lab_vars(site_dir(args), site.nodes)
    out.print(f"Lab {lab.name}: removed.")


def cmd_lab_exec(args) -> int:
    _site, lab = _site_and_lab(args)
    if not args.passthrough:
        raise MeshsteadError("command", "expected a command after --, e.g. lab exec node1 -- ip a")
    return lab.exec(args.node, args.passthrough)


def register(sub, site_option) -> None:
    lab = sub.add_parser("lab", help="a local lab of node containers").add_subparsers(dest="lab_command",
                                                                                       required=True)
    up = lab.add_parser("up", parents=[site_option], help="boot the site's nodes as containers "
                        "(makes a default site if none)")
    up.add_argument("--nodes", type=int, help="number of nodes (default: all of the site's, or 3 for a new site)")
    add_vault_option(up)
    up.set_defaults(func=cmd_lab_up)
    lab.add_parser("status", parents=[site_option], help="show the lab's nodes").set_defaults(func=cmd_lab_status)
    lab.add_parser("down", parents=[site_option], help="remove everything lab up created (the site stays)"
                   ).set_defaults(func=cmd_lab_down)
    lexec = lab.add_parser("exec", parents=[site_option], help="run a command inside a lab node",
                           usage="meshstead lab exec NODE [--site SITE] -- COMMAND [ARG ...]")
    lexec.add_argument("node")
    lexec.set_defaults(func=cmd_lab_exec, passthrough_allowed=True)
