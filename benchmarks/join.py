"""How long a node takes to join by invite, in the container lab: from
starting the join on a blank node (`meshstead-firstboot --invite TEXT`,
what the generic image holds) until every node reaches it by name over
tinc and Yggdrasil and it reaches every node, with no `provision`, pinged
while the join runs. Each join also reports when the node's own first boot
was `ok` (its whole run of the roles). Median of
--joins joins, one after another, each on a new blank node; and the
invite's size in characters and QR version.

    python benchmarks/join.py [--joins 5] [--growing] [--keep]

Needs root (the lab). A 3-node site (node1 the hub) is made in a temporary
directory and provisioned first. Before each join every running node has
finished applying rosters. Every lab node shares this machine's CPUs: while
the new node configures itself, each running node of the site applies the
hub's roster with the roles too, each run competing with the new node's for
the same two cores (on real nodes each has its own). So that every join
meets the same site, a joined node is powered off once measured (a node that
joined and left; it stays in the site and its rosters); with --growing it
keeps running and the k-th join has 2 + k runs competing with its own. The
table says how many and where the new node's own run spent its time (its
first-boot events). Prints figures; asserts nothing."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from wizard import labsite, reach  # noqa: E402
from wizard.invites import qr  # noqa: E402
from wizard.lab import open_lab  # noqa: E402
from wizard.load import load_site  # noqa: E402

REACH_TIMEOUT = 900
SETTLE_TIMEOUT = 600


def cli(env: dict, *args, timeout=3600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "wizard.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"meshstead {' '.join(map(str, args[:3]))} failed:\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return proc


def settle(lab, nodes: list[str]) -> None:
    """Wait until no node is applying a roster (the last join's, or a timer's)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        states = [lab.exec_capture(n, ["systemctl", "is-active", "meshstead-roster.service"], timeout=30).stdout.strip()
                  for n in nodes]
        if not any(state in ("active", "activating", "reloading") for state in states):
            return
        time.sleep(2)


def own_run(lab, node: str) -> tuple[float | None, str]:
    """How long the node's own run of the roles took, and its three slowest tasks."""
    shown = lab.exec_capture(node, ["cat", "/var/lib/meshstead/firstboot.events"], timeout=30)
    marks = []
    for line in shown.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "at" in event:
            marks.append(event)
    if len(marks) < 2:
        return None, ""
    spans = sorted(((b["at"] - a["at"], a.get("name", "")) for a, b in zip(marks, marks[1:], strict=False)),
                   reverse=True)
    return marks[-1]["at"], ", ".join(f"{name} {seconds:.0f} s" for seconds, name in spans[:3])


def through(lab, pool: ThreadPoolExecutor, wanted: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs whose ping gets through, pinged at once (a pair that does not waits a second)."""
    return [pair for pair, ok in zip(wanted, pool.map(lambda pair: reach.pings(lab, *pair, wait=1), wanted),
                                     strict=True) if ok]


def one_join(env: dict, site_dir: Path, blank: str, name: str, work: Path, earlier: list[str]) -> dict:
    """`earlier`: the joined nodes still running.

    Reachability is measured while the join runs, not after it: the node is
    reached as soon as its overlays and names are up, which its own run of
    the roles does before Syncthing, NNCP and the firewall. A pair counts from
    its first ping through; once the join is over every pair is pinged again,
    and a pair that no longer gets through is polled until it does (the time
    is then when it did)."""
    cli(env, "invite", "create", name, "--platform", "amd64", "--site", site_dir, "--out", work)
    text = (work / f"{name}-invite.txt").read_text().strip()
    site = load_site(site_dir)
    lab = open_lab(labsite.lab_name(site))
    names = [n.name for n in site.sorted_nodes()] + [name]
    settle(lab, [n.name for n in site.sorted_nodes()] + earlier)
    # (lab node, DNS name): the new node pings from its lab node, which the
    # lab knows by its site name only once it has joined.
    waiting = [(blank if src == name else src, target) for src, _, _, target in reach.pairs(site, names, name)]
    first: dict[tuple[str, str], float] = {}
    started = time.monotonic()
    output = work / f"{name}-join.log"
    with open(output, "w") as log:
        joining = subprocess.Popen([sys.executable, "-m", "wizard.cli", "lab", "exec", blank, "--site",
                                    str(site_dir), "--", "meshstead-firstboot", "--invite", text], cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    configured = None
    pool = ThreadPoolExecutor(max_workers=len(waiting))
    while time.monotonic() - started < REACH_TIMEOUT:
        if configured is None and joining.poll() is not None:
            configured = time.monotonic() - started
            if joining.returncode != 0:
                raise SystemExit(f"the join on {blank} failed:\n{output.read_text()[-2000:]}")
            # The node's run is over: every pair again, as the node now stays.
            kept = through(lab, pool, list(first))
            waiting += [pair for pair in first if pair not in kept]
            first = {pair: first[pair] for pair in kept}
        if configured is not None and not waiting:
            break
        got = through(lab, pool, waiting)
        polled = time.monotonic() - started  # the poll's end: never earlier than the truth
        for pair in got:
            first[pair] = polled
            waiting.remove(pair)
        time.sleep(0.5)
    pool.shutdown()
    if configured is None:
        joining.kill()
        raise SystemExit(f"the join on {blank} did not end within {REACH_TIMEOUT} s")
    reached = max(first.values()) if not waiting else None
    roles_s, slowest = own_run(lab, name)
    return {"node": name, "chars": len(text), "qr": qr.code(text).version, "configured_s": configured,
            "reached_s": reached, "appliers": len(site.nodes) + len(earlier), "roles_s": roles_s,
            "slowest": slowest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=5)
    parser.add_argument("--growing", action="store_true",
                        help="keep each joined node running: every join meets one more running node")
    parser.add_argument("--keep", action="store_true", help="leave the lab and the site (printed) afterwards")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshstead-bench-join-"))
    env = {"XDG_CONFIG_HOME": str(work / "config"), "XDG_CACHE_HOME": str(work / "cache"), "HOME": str(work)}
    site_dir = work / "site"
    # Wide when written to a file or pipe, where rich would fold the table into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        started = time.monotonic()
        cli(env, "lab", "up", "--site", site_dir, "--nodes", "3", "--blank", str(args.joins))
        console.print(f"lab up with {args.joins} blank node(s): {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        cli(env, "provision", "--site", site_dir)
        console.print(f"provision: {time.monotonic() - started:.0f} s")
        rows = []
        running = []
        for k in range(1, args.joins + 1):
            rows.append(one_join(env, site_dir, f"blank{k}", f"joiner{k}", work, running))
            row = rows[-1]
            console.print(f"{row['node']}: ok after {row['configured_s']:.1f} s, reached by every node after "
                          f"{'-' if row['reached_s'] is None else format(row['reached_s'], '.1f')} s")
            if args.growing:
                running.append(row["node"])
            else:  # once it has applied what it joined with, as the next join's wait does for the others
                lab = open_lab(labsite.lab_name(load_site(site_dir)))
                settle(lab, [row["node"]])
                lab.stop_node(f"blank{k}")
    finally:
        if args.keep:
            console.print(f"kept: the site {site_dir}, its lab (meshstead lab down --site {site_dir})")
        else:
            subprocess.run([sys.executable, "-m", "wizard.cli", "lab", "down", "--site", str(site_dir)], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, check=False)
    table = Table(title="Join by invite: a blank node, 3 provisioned nodes (container lab"
                  + (", joined nodes kept running)" if args.growing else ", each joined node powered off after)"))
    for column in ("node", "invite chars", "QR version", "nodes applying the roster", "first boot ok (s)",
                   "its roles (s)", "every node reaches it (s)", "its slowest tasks"):
        table.add_column(column, justify="left" if column == "its slowest tasks" else "right")
    for row in rows:
        table.add_row(row["node"], str(row["chars"]), str(row["qr"]), str(row["appliers"]),
                      f"{row['configured_s']:.1f}", "-" if row["roles_s"] is None else f"{row['roles_s']:.1f}",
                      "not within 15 min" if row["reached_s"] is None else f"{row['reached_s']:.1f}",
                      row["slowest"])
    console.print(table)
    done = [r["reached_s"] for r in rows if r["reached_s"] is not None]
    if done:
        console.print(f"median join → every node reaches it by name: {statistics.median(done):.1f} s "
                      f"(target ≤ 60 s; {len(done)}/{len(rows)} joins reached); median first boot ok: "
                      f"{statistics.median(r['configured_s'] for r in rows):.1f} s")


if __name__ == "__main__":
    main()
