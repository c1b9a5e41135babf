"""SSH for the lab: the controller key, node host keys, known_hosts, and the
connection arguments that reach nodes through the switch namespace.

Host key checking stays on: nodes carry the site's generated host keys (or one
the lab made), and the lab writes a known_hosts for them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from .errors import LabError
from .host import run
from .netns import NETNS_DIR


def ensure_controller_key(state_dir: Path) -> Path:
    """The lab's own ed25519 key, generated once; root's authorized key on every node."""
    key = state_dir / "id_ed25519"
    if not key.exists():
        old = os.umask(0o077)
        try:
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                 f"meshstead-lab-{state_dir.name}", "-f", str(key)],
                what="ssh-keygen controller key")
        finally:
            os.umask(old)
    os.chmod(key, 0o600)
    return key


def install_host_key(rootfs: Path, private_pem: str | None) -> str:
    """Put the node's ed25519 host key in place; return its public line.

    With the site's key the site's known_hosts is valid for the lab node.  Without
    one, a key made earlier for this node is kept, so `up` does not churn it.
    """
    ssh_dir = rootfs / "etc/ssh"
    priv = ssh_dir / "ssh_host_ed25519_key"
    pub = ssh_dir / "ssh_host_ed25519_key.pub"
    old = os.umask(0o077)
    try:
        if private_pem is not None:
            text = private_pem if private_pem.endswith("\n") else private_pem + "\n"
            if not priv.exists() or priv.read_text() != text:
                priv.write_text(text)
                line = run(["ssh-keygen", "-y", "-f", str(priv)], what="read host key").stdout
                pub.write_text(line.strip() + " root@lab\n")
        elif not priv.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@lab",
                 "-f", str(priv)], what="ssh-keygen host key")
    finally:
        os.umask(old)
    os.chmod(priv, 0o600)
    os.chmod(pub, 0o644)
    return " ".join(pub.read_text().split()[:2])


def install_authorized_key(rootfs: Path, controller_key: Path) -> None:
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{controller_key}.pub").read_text())
    os.chmod(ssh_dir / "authorized_keys", 0o600)


def write_known_hosts(path: Path, entries: dict[str, str]) -> None:
    """entries: address -> "ssh-ed25519 AAAA…"."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{addr} {key}\n" for addr, key in sorted(entries.items())))
    os.replace(tmp, path)


def proxy_command(netns: str) -> str:
    # nc runs inside the switch namespace, so the host needs no lab address.
    return f"nsenter --net={NETNS_DIR / netns} nc %h %p"


def common_args(netns: str, known_hosts: Path) -> str:
    """ansible_ssh_common_args: one string, split by Ansible with shlex."""
    return " ".join([
        "-o", shlex.quote(f"ProxyCommand={proxy_command(netns)}"),
        "-o", shlex.quote(f"UserKnownHostsFile={known_hosts}"),
        "-o", "StrictHostKeyChecking=yes",
    ])


def ssh_argv(conn: dict[str, str], *command: str) -> list[str]:
    """A plain `ssh` command line for a node's connection dict (tests, debugging)."""
    key = conn.get("ansible_ssh_private_key_file")
    return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *(["-i", key] if key else []),
            *shlex.split(conn["ansible_ssh_common_args"]),
            f"{conn['ansible_user']}@{conn['ansible_host']}", *command]


def wait_for_ssh(conns: dict[str, dict[str, str]], timeout: float) -> None:
    """Log in to every node (key and host key checked) or raise after `timeout`."""
    deadline = time.monotonic() + timeout
    pending = dict(conns)
    last_err: dict[str, str] = {}
    while pending:
        for node, conn in list(pending.items()):
            try:
                proc = subprocess.run(ssh_argv(conn, "true"), capture_output=True, text=True,  # noqa: S603
                                      timeout=30, check=False)
            except subprocess.TimeoutExpired:  # a node still booting on a busy host
                last_err[node] = "no answer within 30 s"
                continue
            if proc.returncode == 0:
                del pending[node]
            else:
                last_err[node] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if not pending:
            return
        if time.monotonic() > deadline:
            detail = "; ".join(f"{n}: {last_err.get(n, '?')}" for n in sorted(pending))
            raise LabError(f"sshd did not answer within {timeout:.0f}s on {detail}")
        time.sleep(0.5)
