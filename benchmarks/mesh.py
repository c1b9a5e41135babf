"""The mesh itself, measured on the labs: how soon a freshly started radio mesh
carries a two-hop ping, how fast it heals when a next hop goes (for the default
originator interval and a faster one, with the OGM traffic each costs), batman-adv
throughput over one and two hops; and, on a container lab with the link shaped
by tc, TCP throughput over tinc and Yggdrasil as a share of the raw link.

    python benchmarks/mesh.py [--radio-only | --container-only] [--reps 5] [--fast-ms 250]
                              [--rate 50] [--megabytes 30] [--json]

Radio part: a 4-node diamond radio lab (n0-n1-n3, n0-n2-n3) made and provisioned
by meshstead (802.11s + SAE, bat0 by networkd). Container part: a 2-node container
lab provisioned by meshstead, lab link shaped to --rate Mbit/s in both directions.
Targets (issue): heal <= 2 s median; each overlay >= 85 % of the shaped raw link.

Needs root (the labs); run heavy runs one at a time:
    flock /tmp/meshstead-heavy.lock python benchmarks/mesh.py
Every figure is measured in the run that prints it; nothing is asserted."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from wizard import labsite  # noqa: E402
from wizard.lab import open_lab  # noqa: E402
from wizard.load import load_site  # noqa: E402

RADIO_NODES = ["n0", "n1", "n2", "n3"]
MAC = r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}"
HEAL_TARGET_S = 2.0
OVERLAY_TARGET = 0.85
BENCH_PORT = 5299  # opened by a temporary nft rule on the receiving node only
err = Console(stderr=True, soft_wrap=True)


def say(msg: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", highlight=False)


def cli(*args, env, timeout=7200, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "wizard.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"meshstead {' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def sh(lab, node: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return lab.exec_capture(node, ["sh", "-c", script], timeout=timeout)


def check_sh(lab, node: str, script: str, timeout: float = 60) -> str:
    proc = sh(lab, node, script, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{node}: {script!r} exited {proc.returncode}: {proc.stderr.strip()[-1000:]}")
    return proc.stdout


def wait_for(check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (subprocess.TimeoutExpired, RuntimeError):
            result = None
        if result:
            return result
        time.sleep(interval)
    return None


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "samples": [round(v, 3) for v in values]}


# -- radio lab ----------------------------------------------------------------

def originator_routes(lab, node: str) -> dict[str, dict]:
    """originator MAC -> {"best": next hop, "hops": every next hop listed} from `batctl o`."""
    routes: dict[str, dict] = {}
    for line in sh(lab, node, "batctl meshif bat0 o -H").stdout.splitlines():
        macs = re.findall(MAC, line)
        if len(macs) < 2:
            continue
        entry = routes.setdefault(macs[0], {"best": None, "hops": set()})
        entry["hops"].add(macs[1])
        if line.lstrip().startswith("*"):
            entry["best"] = macs[1]
    return routes


def best_hop(lab, node: str, dest_mac: str) -> str | None:
    return originator_routes(lab, node).get(dest_mac, {}).get("best")


def first_two_hop_ping(lab, target: str) -> dict:
    """Reboot every node's systemd at once (inside the running guest) and time, on
    the guest's clock, until n0 gets an answer from n3's bat0 address."""
    nodes = " ".join(RADIO_NODES)
    script = f"""set -u
old=$(/usr/local/sbin/meshstead-node-leader n0)
t0=$(date +%s.%N)
for n in {nodes}; do /usr/local/sbin/meshstead-node-exec $n systemctl reboot >/dev/null 2>&1 & done
wait
end=$(( $(date +%s) + 600 ))
while :; do
  now=$(/usr/local/sbin/meshstead-node-leader n0 2>/dev/null || true)
  if [ -n "$now" ] && [ "$now" != "$old" ]; then
    [ -n "${{up:-}}" ] || up=$(date +%s.%N)
    /usr/local/sbin/meshstead-node-exec n0 ping -n -c 1 -W 1 {target} >/dev/null 2>&1 && break
  fi
  [ "$(date +%s)" -lt "$end" ] || {{ echo timeout; exit 1; }}
  sleep 0.2
done
echo "$t0 $up $(date +%s.%N)"
"""
    proc = lab.guest_exec_capture(["sh", "-c", script], timeout=700)
    if proc.returncode != 0:
        raise RuntimeError(f"no two-hop ping after the nodes' restart: {proc.stdout} {proc.stderr}")
    t0, n0_up, pinged = map(float, proc.stdout.split()[-3:])
    return {"seconds": pinged - t0, "n0_systemd_back_s": n0_up - t0}


def wait_mesh(lab, macs: dict, target: str, timeout: float = 300) -> None:
    def ready():
        routes = originator_routes(lab, "n0").get(macs["n3"], {})
        return (routes.get("hops", set()) >= {macs["n1"], macs["n2"]}
                and sh(lab, "n0", f"ping -n -c 1 -W 2 {target}", timeout=20).returncode == 0)
    if not wait_for(ready, timeout, interval=2):
        raise RuntimeError("n0 does not reach n3 through both n1 and n2: "
                           + sh(lab, "n0", "batctl meshif bat0 o").stdout)


def traffic(lab, node: str, seconds: float) -> dict:
    """Bytes and packets per second on wlan0 and bat0 of `node`, over `seconds`."""
    read = ("date +%s.%N; for i in wlan0 bat0; do for c in rx_bytes tx_bytes rx_packets tx_packets; do "
            "cat /sys/class/net/$i/statistics/$c; done; done")
    before = [float(x) for x in check_sh(lab, node, read).split()]
    time.sleep(seconds)
    after = [float(x) for x in check_sh(lab, node, read).split()]
    dt = after[0] - before[0]
    d = [(a - b) / dt for a, b in zip(after[1:], before[1:], strict=True)]
    return {"node": node, "seconds": round(dt, 1),
            "wlan0_bytes_per_s": d[0] + d[1], "wlan0_packets_per_s": d[2] + d[3],
            "bat0_bytes_per_s": d[4] + d[5], "bat0_packets_per_s": d[6] + d[7],
            "batman_own_bytes_per_s": (d[0] + d[1]) - (d[4] + d[5])}


HEAL_WATCH = """set -u
T={target}; D={dest}; FIRST={first}
rm -f /tmp/bench-ping.log /tmp/bench-route.log
ping -n -D -i 0.1 -W 1 $T > /tmp/bench-ping.log 2>&1 &
P=$!
end=$(( $(date +%s) + {limit} ))
switched=
while [ "$(date +%s)" -lt "$end" ]; do
  hop=$(batctl meshif bat0 o -H 2>/dev/null | grep -E "^ *\\* +$D " \\
        | grep -oE '([0-9a-f]{{2}}:){{5}}[0-9a-f]{{2}}' | sed -n 2p)
  now=$(date +%s.%N)
  echo "$now ${{hop:-none}}" >> /tmp/bench-route.log
  if [ -z "$switched" ] && [ -n "$hop" ] && [ "$hop" != "$FIRST" ]; then
    switched=$now; end=$(( $(date +%s) + 3 ))
  fi
  sleep 0.05
done
kill $P; wait $P 2>/dev/null
echo "== ping"; cat /tmp/bench-ping.log; echo "== route"; cat /tmp/bench-route.log
"""


def heal_once(lab, macs: dict, target: str) -> dict:
    """Cut n0's link to its best next hop for n3 while pinging n3 every 0.1 s;
    the route switch and the longest gap between replies, on the node's clock."""
    name_of = {mac: node for node, mac in macs.items()}
    first = best_hop(lab, "n0", macs["n3"])
    if first not in (macs["n1"], macs["n2"]):
        raise RuntimeError(f"n0's next hop to n3 is {first}, not n1 or n2")
    hop = name_of[first]
    out: dict = {}
    watcher = threading.Thread(target=lambda: out.update(proc=sh(
        lab, "n0", HEAL_WATCH.format(target=target, dest=macs["n3"], first=first, limit=90), timeout=150)))
    watcher.start()
    time.sleep(4)  # pings flowing, the route logged
    before = float(check_sh(lab, "n0", "date +%s.%N"))
    lab.link("n0", hop, up=False)
    after = float(check_sh(lab, "n0", "date +%s.%N"))
    try:
        watcher.join()
    finally:
        lab.link("n0", hop, up=True)
    text = out["proc"].stdout
    ping_part, _, route_part = text.partition("== route")
    replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\].*bytes from", ping_part, re.M)]
    routes = [(float(t), hop_mac) for t, hop_mac in re.findall(r"^(\d+\.\d+) (\S+)$", route_part, re.M)]
    if not replies or not routes:
        raise RuntimeError(f"heal: nothing logged on n0: {text[-1500:]} {out['proc'].stderr[-500:]}")
    # The cut happens while link() runs: the last reply before the longest gap
    # that starts then (clamped to the link() call) is when traffic stopped.
    gaps = [(b - a, a) for a, b in zip(replies, replies[1:], strict=False) if b > before]
    outage, gap_start = max(gaps) if gaps else (0.0, before)
    cut = min(max(gap_start, before), after)
    switch = next((t for t, h in routes if t > before and h not in ("none", first)), None)
    return {"cut": hop, "via": name_of.get(next((h for t, h in routes if t == switch), ""), None),
            "route_switch_s": None if switch is None else switch - cut, "ping_outage_s": outage,
            "link_call_s": after - before, "replies": len(replies)}


def restore_wait(lab, macs: dict, hop: str, interval_ms: int) -> bool:
    """After a link is restored: until n0 lists n3 via both n1 and n2 again, then
    until the original next hop is back (it may not be: equal paths tie)."""
    both = wait_for(lambda: originator_routes(lab, "n0").get(macs["n3"], {}).get("hops", set())
                    >= {macs["n1"], macs["n2"]}, 120, interval=1)
    if not both:
        raise RuntimeError("after restoring the link n0 never listed n3 via both n1 and n2")
    back = wait_for(lambda: best_hop(lab, "n0", macs["n3"]) == macs[hop], max(10.0, 10 * interval_ms / 1000))
    time.sleep(max(3.0, 5 * interval_ms / 1000))  # let the TQs settle
    return bool(back)


def set_interval(lab, ms: int) -> None:
    for node in RADIO_NODES:
        check_sh(lab, node, f"batctl meshif bat0 it {ms}")


def get_interval(lab, node: str = "n0") -> int:
    return int(check_sh(lab, node, "batctl meshif bat0 it").split()[0])


def heal_series(lab, macs: dict, target: str, reps: int, interval_ms: int) -> dict:
    runs = []
    for i in range(reps):
        run = heal_once(lab, macs, target)
        run["original_route_back"] = restore_wait(lab, macs, run["cut"], interval_ms)
        say(f"  interval {interval_ms} ms, rep {i + 1}/{reps}: cut n0-{run['cut']}, "
            f"route switch {_fmt(run['route_switch_s'])} s, ping outage {run['ping_outage_s']:.2f} s")
        runs.append(run)
    switched = [r["route_switch_s"] for r in runs if r["route_switch_s"] is not None]
    return {"interval_ms": interval_ms, "reps": reps, "runs": runs,
            "route_switch_s": spread(switched) if switched else None,
            "ping_outage_s": spread([r["ping_outage_s"] for r in runs]),
            "no_switch_seen": reps - len(switched)}


def tp_meter(lab, src: str, dest_mac: str, ms: int = 10000) -> dict:
    proc = sh(lab, src, f"batctl meshif bat0 tp -t {ms} {dest_mac}", timeout=ms / 1000 + 120)
    m = re.search(r"Throughput:\s*[\d.]+\s*\S+\s*\(([\d.]+)\s*([KMG]?)bps\)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"batctl tp from {src}: {proc.stdout} {proc.stderr}")
    scale = {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}[m.group(2)]
    return {"mbit_per_s": float(m.group(1)) * scale, "output": proc.stdout.strip()}


def radio_part(base: Path, env: dict, args, results: dict) -> None:
    if args.radio_site:
        return radio_measure(args.radio_site, args, results.setdefault("radio", {"reused_site": True}))
    site_dir = base / "radio-site"
    r = results["radio"] = {}
    try:
        # The mesh, the overlays and DNS, as the vm tests provision them: Syncthing
        # and NNCP add half an hour of emulated-CPU tasks and nothing to these figures.
        answers = base / "radio-answers.yml"
        answers.write_text(json.dumps({"name": "radio-site", "services": [], "nodes": [
            {"name": "n0", "roles": ["hub", "dns"]}, {"name": "n1"}, {"name": "n2"}, {"name": "n3"}]}))
        key = base / "radio-admin"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        cli("init", site_dir, "--answers", answers, "--set", f"admin_ssh_key={key}.pub", env=env)
        say("radio lab up: 4 nodes, diamond (QEMU guest under TCG)")
        t = time.monotonic()
        cli("lab", "up", "--radio", "--topology", "diamond", "--site", site_dir, env=env)
        r["lab_up_s"] = time.monotonic() - t
        say(f"lab up in {r['lab_up_s']:.0f} s; provisioning")
        t = time.monotonic()
        # SSH into a TCG guest's nodes on a loaded host can take longer than
        # Ansible's 10 s connect timeout; a second run converges the rest.
        slow = {**env, "ANSIBLE_TIMEOUT": "60"}
        if cli("provision", "--site", site_dir, env=slow, check=False).returncode != 0:
            say("provisioning did not finish; running it once more")
            r["provision_retried"] = True
            cli("provision", "--site", site_dir, env=slow)
        r["provision_s"] = time.monotonic() - t
        say(f"provisioned in {r['provision_s']:.0f} s")
        radio_measure(site_dir, args, r)
    finally:
        say("radio lab down")
        if (site_dir / "group_vars").exists():
            cli("lab", "down", "--site", site_dir, env=env, timeout=900, check=False)


def radio_measure(site_dir: Path, args, r: dict) -> None:
    """Every radio figure, on a diamond site whose lab is up and provisioned."""
    site = load_site(site_dir)
    lab = open_lab(labsite.lab_name(site))
    facts = {n: site.node_facts(site.nodes[n]) for n in RADIO_NODES}
    target = facts["n3"]["node_mesh_ipv4"]
    macs = {n: check_sh(lab, n, "cat /sys/class/net/wlan0/address").strip() for n in RADIO_NODES}
    cpu = lab.guest_exec_capture(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo; nproc"], timeout=30)
    r["guest_cpu"] = " ".join(cpu.stdout.split())
    say("waiting for the mesh")
    wait_mesh(lab, macs, target)

    say("restarting all four nodes: node start to first n0->n3 ping")
    r["first_two_hop_ping"] = first_two_hop_ping(lab, target)
    r["first_two_hop_ping"]["measured"] = (
        "all four nodes' systemd rebooted at once in the running guest (provisioned mesh: "
        "wpa_supplicant SAE, networkd bat0), guest clock, until n0 pings n3's bat0 address")
    wait_mesh(lab, macs, target)

    default_ms = get_interval(lab)
    r["heal"] = []
    r["ogm"] = []
    try:
        for ms in (default_ms, args.fast_ms):
            if ms != get_interval(lab):
                set_interval(lab, ms)
                time.sleep(max(5.0, 10 * ms / 1000))
                wait_mesh(lab, macs, target)
            say(f"originator interval {ms} ms: traffic on n1's wlan0 without user traffic "
                f"({args.idle:.0f} s)")
            r["ogm"].append({"interval_ms": ms, **traffic(lab, "n1", args.idle)})
            say(f"originator interval {ms} ms: {args.reps} heal repetitions")
            r["heal"].append(heal_series(lab, macs, target, args.reps, ms))
    finally:
        set_interval(lab, default_ms)
    r["interval_restored_ms"] = get_interval(lab)

    wait_mesh(lab, macs, target)
    say("batctl tp: n0->n1 (one hop), n0->n3 (two hops)")
    route = best_hop(lab, "n0", macs["n3"])
    r["throughput"] = {
        "one_hop_n0_n1": tp_meter(lab, "n0", macs["n1"]),
        "two_hops_n0_n3": {**tp_meter(lab, "n0", macs["n3"]),
                           "via": {m: n for n, m in macs.items()}.get(route)},
        "note": "TCG (emulated CPU): batman-adv throughput here is bound by the guest's CPU, not the radio",
    }


# -- container lab ------------------------------------------------------------

RECEIVER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(1)
s.settimeout(float(sys.argv[2]))
c, _ = s.accept()
c.settimeout(60)
total, start = 0, None
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if start is None:
        start = time.monotonic()
    total += len(b)
print(total, time.monotonic() - start)
"""

SENDER = r"""
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 20
while True:
    try:
        c = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
chunk = b"\0" * (1 << 16)
sent = 0
while sent < size:
    sent += c.send(chunk[: min(len(chunk), size - sent)])
c.shutdown(socket.SHUT_WR)
c.recv(1)
"""


CPU_TICKS = ("for p in $(pidof {daemon}); do awk '{{print $14 + $15}}' /proc/$p/stat; done | "
             "awk '{{s += $1}} END {{print s + 0}}'; getconf CLK_TCK")


def daemon_cpu(lab, node: str, daemon: str) -> float:
    """CPU seconds the overlay daemon on `node` has used so far."""
    ticks, hz = check_sh(lab, node, CPU_TICKS.format(daemon=daemon)).split()
    return float(ticks) / float(hz)


def tcp_throughput(lab, src: str, dst: str, address: str, size: int) -> tuple[float, float]:
    """Mbit/s of one TCP transfer src -> dst:address, timed at the receiver, and its seconds."""
    out: dict = {}
    receiver = threading.Thread(target=lambda: out.update(proc=lab.exec_capture(
        dst, ["python3", "-c", RECEIVER, str(BENCH_PORT), "60"], timeout=300)))
    receiver.start()
    time.sleep(1)
    sent = lab.exec_capture(src, ["python3", "-c", SENDER, address, str(BENCH_PORT), str(size)], timeout=300)
    receiver.join()
    got = out["proc"]
    if sent.returncode != 0 or got.returncode != 0:
        raise RuntimeError(f"transfer to {address}: {sent.stderr[-800:]} {got.stderr[-800:]}")
    received, seconds = got.stdout.split()
    if int(received) != size:
        raise RuntimeError(f"transfer to {address}: {received} of {size} bytes")
    return int(received) * 8 / float(seconds) / 1e6, float(seconds)


def path_mtu(lab, node: str, address: str) -> dict:
    """The interface (and its MTU) `node` sends to `address` through."""
    dev = re.search(r"\bdev (\S+)", sh(lab, node, f"ip route get {address}").stdout)
    if not dev:
        return {"interface": None, "mtu": None}
    mtu = sh(lab, node, f"cat /sys/class/net/{dev.group(1)}/mtu").stdout.strip()
    return {"interface": dev.group(1), "mtu": int(mtu) if mtu.isdigit() else None}


def container_part(base: Path, env: dict, args, results: dict) -> None:
    site_dir = base / "container-site"
    c = results["container"] = {"rate_mbit": args.rate, "megabytes": args.megabytes, "runs": args.runs}
    lab = None
    try:
        say("container lab up: 2 nodes")
        t = time.monotonic()
        cli("lab", "up", "--site", site_dir, "--nodes", "2", env=env)
        c["lab_up_s"] = time.monotonic() - t
        site = load_site(site_dir)
        lab = open_lab(labsite.lab_name(site))
        say(f"lab up in {c['lab_up_s']:.0f} s; provisioning")
        t = time.monotonic()
        cli("provision", "--site", site_dir, env=env)
        c["provision_s"] = time.monotonic() - t
        dst = site.node_facts(site.nodes["node2"])
        paths = {"raw": dst["node_mesh_ipv4"], "tinc": dst["node_overlay_ipv4"]}
        if dst.get("yggdrasil_address"):
            paths["yggdrasil"] = dst["yggdrasil_address"]
        for node in ("node1", "node2"):
            check_sh(lab, node, f"tc qdisc replace dev host0 root tbf rate {args.rate}mbit burst 64kb latency 50ms")
        check_sh(lab, "node2", f"nft insert rule inet meshstead input tcp dport {BENCH_PORT} accept "
                               "comment meshstead-benchmark")
        size = args.megabytes * 1_000_000
        c["paths"] = {}
        for name, address in paths.items():
            if not wait_for(lambda a=address: sh(lab, "node1", f"ping -n -c 1 -W 2 {a}", timeout=20)
                            .returncode == 0, 180, interval=2):
                c["paths"][name] = {"address": address, "error": "no ping from node1"}
                continue
            say(f"TCP node1 -> node2 over {name} ({address}): {args.runs} x {args.megabytes} MB")
            daemon = {"tinc": "tincd", "yggdrasil": "yggdrasil"}.get(name)
            rates, busy = [], {"node1": [], "node2": []}
            for _ in range(args.runs):
                cpu = {n: daemon_cpu(lab, n, daemon) for n in busy} if daemon else {}
                rate, seconds = tcp_throughput(lab, "node1", "node2", address, size)
                rates.append(rate)
                for n in cpu:
                    busy[n].append((daemon_cpu(lab, n, daemon) - cpu[n]) / seconds)
            c["paths"][name] = {"address": address, **path_mtu(lab, "node1", address),
                                "mbit_per_s": spread(rates)}
            if daemon:
                # Over the transfer, as a share of one core: near 1.0 means the daemon is CPU-bound.
                c["paths"][name]["daemon_cpu_share"] = {n: statistics.median(v) for n, v in busy.items()}
        raw = c["paths"].get("raw", {}).get("mbit_per_s")
        for name in ("tinc", "yggdrasil"):
            got = c["paths"].get(name, {}).get("mbit_per_s")
            if raw and got:
                c["paths"][name]["share_of_raw"] = got["median"] / raw["median"]
    finally:
        if lab is not None:
            for node in ("node1", "node2"):
                sh(lab, node, "tc qdisc del dev host0 root 2>/dev/null; "
                              "h=$(nft -a list chain inet meshstead input | "
                              "sed -n 's/.*meshstead-benchmark.*# handle \\([0-9]*\\)/\\1/p'); "
                              "for x in $h; do nft delete rule inet meshstead input handle $x; done")
        say("container lab down")
        if (site_dir / "group_vars").exists():
            cli("lab", "down", "--site", site_dir, env=env, timeout=900, check=False)


# -- output -------------------------------------------------------------------

def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _range(s: dict | None, unit: str = "s") -> str:
    if not s:
        return "-"
    return f"{s['median']:.2f} {unit} ({s['min']:.2f}-{s['max']:.2f})"


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


def print_tables(results: dict) -> None:
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    r = results.get("radio")
    if r:
        table = Table(title="Radio lab: 4 nodes, diamond (n0-n1-n3, n0-n2-n3), 802.11s + SAE, batman-adv")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("note")
        if "lab_up_s" in r:
            table.add_row("lab up (guest boot to every node's sshd)", f"{r['lab_up_s']:.1f} s", r.get("guest_cpu", ""))
        if "provision_s" in r:
            table.add_row("first provisioning", f"{r['provision_s']:.1f} s",
                          "two runs: the first did not finish" if r.get("provision_retried") else "")
        if "first_two_hop_ping" in r:
            f = r["first_two_hop_ping"]
            table.add_row("node start to first two-hop ping n0->n3", f"{f['seconds']:.1f} s",
                          f"{f['measured']}; n0's systemd back after {f['n0_systemd_back_s']:.1f} s")
        for ogm in r.get("ogm", []):
            table.add_row(f"traffic, no user data, interval {ogm['interval_ms']} ms",
                          f"{ogm['wlan0_bytes_per_s']:.0f} B/s",
                          f"{ogm['node']} wlan0 rx+tx ({ogm['wlan0_packets_per_s']:.1f} pkt/s) over "
                          f"{ogm['seconds']} s; bat0 (daemons' own chatter) {ogm['bat0_bytes_per_s']:.0f} B/s; "
                          f"wlan0 minus bat0 (mostly OGMs) {ogm['batman_own_bytes_per_s']:.0f} B/s")
        for h in r.get("heal", []):
            switch, outage = h["route_switch_s"], h["ping_outage_s"]
            table.add_row(f"heal, interval {h['interval_ms']} ms: route switch", _range(switch),
                          f"median of {h['reps']}, (range); target <= {HEAL_TARGET_S:.0f} s: "
                          f"{verdict(bool(switch) and switch['median'] <= HEAL_TARGET_S)}"
                          + (f"; no switch seen in {h['no_switch_seen']}" if h["no_switch_seen"] else ""))
            table.add_row(f"heal, interval {h['interval_ms']} ms: ping outage", _range(outage),
                          f"longest gap between replies, ping -i 0.1; target <= {HEAL_TARGET_S:.0f} s: "
                          f"{verdict(outage['median'] <= HEAL_TARGET_S)}")
        tp = r.get("throughput")
        if tp:
            one, two = tp["one_hop_n0_n1"]["mbit_per_s"], tp["two_hops_n0_n3"]["mbit_per_s"]
            table.add_row("batctl tp n0->n1 (one hop)", f"{one:.1f} Mbit/s", tp["note"])
            table.add_row(f"batctl tp n0->n3 (two hops, via {tp['two_hops_n0_n3']['via']})", f"{two:.1f} Mbit/s",
                          f"{two / one:.0%} of one hop")
        out.print(table)
    c = results.get("container")
    if c and c.get("paths"):
        table = Table(title=f"Container lab: node1 -> node2, lab link shaped to {c['rate_mbit']} Mbit/s (tc tbf), "
                            f"TCP, {c['runs']} x {c['megabytes']} MB per path")
        for col in ("path", "address", "interface (MTU)", "Mbit/s median (range)", "share of raw", "target",
                    "daemon CPU, sender / receiver"):
            table.add_column(col)
        for name, p in c["paths"].items():
            if "error" in p:
                table.add_row(name, p["address"], "", p["error"], "", "", "")
                continue
            share = p.get("share_of_raw")
            table.add_row(name, p["address"], f"{p['interface']} ({p['mtu']})", _range(p["mbit_per_s"], "Mbit/s"),
                          "-" if share is None else f"{share:.0%}",
                          "" if share is None else f">= {OVERLAY_TARGET:.0%}: {verdict(share >= OVERLAY_TARGET)}",
                          " / ".join(f"{v:.0%}" for v in p["daemon_cpu_share"].values())
                          if "daemon_cpu_share" in p else "")
        out.print(table)
        for name in ("tinc", "yggdrasil"):
            share = c["paths"].get(name, {}).get("share_of_raw")
            if share is not None and share < OVERLAY_TARGET:
                p = c["paths"][name]
                cpu = max(p.get("daemon_cpu_share", {}).values(), default=0.0)
                out.print(f"{name} below target: its interface {p['interface']} has MTU {p['mtu']} against the raw "
                          f"link's {c['paths']['raw']['mtu']} (tunnel headers ride inside the raw link's MTU); "
                          f"its daemon used up to {cpu:.0%} of a core during the transfers"
                          + (" — CPU-bound on this host" if cpu >= 0.9 else "") + ".")
    for part, msg in results.get("errors", {}).items():
        out.print(f"[red]{part} part failed:[/] {msg}")
    out.print(f"wall time: {results['wall_s']:.0f} s; load average at start "
              f"{' '.join(f'{x:.2f}' for x in results['load_average_start'])}, at end "
              f"{' '.join(f'{x:.2f}' for x in results['load_average_end'])} ({results['cpus']} cpus)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--radio-only", action="store_true", help="only the radio lab part")
    only.add_argument("--container-only", action="store_true", help="only the container lab part")
    parser.add_argument("--reps", type=int, default=5, help="heal repetitions per originator interval (default 5)")
    parser.add_argument("--fast-ms", type=int, default=250, help="the faster originator interval (default 250)")
    parser.add_argument("--idle", type=float, default=20, help="seconds of traffic counted per interval (default 20)")
    parser.add_argument("--rate", type=int, default=50, help="shaped container link, Mbit/s (default 50)")
    parser.add_argument("--megabytes", type=int, default=30, help="per TCP transfer (default 30)")
    parser.add_argument("--runs", type=int, default=3, help="TCP transfers per path (default 3)")
    parser.add_argument("--radio-site", type=Path, help="measure this diamond radio site, its lab already up "
                        "and provisioned (no lab up, provisioning or lab down)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    # A terminated run still takes its labs down (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        err.print("the labs need root")
        return 1
    base = Path(tempfile.mkdtemp(prefix="meshstead-bench-mesh-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(base / "config"), "XDG_CACHE_HOME": str(base / "cache"),
           "HOME": str(base)}
    os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "HOME")})
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
                     "load_average_start": os.getloadavg(), "errors": {}}
    start = time.monotonic()
    parts = [("radio", radio_part), ("container", container_part)]
    for name, part in parts:
        if (name == "radio" and args.container_only) or (name == "container" and args.radio_only):
            continue
        try:
            part(base, env, args, results)
        except Exception as exc:  # one part failing still prints the other's figures
            results["errors"][name] = str(exc)
            say(f"[red]{name} part failed:[/] {exc}")
    results["wall_s"] = time.monotonic() - start
    results["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
    else:
        print_tables(results)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
