"""Flashable images, measured: how long a platform's base takes to build, how
big an image is raw and compressed, how long personalising one node takes
(against building a fresh base for it, the ratio), and the time from power-on
to a first-boot report of `ok` under QEMU.

    python benchmarks/image.py [--platform amd64|rpi] [--reps 5] [--no-rebuild] [--no-boot] [--json]

It makes a throwaway site (a hub and one image node on a cable) in a temporary
directory. amd64 boots in the lab beside the provisioned hub; rpi (arm64, the
image node a Pi 4) boots alone under qemu-system-aarch64 -M virt from the
kernel and initrd on its FAT partition (wizard/images/virt.py). The base is
rebuilt unless --no-rebuild (then its build time is the one recorded when it
was built). Booting needs root and a quiet machine (QEMU emulates the CPU):
run heavy runs one at a time,
    flock /tmp/meshstead-heavy.lock python benchmarks/image.py
Targets (issue): personalisation <= 5 s per node for a >= 1 GiB image and >= 50x
faster than a rebuild; amd64 base <= 5 min, arm64 (rpi) base <= 10 min on 2
cores. Every figure is measured in the run that prints it; nothing is asserted."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from wizard import labsite, sites  # noqa: E402
from wizard.images import base as bases  # noqa: E402
from wizard.images import personalise, recipe, virt  # noqa: E402
from wizard.lab import open_lab  # noqa: E402
from wizard.load import load_site  # noqa: E402

err = Console(stderr=True, soft_wrap=True)


def cli(env, *args, timeout=3600):
    proc = subprocess.run([sys.executable, "-m", "wizard.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"meshstead {' '.join(map(str, args))} failed: {proc.stderr.strip()[-800:]}")
    return proc


# The image node's platform per base: a Pi 4 stands for every Pi the rpi base boots.
NODE_PLATFORMS = {"amd64": "amd64", "rpi": "rpi4"}


def make_site(work: Path, env: dict, node_platform: str) -> Path:
    key = work / "config/meshstead/demo/id_ed25519"
    key.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    site = work / "site"
    cli(env, "init", site, "--defaults", "--set", f"admin_ssh_key={key}.pub", "--set", "services=",
        "--set", "name=bench")
    cli(env, "node", "add", "hub", "--role", "hub", "--role", "dns", "--site", site)
    cli(env, "node", "add", "cabin", "--platform", node_platform, "--site", site)
    (site / "host_vars/cabin/local.yml").write_text("meshstead_mesh_interface: eth0\n")
    return site


def personalise_times(base, opened, out: Path, reps: int, raw: bool) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(reps):
        built = personalise.build(base, opened, "cabin", out, raw=raw, progress=lambda _m: None)
        times.append(built.seconds)
        size = built.size
    return times, size


def boot_time(env: dict, site: Path, image: Path) -> dict:
    cli(env, "lab", "up", "--nodes", "1", "--site", site)
    try:
        cli(env, "provision", "--site", site, "--limit", "hub")
        started = time.monotonic()
        cli(env, "lab", "boot", image, "--site", site, timeout=3600)
        ok_after = time.monotonic() - started
        lab = open_lab(labsite.lab_name(load_site(site)))
        report = json.loads(lab.exec_capture("cabin", ["cat", "/var/lib/meshstead/firstboot.json"]).stdout)
        return {"power_on_to_ok_s": round(ok_after, 1), "first_boot_run_s": report["duration_s"],
                "status": report["status"]}
    finally:
        cli(env, "lab", "down", "--site", site)


def virt_boot_time(image: Path, work: Path) -> dict:
    """Power-on to the console's first-boot line under qemu-system-aarch64, then the report from the card."""
    started = time.monotonic()
    guest = virt.start(image, work / "vm")
    try:
        found = guest.wait_for(r"first boot: (ok|failed)", 3600)
        ok_after = time.monotonic() - started
    finally:
        guest.stop()
    if not found:
        raise SystemExit(f"no first-boot result on the console; its end:\n{guest.console_tail(30)}")
    card = virt.flatten(guest)
    try:
        report = json.loads(virt.read_root_file(card, virt.REPORT) or "{}")
    finally:
        card.unlink()
    return {"power_on_to_ok_s": round(ok_after, 1), "first_boot_run_s": report.get("duration_s"),
            "status": report.get("status")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default="amd64", choices=recipe.platforms())
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-rebuild", action="store_true", help="time the cached base's recorded build")
    parser.add_argument("--no-boot", action="store_true", help="skip booting the image under QEMU")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict = {"platform": args.platform, "date": datetime.date.today().isoformat()}
    with tempfile.TemporaryDirectory(prefix="meshstead-bench-image-") as tmp:
        work = Path(tmp)
        env = {"XDG_CONFIG_HOME": str(work / "config"), "XDG_CACHE_HOME": str(work / "cache"), "HOME": str(work)}
        os.environ.update(env)
        site = make_site(work, env, NODE_PLATFORMS[args.platform])
        wanted = recipe.load(args.platform)
        err.print(f"base {args.platform}: {'rebuilding' if not args.no_rebuild else 'cached or building'}")
        started = time.monotonic()
        base, built = bases.ensure(wanted, lambda msg: err.print(f"  {msg[:120]}"), rebuild=not args.no_rebuild)
        figures["base_build_s"] = (round(time.monotonic() - started, 1) if built
                                   else base.info.get("build_seconds"))  # as recorded when it was built
        figures["base_size_bytes"] = base.info["size"]
        opened = sites.open_site(site)
        out = work / "images"
        raw_times, raw_size = personalise_times(base, opened, out, args.reps, raw=True)
        zst_times, zst_size = personalise_times(base, opened, out, max(1, args.reps // 2), raw=False)
        figures.update({
            "image_raw_bytes": raw_size, "image_zst_bytes": zst_size,
            "personalise_raw_s_median": round(statistics.median(raw_times), 2),
            "personalise_raw_s_range": [round(min(raw_times), 2), round(max(raw_times), 2)],
            "personalise_zst_s_median": round(statistics.median(zst_times), 2),
        })
        if figures["base_build_s"]:
            figures["rebuild_over_personalise"] = round(figures["base_build_s"] / figures["personalise_raw_s_median"],
                                                        1)
        if not args.no_boot and args.platform == "amd64":
            figures.update(boot_time(env, site, out / "cabin-amd64.img"))
        elif not args.no_boot:
            figures.update(virt_boot_time(out / f"cabin-{args.platform}.img", work))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    table = Table(title=f"Images ({args.platform}, {figures['date']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    Console().print(table)


if __name__ == "__main__":
    main()
