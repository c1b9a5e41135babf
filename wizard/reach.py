"""Who reaches whom, by name, over each overlay: measured from inside the nodes
and shown as a matrix, because a picture of the mesh reads faster than logs."""

from rich.table import Table

OVERLAY_NAMES = {"tinc": "{node}.tinc.{domain}", "yggdrasil": "{node}.ygg.{domain}"}


def matrix(lab, site, attempts: int = 3, names=None, involving: str | None = None) -> dict:
    """{(src, dst, overlay): True/False} from `ping` by DNS name inside src;
    between the site's nodes, or the lab nodes `names` (a node that joined at
    a hub is not the controller's until `node import`); with `involving`,
    only the pairs to and from that node."""
    names = list(names) if names is not None else [n.name for n in site.sorted_nodes()]
    result = {}
    for overlay in site.settings.overlay:
        for src in names:
            for dst in names:
                if src == dst or involving not in (None, src, dst):
                    continue
                target = OVERLAY_NAMES[overlay].format(node=dst, domain=site.settings.domain)
                ok = False
                for _ in range(attempts):
                    proc = lab.exec_capture(src, ["ping", "-c", "1", "-W", "2", target], timeout=15)
                    if proc.returncode == 0:
                        ok = True
                        break
                result[(src, dst, overlay)] = ok
    return result


def table(results: dict) -> Table:
    nodes = sorted({src for src, _, _ in results} | {dst for _, dst, _ in results})
    overlays = sorted({ov for _, _, ov in results})
    grid = Table(title="Ping by name (row → column)", show_lines=True)
    grid.add_column("from \\ to")
    for node in nodes:
        grid.add_column(node, justify="center")
    for src in nodes:
        cells = []
        for dst in nodes:
            if src == dst:
                cells.append("·")
                continue
            cells.append(" ".join(f"[{'green' if results[(src, dst, ov)] else 'red'}]{ov} "
                                  f"{'✔' if results[(src, dst, ov)] else '✘'}[/]" for ov in overlays))
        grid.add_row(src, *cells)
    return grid
