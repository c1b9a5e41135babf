"""Who reaches whom, by name, over each overlay: measured from inside the nodes
and shown as a matrix, because a picture of the mesh reads faster than logs."""

import subprocess
import time

from rich.table import Table

OVERLAY_NAMES = {"tinc": "{node}.tinc.{domain}", "yggdrasil": "{node}.ygg.{domain}"}


def pairs(site, names=None, involving: str | None = None) -> list[tuple[str, str, str, str]]:
    """(src, dst, overlay, dst's DNS name on it) for every ping by name between
    the site's nodes, or the lab nodes `names` (a node that joined at a hub is
    not the controller's until `node import`); with `involving`, only the
    pairs to and from that node."""
    names = list(names) if names is not None else [n.name for n in site.sorted_nodes()]
    return [(src, dst, overlay, OVERLAY_NAMES[overlay].format(node=dst, domain=site.settings.domain))
            for overlay in site.settings.overlay for src in names for dst in names
            if src != dst and involving in (None, src, dst)]


def pings(lab, src: str, target: str, wait: int = 2) -> bool:
    """One ping from inside lab node `src`, answered within `wait` seconds.
    A ping that is still looking up the name (a resolver that cannot reach
    its server waits 5 s per try) is cut off, and counts as unreached."""
    try:
        return lab.exec_capture(src, ["ping", "-c", "1", "-W", str(wait), target], timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def matrix(lab, site, within: float = 10, names=None, involving: str | None = None) -> dict:
    """{(src, dst, overlay): True/False} from `ping` by DNS name inside src,
    for the pairs() of `names` and `involving`: every pair is pinged, then the
    ones that failed again, a second apart, until `within` seconds have passed.
    An overlay whose peer just (re)connected answers "unreachable" at once for
    a few seconds, so a count of attempts would be over before it settles."""
    wanted = {(src, dst, overlay): target for src, dst, overlay, target in pairs(site, names, involving)}
    results = dict.fromkeys(wanted, False)
    deadline = time.monotonic() + within
    while True:
        for key in [key for key, ok in results.items() if not ok]:
            results[key] = pings(lab, key[0], wanted[key])
        if all(results.values()) or time.monotonic() >= deadline:
            return results
        time.sleep(1)


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
