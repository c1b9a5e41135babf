"""Fixtures for the node lab tests: real containers, so root and host tools needed."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from wizard.lab import Lab, LabNodeSpec
from wizard.lab.lab import HOST_TOOLS


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("node lab tests need root")
    missing = [t for t in (*HOST_TOOLS, "mmdebstrap", "apt-ftparchive") if not shutil.which(t)]
    if missing:
        pytest.skip(f"host tools missing: {', '.join(missing)}")


def unique_name(prefix: str) -> str:
    # Labs of parallel runs (and other people's labs) must never collide.
    return f"{prefix}{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def site_host_key(tmp_path_factory) -> str:
    """An ed25519 host key as the wizard would generate it for the site."""
    key = tmp_path_factory.mktemp("hostkey") / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.read_text()


@pytest.fixture(scope="module")
def lab2(site_host_key):
    """A 2-node lab shared by the module's tests; torn down even on failure."""
    _skip_unless_possible()
    lab = Lab(unique_name("t"))
    specs = [
        LabNodeSpec("node1", ipv4="10.42.0.1/18", ipv6="fd12:3456:789a::1/64",
                    ssh_host_ed25519_key=site_host_key),
        LabNodeSpec("node2", ipv4="10.42.0.2/18", ipv6="fd12:3456:789a::2/64"),
    ]
    try:
        conn = lab.up(specs, progress=lambda m: print(f"lab: {m}"))
        yield lab, specs, conn
    finally:
        lab.down()
        assert not Path(lab.dir).exists()


@pytest.fixture
def fresh_lab():
    """A lab for tests that create and destroy their own (names it, cleans up)."""
    _skip_unless_possible()
    lab = Lab(unique_name("f"))
    try:
        yield lab
    finally:
        lab.down()
