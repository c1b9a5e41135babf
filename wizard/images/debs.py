"""The Debian packages an image lacks, downloaded once for the card to carry.

apt-get runs with a configuration of its own (APT_CONFIG): the image's
architecture, Debian's archive of the base's suite, and the image's own
dpkg status as what is installed. `apt-get install --download-only` then
works out which of the node's packages and which of their dependencies the
image does not have, and downloads exactly those (signed by Debian's
archive keyring, as apt checks). The host's apt state is never touched and
no root is needed.

The .debs are cached beside the bases under a key of their inputs (the
image's dpkg status, the package list, the suite and the date of Debian's
release the host's apt last saw): building the next node's image from the
same download needs no network."""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import MeshsteadError
from . import disk
from .base import Progress, cache_root
from .recipe import suite_date

FORMAT = 2  # bump when what is downloaded for the same inputs changes
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# The archive the bases are built from (mmdebstrap's default for a stable suite).
SOURCES = ("deb [signed-by={keyring}] http://deb.debian.org/debian {suite} main non-free-firmware",
           "deb [signed-by={keyring}] http://deb.debian.org/debian {suite}-updates main non-free-firmware",
           "deb [signed-by={keyring}] http://deb.debian.org/debian-security {suite}-security main non-free-firmware")


def cache_key(status: bytes, wanted: tuple[str, ...], suite: str, arch: str) -> str:
    blob = json.dumps([FORMAT, hashlib.sha256(status).hexdigest(), sorted(wanted), suite, arch, SOURCES,
                       suite_date(suite)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_dir(status: bytes, wanted: tuple[str, ...], suite: str, arch: str) -> Path:
    return cache_root() / f"debs-{arch}-{cache_key(status, wanted, suite, arch)}"


def stanzas(status: bytes) -> Iterator[dict[str, str]]:
    """The packages of a dpkg status file, each as its fields (continuation lines left out)."""
    for stanza in status.decode(errors="replace").split("\n\n"):
        yield dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")


def installed(status: bytes) -> set[str]:
    """The packages a dpkg status file has installed."""
    return {fields["Package"] for fields in stanzas(status)
            if "Package" in fields and fields.get("Status", "").endswith(" installed")}


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.deb"))


def ensure(status: bytes, wanted: tuple[str, ...], *, suite: str, arch: str, progress: Progress) -> Path:
    """The directory of the .debs that an image with this dpkg `status` lacks for `wanted`."""
    final = cached_dir(status, wanted, suite, arch)
    if (final / "debs.json").is_file():
        return final
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".debs-{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download at a time; the next reuses it
        if (final / "debs.json").is_file():
            return final
        for stale in root.glob(f".debs-{arch}-*"):  # a killed download's
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".debs-{arch}-", dir=root))
        try:
            _download(work, status, wanted, suite, arch, progress)
            os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _download(work: Path, status: bytes, wanted: tuple[str, ...], suite: str, arch: str, progress: Progress) -> None:
    if not KEYRING.is_file():
        raise MeshsteadError("base", f"downloading Debian's packages needs {KEYRING}; expected it installed: "
                             "apt-get install debian-archive-keyring")
    disk.require_tools("apt-get")
    apt = work / "apt"
    for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "var/lib/apt/lists/partial",
                "var/cache/apt/archives/partial", "var/log/apt"):
        (apt / sub).mkdir(parents=True)
    (apt / "status").write_bytes(status)
    (apt / "etc/apt/sources.list").write_text(
        "".join(line.format(keyring=KEYRING, suite=suite) + "\n" for line in SOURCES))
    config = work / "apt.conf"
    config.write_text("\n".join([
        f'Dir "{apt}/";',
        f'Dir::State::Status "{apt}/status";',
        f'APT::Architecture "{arch}";',
        f'APT::Architectures {{ "{arch}"; }};',
        'APT::Install-Recommends "false";',
        'Acquire::Languages "none";',
        'Debug::NoLocking "true";',
        # Root's apt would hand the download to the _apt user, who cannot write in the cache.
        'APT::Sandbox::User "root";',
    ]) + "\n")
    env = {**os.environ, "APT_CONFIG": str(config), "DEBIAN_FRONTEND": "noninteractive"}
    log = work / "apt.log"
    progress(f"reading Debian {suite}'s package lists ({arch})")
    _apt(["apt-get", "update"], env, log, "apt-get update")
    # Only what the image has not: asked for by name, apt would also upgrade what it has.
    lacking = sorted(set(wanted) - installed(status))
    progress(f"downloading {len(lacking)} packages the image lacks, and their dependencies")
    if lacking:
        _apt(["apt-get", "install", "--download-only", "--yes", "--no-remove", *lacking], env, log,
             "apt-get install")
    for deb in files(apt / "var/cache/apt/archives"):
        os.rename(deb, work / deb.name)
    shutil.rmtree(apt)  # the package lists: ~100 MB nobody reads again
    config.unlink()  # apt.log stays: what apt chose, and why
    (work / "debs.json").write_text(json.dumps({
        "suite": suite, "arch": arch, "wanted": sorted(wanted), "lacking": lacking,
        "debs": {deb.name: disk.sha256(deb) for deb in files(work)}}, indent=1) + "\n")


def _apt(argv: list[str], env: dict, log: Path, what: str) -> None:
    with open(log, "a") as out:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                              check=False)
    if proc.returncode != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith(("E:", "W:"))]
        raise MeshsteadError("base", f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")
