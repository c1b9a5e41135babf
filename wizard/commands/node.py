"""`meshstead node add|import|list|remove`."""

import json

from rich.table import Table

from .. import sites
from ..fsutil import apply_writes
from ..model import parse_node
from .output import add_dry_run_option, add_vault_option, err, out, show_changes, site_dir
from .site import finish


def cmd_node_add(args) -> None:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    roles = [r for item in args.role or [] for r in item.split(",") if r]
    name, platform, roles = parse_node(args.name, args.platform, roles)
    node = sites.add_node(opened, name, platform, roles)
    finish(opened, args.dry_run)
    if name in opened.site.removed:
        out.print(f"{name} was the name of a removed node: this is a new node with new keys, at index {node.index}.")
    if not args.dry_run:
        out.print(f"Next: meshstead provision --site {opened.directory} --limit {name}   "
                  "(or flash and boot the node first)")


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


def show_nodes(site) -> None:
    rows = node_rows(site)
    table = Table(title=f"{site.settings.name} ({site.settings.domain}): {len(rows)} node(s)")
    for column in ("name", "fqdn", "platform", "roles", "mesh", "overlay", "syncthing", "nncp"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["fqdn"], r["platform"], ",".join(r["roles"]) or "-",
                      f"{r['mesh_ipv4']}\n{r['mesh_ipv6']}",
                      f"tinc {r['tinc_ipv4']}\nygg {r['yggdrasil']}",
                      (r["syncthing_id"] or "")[:15] + "…", (r["nncp_id"] or "")[:12] + "…")
    out.print(table)
    if site.removed:
        out.print("Removed: " + ", ".join(f"{name} (index {entry['node_index']}, {entry['removed_at']})"
                                          for name, entry in sorted(site.removed.items())), highlight=False)


def cmd_node_list(args) -> None:
    from ..load import load_site
    site = load_site(site_dir(args))
    if args.json:
        print(json.dumps(node_rows(site), indent=2))
    else:
        show_nodes(site)


def cmd_node_import(args) -> int:
    from ..invites import imports
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    with err.status("Import: reading the hubs") as status:
        collected = imports.collect(opened, on_task=lambda t: status.update(f"Import: {t}"))
    for hub in collected.unreachable:
        err.print(f"meshstead: warning: hub {hub} did not answer; the nodes that joined there come with the next "
                  f"import (log: {collected.log})", markup=False, highlight=False)
    merged = imports.merge(opened.site, collected.records)
    if merged.added or merged.used:
        finish(opened, args.dry_run)
    verb = "would bring" if args.dry_run else "brought"
    if merged.added:
        out.print(f"Import: {verb} {len(merged.added)} node(s) in from "
                  f"{', '.join(sorted(collected.records))}: {', '.join(n.name for n in merged.added)}")
        show_nodes(opened.site)
        if not args.dry_run:
            from .lab import connect_joined
            connected = connect_joined(opened.directory, opened.site, [n.name for n in merged.added])
            if connected:
                out.print(f"Lab: {', '.join(connected)} joined in the lab; it is reached through "
                          "host_vars/*/lab.yml")
            out.print(f"Next: meshstead provision --site {opened.directory}   (every node learns them, and they "
                      "take the site with the private keys they made, which never leave them)")
    elif not collected.records:
        out.print("Import: no hub answered; nothing was imported")
    else:
        out.print(f"Import: no new node at {', '.join(sorted(collected.records))}"
                  + (f" ({', '.join(merged.known)} already in the site)" if merged.known else ""))
    if merged.removed:
        out.print(f"Import: skipped {', '.join(merged.removed)}: removed from the site since they joined")
    return 1 if collected.unreachable and not collected.records else 0


def cmd_node_remove(args) -> None:
    from .. import remove
    from ..load import load_site
    directory = site_dir(args)
    site = load_site(directory)
    removal = remove.remove(directory, site, args.name, reuse_address=args.reuse_address)
    if not args.dry_run:
        apply_writes(removal.changes)
        remove.delete(directory, removal)
    verb = "would" if args.dry_run else "did"
    if removal.changes:
        show_changes(removal.changes, args.dry_run, directory)
    for path in removal.deleted:
        secret = "  (secret)" if path.name == "vault.yml" else ""
        out.print(f"  delete {path.relative_to(directory)}{secret}", highlight=False)
    out.print(f"{len(removal.deleted)} file(s) of {removal.name} {verb} go.", highlight=False)
    if removal.finished:
        out.print(f"{removal.name} was removed already; this finished the removal.", highlight=False)
        return
    address = ("may be given to a later node (--reuse-address)" if args.reuse_address
               else "are never given again")
    out.print(f"{'Would remove' if args.dry_run else 'Removed'} {removal.name}: its index {removal.index} and "
              f"addresses {address}; its keys never come back (group_vars/all/removed.yml).", highlight=False)
    for invite in removal.revoked:
        out.print(f"Revoked invite {invite.id} for {invite.name}: it named {removal.name} as its hub.",
                  highlight=False)
    if not args.dry_run:
        out.print(f"Next: meshstead provision --site {directory}   (every node drops {removal.name}; hubs "
                  "learn it with their kit)", highlight=False)


def register(sub, site_option) -> None:
    node = sub.add_parser("node", help="add, import, list and remove nodes").add_subparsers(dest="node_command",
                                                                                           required=True)
    add = node.add_parser("add", parents=[site_option], help="add a node with fresh identities")
    add.add_argument("name")
    add.add_argument("--platform", default="amd64", help="rpi3, rpi4, rpi5, pizero2w, amd64, "
                     "openwrt:<target>/<profile>")
    add.add_argument("--role", action="append", help="hub, gateway, dns (repeatable or comma-separated)")
    add_vault_option(add)
    add_dry_run_option(add)
    add.set_defaults(func=cmd_node_add)
    imp = node.add_parser("import", parents=[site_option], help="bring in the nodes that joined through hubs "
                          "by invite (reads each hub's record over Ansible)")
    add_vault_option(imp)
    add_dry_run_option(imp)
    imp.set_defaults(func=cmd_node_import)
    rem = node.add_parser("remove", parents=[site_option], help="take a node out of the site (the next provision "
                          "takes it out everywhere); its keys never come back")
    rem.add_argument("name")
    rem.add_argument("--reuse-address", action="store_true", help="let a later node take this node's index and "
                     "addresses (default: never given again)")
    add_dry_run_option(rem)
    rem.set_defaults(func=cmd_node_remove)
    lst = node.add_parser("list", parents=[site_option], help="list nodes")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(func=cmd_node_list)
