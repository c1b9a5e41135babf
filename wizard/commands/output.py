"""What every command shares: the consoles, the site directory, progress and change lists."""

import os
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from ..fsutil import FileChange

out = Console(soft_wrap=True)
if not out.is_terminal:
    out.width = 200  # tables read in logs and pipes are not squeezed to 80 columns
err = Console(stderr=True, soft_wrap=True)


def site_dir(args) -> Path:
    return Path(args.site or os.environ.get("MESHSTEAD_SITE") or ".")


def show_changes(changes: list[FileChange], dry_run: bool, root: Path) -> None:
    if not changes:
        out.print("Nothing to change.")
        return
    verb = "would" if dry_run else "did"
    for change in changes:
        shown = change.path.relative_to(root) if change.path.is_relative_to(root) else change.path
        out.print(f"  {change.action:6} {shown}{'  (secret)' if change.mode == 0o600 else ''}")
    out.print(f"{len(changes)} file(s) {verb} change.")


@contextmanager
def progress_bar(label: str, total: int):
    """Yields a function to call once per finished item."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not err.is_terminal) as prog:
        task = prog.add_task(label, total=total)
        yield lambda: prog.advance(task)


def add_site_option(parser) -> None:
    parser.add_argument("--site", help="site directory (default: $MESHSTEAD_SITE, then the current directory)")


def add_vault_option(parser) -> None:
    parser.add_argument("--vault-password-file", help="vault password file (default: "
                        "~/.config/meshstead/vault/<site id>.pass or $MESHSTEAD_VAULT_PASSWORD_FILE)")


def add_dry_run_option(parser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show which files would change, change nothing")
