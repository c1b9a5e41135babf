"""A run's results as JSON lines, for `meshstead provision` to read as the run goes.

ansible-playbook's screen output is for people: its layout depends on the
stdout callback and its settings. This callback writes what the tool needs
as one JSON object per line, to the file descriptor named by
$MESHSTEAD_EVENTS_FD (a pipe `meshstead provision` reads) or appended to the
file named by $MESHSTEAD_EVENTS; with neither it does nothing. Events:

    {"event": "play", "name": "Configure Debian nodes", "at": 0.4}
    {"event": "task", "name": "common : Set the host name", "handler": false, "at": 2.1}
    {"event": "ok", "host": "node1", "task": "...", "changed": true}
    {"event": "skipped", "host": "node1", "task": "..."}
    {"event": "failed", "host": "node1", "task": "...", "msg": "...", "ignored": false}
    {"event": "unreachable", "host": "node1", "task": "...", "msg": "..."}
    {"event": "stats", "hosts": {"node1": {"ok": 1, "changed": 0, "unreachable": 0, "failed": 0,
                                           "skipped": 0, "rescued": 0, "ignored": 0}}, "at": 61.0}

Results carry no module output beyond the failure message: no key material
reaches the stream (and `no_log` results are censored before any callback
sees them). `at` is seconds since the callback loaded: where a run spends its
time (benchmarks/join.py reads a node's first-boot events)."""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: meshstead_events
type: notification
short_description: write task starts, per-host results and the final stats as JSON lines
description:
  - Writes one JSON object per line to the file descriptor in E(MESHSTEAD_EVENTS_FD), or appends them to the
    file named by E(MESHSTEAD_EVENTS). Does nothing when neither is set.
requirements:
  - enabled in callbacks_enabled (meshstead's ansible.cfg does this)
"""

# Keys of a failed result that explain it, in the order they are reported.
MESSAGE_KEYS = ("msg", "reason", "argument_errors", "stderr", "module_stderr", "censored")
MESSAGE_LIMIT = 2000


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "meshstead_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._out = _open_stream()
        self._started = time.monotonic()

    def _emit(self, **event):
        if self._out is None:
            return
        self._out.write(json.dumps(event, default=str, separators=(",", ":")) + "\n")
        self._out.flush()

    def v2_playbook_on_play_start(self, play):
        self._emit(event="play", name=str(play.get_name()).strip(), at=self._at())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit(event="task", name=str(task.get_name()).strip(), handler=False, at=self._at())

    def v2_playbook_on_handler_task_start(self, task):
        self._emit(event="task", name=str(task.get_name()).strip(), handler=True, at=self._at())

    def _at(self) -> float:
        return round(time.monotonic() - self._started, 2)

    def v2_runner_on_ok(self, result):
        data = _data(result)
        self._emit(event="ok", host=_host(result), task=_task(result), changed=bool(data.get("changed")))

    def v2_runner_on_skipped(self, result):
        self._emit(event="skipped", host=_host(result), task=_task(result))

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._emit(event="failed", host=_host(result), task=_task(result), msg=message(_data(result)),
                   ignored=bool(ignore_errors))

    def v2_runner_on_unreachable(self, result):
        self._emit(event="unreachable", host=_host(result), task=_task(result), msg=message(_data(result)))

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            hosts[host] = {"ok": summary["ok"], "changed": summary["changed"],
                           "unreachable": summary["unreachable"], "failed": summary["failures"],
                           "skipped": summary["skipped"], "rescued": summary["rescued"],
                           "ignored": summary["ignored"]}
        self._emit(event="stats", hosts=hosts, at=self._at())


def _open_stream():
    fd = os.environ.get("MESHSTEAD_EVENTS_FD")
    if fd:
        number = int(fd)
        # Programs Ansible starts (ssh, its ControlPersist master) must not
        # hold the pipe open after the run: the reader waits for its end.
        os.set_inheritable(number, False)
        return os.fdopen(number, "w", encoding="utf-8", closefd=False)
    path = os.environ.get("MESHSTEAD_EVENTS")
    if path:
        return open(path, "a", encoding="utf-8")  # kept open for the whole run
    return None


# ansible-core 2.19 made a result's host, task and data public; 2.17 and 2.18
# have only the underscored names.
def _data(result) -> dict:
    data = getattr(result, "result", None)
    return data if data is not None else result._result


def _host(result) -> str:
    return (getattr(result, "host", None) or result._host).get_name()


def _task(result) -> str:
    return str((getattr(result, "task", None) or result._task).get_name()).strip()


def message(data: dict) -> str:
    """What went wrong, in one line: the result's own explanation, or that of
    its first failed loop item."""
    parts = []
    for key in MESSAGE_KEYS:
        value = data.get(key)
        if value:
            if isinstance(value, list | tuple):
                value = "; ".join(map(str, value))
            parts.append(" ".join(str(value).split()))
    if data.get("results") and (not parts or parts == ["One or more items failed"]):
        failed = [item for item in data["results"] if isinstance(item, dict) and item.get("failed")]
        if failed:
            item = failed[0]
            parts = [f"item {item.get('item')!s}: {message(item)}"]
    return " ".join(parts)[:MESSAGE_LIMIT]
