"""A blank node joins the provisioned lab (tests/integration/conftest.py)
with nothing but an invite's text: `lab up --blank 1` adds a container that
holds what the generic amd64 image holds, and the person runs
`meshstead-firstboot --invite TEXT` on it. It makes its own keys, joins at
the hub, configures itself with the roles the hub sent, and the other nodes
learn it from the hub's roster: with no `provision`, it reaches every node by
name over tinc and Yggdrasil, every node reaches it, and the `shared` folder
syncs both ways. The controller's inventory is not touched."""

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, snapshot
from tests.labhelpers import sh, unreached, wait_for
from wizard import reach

pytestmark = [pytest.mark.integration, pytest.mark.lab]

NODES = ("node1", "node2", "node3")
NAME = "orchard"
SHARED = "/var/lib/syncthing/shared"


def provision_logs(env) -> dict:
    return {p: p.stat().st_mtime_ns for p in (Path(env["XDG_CACHE_HOME"]) / "meshstead").glob("provision-*")}


def write_shared(lab, node: str, name: str) -> None:
    done = sh(lab, node, f"echo {name} > {SHARED}/{name}.txt && chown syncthing: {SHARED}/{name}.txt")
    assert done.returncode == 0, done.stderr


def test_a_blank_node_joins_with_the_invite_text_alone(lab_site, tmp_path):
    lab, site, directory, env = lab_site["lab"], lab_site["site"], lab_site["dir"], lab_site["env"]
    started = time.monotonic()
    up = run_cli("lab", "up", "--site", directory, "--blank", "1", env=env, timeout=1800)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    print(f"lab up --blank 1: {time.monotonic() - started:.1f} s")
    assert "Blank node blank1: waiting for an invite" in up.stdout, up.stdout
    # The image names no name server (none the site could reach) and knows its
    # own name: a lookup of it answers at once instead of after a DNS timeout.
    assert "nameserver" not in sh(lab, "blank1", "cat /etc/resolv.conf").stdout
    looked = sh(lab, "blank1", "getent hosts $(hostname)", timeout=5)
    assert looked.stdout.split()[:2] == ["127.0.1.1", "meshstead"], looked
    made = run_cli("invite", "create", NAME, "--site", directory, "--out", tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / f"{NAME}-invite.txt").read_text().strip()
    inventory, provisions = snapshot(directory), provision_logs(env)

    started = time.monotonic()
    joined = run_cli("lab", "exec", "blank1", "--site", directory, "--", "meshstead-firstboot", "--invite", text,
                     env=env, timeout=1800)
    configured = time.monotonic() - started
    assert joined.returncode == 0, joined.stdout[-3000:] + joined.stderr[-2000:]
    assert f"first boot: joined as {NAME}" in joined.stdout and f"first boot: ok (node {NAME}" in joined.stdout
    print(f"{NAME} joined and configured itself in {configured:.1f} s")

    # Every pair with orchard, both ways, over both overlays, by name.
    names = [*NODES, NAME]
    results = reach.matrix(lab, site, within=600, names=names, involving=NAME)
    reached = time.monotonic()
    assert all(results.values()), unreached(lab, results)
    print(f"every node reaches {NAME} by name, and it them, {reached - started:.1f} s after the join began")

    write_shared(lab, NAME, "from-orchard")
    write_shared(lab, "node1", "from-node1")
    assert wait_for(lambda: sh(lab, "node3", f"cat {SHARED}/from-orchard.txt").stdout.strip() == "from-orchard"
                    and sh(lab, NAME, f"cat {SHARED}/from-node1.txt").stdout.strip() == "from-node1", 300, 2)

    status = json.loads(run_cli("lab", "status", "--site", directory, "--json", env=env).stdout)
    assert {(r["node"], r.get("joined_as")) for r in status["nodes"] if r["kind"] == "blank"} == {("blank1", NAME)}
    # Nothing of this was the controller's: no provision ran, the inventory is as it was.
    assert provision_logs(env) == provisions
    assert snapshot(directory) == inventory

    again = run_cli("lab", "exec", NAME, "--site", directory, "--", "meshstead-firstboot", "--invite", text,
                    env=env, timeout=120)
    assert again.returncode == 1 and f"already node {NAME} of site" in again.stdout, again.stdout
