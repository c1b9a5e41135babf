"""What the emulated arm64 image tests share: steps that say where a
failure was, and a site whose Pi node is cabled into it."""

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import cli_home, make_site


def stepper(label: str):
    @contextlib.contextmanager
    def step(name: str, detail=lambda: ""):
        """A failure says which step it was in (and, for a boot, the console's last lines)."""
        started = time.monotonic()
        print(f"{label}: {name}")
        try:
            yield
        except Exception as exc:
            extra = detail()
            raise AssertionError(f"step {name!r} failed: {exc}" + (f"\n{extra}" if extra else "")) from exc
        print(f"{label}: {name}: {time.monotonic() - started:.0f} s")
    return step


def workspace(tmp_path_factory, name: str, tools: tuple[str, ...], why_root: str) -> tuple[Path, dict]:
    """A directory and a home of its own for the test's site, or a skip without root or tools."""
    if os.geteuid() != 0:
        pytest.skip(why_root)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"host tools missing: {', '.join(missing)} (make setup installs them)")
    work = tmp_path_factory.mktemp(name)
    return work, cli_home(work)


def cabled_site(work: Path, env: dict, platform: str) -> Path:
    """A site with a hub and node cabin of `platform`, cabled in: QEMU's virt machine has no radio."""
    key = work / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    site = make_site(work / "site", f"{key}.pub", "services=", "name=field",
                     nodes=["hub --role hub --role dns", f"cabin --platform {platform}"], env=env)
    (site / "host_vars/cabin/local.yml").write_text(yaml.safe_dump({"meshstead_mesh_interface": "eth0"}))
    return site


def first_boot_line(guest, timeout: float):
    """The first boot's one-line result on the guest's console."""
    found = guest.wait_for(r"first boot: (ok|failed).*$", timeout)
    assert found, "no first-boot result on the console" + ("" if guest.running() else " (QEMU exited)")
    return found


def assert_first_boot_ok(booted: dict) -> None:
    """Node cabin's report (read from its card) and console line say `ok`, for the site's id."""
    report = json.loads(booted["report"] or "{}")
    assert report.get("status") == "ok", (booted["report"], booted["guest"].console_tail(40))
    assert report["node"] == "cabin" and report["failed_tasks"] == []
    site_id = yaml.safe_load((booted["site"] / "group_vars/all/site.yml").read_text())["meshstead_site_id"]
    assert report["site_id"] == site_id
    assert booted["console"].startswith("first boot: ok (node cabin")


def power_off(guest) -> None:
    """Pull the plug of a guest the test started (if it got that far), and check QEMU is gone."""
    if guest:
        guest.stop()
        assert not guest.running(), f"QEMU {guest.pid} did not exit"
