"""How long provisioning takes on the lab: first run, no-op re-run with
meshstead's Ansible settings, the same no-op under plain Ansible defaults (no
pipelining, no ControlPersist, default forks, no fact caching), and the no-op
cost per node at 3 and 10 nodes. All measured in the same run.

    python benchmarks/provision.py [--small 3] [--large 10] [--repeat 3] [--no-plain] [--keep]

The no-op run with meshstead's settings is repeated (--repeat) and reported as
median and range: on a shared 2-core machine one sample varies by 15 %.

Needs root (the lab). Prints plain figures; asserts nothing."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wizard.provision import events_path, summary  # noqa: E402


def cli(*args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "wizard.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"meshstead {' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed_provision(site: Path, env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    cli("provision", "--site", site, env=env)
    elapsed = time.perf_counter() - start
    log = next((Path(env["XDG_CACHE_HOME"]) / "meshstead").glob("provision-*.log"))
    changed = sum(row.changed for row in summary(events_path(log)).values())
    return elapsed, changed


def plain_defaults_env(env: dict, base: Path) -> dict:
    cfg = base / "plain.cfg"
    # Plain settings, plus the callback meshstead reads the run from.
    cfg.write_text(f"[defaults]\nroles_path = {ROOT / 'roles'}\nhost_key_checking = True\n"
                   f"callback_plugins = {ROOT / 'plugins' / 'callback'}\ncallbacks_enabled = meshstead_events\n")
    plain = dict(env, ANSIBLE_CONFIG=str(cfg), ANSIBLE_PIPELINING="False", ANSIBLE_SSH_ARGS="",
                 ANSIBLE_FORKS="5", ANSIBLE_GATHERING="implicit", ANSIBLE_CACHE_PLUGIN="memory",
                 MESHSTEAD_PLAIN="1")
    return plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=3)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs with meshstead's settings")
    parser.add_argument("--no-plain", action="store_true", help="skip the run under plain Ansible defaults")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="meshstead-bench-"))
    env = dict(os.environ, XDG_CONFIG_HOME=str(base / "config"), XDG_CACHE_HOME=str(base / "cache"),
               HOME=str(base))
    site = base / "site"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "admin")], check=True)
    cli("init", site, "--defaults", "--set", f"admin_ssh_key={base / 'admin.pub'}", env=env)
    for i in range(1, args.small + 1):
        cli("node", "add", f"node{i}", *(["--role", "hub"] if i == 1 else []), "--site", site, env=env)
    try:
        start = time.perf_counter()
        cli("lab", "up", "--site", site, env=env)
        print(f"lab up, {args.small} nodes: {time.perf_counter() - start:.1f} s")
        first, changed = timed_provision(site, env)
        print(f"first provisioning, {args.small} nodes: {first:.1f} s ({changed} changes)")
        runs = [timed_provision(site, env) for _ in range(max(1, args.repeat))]
        times = sorted(elapsed for elapsed, _ in runs)
        noop = statistics.median(times)
        print(f"no-op re-provisioning, {args.small} nodes, meshstead settings: median {noop:.1f} s "
              f"of {len(times)} runs ({times[0]:.1f}-{times[-1]:.1f} s; changes {[c for _, c in runs]})")
        if not args.no_plain:
            plain, changed = timed_provision(site, plain_defaults_env(env, base))
            print(f"no-op re-provisioning, {args.small} nodes, plain Ansible defaults: {plain:.1f} s "
                  f"({changed} changes)")
            print(f"speed-up over defaults: {plain / noop:.2f}x")
        if args.large > args.small:
            for i in range(args.small + 1, args.large + 1):
                cli("node", "add", f"node{i}", "--site", site, env=env)
            cli("lab", "up", "--site", site, env=env)
            first_large, _ = timed_provision(site, env)
            print(f"provisioning after growing to {args.large} nodes: {first_large:.1f} s")
            noop_large, changed = timed_provision(site, env)
            print(f"no-op re-provisioning, {args.large} nodes: {noop_large:.1f} s ({changed} changes)")
            print(f"no-op per node: {noop / args.small:.2f} s at {args.small} nodes, "
                  f"{noop_large / args.large:.2f} s at {args.large} nodes")
    finally:
        if not args.keep:
            cli("lab", "down", "--site", site, env=env, check=False)


if __name__ == "__main__":
    main()
