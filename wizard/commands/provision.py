"""`meshstead provision`: the site playbook with live progress and a per-host summary."""

import os
from pathlib import Path

from rich.table import Table

from .. import sites
from ..errors import MeshsteadError
from ..render import inventory
from .output import add_vault_option, err, out, site_dir


def run_provision(opened, *, limit=None, check=False, diff=False, extra=(), verbose=False):
    from .. import provision
    argv = provision.command(opened.directory, opened.vault.path, limit=limit, check=check, diff=diff,
                             extra=list(extra))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshstead"
    log = cache / f"provision-{opened.site.settings.site_id}.log"
    with err.status("Provisioning: starting") as status:
        outcome = provision.run(argv, log, facts_dir=cache / "facts" / opened.site.settings.site_id,
                                on_task=lambda t: status.update(f"Provisioning: {t}"),
                                on_line=(lambda line: out.print(line, markup=False, highlight=False))
                                if verbose or diff else None)
    for line in outcome.failures[:20]:
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


def check_limit(opened, limit: str) -> None:
    plain = [h for h in limit.split(",") if h and not any(c in h for c in "*?[]:!&~")]
    unknown = [h for h in plain if h not in opened.site.nodes and h not in ("all", *inventory.GROUPS)]
    if unknown:
        raise MeshsteadError("limit", f"no host or group named {', '.join(unknown)} in the site; expected "
                             f"one of: {', '.join(sorted(opened.site.nodes))}")


def cmd_provision(args) -> int:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    if args.limit:
        check_limit(opened, args.limit)
    outcome = run_provision(opened, limit=args.limit, check=args.check, diff=args.diff,
                            extra=args.passthrough, verbose=args.verbose)
    return outcome.returncode


def register(sub, site_option) -> None:
    prov = sub.add_parser("provision", parents=[site_option], help="run the site playbook (ansible-playbook)",
                          usage="meshstead provision [options] [-- ANSIBLE-PLAYBOOK-ARGS ...]")
    prov.add_argument("--limit", help="only these hosts (Ansible pattern)")
    prov.add_argument("--check", action="store_true", help="predict changes, change nothing (Ansible check mode)")
    prov.add_argument("--diff", action="store_true", help="show file differences (implies verbose output)")
    prov.add_argument("-v", "--verbose", action="store_true", help="show ansible-playbook's output live")
    add_vault_option(prov)
    prov.set_defaults(func=cmd_provision, passthrough_allowed=True)
