"""The `meshstead` command: a thin layer over wizard.sites and friends."""

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__, sites
from .answers import has_terminal, load_answers_file, parse_set_flags
from .errors import MeshsteadError
from .fsutil import FileChange, apply_writes
from .lab.errors import LabError as LabFailure
from .model import parse_node
from .render import export as export_mod
from .render import inventory

out = Console(soft_wrap=True)
if not out.is_terminal:
    out.width = 200  # tables read in logs and pipes are not squeezed to 80 columns
err = Console(stderr=True, soft_wrap=True)


def site_dir(args) -> Path:
    return Path(args.site or os.environ.get("MESHSTEAD_SITE") or ".")


def show_changes(changes: list[FileChange], dry_run: bool, root: Path) -> None:
    if not changes:
        out.print("Nothing to change.")
        return
    verb = "would" if dry_run else "did"
    for change in changes:
        shown = change.path.relative_to(root) if change.path.is_relative_to(root) else change.path
        out.print(f"  {change.action:6} {shown}{'  (secret)' if change.mode == 0o600 else ''}")
    out.print(f"{len(changes)} file(s) {verb} change.")


def finish(opened: sites.Opened, dry_run: bool) -> None:
    changes = sites.plan(opened)
    if not dry_run:
        sites.commit(opened, changes)
    show_changes(changes, dry_run, opened.directory)


def cmd_init(args) -> None:
    directory = Path(args.directory or args.site or os.environ.get("MESHSTEAD_SITE") or ".")
    interactive = has_terminal() and not args.defaults
    asker = None
    if interactive:
        from .prompt import ask
        asker = ask
    opened = sites.init(directory, parse_set_flags(args.set), load_answers_file(args.answers),
                        interactive=interactive, asker=asker, vault_override=args.vault_password_file)
    finish(opened, args.dry_run)
    if not args.dry_run and opened.vault.path:
        out.print(f"Site [bold]{opened.site.settings.name}[/] in {directory} "
                  f"(vault password: {opened.vault.path}; back it up, keep it private).")


def cmd_node_add(args) -> None:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    roles = [r for item in args.role or [] for r in item.split(",") if r]
    name, platform, roles = parse_node(args.name, args.platform, roles)
    sites.add_node(opened, name, platform, roles)
    finish(opened, args.dry_run)


def node_rows(site) -> list[dict]:
    rows = []
    for node in site.sorted_nodes():
        f = site.node_facts(node)
        rows.append({
            "name": node.name, "fqdn": f["node_fqdn"], "platform": node.platform, "roles": node.roles,
            "mesh_ipv4": f["node_mesh_ipv4"], "mesh_ipv6": f["node_mesh_ipv6"],
            "tinc_ipv4": f["node_overlay_ipv4"], "tinc_ipv6": f["node_overlay_ipv6"],
            "yggdrasil": f.get("yggdrasil_address"), "syncthing_id": f.get("syncthing_device_id"),
            "nncp_id": f.get("nncp_id"),
        })
    return rows


def cmd_node_list(args) -> None:
    from .load import load_site
    site = load_site(site_dir(args))
    rows = node_rows(site)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{site.settings.name} ({site.settings.domain}): {len(rows)} node(s)")
    for column in ("name", "fqdn", "platform", "roles", "mesh", "overlay", "syncthing", "nncp"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["fqdn"], r["platform"], ",".join(r["roles"]) or "-",
                      f"{r['mesh_ipv4']}\n{r['mesh_ipv6']}",
                      f"tinc {r['tinc_ipv4']}\nygg {r['yggdrasil']}",
                      (r["syncthing_id"] or "")[:15] + "…", (r["nncp_id"] or "")[:12] + "…")
    out.print(table)


def cmd_identity_show(args) -> None:
    from .load import load_site
    site = load_site(site_dir(args))
    facts = site.node_facts(sites.get_node(site, args.name))
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            out.print(f"[bold]{key}[/]: {value}")


def cmd_identity_export(args) -> None:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    node = sites.get_node(opened.site, args.name)
    secrets = sites.node_secrets(opened, args.name)
    target = Path(args.dir).resolve()
    files = export_mod.export(opened.site, node, secrets, str(target))
    changes = [FileChange(target / rel, text.encode(), mode, "create") for rel, (text, mode) in files.items()]
    if not args.dry_run:
        apply_writes(changes)
    show_changes(changes, args.dry_run, target)


def demo_admin_key() -> str:
    """The user's own key if there is one, else a demo key kept with meshstead's config."""
    from .questions import find_ssh_key
    found = find_ssh_key()
    if found:
        return found
    key = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "meshstead" / "demo" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        import subprocess
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshstead-demo", "-f", str(key)],
                       check=True)
    return str(key) + ".pub"


DEMO_NODES = (("hilltop", "rpi4", ["hub", "dns"]), ("cabin", "rpi3", []), ("barn", "pizero2w", []))


def cmd_demo(args) -> None:
    """A 3-node site in the lab, provisioned: the quickest look at a working mesh."""
    from . import reach
    directory = site_dir(args)
    opened = sites.init(directory, {"admin_ssh_key": demo_admin_key()}, {}, interactive=False,
                        vault_override=args.vault_password_file)
    missing = [spec for spec in DEMO_NODES if spec[0] not in opened.site.nodes]
    if missing:
        with progress_bar("Generating identities", len(missing)) as step:
            sites.add_nodes(opened, missing, step)
    finish(opened, False)
    cmd_node_list(argparse.Namespace(site=str(directory), json=False))
    lab = lab_up(opened, None)
    outcome = run_provision(opened, argparse.Namespace(limit=None, check=False, diff=False, extra=[],
                                                       verbose=False))
    if outcome.returncode != 0:
        raise MeshsteadError("provision", f"ansible-playbook failed (exit {outcome.returncode}); "
                             f"full log: {outcome.log}")
    out.print(reach.table(reach.matrix(lab, opened.site)))


def progress_bar(label: str, total: int):
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    @contextmanager
    def bar():
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=not err.is_terminal) as prog:
            task = prog.add_task(label, total=total)
            yield lambda: prog.advance(task)
    return bar()


def lab_for(opened):
    from . import labsite
    from .lab import Lab
    return Lab(labsite.lab_name(opened))


def lab_up(opened, count):
    from . import labsite
    lab = lab_for(opened)
    with err.status("Lab: starting") as status:
        conns = lab.up(labsite.lab_specs(opened, count), progress=lambda msg: status.update(f"Lab: {msg}"))
    labsite.write_connections(opened.directory, conns)
    err.print(f"Lab {lab.name}: {len(conns)} node(s) up; connection details in host_vars/*/connection.yml")
    return lab


def cmd_lab_up(args) -> None:
    from . import labsite
    directory = site_dir(args)
    from .load import is_site
    if not is_site(directory):
        with progress_bar("Generating identities", args.nodes or 3) as step:
            opened = labsite.ensure_site(directory, args.nodes or 3, demo_admin_key(), args.vault_password_file,
                                         step)
        out.print(f"Made a default site in {directory}.")
    else:
        opened = labsite.ensure_site(directory, args.nodes, "", args.vault_password_file)
    lab_up(opened, args.nodes)


def _lab_from_site(args):
    from .load import load_site
    site = load_site(site_dir(args))
    return site, lab_for(argparse.Namespace(site=site))


def cmd_lab_status(args) -> None:
    _site, lab = _lab_from_site(args)
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
    from . import labsite
    site, lab = _lab_from_site(args)
    lab.down()
    labsite.remove_connections(site_dir(args), site.nodes)
    out.print(f"Lab {lab.name}: removed.")


def cmd_lab_exec(args) -> int:
    _site, lab = _lab_from_site(args)
    command = [c for c in args.cmd if c != "--"] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise MeshsteadError("command", "expected a command after the node name, e.g. lab exec node1 -- ip a")
    return lab.exec(args.node, command)


def run_provision(opened, args):
    from . import provision
    argv = provision.command(opened.directory, opened.vault.path, limit=args.limit, check=args.check,
                             diff=args.diff, extra=args.extra)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshstead"
    log = cache / f"provision-{opened.site.settings.site_id}.log"
    verbose = args.verbose or args.diff
    with err.status("Provisioning: starting") as status:
        outcome = provision.run(argv, log, facts_dir=cache / "facts" / opened.site.settings.site_id,
                                on_task=lambda t: status.update(f"Provisioning: {t}"),
                                on_line=(lambda line: out.print(line, markup=False, highlight=False))
                                if verbose else None)
    for line in provision.failures(log.read_text().splitlines())[:20]:
        err.print(line, markup=False, highlight=False)
    table = Table(title=f"Provisioned {opened.site.settings.name}")
    for column in ("host", "ok", "changed", "unreachable", "failed", "skipped"):
        table.add_column(column, justify="right" if column != "host" else "left")
    for h in outcome.hosts:
        style = "red" if h.failed or h.unreachable else ("yellow" if h.changed else "green")
        table.add_row(f"[{style}]{h.host}[/]", str(h.ok), str(h.changed), str(h.unreachable), str(h.failed),
                      str(h.skipped))
    out.print(table)
    out.print(f"Full log: {outcome.log}")
    return outcome


def cmd_provision(args) -> int:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    if args.limit:
        plain = [h for h in args.limit.split(",") if h and not any(c in h for c in "*?[]:!&~")]
        unknown = [h for h in plain if h not in opened.site.nodes and h not in ("all", *inventory.GROUPS)]
        if unknown:
            raise MeshsteadError("limit", f"no host or group named {', '.join(unknown)} in the site; expected "
                                 f"one of: {', '.join(sorted(opened.site.nodes))}")
    outcome = run_provision(opened, args)
    return outcome.returncode


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--site", help="site directory (default: $MESHSTEAD_SITE, then the current directory)")
    common.add_argument("--vault-password-file", help="vault password file (default: "
                        "~/.config/meshstead/vault/<site id>.pass or $MESHSTEAD_VAULT_PASSWORD_FILE)")
    common.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")

    parser = argparse.ArgumentParser(prog="meshstead", description="Provision a private, offline-capable "
                                     "community mesh from one site inventory.")
    parser.add_argument("--version", action="version", version=f"meshstead {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", parents=[common], help="create a site (or update its settings)")
    init.add_argument("directory", nargs="?", help="site directory to create")
    init.add_argument("--defaults", action="store_true", help="take defaults instead of asking")
    init.add_argument("--answers", help="YAML file of answers (may list nodes:)")
    init.add_argument("--set", action="append", metavar="KEY=VALUE", help="answer a question (repeatable)")
    init.set_defaults(func=cmd_init)

    node = sub.add_parser("node", help="add and list nodes").add_subparsers(dest="node_command", required=True)
    add = node.add_parser("add", parents=[common], help="add a node with fresh identities")
    add.add_argument("name")
    add.add_argument("--platform", default="amd64", help="rpi3, rpi4, rpi5, pizero2w, amd64, "
                     "openwrt:<target>/<profile>")
    add.add_argument("--role", action="append", help="hub, gateway, dns (repeatable or comma-separated)")
    add.set_defaults(func=cmd_node_add)
    lst = node.add_parser("list", parents=[common], help="list nodes")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_node_list)

    demo = sub.add_parser("demo", parents=[common], help="make (or reuse) a 3-node demo site and show it")
    demo.set_defaults(func=cmd_demo)

    lab = sub.add_parser("lab", help="a local lab of node containers").add_subparsers(dest="lab_command",
                                                                                       required=True)
    up = lab.add_parser("up", parents=[common], help="boot the site's nodes as containers "
                        "(makes a default site if none)")
    up.add_argument("--nodes", type=int, help="number of nodes (default: all of the site's, or 3 for a new site)")
    up.set_defaults(func=cmd_lab_up)
    lab.add_parser("status", parents=[common], help="show the lab's nodes").set_defaults(func=cmd_lab_status)
    lab.add_parser("down", parents=[common], help="remove everything lab up created").set_defaults(
        func=cmd_lab_down)
    lexec = lab.add_parser("exec", parents=[common], help="run a command inside a lab node")
    lexec.add_argument("node")
    lexec.add_argument("cmd", nargs=argparse.REMAINDER)
    lexec.set_defaults(func=cmd_lab_exec)

    prov = sub.add_parser("provision", parents=[common], help="run the site playbook (ansible-playbook)")
    prov.add_argument("--limit", help="only these hosts (Ansible pattern)")
    prov.add_argument("--check", action="store_true", help="predict changes, change nothing")
    prov.add_argument("--diff", action="store_true", help="show file differences (implies verbose output)")
    prov.add_argument("-v", "--verbose", action="store_true", help="show ansible-playbook's output live")
    prov.add_argument("extra", nargs="*", help="extra ansible-playbook arguments, after --")
    prov.set_defaults(func=cmd_provision)

    ident = sub.add_parser("identity", help="node identities").add_subparsers(dest="identity_command",
                                                                               required=True)
    show = ident.add_parser("show", parents=[common], help="a node's public identity")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_identity_show)
    exp = ident.add_parser("export", parents=[common], help="write the files the real programs read")
    exp.add_argument("name")
    exp.add_argument("--dir", required=True)
    exp.set_defaults(func=cmd_identity_export)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except MeshsteadError as exc:
        err.print(f"meshstead: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("meshstead: interrupted", highlight=False)
        return 130
    except LabFailure as exc:
        err.print(f"meshstead: error: lab: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
