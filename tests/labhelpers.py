"""Helpers for the tests that provision a whole site on a lab (containers in
tests/integration, the radio guest in tests/vm)."""

import json
import time
from pathlib import Path

from wizard import provision
from wizard.invites import token


def wait_for(check, timeout, interval=1.0):
    """The monotonic time at which `check()` first held, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(interval)
    return None


def sh(lab, node, script, timeout=60):
    return lab.exec_capture(node, ["sh", "-c", script], timeout=timeout)


def unreached(lab, results: dict, lines=15) -> str:
    """What a failed reach check (reach.matrix's results) prints: the pairs
    that failed and the last tinc and Yggdrasil journal lines of the nodes in
    them, so that a run on another machine can be read after."""
    failed = [key for key, ok in results.items() if not ok]
    nodes = sorted({node for src, dst, _ in failed for node in (src, dst)})
    script = f"journalctl -q --no-pager -n {lines} -u 'tinc@*' -u yggdrasil -o short-monotonic"
    return "\n".join([f"unreached: {failed}", *(f"--- {node}\n{sh(lab, node, script).stdout}" for node in nodes)])


def applied_roster(lab, node: str) -> dict:
    """What the node's roster applier took (its applied.json); {} before it took any."""
    proc = sh(lab, node, "cat /var/lib/meshstead/roster/applied.json 2>/dev/null")
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def published_serial(lab, hub: str) -> int:
    """The serial of the roster the hub publishes now (0: none yet)."""
    proc = sh(lab, hub, "cat /var/lib/meshstead/join-hub/roster.json 2>/dev/null")
    if proc.returncode != 0 or not proc.stdout.strip():
        return 0
    return json.loads(token.b64url_decode(json.loads(proc.stdout)["roster"]))["serial"]


def roster_settled(lab, node: str, hub: str) -> bool:
    """The node's applier took the hub's current roster and is not running."""
    taken = applied_roster(lab, node).get("hubs", {}).get(hub, {}).get("serial")
    idle = sh(lab, node, "systemctl is-active meshstead-roster.service").stdout.strip() in ("inactive", "failed")
    return idle and taken == published_serial(lab, hub)


def last_recap(env) -> dict:
    """Per-host counters of the last `meshstead provision` run under `env`
    (its XDG_CACHE_HOME), from the events kept beside its log."""
    log = next((Path(env["XDG_CACHE_HOME"]) / "meshstead").glob("provision-*.log"))
    return provision.summary(provision.events_path(log))


def changed_tasks(env) -> list[str]:
    """"host: task" for each change the last `meshstead provision` run under
    `env` reported, from its log: what a failed no-op check names."""
    log = next((Path(env["XDG_CACHE_HOME"]) / "meshstead").glob("provision-*.log"))
    task, changes = "", []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            changes.append(f"{line.split('[', 1)[1].split(']', 1)[0]}: {task}")
    return changes
