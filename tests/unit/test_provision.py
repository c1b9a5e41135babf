"""provision.run on a real ansible-playbook run: the per-host summary, the
failures and the task progress come from the events callback, through the
project's own ansible.cfg (Mitogen strategy included)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from wizard import provision

# Three hosts on this machine: "good" works (and has a failure it ignores and
# one it rescues), "bad" fails a loop item, "gone" is never reached (nothing
# listens on port 1).
INVENTORY = """\
all:
  hosts:
    good: {ansible_connection: local}
    bad: {ansible_connection: local}
    gone: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: nobody}
  vars:
    ansible_python_interpreter: %s
"""

PLAYBOOK = """\
- name: Tiny run
  hosts: all
  gather_facts: false
  tasks:
    - name: Look around
      ansible.builtin.command: "true"
      changed_when: false

    - name: Change something
      ansible.builtin.command: "true"
      changed_when: true

    - name: Fail and carry on
      ansible.builtin.command: "false"
      changed_when: false
      ignore_errors: true
      when: inventory_hostname == "good"

    - name: Fail and be rescued
      when: inventory_hostname == "good"
      block:
        - name: Fail inside a block
          ansible.builtin.fail:
            msg: rescued later
      rescue:
        - name: Rescue
          ansible.builtin.debug:
            msg: rescued

    - name: Fail on one item
      ansible.builtin.assert:
        that: item != "b"
        fail_msg: "item {{ item }} is not allowed here"
      loop: [a, b]
      when: inventory_hostname == "bad"

    - name: Skip everywhere
      ansible.builtin.debug:
        msg: never
      when: false
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    (base / "hosts.yml").write_text(INVENTORY % sys.executable)
    (base / "tiny.yml").write_text(PLAYBOOK)
    tasks = []
    lines = []
    argv = [provision.playbook_program(), "-i", str(base / "hosts.yml"), str(base / "tiny.yml")]
    outcome = provision.run(argv, base / "provision-tiny.log", on_task=tasks.append, on_line=lines.append,
                            facts_dir=base / "facts")
    return outcome, tasks, lines


def test_counts_come_from_the_final_stats(tiny_run):
    outcome, _, _ = tiny_run
    assert outcome.returncode != 0
    hosts = {h.host: h for h in outcome.hosts}
    assert sorted(hosts) == ["bad", "gone", "good"]
    good, bad, gone = hosts["good"], hosts["bad"], hosts["gone"]
    assert (good.changed, good.failed, good.unreachable, good.ignored, good.rescued) == (1, 0, 0, 1, 1)
    assert good.skipped == 2  # the loop task and the one skipped everywhere
    assert (bad.changed, bad.failed, bad.unreachable) == (1, 1, 0)
    assert (gone.ok, gone.unreachable, gone.failed) == (0, 1, 0)


def test_one_failure_line_per_failed_or_unreachable_host(tiny_run):
    outcome, _, _ = tiny_run
    assert len(outcome.failures) == 2, outcome.failures
    bad, gone = sorted(outcome.failures)
    assert bad.startswith("bad: failed at [Fail on one item]: item b: item b is not allowed here")
    assert gone.startswith("gone: unreachable at [Look around]: ")
    assert len(gone) > len("gone: unreachable at [Look around]: ") + 10  # says why
    assert not any(line.startswith("good") for line in outcome.failures)  # ignored, then rescued


def test_tasks_are_reported_as_they_start(tiny_run):
    _, tasks, _ = tiny_run
    assert tasks[:3] == ["Look around", "Change something", "Fail and carry on"]
    assert "Fail inside a block" in tasks and "Rescue" in tasks


def test_the_log_stays_ansible_playbooks_own_output(tiny_run):
    outcome, _, lines = tiny_run
    text = outcome.log.read_text()
    assert "TASK [Change something]" in text and "PLAY RECAP" in text
    assert text.splitlines() == lines


def test_the_events_are_kept_beside_the_log(tiny_run):
    outcome, _, _ = tiny_run
    assert outcome.events == outcome.log.with_suffix(".events.jsonl")
    kinds = [json.loads(line)["event"] for line in outcome.events.read_text().splitlines()]
    assert kinds[0] == "play" and kinds[-1] == "stats"
    assert {"task", "ok", "skipped", "failed", "unreachable"} <= set(kinds)
    assert provision.summary(outcome.events) == {h.host: h for h in outcome.hosts}
    assert provision.read_events(outcome.events).failures == outcome.failures


def test_a_run_that_never_starts_says_why(tmp_path):
    argv = [provision.playbook_program(), "-i", "localhost,", str(tmp_path / "missing.yml")]
    outcome = provision.run(argv, tmp_path / "provision-x.log")
    assert outcome.returncode != 0 and outcome.hosts == []
    assert len(outcome.failures) == 1
    assert "missing.yml" in outcome.failures[0] and "before the end of the run" in outcome.failures[0]


def test_events_without_stats_list_every_failure():
    events = provision.Events()
    for event in ({"event": "failed", "host": "a", "task": "t", "msg": "boom"}, "not json", [1],
                  {"event": "failed", "host": "b", "task": "t", "msg": "x", "ignored": True}):
        events.feed(event if isinstance(event, str) else json.dumps(event))
    assert (events.finished, events.hosts, events.failures) == (False, {}, ["a: failed at [t]: boom"])


def test_plain_ansible_playbook_writes_events_to_a_named_file(tmp_path):
    """Without meshstead, the callback writes only where $MESHSTEAD_EVENTS says."""
    (tmp_path / "play.yml").write_text(textwrap.dedent("""\
        - name: One task
          hosts: all
          gather_facts: false
          tasks:
            - name: Say hello
              ansible.builtin.debug:
                msg: hello
        """))
    env = {**provision.environment(tmp_path / "facts"), "MESHSTEAD_EVENTS": str(tmp_path / "events.jsonl")}
    done = subprocess.run([provision.playbook_program(), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert provision.summary(tmp_path / "events.jsonl")["localhost"].ok == 1
    written = (tmp_path / "events.jsonl").read_text()
    quiet = {k: v for k, v in env.items() if k != "MESHSTEAD_EVENTS"}
    done = subprocess.run([provision.playbook_program(), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")],
                          env=quiet, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "events.jsonl").read_text() == written  # nothing asked for events: none written
    assert not set(os.listdir(tmp_path)) - {"events.jsonl", "facts", "play.yml"}
