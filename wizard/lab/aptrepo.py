"""A local apt repository with everything the roles install on a node.

Lab nodes have no internet, like a remote site, so the roles' real install path
(ansible.builtin.apt with update_cache) runs against this repository, which is
bind-mounted read-only into every node.  It holds the full dependency closure
of lab_packages() (not just what the base rootfs lacks), so it stays valid
whatever the nodes already have installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .. import packages
from .host import require_tools, run
from .rootfs import SUITE, Progress, cache_dir

# Every package a role installs (the roles' own lists), and the tools the lab's
# tests use inside nodes.
LAB_TOOLS = ("ca-certificates", "netcat-openbsd", "dnsutils")


def lab_packages() -> tuple[str, ...]:
    return tuple(sorted(set(packages.node_packages()) | set(LAB_TOOLS)))


# Where nodes see the repository, and the apt source line that points there.
REPO_MOUNT = "/srv/meshstead-repo"
SOURCES_LINE = f"deb [trusted=yes] file:{REPO_MOUNT} ./\n"


def cache_key() -> str:
    arch = run(["dpkg", "--print-architecture"], what="dpkg").stdout.strip()
    blob = json.dumps([SUITE, arch, lab_packages()])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dependency_closure(packages: tuple[str, ...]) -> list[str]:
    """Real package names needed to install `packages` (no recommends)."""
    out = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
               "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
               *packages], what="apt-cache depends").stdout
    names = set()
    for line in out.splitlines():
        # Top-level lines are package names; "<name>" marks a virtual package, whose
        # providers are listed (and thus collected) on their own lines.
        if line and not line[0].isspace() and not line.startswith("<"):
            names.add(line.split(":", 1)[0])
    return sorted(names)


def ensure_repo(progress: Progress) -> Path:
    """Return the cached repository directory, building it first if needed."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"repo-{SUITE}-{cache_key()}"
    if (final / "Release").is_file():
        progress(f"apt repository: cached {final}")
        return final
    with open(root / ".repo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "Release").is_file():
            return final
        require_tools("apt-get", "apt-cache", "apt-ftparchive")
        progress("building local apt repository for the nodes (downloads .debs, cached afterwards)")
        names = dependency_closure(lab_packages())
        tmp = Path(tempfile.mkdtemp(prefix=".repo-build-", dir=root))
        try:
            # Nodes read the tree through a bind mount; mkdtemp made it 0700.
            os.chmod(tmp, 0o755)  # noqa: S103 - public packages, read by nodes
            run(["apt-get", "download", "-q", *names], what="apt-get download", cwd=tmp)
            packages = run(["apt-ftparchive", "packages", "."], what="apt-ftparchive packages",
                           cwd=tmp).stdout
            (tmp / "Packages").write_text(packages)
            release = run(["apt-ftparchive", "release", "."], what="apt-ftparchive release",
                          cwd=tmp).stdout
            (tmp / "Release").write_text(release)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final

