"""Each role's molecule scenario (`molecule test`: syntax, create, prepare,
converge, idempotence, verify, destroy) on lab nodes.

The mesh role's scenario runs in the radio lab (a QEMU guest, ~10x slower):
"all" leaves it out (the vm tests provision the mesh role on a whole radio
site); name it to run it, MESHSTEAD_MOLECULE_ROLES=mesh.

Slow and root-only: the shared create/destroy playbooks (tests/molecule/shared/)
boot the scenario's throwaway site with `meshstead lab up --site`. Only
the roles in $MESHSTEAD_MOLECULE_ROLES run (comma-separated, or "all").
The default is the dns scenario (about 2 minutes on 2 cores), whose
forwarding through a gateway to an upstream resolver nothing else checks:
every role converges on three nodes in tests/integration, which also runs a
second provision, ssh-audit and probes of the firewall from outside the site,
so the other scenarios would repeat those checks at 12 more minutes. "all"
(every container scenario, about 14 minutes) is what to run after changing a
role on its own.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parents[2].name for p in (ROOT / "roles").glob("*/molecule/default/molecule.yml"))
# Scenarios on the radio lab (their molecule.yml asks `lab up` for --radio).
RADIO_ROLES = sorted(p.parents[2].name for p in (ROOT / "roles").glob("*/molecule/default/molecule.yml")
                     if "--radio" in p.read_text())
# The scenarios CI runs; "all" runs every container scenario (docstring).
DEFAULT_ROLES = "dns"
TIMEOUT = 3600  # a 3-node scenario on a busy 2-core host takes several minutes
TAIL = 150  # lines of output shown on failure

pytestmark = [pytest.mark.lab, pytest.mark.integration]


def selected_roles() -> list[str]:
    wanted = os.environ.get("MESHSTEAD_MOLECULE_ROLES", DEFAULT_ROLES).strip()
    if wanted == "all":
        return [r for r in ROLES if r not in RADIO_ROLES]
    return [r.strip() for r in wanted.split(",") if r.strip()]


def test_selected_roles_have_scenarios():
    unknown = sorted(set(selected_roles()) - set(ROLES))
    assert not unknown, (f"MESHSTEAD_MOLECULE_ROLES names {', '.join(unknown)}, which have no "
                         f"molecule/default scenario; expected 'all' or some of: {', '.join(ROLES)}")


@pytest.mark.parametrize("role", ROLES)
def test_molecule(role, tmp_path):
    if role not in selected_roles():
        pytest.skip(f"{role} not in MESHSTEAD_MOLECULE_ROLES (default {DEFAULT_ROLES!r}; 'all': every role "
                    "on container nodes; radio-lab scenarios by name)")
    if os.geteuid() != 0:
        pytest.skip("molecule's lab nodes need root (systemd-nspawn, network namespaces)")
    bindir = Path(sys.executable).parent
    if not (bindir / "molecule").exists():
        pytest.skip(f"molecule is not installed in {bindir} (pip install -e '.[dev]')")
    env = {
        **os.environ,  # includes the per-test XDG_CONFIG_HOME set by tests/conftest.py
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        # This run's own scenario state and throwaway site, not ~/.ansible/tmp's.
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    log = tmp_path / "molecule.log"
    rc = run(["molecule", "test"], role, env, log)
    lines = log.read_text(errors="replace").splitlines()
    tail = "\n".join(lines[-TAIL:])
    assert rc == 0, f"molecule test for role {role} failed ({rc}); full log {log}; last {TAIL} lines:\n{tail}"


def run(argv: list[str], role: str, env: dict, log: Path) -> int | str:
    """Run molecule in the role's directory, output to `log`. On a timeout or an
    interrupt, kill its whole process group and run `molecule destroy`, so that
    no lab is left behind."""
    cwd = ROOT / "roles" / role
    with log.open("a") as fh:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_and_destroy(proc, cwd, env, fh)
            return f"timeout after {TIMEOUT}s"
        except BaseException:
            _kill_and_destroy(proc, cwd, env, fh)
            raise


def _kill_and_destroy(proc: subprocess.Popen, cwd: Path, env: dict, fh) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    fh.write("\n*** molecule stopped; running molecule destroy\n")
    fh.flush()
    subprocess.run(["molecule", "destroy"], cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                   stdin=subprocess.DEVNULL, timeout=600, check=False)
