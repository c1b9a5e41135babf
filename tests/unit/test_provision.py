"""Reading ansible-playbook's output: the per-host recap."""

from wizard import provision

OUTPUT = """\
TASK [common : Set the host name] **********************************************
ok: [node1]
node9                      : ok=1    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0

PLAY RECAP *********************************************************************
node1                      : ok=119  changed=0    unreachable=0    failed=0    skipped=25   rescued=0    ignored=0
node3                      : ok=9    changed=2    unreachable=1    failed=1    skipped=2    rescued=0    ignored=0
"""


def test_recap_reads_only_the_rows_after_play_recap():
    rows = provision.recap(OUTPUT.splitlines())
    assert sorted(rows) == ["node1", "node3"]
    assert (rows["node1"].ok, rows["node1"].changed, rows["node1"].skipped) == (119, 0, 25)
    assert (rows["node3"].changed, rows["node3"].unreachable, rows["node3"].failed) == (2, 1, 1)


def test_recap_of_a_run_that_never_finished_is_empty():
    assert provision.recap(OUTPUT.split("PLAY RECAP")[0].splitlines()) == {}
