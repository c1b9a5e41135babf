"""`meshstead demo`: a 3-node site in the lab, provisioned: the quickest look at a working mesh."""

from .. import demokey, sites
from ..errors import MeshsteadError
from .lab import lab_up
from .node import show_nodes
from .output import add_vault_option, out, progress_bar, site_dir
from .provision import run_provision
from .site import finish

DEMO_NODES = (("hilltop", "rpi4", ["hub", "dns"]), ("cabin", "rpi3", []), ("barn", "pizero2w", []))


def cmd_demo(args) -> None:
    from .. import reach
    directory = site_dir(args)
    opened = sites.init(directory, {"admin_ssh_key": demokey.admin_key()}, {}, interactive=False,
                        vault_override=args.vault_password_file)
    missing = [spec for spec in DEMO_NODES if spec[0] not in opened.site.nodes]
    if missing:
        with progress_bar("Generating identities", len(missing)) as step:
            sites.add_nodes(opened, missing, step)
    finish(opened, False)
    show_nodes(opened.site)
    lab = lab_up(opened, None)
    outcome = run_provision(opened)
    if outcome.returncode != 0:
        raise MeshsteadError("provision", f"ansible-playbook failed (exit {outcome.returncode}); "
                             f"full log: {outcome.log}")
    out.print(reach.table(reach.matrix(lab, opened.site)))


def register(sub, site_option) -> None:
    demo = sub.add_parser("demo", parents=[site_option], help="make (or reuse) a 3-node demo site, boot it "
                          "in the lab, provision it and show who reaches whom")
    add_vault_option(demo)
    demo.set_defaults(func=cmd_demo)
