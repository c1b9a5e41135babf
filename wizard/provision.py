"""Run the site playbook against a site, with live progress and a per-host summary."""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import MeshsteadError
from .resources import ansible_home

PROJECT = ansible_home()
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)")
TASK = re.compile(r"^(TASK|RUNNING HANDLER) \[(.*)\]")


@dataclass
class HostResult:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int


@dataclass
class Outcome:
    returncode: int
    hosts: list[HostResult]
    log: Path


def playbook_program() -> str:
    """ansible-playbook from PATH, else the one installed next to this Python
    (`.venv/bin/meshstead` run without activating the virtualenv)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return shutil.which("ansible-playbook") or (str(beside) if beside.exists() else "ansible-playbook")


def command(site: Path, password_file: Path, *, playbook: str = "site.yml", limit: str | None = None,
            check: bool = False, diff: bool = False, extra: list[str] | None = None) -> list[str]:
    argv = [playbook_program(), "-i", str(site / "hosts.yml"), "--vault-password-file", str(password_file),
            str(PROJECT / "playbooks" / playbook)]
    if limit:
        argv += ["--limit", limit]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    return argv + list(extra or [])


def environment(facts_dir: Path | None = None) -> dict:
    env = dict(os.environ)
    if facts_dir:
        # Facts are cached per site: two sites (or a lab and the real thing)
        # may both have a node called "hilltop".
        env.setdefault("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(facts_dir))
    env.setdefault("ANSIBLE_CONFIG", str(PROJECT / "ansible.cfg"))
    env.setdefault("ANSIBLE_ROLES_PATH", str(PROJECT / "roles"))
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # live progress through the pipe
    return env


def run(argv: list[str], log: Path, on_task=None, on_line=None, facts_dir: Path | None = None) -> Outcome:
    """Stream ansible-playbook's output into ``log``; report tasks as they start."""
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=environment(facts_dir), cwd=PROJECT)
    except FileNotFoundError:
        raise MeshsteadError("ansible-playbook", "not found; expected ansible-core installed "
                             "(pip install meshstead brings it)") from None
    with open(log, "w", buffering=1) as handle, proc:
        for line in proc.stdout:
            handle.write(line)
            text = line.rstrip("\n")
            lines.append(text)
            if on_line:
                on_line(text)
            match = TASK.match(text)
            if match and on_task:
                on_task(match.group(2))
    return Outcome(proc.returncode, list(recap(lines).values()), log)


def recap_row(line: str) -> HostResult | None:
    """One host's counters from a line of ansible-playbook's PLAY RECAP."""
    match = RECAP.match(line)
    if not match:
        return None
    return HostResult(match.group(1), *(int(v) for v in match.groups()[1:6]))


def recap(lines: list[str]) -> dict[str, HostResult]:
    """Per-host counters of a finished run's output (the lines after PLAY RECAP)."""
    start = next((i for i, line in enumerate(lines) if line.startswith("PLAY RECAP")), len(lines))
    return {row.host: row for line in lines[start + 1:] if (row := recap_row(line))}


def failures(lines: list[str], width: int = 300) -> list[str]:
    """One line per failed host: the host and the first lines of its message
    (the YAML result format puts the message in indented keys below)."""
    found = []
    for number, line in enumerate(lines):
        if not line.startswith(("fatal:", "failed:", "[ERROR]")):
            continue
        detail, keep, key_indent = [], line.startswith("[ERROR]"), None
        for follow in lines[number + 1:number + 60]:
            if follow and not follow[0].isspace():
                break
            indent = len(follow) - len(follow.lstrip())
            key = re.match(r"\s*(\w+):", follow)
            if key and (key_indent is None or indent <= key_indent):
                key_indent = indent
                keep = key.group(1) in MESSAGE_KEYS
                rest = follow.split(":", 1)[1].strip().lstrip("|-").strip()
                if keep and rest:
                    detail.append(rest)
            elif keep and follow.strip():
                detail.append(follow.strip())
        found.append((line.rstrip(" =>") + " " + " ".join(detail[:4])).strip()[:width])
    return found


MESSAGE_KEYS = ("msg", "argument_errors", "stderr", "reason", "module_stderr")
