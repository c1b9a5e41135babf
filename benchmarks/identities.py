"""How long node identities take: ours (in-process, wizard.identity.node.generate_many)
against the reference tools run as one subprocess each per node and program
(`tincd -K`, `syncthing generate`, `nncp-cfgnew`, `yggdrasil -genconf`,
`ssh-keygen -t ed25519`), measured in the same run.

    python benchmarks/identities.py [--nodes 100] [--big 1000] [--workers N]

Both sides use the same number of workers (default: the CPU count; ours spreads
nodes over processes, the reference runs that many nodes' tool chains at once).
Prints plain figures; asserts nothing. The reference tools must be installed."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wizard.identity import node as node_identity  # noqa: E402

TOOLS = ("tincd", "syncthing", "nncp-cfgnew", "yggdrasil", "ssh-keygen")


def fqdns(count: int, tag: str) -> list[str]:
    return [f"n{i}-{tag}.bench.internal" for i in range(count)]


def ours(count: int) -> float:
    start = time.perf_counter()
    results = node_identity.generate_many(fqdns(count, "ours"))
    elapsed = time.perf_counter() - start
    assert len(results) == count  # noqa: S101 - sanity, not a benchmark assertion
    return elapsed


def _quiet(cmd: list[str], **kwargs) -> None:
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120, **kwargs)


def reference_node(base: Path, index: int, env: dict) -> dict[str, float]:
    """Every program's own key generation for one node; seconds per tool."""
    here = base / f"n{index}"
    times = {}

    def timed(tool: str, cmd: list[str], **kwargs) -> None:
        start = time.perf_counter()
        _quiet(cmd, **kwargs)
        times[tool] = time.perf_counter() - start

    tinc = here / "tinc"
    (tinc / "hosts").mkdir(parents=True)
    (tinc / "tinc.conf").write_text(f"Name = n{index}\n")
    timed("tincd -K", ["tincd", "-c", str(tinc), "-K2048"])
    timed("syncthing generate", ["syncthing", "generate", f"--home={here / 'syncthing'}", "--no-default-folder",
                                 "--skip-port-probing"], env=env)
    with open(here / "nncp.hjson", "wb") as out:
        start = time.perf_counter()
        subprocess.run(["nncp-cfgnew"], check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL,
                       timeout=120)
        times["nncp-cfgnew"] = time.perf_counter() - start
    with open(here / "yggdrasil.conf", "wb") as out:
        start = time.perf_counter()
        subprocess.run(["yggdrasil", "-genconf", "-json"], check=True, stdin=subprocess.DEVNULL, stdout=out,
                       stderr=subprocess.DEVNULL, timeout=120)
        times["yggdrasil -genconf"] = time.perf_counter() - start
    timed("ssh-keygen", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@n{index}",
                         "-f", str(here / "ssh_host_ed25519_key")])
    return times


def reference(count: int, workers: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="meshstead-bench-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "STNOUPGRADE": "1", "HOME": tmp}
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            per_node = list(pool.map(lambda i: reference_node(base, i, env), range(count)))
        elapsed = time.perf_counter() - start
    totals = {tool: sum(t[tool] for t in per_node) for tool in per_node[0]}
    return elapsed, totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100, help="site size for the comparison (default 100)")
    parser.add_argument("--big", type=int, default=1000, help="site size timed with ours only; 0 skips (default 1000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel nodes for the reference (ours uses the CPU count)")
    args = parser.parse_args()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"reference tools not installed: {', '.join(missing)}", file=sys.stderr)
        return 1

    print(f"cpus: {os.cpu_count()}  reference workers: {args.workers}  load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ours_time = ours(args.nodes)
    ref_time, per_tool = reference(args.nodes, args.workers)
    print(f"{args.nodes} nodes, ours (generate_many, in-process):      {ours_time:8.2f} s"
          f"  ({1000 * ours_time / args.nodes:.1f} ms/node)")
    print(f"{args.nodes} nodes, reference (5 subprocesses per node): {ref_time:8.2f} s"
          f"  ({1000 * ref_time / args.nodes:.1f} ms/node)")
    print(f"ratio reference/ours: {ref_time / ours_time:.2f}x")
    print("reference time per tool, summed over nodes (wall time of each call):")
    for tool, seconds in sorted(per_tool.items(), key=lambda kv: -kv[1]):
        print(f"  {tool:20} {seconds:8.2f} s  ({1000 * seconds / args.nodes:.1f} ms/node)")
    if args.big:
        big_time = ours(args.big)
        print(f"{args.big} nodes, ours: {big_time:8.2f} s  ({1000 * big_time / args.big:.1f} ms/node)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
