"""The radio lab for the vm tests: one QEMU guest, three nodes in a line.

Needs root, QEMU and mmdebstrap; the first run builds the guest image (~2 min,
cached under MESHSTEAD_LAB_CACHE).  The lab is always torn down, and the test
checks that its QEMU process is gone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from wizard.lab import LabNodeSpec
from wizard.lab.radio import RadioLab
from wizard.lab.radio.guest import is_ours
from wizard.lab.radio.lab import HOST_TOOLS

# CI runs a reduced form of the vm tests to stay in its time; these run only
# with MESHSTEAD_VM_FULL=1 (README, "Tests", says which and why).
full_only = pytest.mark.skipif(os.environ.get("MESHSTEAD_VM_FULL") != "1",
                               reason="full vm run only (MESHSTEAD_VM_FULL=1)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test in a module with a failure_report(item) gets that report as
    a section of its own: what the lab looked like when it failed."""
    report = yield
    result = report.get_result()
    describe = getattr(item.module, "failure_report", None)
    if result.when == "call" and result.failed and describe is not None:
        result.sections.append(("lab at the failure", describe(item)))


@dataclass
class RadioLabRun:
    lab: RadioLab
    specs: list[LabNodeSpec]
    conns: dict[str, dict[str, str]]
    up_seconds: float


# Module scope: the lab goes down when its tests are done, not at the end of the
# session, where it would share the 2 cores with the whole radio site's guest.
@pytest.fixture(scope="module")
def radio_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the radio lab needs root")
    missing = [t for t in HOST_TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"host tools missing: {', '.join(missing)}")
    key = tmp_path_factory.mktemp("hostkey") / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # A lab-only management /64, made up here; n1 gets the "site's" host key.
    specs = [LabNodeSpec("n0", ipv6="fd00:5a17:0:1::10/64"),
             LabNodeSpec("n1", ipv6="fd00:5a17:0:1::11/64", ssh_host_ed25519_key=key.read_text()),
             LabNodeSpec("n2", ipv6="fd00:5a17:0:1::12/64")]
    lab = RadioLab(f"v{secrets.token_hex(3)}")
    start = time.monotonic()
    pid = None
    try:
        conns = lab.up(specs, topology="line",
                       progress=lambda m: print(f"radio lab {time.monotonic() - start:6.1f}s: {m}"))
        pid = lab._load()["qemu_pid"]
        yield RadioLabRun(lab, specs, conns, time.monotonic() - start)
    finally:
        if pid is None and lab.state_file.exists():
            pid = lab._load().get("qemu_pid")
        t = time.monotonic()
        lab.down()
        print(f"radio lab down in {time.monotonic() - t:.1f}s")
        assert not Path(lab.dir).exists()
        assert not is_ours(pid, lab.name)
