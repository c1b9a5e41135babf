"""`meshstead lab up|status|link|down|exec`: the site's nodes as local containers,
or (--radio) as nodes with simulated Wi-Fi radios inside a QEMU guest."""

import json
import re
import tempfile
import time
from pathlib import Path

import yaml
from rich.table import Table

from .. import demokey, labsite
from ..errors import MeshsteadError
from ..invites import token
from .output import add_vault_option, err, out, progress_bar, site_dir

TOPOLOGIES = ("full", "line", "diamond")


def lab_exists(site) -> bool:
    from ..lab import state
    return (state.lab_root() / labsite.lab_name(site) / "state.json").exists()


def lab_for(site, radio: bool = False):
    """The site's lab: as recorded if it exists, else a new one of the asked kind."""
    from ..lab import Lab, open_lab
    name = labsite.lab_name(site)
    if lab_exists(site):
        return open_lab(name)
    if radio:
        from ..lab.radio import RadioLab
        return RadioLab(name)
    return Lab(name)


def is_radio(lab) -> bool:
    return hasattr(lab, "links")


def lab_addresses(site, facts: dict) -> dict[str, str]:
    """A node's addresses on the lab's switch and its host key, from its
    facts (node.yml, or a hub's record of a node it admitted)."""
    return {"ipv4": f"{facts['node_mesh_ipv4']}/{site.settings.mesh_ipv4_net.prefixlen}",
            "ipv6": f"{facts['node_mesh_ipv6']}/64",
            "host_key": " ".join(facts["ssh_host_ed25519_public_key"].split()[:2])}


def connect_joined(directory, site, names) -> list[str]:
    """Nodes of the site's lab that joined by invite (a blank node, an image
    booted with an invite) and are now nodes of the site: the lab reaches
    them as it reaches a real node (the admin user), through the lab.yml it
    writes for its own nodes. The names connected."""
    import os
    if os.geteuid() != 0 or not lab_exists(site):
        return []
    lab = lab_for(site)
    if is_radio(lab):
        return []
    joined = lab.joined()
    conns = {}
    for name in sorted(set(names) & set(joined)):
        conns[name] = lab.set_address(name, **lab_addresses(site, site.node_facts(site.nodes[name])),
                                      user=site.settings.admin_user, identity=labsite.admin_identity(site))
    labsite.write_lab_vars(Path(directory), conns, image=True)
    return sorted(conns)


def lab_up(opened, count, radio: bool = False, topology: str = "full"):
    lab = lab_for(opened.site, radio)
    if is_radio(lab) != radio:
        kind = "a radio lab" if is_radio(lab) else "a container lab"
        raise MeshsteadError("radio", f"the site already has {kind}; expected the same kind "
                             "(or `meshstead lab down` first)")
    specs = labsite.lab_specs(opened, count, radio=radio)
    if radio and topology == "diamond" and len(specs) != 4:
        raise MeshsteadError("topology", f"diamond needs exactly 4 nodes, the lab has {len(specs)}; "
                             "expected --nodes 4 (or line/full)")
    with err.status("Lab: starting") as status:
        say = lambda msg: status.update(f"Lab: {msg}")  # noqa: E731
        conns = lab.up(specs, topology=topology, progress=say) if radio else lab.up(specs, progress=say)
    labsite.write_lab_vars(opened.directory, conns, radio=radio)
    what = "radio node(s) in a QEMU guest" if radio else "node(s)"
    err.print(f"Lab {lab.name}: {len(conns)} {what} up; their lab settings are in "
              f"host_vars/*/{labsite.LAB_FILE}")
    return lab


def cmd_lab_up(args) -> None:
    from ..load import is_site
    if args.topology and not args.radio:
        raise MeshsteadError("topology", "shapes radio links; expected it with --radio")
    if args.blank is not None and (args.radio or args.blank < 1):
        raise MeshsteadError("blank", "adds blank container nodes: expected a number ≥ 1, without --radio")
    directory = site_dir(args)
    if not is_site(directory):
        count = args.nodes or (4 if args.topology == "diamond" else 3)
        with progress_bar("Generating identities", count) as step:
            opened = labsite.ensure_site(directory, count, demokey.admin_key(), args.vault_password_file,
                                         step, radio=args.radio)
        out.print(f"Made a default site in {directory}.")
    else:
        opened = labsite.ensure_site(directory, args.nodes, "", args.vault_password_file)
    lab = lab_up(opened, args.nodes, radio=args.radio, topology=args.topology or "full")
    if args.blank:
        add_blanks(lab, args.blank, directory)
    out.print(f"Next: meshstead provision --site {directory}")


def add_blanks(lab, count: int, directory) -> None:
    """Blank nodes (wizard/lab/blank.py) that join with an invite; like a PC
    on a cable, each joins the mesh on its link to the lab's switch."""
    from ..images import generic
    card = {generic.LOCAL_FILE: yaml.safe_dump({"meshstead_mesh_interface": labsite.LAB_INTERFACE}).encode()}
    with err.status("Lab: blank nodes") as status:
        names = lab.add_blanks(count, card, progress=lambda msg: status.update(f"Lab: {msg}"))
    for name in names:
        out.print(f"Blank node {name}: waiting for an invite. Join it with: meshstead lab exec {name} --site "
                  f"{directory} -- meshstead-firstboot --invite \"$(cat NODE-invite.txt)\"")


def _site_and_lab(args):
    from ..load import load_site
    site = load_site(site_dir(args))
    return site, lab_for(site)


def cmd_lab_status(args) -> None:
    _site, lab = _site_and_lab(args)
    rows = lab.status()
    links = lab.links() if is_radio(lab) and rows else []
    if args.json:
        out.print_json(json.dumps({"lab": lab.name, "kind": "radio" if is_radio(lab) else "container",
                                   "nodes": rows, "links": links}))
        return
    if not rows:
        out.print(f"Lab {lab.name}: not running.")
        return
    table = Table(title=f"Lab {lab.name}")
    for column in ("node", "kind", "address", "pid", "state"):
        table.add_column(column)
    for row in rows:
        kind = {"vm": "image (QEMU)"}.get(row.get("kind"), "radio node" if is_radio(lab) else "container")
        if row.get("kind") == "blank":
            kind = (f"blank, joined as {row['joined_as']}" if row.get("joined_as")
                    else f"blank ({row.get('first_boot') or 'booting'})")
        table.add_row(row["node"], kind, row["address"] or "-", "-" if row["pid"] is None else str(row["pid"]),
                      "[green]running[/]" if row["running"] else "[red]stopped[/]")
    out.print(table)
    if links:
        table = Table(title="Radio links")
        for column in ("link", "state", "why"):
            table.add_column(column)
        for link in links:
            up = link["state"] == "up"
            table.add_row(f"{link['a']} — {link['b']}", "[green]up[/]" if up else "[red]down[/]",
                          {"topology": "not in the topology", "cut": "cut by `lab link`"}.get(link["reason"], ""))
        out.print(table)


def cmd_lab_link(args) -> None:
    _site, lab = _site_and_lab(args)
    if not is_radio(lab):
        raise MeshsteadError("link", "radio links exist only in a radio lab; expected `meshstead lab up --radio`")
    lab.link(args.a, args.b, up=args.state == "up")
    out.print(f"Radio link {args.a} — {args.b}: {args.state}.")


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


BOOT_TIMEOUT = 45 * 60  # first boot applies every role on an emulated CPU


def _first_boot_report(lab, node: str):
    proc = lab.exec_capture(node, ["cat", "/var/lib/meshstead/firstboot.json"], timeout=60)
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


_CONSOLE_END = re.compile(r"firstboot\[\d+\]: ((?:first boot: failed|seed: |join: ).*)")


def _ended_on_console(tail: str) -> str | None:
    """The first boot's own line saying it failed or refused, if the console shows one."""
    found = [m.group(1).strip() for m in _CONSOLE_END.finditer(tail or "")]
    return found[-1] if found else None


def wait_first_boot(lab, node: str, say) -> dict:
    """Until the node answers SSH as the site's admin and its first boot is over."""
    import time
    started = time.monotonic()
    while time.monotonic() - started < BOOT_TIMEOUT:
        if not any(r["node"] == node and r["running"] for r in lab.status()):
            raise MeshsteadError("image", f"node {node} powered off during its first boot; last console "
                                 f"line: {lab.console(node) or '(none)'}")
        report = _first_boot_report(lab, node)
        if report and report.get("status") != "running":
            return report
        ended = _ended_on_console(lab.console(node, 40))
        if report is None and ended:
            # Not reachable over SSH (a first boot that failed early has no sshd yet): the console says why.
            raise MeshsteadError("image", f"node {node}'s first boot ended without it answering SSH: {ended}")
        say(f"{time.monotonic() - started:4.0f} s  {lab.console(node)[:110]}")
        time.sleep(5)
    raise MeshsteadError("image", f"node {node} did not finish its first boot within {BOOT_TIMEOUT // 60} min; "
                         f"last console line: {lab.console(node) or '(none)'}")


JOIN_TIMEOUT = 30 * 60  # a generic image boots, takes an address and joins; the hub then records it


def _joined_at_hub(lab, hub: str, node: str) -> dict | None:
    """The node as the hub recorded it when it admitted it (its join service's state)."""
    proc = lab.exec_capture(hub, ["cat", f"/var/lib/meshstead/join-hub/joined/{node}.yml"], timeout=60)
    if proc.returncode != 0:
        return None
    try:
        return yaml.safe_load(proc.stdout)
    except yaml.YAMLError:
        return None  # being written


def _boot_generic(args, directory, site, image) -> int:
    """A generic image joins by the invite on its card (or --invite): the lab
    serves DHCP on its switch, as a LAN would, and learns the node's address
    from the hub that admits it."""
    from ..images import generic
    from ..lab import vm
    described = vm.read_card_file(image, f"meshstead/{generic.SITE_FILE}")
    try:
        description = json.loads(described) if described else {}
        site_id, platform = description.get("site_id"), description.get("platform", "amd64")
    except (ValueError, AttributeError):
        site_id = platform = None
    if site_id is None:
        raise MeshsteadError("image", f"{image} holds neither a node's seed nor a site's description; expected an "
                             "image from `meshstead image build`")
    if site_id != site.settings.site_id:
        raise MeshsteadError("image", f"{image} is a generic image of another site; expected one built with "
                             f"--site {directory}")
    if platform != "amd64":  # the lab's QEMU is a UEFI PC
        raise MeshsteadError("image", f"{image} is a generic {platform} image; expected an amd64 image")
    card_files = {}
    if args.invite:
        try:
            text = Path(args.invite).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MeshsteadError("invite", f"cannot read {args.invite}: {exc}; expected the invite's .txt") from None
        card_files[f"meshstead/{generic.INVITE_FILE}"] = (text.strip() + "\n").encode()
    else:
        text = vm.read_card_file(image, f"meshstead/{generic.INVITE_FILE}")
        if text is None:
            raise MeshsteadError("invite", f"{image} is a generic image without an invite; expected --invite FILE "
                                 "(or an image built with --invite)")
    if vm.read_card_file(image, f"meshstead/{generic.LOCAL_FILE}") is None:
        # Lab nodes have no radio: like a PC on a cable, the node joins the mesh on eth0.
        card_files[f"meshstead/{generic.LOCAL_FILE}"] = yaml.safe_dump({"meshstead_mesh_interface": "eth0"}).encode()
    invite = generic.invite_grant(site, text)
    node = invite.name
    hub = next((n.name for n in site.sorted_nodes() if n.public.get("join_pin") == token.b64url(invite.pin)), None)
    lab = lab_for(site)
    running = {row["node"] for row in lab.status() if row["running"]}
    if hub not in running:
        raise MeshsteadError("invite", f"the invite's hub {hub or '(not a node of this site)'} is not running in "
                             f"the lab; expected `meshstead lab up --site {directory}` and `provision` first")
    with err.status(f"Lab: booting {node} (joins through {hub})") as status:
        say = lambda msg: status.update(f"Lab: {node}: {msg}")  # noqa: E731
        lab.boot_image(node, image, ipv4=None, ipv6=None, host_key=None, user=site.settings.admin_user,
                       identity=labsite.admin_identity(site), progress=say, card_files=card_files)
        if args.no_wait:
            out.print(f"Node {node} is booting in lab {lab.name} and joins through {hub}; its console: "
                      f"{lab.dir / 'nodes' / node}/console.log")
            return 0
        say(f"waiting for {hub} to admit it")
        deadline = time.monotonic() + JOIN_TIMEOUT
        joined = None
        while joined is None:
            if time.monotonic() > deadline:
                raise MeshsteadError("image", f"{hub} did not admit {node} within {JOIN_TIMEOUT // 60} min; last "
                                     f"console line: {lab.console(node)!r}")
            time.sleep(5)
            joined = _joined_at_hub(lab, hub, node)
        lab.set_address(node, **lab_addresses(site, joined))
        say(f"admitted as {joined['node_mesh_ipv4']}; waiting for its first boot")
        report = wait_first_boot(lab, node, say)
    return _boot_result(directory, node, report)


def _boot_result(directory, node: str, report: dict) -> int:
    ok = report.get("status") == "ok"
    colour = "green" if ok else "red"
    out.print(f"Node {node}: first boot [{colour}]{report.get('status')}[/] in {report.get('duration_s', 0):.0f} s"
              + (f": {report.get('error')}" if report.get("error") else ""))
    for task in report.get("failed_tasks") or []:
        err.print(f"  failed: {task.get('task')}: {task.get('msg')}", markup=False)
    out.print(f"Try: meshstead lab exec {node} --site {directory} -- cat /var/lib/meshstead/firstboot.json")
    return 0 if ok else 1


def cmd_lab_boot(args) -> int:
    from ..lab import vm
    from ..load import load_site
    directory = site_dir(args)
    site = load_site(directory)
    image = Path(args.image)
    if not image.is_file():
        raise MeshsteadError("image", f"{image} does not exist; expected an image from `meshstead image build`")
    if is_radio(lab_for(site)):
        raise MeshsteadError("image", "the site has a radio lab; images boot on a container lab's switch "
                             "(`meshstead lab down` first)")
    if image.name.endswith(".zst"):
        # Its partitions are read before it is written to the node's card: read them uncompressed.
        with tempfile.TemporaryDirectory(prefix="meshstead-boot-", dir=image.parent) as tmp:
            raw = Path(tmp) / image.name.removesuffix(".zst")
            vm.run(["zstd", "-q", "-d", "-o", str(raw), str(image)], what="decompressing the image")
            args.image = str(raw)
            return cmd_lab_boot(args)
    seed = vm.image_seed(image)
    if seed is None:
        return _boot_generic(args, directory, site, image)
    if args.invite:
        raise MeshsteadError("invite", f"{image} is a node's image (it has a seed); --invite is for a generic image")
    if seed.get("site_id") != site.settings.site_id:
        raise MeshsteadError("image", f"{image} is for site {seed.get('site_name')!r}, not this site "
                             f"({site.settings.name}); expected an image built with --site {directory}")
    node = seed["node"]
    if node not in site.nodes:
        raise MeshsteadError("image", f"{image} is for node {node}, which the site does not have")
    if site.nodes[node].platform != "amd64":  # the lab's QEMU is a UEFI PC
        raise MeshsteadError("image", f"{image} is for {site.nodes[node].platform} node {node}; expected an amd64 "
                             "image (an rpi image boots under qemu -M virt in tests/vm/test_rpi_image.py)")
    lab = lab_for(site)
    addresses = lab_addresses(site, site.node_facts(site.nodes[node]))
    with err.status(f"Lab: booting {node}") as status:
        say = lambda msg: status.update(f"Lab: {node}: {msg}")  # noqa: E731
        conn = lab.boot_image(node, image, **addresses, user=site.settings.admin_user,
                              identity=labsite.admin_identity(site), progress=say)
        labsite.write_lab_vars(directory, {node: conn}, image=True)
        if args.no_wait:
            out.print(f"Node {node} is booting in lab {lab.name}; its console: {lab.dir / 'nodes' / node}"
                      "/console.log")
            return 0
        report = wait_first_boot(lab, node, say)
    return _boot_result(directory, node, report)


def register(sub, site_option) -> None:
    lab = sub.add_parser("lab", help="a local lab of node containers, or of nodes with simulated radios"
                         ).add_subparsers(dest="lab_command", required=True)
    up = lab.add_parser("up", parents=[site_option], help="boot the site's nodes as containers, or with "
                        "--radio in a QEMU guest with simulated Wi-Fi (makes a default site if none)")
    up.add_argument("--nodes", type=int, help="number of nodes (default: all of the site's, or 3 for a new site)")
    up.add_argument("--radio", action="store_true", help="nodes with simulated Wi-Fi radios (mac80211_hwsim) "
                    "meshing over 802.11s/IBSS and batman-adv, inside a QEMU guest")
    up.add_argument("--blank", type=int, metavar="N", help="also N blank nodes (blank1…): what the generic "
                    "image holds and no site; each joins with an invite (docs/invites.md)")
    up.add_argument("--topology", choices=TOPOLOGIES, help="which radio links exist (with --radio; "
                    "default full; diamond: n0-n1-n3 and n0-n2-n3, 4 nodes)")
    add_vault_option(up)
    up.set_defaults(func=cmd_lab_up)
    status = lab.add_parser("status", parents=[site_option], help="show the lab's nodes (and radio links)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_lab_status)
    link = lab.add_parser("link", parents=[site_option], help="cut or restore a radio link (radio lab)",
                          usage="meshstead lab link NODE NODE {up,down} [--site SITE]")
    link.add_argument("a", metavar="NODE")
    link.add_argument("b", metavar="NODE")
    link.add_argument("state", choices=("up", "down"))
    link.set_defaults(func=cmd_lab_link)
    lab.add_parser("down", parents=[site_option], help="remove everything lab up created (the site stays)"
                   ).set_defaults(func=cmd_lab_down)
    boot = lab.add_parser("boot", parents=[site_option], help="boot a node's flashed image under QEMU on the "
                          "lab's switch, as a lab node, and wait for its first boot")
    boot.add_argument("image", help="an image from `meshstead image build` (.img or .img.zst)")
    boot.add_argument("--no-wait", action="store_true", help="return once it is powered on")
    boot.add_argument("--invite", metavar="FILE", help="a generic image: put this invite (its .txt) on the node's "
                      "card first, as a person would")
    boot.set_defaults(func=cmd_lab_boot)
    lexec = lab.add_parser("exec", parents=[site_option], help="run a command inside a lab node",
                           usage="meshstead lab exec NODE [--site SITE] -- COMMAND [ARG ...]")
    lexec.add_argument("node")
    lexec.set_defaults(func=cmd_lab_exec, passthrough_allowed=True)
