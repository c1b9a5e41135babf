"""Run the site playbook against a site, with live progress and a per-host summary.

ansible-playbook's screen output goes to the log unchanged, for people. What
the tool itself reads comes from Ansible's callbacks: the plugin
plugins/callback/meshstead_events.py writes one JSON object per line (task
starts, each host's result with the message of a failure, the final stats)
into a pipe this module reads as the run goes, and a copy is kept beside the
log (provision-<site id>.events.jsonl) for whoever looks at the run later."""

import json
import os
import selectors
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MeshsteadError
from .images.base import cache_root as image_cache_root
from .resources import ansible_home

PROJECT = ansible_home()
COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
WIDTH = 300  # of a failure line


@dataclass
class HostResult:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int
    rescued: int = 0
    ignored: int = 0


@dataclass
class Outcome:
    returncode: int
    hosts: list[HostResult]
    log: Path
    failures: list[str] = field(default_factory=list)  # one line per failed or unreachable host
    events: Path | None = None  # the run's event lines


class Events:
    """What a run's event lines say, read one line at a time as they arrive."""

    def __init__(self, on_task: Callable[[str], None] | None = None):
        self.on_task = on_task
        self.hosts: dict[str, HostResult] = {}  # from the final stats; empty until the run ends
        self.finished = False
        self._failed: dict[str, list[str]] = {}  # host -> what went wrong, in order

    def feed(self, line: str) -> dict | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        kind = event.get("event")
        if kind == "task":
            if self.on_task:
                self.on_task(event.get("name", ""))
        elif kind in ("failed", "unreachable") and not event.get("ignored"):
            line = f"{event.get('host')}: {kind} at [{event.get('task')}]: {event.get('msg') or '(no message)'}"
            self._failed.setdefault(event.get("host"), []).append(line[:WIDTH])
        elif kind == "stats":
            self.hosts = {host: HostResult(host, *(int(counts.get(c, 0)) for c in COUNTERS))
                          for host, counts in (event.get("hosts") or {}).items()}
            self.finished = True
        return event

    @property
    def failures(self) -> list[str]:
        """One line per failed or unreachable host (its first failure). Once
        the run has ended, a host whose failure was rescued is not listed."""
        return [lines[0] for host, lines in self._failed.items()
                if not self.finished or host not in self.hosts
                or self.hosts[host].failed or self.hosts[host].unreachable]


def read_events(path: Path) -> Events:
    """A finished (or interrupted) run's events, from the copy kept beside its log."""
    events = Events()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            events.feed(line)
    return events


def events_path(log: Path) -> Path:
    return log.with_suffix(".events.jsonl")


def playbook_program() -> str:
    """The ansible-playbook installed next to this Python (the one this
    package's dependencies brought, with Mitogen beside it: a `pipx install`
    puts it on no PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def command(site: Path, password_file: Path, *, playbook: str = "site.yml", limit: str | None = None,
            check: bool = False, diff: bool = False, extra: list[str] | None = None) -> list[str]:
    argv = [playbook_program(), "-i", str(Path(site).absolute() / "hosts.yml"),
            "--vault-password-file", str(Path(password_file).absolute()), str(PROJECT / "playbooks" / playbook)]
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
    # ansible.cfg names the roles, the strategy and the events callback by
    # paths relative to itself, wherever it is installed.
    env.setdefault("ANSIBLE_CONFIG", str(PROJECT / "ansible.cfg"))
    env.setdefault("ANSIBLE_ROLES_PATH", str(PROJECT / "roles"))
    # The roster role installs the pinned Ansible on nodes from wheels kept where the images' are.
    env.setdefault("MESHSTEAD_WHEEL_CACHE", str(image_cache_root() / "wheels"))
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # live progress through the pipe
    env.pop("MESHSTEAD_EVENTS", None)
    return env


def run(argv: list[str], log: Path, on_task=None, on_line=None, facts_dir: Path | None = None) -> Outcome:
    """Run ansible-playbook: its output into ``log`` (and to ``on_line``), its
    events into ``on_task`` as tasks start and into the Outcome."""
    log.parent.mkdir(parents=True, exist_ok=True)
    events = Events(on_task)
    read_end, write_end = os.pipe()
    env = environment(facts_dir)
    env["MESHSTEAD_EVENTS_FD"] = str(write_end)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, pass_fds=(write_end,))
    except FileNotFoundError:
        os.close(read_end)
        raise MeshsteadError("ansible-playbook", "not found; expected ansible-core installed "
                             "(pip install meshstead brings it)") from None
    finally:
        os.close(write_end)  # the child has its own: the pipe ends when the run does
    errors: list[str] = []
    kept = events_path(log)
    with open(log, "w", buffering=1) as human, open(kept, "w", buffering=1) as copy, proc:
        def output(text: str) -> None:
            human.write(text + "\n")
            if on_line:
                on_line(text)

        def error_output(text: str) -> None:
            errors.append(text)
            output(text)

        def event(text: str) -> None:
            copy.write(text + "\n")
            events.feed(text)

        _pump(proc, {proc.stdout.fileno(): output, proc.stderr.fileno(): error_output}, read_end, event)
    failures = events.failures
    if proc.returncode and not failures and not events.finished:
        failures = [_early_error(proc.returncode, errors)]
    return Outcome(proc.returncode, list(events.hosts.values()), log, failures, kept)


def _pump(proc, outputs: dict[int, Callable[[str], None]], events_fd: int, on_event) -> None:
    """Hand each line of the child's output pipes and of the events pipe to its
    reader as it comes, until the child has closed its output and exited."""
    selector = selectors.DefaultSelector()
    pending = {fd: b"" for fd in [*outputs, events_fd]}
    readers = {**outputs, events_fd: on_event}
    for fd in pending:
        selector.register(fd, selectors.EVENT_READ)

    def take(fd: int, chunk: bytes) -> None:
        *lines, pending[fd] = (pending[fd] + chunk).split(b"\n")
        for line in lines:
            readers[fd](line.decode("utf-8", "replace").rstrip("\r"))

    def close(fd: int) -> None:
        if pending[fd]:
            readers[fd](pending[fd].decode("utf-8", "replace"))
        del pending[fd]
        selector.unregister(fd)

    try:
        while any(fd in pending for fd in outputs):
            for key, _ in selector.select():
                chunk = os.read(key.fd, 65536)
                if chunk:
                    take(key.fd, chunk)
                else:
                    close(key.fd)
        proc.wait()
        if events_fd in pending:
            # The run is over: what it wrote is in the pipe. A process it left
            # behind may still hold the pipe open, so read only what is there.
            os.set_blocking(events_fd, False)
            try:
                while chunk := os.read(events_fd, 65536):
                    take(events_fd, chunk)
            except BlockingIOError:
                pass
            close(events_fd)
    finally:
        selector.close()
        os.close(events_fd)


def _early_error(returncode: int, errors: list[str]) -> str:
    """Why ansible-playbook stopped before running any play (a playbook or
    inventory it cannot read, a vault it cannot open): its own error line."""
    said = [line.strip() for line in errors if line.strip()]
    first = next((line for line in said if line.startswith(("[ERROR]", "ERROR!"))), said[-1] if said else "")
    return f"ansible-playbook exited {returncode} before the end of the run: {first or '(no message)'}"[:WIDTH]


def summary(path: Path) -> dict[str, HostResult]:
    """Per-host counters of a run, from its events (``Outcome.events``, or
    provision-<site id>.events.jsonl beside the log); empty if it never finished."""
    return read_events(path).hosts

